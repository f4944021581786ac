//! What flooding a member's address costs a keyed ring, on loopback with real nodes: 6 nodes
//! configured, 5 running (node 6 is killed at once, so its address is a member's that nobody
//! uses), every node offering 1 KiB agreed messages at maximum load. Each pass measures the
//! delivered message rate per node for `LOAD_MS` without a flood, then with one flooder
//! thread sending junk datagrams to node 1 as fast as it can, in turn: from a stranger's
//! address (127.0.0.9: dropped on the address, before any MAC), and from node 6's address
//! (a member's: every datagram costs a MAC check before it is refused); and, as the control
//! for what the flooder itself costs this machine's CPUs, the same flood from the stranger's
//! address to a port nobody listens on ("nowhere"). Without a key the
//! second flood would be forged datagrams, which is worse than slow; see the README's
//! security section. Passes alternate baseline and floods (interleaved, as this machine's
//! figures move from one pass to the next).
//!
//! `cargo build --release -p ringlab && cargo run --release -p ringlab-bench --bin flood
//! [-- PASSES [LOAD_MS]]`: one JSON line per measurement, then a summary line.
// A benchmark over real processes, sockets and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_net::control::{Ack, Request, StatsReply, StopLoadReply};
use ringlab_net::harness::{Cluster, Spec};
use ringlab_net::{LoadSpec, Transport};
use ringlab_ring::Config;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sums the delivered messages of nodes 1..=5.
fn delivered(c: &Cluster) -> Vec<StatsReply> {
    (1..=5).map(|n| c.stats(n).expect("stats")).collect()
}

/// Measures one load period, with a flood from `flood_from` (if any) to node 1; returns
/// (delivered messages per second per node, datagrams the flooder sent, node 1's drops).
fn measure(
    c: &Cluster,
    port: u16,
    load_ms: u64,
    flood_from: Option<u32>,
    to_port: u16,
) -> serde_json::Value {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = flood_from.map(|from| {
        let sock = UdpSocket::bind(SocketAddr::new(Cluster::addr(from), port)).expect("bind");
        let to = SocketAddr::new(Cluster::addr(1), to_port);
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            // Shaped like a sealed datagram: a header, a body and a trailer that fails.
            let junk: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
            while !stop.load(Ordering::Relaxed) {
                if sock.send_to(&junk, to).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let before = delivered(c);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(load_ms));
    let after = delivered(c);
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(f) = flooder {
        f.join().expect("flooder");
    }
    let per_node: f64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.delivered.messages - b.delivered.messages) as f64 / secs)
        .sum::<f64>()
        / 5.0;
    serde_json::json!({
        "flood": match flood_from {
            None => "none",
            Some(_) if to_port != port => "nowhere",
            Some(9) => "stranger",
            Some(_) => "member address",
        },
        "msgs_per_s_per_node": per_node,
        "flood_datagrams_per_s": sent.load(Ordering::Relaxed) as f64 / (secs + 0.3),
        "ring_changed": before.iter().zip(&after).any(|(b, a)| b.status.ring != a.status.ring),
        "node1_drops": after[0].drops,
        "node1_kernel_drops": after[0].kernel_drops,
        "node1_latency_p99_us": after[0].latency_us.p99,
    })
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let passes = args.first().copied().unwrap_or(3);
    let load_ms = args.get(1).copied().unwrap_or(3000);
    let binary = std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("target dir")
        .join("ringlab");
    let port = 18405;
    let dir = std::env::temp_dir().join(format!("ringlab-flood-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = Cluster::start(Spec {
        nodes: 6,
        transport: Transport::Unicast,
        totem: Config::default(),
        port,
        group: [239, 192, 75, 9].into(),
        dir: dir.clone(),
        key: true.into(),
        record_messages: false,
        record_every: 1,
        binary,
        batched_io: true,
        ipv6: false,
        services: vec![],
        service_config: Default::default(),
        netns: None,
        implementation: ringlab_net::harness::Implementation::Ringlab,
    })
    .expect("cluster");
    c.kill(6);
    c.wait_ring(&[1, 2, 3, 4, 5], Duration::from_secs(30))
        .expect("a ring of 5");
    for n in 1..=5 {
        let l = Request::Load(LoadSpec {
            rate: 0,
            size: 1024,
            duration_ms: Some(passes * 4 * (load_ms + 1000) + 10_000),
            ..LoadSpec::default()
        });
        c.call::<Ack>(n, &l).expect("load");
    }
    let mut rows = Vec::new();
    for _ in 0..passes {
        for (flood, to_port) in [
            (None, port),
            (Some(9), port + 7),
            (Some(9), port),
            (Some(6), port),
        ] {
            let r = measure(&c, port, load_ms, flood, to_port);
            println!("{r}");
            rows.push(r);
        }
    }
    for n in 1..=5 {
        let _ = c.call::<StopLoadReply>(n, &Request::StopLoad);
    }
    c.stop();
    let median = |kind: &str| {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| r["flood"] == kind)
            .map(|r| r["msgs_per_s_per_node"].as_f64().unwrap_or(0.0))
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = median("none");
    println!(
        "{}",
        serde_json::json!({
            "summary": true,
            "passes": passes,
            "measurements_with_a_ring_change": rows.iter().filter(|r| r["ring_changed"] == true).count(),
            "load_ms": load_ms,
            "median_msgs_per_s_per_node": {"none": base, "nowhere": median("nowhere"), "stranger": median("stranger"), "member address": median("member address")},
            "ratio_to_no_flood": {"nowhere": median("nowhere") / base, "stranger": median("stranger") / base, "member address": median("member address") / base},
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}
