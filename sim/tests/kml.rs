//! The modification log (`kml`) in the simulator: partitioned sides change the fileset, and
//! at the merge every member ends with the same tree, history and conflict list. Each run is
//! judged by the checker on its records (properties 16 and 17 included) and checked directly
//! through the service's control commands (`status`, `ls`, `cat`, `warnings`).
//!
//! Most scenarios run 5 nodes split into the permit side {1, 2, 3} and the minority {4, 5}.

// Independent seeds of the sweep run on several threads; each run is single-threaded and
// deterministic, so the simulator's ban on threads (clippy.toml) does not apply to it.
#![allow(clippy::disallowed_methods)]

use ringlab_records::Body;
use ringlab_ring::{Config, NodeId, Variant};
use ringlab_sim::checker;
use ringlab_sim::{run, Faults, NetConfig, RunConfig, Sim};
use ringlab_sync::kml::service::Status;
use ringlab_sync::kml::KmlService;
use ringlab_sync::{registry, Plugin, ServiceApp};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;
const PERMIT: &[NodeId] = &[1, 2, 3];
const MINORITY: &[NodeId] = &[4, 5];

fn cluster(n: usize, seed: u64, ring: Config) -> Sim {
    configured(n, seed, ring, BTreeMap::new())
}

/// A cluster whose services get `sections` (by service name).
fn configured(
    n: usize,
    seed: u64,
    ring: Config,
    sections: BTreeMap<String, serde_json::Value>,
) -> Sim {
    let mut sim = Sim::new(n, seed, ring, NetConfig::default());
    let services = vec![registry::find(KmlService::NAME).unwrap()];
    let nodes = sim.ids();
    sim.set_app_factory(move |id| {
        ServiceApp::with_config(id, &services, &nodes, &sections).unwrap()
    });
    sim
}

/// Returns a started cluster of `n` nodes whose ring has formed.
fn started(n: usize, seed: u64) -> Sim {
    let mut sim = cluster(n, seed, Config::default());
    sim.start_all();
    sim.run_for(2_000 * MS);
    sim
}

/// Runs a `svc kml` command on `id` and sends what it queued.
fn try_cmd(
    sim: &mut Sim,
    id: NodeId,
    args: &[&str],
) -> Result<serde_json::Value, ringlab_sync::ControlError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let req = registry::find(KmlService::NAME)
        .unwrap()
        .parse_args(&args)
        .unwrap();
    let r = sim
        .app_mut(id)
        .unwrap()
        .control(KmlService::NAME, &req, u64::MAX);
    sim.pump(id);
    r
}

fn cmd(sim: &mut Sim, id: NodeId, args: &[&str]) -> serde_json::Value {
    try_cmd(sim, id, args).unwrap_or_else(|e| panic!("node {id} {args:?}: {e}"))
}

/// Submits one operation on `id` and lets the ring carry it.
fn op(sim: &mut Sim, id: NodeId, args: &[&str]) {
    cmd(sim, id, args);
    sim.run_for(20 * MS);
}

fn status(sim: &mut Sim, id: NodeId) -> Status {
    serde_json::from_value(cmd(sim, id, &["status"])).unwrap()
}

