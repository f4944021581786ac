//! The resources service in the simulator: start-up (simultaneous, staggered), splits and
//! heals, crashes and restarts, `two_node`, the seed's `heartbeat2000` policy (whose double
//! ownership the checker must find) and a seed sweep with random faults. Every scenario is
//! judged by the checker on the records alone.

use ringlab_records::Body;
use ringlab_ring::{Config, NodeId};
use ringlab_sim::checker::{self, Liveness, Property, Report};
use ringlab_sim::run::{liveness_bound, run, service_agreement, Faults, RunConfig};
use ringlab_sim::{NetConfig, Sim};
use ringlab_sync::resources::Status;
use ringlab_sync::{registry, Action, ActionResult, Plugin, ResourcesService, ServiceApp, Verb};
use serde_json::json;
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;

/// Long enough for a membership change, the sync and the takeover delay of a free group.
const SETTLE: u64 = 7_000 * MS;

fn sections(section: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([(ResourcesService::NAME.to_string(), section)])
}

/// A cluster of `n` running the resources service with `section` (start and stop timeouts
/// of 500 ms unless it says otherwise, so that the settle bound fits the scenarios), not
/// started.
fn cluster(n: usize, seed: u64, mut section: serde_json::Value) -> Sim {
    for knob in ["start_timeout_ms", "stop_timeout_ms"] {
        if section.get(knob).is_none() {
            section[knob] = json!(500);
        }
    }
    let mut sim = Sim::new(n, seed, Config::default(), NetConfig::default());
    let services = vec![registry::find(ResourcesService::NAME).unwrap()];
    let nodes = sim.ids();
    let secs = sections(section);
    ServiceApp::with_config(1, &services, &nodes, &secs).unwrap();
    sim.set_app_factory(move |id| ServiceApp::with_config(id, &services, &nodes, &secs).unwrap());
    sim
}

fn groups() -> serde_json::Value {
    json!([{"name": "web", "home": 2}, {"name": "db", "home": 3}, {"name": "mail", "home": 9}])
}

fn status(sim: &mut Sim, id: NodeId) -> Status {
    let req = registry::find(ResourcesService::NAME)
        .unwrap()
        .parse_args(&["status".to_string()])
        .unwrap();
    let reply = sim
        .app_mut(id)
        .unwrap()
        .control(ResourcesService::NAME, &req, u64::MAX)
        .unwrap();
    serde_json::from_value(reply).unwrap()
}

/// Group → the nodes running it, over the nodes up.
fn holders(sim: &mut Sim) -> BTreeMap<String, Vec<NodeId>> {
    let mut out: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for id in sim.ids() {
        if sim.is_up(id) {
            for g in status(sim, id).running {
                out.entry(g).or_default().push(id);
            }
        }
    }
    out
}

fn held(pairs: &[(&str, &[NodeId])]) -> BTreeMap<String, Vec<NodeId>> {
    pairs
        .iter()
        .map(|(g, ns)| (g.to_string(), ns.to_vec()))
        .collect()
}

/// Settles, then judges the whole run with liveness from `faults_end`.
fn judge(sim: &mut Sim, faults_end: u64) -> Report {
    let bound = liveness_bound(&Config::default());
    // As `run` does: the bound, then a probe's time.
    sim.run_until(faults_end + bound + 3_000 * MS);
    let live: Vec<NodeId> = sim.ids().into_iter().filter(|&i| sim.is_up(i)).collect();
    let (mismatches, _, details) = service_agreement(sim, &live);
    assert_eq!(mismatches, 0, "{details:?}");
    let r = checker::check(
        sim.records(),
        Some(&Liveness {
            faults_end,
            bound,
            live,
            end: sim.now(),
        }),
    );
    // The last configuration lasted past its settle bound: its placement was judged.
    assert!(
        r.settled_judged > 0,
        "no stable primary configuration judged"
    );
    r
}

/// Judges the run with liveness from now (the faults just ended): no violation.
fn judge_clean_from_now(sim: &mut Sim) {
    let t = sim.now();
    clean(&judge(sim, t));
}

