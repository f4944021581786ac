//! Reachability: asymmetric and partial connectivity (ringlab's, not Totem's).
//!
//! Totem (TOCS95) assumes that if A hears B then B hears A. When that fails (A does not hear
//! B but B hears A; or A and B cannot hear each other while both reach C), a membership
//! round leaves one side out, the left-out processor's merge-detects or mcasts reach the
//! others, they merge, the pair breaks the merged ring again, and the cluster re-forms every
//! few seconds for as long as the fault lasts. corosync behaves the same way (its users
//! report it as "processor failed" loops under asymmetric partitions).
//!
//! ringlab adds three rules, switched by the `reachability` knob (default on):
//! - **Deafness is announced.** At a consensus timeout, a processor given up on that this
//!   node has not heard at all for the whole consensus period is one it is *deaf* to; it
//!   stays so until a datagram from it arrives. Joins carry the sender's deaf set
//!   (`unheard`), so every node learns which pairs cannot hear each other. Loss alone makes
//!   a false entry only if every join of a whole consensus period is lost (with joins every
//!   `join` ms, 24 in a row at the defaults).
//! - **One of every deaf pair is left out, the same one everywhere.** In GATHER, for every
//!   pair of live proposed members one of which announced it cannot hear the other, the
//!   higher id is given up on (by that processor itself: the lower one). Every node decides
//!   from the same announcements, so the mutually connected nodes agree at once and the
//!   odd node out forms its own ring, instead of each side excluding whichever it timed out
//!   first.
//! - **A merge that cannot hold is not started.** A merge-detect carries its ring's members
//!   and the outsiders one of them cannot hear. An OPERATIONAL node ignores a merge-detect,
//!   foreign join or foreign mcast whose merge would put such a pair into one ring (counted
//!   as `unmergeable` drops) — unless the sender is one this node was deaf to and now hears:
//!   that is the heal, and the merge goes ahead. A processor that learns that someone cannot
//!   hear it sends that one a merge-detect by unicast, at most once per `merge` interval, so
//!   the deaf side finds out as soon as the link is back even when the other side never
//!   multicasts.
//!
//! Nothing here changes what a ring delivers or how it installs: only which membership a
//! round proposes and when a merge starts, so the checker's guarantees are untouched.

use crate::wire::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// A processor's latest announcement of its deaf set.
#[derive(Debug)]
struct Announced {
    epoch: u64,
    at: u64,
    unheard: BTreeSet<NodeId>,
}

/// What this node knows of who hears whom.
#[derive(Debug, Default)]
pub(super) struct Reach {
    /// When each processor was last heard (a datagram that decoded, from it).
    heard: BTreeMap<NodeId, u64>,
    /// When another processor's join first and last named each processor as live (proposed
    /// and not given up on) since this node last heard it: evidence that it is talking, so
    /// that not hearing it means something.
    vouched: BTreeMap<NodeId, (u64, u64)>,
    /// Processors this node is deaf to: given up on at a consensus timeout without a word
    /// from them for the whole consensus period, and not heard since.
    deaf: BTreeSet<NodeId>,
    /// The deaf set each processor last announced in a join, with its epoch and when it
    /// arrived.
    announced: BTreeMap<NodeId, Announced>,
    /// Changes of this node's deaf set (the low half of the epoch its joins carry).
    changes: u32,
    /// The sender of the datagram being taken, when it is the first heard from a processor
    /// this node was deaf to.
    regained: Option<NodeId>,
    /// When this node last probed those that cannot hear it.
    last_probe: Option<u64>,
    /// Processors to merge with at the next chance: heard asking to join, or heard again
    /// after a silence, while this node could not act on it (COMMIT, RECOVERY).
    pending: BTreeSet<NodeId>,
}

impl Reach {
    /// Notes a datagram from `from` at `now` (the datagram now being taken); returns
    /// whether it is the first since this node became deaf to `from`.
    pub(super) fn hear(&mut self, from: NodeId, now: u64) -> bool {
        self.heard.insert(from, now);
        self.vouched.remove(&from);
        self.regained = self.deaf.remove(&from).then_some(from);
        if self.regained.is_some() {
            self.changes = self.changes.wrapping_add(1);
        }
        self.regained.is_some()
    }

    /// Keeps `p` to merge with once this node is OPERATIONAL.
    pub(super) fn defer(&mut self, p: NodeId) {
        self.pending.insert(p);
    }

    /// Takes the processors kept to merge with.
    pub(super) fn take_pending(&mut self) -> BTreeSet<NodeId> {
        std::mem::take(&mut self.pending)
    }

    /// Returns whether the datagram being taken is the first from `p` since this node
    /// became deaf to it.
    pub(super) fn regained(&self, p: NodeId) -> bool {
        self.regained == Some(p)
    }

