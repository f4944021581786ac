//! A hostile node on the segment: it sees every datagram the simulated network carries and
//! injects its own, as anyone who can send from a member's address can.
//!
//! It keeps the last [`CAPTURE_MAX`] datagrams it saw and, when asked ([`Adversary::attack`]),
//! sends, each time at random:
//! - a **replay**: a captured datagram, unchanged, to a random node (its receiver or another
//!   one), from the address of the node that sent it (a token sealed for node 3 resent to
//!   node 1, say);
//! - a **bit flip**: a captured datagram with one bit flipped, to its receiver;
//! - a **forgery**: a captured packet with its fields rewritten and re-encoded: a token with a
//!   token_seq that makes the target its next hop, an mcast moved to a later seq of its ring,
//!   a join with made-up processor and fail sets, a leave or a merge-detect in a member's
//!   name, a commit token with altered entries. With a key it cannot compute a MAC, so it
//!   keeps the captured trailer (which then fails); without one, every forgery is as good as
//!   the real thing.
//!
//! Every choice comes from the simulator's seeded generator: a seed replays the same attack.

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;
use ringlab_ring::auth::TRAILER_LEN;
use ringlab_ring::wire::{self, Message, NodeId, Packet, RingId};
use std::collections::VecDeque;

/// Datagrams the adversary remembers.
pub const CAPTURE_MAX: usize = 512;

/// What the adversary did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdversaryStats {
    /// Datagrams seen.
    pub captured: u64,
    /// Captured datagrams sent again unchanged.
    pub replayed: u64,
    /// Captured datagrams sent with a bit flipped.
    pub flipped: u64,
    /// Datagrams with rewritten fields.
    pub forged: u64,
    /// Injected datagrams the receivers' envelopes refused (with a key).
    pub refused: u64,
    /// Injected datagrams that reached a receiver's ring (all of them without a key).
    pub taken: u64,
}

/// A hostile node that sees and injects everything.
#[derive(Debug, Default)]
pub struct Adversary {
    captured: VecDeque<(NodeId, NodeId, Bytes)>,
    /// What it did.
    pub stats: AdversaryStats,
}

impl Adversary {
    /// Returns an adversary that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the datagrams it remembers, oldest first, as `(from, to, datagram)`.
    pub fn captured(&self) -> impl Iterator<Item = &(NodeId, NodeId, Bytes)> {
        self.captured.iter()
    }

    /// Sees one datagram on the network, from `from` to `to`.
    pub fn capture(&mut self, from: NodeId, to: NodeId, data: &Bytes) {
        self.stats.captured += 1;
        if self.captured.len() == CAPTURE_MAX {
            self.captured.pop_front();
        }
        self.captured.push_back((from, to, data.clone()));
    }

    /// Returns `ops` datagrams to inject into a cluster of nodes `1..=nodes`, each as
    /// `(receiver, claimed sender, datagram)`.
    pub fn attack(
        &mut self,
        rng: &mut impl Rng,
        nodes: NodeId,
        ops: usize,
    ) -> Vec<(NodeId, NodeId, Bytes)> {
        let mut out = Vec::with_capacity(ops);
        if self.captured.is_empty() || nodes == 0 {
            return out;
        }
        for _ in 0..ops {
            let i = rng.gen_range(0..self.captured.len());
            let (from, to, data) = self.captured[i].clone();
            match rng.gen_range(0..10) {
                0..=3 => {
                    let target = rng.gen_range(1..=nodes);
                    self.stats.replayed += 1;
                    out.push((target, from, data));
                }
                4..=5 => {
                    let mut d = data.to_vec();
                    let bit = rng.gen_range(0..d.len() * 8);
                    d[bit / 8] ^= 1 << (bit % 8);
                    self.stats.flipped += 1;
                    out.push((to, from, Bytes::from(d)));
                }
                _ => {
                    if let Some(f) = forge(rng, nodes, &data) {
                        self.stats.forged += 1;
                        out.push(f);
                    }
                }
            }
        }
        out
    }
}

/// Rewrites a captured datagram's packet; returns (receiver, claimed sender, datagram).
fn forge(rng: &mut impl Rng, nodes: NodeId, data: &Bytes) -> Option<(NodeId, NodeId, Bytes)> {
    // Without a key the datagram is the packet; with one, a trailer follows it, and the
    // adversary can decode the packet but not re-seal it.
    let (packet, trailer) = match wire::decode(data) {
        Ok(p) => (p, &data[data.len()..]),
        Err(_) if data.len() > TRAILER_LEN => {
            let cut = data.len() - TRAILER_LEN;
            (wire::decode(&data[..cut]).ok()?, &data[cut..])
        }
        Err(_) => return None,
    };
    let target = rng.gen_range(1..=nodes);
    let member = rng.gen_range(1..=nodes);
    let Packet {
        sender,
        ring_id,
        message,
    } = packet;
    let (sender, ring_id, message) = match message {
        Message::Token(mut t) => {
            // Make `target` the token's next hop, in a later rotation than this one.
            let n = u64::from(nodes);
            let rotation = t.token_seq / n + rng.gen_range(1..=3);
            t.token_seq = rotation * n + u64::from(target - 1);
            t.seq += rng.gen_range(0..4);
            (sender, ring_id, Message::Token(t))
        }
        Message::Mcast(mut m) => {
            m.seq += rng.gen_range(1..=40);
            (sender, ring_id, Message::Mcast(m))
        }
        Message::Join(mut j) => {
            j.ring_seq += rng.gen_range(0..8);
            j.proc_set = subset(rng, nodes);
            j.fail_set = subset(rng, nodes)
                .into_iter()
                .filter(|&f| f != member)
                .collect();
            j.unheard = subset(rng, nodes);
            if !j.proc_set.contains(&member) {
                j.proc_set.push(member);
                j.proc_set.sort_unstable();
            }
            (member, ring_id, Message::Join(j))
        }
        Message::Leave(l) => (member, ring_id, Message::Leave(l)),
        Message::MergeDetect(mut md) => {
            md.members = subset(rng, nodes);
            md.unheard = subset(rng, nodes);
            (
                member,
                RingId {
                    rep: member,
                    seq: ring_id.seq + rng.gen_range(1..=8),
                },
                Message::MergeDetect(md),
            )
        }
        Message::CommitToken(mut c) => {
            for e in &mut c.entries {
                e.aru = e.aru.saturating_add(rng.gen_range(0..4));
            }
            (sender, ring_id, Message::CommitToken(c))
        }
        Message::TokenHoldCancel => (member, ring_id, Message::TokenHoldCancel),
    };
    let mut d = wire::encode(&Packet {
        sender,
        ring_id,
        message,
    });
    d.extend_from_slice(trailer);
    Some((target, sender, Bytes::from(d)))
}

/// Returns a random sorted, duplicate-free subset of `1..=nodes`.
fn subset(rng: &mut impl Rng, nodes: NodeId) -> Vec<NodeId> {
    let mut all: Vec<NodeId> = (1..=nodes).collect();
    all.shuffle(rng);
    let k = rng.gen_range(0..=all.len());
    let mut s: Vec<NodeId> = all.into_iter().take(k).collect();
    s.sort_unstable();
    s
}