fn clean(r: &Report) {
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

fn count(sim: &Sim, action: &str) -> usize {
    sim.records()
        .iter()
        .filter(|r| matches!(&r.body, Body::Resource { action: a, .. } if a == action))
        .count()
}

#[test]
fn simultaneous_start_places_every_group_once() {
    let mut sim = cluster(5, 1, json!({ "resources": groups() }));
    sim.start_all();
    let r = judge(&mut sim, 0);
    clean(&r);
    // web home 2, db home 3, mail's home is not configured: lowest.
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[2]), ("db", &[3]), ("mail", &[1])])
    );
    assert_eq!(count(&sim, "stop"), 0);
    let s = status(&mut sim, 4);
    assert!(s.primary);
    assert_eq!(s.quorum, 3);
    assert_eq!(s.holders.len(), 3);
}

#[test]
fn staggered_start_waits_for_quorum_and_joins_move_nothing() {
    let mut sim = cluster(5, 2, json!({ "resources": groups() }));
    for id in [4, 5, 1] {
        sim.start(id);
        sim.run_for(SETTLE);
        // Nothing held before three nodes.
        if id != 1 {
            assert!(holders(&mut sim).is_empty());
        }
    }
    // {1,4,5}: web and db go to the lowest (their homes are absent).
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[1]), ("db", &[1]), ("mail", &[1])])
    );
    sim.start(2);
    sim.start(3);
    judge_clean_from_now(&mut sim);
    // No auto_failback: the joins moved nothing.
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[1]), ("db", &[1]), ("mail", &[1])])
    );
    assert_eq!(count(&sim, "stop"), 0);
}

#[test]
fn a_start_while_one_node_is_partitioned_away() {
    let mut sim = cluster(
        5,
        3,
        json!({ "resources": groups(), "auto_failback": true }),
    );
    sim.partition(&[&[2], &[1, 3, 4, 5]]);
    sim.start_all();
    sim.run_for(SETTLE);
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[1]), ("db", &[3]), ("mail", &[1])])
    );
    sim.heal();
    judge_clean_from_now(&mut sim);
    // auto_failback: web went home once 2 came back.
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[2]), ("db", &[3]), ("mail", &[1])])
    );
}

#[test]
fn a_split_2_3_stops_the_minority_and_the_heal_keeps_the_majority_placement() {
    let mut sim = cluster(5, 4, json!({ "resources": groups() }));
    sim.start_all();
    sim.run_for(SETTLE);
    sim.partition(&[&[1, 2], &[3, 4, 5]]);
    sim.run_for(SETTLE);
    // The minority {1,2} stopped web and mail; the majority took them.
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[3]), ("db", &[3]), ("mail", &[3])])
    );
    assert!(!status(&mut sim, 1).primary);
    sim.heal();
    judge_clean_from_now(&mut sim);
    // No auto_failback: the heal (a join for the majority) moved nothing.
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[3]), ("db", &[3]), ("mail", &[3])])
    );
}

#[test]
fn a_split_1_1_3_and_heal() {
    let mut sim = cluster(
        5,
        5,
        json!({ "resources": groups(), "auto_failback": true }),
    );
    sim.start_all();
    sim.run_for(SETTLE);
    sim.partition(&[&[1], &[3], &[2, 4, 5]]);
    sim.run_for(SETTLE);
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[2]), ("db", &[2]), ("mail", &[2])])
    );
    sim.heal();
    judge_clean_from_now(&mut sim);
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[2]), ("db", &[3]), ("mail", &[2])])
    );
}

#[test]
fn the_holder_crashing_moves_its_groups() {
    let mut sim = cluster(5, 6, json!({ "resources": groups() }));
    sim.start_all();
    sim.run_for(SETTLE);
    sim.crash(3);
    judge_clean_from_now(&mut sim);
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[2]), ("db", &[1]), ("mail", &[1])])
    );
}

fn home_restart(auto_failback: bool) -> BTreeMap<String, Vec<NodeId>> {
    let mut sim = cluster(
        5,
        7,
        json!({ "resources": groups(), "auto_failback": auto_failback }),
    );
    sim.start_all();
    sim.run_for(SETTLE);
    sim.crash(2);
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim)["web"], vec![1]);
    sim.start(2);
    judge_clean_from_now(&mut sim);
    holders(&mut sim)
}

#[test]
fn the_home_node_restarting_takes_its_group_back_only_with_auto_failback() {
    assert_eq!(home_restart(true)["web"], vec![2]);
    assert_eq!(home_restart(false)["web"], vec![1]);
}