    /// Notes a join from `from` at `now` naming `live` as live.
    pub(super) fn vouch(&mut self, from: NodeId, live: impl Iterator<Item = NodeId>, now: u64) {
        for p in live.filter(|&p| p != from) {
            self.vouched
                .entry(p)
                .and_modify(|v| v.1 = now)
                .or_insert((now, now));
        }
    }

    /// At a consensus timeout: of `missing` (given up on now), those not heard since
    /// `since` while others' joins named them live from `since` (give or take `slack`) until
    /// now are processors this node is deaf to. A processor nobody vouched for may just be
    /// silent (busy in a ring of its own, crashed before the round); one first vouched for
    /// later may be on the far side of a partition that has just healed: not hearing it
    /// says nothing about the link yet.
    pub(super) fn consensus_timeout(&mut self, missing: &[NodeId], since: u64, slack: u64) {
        for &p in missing {
            let silent = self.heard.get(&p).is_none_or(|&t| t < since);
            let talking = self.vouched.get(&p).is_some_and(|&(first, last)| {
                first <= since.saturating_add(slack) && last >= since
            });
            if silent && talking && self.deaf.insert(p) {
                self.changes = self.changes.wrapping_add(1);
            }
        }
    }

    /// Marks this node deaf to those of `live` (this node aside) that the rule of
    /// [`Reach::consensus_timeout`] finds, and returns every one of `live` it is deaf to.
    pub(super) fn deaf_among(
        &mut self,
        me: NodeId,
        live: &[NodeId],
        since: u64,
        slack: u64,
    ) -> Vec<NodeId> {
        let candidates: Vec<NodeId> = live.iter().copied().filter(|&p| p != me).collect();
        self.consensus_timeout(&candidates, since, slack);
        candidates
            .into_iter()
            .filter(|p| self.deaf.contains(p))
            .collect()
    }

    /// Returns this node's deaf set, as its joins announce it.
    pub(super) fn unheard(&self) -> Vec<NodeId> {
        self.deaf.iter().copied().collect()
    }

    /// Returns the epoch of this node's deaf set for incarnation `inc`.
    pub(super) fn epoch(&self, inc: u32) -> u64 {
        (u64::from(inc) << 32) | u64::from(self.changes)
    }

    /// Notes the deaf set `from` announced with `epoch`, unless an announcement with a
    /// later epoch is already known.
    pub(super) fn announce(&mut self, from: NodeId, epoch: u64, unheard: &[NodeId], now: u64) {
        if self.announced.get(&from).is_some_and(|a| a.epoch > epoch) {
            return;
        }
        let unheard = unheard.iter().copied().collect();
        self.announced.insert(
            from,
            Announced {
                epoch,
                at: now,
                unheard,
            },
        );
    }

    /// Returns whether `a` is known not to hear `b` (`me` is this node), from
    /// announcements that arrived at `since` or later.
    fn cannot_hear(&self, me: NodeId, a: NodeId, b: NodeId, since: u64) -> bool {
        if a == me {
            self.deaf.contains(&b)
        } else {
            self.announced
                .get(&a)
                .is_some_and(|x| x.at >= since && x.unheard.contains(&b))
        }
    }

