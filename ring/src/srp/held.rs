//! Joins heard while this node could not act on them (COMMIT, RECOVERY), held for one join
//! interval and taken as if just heard when the node next gathers.
//!
//! A join dropped in COMMIT does not come again until its sender's join timer: when the
//! commit then falls back, or the installed ring gathers to merge with the sender, the round
//! waits up to a whole join interval for a join it has already seen. That wait was the tail
//! of start → full ring (a late starter's join reaches the lowest id in COMMIT; the others,
//! in GATHER, take it; the commit falls back and waits one join interval for it). Taking a
//! held join later is what the network does when it delays a datagram, which the join rules
//! already allow; a join older than one join interval is not taken, for its sender, if still
//! gathering, has sent a newer one by then.

use crate::wire::{Join, NodeId, PROCESSORS_MAX};
use std::collections::{BTreeMap, VecDeque};

/// How many joins are held per sender. A node entering GATHER sends several joins within
/// microseconds as its sets grow, and jitter can deliver them out of order, so the last one
/// heard is not always the last one sent: a join that another held join of its sender
/// covers (no newer, sets no larger) is not kept, and this bounds the rest.
const PER_SENDER: usize = 4;

/// The last joins from each sender heard while this node could not act on them.
#[derive(Debug, Default)]
pub(super) struct HeldJoins {
    joins: BTreeMap<NodeId, VecDeque<(u64, Join)>>,
}

impl HeldJoins {
    /// Keeps `j`, heard from `sender` at `now`, with the last few of that sender. Full (as
    /// many senders as a ring may have members), it keeps only joins of senders it holds.
    pub(super) fn hold(&mut self, now: u64, sender: NodeId, j: Join) {
        if self.joins.len() >= PROCESSORS_MAX && !self.joins.contains_key(&sender) {
            return;
        }
        let q = self.joins.entry(sender).or_default();
        if q.iter().any(|(_, h)| covers(h, &j)) {
            return;
        }
        q.retain(|(_, h)| !covers(&j, h));
        if q.len() == PER_SENDER {
            q.pop_front();
        }
        q.push_back((now, j));
    }

    /// Takes every held join heard within `max_age` of `now`, in the order heard; drops the
    /// rest.
    pub(super) fn take_fresh(&mut self, now: u64, max_age: u64) -> Vec<(NodeId, Join)> {
        let mut fresh: Vec<(u64, NodeId, Join)> = std::mem::take(&mut self.joins)
            .into_iter()
            .flat_map(|(s, q)| q.into_iter().map(move |(t, j)| (t, s, j)))
            .filter(|(t, _, _)| now.saturating_sub(*t) <= max_age)
            .collect();
        // Stable: a sender's joins heard at one instant stay in the order heard.
        fresh.sort_by_key(|(t, _, _)| *t);
        fresh.into_iter().map(|(_, s, j)| (s, j)).collect()
    }

    /// Returns whether no join is held.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.joins.is_empty()
    }
}

/// Returns whether join `a` makes `b` (of the same sender) useless once both are taken:
/// `a` is no older and its sets hold `b`'s, so whatever `b` adds, `a` adds too.
fn covers(a: &Join, b: &Join) -> bool {
    a.ring_seq >= b.ring_seq
        && b.proc_set.iter().all(|p| a.proc_set.contains(p))
        && b.fail_set.iter().all(|f| a.fail_set.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(seq: u64) -> Join {
        joining(seq, &[1, 2])
    }

    fn joining(seq: u64, proc_set: &[NodeId]) -> Join {
        Join {
            ring_seq: seq,
            proc_set: proc_set.to_vec(),
            fail_set: vec![],
            unheard: vec![],
            unheard_epoch: 0,
        }
    }

    #[test]
    fn keeps_the_last_joins_of_each_sender_and_only_fresh_ones_in_the_order_heard() {
        let mut h = HeldJoins::default();
        // Each newer by its seq, none covering an earlier one (sets shrink).
        for seq in 0..6 {
            let procs: Vec<NodeId> = (1..=(10 - seq as NodeId)).collect();
            h.hold(10 + seq, 2, joining(seq, &procs));
        }
        h.hold(5, 3, join(7));
        h.hold(12, 4, join(9));
        let taken: Vec<(NodeId, u64)> = h
            .take_fresh(60, 50)
            .into_iter()
            .map(|(s, j)| (s, j.ring_seq))
            .collect();
        assert_eq!(
            taken,
            vec![(2, 2), (4, 9), (2, 3), (2, 4), (2, 5)],
            "3's join is too old, 2's first two pushed out"
        );
        assert!(h.is_empty());
    }

    #[test]
    fn a_join_covered_by_another_of_its_sender_is_not_kept() {
        // Sent {1,2}, {1,2,3}, {1,2,3,4} as the sender's sets grew; heard out of order.
        let mut h = HeldJoins::default();
        h.hold(1, 5, joining(3, &[1, 2, 3, 4, 5]));
        h.hold(2, 5, joining(3, &[1, 2, 5]));
        h.hold(3, 5, joining(3, &[1, 2, 3, 5]));
        h.hold(4, 6, joining(3, &[1, 6]));
        h.hold(5, 6, joining(3, &[1, 2, 6]));
        let taken: Vec<(NodeId, usize)> = h
            .take_fresh(5, 50)
            .into_iter()
            .map(|(s, j)| (s, j.proc_set.len()))
            .collect();
        assert_eq!(taken, vec![(5, 5), (6, 3)]);
    }

    #[test]
    fn holds_at_most_a_ring_of_senders() {
        let mut h = HeldJoins::default();
        for s in 0..(PROCESSORS_MAX as NodeId + 10) {
            h.hold(1, s + 1, join(1));
        }
        assert_eq!(h.take_fresh(1, 0).len(), PROCESSORS_MAX);
    }
}
