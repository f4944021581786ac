//! Merge detection: how separate rings find each other after a partition heals.
//!
//! The representative of every ring multicasts a merge-detect every `merge` ms while
//! OPERATIONAL, whether the ring is busy or idle (corosync sends it only from an idle ring
//! holding the token; see the module docs of `srp`). A node that hears a merge-detect, or
//! an mcast, of a ring that is neither its own nor one it left behind, starts GATHER with
//! the sender heard of, and the two rings merge in one membership round — unless the merge
//! would put two processors that cannot hear each other into one ring (`reach.rs`).

use super::state::State;
use super::timer::Timer;
use super::{DropReason, Ring};
use crate::event::Reason;
use crate::wire::{MergeDetect, Message, NodeId, Packet, RingId};
use bytes::Bytes;

/// How many consensus periods another processor's announcement of its deafness blocks
/// merges for, unless a new round renews it (`reach.rs`).
const REACH_MEMORY_CONSENSUS: u64 = 4;

impl Ring {
    /// The merge timer: the representative announces its ring.
    pub(super) fn on_merge_timer(&mut self, now: u64) {
        // Every `merge` ms, whatever the token does. corosync sends merge detect only from
        // an idle representative, so a heal waits for the hold timer and the merge timer
        // both; a busy ring's foreign messages usually find the other side first, but an
        // idle one needs this (see the module docs).
        if !matches!(self.state, State::Operational(_)) {
            return;
        }
        if self.cur.ring_id.rep == self.id {
            let p = self.merge_detect_packet();
            self.out.multicast(&p);
        }
        self.timers.arm(Timer::MergeDetect, now + self.t.merge);
        if self.cfg.reachability {
            self.probe(now, &[]);
            self.merge_pending(now);
        }
    }

    /// Starts GATHER with the processors that are not members and asked to join while this
    /// node was in COMMIT or RECOVERY, or were heard again after this node had been deaf to
    /// them while it could not act on it (`reach.rs`). OPERATIONAL only.
    pub(super) fn merge_pending(&mut self, now: u64) {
        if !matches!(self.state, State::Operational(_)) {
            return;
        }
        let pending: Vec<NodeId> = self.reach.take_pending().into_iter().collect();
        if pending.iter().any(|p| !self.cur.members.contains(p)) {
            self.gather_enter(now, Reason::Join, &pending, None);
        }
    }

    /// This node's ring's merge-detect: its members and the outsiders one of them cannot
    /// hear.
    fn merge_detect_packet(&self) -> Packet {
        let unheard = if self.cfg.reachability {
            self.reach.ring_unheard(self.id, &self.cur.members)
        } else {
            Vec::new()
        };
        Packet {
            sender: self.id,
            ring_id: self.cur.ring_id,
            message: Message::MergeDetect(MergeDetect {
                members: self.cur.members.clone(),
                unheard,
            }),
        }
    }

    /// Takes a merge-detect: one of another live ring starts GATHER, unless the merge could
    /// not hold.
    pub(super) fn on_merge_detect(
        &mut self,
        now: u64,
        sender: NodeId,
        ring_id: RingId,
        md: MergeDetect,
    ) -> Result<(), DropReason> {
        if ring_id == self.cur.ring_id {
            // This node's own ring's representative: nothing to merge.
            return Ok(());
        }
        if !matches!(self.state, State::Operational(_)) || self.is_stale(sender, ring_id) {
            return Err(DropReason::Stale);
        }
        if self.cfg.reachability && md.unheard.contains(&self.id) {
            // Someone over there cannot hear this node: tell it, directly, that this node is
            // here, so that it finds out as soon as the link is back.
            self.probe(now, &md.members);
        }
        if self.merge_blocked(now, sender, &md.members, &md.unheard) {
            return Err(DropReason::Unmergeable);
        }
        self.gather_enter(now, Reason::MergeDetect, &[sender], None);
        Ok(())
    }

    /// Returns whether a merge with `sender`'s side (`members`, of whom some cannot hear
    /// `unheard`) would put two processors that cannot hear each other into one ring, and
    /// is not to be started. A datagram from a processor this node was deaf to is news
    /// (the link is back): never blocked.
    pub(super) fn merge_blocked(
        &self,
        now: u64,
        sender: NodeId,
        members: &[NodeId],
        unheard: &[NodeId],
    ) -> bool {
        // Others' announcements count for REACH_MEMORY_CONSENSUS consensus periods: one
        // that is not renewed (no round since) may describe a link healed since, heard by
        // a node that could not say so; past that, a merge is tried again.
        let since = now.saturating_sub(REACH_MEMORY_CONSENSUS * self.t.consensus);
        self.cfg.reachability
            && !self.reach.regained(sender)
            && self
                .reach
                .merge_blocked(self.id, &self.cur.members, members, unheard, since)
    }

    /// Sends this ring's merge-detect by unicast to those known not to hear this node (or,
    /// not knowing which, to `fallback`), at most once per `merge` interval.
    pub(super) fn probe(&mut self, now: u64, fallback: &[NodeId]) {
        let mut targets = self
            .reach
            .probe_targets(self.id, now, self.t.merge, fallback);
        // A member of this node's ring hears it (an old announcement says otherwise).
        targets.retain(|t| !self.cur.members.contains(t));
        if targets.is_empty() {
            return;
        }
        let bytes = Bytes::from(crate::wire::encode(&self.merge_detect_packet()));
        for t in targets {
            self.out.unicast(t, bytes.clone());
        }
    }
}
