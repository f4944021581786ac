//! Reintegration time against the number of records and the share of conflicts, in the
//! simulator (virtual time): 5 nodes running `kml` split into {1,2,3} (the permit side) and
//! {4,5}; node 4 submits N random operations (`fill`) while node 1 submits M on the same
//! tree (M = 0: no conflict; the more M, the more of the minority's records conflict); then
//! the partition heals, and the merge's sync undoes the minority's records on nodes 4 and 5,
//! replays the permit side's and reintegrates the minority's everywhere. Figures: the sync's
//! virtual time (the new ring's first `sync` `start` to the last `kml` `reint_done`), the
//! records reintegrated, the conflicts, the wall-clock time of the heal phase, and whether
//! every node ends with the same fileset digest.
//!
//! `cargo run --release -p ringlab-bench --bin kml_reint [-- N:M ...]` (default 100:0 100:10
//! 100:100 10000:0 10000:1000 10000:10000 100000:0 100000:10000) prints one JSON line each.
// A benchmark over the simulator and wall-clock time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_records::Body;
use ringlab_ring::{Config, MembState};
use ringlab_sim::{NetConfig, Sim};
use ringlab_sync::kml::KmlService;
use ringlab_sync::{registry, Plugin, ServiceApp};
use std::time::Instant;

const MS: u64 = 1_000_000;

fn app(sim: &Sim, id: u32) -> &ServiceApp {
    sim.app(id).expect("app")
}

fn kml(sim: &Sim, id: u32) -> &dyn ringlab_sync::Service {
    app(sim, id).service(KmlService::NAME).expect("kml")
}

fn settled(sim: &Sim, groups: &[&[u32]]) -> bool {
    groups.iter().all(|g| {
        g.iter().all(|&id| {
            sim.ring(id).is_some_and(|r| {
                r.state() == MembState::Operational && r.members().len() == g.len()
            }) && !app(sim, id).engine.is_syncing()
        })
    })
}

fn fill(sim: &mut Sim, id: u32, records: u64, seed: u64) {
    if records == 0 {
        return;
    }
    let args: Vec<String> = [
        "fill",
        &format!("records={records}"),
        &format!("seed={seed}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let req = registry::find(KmlService::NAME)
        .expect("registered")
        .parse_args(&args)
        .expect("a fill");
    sim.app_mut(id)
        .expect("app")
        .control(KmlService::NAME, &req, u64::MAX)
        .expect("fill accepted");
    sim.pump(id);
}

fn main() {
    let specs: Vec<(u64, u64)> = {
        let a: Vec<(u64, u64)> = std::env::args()
            .skip(1)
            .filter_map(|s| {
                let (n, m) = s.split_once(':')?;
                Some((n.parse().ok()?, m.parse().ok()?))
            })
            .collect();
        if a.is_empty() {
            vec![
                (100, 0),
                (100, 10),
                (100, 100),
                (10_000, 0),
                (10_000, 1000),
                (10_000, 10_000),
                (100_000, 0),
                (100_000, 10_000),
            ]
        } else {
            a
        }
    };
    for (n, m) in specs {
        let mut sim = Sim::new(5, 1, Config::default(), NetConfig::default());
        sim.record_messages = false;
        let services = vec![registry::find(KmlService::NAME).expect("registered")];
        sim.set_app_factory(move |id| ServiceApp::new(id, &services));
        sim.start_all();
        assert!(sim.run_until_cond(3_000 * MS, |s| settled(s, &[&[1, 2, 3, 4, 5]])));
        // A common tree first.
        fill(&mut sim, 1, 200, 7);
        let t = sim.now();
        assert!(sim.run_until_cond(t + 60_000 * MS, |s| {
            (1..=5).all(|id| kml(s, id).size().items > 1) && settled(s, &[&[1, 2, 3, 4, 5]])
        }));
        sim.run_for(500 * MS);
        sim.partition(&[&[1, 2, 3], &[4, 5]]);
        let t = sim.now();
        assert!(sim.run_until_cond(t + 30_000 * MS, |s| settled(s, &[&[1, 2, 3], &[4, 5]])));
        let wall = Instant::now();
        fill(&mut sim, 4, n, 11);
        fill(&mut sim, 1, m, 13);
        let digest_of = |s: &Sim, id: u32| kml(s, id).digest();
        let t = sim.now();
        // Both sides have applied their operations: each side's members agree and stop moving.
        let mut last = (0, 0);
        let mut still = 0;
        sim.run_until_cond(t + 3_600_000 * MS, |s| {
            let a = app(s, 1).queued_ops() + app(s, 4).queued_ops();
            let now = (kml(s, 1).size().items, kml(s, 4).size().items);
            if a == 0
                && now == last
                && digest_of(s, 1) == digest_of(s, 2)
                && digest_of(s, 4) == digest_of(s, 5)
            {
                still += 1;
            } else {
                still = 0;
            }
            last = now;
            still > 200
        });
        let fill_wall = wall.elapsed().as_secs_f64();
        let mark = sim.records().len();
        let heal_at = sim.now();
        let wall = Instant::now();
        sim.heal();
        assert!(sim.run_until_cond(heal_at + 3_600_000 * MS, |s| settled(
            s,
            &[&[1, 2, 3, 4, 5]]
        ) && (2..=5)
            .all(|id| digest_of(s, id) == digest_of(s, 1))));
        let heal_wall = wall.elapsed().as_secs_f64();
        let recs = &sim.records()[mark..];
        let kml_recs = |phase: &str| -> Vec<&ringlab_records::Record> {
            recs.iter()
                .filter(|r| matches!(&r.body, Body::Kml { phase: p, .. } if p == phase))
                .collect()
        };
        let done = kml_recs("reint_done");
        let starts = kml_recs("reint_start");
        let last_done = done.iter().map(|r| r.t_ns).max().expect("a reintegration");
        let first_start = starts
            .iter()
            .filter(|r| r.t_ns <= last_done)
            .map(|r| r.t_ns)
            .max()
            .expect("a reintegration started");
        let (applied, conflicts) = match &done.last().expect("done").body {
            Body::Kml {
                records, conflicts, ..
            } => (records.unwrap_or(0), conflicts.unwrap_or(0)),
            _ => unreachable!(),
        };
        let undone: u64 = kml_recs("undo")
            .iter()
            .filter(|r| r.node == 4)
            .rev()
            .find_map(|r| match &r.body {
                Body::Kml { records, .. } => *records,
                _ => None,
            })
            .unwrap_or(0);
        let line = serde_json::json!({
            "minority_ops": n,
            "permit_ops": m,
            "reintegrated": applied + conflicts,
            "applied": applied,
            "conflicts": conflicts,
            "conflict_share": if applied + conflicts > 0 { conflicts as f64 / (applied + conflicts) as f64 } else { 0.0 },
            "undone_on_node4": undone,
            "aborted_attempts": kml_recs("abort").len(),
            "reint_virtual_ms": (last_done - first_start) as f64 / 1e6,
            "heal_to_done_virtual_ms": (last_done - heal_at) as f64 / 1e6,
            "heal_wall_s": heal_wall,
            "fill_wall_s": fill_wall,
            "digests_equal": (2..=5).all(|id| digest_of(&sim, id) == digest_of(&sim, 1)),
        });
        println!("{line}");
    }
}
