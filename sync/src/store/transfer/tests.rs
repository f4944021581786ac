//! The chunk protocol between a few nodes on a simulated network of their own: datagrams
//! with a seeded delay, loss and corruption; each node a real store (redb in memory) and a
//! [`Transfer`]. The requester loads what it fetches into its own store, as the service
//! does.

use super::*;
use crate::store::write::Write;
use crate::store::StoreDigest;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const US: u64 = 1_000;

struct Node {
    t: Transfer,
    db: StoreDb,
    /// Keys received, counting those received twice.
    keys_received: u64,
    whole: Option<(u64, u64, [u8; 32])>,
    aborted: u64,
    up: bool,
}

struct Net {
    now: u64,
    nodes: BTreeMap<NodeId, Node>,
    /// (arrival, seq, from, to, bytes)
    flight: Vec<(u64, u64, NodeId, NodeId, Bytes)>,
    seq: u64,
    rng: ChaCha8Rng,
    loss: f64,
    corrupt: f64,
    /// Links cut (from, to).
    cut: Vec<(NodeId, NodeId)>,
    max_held: usize,
}

fn put(k: &str, v: Vec<u8>) -> Write {
    Write {
        key: k.as_bytes().to_vec(),
        value: Some(v),
    }
}

/// A store of `keys` keys of about `size` bytes each.
fn filled(keys: usize, size: usize) -> StoreDb {
    let mut db = StoreDb::in_memory(100).unwrap();
    for i in 0..keys {
        db.apply(
            i as u64 + 1,
            &put(&format!("k{i:06}"), vec![(i % 251) as u8; size]),
        )
        .unwrap();
    }
    db
}

impl Net {
    fn new(seed: u64, n: u32, keys: usize, size: usize, cfg: TransferConfig) -> Self {
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            // Node `n` is the far-behind one, with an empty store.
            let db = if id == n {
                StoreDb::in_memory(100).unwrap()
            } else {
                filled(keys, size)
            };
            nodes.insert(
                id,
                Node {
                    t: Transfer::new(id, cfg.clone()),
                    db,
                    keys_received: 0,
                    whole: None,
                    aborted: 0,
                    up: true,
                },
            );
        }
        let mut net = Self {
            now: 1_000_000,
            nodes,
            flight: Vec::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss: 0.0,
            corrupt: 0.0,
            cut: Vec::new(),
            max_held: 0,
        };
        let members: Vec<NodeId> = (1..=n).collect();
        net.view(&members, n);
        net.nodes.get_mut(&n).unwrap().t.want(net.now, true);
        net
    }

    /// Every node learns `members`, all serving but `far`.
    fn view(&mut self, members: &[NodeId], far: NodeId) {
        let now = self.now;
        for (&id, node) in self.nodes.iter_mut() {
            let serving = members
                .iter()
                .copied()
                .filter(|&m| m != id && m != far)
                .collect();
            node.t.set_view(
                now,
                View {
                    members: members.to_vec(),
                    serving,
                    me_serving: id != far,
                },
            );
        }
    }

    fn outputs(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        while let Some(f) = node.t.poll_fetched() {
            match f {
                Fetched::Begin => node.db.begin_load().unwrap(),
                Fetched::Pairs(p) => {
                    node.keys_received += p.len() as u64;
                    node.db.load_chunk(&p).unwrap();
                }
                Fetched::Whole {
                    base,
                    version,
                    chain,
                } => node.whole = Some((base, version, chain)),
                Fetched::Aborted => node.aborted += 1,
            }
        }
        self.max_held = self.max_held.max(node.t.held_bytes());
        while let Some((to, d)) = node.t.poll_datagram(now) {
            if !node.up || self.cut.contains(&(id, to)) || self.rng.gen_bool(self.loss) {
                continue;
            }
            let mut d = d.to_vec();
            if self.corrupt > 0.0 && d.len() > 200 && self.rng.gen_bool(self.corrupt) {
                // A flipped byte in a fragment's payload (past the headers): the chunk's
                // CRC catches it.
                let last = d.len() - 1;
                d[last] ^= 0x5a;
            }
            let at = now + 50 * US + self.rng.gen_range(0..20 * US);
            self.seq += 1;
            self.flight.push((at, self.seq, id, to, Bytes::from(d)));
        }
    }

    /// Runs until `until` (ns) or until `done` holds.
    fn run(&mut self, until: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        loop {
            if done(self) {
                return true;
            }
            for &id in &ids {
                self.outputs(id);
            }
            let next_flight = self.flight.iter().map(|f| (f.0, f.1)).min();
            let next_timer = self
                .nodes
                .values()
                .filter(|n| n.up)
                .filter_map(|n| n.t.poll_deadline())
                .min();
            let at = match (next_flight, next_timer) {
                (Some((f, _)), Some(t)) => f.min(t),
                (Some((f, _)), None) => f,
                (None, Some(t)) => t,
                (None, None) => return done(self),
            };
            if at > until {
                self.now = until;
                return done(self);
            }
            self.now = self.now.max(at);
            let now = self.now;
            if next_flight.is_some_and(|(f, _)| f <= now) {
                let i = self
                    .flight
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, f)| (f.0, f.1))
                    .unwrap()
                    .0;
                let (_, _, from, to, d) = self.flight.swap_remove(i);
                let node = self.nodes.get_mut(&to).unwrap();
                if node.up {
                    let Node { t, db, .. } = node;
                    t.handle_datagram(now, from, &d, db);
                }
            } else {
                for node in self.nodes.values_mut().filter(|n| n.up) {
                    let Node { t, db, .. } = node;
                    t.tick(now, db);
                }
            }
        }
    }

    fn requester(&self) -> &Node {
        self.nodes.values().last().unwrap()
    }

    /// Finishes the requester's copy as the service does (no writes meanwhile here).
    fn finish(&mut self) -> StoreDigest {
        let r = self.nodes.values_mut().last().unwrap();
        let (base, version, chain) = r.whole.expect("whole");
        assert_eq!(base, version, "one snapshot version here");
        r.db.finish_load(version, chain).unwrap();
        r.db.digest()
    }
}