#[test]
fn two_node_waits_for_both_then_survives_one() {
    let two = json!({ "resources": [{"name": "web", "home": 1}, {"name": "db", "home": 2}],
                      "two_node": true });
    let mut sim = cluster(2, 8, two.clone());
    // Alone at first: wait_for_all holds it back.
    sim.start(2);
    sim.run_for(SETTLE);
    assert!(holders(&mut sim).is_empty());
    assert!(!status(&mut sim, 2).primary);
    sim.start(1);
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim), held(&[("web", &[1]), ("db", &[2])]));
    // One of two is quorate once both were seen.
    sim.crash(1);
    judge_clean_from_now(&mut sim);
    assert_eq!(holders(&mut sim), held(&[("web", &[2]), ("db", &[2])]));
    // A bad two_node config is refused, naming the key.
    let services = vec![registry::find(ResourcesService::NAME).unwrap()];
    let e = ServiceApp::with_config(1, &services, &[1, 2, 3], &sections(two))
        .err()
        .unwrap();
    assert!(e.to_string().contains("two_node"), "{e}");
}

#[test]
fn two_node_in_a_1_1_split_holds_twice_unless_the_tie_breaker_decides() {
    let cfg = |atb: bool| {
        json!({ "resources": [{"name": "web", "home": 1}, {"name": "db", "home": 2}],
                "two_node": true, "auto_tie_breaker": atb })
    };
    // two_node alone: both halves quorate, each takes the other's group, and the checker
    // finds the double ownership (the reason votequorum's two_node needs fencing).
    let mut sim = cluster(2, 18, cfg(false));
    sim.start_all();
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim), held(&[("web", &[1]), ("db", &[2])]));
    sim.partition(&[&[1], &[2]]);
    sim.run_for(SETTLE);
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[1, 2]), ("db", &[1, 2])])
    );
    let r = checker::check(sim.records(), None);
    assert!(
        r.violations
            .iter()
            .any(|v| v.property == Property::TwoHolders),
        "{:?}",
        r.violations
    );
    // With auto_tie_breaker the half with node 1 keeps quorum and takes db; node 2 stops.
    let mut sim = cluster(2, 18, cfg(true));
    sim.start_all();
    sim.run_for(SETTLE);
    sim.partition(&[&[1], &[2]]);
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim), held(&[("web", &[1]), ("db", &[1])]));
    assert!(!status(&mut sim, 2).primary);
    sim.heal();
    judge_clean_from_now(&mut sim);
    assert_eq!(holders(&mut sim), held(&[("web", &[1]), ("db", &[1])]));
}

/// A cluster of 5 whose actions take `ms` each and where the starts `fail` says fail.
fn with_actions(
    seed: u64,
    section: serde_json::Value,
    ms: u64,
    fail: impl Fn(NodeId, &Action) -> bool + Send + 'static,
) -> Sim {
    let mut sim = cluster(5, seed, section);
    sim.set_action_hook(move |node, a| {
        let r = if a.verb == Verb::Start && fail(node, a) {
            ActionResult::Failed {
                exit: Some(1),
                error: "exit status 1".into(),
            }
        } else {
            ActionResult::Ok
        };
        (ms * MS, r)
    });
    sim
}

#[test]
fn a_failed_start_moves_the_group_on_and_cleanup_brings_it_home_with_auto_failback() {
    // web's home (2) cannot start it: it refuses web, which goes to the lowest member.
    let section = json!({ "resources": groups(), "auto_failback": true });
    let mut sim = with_actions(21, section, 50, |node, a| node == 2 && a.group == "web");
    sim.start_all();
    sim.run_for(SETTLE);
    let h = holders(&mut sim);
    assert_eq!(h["web"], vec![1], "{h:?}");
    assert_eq!(count(&sim, "start_failed"), 1);
    let st = status(&mut sim, 4);
    assert_eq!(st.refused["web"], vec![2]);
    judge_clean_from_now(&mut sim);
    // The cause fixed (the hook now lets every start succeed) and cleaned up on node 2:
    // with auto_failback web comes home, through a stop on 1 first.
    sim.set_action_hook(|_, _| (50 * MS, ActionResult::Ok));
    let req = registry::find(ResourcesService::NAME)
        .unwrap()
        .parse_args(&["cleanup".to_string(), "name=web".to_string()])
        .unwrap();
    sim.app_mut(2)
        .unwrap()
        .control(ResourcesService::NAME, &req, u64::MAX)
        .unwrap();
    sim.pump(2);
    sim.run_for(SETTLE);
    assert!(status(&mut sim, 4).refused.is_empty());
    judge_clean_from_now(&mut sim);
    assert_eq!(holders(&mut sim)["web"], vec![2]);
}

