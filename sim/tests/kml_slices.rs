//! The kml service's merge work in slices (`reint_slice`, `Sim::work_slice_ns`): with slices
//! that take virtual time the node's ring runs on while its application holds its inputs
//! in a backlog, and every node still ends with one fileset; with slices that take none the
//! records are exactly those of one call, whatever the slice's size.

// Independent seeds run on several threads; each run is single-threaded and deterministic.
#![allow(clippy::disallowed_methods)]

use ringlab_records::Body;
use ringlab_ring::{Config, MembState, NodeId};
use ringlab_sim::checker;
use ringlab_sim::{run, Faults, NetConfig, RunConfig, Sim};
use ringlab_sync::kml::KmlService;
use ringlab_sync::{registry, Plugin, ServiceApp};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;

fn app(sim: &Sim, id: NodeId) -> &ServiceApp {
    sim.app(id).expect("app")
}

fn digest(sim: &Sim, id: NodeId) -> [u8; 32] {
    app(sim, id)
        .service(KmlService::NAME)
        .expect("kml")
        .digest()
}

fn settled(sim: &Sim, groups: &[&[NodeId]]) -> bool {
    groups.iter().all(|g| {
        g.iter().all(|&id| {
            sim.ring(id).is_some_and(|r| {
                r.state() == MembState::Operational && r.members().len() == g.len()
            }) && !app(sim, id).engine.is_syncing()
                && !app(sim, id).has_work()
        })
    })
}

