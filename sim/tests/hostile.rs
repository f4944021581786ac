//! The attacks of an outside tester, reproduced in the simulator by a hostile node that sees
//! every datagram and injects its own (sim/src/adversary.rs), with and without a cluster key.
//! With a key the checker stays clean; without one the same node breaks the guarantees,
//! which is why a key is the default for namespace experiments.

// Independent seeds run on several threads; each run is single-threaded and deterministic,
// so the simulator's ban on threads (clippy.toml) does not apply to this harness.
#![allow(clippy::disallowed_methods)]

use bytes::Bytes;
use ringlab_ring::wire::{self, Leave, Message, MessageType, NodeId, Packet};
use ringlab_ring::{Config, Guarantee, MembState, Variant};
use ringlab_sim::run::SIM_KEY;
use ringlab_sim::{check, run, Adversary, Faults, NetConfig, RunConfig, RunReport, Sim};

const MS: u64 = 1_000_000;

/// Runs `count` seeds from `first` with the README's fault mix plus the hostile node.
fn sweep(first: u64, count: u64, variant: Variant, nodes: usize, key: bool) -> Vec<RunReport> {
    let seeds: Vec<u64> = (first..first + count).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .chunks(seeds.len().div_ceil(threads))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&seed| {
                            let mut c = RunConfig {
                                seed,
                                nodes,
                                key,
                                faults: Faults::parse("all,hostile").expect("known faults"),
                                ..RunConfig::default()
                            };
                            c.ring.variant = variant;
                            c.net.loss = 0.05;
                            c.net.dup = 0.01;
                            c.net.reorder = 0.05;
                            let mut r = run(&c);
                            r.records = Vec::new();
                            r
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a sweep thread"))
            .collect()
    })
}

#[test]
fn with_a_key_a_hostile_node_on_the_segment_breaks_nothing() {
    for (first, count, variant, nodes) in [
        (1, 60, Variant::Classic, 5),
        (5001, 30, Variant::Accelerated, 5),
        (9001, 10, Variant::Classic, 9),
    ] {
        let reports = sweep(first, count, variant, nodes, true);
        let sum = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
        let injected = sum(|r| r.adversary.replayed + r.adversary.flipped + r.adversary.forged);
        let replayed = sum(|r| r.adversary.replayed);
        let (refused, taken) = (sum(|r| r.adversary.refused), sum(|r| r.adversary.taken));
        assert!(
            injected >= 20 * count,
            "the hostile node acted ({injected})"
        );
        // No bit flip and no forgery ever passes the envelope: what reaches a ring can only
        // be an unchanged replay (of a group datagram its receiver missed, say).
        assert!(
            taken <= replayed,
            "{taken} injected datagrams taken, but only {replayed} were unchanged replays"
        );
        assert!(refused > taken, "{refused} refused, {taken} taken");
        for r in &reports {
            assert!(
                r.check.violations.is_empty(),
                "seed {} ({variant:?}, {nodes} nodes, key): {}",
                r.seed,
                r.check.violations[0]
            );
        }
    }
}

#[test]
fn without_a_key_a_hostile_node_breaks_the_guarantees() {
    let reports = sweep(1, 20, Variant::Classic, 5, false);
    let broken = reports
        .iter()
        .filter(|r| !r.check.violations.is_empty())
        .count();
    assert!(
        broken >= 5,
        "forged datagrams should break runs without a key; {broken} of 20 broke"
    );
}

/// A formed cluster of `n`, with or without a key, and a hostile node that has watched it.
fn watched_cluster(n: usize, key: bool) -> Sim {
    let mut sim = Sim::new(n, 1, Config::default(), NetConfig::default());
    if key {
        sim.set_key(SIM_KEY.to_vec()).unwrap();
    }
    sim.set_adversary(Adversary::new());
    sim.start_all();
    let ids = sim.ids();
    assert!(sim.run_until_cond(2_000 * MS, |s| {
        ids.iter().all(|&i| {
            s.ring(i)
                .is_some_and(|r| r.state() == MembState::Operational && r.members().len() == n)
        })
    }));
    for i in 0..20u8 {
        let _ = sim.submit(
            1 + (i as NodeId % n as NodeId),
            &[i; 100],
            Guarantee::Agreed,
        );
        sim.run_for(MS);
    }
    sim.run_for(20 * MS);
    sim
}