#[test]
fn without_start_failure_is_fatal_the_home_retries_and_keeps_its_group() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let section = json!({ "resources": groups(), "start_failure_is_fatal": false,
                          "migration_threshold": 3 });
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    // web's first two starts fail on its home, the third succeeds.
    let mut sim = with_actions(22, section, 20, move |node, a| {
        node == 2 && a.group == "web" && t.fetch_add(1, Ordering::SeqCst) < 2
    });
    sim.start_all();
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim)["web"], vec![2]);
    assert_eq!(count(&sim, "start_failed"), 2);
    judge_clean_from_now(&mut sim);
}

#[test]
fn a_group_of_several_resources_moves_whole_and_in_order() {
    let section = json!({
        "resources": [{"name": "web", "home": 2, "primitives": ["ip", "fs", "httpd"]},
                      {"name": "db", "home": 3}],
        "start_timeout_ms": 400, "stop_timeout_ms": 400,
    });
    let mut sim = with_actions(23, section, 150, |_, _| false);
    sim.start_all();
    sim.run_for(SETTLE);
    let order = |sim: &Sim, node: NodeId| -> Vec<(String, String)> {
        sim.records()
            .iter()
            .filter(|r| r.node == node)
            .filter_map(|r| match &r.body {
                Body::Resource {
                    action,
                    name,
                    resource,
                    ..
                } if name == "web" && (action == "start" || action == "stop") => {
                    Some((action.clone(), resource.clone().unwrap()))
                }
                _ => None,
            })
            .collect()
    };
    let words = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        order(&sim, 2),
        words(&[("start", "ip"), ("start", "fs"), ("start", "httpd")])
    );
    // Its holder isolated: it fences itself (stopping in reverse), then 1 takes it over.
    sim.isolate(2);
    sim.run_for(2 * SETTLE);
    assert_eq!(
        order(&sim, 2)[3..],
        words(&[("stop", "httpd"), ("stop", "fs"), ("stop", "ip")])
    );
    assert_eq!(holders(&mut sim)["web"], vec![1]);
    sim.heal();
    judge_clean_from_now(&mut sim);
}

#[test]
fn a_start_that_runs_past_its_timeout_fails_and_moves_on() {
    let section = json!({ "resources": groups(), "start_timeout_ms": 500 });
    let mut sim = cluster(5, 24, section);
    sim.set_action_hook(|node, a| {
        let ms = if node == 2 && a.verb == Verb::Start {
            60_000
        } else {
            10
        };
        (ms * MS, ActionResult::Ok)
    });
    sim.start_all();
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim)["web"], vec![1]);
    let timed_out = sim.records().iter().any(|r| {
        matches!(&r.body, Body::Resource { action, error: Some(e), .. }
            if action == "start_failed" && e.contains("timed out after 500 ms"))
    });
    assert!(timed_out);
    judge_clean_from_now(&mut sim);
}

#[test]
fn heartbeat2000_after_a_split_holds_on_both_sides_and_the_checker_finds_it() {
    let mut sim = cluster(
        5,
        9,
        json!({ "resources": groups(), "policy": "heartbeat2000" }),
    );
    sim.start_all();
    // The request delay: nothing taken in the first 10 s, then every group once.
    sim.run_for(SETTLE);
    assert!(holders(&mut sim).is_empty());
    sim.run_for(4_000 * MS);
    assert_eq!(
        holders(&mut sim),
        held(&[("web", &[2]), ("db", &[3]), ("mail", &[1])])
    );
    assert!(checker::check(sim.records(), None).violations.is_empty());
    sim.partition(&[&[1, 2], &[3, 4, 5]]);
    sim.run_for(SETTLE);
    let h = holders(&mut sim);
    assert_eq!(h["web"], vec![2, 3], "{h:?}");
    sim.heal();
    sim.run_for(SETTLE);
    // Still both after the merge: the seed never gives a group up.
    assert_eq!(holders(&mut sim)["web"], vec![2, 3]);
    let r = checker::check(sim.records(), None);
    assert!(
        r.violations
            .iter()
            .any(|v| v.property == Property::TwoHolders && v.detail.starts_with("web")),
        "{:?}",
        r.violations
    );
}