fn fill(sim: &mut Sim, id: NodeId, records: u64, seed: u64) {
    let args: Vec<String> = [
        "fill",
        &format!("records={records}"),
        &format!("seed={seed}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let req = registry::find(KmlService::NAME)
        .unwrap()
        .parse_args(&args)
        .unwrap();
    sim.app_mut(id)
        .unwrap()
        .control(KmlService::NAME, &req, u64::MAX)
        .unwrap();
    sim.pump(id);
}

/// Splits 5 nodes into {1,2,3} and {4,5}; node 4 makes `minority` records and node 1
/// `permit`, then the partition heals with each slice of `slice` records taking
/// `slice_ns` (node 1 submitting `during` operations once node 4 works). Returns the simulator once every node has settled.
fn merge(minority: u64, permit: u64, slice: usize, slice_ns: u64, during: u64) -> Sim {
    let mut sim = Sim::new(5, 1, Config::default(), NetConfig::default());
    sim.work_slice_ns = slice_ns;
    let services = vec![registry::find(KmlService::NAME).unwrap()];
    let nodes = sim.ids();
    let sections: BTreeMap<String, serde_json::Value> = [(
        "kml".to_string(),
        serde_json::json!({ "reint_slice": slice }),
    )]
    .into();
    sim.set_app_factory(move |id| {
        ServiceApp::with_config(id, &services, &nodes, &sections).unwrap()
    });
    sim.start_all();
    assert!(sim.run_until_cond(3_000 * MS, |s| settled(s, &[&[1, 2, 3, 4, 5]])));
    fill(&mut sim, 1, 200, 7);
    sim.run_for(3_000 * MS);
    sim.partition(&[&[1, 2, 3], &[4, 5]]);
    let t = sim.now();
    assert!(sim.run_until_cond(t + 30_000 * MS, |s| settled(s, &[&[1, 2, 3], &[4, 5]])));
    fill(&mut sim, 4, minority, 11);
    fill(&mut sim, 1, permit, 13);
    let t = sim.now();
    assert!(sim.run_until_cond(t + 600_000 * MS, |s| {
        app(s, 1).queued_ops() + app(s, 4).queued_ops() == 0 && settled(s, &[&[1, 2, 3], &[4, 5]])
    }));
    sim.run_for(1_000 * MS);
    sim.heal();
    let t = sim.now();
    if during > 0 {
        // Operations while the minority's nodes work: their deliveries wait in the backlog.
        if sim.run_until_cond(t + 60_000 * MS, |s| app(s, 4).has_work()) {
            fill(&mut sim, 1, during, 17);
        }
    }
    assert!(sim.run_until_cond(t + 600_000 * MS, |s| {
        settled(s, &[&[1, 2, 3, 4, 5]]) && (2..=5).all(|id| digest(s, id) == digest(s, 1))
    }));
    sim.run_for(2_000 * MS);
    sim
}

/// Returns node `id`'s `kml` records of `phase`.
fn phase(sim: &Sim, id: NodeId, phase: &str) -> usize {
    sim.records()
        .iter()
        .filter(|r| r.node == id && matches!(&r.body, Body::Kml { phase: p, .. } if p == phase))
        .count()
}

#[test]
fn a_merge_of_10000_records_in_slices_of_100_taking_1_ms_each_converges() {
    let sim = merge(10_000, 1_000, 100, MS, 50);
    for id in 1..=5 {
        assert_eq!(digest(&sim, id), digest(&sim, 1), "node {id}");
        assert!(phase(&sim, id, "reint_done") >= 1, "node {id} reintegrated");
        assert!(!app(&sim, id).has_work() && app(&sim, id).backlog() == 0);
    }
    // The minority's nodes undid and replayed over many slices, their inputs held meanwhile.
    assert!(
        app(&sim, 4).backlog_peak() > 0,
        "the backlog was used: {}",
        app(&sim, 4).backlog_peak()
    );
    // One fileset digest in every node's last fileset record.
    let mut last: BTreeMap<NodeId, String> = BTreeMap::new();
    for r in sim.records() {
        if let Body::Fileset { digest, .. } = &r.body {
            last.insert(r.node, digest.clone());
        }
    }
    assert_eq!(last.len(), 5);
    assert!(last.values().all(|d| d == &last[&1]), "{last:?}");
    let c = checker::check(sim.records(), None);
    assert!(c.violations.is_empty(), "{:?}", c.violations);
}

#[test]
fn slices_that_take_no_time_give_the_records_of_one_call() {
    let a = merge(2_000, 300, 1_000_000, 0, 0);
    let b = merge(2_000, 300, 7, 0, 0);
    assert_eq!(a.records(), b.records());
    for id in 1..=5 {
        assert_eq!(app(&b, id).backlog_peak(), 0);
    }
}

#[test]
fn slices_that_take_time_end_in_the_same_fileset_as_one_call() {
    let a = merge(2_000, 300, 1_000_000, 0, 0);
    let b = merge(2_000, 300, 50, 2 * MS, 0);
    for id in 1..=5 {
        assert_eq!(digest(&a, id), digest(&b, id), "node {id}");
    }
    let c = checker::check(b.records(), None);
    assert!(c.violations.is_empty(), "{:?}", c.violations);
}

/// A mixed-fault sweep whose records must not depend on the slice's size when slices take
/// no virtual time.
#[test]
fn a_faulty_run_gives_the_same_records_whatever_the_slice() {
    for seed in [1u64, 2, 3] {
        let cfg = |slice: usize| RunConfig {
            seed,
            nodes: 5,
            faults: Faults::parse("partition,merge,crash,restart,pause").unwrap(),
            services: vec![registry::find(KmlService::NAME).unwrap()],
            service_config: [(
                "kml".to_string(),
                serde_json::json!({ "reint_slice": slice }),
            )]
            .into(),
            load_interval_ms: 50,
            ..RunConfig::default()
        };
        let a = run(&cfg(1000));
        let b = run(&cfg(1));
        assert!(a.records == b.records, "seed {seed}");
    }
}

/// The same faults with slices of 1 ms: the checker finds nothing and the nodes agree.
#[test]
fn a_faulty_run_with_slow_slices_is_clean() {
    for seed in [1u64, 2, 3, 4] {
        let c = RunConfig {
            seed,
            nodes: 5,
            faults: Faults::parse("partition,merge,crash,restart,pause").unwrap(),
            services: vec![registry::find(KmlService::NAME).unwrap()],
            service_config: [("kml".to_string(), serde_json::json!({ "reint_slice": 5 }))].into(),
            load_interval_ms: 50,
            work_slice_ns: MS,
            ..RunConfig::default()
        };
        let r = run(&c);
        assert!(
            r.check.violations.is_empty(),
            "seed {seed}: {:?}",
            r.check.violations
        );
        assert_eq!(r.state_mismatches, 0, "seed {seed}: {:?}", r.state_details);
    }
}
