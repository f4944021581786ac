//! Sync time against state size, in the simulator (virtual time): 5 nodes; node 1 writes S
//! bytes of checkpoint sections through the ring (the ring's own throughput for that payload,
//! measured until every node holds it all); then node 5 restarts empty, and the sync that
//! follows moves the whole state to it (sync throughput, from the first `sync start` of the
//! new ring to the last `sync done`). Both figures come from the same run.
//!
//! `cargo run --release -p ringlab-bench --bin sync_state [-- SIZES...]` (sizes in bytes;
//! default 1 KiB, 1 MiB, 10 MiB, 100 MiB) prints one JSON line per size.
// A benchmark or test over real processes and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_records::Body;
use ringlab_ring::{Config, MembState};
use ringlab_sim::{NetConfig, Sim};
use ringlab_sync::{registry, CheckpointService, Op, Plugin, ServiceApp};

const MS: u64 = 1_000_000;

fn app(sim: &Sim, id: u32) -> &ServiceApp {
    sim.app(id).expect("app")
}

/// Returns node `id`'s checkpoint digest.
fn digest(sim: &Sim, id: u32) -> [u8; 32] {
    app(sim, id)
        .service(CheckpointService::NAME)
        .expect("the checkpoint service")
        .digest()
}

fn settled(sim: &Sim) -> bool {
    (1..=5).all(|id| {
        sim.ring(id)
            .is_some_and(|r| r.state() == MembState::Operational && r.members().len() == 5)
            && !app(sim, id).engine.is_syncing()
    })
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
    for size in sizes {
        let mut sim = Sim::new(5, 1, Config::default(), NetConfig::default());
        sim.record_messages = false;
        let services = vec![registry::find(CheckpointService::NAME).expect("registered")];
        sim.set_app_factory(move |id| ServiceApp::new(id, &services));
        sim.start_all();
        assert!(sim.run_until_cond(3_000 * MS, settled));
        let section = size.min(512 * 1024);
        let count = size.div_ceil(section);
        let t0 = sim.now();
        {
            let a = sim.app_mut(1).expect("app");
            let id = CheckpointService::ID;
            for i in 0..count {
                let name = format!("c{}", i / 64).into_bytes();
                if i % 64 == 0 {
                    a.queue_op(id, &Op::Create(name.clone()).encode());
                }
                let write = Op::Write(
                    name,
                    (i as u32).to_be_bytes().to_vec(),
                    vec![i as u8; section].into(),
                );
                a.queue_op(id, &write.encode());
            }
        }
        sim.pump(1);
        let total = count * section;
        let done = |s: &Sim| (1..=5).all(|id| app(s, id).state_size().bytes as usize == total);
        assert!(
            sim.run_until_cond(t0 + 3_600_000 * MS, done),
            "the writes reached every node"
        );
        let ring_s = (sim.now() - t0) as f64 / 1e9;
        // Node 5 comes back empty: the sync moves the whole state to it.
        sim.crash(5);
        sim.run_for(3_000 * MS);
        let mark = sim.records().len();
        sim.start(5);
        let t1 = sim.now();
        assert!(sim.run_until_cond(t1 + 3_600_000 * MS, |s| settled(s)
            && app(s, 5).state_size().bytes as usize == total));
        let recs = &sim.records()[mark..];
        let last_start = recs
            .iter()
            .filter(|r| matches!(&r.body, Body::Sync { phase, .. } if phase == "start"))
            .map(|r| r.t_ns)
            .max()
            .expect("a sync started");
        let first_start_of_last = recs
            .iter()
            .filter(|r| r.t_ns >= last_start.saturating_sub(50 * MS))
            .filter(|r| matches!(&r.body, Body::Sync { phase, .. } if phase == "start"))
            .map(|r| r.t_ns)
            .min()
            .expect("a sync started");
        let last_done = recs
            .iter()
            .filter(|r| matches!(&r.body, Body::Sync { phase, .. } if phase == "done"))
            .map(|r| r.t_ns)
            .max()
            .expect("a sync completed");
        let sync_s = (last_done - first_start_of_last) as f64 / 1e9;
        let mb = total as f64 / 1e6;
        let line = serde_json::json!({
            "state_bytes": total,
            "ring_seconds": ring_s,
            "ring_mb_per_s": mb / ring_s,
            "sync_seconds": sync_s,
            "sync_mb_per_s": mb / sync_s,
            "sync_over_ring": (mb / sync_s) / (mb / ring_s),
            "digests_equal": (2..=5).all(|id| digest(&sim, id) == digest(&sim, 1)),
        });
        println!("{line}");
    }
}