/// Returns the last captured datagram of `kind` sent by `from` to `to`.
fn captured(sim: &Sim, kind: MessageType, from: NodeId, to: NodeId) -> Bytes {
    sim.adversary()
        .expect("an adversary")
        .captured()
        .filter(|(f, t, d)| {
            *f == from && *t == to && wire::decode_header(d).is_ok_and(|(k, _, _)| k == kind)
        })
        .last()
        .map(|(_, _, d)| d.clone())
        .expect("the adversary saw one")
}

/// The clean-up every scenario ends with: the checker over everything that happened.
fn assert_checker_clean(sim: &mut Sim) {
    sim.run_for(3_000 * MS);
    let r = check(sim.records(), None);
    assert!(r.violations.is_empty(), "{}", r.violations[0]);
}

#[test]
fn a_token_sealed_for_node_3_and_replayed_to_node_1_is_refused() {
    // With a key: the envelope names node 3. Without one: the ring knows node 1 is not the
    // token's next hop. Either way node 1 never holds a second token.
    for key in [true, false] {
        let mut sim = watched_cluster(3, key);
        let token = captured(&sim, MessageType::Token, 2, 3);
        let installs = sim.ring(1).unwrap().stats().installs;
        for _ in 0..1000 {
            sim.inject_packet(1, 2, &token);
        }
        if key {
            assert_eq!(sim.auth_drops(1).not_for_me, 1000, "key");
        } else {
            assert_eq!(sim.drops(1).misdirected_tokens, 1000, "no key");
        }
        assert_eq!(sim.ring(1).unwrap().stats().installs, installs);
        assert_checker_clean(&mut sim);
    }
}

/// Returns every datagram the hostile node saw, as (from, to, datagram).
fn everything_seen(sim: &Sim) -> Vec<(NodeId, NodeId, Bytes)> {
    sim.adversary()
        .expect("an adversary")
        .captured()
        .cloned()
        .collect()
}

#[test]
fn every_datagram_replayed_to_its_own_receiver_is_refused_by_the_envelope() {
    let mut sim = watched_cluster(3, true);
    let seen = everything_seen(&sim);
    sim.run_for(100 * MS); // everything in flight has arrived
    let before: u64 = (1..=3).map(|i| sim.auth_drops(i).replayed).sum();
    let ring_drops: Vec<_> = (1..=3).map(|i| sim.drops(i).clone()).collect();
    for (from, to, d) in &seen {
        sim.inject_packet(*to, *from, d);
    }
    let refused = (1..=3).map(|i| sim.auth_drops(i).replayed).sum::<u64>() - before;
    assert_eq!(
        refused,
        seen.len() as u64,
        "all {} replays refused",
        seen.len()
    );
    let after: Vec<_> = (1..=3).map(|i| sim.drops(i).clone()).collect();
    assert_eq!(ring_drops, after, "none reached a ring");
    assert_checker_clean(&mut sim);
}

#[test]
fn what_a_node_took_before_it_restarted_is_refused_after() {
    let mut sim = watched_cluster(3, true);
    sim.run_for(100 * MS);
    let to_2: Vec<(NodeId, Bytes)> = everything_seen(&sim)
        .into_iter()
        .filter(|(_, to, _)| *to == 2)
        .map(|(from, _, d)| (from, d))
        .collect();
    assert!(to_2.len() > 50, "{}", to_2.len());
    sim.crash(2);
    sim.start(2);
    let before = sim.auth_drops(2).clone();
    let ring_before = sim.drops(2).clone();
    for (from, d) in &to_2 {
        sim.inject_packet(2, *from, d);
    }
    let after = sim.auth_drops(2).clone();
    let refused =
        (after.replayed - before.replayed) + (after.old_incarnation - before.old_incarnation);
    assert_eq!(
        refused,
        to_2.len() as u64,
        "group ones by the marks, unicast by incarnation"
    );
    assert_eq!(
        sim.drops(2),
        &ring_before,
        "none reached the new incarnation's ring"
    );
    let ids = sim.ids();
    assert!(sim.run_until_cond(sim.now() + 5_000 * MS, |s| {
        ids.iter()
            .all(|&i| s.ring(i).is_some_and(|r| r.members().len() == 3))
    }));
    assert_checker_clean(&mut sim);
}