fn config(design: Design) -> TransferConfig {
    TransferConfig {
        design,
        chunk_bytes: 64 * 1024,
        chunk_keys: 2000,
        timeout_ms: 200,
        ..TransferConfig::default()
    }
}

const S: u64 = 1_000_000_000;

#[test]
fn pull_copies_a_store_whole_and_each_key_once() {
    let mut net = Net::new(1, 3, 3000, 500, config(Design::Pull));
    assert!(net.run(60 * S, |n| n.requester().whole.is_some()));
    let d = net.finish();
    assert_eq!(d, net.nodes[&1].db.digest());
    assert_eq!(net.requester().keys_received, 3000);
    assert_eq!(net.requester().db.version(), 3000);
    assert_eq!(net.requester().db.chain(), net.nodes[&1].db.chain());
    let st = net.requester().t.stats();
    assert_eq!((st.copies, st.completed, st.resumes), (1, 1, 0));
}

#[test]
fn push_copies_a_store_whole_through_the_leader() {
    for window in [1, 4] {
        let cfg = TransferConfig {
            chunk_window: window,
            ..config(Design::Push)
        };
        let mut net = Net::new(2, 3, 3000, 500, cfg);
        assert!(net.run(60 * S, |n| n.requester().whole.is_some()));
        assert_eq!(net.finish(), net.nodes[&2].db.digest());
        assert_eq!(net.requester().keys_received, 3000);
        // The leader (1) handed it to a provider and heard its Finish.
        assert!(net.nodes[&1].t.book.is_empty());
        // Memory is bounded by the window, not the store (1.5 MB).
        assert!(
            net.max_held < (window + 2) * 2 * 64 * 1024 + 256 * 1024,
            "window {window}: held {}",
            net.max_held
        );
    }
}

