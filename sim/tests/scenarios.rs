//! Named fault scenarios, each driven precisely in the simulator and judged by the checker.
//! Times are virtual: asserting them is asserting protocol behaviour, not machine speed.

use ringlab_records::Body;
use ringlab_ring::wire::MessageType;
use ringlab_ring::{Config, Guarantee, MembState, NodeId, Reason};
use ringlab_sim::{check, liveness_bound, Liveness, NetConfig, Sim};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const MS: u64 = 1_000_000;

fn cluster(n: usize, seed: u64, cfg: Config) -> Sim {
    let mut sim = Sim::new(n, seed, cfg, NetConfig::default());
    sim.start_all();
    let ids = sim.ids();
    assert!(
        sim.run_until_cond(2_000 * MS, |s| one_ring(s, &ids)),
        "a {n}-node cluster did not form one ring"
    );
    sim
}

/// Returns whether every node in `ids` is operational on one ring whose members are `ids`.
fn one_ring(sim: &Sim, ids: &[NodeId]) -> bool {
    let Some(first) = sim.ring(ids[0]) else {
        return false;
    };
    ids.iter().all(|&id| {
        sim.ring(id).is_some_and(|r| {
            r.state() == MembState::Operational
                && r.ring_id() == first.ring_id()
                && r.members() == ids
        })
    })
}

/// Submits `k` messages from each of `from`, mixing sizes and guarantees.
fn load(sim: &mut Sim, from: &[NodeId], k: usize) {
    for i in 0..k {
        for &id in from {
            if sim.is_up(id) {
                let len = [1, 100, 1400, 9000][i % 4];
                let g = if i % 3 == 0 {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                };
                let _ = sim.submit(id, &vec![i as u8; len], g);
            }
        }
        sim.run_for(MS);
    }
}

/// Heals everything, waits for one ring of `live`, sends probes, and runs the checker with
/// liveness. Returns the records' report.
fn settle_and_check(sim: &mut Sim, live: &[NodeId]) -> ringlab_sim::Report {
    sim.clear_filter();
    sim.heal();
    let faults_end = sim.now();
    let cfg = sim.ring(live[0]).expect("live").config().clone();
    let bound = liveness_bound(&cfg);
    sim.run_until_cond(faults_end + bound, |s| one_ring(s, live));
    for &id in live {
        // A backlog may still be draining: the bounded queue pushes back until it has room.
        let deadline = sim.now() + bound;
        while let Err(e) = sim.submit(id, b"probe", Guarantee::Safe) {
            assert!(
                matches!(e, ringlab_ring::SubmitError::QueueFull { .. }),
                "{e}"
            );
            assert!(sim.now() < deadline, "node {id}'s queue never drained");
            sim.run_for(10 * MS);
        }
    }
    sim.run_for(2 * cfg.token * MS);
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
        eprintln!("violation: {v}");
    }
    report
}

fn assert_clean(sim: &mut Sim, live: &[NodeId]) {
    let r = settle_and_check(sim, live);
    assert!(r.violations.is_empty(), "{} violations", r.violations.len());
}

