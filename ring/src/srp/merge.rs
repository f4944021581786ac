//! Merge detection: how separate rings find each other after a partition heals.
//!
//! The representative of every ring multicasts a merge-detect every `merge` ms while
//! OPERATIONAL, whether the ring is busy or idle (corosync sends it only from an idle ring
//! holding the token; see the module docs of `srp`). A node that hears a merge-detect, or
//! an mcast, of a ring that is neither its own nor one it left behind, starts GATHER with
//! the sender heard of, and the two rings merge in one membership round.

use super::state::State;
use super::timer::Timer;
use super::{DropReason, Ring};
use crate::event::Reason;
use crate::wire::{Message, NodeId, Packet, RingId};

impl Ring {
    /// The merge timer: the representative announces its ring.
    pub(super) fn on_merge_timer(&mut self, now: u64) {
        // Every `merge` ms, whatever the token does. corosync sends merge detect only from
        // an idle representative, so a heal waits for the hold timer and the merge timer
        // both; a busy ring's foreign messages usually find the other side first, but an
        // idle one needs this (see the module docs).
        if matches!(self.state, State::Operational(_)) && self.cur.ring_id.rep == self.id {
            let p = Packet {
                sender: self.id,
                ring_id: self.cur.ring_id,
                message: Message::MergeDetect,
            };
            self.out.multicast(&p);
            self.timers.arm(Timer::MergeDetect, now + self.t.merge);
        }
    }

    /// Takes a merge-detect: one of another live ring starts GATHER.
    pub(super) fn on_merge_detect(
        &mut self,
        now: u64,
        sender: NodeId,
        ring_id: RingId,
    ) -> Result<(), DropReason> {
        if ring_id == self.cur.ring_id {
            // This node's own ring's representative: nothing to merge.
            return Ok(());
        }
        if !matches!(self.state, State::Operational(_)) || self.is_stale(sender, ring_id) {
            return Err(DropReason::Stale);
        }
        self.gather_enter(now, Reason::MergeDetect, Some(sender), None);
        Ok(())
    }
}