    /// Returns the processors of `live` to give up on so that no two left can be known not
    /// to hear each other: the higher id of every such pair, or, where that is this node,
    /// the other one. Only announcements made since `since` (this gathering) count: an
    /// older one may describe a link that has healed since.
    pub(super) fn losers(
        &self,
        me: NodeId,
        live: &BTreeSet<NodeId>,
        since: u64,
    ) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        for &a in live {
            for &b in live {
                if a < b && (self.cannot_hear(me, a, b, since) || self.cannot_hear(me, b, a, since))
                {
                    out.insert(if b == me { a } else { b });
                }
            }
        }
        out
    }

    /// Returns whether a merge of `ring` (this node's) with `other` (the other side's
    /// members), whose members cannot hear `other_unheard`, would put a pair that cannot
    /// hear each other into one ring, by this node's deafness and by others' announcements
    /// that arrived at `since` or later.
    pub(super) fn merge_blocked(
        &self,
        me: NodeId,
        ring: &[NodeId],
        other: &[NodeId],
        other_unheard: &[NodeId],
        since: u64,
    ) -> bool {
        other_unheard.iter().any(|u| ring.contains(u))
            || ring.iter().any(|&m| {
                other
                    .iter()
                    .any(|&o| !ring.contains(&o) && self.cannot_hear(me, m, o, since))
            })
            || other.iter().any(|&o| {
                !ring.contains(&o) && ring.iter().any(|&m| self.cannot_hear(me, o, m, since))
            })
    }

    /// Returns the outsiders one of `ring`'s members cannot hear, as far as this node
    /// knows: what its merge-detect announces.
    pub(super) fn ring_unheard(&self, me: NodeId, ring: &[NodeId]) -> Vec<NodeId> {
        let mut out: BTreeSet<NodeId> = self.deaf.clone();
        for m in ring.iter().filter(|&&m| m != me) {
            if let Some(a) = self.announced.get(m) {
                out.extend(a.unheard.iter().copied());
            }
        }
        out.retain(|p| !ring.contains(p));
        out.into_iter().collect()
    }

    /// Returns whom to probe at `now` (those known not to hear this node, and `fallback`),
    /// at most once per `interval`; empty when it is not time yet.
    pub(super) fn probe_targets(
        &mut self,
        me: NodeId,
        now: u64,
        interval: u64,
        fallback: &[NodeId],
    ) -> Vec<NodeId> {
        if self
            .last_probe
            .is_some_and(|t| now < t.saturating_add(interval))
        {
            return Vec::new();
        }
        let known = self
            .announced
            .iter()
            .filter(|(_, a)| a.unheard.contains(&me))
            .map(|(&p, _)| p);
        let mut out: BTreeSet<NodeId> = known.chain(fallback.iter().copied()).collect();
        out.remove(&me);
        // Only a probe sent counts against the interval.
        if !out.is_empty() {
            self.last_probe = Some(now);
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Reach;
    use std::collections::BTreeSet;

    const E: u64 = 1;

    #[test]
    fn deafness_comes_from_silence_and_goes_with_a_datagram() {
        let mut r = Reach::default();
        assert!(!r.hear(2, 100));
        r.hear(3, 900);
        // Node 5's joins say 2, 3 and 4 are live from 450 to 800, 7 only from 700; 6 nobody
        // vouched for.
        r.vouch(5, [2, 3, 4, 5].into_iter(), 450);
        r.vouch(5, [2, 3, 4, 5, 7].into_iter(), 700);
        r.vouch(5, [2, 3, 4, 5, 7].into_iter(), 800);
        // 2 silent since 100, 3 heard at 900, 4 never: deaf to 2 and 4, not to the silent 6,
        // nor to 7, named live only lately (a healed partition's far side).
        r.consensus_timeout(&[2, 3, 4, 6, 7], 500, 50);
        assert_eq!(r.unheard(), vec![2, 4]);
        assert!(r.hear(2, 1_000));
        assert!(r.regained(2));
        assert_eq!(r.unheard(), vec![4]);
        assert!(!r.hear(3, 1_001));
        assert!(!r.regained(3));
    }

    #[test]
    fn the_higher_id_of_a_deaf_pair_loses_except_that_a_node_never_drops_itself() {
        let mut r = Reach::default();
        r.announce(2, E, &[1], 10);
        let live: BTreeSet<u32> = [1, 2, 3, 4].into();
        assert_eq!(r.losers(3, &live, 0), [2].into());
        // Node 2 itself (deaf to node 1) gives up on node 1 instead.
        let mut r2 = Reach::default();
        r2.vouch(3, [1, 2, 3, 4].into_iter(), 5);
        r2.consensus_timeout(&[1], 1, 10);
        assert_eq!(r2.losers(2, &live, 0), [1].into());
        r.announce(2, E + 1, &[], 10);
        assert!(r.losers(3, &live, 0).is_empty());
        // An older announcement, arriving late, changes nothing.
        r.announce(2, E, &[1], 10);
        assert!(r.losers(3, &live, 0).is_empty());
        // An announcement from before this gathering is not acted on.
        r.announce(2, E + 2, &[1], 10);
        assert_eq!(r.losers(3, &live, 0), [2].into());
        assert!(r.losers(3, &live, 11).is_empty());
    }

    #[test]
    fn a_merge_that_joins_a_deaf_pair_is_blocked() {
        let mut r = Reach::default();
        // Node 1 said it cannot hear node 2.
        r.announce(1, E, &[2], 10);
        assert!(r.merge_blocked(3, &[1, 3, 4], &[2], &[], 0));
        // An announcement older than the memory no longer blocks.
        assert!(!r.merge_blocked(3, &[1, 3, 4], &[2], &[], 11));
        assert!(!r.merge_blocked(3, &[3, 4], &[2], &[], 0));
        // The other side says one of its members cannot hear node 4.
        assert!(r.merge_blocked(3, &[3, 4], &[5], &[4], 0));
        assert_eq!(r.ring_unheard(3, &[1, 3, 4]), vec![2]);
    }

    #[test]
    fn probes_are_rate_limited() {
        let mut r = Reach::default();
        r.announce(5, E, &[1], 10);
        assert_eq!(r.probe_targets(1, 0, 40, &[2]), vec![2, 5]);
        assert!(r.probe_targets(1, 39, 40, &[2]).is_empty());
        // Nobody to probe does not use up the interval.
        let mut idle = Reach::default();
        assert!(idle.probe_targets(1, 0, 40, &[]).is_empty());
        assert_eq!(idle.probe_targets(1, 1, 40, &[3]), vec![3]);
        assert_eq!(r.probe_targets(1, 40, 40, &[2]), vec![2, 5]);
        r.announce(5, E + 1, &[], 10);
        assert_eq!(r.probe_targets(1, 80, 40, &[1, 2]), vec![2]);
    }
}
