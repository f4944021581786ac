//! Sync time against state size on loopback with real nodes: 5 `ringlab node` processes
//! running the checkpoint service; node 1 writes S bytes of sections through the ring (the
//! ring's throughput for that payload, until every node holds it all); then node 5 is killed
//! and restarted empty, and the sync that follows moves the whole state to it (from the first
//! `sync start` of the new ring to the last `sync done`, from the nodes' own records). Both
//! figures come from the same run.
//!
//! `cargo build --release -p ringlab && cargo run --release -p ringlab-bench --bin
//! sync_loopback [-- SIZES...]` (bytes; default 1 KiB, 1 MiB, 10 MiB, 100 MiB): one JSON line
//! per size.
// A benchmark or test over real processes and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_net::control::{Request, SyncStats};
use ringlab_net::harness::{Cluster, Key, Spec};
use ringlab_net::{monotonic_ns, Transport};
use ringlab_records::Body;
use ringlab_ring::Config;
use ringlab_sync::checkpoint::{Command, DigestReply, FillReply};
use ringlab_sync::{CheckpointService, Plugin};
use std::time::Duration;

/// Returns node `id`'s sync counters; `None` while it does not answer.
fn stat(c: &Cluster, id: u32) -> Option<SyncStats> {
    c.stats(id).ok().and_then(|s| s.sync)
}

/// Returns the control request of checkpoint command `cmd`.
fn checkpoint(cmd: Command) -> Request {
    Request::Svc {
        service: CheckpointService::NAME.into(),
        request: serde_json::to_value(cmd).expect("a command serialises"),
    }
}

/// Returns whether node `id` holds `total` bytes of state.
fn holds(c: &Cluster, id: u32, total: usize) -> bool {
    stat(c, id).is_some_and(|s| s.state_bytes == total as u64)
}

fn main() {
    let sizes: Vec<usize> = {
        let a: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|s| s.parse().ok())
            .collect();
        if a.is_empty() {
            vec![1 << 10, 1 << 20, 10 << 20, 100 << 20]
        } else {
            a
        }
    };
    let binary = std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("target dir")
        .join("ringlab");
    for (k, size) in sizes.into_iter().enumerate() {
        let dir =
            std::env::temp_dir().join(format!("ringlab-sync-bench-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Cluster::start(Spec {
            nodes: 5,
            transport: Transport::Unicast,
            totem: Config::default(),
            port: 9405 + 10 * k as u16,
            group: [239, 192, 76, 9].into(),
            dir: dir.clone(),
            key: Key::None,
            record_messages: false,
            record_every: 1,
            binary: binary.clone(),
            batched_io: true,
            ipv6: false,
            services: vec![CheckpointService::NAME.into()],
            service_config: Default::default(),
            netns: None,
            implementation: ringlab_net::harness::Implementation::Ringlab,
        })
        .expect("cluster");
        let ids = [1, 2, 3, 4, 5];
        c.wait_ring(&ids, Duration::from_secs(20)).expect("ring");
        let section = size.clamp(1, 512 * 1024);
        let total = size.div_ceil(section) * section;
        let t0 = monotonic_ns();
        c.call::<FillReply>(1, &checkpoint(Command::Fill { bytes: size }))
            .expect("fill");
        while ids.iter().any(|&i| !holds(&c, i, total)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let ring_s = (monotonic_ns() - t0) as f64 / 1e9;
        c.kill(5);
        c.wait_ring(&[1, 2, 3, 4], Duration::from_secs(20))
            .expect("4-ring");
        std::thread::sleep(Duration::from_millis(200));
        let mark = monotonic_ns();
        c.spawn(5).expect("restart");
        while !holds(&c, 5, total) || ids.iter().any(|&i| stat(&c, i).is_none_or(|s| s.syncing)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let digests: Vec<Option<String>> = ids
            .iter()
            .map(|&i| {
                c.call::<DigestReply>(i, &checkpoint(Command::Digest))
                    .map(|r| r.digest)
                    .ok()
            })
            .collect();
        assert!(
            digests.iter().all(|d| d.is_some()),
            "every node reported a digest"
        );
        c.stop();
        let recs: Vec<_> = c
            .records()
            .expect("records")
            .into_iter()
            .filter(|r| r.t_ns >= mark)
            .collect();
        let phase_times = |p: &str| -> Vec<u64> {
            recs.iter()
                .filter(|r| matches!(&r.body, Body::Sync { phase, .. } if phase == p))
                .map(|r| r.t_ns)
                .collect()
        };
        let starts = phase_times("start");
        let last_start = *starts.iter().max().expect("a sync started");
        let first = starts
            .iter()
            .copied()
            .filter(|&t| t + 50_000_000 >= last_start)
            .min()
            .expect("start");
        let done = *phase_times("done").iter().max().expect("a sync completed");
        let sync_s = (done - first) as f64 / 1e9;
        let mb = total as f64 / 1e6;
        println!(
            "{}",
            serde_json::json!({
                "state_bytes": total,
                "ring_seconds": ring_s,
                "ring_mb_per_s": mb / ring_s,
                "sync_seconds": sync_s,
                "sync_mb_per_s": mb / sync_s,
                "sync_over_ring": (mb / sync_s) / (mb / ring_s),
                "digests_equal": digests.iter().all(|d| *d == digests[0]),
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
