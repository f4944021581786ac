//! The store service in the simulator: writes through the ring, a restarted node brought
//! back by the recent path, a minority that applies nothing.

use ringlab_records::Body;
use ringlab_ring::{Config, NodeId};
use ringlab_sim::checker;
use ringlab_sim::{NetConfig, Sim};
use ringlab_sync::store::service::Status;
use ringlab_sync::store::StoreService;
use ringlab_sync::{registry, Plugin, ServiceApp};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;

fn cluster(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(n, seed, Config::default(), NetConfig::default());
    let services = vec![registry::find(StoreService::NAME).unwrap()];
    let nodes = sim.ids();
    sim.set_app_factory(move |id| {
        ServiceApp::with_config(id, &services, &nodes, &BTreeMap::new()).unwrap()
    });
    sim
}

fn cmd(sim: &mut Sim, id: NodeId, args: &[&str]) -> serde_json::Value {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let req = registry::find(StoreService::NAME)
        .unwrap()
        .parse_args(&args)
        .unwrap();
    let r = sim
        .app_mut(id)
        .unwrap()
        .control(StoreService::NAME, &req, u64::MAX)
        .unwrap();
    sim.pump(id);
    r
}

fn status(sim: &mut Sim, id: NodeId) -> Status {
    serde_json::from_value(cmd(sim, id, &["status"])).unwrap()
}

#[test]
fn writes_apply_everywhere_and_a_restarted_node_catches_up_from_the_log() {
    let mut sim = cluster(3, 1);
    sim.start_all();
    sim.run_for(2_000 * MS);
    for i in 0..50 {
        cmd(
            &mut sim,
            1 + (i % 3) as NodeId,
            &["put", &format!("key=k{i}"), "value=v"],
        );
        sim.run_for(5 * MS);
    }
    sim.run_for(1_000 * MS);
    let s: Vec<Status> = (1..=3).map(|id| status(&mut sim, id)).collect();
    assert_eq!(s[0].version, 50, "{s:?}");
    assert!(s
        .iter()
        .all(|x| x.digest == s[0].digest && x.standing == "serving"));
    sim.crash(3);
    sim.run_for(3_000 * MS);
    for i in 50..80 {
        cmd(&mut sim, 1, &["put", &format!("key=k{i}"), "value=w"]);
        sim.run_for(5 * MS);
    }
    sim.run_for(1_000 * MS);
    sim.start(3);
    sim.run_for(5_000 * MS);
    let s: Vec<Status> = (1..=3).map(|id| status(&mut sim, id)).collect();
    assert_eq!(s[2].version, 80, "{s:?}");
    assert_eq!(s[2].digest, s[0].digest);
    assert_eq!(s[2].standing, "serving");
    let got = cmd(&mut sim, 3, &["get", "key=k60"]);
    assert_eq!(got["value"], "w");
    let stores = sim
        .records()
        .iter()
        .filter(|r| matches!(r.body, Body::Store { .. }))
        .count();
    assert!(stores > 0);
    assert!(checker::check(sim.records(), None).violations.is_empty());
}

#[test]
fn a_minority_applies_no_write() {
    let mut sim = cluster(3, 2);
    sim.start_all();
    sim.run_for(2_000 * MS);
    sim.partition(&[&[1], &[2, 3]]);
    sim.run_for(4_000 * MS);
    cmd(&mut sim, 1, &["put", "key=a", "value=1"]);
    cmd(&mut sim, 2, &["put", "key=b", "value=2"]);
    sim.run_for(1_000 * MS);
    assert_eq!(status(&mut sim, 1).version, 0);
    assert!(status(&mut sim, 1).not_applied >= 1);
    assert_eq!(status(&mut sim, 2).version, 1);
    sim.heal();
    sim.run_for(5_000 * MS);
    assert_eq!(status(&mut sim, 1).version, 1);
    assert!(checker::check(sim.records(), None).violations.is_empty());
}

