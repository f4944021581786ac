//! Ordering on one ring (TOCS95 §5): the frames held by seq, the aru, and delivery in total
//! order, agreed or safe.
//!
//! A frame is delivered once every lower seq of its ring is delivered; a safe frame also
//! waits until the token's aru has covered it on two successive rotations (the safe point,
//! kept here and advanced by each token visit). Frames are held until they are both safe
//! and delivered, for retransmission; at most [`SORT_QUEUE_MAX`] seqs above the aru.

use super::{DropReason, Ring, State};
use crate::event::{Delivery, Event};
use crate::pack;
use crate::wire::{self, NodeId, RingId};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Most seqs held above the aru: the sort queue / retransmit window (corosync's 16384).
pub const SORT_QUEUE_MAX: u64 = 16_384;

/// A frame held for delivery and retransmission.
#[derive(Clone, Debug)]
pub(super) struct Frame {
    /// The node that originated it.
    pub(super) sender: NodeId,
    /// Safe or agreed.
    pub(super) safe: bool,
    /// It carries an old ring's frame (RECOVERY); never delivered on this ring.
    pub(super) encapsulated: bool,
    /// The packed application messages.
    pub(super) payload: Bytes,
    /// The encoded mcast, re-sent as is on a retransmit request.
    pub(super) wire: Bytes,
}

/// Ordering state of one ring.
#[derive(Debug, Default)]
pub(super) struct Ordering {
    /// The ring.
    pub(super) ring_id: RingId,
    /// Its members, ascending.
    pub(super) members: Vec<NodeId>,
    /// Frames by seq.
    pub(super) store: BTreeMap<u64, Frame>,
    /// Every seq up to this one is held or was delivered.
    pub(super) my_aru: u64,
    /// The highest seq received.
    pub(super) high_seq_received: u64,
    /// The highest seq delivered (or skipped, for encapsulated frames).
    pub(super) high_delivered: u64,
    /// The token_seq of the last token accepted.
    pub(super) last_token_seq: Option<u64>,
    /// Every member holds every frame up to this seq.
    pub(super) safe_upto: u64,
    /// The aru this node forwarded on the previous visit.
    pub(super) prev_forwarded_aru: u64,
    /// Missing seqs and how many visits saw each missing.
    pub(super) miss: BTreeMap<u64, u32>,
}

impl Ordering {
    /// Returns the ordering of a ring that has delivered nothing yet.
    pub(super) fn new(ring_id: RingId, members: Vec<NodeId>) -> Self {
        Self {
            ring_id,
            members,
            ..Self::default()
        }
    }

    /// Stores a frame and advances the aru; refuses one already held or delivered, or
    /// beyond the window.
    pub(super) fn insert(&mut self, seq: u64, frame: Frame) -> Result<(), DropReason> {
        if seq <= self.my_aru || self.store.contains_key(&seq) {
            return Err(DropReason::DuplicateFrame);
        }
        if seq > self.my_aru + SORT_QUEUE_MAX {
            return Err(DropReason::OutOfWindow);
        }
        self.store.insert(seq, frame);
        self.high_seq_received = self.high_seq_received.max(seq);
        while self.store.contains_key(&(self.my_aru + 1)) {
            self.my_aru += 1;
        }
        Ok(())
    }

    /// Returns the member after `me` on the ring (the token's next hop).
    pub(super) fn next_after(&self, me: NodeId) -> NodeId {
        next_member(&self.members, me)
    }
}

/// Returns the member a token (or commit token) with `token_seq` is meant for: the
/// representative (the first member) sends token_seq 0 on, and every hop adds one.
pub(super) fn next_hop(members: &[NodeId], token_seq: u64) -> NodeId {
    members[(token_seq % members.len() as u64) as usize]
}

/// Returns the member after `me` in `members` (the first if `me` is not one).
pub(super) fn next_member(members: &[NodeId], me: NodeId) -> NodeId {
    match members.iter().position(|&m| m == me) {
        Some(i) => members[(i + 1) % members.len()],
        None => members[0],
    }
}

impl Ring {
    /// Takes an mcast: a frame of the installed ring, of the new ring in RECOVERY, or a sign
    /// of another ring (which starts GATHER).
    pub(super) fn on_mcast(
        &mut self,
        now: u64,
        sender: NodeId,
        ring_id: RingId,
        m: wire::Mcast,
        wire: Bytes,
    ) -> Result<(), DropReason> {
        let frame = Frame {
            sender,
            safe: m.safe,
            encapsulated: m.encapsulated.is_some(),
            payload: m.payload,
            wire,
        };
        if ring_id == self.cur.ring_id {
            // In RECOVERY the old ring's messages are exactly those the recovery exchange
            // carries: a late plain copy would give this node a message its transitional
            // peers never get.
            if matches!(self.state, State::Recovery(_)) {
                return Err(DropReason::Stale);
            }
            self.cur.insert(m.seq, frame)?;
            if matches!(self.state, State::Operational(_)) {
                self.deliver_ready();
            }
            return Ok(());
        }
        if let State::Recovery(r) = &mut self.state {
            if ring_id == r.next.ring_id {
                let payload = frame.payload.clone();
                r.next.insert(m.seq, frame)?;
                if let Some(e) = m.encapsulated {
                    self.recover_old_frame(e, payload);
                }
                return Ok(());
            }
        }
        if matches!(self.state, State::Operational(_)) && !self.is_stale(sender, ring_id) {
            // The mcast names its sender and its ring's representative: enough to tell
            // whether the merge would hold (`reach.rs`).
            if self.merge_blocked(now, sender, &[sender, ring_id.rep], &[]) {
                return Err(DropReason::Unmergeable);
            }
            self.gather_enter(now, crate::event::Reason::ForeignMessage, &[sender], None);
            Ok(())
        } else {
            Err(DropReason::Stale)
        }
    }

    /// Delivers the installed ring's frames that are ready, in seq order.
    pub(super) fn deliver_ready(&mut self) {
        loop {
            let s = self.cur.high_delivered + 1;
            let Some(f) = self.cur.store.get(&s) else {
                break;
            };
            if !f.encapsulated {
                if f.safe && s > self.cur.safe_upto {
                    break;
                }
                let (sender, safe, payload) = (f.sender, f.safe, f.payload.clone());
                self.deliver_items(self.cur.ring_id, s, sender, safe, &payload);
            }
            self.cur.high_delivered = s;
        }
    }

    /// Delivers the messages of one frame (encapsulated frames carry none).
    pub(super) fn deliver_frame(&mut self, ring_id: RingId, seq: u64, f: &Frame) {
        if !f.encapsulated {
            self.deliver_items(ring_id, seq, f.sender, f.safe, &f.payload);
        }
    }

    fn deliver_items(
        &mut self,
        ring_id: RingId,
        seq: u64,
        sender: NodeId,
        safe: bool,
        payload: &Bytes,
    ) {
        let items = match pack::decode_frame(payload) {
            Ok(items) => items,
            Err(e) => {
                self.stats.frame_errors += 1;
                tracing::debug!(node = self.id, error = %e, "dropped undecodable frame");
                return;
            }
        };
        for item in items {
            if let Some(a) = self.reassembly.push(sender, item) {
                self.stats.delivered += 1;
                self.stats.delivered_bytes += a.data.len() as u64;
                self.out.events.push_back(Event::Deliver(Delivery {
                    id: a.id,
                    ring_id,
                    seq,
                    safe,
                    sent_t_ns: a.sent_t_ns,
                    data: a.data,
                }));
            }
        }
    }
}
