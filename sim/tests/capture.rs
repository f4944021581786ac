//! A capture changes nothing in a run: the same seed gives the same records with and
//! without one, and the capture holds every copy a link carried, lost or not; a cap stops
//! it and says so.

use ringlab_sim::capture::Fate;
use ringlab_sim::{run, Faults, NetConfig, RunConfig};

fn config(capture: Option<u64>) -> RunConfig {
    RunConfig {
        nodes: 4,
        seed: 21,
        duration_ms: 8_000,
        net: NetConfig {
            loss: 0.05,
            dup: 0.02,
            ..NetConfig::default()
        },
        faults: Faults::parse("all").unwrap(),
        key: true,
        capture_max_bytes: capture,
        ..RunConfig::default()
    }
}

#[test]
fn a_captured_run_has_the_records_of_an_uncaptured_one() {
    let plain = run(&config(None));
    let captured = run(&config(Some(1 << 30)));
    assert!(plain.capture.is_none());
    assert_eq!(plain.records, captured.records);
    let c = captured.capture.expect("a capture");
    assert_eq!(c.truncated(), 0);
    let fates = |f: Fate| c.frames().iter().filter(|t| t.fate == f).count();
    assert!(fates(Fate::Delivered) > 0);
    assert!(fates(Fate::Lost) > 0, "5% loss loses some copies");
    assert!(fates(Fate::Duplicated) + fates(Fate::DuplicatedOneLost) > 0);
    // Every frame is a packet the ring sent, sealed with its trailer.
    for t in c.frames() {
        assert_ne!(t.from, 0);
        assert!(t.data.len() > ringlab_ring::auth::TRAILER_LEN);
    }
}

#[test]
fn a_capped_capture_stops_and_says_so() {
    let r = run(&config(Some(4096)));
    let c = r.capture.expect("a capture");
    assert!(c.bytes() <= 4096);
    assert!(c.truncated() > 0);
    assert_eq!(r.records, run(&config(None)).records);
}