#[test]
fn a_node_restarted_on_its_disk_comes_back_from_where_it_was() {
    use ringlab_sync::{SimDisks, Storage};
    let mut sim = Sim::new(3, 3, Config::default(), NetConfig::default());
    let services = vec![registry::find(StoreService::NAME).unwrap()];
    let nodes = sim.ids();
    let disks: BTreeMap<NodeId, SimDisks> =
        nodes.iter().map(|&id| (id, SimDisks::default())).collect();
    let d = disks.clone();
    sim.set_app_factory(move |id| {
        let storage = Storage::Sim(d[&id].clone());
        ServiceApp::with_storage(id, &services, &nodes, &BTreeMap::new(), &storage).unwrap()
    });
    sim.start_all();
    sim.run_for(2_000 * MS);
    for i in 0..20 {
        cmd(&mut sim, 1, &["put", &format!("key=k{i}"), "value=v"]);
        sim.run_for(5 * MS);
    }
    sim.run_for(1_000 * MS);
    sim.crash(3);
    sim.run_for(3_000 * MS);
    for i in 20..30 {
        cmd(&mut sim, 1, &["put", &format!("key=k{i}"), "value=v"]);
        sim.run_for(5 * MS);
    }
    sim.run_for(500 * MS);
    sim.start(3);
    // Before it joins, its store is where it was: 20 writes, from its disk.
    assert_eq!(status(&mut sim, 3).version, 20);
    sim.run_for(5_000 * MS);
    assert_eq!(status(&mut sim, 3).version, 30);
    assert_eq!(status(&mut sim, 3).digest, status(&mut sim, 1).digest);
    // On a new disk it starts empty and comes back from the log (30 writes, within it).
    sim.crash(2);
    disks[&2].wipe();
    sim.run_for(3_000 * MS);
    sim.start(2);
    assert_eq!(status(&mut sim, 2).version, 0);
    sim.run_for(5_000 * MS);
    assert_eq!(status(&mut sim, 2).version, 30);
    assert!(checker::check(sim.records(), None).violations.is_empty());
}

#[test]
fn a_node_too_far_behind_for_the_log_gets_a_full_copy_on_the_ring() {
    use ringlab_sync::{SimDisks, Storage};
    let mut sim = Sim::new(3, 4, Config::default(), NetConfig::default());
    let services = vec![registry::find(StoreService::NAME).unwrap()];
    let nodes = sim.ids();
    let disks: BTreeMap<NodeId, SimDisks> =
        nodes.iter().map(|&id| (id, SimDisks::default())).collect();
    let d = disks.clone();
    let sections = BTreeMap::from([(
        StoreService::NAME.to_string(),
        serde_json::json!({ "log_keep": 5, "path": "ring" }),
    )]);
    sim.set_app_factory(move |id| {
        let storage = Storage::Sim(d[&id].clone());
        ServiceApp::with_storage(id, &services, &nodes, &sections, &storage).unwrap()
    });
    sim.start_all();
    sim.run_for(2_000 * MS);
    for i in 0..10 {
        cmd(&mut sim, 1, &["put", &format!("key=k{i}"), "value=v"]);
        sim.run_for(5 * MS);
    }
    sim.run_for(1_000 * MS);
    sim.crash(3);
    sim.run_for(3_000 * MS);
    for i in 10..40 {
        cmd(&mut sim, 1, &["put", &format!("key=k{i}"), "value=w"]);
        sim.run_for(5 * MS);
    }
    sim.run_for(500 * MS);
    sim.start(3);
    assert_eq!(status(&mut sim, 3).version, 10);
    sim.run_for(5_000 * MS);
    // 30 writes behind with a log of 5: copied whole, then serving at the target.
    let s3 = status(&mut sim, 3);
    assert_eq!((s3.version, s3.standing.as_str()), (40, "serving"));
    assert_eq!(s3.digest, status(&mut sim, 1).digest);
    assert_eq!(cmd(&mut sim, 3, &["get", "key=k33"])["value"], "w");
    let phases: Vec<String> = sim
        .records()
        .iter()
        .filter(|r| r.node == 3)
        .filter_map(|r| match &r.body {
            Body::StoreSync { phase, keys, .. } => Some(format!("{phase} {keys}")),
            _ => None,
        })
        .collect();
    assert!(phases.iter().any(|p| p.starts_with("start")), "{phases:?}");
    assert!(phases.contains(&"finish 40".to_string()), "{phases:?}");
    assert!(checker::check(sim.records(), None).violations.is_empty());
}
