//! The run's random streams: a seed replays the same fault schedule whatever the ring does
//! with its traffic (the faults draw from their own stream, each link from its own), and the
//! opt-in one-way and partial cuts heal by the end of the faults.

use ringlab_records::{Body, Record};
use ringlab_ring::Variant;
use ringlab_sim::{run, Faults, RunConfig};

/// Returns the faults of a run: (time, action, targets).
fn faults(records: &[Record]) -> Vec<(u64, String, Vec<u32>)> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Fault {
                action, targets, ..
            } => Some((r.t_ns, action.clone(), targets.clone())),
            _ => None,
        })
        .collect()
}

fn config(seed: u64, variant: Variant, faults: &str) -> RunConfig {
    let mut c = RunConfig {
        seed,
        duration_ms: 20_000,
        faults: Faults::parse(faults).unwrap(),
        ..RunConfig::default()
    };
    c.ring.variant = variant;
    c.net.loss = 0.1;
    c.net.loss_burst = 5.0;
    c.net.dup = 0.01;
    c.net.reorder = 0.05;
    c
}

#[test]
fn a_seed_replays_the_same_faults_whatever_the_traffic() {
    for seed in 1..=10 {
        let mix = "partition,merge,crash,restart,pause,oneway,partial";
        let classic = run(&config(seed, Variant::Classic, mix));
        let accelerated = run(&config(seed, Variant::Accelerated, mix));
        // The two variants send different packets at different times; the faults are the
        // same, at the same instants, on the same nodes.
        let (a, b) = (faults(&classic.records), faults(&accelerated.records));
        assert!(a.len() > 2, "seed {seed}: {a:?}");
        assert_eq!(a, b, "seed {seed}");
        assert_ne!(classic.records, accelerated.records, "seed {seed}");
    }
}

#[test]
fn one_way_and_partial_cuts_are_opt_in_and_heal_at_the_end() {
    let all = Faults::parse("all").unwrap();
    assert!(!all.oneway && !all.partial && !all.hostile);
    let f = Faults::parse("oneway,partial").unwrap();
    assert!(f.oneway && f.partial && !f.partition);
    assert!(Faults::parse("sideways").is_err());
    let (mut oneway, mut partial) = (0, 0);
    for seed in 1..=10 {
        let r = run(&config(seed, Variant::Classic, "oneway,partial"));
        for (_, action, targets) in faults(&r.records) {
            match action.as_str() {
                "cut_oneway" => oneway += 1,
                "cut" => partial += 1,
                _ => continue,
            }
            assert_eq!(targets.len(), 2);
            assert_ne!(targets[0], targets[1]);
        }
        // The checker's liveness bound holds after the end-of-faults heal.
        assert!(
            r.check.violations.is_empty(),
            "seed {seed}: {:?}",
            r.check.violations
        );
    }
    assert!(
        oneway > 0 && partial > 0,
        "{oneway} one-way, {partial} partial"
    );
}