/// Copies to node 4 of 4, kills whoever provides once 500 keys are in, and runs the copy
/// to its end; returns the dead provider and the keys received before its death.
fn copy_past_a_dead_provider(net: &mut Net, design: Design) -> (NodeId, u64) {
    assert!(net.run(60 * S, |n| n.requester().keys_received > 500));
    let provider = net.requester().t.copy.provider.unwrap();
    net.nodes.get_mut(&provider).unwrap().up = false;
    let before = net.requester().keys_received;
    assert!(
        net.run(120 * S, |n| n.requester().whole.is_some()),
        "{design:?}"
    );
    (provider, before)
}

/// Finishes the copy and checks it against a live member's store.
fn check_against_a_live_member(net: &mut Net, dead: NodeId) {
    let d = net.finish();
    let live = *net.nodes.keys().find(|&&id| id != dead && id != 4).unwrap();
    assert_eq!(d, net.nodes[&live].db.digest());
}

#[test]
fn a_dead_provider_is_left_and_the_copy_resumes_after_its_last_key() {
    for design in [Design::Pull, Design::Push] {
        let mut net = Net::new(3, 4, 3000, 500, config(design));
        let (provider, before) = copy_past_a_dead_provider(&mut net, design);
        let r = net.requester();
        assert_eq!(r.t.stats().resumes, 1, "{design:?}");
        assert_eq!(r.aborted, 0);
        // No key came twice: the resume went on after the last key applied.
        assert_eq!(
            r.keys_received, 3000,
            "{design:?} ({before} before the death)"
        );
        check_against_a_live_member(&mut net, provider);
        let records: Vec<Body> =
            std::iter::from_fn(|| net.nodes.get_mut(&4).unwrap().t.poll_record()).collect();
        assert!(records.iter().any(
            |b| matches!(b, Body::StoreSync { phase, last_key: Some(_), .. } if phase == "resume")
        ));
    }
}

#[test]
fn without_resume_a_dead_provider_makes_the_copy_start_again_from_nothing() {
    // Ceph's pull design (resume = false), and push likewise: everything loaded before the
    // death is received again.
    for design in [Design::Pull, Design::Push] {
        let cfg = TransferConfig {
            resume: false,
            ..config(design)
        };
        let mut net = Net::new(5, 4, 3000, 500, cfg);
        let (provider, before) = copy_past_a_dead_provider(&mut net, design);
        let r = net.requester();
        assert_eq!((r.t.stats().resumes, r.aborted), (0, 1), "{design:?}");
        assert_eq!(
            r.keys_received,
            before + 3000,
            "{design:?}: all of it again"
        );
        check_against_a_live_member(&mut net, provider);
    }
}

#[test]
fn chunks_that_fail_their_crc_are_asked_again_and_never_applied() {
    for design in [Design::Pull, Design::Push] {
        let mut net = Net::new(4, 2, 2000, 700, config(design));
        net.corrupt = 0.01;
        assert!(
            net.run(300 * S, |n| n.requester().whole.is_some()),
            "{design:?}"
        );
        assert!(net.requester().t.stats().crc_failures > 0, "{design:?}");
        assert_eq!(net.finish(), net.nodes[&1].db.digest(), "{design:?}");
    }
}

#[test]
fn thirty_percent_loss_slows_a_copy_but_it_completes() {
    for design in [Design::Pull, Design::Push] {
        let mut net = Net::new(5, 2, 1500, 500, config(design));
        net.loss = 0.3;
        let ok = net.run(600 * S, |n| n.requester().whole.is_some());
        assert!(
            ok,
            "{design:?}: {:?} {:?} aborted {} keys {}",
            net.requester().t.stats(),
            net.requester().t.transport_stats(),
            net.requester().aborted,
            net.requester().keys_received
        );
        assert_eq!(net.finish(), net.nodes[&1].db.digest());
        let ts = net.requester().t.transport_stats().unwrap();
        assert!(ts.datagrams_received > 0);
    }
}