#[test]
fn replays_to_their_own_receiver_are_refused_with_a_key() {
    let mut sim = watched_cluster(3, true);
    let token = captured(&sim, MessageType::Token, 2, 3);
    let mcast = captured(&sim, MessageType::Mcast, 1, 2);
    sim.run_for(100 * MS); // the originals have arrived
    let (r3, r2) = (sim.auth_drops(3).replayed, sim.auth_drops(2).replayed);
    for _ in 0..100 {
        sim.inject_packet(3, 2, &token);
        sim.inject_packet(2, 1, &mcast);
    }
    assert_eq!(sim.auth_drops(3).replayed - r3, 100);
    assert_eq!(sim.auth_drops(2).replayed - r2, 100);
    assert_checker_clean(&mut sim);
}

/// Returns a leave in node 2's name for the ring node 1 is on.
fn forged_leave(sim: &Sim) -> Vec<u8> {
    let ring = sim.ring(1).unwrap().ring_id();
    wire::encode(&Packet {
        sender: 2,
        ring_id: ring,
        message: Message::Leave(Leave { ring_seq: ring.seq }),
    })
}

#[test]
fn a_forged_leave_re_forms_the_ring_without_a_key_and_is_refused_with_one() {
    for key in [false, true] {
        let mut sim = watched_cluster(3, key);
        let installs = sim.ring(1).unwrap().stats().installs;
        let leave = forged_leave(&sim);
        sim.inject_packet(1, 2, &leave);
        sim.run_for(500 * MS);
        let after = sim.ring(1).unwrap().stats().installs;
        if key {
            assert_eq!(after, installs, "with a key nothing happens");
            assert_eq!(sim.auth_drops(1).unauthenticated, 1);
        } else {
            assert!(
                after > installs,
                "without a key one datagram re-forms the ring"
            );
        }
    }
}

#[test]
fn forged_mcasts_are_delivered_without_a_key_and_refused_with_one() {
    for key in [false, true] {
        let mut sim = watched_cluster(3, key);
        // A real frame of node 1's, moved to the next seqs of the ring: node 3 takes it
        // before the real frames with those seqs arrive.
        let real = captured(&sim, MessageType::Mcast, 1, 3);
        let packet = if key {
            &real[..real.len() - ringlab_ring::auth::TRAILER_LEN]
        } else {
            &real[..]
        };
        let Ok(Packet {
            sender,
            ring_id,
            message: Message::Mcast(mut m),
        }) = wire::decode(packet)
        else {
            panic!("an mcast")
        };
        for i in 0..5u8 {
            let _ = sim.submit(2, &[100 + i; 100], Guarantee::Agreed);
        }
        let high: u64 = 1 + sim
            .records()
            .iter()
            .filter_map(|r| match r.body {
                ringlab_records::Body::Deliver { seq, .. } => Some(seq),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for s in high..high + 5 {
            m.seq = s;
            let mut forged = wire::encode(&Packet {
                sender,
                ring_id,
                message: Message::Mcast(m.clone()),
            });
            if key {
                forged.extend_from_slice(&real[real.len() - ringlab_ring::auth::TRAILER_LEN..]);
            }
            sim.inject_packet(3, 1, &forged);
        }
        sim.run_for(3_000 * MS);
        let r = check(sim.records(), None);
        if key {
            assert_eq!(sim.auth_drops(3).unauthenticated, 5);
            assert!(r.violations.is_empty(), "{}", r.violations[0]);
        } else {
            assert!(
                !r.violations.is_empty(),
                "forged frames at the ring's next seqs break the guarantees without a key"
            );
        }
    }
}

#[test]
fn bit_flipped_copies_from_the_true_source_are_refused_with_a_key() {
    let mut sim = watched_cluster(3, true);
    let installs = sim.ring(2).unwrap().stats().installs;
    let token = captured(&sim, MessageType::Token, 1, 2);
    let mcast = captured(&sim, MessageType::Mcast, 1, 2);
    for bit in 0..200 {
        for d in [&token, &mcast] {
            let mut f = d.to_vec();
            let at = bit % f.len();
            f[at] ^= 1 << (bit % 8);
            sim.inject_packet(2, 1, &f);
        }
    }
    assert_eq!(sim.auth_drops(2).unauthenticated, 400);
    assert_eq!(sim.ring(2).unwrap().stats().installs, installs);
    assert_checker_clean(&mut sim);
}