fn reasons(sim: &Sim, node: NodeId) -> Vec<Reason> {
    sim.records()
        .iter()
        .filter(|r| r.node == node)
        .filter_map(|r| match r.body {
            Body::State { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

fn drop_first(
    kind: MessageType,
    count: u32,
) -> impl FnMut(&ringlab_sim::PacketInfo) -> bool + Send {
    let left = Arc::new(AtomicU32::new(count));
    move |p| {
        if p.kind == Some(kind) && left.load(Ordering::SeqCst) > 0 {
            left.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        false
    }
}

#[test]
fn token_lost_once_is_retransmitted_without_a_membership_change() {
    let mut sim = cluster(5, 1, Config::default());
    let installs = sim.ring(1).unwrap().stats().installs;
    sim.set_filter(drop_first(MessageType::Token, 1));
    load(&mut sim, &[1, 2, 3], 50);
    sim.run_for(500 * MS);
    assert_eq!(sim.net_stats.filtered, 1);
    assert!((1..=5).any(|i| sim.ring(i).unwrap().stats().token_retransmits > 0));
    assert_eq!(
        sim.ring(1).unwrap().stats().installs,
        installs,
        "no new ring"
    );
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn token_lost_for_longer_than_the_token_timeout_reforms_the_same_members() {
    let mut sim = cluster(5, 2, Config::default());
    load(&mut sim, &[1, 4], 20);
    // Every token and its retransmissions vanish for 1.1 s.
    let until = sim.now() + 1_100 * MS;
    sim.set_filter(move |p| p.kind == Some(MessageType::Token) && p.to != p.from && until > 0);
    sim.run_for(1_100 * MS);
    sim.clear_filter();
    assert!((1..=5).any(|n| reasons(&sim, n).contains(&Reason::TokenLoss)));
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn lost_joins_still_reach_consensus() {
    let mut sim = Sim::new(5, 3, Config::default(), NetConfig::default());
    // The first 40 joins anywhere are lost while the cluster forms.
    sim.set_filter(drop_first(MessageType::Join, 40));
    sim.start_all();
    sim.run_for(3_000 * MS);
    assert!(sim.net_stats.filtered >= 40);
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn lost_commit_tokens_are_retransmitted_or_the_round_restarts() {
    let mut sim = cluster(5, 4, Config::default());
    sim.set_filter(drop_first(MessageType::CommitToken, 3));
    sim.isolate(5);
    sim.run_for(4_000 * MS);
    assert_eq!(sim.net_stats.filtered, 3);
    assert!(
        one_ring(&sim, &[1, 2, 3, 4]),
        "the four re-formed despite lost commit tokens"
    );
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

/// Isolates node 5 of a loaded 5-node ring, losing the first `lost` commit tokens; returns
/// the virtual time from the isolation to one ring of nodes 1-4, and whether any of them
/// formed a ring without another live one on the way.
fn commit_tokens_lost(adaptive: bool, lost: u32) -> (u64, bool) {
    let cfg = Config {
        adaptive_token_retransmit: adaptive,
        ..Config::default()
    };
    let mut sim = cluster(5, 4, cfg);
    load(&mut sim, &[1, 2, 3], 20);
    sim.set_filter(drop_first(MessageType::CommitToken, lost));
    let t = sim.now();
    sim.isolate(5);
    let live = [1, 2, 3, 4];
    assert!(sim.run_until_cond(t + 10_000 * MS, |s| one_ring(s, &live)));
    let took = sim.now() - t;
    let split = sim.records().iter().any(|r| {
        r.t_ns >= t
            && r.node != 5
            && matches!(&r.body, Body::Config { kind, members, .. }
                if *kind == ringlab_ring::ConfigKind::Regular && members.len() < 4)
    });
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
    (took, split)
}

#[test]
fn a_commit_token_lost_in_a_burst_is_re_sent_within_a_join_interval() {
    // Five commit tokens in a row lost (a burst): re-sent every join interval (50 ms) while
    // the ring forms, the round survives; re-sent every token_retransmit (238 ms, corosync's
    // and the knob off), the burst outlasts the token timeout, the round falls back and the
    // silent committer is given up on (issue 16, wrongly excluded under bursty loss).
    let (fast, fast_split) = commit_tokens_lost(true, 5);
    let (slow, _) = commit_tokens_lost(false, 5);
    let bound = 1_000 + 1_200 + 5 * 50 + 100;
    assert!(
        fast < bound * MS && !fast_split,
        "{fast} ns, split {fast_split}"
    );
    assert!(slow > fast + 500 * MS, "{slow} ns against {fast} ns");
}

#[test]
fn a_re_sent_first_rotation_commit_token_does_not_start_the_ring_early() {
    // The second rotation's commit token from node 2 to node 3 is lost once. Node 4 re-sends
    // the first rotation's (complete) token to the representative, node 1, which is already
    // in RECOVERY: it must not take it for the second rotation's end and start the new
    // ring's token while nodes 3 and 4 are still in COMMIT. Node 2's re-sent commit token
    // then completes the rotation, and the ring forms without a token timeout.
    let mut sim = cluster(5, 5, Config::default());
    load(&mut sim, &[1, 2, 3], 10);
    // Only the second commit token from 2 to 3: the second rotation's.
    let seen = AtomicU32::new(0);
    sim.set_filter(move |p| {
        p.kind == Some(MessageType::CommitToken)
            && (p.from, p.to) == (2, 3)
            && seen.fetch_add(1, Ordering::SeqCst) == 1
    });
    let t = sim.now();
    sim.isolate(5);
    let live = [1, 2, 3, 4];
    assert!(sim.run_until_cond(t + 10_000 * MS, |s| one_ring(s, &live)));
    assert_eq!(
        sim.net_stats.filtered, 1,
        "the second rotation's hop was lost"
    );
    assert!(
        live.iter()
            .all(|&n| !reasons(&sim, n).contains(&Reason::CommitTokenLoss)),
        "a commit token timed out"
    );
    assert!(
        sim.now() - t < (1_000 + 1_200 + 500) * MS,
        "{} ms",
        (sim.now() - t) / MS
    );
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

fn crash_in_state(state: MembState, seed: u64) {
    let mut sim = cluster(5, seed, Config::default());
    load(&mut sim, &[1, 2, 3, 4, 5], 10);
    // A membership change: node 5 leaves the network.
    sim.isolate(5);
    let deadline = sim.now() + 5_000 * MS;
    let reached = sim.run_until_cond(deadline, |s| s.state(3) == Some(state));
    assert!(reached, "node 3 never entered {state:?}");
    sim.crash(3);
    load(&mut sim, &[1, 2, 4], 10);
    sim.run_for(4_000 * MS);
    assert!(
        one_ring(&sim, &[1, 2, 4]),
        "survivors re-formed after a crash in {state:?}"
    );
    sim.heal();
    assert_clean(&mut sim, &[1, 2, 4, 5]);
}

#[test]
fn crash_in_gather() {
    crash_in_state(MembState::Gather, 11);
}

#[test]
fn crash_in_commit() {
    crash_in_state(MembState::Commit, 12);
}

#[test]
fn crash_in_recovery() {
    crash_in_state(MembState::Recovery, 13);
}

#[test]
fn crash_in_operational() {
    let mut sim = cluster(5, 14, Config::default());
    load(&mut sim, &[1, 2, 3, 4, 5], 20);
    sim.crash(3);
    load(&mut sim, &[1, 2], 10);
    sim.run_for(3_000 * MS);
    assert!(one_ring(&sim, &[1, 2, 4, 5]));
    assert!([1, 2, 4, 5]
        .iter()
        .any(|&n| reasons(&sim, n).contains(&Reason::TokenLoss)));
    assert_clean(&mut sim, &[1, 2, 4, 5]);
}

#[test]
fn partition_2_3_then_merge() {
    let mut sim = cluster(5, 5, Config::default());
    load(&mut sim, &[1, 3], 10);
    sim.partition(&[&[1, 2], &[3, 4, 5]]);
    load(&mut sim, &[1, 2, 3, 4, 5], 200);
    sim.run_for(3_000 * MS);
    assert!(
        one_ring(&sim, &[1, 2]) && one_ring(&sim, &[3, 4, 5]),
        "two rings during the split"
    );
    sim.heal();
    load(&mut sim, &[2, 5], 20);
    sim.run_for(2_000 * MS);
    assert!(one_ring(&sim, &[1, 2, 3, 4, 5]), "one ring after the merge");
    assert!((1..=5).any(|n| {
        let r = reasons(&sim, n);
        r.contains(&Reason::MergeDetect)
            || r.contains(&Reason::ForeignMessage)
            || r.contains(&Reason::Join)
    }));
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn cascading_failures() {
    let mut sim = cluster(5, 6, Config::default());
    load(&mut sim, &[1, 2, 3, 4, 5], 10);
    sim.crash(5);
    sim.run_for(1_100 * MS); // token lost, GATHER under way
    sim.crash(4);
    load(&mut sim, &[1, 2, 3], 5);
    sim.run_for(700 * MS);
    sim.crash(3);
    sim.run_for(6_000 * MS);
    assert!(one_ring(&sim, &[1, 2]));
    assert_clean(&mut sim, &[1, 2]);
}

#[test]
fn restart_is_a_new_incarnation() {
    let mut sim = cluster(5, 7, Config::default());
    load(&mut sim, &[3], 10);
    sim.crash(3);
    sim.run_for(3_000 * MS);
    assert!(one_ring(&sim, &[1, 2, 4, 5]));
    sim.start(3);
    assert_eq!(sim.incarnation(3), 2);
    load(&mut sim, &[3, 1], 10);
    sim.run_for(1_000 * MS);
    assert!(one_ring(&sim, &[1, 2, 3, 4, 5]));
    // Node 3's new incarnation reports itself joined, not carried over.
    let joined_as_new = sim.records().iter().any(|r| {
        r.node == 3
            && r.inc == 2
            && matches!(&r.body, Body::Config { kind: ringlab_ring::ConfigKind::Regular, joined, .. } if joined.len() == 4)
    });
    assert!(joined_as_new);
    // Ring ids never repeat across incarnations (the stable ring seq).
    let seq_before = sim.ring(1).unwrap().ring_id().seq;
    assert!(seq_before > 4);
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

fn lossy_run(cfg: Config) -> (u64, u64) {
    let mut sim = cluster(5, 8, cfg);
    sim.net.loss = 0.3;
    load(&mut sim, &[1, 2, 3, 4, 5], 5_000);
    let delivered = sim.delivered;
    let retransmitted: u64 = (1..=5)
        .map(|i| sim.ring(i).map_or(0, |r| r.stats().frames_retransmitted))
        .sum();
    sim.net.loss = 0.0;
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
    (delivered, retransmitted)
}

#[test]
fn thirty_percent_loss() {
    // At corosync's timing a lost token costs token_retransmit (238 ms); with 30% loss per
    // hop a 5-node rotation loses ~1.5 hops, so the ring crawls and often times out and
    // re-forms. Safety must hold throughout and the ring must come back once loss stops.
    let (slow, _) = lossy_run(Config::default());
    // With the token retransmitted every 10 ms the same network carries real traffic.
    let (fast, retransmitted) = lossy_run(Config {
        token_retransmit: Some(10),
        hold: Some(5),
        ..Config::default()
    });
    eprintln!("30% loss, 5 virtual seconds: delivered {slow} at default timing, {fast} with token_retransmit 10 ms");
    assert!(
        fast > 2_000,
        "delivered {fast} under 30% loss with a 10 ms token_retransmit"
    );
    assert!(
        retransmitted > 0,
        "lost frames were re-multicast on request"
    );
    assert!(
        fast > slow,
        "a shorter token_retransmit helps: {fast} vs {slow}"
    );
}

#[test]
fn duplicated_and_reordered_packets_change_nothing() {
    let mut sim = cluster(5, 9, Config::default());
    let installs: Vec<u64> = (1..=5)
        .map(|i| sim.ring(i).unwrap().stats().installs)
        .collect();
    sim.net.dup = 0.2;
    sim.net.reorder = 0.3;
    load(&mut sim, &[1, 2, 3, 4, 5], 300);
    sim.run_for(1_000 * MS);
    assert!(sim.net_stats.duplicated > 100);
    let dups: u64 = (1..=5).map(|i| sim.drops(i).duplicate_tokens).sum();
    assert!(dups > 0, "duplicate tokens were seen and dropped");
    let after: Vec<u64> = (1..=5)
        .map(|i| sim.ring(i).unwrap().stats().installs)
        .collect();
    assert_eq!(installs, after, "no membership change");
    sim.net.dup = 0.0;
    sim.net.reorder = 0.0;
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn graceful_leave_reforms_without_waiting_for_the_token_timeout() {
    let cfg = Config::default();
    let mut sim = cluster(5, 10, cfg.clone());
    load(&mut sim, &[1, 2], 10);
    let t0 = sim.now();
    sim.leave(4);
    assert!(sim.run_until_cond(t0 + cfg.token * MS, |s| one_ring(s, &[1, 2, 3, 5])));
    let took = sim.now() - t0;
    assert!(took < cfg.token * MS / 2, "re-formed in {} ms", took / MS);
    assert!(reasons(&sim, 1).contains(&Reason::Leave));
    assert_clean(&mut sim, &[1, 2, 3, 5]);
}

#[test]
fn a_member_that_fails_to_receive_is_excluded() {
    let cfg = Config {
        fail_recv_const: 50,
        ..Config::default()
    };
    let mut sim = cluster(4, 15, cfg);
    // Node 4 hears tokens and joins, but no mcast.
    sim.set_filter(|p| p.to == 4 && p.kind == Some(MessageType::Mcast));
    for _ in 0..200 {
        let _ = sim.submit(1, &[1; 100], Guarantee::Agreed);
        sim.run_for(2 * MS);
    }
    sim.run_for(500 * MS);
    assert!((1..=3).any(|n| reasons(&sim, n).contains(&Reason::FailToRecv)));
    let excluded = sim.records().iter().any(|r| {
        r.node == 1 && matches!(&r.body, Body::Config { kind: ringlab_ring::ConfigKind::Regular, members, .. } if members == &[1, 2, 3])
    });
    assert!(excluded, "a ring without node 4 formed");
    // Safety holds throughout, even while node 4 keeps being re-admitted and excluded.
    let r = check(sim.records(), None);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn an_idle_ring_holds_the_token_and_a_send_cancels_the_hold() {
    let cfg = Config::default();
    let mut sim = cluster(5, 16, cfg.clone());
    sim.run_for(1_000 * MS);
    let before = sim.ring(2).unwrap().stats().tokens_received;
    sim.run_for(1_000 * MS);
    let rotations = sim.ring(2).unwrap().stats().tokens_received - before;
    // Held for `hold` (180 ms) every 31 rotations: well under the thousands a busy ring makes.
    assert!(rotations < 300, "{rotations} rotations in an idle second");
    let t0 = sim.now();
    let id = sim.submit(3, b"wake up", Guarantee::Agreed).unwrap();
    let delivered = |s: &Sim| {
        s.records()
            .iter()
            .any(|r| r.node == 5 && matches!(&r.body, Body::Deliver { id: d, .. } if *d == id))
    };
    assert!(sim.run_until_cond(t0 + cfg.hold_ms() * MS, delivered));
    assert!(
        sim.now() - t0 < cfg.hold_ms() * MS / 4,
        "the hold was cancelled"
    );
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn idle_partitions_merge_through_merge_detect() {
    let mut sim = cluster(4, 17, Config::default());
    sim.partition(&[&[1, 2], &[3, 4]]);
    sim.run_for(4_000 * MS);
    assert!(one_ring(&sim, &[1, 2]) && one_ring(&sim, &[3, 4]));
    sim.heal();
    sim.run_for(1_000 * MS);
    assert!(one_ring(&sim, &[1, 2, 3, 4]));
    assert!((1..=4).any(|n| reasons(&sim, n).contains(&Reason::MergeDetect)));
    assert_clean(&mut sim, &[1, 2, 3, 4]);
}

#[test]
fn memory_is_bounded_by_windows_and_queues_not_by_traffic() {
    let cfg = Config::default();
    let mut sim = cluster(5, 18, cfg.clone());
    sim.record_messages = false;
    let mut refused = 0u64;
    let mut max_stored = 0;
    let mut max_queue = 0;
    for round in 0..4_000 {
        for id in 1..=5 {
            // Offer far more than the ring carries: the queue must push back.
            for _ in 0..20 {
                if sim
                    .submit(id, &[round as u8; 900], Guarantee::Agreed)
                    .is_err()
                {
                    refused += 1;
                }
            }
        }
        sim.run_for(MS / 4);
        for id in 1..=5 {
            let r = sim.ring(id).unwrap();
            max_stored = max_stored.max(r.stored_frames());
            max_queue = max_queue.max(r.queue_depth().1);
        }
    }
    sim.run_for(5_000 * MS);
    assert!(refused > 0, "the bounded queue refused some messages");
    assert!(sim.delivered > 100_000, "delivered {}", sim.delivered);
    assert!(max_queue <= cfg.send_queue_bytes);
    // Frames held: a few rotations' worth of the window, whatever the traffic.
    assert!(
        max_stored <= 8 * cfg.window_size as usize,
        "held up to {max_stored} frames"
    );
    let after: usize = (1..=5)
        .map(|i| sim.ring(i).unwrap().stored_frames())
        .max()
        .unwrap();
    assert!(after <= 2 * cfg.window_size as usize);
}

#[test]
fn same_seed_same_run_bit_for_bit() {
    let run = |seed| {
        let mut c = ringlab_sim::RunConfig {
            seed,
            duration_ms: 12_000,
            faults: ringlab_sim::Faults::parse("all").unwrap(),
            ..Default::default()
        };
        c.net.loss = 0.05;
        c.net.dup = 0.02;
        c.net.reorder = 0.05;
        let r = ringlab_sim::run(&c);
        serde_json::to_string(&r.records).unwrap()
    };
    let a = run(33);
    assert_eq!(a, run(33));
    assert_ne!(a, run(34));
}

#[test]
fn hostile_packets_never_disturb_the_ring() {
    let mut sim = cluster(3, 19, Config::default());
    let mut rng = 0x1234_5678u64;
    let mut junk = Vec::new();
    for i in 0..3000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = (rng % 200) as usize;
        let mut b: Vec<u8> = (0..len).map(|j| (rng >> (j % 56)) as u8).collect();
        if i % 3 == 0 && b.len() > 4 {
            // Give a third of them a valid magic and version so they get past the header.
            b[0] = 0x52;
            b[1] = 0x4C;
            b[2] = ringlab_ring::wire::VERSION;
            b[3] %= 8;
        }
        junk.push(b);
    }
    let ring_before = sim.ring(1).unwrap().ring_id();
    for b in &junk {
        sim.inject_packet(2, 1, b);
    }
    // Datagrams above netmtu are refused before decoding.
    sim.inject_packet(2, 1, &vec![0x52; 1401]);
    assert_eq!(sim.drops(2).oversized, 1);
    load(&mut sim, &[1, 2, 3], 20);
    assert!(sim.drops(2).undecodable() > 1000);
    assert_eq!(sim.ring(1).unwrap().ring_id(), ring_before);
    assert_clean(&mut sim, &[1, 2, 3]);
}

#[test]
fn per_link_delay_jitter_and_loss() {
    let mut sim = cluster(5, 20, Config::default());
    // Node 2 sits behind a slow, lossy, jittery link in both directions; the rest are clean.
    let slow = NetConfig {
        delay_ns: 3 * MS,
        jitter_ns: 2 * MS,
        loss: 0.2,
        dup: 0.05,
        reorder: 0.1,
        ..NetConfig::default()
    };
    for other in [1, 3, 4, 5] {
        sim.set_link(2, other, slow);
        sim.set_link(other, 2, slow);
    }
    load(&mut sim, &[1, 2, 3], 300);
    sim.run_for(2_000 * MS);
    assert!(sim.net_stats.lost > 0 && sim.net_stats.duplicated > 0);
    let retransmitted: u64 = (1..=5)
        .map(|i| sim.ring(i).unwrap().stats().frames_retransmitted)
        .sum();
    assert!(retransmitted > 0, "losses on node 2's links were repaired");
    sim.clear_links();
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn a_one_mebibyte_message_is_fragmented_and_reassembled_everywhere() {
    let mut sim = cluster(5, 21, Config::default());
    let big: Vec<u8> = (0..ringlab_ring::pack::MESSAGE_MAX)
        .map(|i| (i % 251) as u8)
        .collect();
    let id = sim.submit(2, &big, Guarantee::Safe).unwrap();
    load(&mut sim, &[1, 3], 50);
    sim.run_for(2_000 * MS);
    let lens: Vec<usize> = sim
        .records()
        .iter()
        .filter_map(|r| match &r.body {
            Body::Deliver { id: d, len, .. } if *d == id => Some(*len),
            _ => None,
        })
        .collect();
    assert_eq!(lens, vec![ringlab_ring::pack::MESSAGE_MAX; 5]);
    // Too large by one byte is refused with a typed error.
    assert!(matches!(
        sim.submit(
            2,
            &vec![0; ringlab_ring::pack::MESSAGE_MAX + 1],
            Guarantee::Agreed
        ),
        Err(ringlab_ring::SubmitError::TooLarge { .. })
    ));
    assert_clean(&mut sim, &[1, 2, 3, 4, 5]);
}

#[test]
fn a_commit_without_an_unheard_node_falls_back_at_once() {
    // The race simultaneous starts in namespaces hit: node 2 commits {2,3,4,5} before node 1
    // is heard; node 1's join reaches 3-5 (not 2) before node 2's commit token does, so they
    // ignore that token. Before the fix node 2 waited in COMMIT for the token timeout
    // (1000 ms); now the joins of 3-5, naming a processor node 2 never heard of, send it back
    // to GATHER at once.
    let mut sim = Sim::new(5, 21, Config::default(), NetConfig::default());
    let slow = NetConfig {
        delay_ns: 20 * MS,
        ..NetConfig::default()
    };
    sim.set_link(2, 3, slow);
    sim.cut(1, 2, true);
    for id in 2..=5 {
        sim.start(id);
    }
    let committed = sim.run_until_cond(500 * MS, |s| {
        s.ring(2).is_some_and(|r| r.state() == MembState::Commit)
    });
    assert!(committed, "node 2 commits {{2,3,4,5}}");
    let t = sim.now();
    sim.start(1);
    sim.run_for(5 * MS);
    sim.heal();
    sim.clear_links();
    let ids = sim.ids();
    assert!(
        sim.run_until_cond(t + 400 * MS, |s| one_ring(s, &ids)),
        "one ring within 400 ms (the token timeout is 1000 ms)"
    );
    assert_clean(&mut sim, &ids);
}

/// Cuts with `cut` at 1 s into a loaded 5-node ring, and returns the regular configurations
/// installed from the cut on (time after the cut in ms, node, members), the time the cut was
/// made, and the simulator.
/// A regular configuration seen in a run: ms after the cut, node, members.
type Installed = (u64, NodeId, Vec<NodeId>);

fn idx(id: NodeId) -> usize {
    id as usize - 1
}

/// Cuts with `cut` a loaded 5-node ring (seed `seed`) and runs 6 s; returns the regular
/// configurations installed from the cut on, and the simulator.
fn asymmetric(cfg: Config, seed: u64, cut: &dyn Fn(&mut Sim)) -> (Vec<Installed>, Sim) {
    let mut sim = cluster(5, seed, cfg);
    let t0 = sim.now();
    cut(&mut sim);
    // 6 s of cut under load: a message per node every 10 ms.
    for _ in 0..600 {
        for id in 1..=5 {
            let _ = sim.submit(id, &[7; 100], Guarantee::Agreed);
        }
        sim.run_for(10 * MS);
    }
    let configs = sim
        .records()
        .iter()
        .filter(|r| r.t_ns >= t0)
        .filter_map(|r| match &r.body {
            Body::Config { kind, members, .. } if *kind == ringlab_ring::ConfigKind::Regular => {
                Some(((r.t_ns - t0) / MS, r.node, members.clone()))
            }
            _ => None,
        })
        .collect();
    (configs, sim)
}

/// The target, over 10 seeds: settled within token + consensus + 500 ms of the
/// cut, then no configuration change until the heal, one of the pair `(a, b)` alone and the
/// other four together; after the heal, one ring of all five and a clean checker.
fn settles_then_heals(cut: &dyn Fn(&mut Sim), (a, b): (NodeId, NodeId)) {
    for seed in 16..26 {
        let (configs, mut sim) = asymmetric(Config::default(), seed, cut);
        let bound = 1000 + 1200 + 500;
        let late: Vec<_> = configs.iter().filter(|c| c.0 > bound).collect();
        assert!(
            late.is_empty(),
            "seed {seed}: changes after {bound} ms: {late:?}"
        );
        let rings: Vec<Vec<NodeId>> = (1..=5)
            .map(|id| sim.ring(id).expect("up").members().to_vec())
            .collect();
        let alone: Vec<NodeId> = (1..=5).filter(|&id| rings[idx(id)].len() == 1).collect();
        if alone.is_empty() {
            // Non-adjacent on the ring: retransmissions through the others cover the cut,
            // and the ring carries on whole.
            assert!(
                rings.iter().all(|r| r.len() == 5) && configs.len() <= 5,
                "seed {seed}: {rings:?} {configs:?}"
            );
        } else {
            assert!(alone == [a] || alone == [b], "seed {seed}: {rings:?}");
            for id in (1..=5).filter(|id| !alone.contains(id)) {
                let members = &rings[idx(id)];
                assert!(
                    members.len() == 4 && !members.contains(&alone[0]),
                    "seed {seed}: node {id} on {members:?}"
                );
            }
        }
        let ids = sim.ids();
        assert_clean(&mut sim, &ids);
    }
}

#[test]
fn a_one_way_cut_settles_with_the_odd_node_out_and_no_churn() {
    // Node 2 stops hearing node 1 (node 1 still hears node 2). Totem and corosync re-form
    // over and over while it lasts; ringlab leaves one of the two in a ring of its own.
    settles_then_heals(&|s| s.cut(1, 2, true), (1, 2));
    settles_then_heals(&|s| s.cut(4, 2, true), (2, 4));
}

#[test]
fn a_partial_cut_settles_with_one_of_the_pair_out_and_no_churn() {
    // Nodes 1 and 2 cannot hear each other; both reach 3, 4 and 5.
    settles_then_heals(&|s| s.cut(1, 2, false), (1, 2));
    settles_then_heals(&|s| s.cut(3, 5, false), (3, 5));
}

#[test]
fn without_the_reachability_rules_a_one_way_cut_churns() {
    // The knob off is Totem's behaviour: configurations keep changing after the bound.
    let cfg = Config {
        reachability: false,
        ..Config::default()
    };
    let (configs, _) = asymmetric(cfg, 16, &|s| s.cut(1, 2, true));
    assert!(
        configs.iter().any(|c| c.0 > 2700),
        "no churn without the knob: {configs:?}"
    );
}

/// Starts nodes 2-5, then node 1 once all four are past GATHER forming their ring; returns
/// the virtual time from node 1's start to one ring of all five.
fn late_start_to_full_ring(pending_joins: bool, seed: u64) -> u64 {
    let cfg = Config {
        pending_joins,
        ..Config::default()
    };
    let mut sim = Sim::new(5, seed, cfg, NetConfig::default());
    for id in 2..=5 {
        sim.start(id);
    }
    assert!(sim.run_until_cond(2_000 * MS, |s| (2..=5).all(|id| s
        .ring(id)
        .is_some_and(|r| matches!(r.state(), MembState::Commit | MembState::Recovery)))));
    let t = sim.now();
    sim.start(1);
    let ids = sim.ids();
    assert!(sim.run_until_cond(t + 2_000 * MS, |s| one_ring(s, &ids)));
    let took = sim.now() - t;
    assert_clean(&mut sim, &ids);
    took
}

#[test]
fn a_join_heard_while_forming_a_ring_is_merged_right_after_the_install() {
    // The start -> full ring tail: node 1's join reaches the others while they commit a ring
    // without it. corosync (pending_joins off) drops it, and node 1 waits for its next join
    // interval (50 ms); ringlab merges with it as soon as the ring is installed.
    for seed in 30..40 {
        let on = late_start_to_full_ring(true, seed);
        let off = late_start_to_full_ring(false, seed);
        assert!(
            on < off,
            "seed {seed}: {on} ns with pending joins, {off} without"
        );
        assert!(on < 30 * MS, "seed {seed}: {on} ns");
    }
}

/// Starts `n` nodes at instants drawn from 0 to 20 ms (as processes started together by a
/// script), seed by seed; returns, per seed, the virtual time from the last start to one
/// ring of all `n`.
fn staggered_starts(n: usize, seeds: std::ops::Range<u64>, pending_joins: bool) -> Vec<u64> {
    use rand::Rng;
    let cfg = Config {
        pending_joins,
        ..Config::default()
    };
    seeds
        .map(|seed| {
            let mut sim = Sim::new(n, seed, cfg.clone(), NetConfig::default());
            let ids = sim.ids();
            let mut at: Vec<(u64, NodeId)> = ids
                .iter()
                .map(|&id| (sim.rng().gen_range(0..=20_000u64) * 1_000, id))
                .collect();
            at.sort();
            for &(t, id) in &at {
                sim.run_until(t);
                sim.start(id);
            }
            let last = sim.now();
            assert!(
                sim.run_until_cond(last + 2_000 * MS, |s| one_ring(s, &ids)),
                "{n} nodes, seed {seed}: no full ring"
            );
            sim.now() - last
        })
        .collect()
}

#[test]
fn staggered_starts_reach_the_full_ring_without_waiting_a_join_interval() {
    // The start -> full ring tail (issue 16): a join heard in COMMIT or RECOVERY is held and
    // taken when the node next gathers (ring/src/srp/held.rs), and a late starter's join is
    // merged with however old its ring seq. Without the knob (corosync's behaviour) some
    // starts wait for a join timer (50 ms).
    for n in [5, 9, 16] {
        let on = staggered_starts(n, 1..201, true);
        let worst = on.iter().max().copied().unwrap_or(u64::MAX);
        assert!(
            worst < 25 * MS,
            "{n} nodes: {worst} ns from the last start to the full ring"
        );
    }
    let off = staggered_starts(5, 1..201, false);
    assert!(
        off.iter().any(|&t| t > 40 * MS),
        "without pending joins no start waited a join interval: {off:?}"
    );
}
