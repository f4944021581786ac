//! The sync engine and the checkpoint service in the simulator: partitions that diverge and
//! merge, configuration changes in each sync phase, the transmitting node crashing mid-sync,
//! restarts. After the final sync every live node's checkpoint state is identical (digests),
//! reference counts equal the sum of the nodes' own open counts, and the ring's checker passes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringlab_records::Body;
use ringlab_ring::{Config, MembState, NodeId};
use ringlab_sim::run::service_agreement;
use ringlab_sim::{check, liveness_bound, Liveness, NetConfig, Sim};
use ringlab_sync::checkpoint::{Command, ReadReply};
use ringlab_sync::{registry, CheckpointService, Op, Plugin, ServiceApp, Workload};

const MS: u64 = 1_000_000;

fn app(sim: &Sim, id: NodeId) -> &ServiceApp {
    sim.app(id).expect("the services run")
}

/// Reads a section of node `id`'s committed checkpoint state through its control command.
fn read(sim: &mut Sim, id: NodeId, name: &str, section: &str) -> Vec<u8> {
    let req = serde_json::to_value(Command::Read {
        name: name.into(),
        section: section.into(),
    })
    .unwrap();
    let reply = sim
        .app_mut(id)
        .expect("the services run")
        .control(CheckpointService::NAME, &req, u64::MAX)
        .unwrap();
    let r: ReadReply = serde_json::from_value(reply).unwrap();
    assert!(r.found);
    (0..r.data.len() / 2)
        .map(|i| u8::from_str_radix(&r.data[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn settled(sim: &Sim, ids: &[NodeId]) -> bool {
    let Some(first) = sim.ring(ids[0]) else {
        return false;
    };
    ids.iter().all(|&id| {
        sim.ring(id).is_some_and(|r| {
            r.state() == MembState::Operational
                && r.ring_id() == first.ring_id()
                && r.members() == ids
        }) && sim
            .app(id)
            .is_some_and(|_| !app(sim, id).engine.is_syncing())
    })
}

fn cluster(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(n, seed, Config::default(), NetConfig::default());
    let services = vec![registry::find(CheckpointService::NAME).unwrap()];
    sim.set_app_factory(move |id| ServiceApp::new(id, &services));
    sim.start_all();
    let ids = sim.ids();
    assert!(sim.run_until_cond(3_000 * MS, |s| settled(s, &ids)));
    sim
}

fn op(sim: &mut Sim, id: NodeId, o: &Op) {
    if let Some(a) = sim.app_mut(id) {
        a.queue_op(CheckpointService::ID, &o.encode());
    }
    sim.pump(id);
}

/// `ms` milliseconds of random checkpoint operations from `ids`, sections of `section` bytes.
fn workload(sim: &mut Sim, ids: &[NodeId], ms: u64, section: usize, rng: &mut ChaCha8Rng) {
    for _ in 0..ms {
        for &id in ids {
            if sim.is_up(id) && rng.gen_ratio(1, 2) {
                let o = CheckpointService::workload_op(
                    rng,
                    &Workload {
                        state_bytes: section * 128,
                    },
                );
                if let Some(a) = sim.app_mut(id) {
                    a.queue_op(CheckpointService::ID, &o);
                }
                sim.pump(id);
            }
        }
        sim.run_for(MS);
    }
}

/// Heals, waits for one synchronised ring of `live`, and checks everything.
fn converge_and_check(sim: &mut Sim, live: &[NodeId]) {
    sim.heal();
    let faults_end = sim.now();
    let bound = liveness_bound(&Config::default());
    assert!(
        sim.run_until_cond(faults_end + bound, |s| settled(s, live)),
        "one synchronised ring"
    );
    sim.run_for(500 * MS);
    let (mismatches, _, details) = service_agreement(sim, live);
    assert_eq!(mismatches, 0, "{details:?}");
    for &id in live {
        assert_eq!(app(sim, id).engine.held_ops(), 0);
    }
    let report = check(
        sim.records(),
        Some(&Liveness {
            faults_end,
            bound,
            live: live.to_vec(),
            end: 0,
        }),
    );
    for v in &report.violations {
        eprintln!("{v}");
    }
    assert!(report.violations.is_empty());
}

fn sync_phases(sim: &Sim, phase: &str) -> usize {
    sim.records()
        .iter()
        .filter(|r| matches!(&r.body, Body::Sync { phase: p, .. } if p == phase))
        .count()
}

#[test]
fn partitions_2_3_diverge_and_merge_with_a_reported_conflict() {
    let mut sim = cluster(5, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    workload(&mut sim, &[1, 2, 3, 4, 5], 200, 300, &mut rng);
    sim.partition(&[&[1, 2], &[3, 4, 5]]);
    sim.run_for(3_000 * MS);
    // Both sides write the same checkpoint differently.
    for side in [1, 3] {
        op(&mut sim, side, &Op::Create(b"shared".to_vec()));
        op(
            &mut sim,
            side,
            &Op::Write(
                b"shared".to_vec(),
                b"s".to_vec(),
                vec![side as u8; 100].into(),
            ),
        );
    }
    workload(&mut sim, &[1, 2, 3, 4, 5], 300, 300, &mut rng);
    converge_and_check(&mut sim, &[1, 2, 3, 4, 5]);
    assert!(
        sync_phases(&sim, "conflict") > 0,
        "the conflict was reported"
    );
    // The copy of the lowest transmitter (node 1's side) won, everywhere.
    for id in 1..=5 {
        assert_eq!(read(&mut sim, id, "shared", "s"), vec![1u8; 100]);
    }
}

#[test]
fn partitions_1_1_3_and_a_cascade() {
    let mut sim = cluster(5, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    workload(&mut sim, &[1, 2, 3, 4, 5], 200, 200, &mut rng);
    sim.partition(&[&[1], &[2], &[3, 4, 5]]);
    sim.run_for(3_000 * MS);
    workload(&mut sim, &[1, 2, 3, 4, 5], 200, 200, &mut rng);
    sim.heal();
    sim.run_for(500 * MS);
    // A cascade: split again before things settle, then again inside a side.
    sim.partition(&[&[1, 2, 3], &[4, 5]]);
    workload(&mut sim, &[1, 2, 3, 4, 5], 100, 200, &mut rng);
    sim.partition(&[&[1], &[2, 3], &[4, 5]]);
    workload(&mut sim, &[1, 2, 3, 4, 5], 1_500, 200, &mut rng);
    converge_and_check(&mut sim, &[1, 2, 3, 4, 5]);
}

/// Builds about 12 MiB of state so the transmitter's PROCESS spans many token visits.
fn big_state(sim: &mut Sim) {
    for k in 0..24u8 {
        let name = format!("big-{}", k % 4).into_bytes();
        op(sim, 1, &Op::Create(name.clone()));
        op(
            sim,
            1,
            &Op::Write(name, vec![k], vec![k; 512 * 1024].into()),
        );
        sim.run_for(20 * MS);
    }
    sim.run_for(2_000 * MS);
}

fn change_during(phase: &str, seed: u64) {
    let mut sim = cluster(5, seed);
    big_state(&mut sim);
    op(&mut sim, 5, &Op::Open(b"big-0".to_vec()));
    sim.run_for(100 * MS);
    // Node 5 restarts empty: a sync with real work starts when it rejoins.
    sim.crash(5);
    sim.run_for(3_000 * MS);
    sim.start(5);
    let deadline = sim.now() + 5_000 * MS;
    assert!(
        sim.run_until_cond(deadline, |s| s
            .app(1)
            .is_some_and(|_| app(s, 1).engine.phase() == phase)),
        "node 1 reached {phase}"
    );
    let aborts = sync_phases(&sim, "abort");
    sim.isolate(3);
    sim.run_for(4_000 * MS);
    assert!(
        sync_phases(&sim, "abort") > aborts,
        "the sync in {phase} was aborted"
    );
    converge_and_check(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn configuration_change_during_service_list_build() {
    change_during("service_list_build", 3);
}

#[test]
fn configuration_change_during_process() {
    change_during("process", 4);
}

#[test]
fn configuration_change_during_barrier() {
    change_during("barrier", 5);
}

#[test]
fn the_transmitting_node_crashes_mid_sync() {
    let mut sim = cluster(5, 6);
    big_state(&mut sim);
    sim.crash(5);
    sim.run_for(3_000 * MS);
    sim.start(5);
    let deadline = sim.now() + 5_000 * MS;
    assert!(sim.run_until_cond(deadline, |s| s
        .app(1)
        .is_some_and(|_| app(s, 1).engine.phase() == "process")));
    // Node 1 is the lowest of the group holding the big state: it transmits. It dies.
    sim.crash(1);
    sim.run_for(5_000 * MS);
    converge_and_check(&mut sim, &[2, 3, 4, 5]);
    assert_eq!(
        app(&sim, 5).state_size().bytes,
        app(&sim, 2).state_size().bytes
    );
    assert!(app(&sim, 5).state_size().bytes > 1 << 20);
}

#[test]
fn restarts_and_random_faults_keep_every_replica_equal() {
    let mut sim = cluster(5, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for round in 0..6 {
        workload(&mut sim, &[1, 2, 3, 4, 5], 200, 500, &mut rng);
        let victim = rng.gen_range(1..=5);
        if sim.is_up(victim) {
            sim.crash(victim);
        }
        workload(&mut sim, &[1, 2, 3, 4, 5], 300, 500, &mut rng);
        if round % 2 == 0 {
            sim.partition(&[&[1, 2], &[3, 4, 5]]);
        }
        workload(&mut sim, &[1, 2, 3, 4, 5], 300, 500, &mut rng);
        sim.heal();
        for id in 1..=5 {
            if !sim.is_up(id) {
                sim.start(id);
            }
        }
    }
    converge_and_check(&mut sim, &[1, 2, 3, 4, 5]);
    assert!(sync_phases(&sim, "done") > 10);
}