fn sweep_cfg(seed: u64, services: &str) -> RunConfig {
    RunConfig {
        seed,
        nodes: 5,
        duration_ms: 25_000,
        faults: Faults::parse("partition,merge,crash,restart,pause").unwrap(),
        net: NetConfig {
            loss: 0.02,
            ..NetConfig::default()
        },
        services: registry::parse_list(services).unwrap(),
        load_interval_ms: 50,
        service_config: sections(json!({
            "resources": [{"name": "web", "home": 2, "primitives": ["ip", "fs", "httpd"]},
                          {"name": "db", "home": 3}, {"name": "mail", "home": 9}],
            "auto_failback": seed.is_multiple_of(2),
            "start_timeout_ms": 400, "stop_timeout_ms": 400,
        })),
        action_ms: 300,
        start_fail_rate: 0.05,
        ..RunConfig::default()
    }
}

#[test]
fn a_seed_sweep_with_random_faults_finds_no_violation() {
    let seeds: u64 = std::env::var("RESOURCES_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (mut starts, mut failed, mut judged) = (0, 0, 0);
    for seed in 1..=seeds {
        let services = if seed.is_multiple_of(3) {
            "checkpoint,resources"
        } else {
            "resources"
        };
        let r = run(&sweep_cfg(seed, services));
        assert!(
            r.check.violations.is_empty(),
            "seed {seed} ({services}): {:?}",
            r.check.violations
        );
        assert_eq!(r.state_mismatches, 0, "seed {seed}: {:?}", r.state_details);
        let count = |what: &str| {
            r.records
                .iter()
                .filter(|x| matches!(&x.body, Body::Resource { action, .. } if action == what))
                .count()
        };
        starts += count("start");
        failed += count("start_failed");
        judged += r.check.settled_judged;
    }
    // The sweep is not vacuous: groups started, starts failed, placements were judged.
    assert!(starts as u64 >= 3 * seeds, "{starts} starts");
    assert!(
        failed > 0 && judged > 0,
        "{failed} failed starts, {judged} judged"
    );
    eprintln!("{seeds} seeds: {starts} starts, {failed} failed, {judged} settled judged");
}

/// Replays one seed of the sweep, printing its records but deliveries, sends and syncs:
/// `SEED=21 FROM=3000000000 TO=3500000000 cargo test -p ringlab-sim --test resources
/// replay_seed -- --ignored --nocapture`.
#[test]
#[ignore]
fn replay_seed() {
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let services = if seed.is_multiple_of(3) {
        "checkpoint,resources"
    } else {
        "resources"
    };
    let r = run(&sweep_cfg(seed, services));
    let from: u64 = std::env::var("FROM")
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let to: u64 = std::env::var("TO")
        .map(|s| s.parse().unwrap())
        .unwrap_or(u64::MAX);
    for x in &r.records {
        if x.t_ns >= from
            && x.t_ns <= to
            && !matches!(
                x.body,
                Body::Deliver { .. } | Body::Send { .. } | Body::Sync { .. }
            )
        {
            println!("{} n{} i{} {:?}", x.t_ns, x.node, x.inc, x.body);
        }
    }
}

fn cleanup(sim: &mut Sim, id: NodeId, g: &str) {
    let req = registry::find(ResourcesService::NAME)
        .unwrap()
        .parse_args(&["cleanup".to_string(), format!("name={g}")])
        .unwrap();
    sim.app_mut(id)
        .unwrap()
        .control(ResourcesService::NAME, &req, u64::MAX)
        .unwrap();
    sim.pump(id);
}

/// Review finding 1: a holder cut off whose stop commands are slow (2 s, under their 20 s
/// timeout): the takeover delay, derived from the timeouts, waits them out.
#[test]
fn a_slow_stop_of_a_holder_cut_off_is_waited_out() {
    let section =
        json!({ "resources": groups(), "start_timeout_ms": 20000, "stop_timeout_ms": 20000 });
    let mut sim = with_actions(31, section, 2000, |_, _| false);
    sim.start_all();
    sim.run_for(60_000 * MS);
    assert_eq!(holders(&mut sim)["web"], vec![2]);
    sim.isolate(2);
    sim.run_for(60_000 * MS);
    assert_eq!(holders(&mut sim)["web"], vec![1]);
    sim.heal();
    sim.run_for(SETTLE);
    // (The settle bound, 84.5 s with these timeouts, outlasts the run: judged without it.)
    clean(&checker::check(sim.records(), None));
}

/// Review finding 2: a stop that fails blocks the group everywhere: cut off, its node keeps
/// it and nobody else starts it; a cleanup on a member lifts the block of a node not there.
#[test]
fn a_blocked_group_is_started_nowhere_else_until_a_cleanup() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let slow = Arc::new(AtomicBool::new(false));
    let s = slow.clone();
    let section = json!({ "resources": groups(), "auto_failback": true });
    let mut sim = cluster(5, 33, section);
    sim.set_action_hook(move |node, a| {
        let stuck =
            node == 1 && a.group == "web" && a.verb == Verb::Stop && s.load(Ordering::SeqCst);
        (if stuck { 60_000 } else { 10 } * MS, ActionResult::Ok)
    });
    // 1 takes web (its home 2 is not there yet); 2 comes, web must go home, the stop on 1
    // times out: blocked.
    for n in [1, 3, 4, 5] {
        sim.start(n);
    }
    sim.run_for(SETTLE);
    slow.store(true, Ordering::SeqCst);
    sim.start(2);
    sim.run_for(SETTLE);
    assert_eq!(status(&mut sim, 3).blocked["web"], 1);
    sim.isolate(1);
    sim.run_for(2 * SETTLE);
    assert!(!holders(&mut sim).contains_key("web") || holders(&mut sim)["web"] == vec![1]);
    let r = checker::check(sim.records(), None);
    clean(&r);
    // The operator says web is stopped on 1: the block is lifted, web goes home.
    cleanup(&mut sim, 2, "web");
    sim.run_for(SETTLE);
    assert!(status(&mut sim, 3).blocked.is_empty());
    let served: Vec<NodeId> = holders(&mut sim)["web"].clone();
    assert!(served.contains(&2), "{served:?}");
}