#[test]
fn a_leader_change_aborts_a_push_copy_but_not_a_pull_one() {
    for design in [Design::Push, Design::Pull] {
        let mut net = Net::new(6, 4, 3000, 500, config(design));
        assert!(net.run(60 * S, |n| n.requester().keys_received > 500));
        // Node 1 (the leader) leaves the configuration; 2 leads now.
        let provider = net.requester().t.copy.provider.unwrap();
        if provider == 1 {
            // Keep the provider: the point is the leader.
            continue;
        }
        net.view(&[2, 3, 4], 4);
        assert!(
            net.run(120 * S, |n| n.requester().whole.is_some()),
            "{design:?}"
        );
        let r = net.requester();
        match design {
            Design::Push => {
                assert_eq!(r.aborted, 1, "push starts again");
                assert!(r.keys_received > 3000);
            }
            Design::Pull => {
                assert_eq!(r.aborted, 0, "pull goes on");
                assert_eq!(r.keys_received, 3000);
            }
        }
        assert_eq!(net.finish(), net.nodes[&2].db.digest());
    }
}

#[test]
fn the_snapshot_stays_as_it_was_while_the_provider_applies_writes() {
    let mut net = Net::new(7, 2, 2000, 500, config(Design::Pull));
    assert!(net.run(60 * S, |n| n.requester().keys_received > 0));
    // The provider goes on applying writes: the copy is of the snapshot it began with.
    let reference = filled(2000, 500).digest();
    {
        let p = net.nodes.get_mut(&1).unwrap();
        for i in 0..100u64 {
            p.db.apply(2001 + i, &put(&format!("k{:06}", i * 7), vec![9; 10]))
                .unwrap();
        }
    }
    assert!(net.run(60 * S, |n| n.requester().whole.is_some()));
    assert_eq!(net.requester().whole.unwrap().1, 2000);
    assert_eq!(net.finish(), reference);
}

#[test]
fn an_expired_cookie_is_aborted_by_the_provider_and_the_copy_resumes() {
    let cfg = TransferConfig {
        cookie_timeout_ms: 100,
        ..config(Design::Pull)
    };
    let mut net = Net::new(8, 2, 3000, 500, cfg);
    assert!(net.run(60 * S, |n| n.requester().keys_received > 500));
    // The requester goes silent past the cookie's expiry (its datagrams are lost), then
    // comes back.
    net.cut.push((2, 1));
    let t = net.now + S;
    net.run(t, |_| false);
    assert!(net.nodes[&1].t.sessions.is_empty(), "the cookie expired");
    net.cut.clear();
    assert!(net.run(120 * S, |n| n.requester().whole.is_some()));
    assert_eq!(net.requester().aborted, 0);
    assert!(net.requester().t.stats().resumes >= 1);
    assert_eq!(net.finish(), net.nodes[&1].db.digest());
}

#[test]
fn a_stall_timeout_scales_with_the_window_of_chunks_and_the_pacing() {
    let base = TransferConfig::default();
    let paced = TransferConfig {
        transport: TransportConfig {
            rate_limit: Some(100 * 1024),
            ..TransportConfig::default()
        },
        ..TransferConfig::default()
    };
    // 1 MiB at 1 MiB/s, and at 100 KiB/s.
    assert_eq!(base.stall_ns(), 2000 * MS + S);
    assert_eq!(paced.stall_ns(), 12_240 * MS);
    assert!(paced.stall_ns() > base.stall_ns());
}

#[test]
fn a_push_resume_at_the_only_provider_completes_with_each_key_once() {
    // One provider only: a stall makes the requester resume at it again (a fresh piece id;
    // the old piece's chunks still in flight are not taken for the new one's).
    let cfg = TransferConfig {
        chunk_window: 4,
        chunk_bytes: 16 * 1024,
        ..config(Design::Push)
    };
    let mut net = Net::new(9, 2, 3000, 500, cfg);
    assert!(net.run(60 * S, |n| n.requester().keys_received > 300));
    net.cut.push((1, 2));
    let t = net.now + S;
    net.run(t, |n| n.requester().t.stats().resumes > 0);
    net.cut.clear();
    assert!(net.run(120 * S, |n| n.requester().whole.is_some()));
    let r = net.requester();
    assert!(r.t.stats().resumes >= 1);
    assert_eq!(r.aborted, 0);
    assert_eq!(r.keys_received, 3000, "each key once");
    assert_eq!(net.finish(), net.nodes[&1].db.digest());
}