/// Returns every path of the tree at `id`.
fn ls(sim: &mut Sim, id: NodeId) -> Vec<String> {
    cmd(sim, id, &["ls"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

/// Returns a file's content (or a symlink's target) at `id`; none when it is missing.
fn cat(sim: &mut Sim, id: NodeId, path: &str) -> Option<String> {
    try_cmd(sim, id, &["cat", &format!("path={path}")])
        .ok()
        .map(|v| v["data"].as_str().unwrap().to_string())
}

fn warnings(sim: &mut Sim, id: NodeId) -> String {
    try_cmd(sim, id, &["warnings"])
        .map(|v| v["data"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// One `kml` record, as these tests read it.
#[derive(Clone, Debug)]
struct KmlRec {
    node: NodeId,
    origin: NodeId,
    recno: u64,
    kind: Option<String>,
    path: Option<String>,
    records: Option<u64>,
    detail: Option<String>,
}

/// Returns the `kml` records of `phase`, in time order.
fn kml_records(sim: &Sim, phase: &str) -> Vec<KmlRec> {
    sim.records()
        .iter()
        .filter_map(|r| match &r.body {
            Body::Kml {
                phase: p,
                origin,
                recno,
                kind,
                path,
                records,
                detail,
                ..
            } if p == phase => Some(KmlRec {
                node: r.node,
                origin: *origin,
                recno: *recno,
                kind: kind.clone(),
                path: path.clone(),
                records: *records,
                detail: detail.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Asserts the checker finds nothing in the run's records.
fn judged(sim: &Sim) {
    let r = checker::check(sim.records(), None);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(
        sim.records()
            .iter()
            .any(|r| matches!(r.body, Body::Fileset { .. })),
        "fileset records written"
    );
}

/// Asserts every node of `ids` is done synchronising with the same fileset, history and
/// conflict list; returns the first one's status.
fn converged(sim: &mut Sim, ids: &[NodeId]) -> Status {
    let s: Vec<Status> = ids.iter().map(|&id| status(sim, id)).collect();
    for (id, x) in ids.iter().zip(&s) {
        assert!(!x.syncing, "node {id} still synchronising: {x:?}");
        assert_eq!(
            (
                &x.digest,
                &x.tree,
                x.records,
                &x.conflicts_digest,
                x.conflicts
            ),
            (
                &s[0].digest,
                &s[0].tree,
                s[0].records,
                &s[0].conflicts_digest,
                s[0].conflicts
            ),
            "node {id} against node {}",
            ids[0]
        );
    }
    s[0].clone()
}

/// Splits 5 nodes into the permit side {1, 2, 3} and the minority {4, 5}, and lets both
/// rings form.
fn split(sim: &mut Sim) {
    sim.partition(&[PERMIT, MINORITY]);
    sim.run_for(3_000 * MS);
}

fn merge(sim: &mut Sim) {
    sim.heal();
    sim.run_for(5_000 * MS);
}

/// Runs one two-sided scenario: `setup` on node 1 before the split, `permit` ops on node 1
/// and `minority` ops on node 4 while split, then the merge; returns the converged status.
fn two_sides(seed: u64, setup: &[&[&str]], permit: &[&[&str]], minority: &[&[&str]]) -> Sim {
    let mut sim = started(5, seed);
    for o in setup {
        op(&mut sim, 1, o);
    }
    sim.run_for(500 * MS);
    split(&mut sim);
    for o in permit {
        op(&mut sim, 1, o);
    }
    for o in minority {
        op(&mut sim, 4, o);
    }
    sim.run_for(500 * MS);
    merge(&mut sim);
    sim
}

/// Asserts `n` conflicts of `kind` on the minority's records at `path` (the first, and
/// those backed out with it), found alike by every node, and that all nodes converged.
fn conflicts(sim: &mut Sim, n: u64, kind: &str, path: &str) -> Status {
    let c = kml_records(sim, "conflict");
    for id in 1..=5 {
        let mine = c.iter().filter(|x| x.node == id).count() as u64;
        assert_eq!(mine, n, "node {id}: {c:?}");
    }
    for x in &c {
        assert_eq!(
            (x.origin, x.kind.as_deref(), x.path.as_deref()),
            (4, Some(kind), Some(path)),
            "node {}",
            x.node
        );
        assert!(x.recno > 0);
    }
    let s = converged(sim, &[1, 2, 3, 4, 5]);
    assert_eq!(s.conflicts, n, "{s:?}");
    judged(sim);
    s
}

#[test]
fn name_name_both_sides_create_the_same_name() {
    let mut sim = two_sides(
        1,
        &[],
        &[&["create", "path=/x"], &["write", "path=/x", "data=permit"]],
        &[
            &["create", "path=/x"],
            &["write", "path=/x", "data=minority"],
        ],
    );
    conflicts(&mut sim, 2, "name_name", "/x");
    for id in 1..=5 {
        assert_eq!(
            cat(&mut sim, id, "/x").as_deref(),
            Some("permit"),
            "node {id}"
        );
        assert_eq!(
            cat(&mut sim, id, "/.elsewhere/4/x").as_deref(),
            Some("minority")
        );
        let w = warnings(&mut sim, id);
        assert!(w.contains("create /x name_name"), "{w}");
        // The write went with the create it depends on.
        assert!(w.contains("write /x name_name"), "{w}");
    }
}

#[test]
fn update_update_both_sides_write_one_file() {
    let mut sim = two_sides(
        2,
        &[&["create", "path=/f"], &["write", "path=/f", "data=base"]],
        &[&["write", "path=/f", "data=permit"]],
        &[&["write", "path=/f", "data=minority"]],
    );
    conflicts(&mut sim, 1, "update_update", "/f");
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/f").as_deref(), Some("permit"));
        assert_eq!(
            cat(&mut sim, id, "/.elsewhere/4/f").as_deref(),
            Some("minority")
        );
        assert!(warnings(&mut sim, id).contains("write /f update_update"));
    }
}

#[test]
fn update_delete_the_minority_writes_what_the_permit_side_unlinked() {
    let mut sim = two_sides(
        3,
        &[&["create", "path=/f"], &["write", "path=/f", "data=base"]],
        &[&["unlink", "path=/f"]],
        &[&["write", "path=/f", "data=minority"]],
    );
    conflicts(&mut sim, 1, "update_delete", "/f");
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/f"), None, "the unlink stands");
        assert_eq!(
            cat(&mut sim, id, "/.elsewhere/4/f").as_deref(),
            Some("minority")
        );
        assert!(warnings(&mut sim, id).contains("write /f update_delete"));
    }
}

#[test]
fn delete_update_the_minority_unlinks_what_the_permit_side_wrote() {
    let mut sim = two_sides(
        4,
        &[&["create", "path=/f"], &["write", "path=/f", "data=base"]],
        &[&["write", "path=/f", "data=permit"]],
        &[&["unlink", "path=/f"]],
    );
    conflicts(&mut sim, 1, "delete_update", "/f");
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/f").as_deref(), Some("permit"));
        // An unlink leaves nothing to keep under .elsewhere/4; WARNINGS tells it.
        assert!(!ls(&mut sim, id)
            .iter()
            .any(|p| p.starts_with("/.elsewhere/4")));
        assert!(warnings(&mut sim, id).contains("unlink /f delete_update"));
    }
}

#[test]
fn rename_rename_both_sides_rename_one_file_differently() {
    let mut sim = two_sides(
        5,
        &[&["create", "path=/f"], &["write", "path=/f", "data=base"]],
        &[&["rename", "from=/f", "to=/g"]],
        &[&["rename", "from=/f", "to=/h"]],
    );
    conflicts(&mut sim, 1, "rename_rename", "/f");
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/g").as_deref(), Some("base"));
        assert_eq!(cat(&mut sim, id, "/h"), None);
        assert!(warnings(&mut sim, id).contains("rename /f -> /h rename_rename"));
    }
}

#[test]
fn a_create_under_a_directory_the_permit_side_removed_goes_elsewhere() {
    let mut sim = two_sides(
        6,
        &[&["mkdir", "path=/d"]],
        &[&["rmdir", "path=/d"]],
        &[
            &["create", "path=/d/x"],
            &["write", "path=/d/x", "data=orphan"],
        ],
    );
    let c = kml_records(&sim, "conflict");
    assert!(
        c.iter().any(
            |x| x.kind.as_deref() == Some("update_delete") && x.path.as_deref() == Some("/d/x")
        ),
        "{c:?}"
    );
    converged(&mut sim, &[1, 2, 3, 4, 5]);
    judged(&sim);
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/d/x"), None);
        assert!(!ls(&mut sim, id).contains(&"/d".to_string()));
        assert_eq!(
            cat(&mut sim, id, "/.elsewhere/4/d/x").as_deref(),
            Some("orphan")
        );
        assert!(warnings(&mut sim, id).contains("create /d/x update_delete"));
    }
}

#[test]
fn changes_that_do_not_conflict_merge() {
    let mut sim = two_sides(
        7,
        &[&["mkdir", "path=/d"]],
        &[
            &["create", "path=/d/a"],
            &["write", "path=/d/a", "data=A"],
            &["symlink", "path=/s", "target=/d/a"],
        ],
        &[
            &["create", "path=/d/b"],
            &["write", "path=/d/b", "data=B"],
            &["setattr", "path=/d/b", "mode=600"],
            &["link", "existing=/d/b", "path=/b2"],
        ],
    );
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    assert_eq!(s.conflicts, 0, "{s:?} {:?}", kml_records(&sim, "conflict"));
    judged(&sim);
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/d/a").as_deref(), Some("A"));
        assert_eq!(cat(&mut sim, id, "/d/b").as_deref(), Some("B"));
        assert_eq!(cat(&mut sim, id, "/b2").as_deref(), Some("B"));
        assert_eq!(cat(&mut sim, id, "/s").as_deref(), Some("/d/a"));
        assert!(!ls(&mut sim, id)
            .iter()
            .any(|p| p.starts_with("/.elsewhere")));
    }
}

/// Three sides: {1, 2} and {3, 4} tie, the permit goes with node 1's; {3, 4} is
/// reintegrated before {5} (the order of their lowest members).
#[test]
fn three_sides_merge_in_the_order_of_their_lowest_members() {
    let mut sim = started(5, 17);
    sim.partition(&[&[1, 2], &[3, 4], &[5]]);
    sim.run_for(3_000 * MS);
    for (id, side) in [(2, "p"), (4, "q"), (5, "r")] {
        op(&mut sim, id, &["create", "path=/x"]);
        op(&mut sim, id, &["write", "path=/x", &format!("data={side}")]);
        op(&mut sim, id, &["create", &format!("path=/{side}")]);
    }
    sim.run_for(500 * MS);
    merge(&mut sim);
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    assert_eq!(s.conflicts, 4, "{s:?}");
    let c = kml_records(&sim, "conflict");
    let at1: Vec<(NodeId, u64, &str)> = c
        .iter()
        .filter(|x| x.node == 1)
        .map(|x| (x.origin, x.recno, x.kind.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        at1,
        vec![
            (4, 1, "name_name"),
            (4, 2, "name_name"),
            (5, 1, "name_name"),
            (5, 2, "name_name")
        ]
    );
    judged(&sim);
    for id in 1..=5 {
        assert_eq!(cat(&mut sim, id, "/x").as_deref(), Some("p"));
        assert_eq!(cat(&mut sim, id, "/.elsewhere/4/x").as_deref(), Some("q"));
        assert_eq!(cat(&mut sim, id, "/.elsewhere/5/x").as_deref(), Some("r"));
        let names = ls(&mut sim, id);
        for f in ["/p", "/q", "/r"] {
            assert!(names.contains(&f.to_string()), "node {id}: {names:?}");
        }
        let w = warnings(&mut sim, id);
        assert!(w.find("4.").unwrap() < w.find("5.").unwrap(), "{w}");
    }
}

/// The seed's HA case: the permit side B = {1, 2, 3} goes on from record X while A = {4, 5}
/// is cut off and makes records up to Y; at the merge A's nodes undo their records back to
/// X, take B's, and reintegrate their own.
#[test]
fn the_cut_off_sides_records_are_undone_then_reintegrated() {
    let mut sim = started(5, 8);
    for i in 0..5 {
        op(&mut sim, 1 + i % 3, &["create", &format!("path=/base{i}")]);
    }
    sim.run_for(500 * MS);
    let x = status(&mut sim, 1).records;
    split(&mut sim);
    for i in 0..4 {
        op(&mut sim, 2, &["create", &format!("path=/b{i}")]);
    }
    for i in 0..6 {
        op(&mut sim, 4 + i % 2, &["create", &format!("path=/a{i}")]);
    }
    op(&mut sim, 5, &["write", "path=/base0", "data=A"]);
    sim.run_for(500 * MS);
    let y = status(&mut sim, 4).records;
    assert_eq!(y, x + 7);
    assert_eq!(status(&mut sim, 1).records, x + 4);
    merge(&mut sim);
    let undo = kml_records(&sim, "undo");
    for id in MINORITY {
        assert!(
            undo.iter()
                .any(|u| u.node == *id && u.records == Some(y - x)),
            "node {id} undid {} records: {undo:?}",
            y - x
        );
    }
    for id in PERMIT {
        assert!(!undo.iter().any(|u| u.node == *id), "{undo:?}");
    }
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    assert_eq!(s.conflicts, 0);
    assert_eq!(s.records, x + 4 + 7);
    for id in 1..=5 {
        let names = ls(&mut sim, id);
        for i in 0..6 {
            assert!(names.contains(&format!("/a{i}")), "node {id}: {names:?}");
        }
        for i in 0..4 {
            assert!(names.contains(&format!("/b{i}")), "node {id}: {names:?}");
        }
        assert_eq!(cat(&mut sim, id, "/base0").as_deref(), Some("A"));
    }
    judged(&sim);
}

/// The ops of the interruption scenarios: both sides, with conflicts and clean changes.
fn interrupted_ops(sim: &mut Sim) {
    for o in [
        &["create", "path=/f"][..],
        &["write", "path=/f", "data=base"],
        &["mkdir", "path=/d"],
        &["create", "path=/g"],
    ] {
        op(sim, 1, o);
    }
    sim.run_for(500 * MS);
    split(sim);
    for o in [
        &["write", "path=/f", "data=permit"][..],
        &["create", "path=/x"],
        &["rmdir", "path=/d"],
        &["create", "path=/p1"],
    ] {
        op(sim, 2, o);
    }
    for (id, o) in [
        (4, &["write", "path=/f", "data=minority"][..]),
        (5, &["create", "path=/x"]),
        (4, &["create", "path=/d/y"]),
        (5, &["unlink", "path=/g"]),
        (4, &["create", "path=/m1"]),
        (5, &["write", "path=/m1", "data=m"]),
    ] {
        op(sim, id, o);
    }
    // Enough records on the minority that its tail takes a while.
    for i in 0..40 {
        op(
            sim,
            4 + i % 2,
            &["write", "path=/m1", &format!("size={}", 1000 + i)],
        );
    }
    sim.run_for(500 * MS);
}

/// Returns (tree, conflicts digest, conflicts, WARNINGS) of an uninterrupted run of the
/// interruption scenario. The whole-fileset digest is not compared across runs: what the
/// merge writes under `.elsewhere` is numbered by a tag of the ring whose sync completes it,
/// and an interruption moves the merge to a later ring (the tree, the conflict list and
/// WARNINGS do not depend on it).
fn uninterrupted(seed: u64) -> (String, String, u64, String) {
    let mut sim = started(5, seed);
    interrupted_ops(&mut sim);
    merge(&mut sim);
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    judged(&sim);
    let w = warnings(&mut sim, 1);
    (s.tree, s.conflicts_digest, s.conflicts, w)
}

/// Returns the nodes that wrote a `kml` `abort` record (a merge cut short), with the
/// records they held then.
fn aborts(sim: &Sim) -> Vec<(NodeId, Option<u64>)> {
    kml_records(sim, "abort")
        .into_iter()
        .map(|a| (a.node, a.records))
        .collect()
}

/// Runs until `id` is synchronising (at most `ms`); returns whether it is.
fn until_syncing(sim: &mut Sim, id: NodeId, ms: u64) -> bool {
    sim.run_until_cond(sim.now() + ms * MS, |s| {
        s.app(id).is_some_and(|a| a.engine.is_syncing())
    })
}

/// When the interruptions fall: every 150 µs over the first 6 ms of the merge's sync (it
/// completes in a few ms), so that some cut the tails in flight.
fn delays_us() -> impl Iterator<Item = u64> {
    (0..40).map(|i| i * 150)
}

#[test]
fn a_reintegration_cut_by_a_second_partition_ends_as_an_uninterrupted_one() {
    let want = uninterrupted(9);
    assert!(want.2 >= 3, "the scenario has conflicts: {want:?}");
    let mut resumed = 0;
    for delay_us in delays_us() {
        let mut sim = started(5, 9);
        interrupted_ops(&mut sim);
        sim.heal();
        assert!(until_syncing(&mut sim, 4, 5_000), "delay {delay_us}");
        sim.run_for(delay_us * 1_000);
        sim.partition(&[PERMIT, MINORITY]);
        sim.run_for(3_000 * MS);
        let cut = aborts(&sim);
        if cut.iter().any(|(_, held)| held.unwrap_or(0) > 0) {
            resumed += 1;
        }
        merge(&mut sim);
        let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
        judged(&sim);
        let w = warnings(&mut sim, 1);
        assert_eq!(
            (s.tree, s.conflicts_digest, s.conflicts, w),
            want,
            "second partition {delay_us} µs into the sync (aborts: {cut:?})"
        );
    }
    assert!(resumed > 0, "no partition fell while tails were in flight");
}

#[test]
fn a_reintegration_whose_representative_crashes_ends_as_an_uninterrupted_one() {
    let want = uninterrupted(10);
    let mut resumed = 0;
    for delay_us in delays_us() {
        let mut sim = started(5, 10);
        interrupted_ops(&mut sim);
        sim.heal();
        assert!(until_syncing(&mut sim, 4, 5_000), "delay {delay_us}");
        sim.run_for(delay_us * 1_000);
        // Node 4 represents the minority {4, 5}: node 5 must send its side's records.
        sim.crash(4);
        sim.run_for(5_000 * MS);
        let cut = aborts(&sim);
        if cut.iter().any(|(_, held)| held.unwrap_or(0) > 0) {
            resumed += 1;
        }
        let s = converged(&mut sim, &[1, 2, 3, 5]);
        assert_eq!(
            (&s.tree, &s.conflicts_digest, s.conflicts),
            (&want.0, &want.1, want.2),
            "crash {delay_us} µs into the sync (aborts: {cut:?})"
        );
        // Back empty, it catches up.
        sim.start(4);
        sim.run_for(5_000 * MS);
        let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
        judged(&sim);
        let w = warnings(&mut sim, 4);
        assert_eq!(
            (s.tree, s.conflicts_digest, s.conflicts, w),
            want,
            "crash {delay_us} µs into the sync, node 4 back"
        );
    }
    assert!(resumed > 0, "no crash fell while tails were in flight");
}

#[test]
fn a_node_restarted_empty_catches_up() {
    let mut sim = started(5, 11);
    for i in 0..10 {
        op(&mut sim, 1 + i % 5, &["create", &format!("path=/f{i}")]);
    }
    sim.run_for(500 * MS);
    sim.crash(3);
    sim.run_for(3_000 * MS);
    for i in 0..10 {
        op(
            &mut sim,
            1 + i % 2,
            &["write", &format!("path=/f{i}"), "data=later"],
        );
    }
    op(&mut sim, 1, &["mkdir", "path=/late"]);
    sim.run_for(500 * MS);
    sim.start(3);
    assert_eq!(status(&mut sim, 3).records, 0);
    sim.run_for(5_000 * MS);
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    assert_eq!((s.records, s.conflicts), (21, 0));
    assert_eq!(cat(&mut sim, 3, "/f7").as_deref(), Some("later"));
    assert!(ls(&mut sim, 3).contains(&"/late".to_string()));
    // Its own earlier records are in the history: it makes new ones after them.
    op(&mut sim, 3, &["create", "path=/again"]);
    sim.run_for(500 * MS);
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    assert_eq!(s.records, 22);
    judged(&sim);
}

/// Node 5, alone, restarted empty as a new incarnation, numbers its records from 1 again:
/// at the merge they are not the next of node 5 and are refused with a warning, alike on
/// every node.
#[test]
fn records_of_a_restarted_node_with_old_numbers_are_warned_about_not_applied() {
    let mut sim = started(5, 12);
    for i in 0..3 {
        op(&mut sim, 5, &["create", &format!("path=/old{i}")]);
    }
    sim.run_for(500 * MS);
    sim.partition(&[&[1, 2, 3, 4], &[5]]);
    sim.run_for(3_000 * MS);
    sim.crash(5);
    sim.run_for(100 * MS);
    sim.start(5);
    sim.run_for(3_000 * MS);
    for i in 0..2 {
        op(&mut sim, 5, &["create", &format!("path=/new{i}")]);
    }
    op(&mut sim, 1, &["create", "path=/permit"]);
    sim.run_for(500 * MS);
    assert_eq!(status(&mut sim, 5).records, 2);
    merge(&mut sim);
    let w = kml_records(&sim, "warning");
    for id in 1..=5 {
        let mine: Vec<(NodeId, u64)> = w
            .iter()
            .filter(|x| x.node == id)
            .map(|x| (x.origin, x.recno))
            .collect();
        assert_eq!(mine, vec![(5, 1), (5, 2)], "node {id}: {w:?}");
    }
    for x in &w {
        let d = x.detail.as_deref().unwrap_or_default();
        assert!(
            d.contains("KML record number 4 expected from node 5"),
            "{d}"
        );
    }
    let s = converged(&mut sim, &[1, 2, 3, 4, 5]);
    // Node 5's three old records and node 1's one: the new ones are not in the history.
    assert_eq!(s.records, 4, "{s:?}");
    for id in 1..=5 {
        assert_eq!(status(&mut sim, id).warnings, 2, "node {id}");
        let names = ls(&mut sim, id);
        assert!(!names.iter().any(|p| p.starts_with("/new")), "{names:?}");
        assert!(names.contains(&"/old2".to_string()) && names.contains(&"/permit".to_string()));
    }
    judged(&sim);
}

/// Like the one above, but the new incarnation makes more records than the old one did: its
/// record 4 is numbered next after the old incarnation's 3, yet it follows three refused
/// records of its own.
#[test]
fn a_restarted_nodes_records_past_its_old_numbers_are_refused_too() {
    let mut sim = started(5, 13);
    for i in 0..3 {
        op(&mut sim, 5, &["create", &format!("path=/old{i}")]);
    }
    sim.run_for(500 * MS);
    sim.partition(&[&[1, 2, 3, 4], &[5]]);
    sim.run_for(3_000 * MS);
    sim.crash(5);
    sim.run_for(100 * MS);
    sim.start(5);
    sim.run_for(3_000 * MS);
    for i in 0..5 {
        op(&mut sim, 5, &["create", &format!("path=/new{i}")]);
    }
    sim.run_for(500 * MS);
    merge(&mut sim);
    converged(&mut sim, &[1, 2, 3, 4, 5]);
    let w = kml_records(&sim, "warning");
    let at1: Vec<u64> = w.iter().filter(|x| x.node == 1).map(|x| x.recno).collect();
    let names = ls(&mut sim, 1);
    assert!(
        !names.iter().any(|p| p.starts_with("/new")),
        "records of incarnation 2 applied after its refused ones: {names:?}; warnings at \
         node 1 for {at1:?}"
    );
    judged(&sim);
}

/// Nodes 2 and 3 share a sync point P after records of node 3's; node 3 then merges with
/// node 1 as the side without the permit and undoes back before P; when 2 and 3 meet again,
/// P is still the latest point both list, but node 3's history no longer passes through it
/// (seeds 999 classic and 200912 accelerated of the 3-node sweeps, at 1000 seeds).
#[test]
fn a_sync_point_undone_by_an_earlier_merge_is_not_used() {
    let mut sim = started(4, 14);
    op(&mut sim, 1, &["create", "path=/base"]);
    sim.run_for(500 * MS);
    sim.partition(&[&[1], &[2, 3, 4]]);
    sim.run_for(3_000 * MS);
    op(&mut sim, 1, &["create", "path=/b"]);
    op(&mut sim, 3, &["create", "path=/a"]);
    sim.run_for(500 * MS);
    // {2, 3} without 4: a sync with one side, whose point P is the head after /a.
    sim.partition(&[&[1], &[2, 3], &[4]]);
    sim.run_for(3_000 * MS);
    // {1, 3}: a tie, the permit goes with node 1; node 3 undoes /a (back before P).
    sim.partition(&[&[1, 3], &[2], &[4]]);
    sim.run_for(3_000 * MS);
    assert!(kml_records(&sim, "undo").iter().any(|u| u.node == 3));
    // {2, 3} again.
    sim.partition(&[&[1], &[2, 3], &[4]]);
    sim.run_for(3_000 * MS);
    let aborted = kml_records(&sim, "abort");
    assert!(aborted.is_empty(), "{aborted:?}");
    // /base, then node 2's history (/a), then node 3's /b reintegrated (/a a duplicate).
    let s = converged(&mut sim, &[2, 3]);
    assert_eq!(s.records, 3, "{s:?}");
    judged(&sim);
    merge(&mut sim);
    converged(&mut sim, &[1, 2, 3, 4]);
    judged(&sim);
}

/// The same stale point on the permit side's representative, hidden by a third side: node 3
/// leads the permit side and still lists a point P it shares with node 2, though an earlier
/// merge undid its history past P; an empty node makes the permit side send from 0, so no
/// check of P fails, and node 2 keeps its own records up to P under the permit side's from
/// P on (seeds 100633 classic and 300532 accelerated of the 5-node sweeps: property 17).
#[test]
fn a_stale_point_on_the_permit_side_is_not_taken_for_a_fork() {
    let mut sim = started(5, 15);
    op(&mut sim, 1, &["create", "path=/base"]);
    sim.run_for(500 * MS);
    sim.partition(&[&[1, 5], &[2, 3, 4]]);
    sim.run_for(3_000 * MS);
    op(&mut sim, 1, &["create", "path=/b"]);
    op(&mut sim, 3, &["create", "path=/a"]);
    sim.run_for(500 * MS);
    // P: the head after /a, a sync point of 2, 3 and 4.
    sim.partition(&[&[1, 5], &[2, 3], &[4]]);
    sim.run_for(3_000 * MS);
    // {1, 5} holds the permit against {3}: node 3 undoes /a, past P.
    sim.partition(&[&[1, 3, 5], &[2], &[4]]);
    sim.run_for(3_000 * MS);
    assert!(kml_records(&sim, "undo").iter().any(|u| u.node == 3));
    // Node 4 back empty: a side whose common point is the start.
    sim.crash(4);
    sim.run_for(100 * MS);
    sim.start(4);
    sim.run_for(3_000 * MS);
    // {3, 5} (node 3 leads it) holds the permit against {2} (at P) and {4} (empty).
    sim.partition(&[&[1], &[2, 3, 4, 5]]);
    sim.run_for(3_000 * MS);
    let r = checker::check(sim.records(), None);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let s = converged(&mut sim, &[2, 3, 4, 5]);
    assert_eq!(s.records, 3, "/base, /b, /a: {s:?}");
    merge(&mut sim);
    converged(&mut sim, &[1, 2, 3, 4, 5]);
    judged(&sim);
}

/// A node restarted empty needs every record from the start; with `log_keep` 5 and 12
/// records, the others no longer hold them.
#[test]
fn a_node_restarted_empty_past_the_kept_history_catches_up() {
    let sections = BTreeMap::from([(
        KmlService::NAME.to_string(),
        serde_json::json!({ "log_keep": 5 }),
    )]);
    let mut sim = configured(3, 16, Config::default(), sections);
    sim.start_all();
    sim.run_for(2_000 * MS);
    for i in 0..12 {
        op(&mut sim, 1, &["create", &format!("path=/f{i}")]);
    }
    sim.run_for(500 * MS);
    sim.crash(3);
    sim.run_for(3_000 * MS);
    sim.start(3);
    sim.run_for(5_000 * MS);
    let aborted = kml_records(&sim, "abort");
    assert!(aborted.is_empty(), "{aborted:?}");
    converged(&mut sim, &[1, 2, 3]);
    judged(&sim);
}

// ---- seed sweeps ----

/// Each run's virtual length: about 11 s of faults before the liveness bound and the probes.
const DURATION_MS: u64 = 20_000;

/// Seeds per sweep: 40, or `KML_SWEEP_SEEDS` (a longer sweep by hand).
fn seeds() -> u64 {
    std::env::var("KML_SWEEP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

fn sweep(first: u64, count: u64, variant: Variant, nodes: usize, duration_ms: u64) {
    let seeds: Vec<u64> = (first..first + count).collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    type Bad = Vec<(u64, Vec<String>)>;
    let (failing, seen): (Vec<Bad>, Vec<Seen>) = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .chunks(seeds.len().div_ceil(threads))
            .map(|chunk| {
                s.spawn(move || {
                    let mut bad = vec![];
                    let mut seen = Seen::default();
                    for &seed in chunk {
                        let mut c = RunConfig {
                            seed,
                            nodes,
                            duration_ms,
                            faults: Faults::parse("partition,merge,crash,restart,pause").unwrap(),
                            services: vec![registry::find(KmlService::NAME).unwrap()],
                            load_interval_ms: 50,
                            ..RunConfig::default()
                        };
                        c.ring.variant = variant;
                        c.net.loss = 0.02;
                        c.net.dup = 0.01;
                        c.net.reorder = 0.05;
                        let r = run(&c);
                        seen.add(&r);
                        let mut why: Vec<String> = r
                            .check
                            .violations
                            .iter()
                            .take(5)
                            .map(|v| v.to_string())
                            .collect();
                        why.extend(r.state_details.iter().take(5).cloned());
                        if r.syncs_completed == 0 {
                            why.push("no sync completed".into());
                        }
                        if !why.is_empty() {
                            bad.push((seed, why));
                        }
                    }
                    (bad, seen)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    let failing: Vec<(u64, Vec<String>)> = failing.into_iter().flatten().collect();
    let seen = seen.into_iter().fold(Seen::default(), |a, b| a.sum(&b));
    eprintln!(
        "{variant:?}, {nodes} nodes, seeds {first}..{}: {seen:?}",
        first + count
    );
    let v = match variant {
        Variant::Classic => "classic",
        _ => "accelerated",
    };
    for (seed, why) in &failing {
        eprintln!(
            "seed {seed} (replay: ringlab sim --services kml --seed {seed} --seeds 1 --nodes \
             {nodes} --variant {v} --loss 0.02 --dup 0.01 --reorder 0.05 --faults all \
             --duration-ms {duration_ms} --load-interval-ms 50):"
        );
        for line in why {
            eprintln!("  {line}");
        }
    }
    assert!(
        failing.is_empty(),
        "{} of {count} seeds failed",
        failing.len()
    );
    assert!(
        seen.faults > 0 && seen.merges > 0 && seen.conflicts > 0,
        "the sweep exercised reintegration: {seen:?}"
    );
}

/// What a sweep's runs did, all together.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    faults: u64,
    syncs: u64,
    /// Reintegrations completed (`kml` `reint_done`), all nodes together.
    merges: u64,
    /// Conflicts found, all nodes together.
    conflicts: u64,
    /// Records refused for their number, all nodes together.
    warnings: u64,
    /// Merges cut short, all nodes together.
    aborts: u64,
}

impl Seen {
    fn add(&mut self, r: &ringlab_sim::RunReport) {
        self.faults += r.faults;
        self.syncs += r.syncs_completed;
        for x in &r.records {
            if let Body::Kml { phase, .. } = &x.body {
                match phase.as_str() {
                    "reint_done" => self.merges += 1,
                    "conflict" => self.conflicts += 1,
                    "warning" => self.warnings += 1,
                    "abort" => self.aborts += 1,
                    _ => {}
                }
            }
        }
    }

    fn sum(self, o: &Self) -> Self {
        Self {
            faults: self.faults + o.faults,
            syncs: self.syncs + o.syncs,
            merges: self.merges + o.merges,
            conflicts: self.conflicts + o.conflicts,
            warnings: self.warnings + o.warnings,
            aborts: self.aborts + o.aborts,
        }
    }
}

#[test]
fn sweep_kml_classic_3_nodes_mixed_faults() {
    sweep(1, seeds(), Variant::Classic, 3, DURATION_MS);
}

#[test]
fn sweep_kml_classic_5_nodes_mixed_faults() {
    sweep(100_001, seeds(), Variant::Classic, 5, DURATION_MS);
}

#[test]
fn sweep_kml_accelerated_3_nodes_mixed_faults() {
    sweep(200_001, seeds(), Variant::Accelerated, 3, DURATION_MS);
}

#[test]
fn sweep_kml_accelerated_5_nodes_mixed_faults() {
    sweep(300_001, seeds(), Variant::Accelerated, 5, DURATION_MS);
}