/// Review finding 4: every member refused web; after a configuration change a cleanup on
/// one member brings web back (through the takeover delay: its last holder left).
#[test]
fn a_cleanup_after_a_configuration_change_serves_the_group_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    let mut sim = cluster(5, 34, json!({ "resources": groups() }));
    sim.set_action_hook(move |_, a| {
        let fail = a.verb == Verb::Start && a.group == "web" && b.load(Ordering::SeqCst);
        let r = if fail {
            ActionResult::Failed {
                exit: Some(1),
                error: "exit 1".into(),
            }
        } else {
            ActionResult::Ok
        };
        (10 * MS, r)
    });
    sim.start_all();
    sim.run_for(20_000 * MS);
    assert_eq!(status(&mut sim, 1).refused["web"].len(), 5);
    sim.crash(5);
    sim.run_for(SETTLE);
    broken.store(false, Ordering::SeqCst);
    cleanup(&mut sim, 1, "web");
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim)["web"], vec![1]);
    judge_clean_from_now(&mut sim);
}

/// Review finding 3: a cleanup on web's home while a takeover of web is pending elsewhere.
#[test]
fn a_cleanup_during_a_pending_takeover_serves_the_group() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    let mut sim = cluster(5, 35, json!({ "resources": groups() }));
    sim.set_action_hook(move |node, a| {
        let fail =
            node == 2 && a.verb == Verb::Start && a.group == "web" && b.load(Ordering::SeqCst);
        let r = if fail {
            ActionResult::Failed {
                exit: Some(1),
                error: "exit 1".into(),
            }
        } else {
            ActionResult::Ok
        };
        (10 * MS, r)
    });
    sim.start_all();
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim)["web"], vec![1]);
    sim.crash(1);
    let t0 = sim.now();
    let formed = sim.run_until_cond(t0 + 10_000 * MS, |s| {
        s.ring(2).is_some_and(|r| {
            r.state() == ringlab_ring::MembState::Operational && !r.members().contains(&1)
        })
    });
    assert!(formed);
    sim.run_for(500 * MS);
    broken.store(false, Ordering::SeqCst);
    cleanup(&mut sim, 2, "web");
    sim.run_for(SETTLE);
    assert_eq!(holders(&mut sim)["web"], vec![2]);
    judge_clean_from_now(&mut sim);
}
