//! Membership (TOCS95 §6): GATHER, consensus and COMMIT.
//!
//! GATHER: every node multicasts a join with the processors it has heard of and those it
//! has given up on, every `join` ms and whenever its sets change; a node agrees with a sender
//! whose join carries the same sets; when every proposed member agrees, the lowest of them
//! forms the ring and sends the commit token. A member silent for `consensus` ms is given
//! up on. COMMIT: the commit token goes round once collecting each member's old-ring
//! position (aru, highest delivered), then a second time to move everyone to RECOVERY.
//!
//! The join rules (corosync's, with ringlab's additions; reasons in the module docs of
//! `srp`): a join from a processor already given up on is ignored; a join whose sender gave
//! up on this node only adds the sender to the fail set; fail sets are believed only from
//! members of this node's own ring; a join older than this node's ring has its fail set
//! ignored; leaving a ring bumps the ring seq the joins carry past it.

use super::ordering::{next_hop, next_member};
use super::state::{Commit, Gather, Round, State};
use super::timer::Timer;
use super::{DropReason, PassedToken, Ring};
use crate::event::Reason;
use crate::wire::{
    self, CommitToken, Join, Leave, MembEntry, Message, NodeId, Packet, RingId, Token,
    PROCESSORS_MAX,
};
use bytes::Bytes;
use std::collections::BTreeSet;

impl Ring {
    /// Enters GATHER (or, already there, restarts the round): from OPERATIONAL with the
    /// ring's members, from COMMIT or RECOVERY with the round that led there (its fail set
    /// cleared unless the token was lost), plus the processors `add_proc` heard of and `add_fail`
    /// given up on; then takes the joins held from COMMIT or RECOVERY (`held.rs`).
    pub(super) fn gather_enter(
        &mut self,
        now: u64,
        reason: Reason,
        add_proc: &[NodeId],
        add_fail: Option<NodeId>,
    ) {
        let round = match &mut self.state {
            State::Gather(_) | State::Left => None,
            State::Operational(_) => {
                // A new round: its joins carry a ring seq above the ring it leaves, so a join
                // left over from the round that formed this ring (or from a ring of the
                // same seq elsewhere) is recognisably older and its fail set is not trusted.
                self.highest_ring_seq = self
                    .highest_ring_seq
                    .max(self.cur.ring_id.seq.saturating_add(1));
                self.timers.cancel(Timer::Hold);
                self.timers.cancel(Timer::MergeDetect);
                Some(Round {
                    proc_set: self.cur.members.iter().copied().collect(),
                    fail_set: BTreeSet::new(),
                })
            }
            State::Commit(Commit { round, ring_id, .. }) => {
                self.abandoned.push(*ring_id);
                Some(fallback_round(round, reason))
            }
            State::Recovery(r) => {
                self.abandoned.push(r.next.ring_id);
                Some(fallback_round(&mut r.round, reason))
            }
        };
        self.timers.cancel(Timer::TokenLoss);
        self.timers.cancel(Timer::TokenRetransmit);
        self.last_token_sent = None;
        // The next ring's rotation is measured afresh.
        self.rotation = Default::default();
        // Whoever was waiting to be merged with is in this round or will ask again.
        let _ = self.reach.take_pending();
        if let Some(round) = round {
            self.stats.gathers += 1;
            self.set_state(State::Gather(Gather::new(round, now)), reason);
        }
        let State::Gather(g) = &mut self.state else {
            return;
        };
        for &p in add_proc {
            if g.round.proc_set.len() < PROCESSORS_MAX {
                g.round.proc_set.insert(p);
            }
        }
        if let Some(f) = add_fail {
            if f != self.id {
                g.round.fail_set.insert(f);
            }
        }
        self.restart_gather_round(now);
        if self.cfg.pending_joins {
            // Joins heard in COMMIT or RECOVERY within the last join interval are taken now,
            // as a delayed datagram would be (`held.rs`).
            for (sender, j) in self.held.take_fresh(now, self.t.join) {
                // As `on_join` in GATHER: the ring to form must be newer than any its
                // proposed members have seen, or they drop its commit token as stale.
                self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
                let _ = self.process_join(now, sender, j, Heard::Held);
            }
        }
    }

    /// Starts a new round of joins in GATHER: agreement with itself only, the join sent,
    /// the join and consensus timers armed.
    pub(super) fn restart_gather_round(&mut self, now: u64) {
        let State::Gather(g) = &mut self.state else {
            return;
        };
        // (Within a join interval of a consensus period: a restart a hair early must not
        // re-arm the consensus timer for another whole period.)
        if self.cfg.reachability && now + self.t.join >= g.since.saturating_add(self.t.consensus) {
            // A gathering that has lasted a consensus period gives up at once on a
            // processor it has not heard for that long while others' joins name it live:
            // restarting the round (as every change of the sets does) must not postpone
            // that, or a node cut off from one processor never reaches its own consensus.
            let live: Vec<NodeId> = g.round.members();
            let since = g.since.max(now.saturating_sub(self.t.consensus));
            let deaf = self.reach.deaf_among(self.id, &live, since, self.t.join);
            g.round.fail_set.extend(deaf);
        }
        g.consensus.clear();
        g.consensus.insert(self.id);
        self.send_join();
        self.timers.arm(Timer::Join, now + self.t.join);
        self.timers.arm(Timer::Consensus, now + self.t.consensus);
    }

    /// Multicasts this node's join (in GATHER).
    pub(super) fn send_join(&mut self) {
        let State::Gather(g) = &self.state else {
            return;
        };
        let p = Packet {
            sender: self.id,
            ring_id: self.cur.ring_id,
            message: Message::Join(Join {
                ring_seq: self.highest_ring_seq.max(self.cur.ring_id.seq),
                proc_set: g.round.proc_set.iter().copied().collect(),
                fail_set: g.round.fail_set.iter().copied().collect(),
                unheard: if self.cfg.reachability {
                    self.reach.unheard()
                } else {
                    Vec::new()
                },
                unheard_epoch: self.reach.epoch(self.inc),
            }),
        };
        self.out.multicast(&p);
    }

    /// The join timer: re-sends the join and checks consensus.
    pub(super) fn on_join_timer(&mut self, now: u64) {
        if matches!(self.state, State::Gather(_)) {
            self.send_join();
            self.timers.arm(Timer::Join, now + self.t.join);
            self.check_consensus(now);
        }
    }

    /// The consensus timer: gives up on every processor that has not agreed, and starts a
    /// new round.
    pub(super) fn on_consensus_timeout(&mut self, now: u64) {
        let State::Gather(g) = &mut self.state else {
            return;
        };
        let missing: Vec<NodeId> = g
            .round
            .proc_set
            .difference(&g.round.fail_set)
            .filter(|m| !g.consensus.contains(m))
            .copied()
            .collect();
        tracing::trace!(node = self.id, ?missing, "consensus timeout");
        g.round.fail_set.extend(missing.iter().copied());
        if self.cfg.reachability {
            self.reach.consensus_timeout(
                &missing,
                now.saturating_sub(self.t.consensus),
                self.t.join,
            );
            self.give_up_on_deaf_pairs();
        }
        self.restart_gather_round(now);
        self.check_consensus(now);
    }

    /// Takes a join: it may start GATHER, and in GATHER it is processed by the join rules.
    pub(super) fn on_join(&mut self, now: u64, sender: NodeId, j: Join) -> Result<(), DropReason> {
        if self.cfg.reachability {
            self.reach
                .announce(sender, j.unheard_epoch, &j.unheard, now);
            if j.unheard.contains(&self.id) {
                // It cannot hear this node: tell it, directly, that this node is here.
                self.probe(now, &[sender]);
            }
            self.reach.vouch(sender, j.live(), now);
        }
        match &self.state {
            State::Operational(_) => {
                let member = self.cur.members.contains(&sender);
                if j.ring_seq < self.cur.ring_id.seq && member {
                    return Err(DropReason::Stale);
                }
                if !member {
                    if self.cfg.reachability && j.fail_set.contains(&self.id) {
                        // A stranger's round that has given up on this node: joining it
                        // would only end in this node's ring again; its ring's merge-detect
                        // will come. (Without this rule a kml scenario, sim/tests/kml.rs
                        // a_sync_point_undone_by_an_earlier_merge_is_not_used, ends with two
                        // members on different trees.)
                        return Err(DropReason::Stale);
                    }
                    // A stranger's round: joining it must not put two processors that cannot
                    // hear each other into one ring.
                    let theirs: Vec<NodeId> = j.live().collect();
                    if self.merge_blocked(now, sender, &theirs, &j.unheard) {
                        return Err(DropReason::Unmergeable);
                    }
                }
                self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
                self.gather_enter(now, Reason::Join, &[], None);
            }
            State::Gather(_) => {
                self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
            }
            State::Commit(_) | State::Recovery(_) => {
                if !self.join_breaks_commit(sender, &j) {
                    if self.pending_joiner(sender, &j) {
                        // A processor outside the ring being formed asks to join: merge
                        // with it once installed, not a join interval later.
                        self.reach.defer(sender);
                    }
                    if self.cfg.pending_joins && !j.fail_set.contains(&self.id) {
                        // (A join giving up on this node is not held: by the time it would
                        // be taken, its sender may have moved on, and taking it would give
                        // up on the sender in turn.)
                        self.held.hold(now, sender, j);
                    }
                    return Err(DropReason::Stale);
                }
                self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
                self.gather_enter(now, Reason::Join, &[], None);
            }
            State::Left => return Ok(()),
        }
        self.process_join(now, sender, j, Heard::Now)
    }

    /// Returns whether a join heard in COMMIT or RECOVERY makes this node fall back to
    /// GATHER: a member of the new ring asks for a newer round, or names a processor this
    /// node never heard of.
    fn join_breaks_commit(&self, sender: NodeId, j: &Join) -> bool {
        let (round, ring_id, members) = match &self.state {
            State::Commit(c) => (&c.round, c.ring_id, &c.members),
            State::Recovery(r) => (&r.round, r.next.ring_id, &r.next.members),
            _ => return false,
        };
        // A member whose join names a processor this node never heard of (in a join not
        // older than this node's ring) cannot accept this commit: the commit token would
        // never complete its rotation. Fall back now rather than at the token timeout. Found
        // by simultaneous starts in namespaces: a node that had not yet heard the lowest id
        // committed without it, and the others ignored its commit token. Late joins of the
        // round that led here name no new processor (a round's proc sets only grow), so they
        // change nothing.
        let disagrees = j.ring_seq >= self.cur.ring_id.seq
            && j.proc_set.iter().any(|n| !round.proc_set.contains(n));
        // Likewise a member that has given up on a proposed member (a one-way cut: node 2
        // cannot hear node 1, node 1 heard everyone agree and committed; node 2's join
        // failing node 1 tells node 1 the token will not come back).
        let gave_up = self.cfg.reachability
            && j.ring_seq >= self.cur.ring_id.seq
            && j.fail_set.iter().any(|f| members.contains(f));
        members.contains(&sender) && (j.ring_seq >= ring_id.seq || disagrees || gave_up)
    }

    /// Returns whether a join heard in COMMIT or RECOVERY (and not breaking it) comes from a
    /// processor outside the proposed ring that wants in: not a member of either ring, not
    /// given up on by the round, and not giving up on this node. Its ring seq may be older
    /// than this node's ring, as OPERATIONAL takes such a join from a non-member: a node
    /// started late carries the seq of its own stable storage (0 when new), while the others
    /// have already formed rings among themselves.
    fn pending_joiner(&self, sender: NodeId, j: &Join) -> bool {
        let (members, round) = match &self.state {
            State::Commit(c) => (&c.members, &c.round),
            State::Recovery(r) => (&r.next.members, &r.round),
            _ => return false,
        };
        self.cfg.pending_joins
            && !members.contains(&sender)
            && !round.fail_set.contains(&sender)
            && !self.cur.members.contains(&sender)
            && !j.fail_set.contains(&self.id)
    }

    /// Applies the join rules to a join heard in GATHER (or held from COMMIT or RECOVERY).
    fn process_join(
        &mut self,
        now: u64,
        sender: NodeId,
        j: Join,
        heard: Heard,
    ) -> Result<(), DropReason> {
        let State::Gather(g) = &mut self.state else {
            return Ok(());
        };
        let jp: BTreeSet<NodeId> = j.proc_set.into_iter().collect();
        // A join from before this node's current ring carries a fail set formed before that
        // ring existed: it may name this node or its members only because the partition
        // that separated them has since healed. Its proc set still says who wants in.
        let fresh = j.ring_seq > self.cur.ring_id.seq
            || (j.ring_seq == self.cur.ring_id.seq && self.cur.members.contains(&sender));
        let jf: BTreeSet<NodeId> = if fresh {
            j.fail_set.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        let round = &mut g.round;
        tracing::trace!(node = self.id, sender, ring_seq = j.ring_seq, fresh, ?jp, ?jf, proc = ?round.proc_set, fail = ?round.fail_set, "join");
        if jp == round.proc_set && jf == round.fail_set {
            g.consensus.insert(sender);
            self.check_consensus(now);
            return Ok(());
        }
        // A processor already given up on in this round is not listened to; it comes back
        // through the next ring's merge detection.
        if round.fail_set.contains(&sender) {
            return Ok(());
        }
        let i_am_failed = jf.contains(&self.id);
        if jp.is_subset(&round.proc_set) && jf.is_subset(&round.fail_set) {
            return Ok(());
        }
        if round.proc_set.union(&jp).count() > PROCESSORS_MAX {
            return Err(DropReason::Stale);
        }
        let before = (round.proc_set.len(), round.fail_set.len());
        round.proc_set.extend(jp.iter().copied());
        if i_am_failed {
            // It gave up on this node: the two cannot agree this round. Its view of the
            // others is not adopted, or one slow member would make everyone fail everyone.
            round.fail_set.insert(sender);
        } else if self.cur.members.contains(&sender) && heard == Heard::Now {
            // Failures seen by a member of this node's own ring are believed; not from a
            // held join, which may carry the fail set of the round a fallback has just
            // cleared (`fallback_round`).
            round
                .fail_set
                .extend(jf.iter().copied().filter(|&f| f != self.id));
        }
        let round = &g.round;
        if (round.proc_set.len(), round.fail_set.len()) != before {
            self.restart_gather_round(now);
        }
        if let State::Gather(g) = &mut self.state {
            if jp == g.round.proc_set && jf == g.round.fail_set {
                g.consensus.insert(sender);
            }
        }
        self.check_consensus(now);
        Ok(())
    }

    /// Gives up, at a consensus timeout, on one processor of every pair of proposed members
    /// known, from announcements made during this gathering, not to hear each other
    /// (`reach.rs`): every node decides from the same announcements, so the mutually
    /// connected ones agree in the next round. Not on every join: after a partition heals,
    /// every node is deaf to the other side until the first joins cross, and acting on
    /// those first announcements would split the merge.
    fn give_up_on_deaf_pairs(&mut self) {
        let State::Gather(g) = &mut self.state else {
            return;
        };
        let live: BTreeSet<NodeId> = g.round.members().into_iter().collect();
        let losers = self.reach.losers(self.id, &live, g.since);
        if !losers.is_empty() {
            tracing::trace!(node = self.id, ?losers, "deaf pairs");
            g.round.fail_set.extend(losers);
        }
    }

    /// Forms the ring when this node is the lowest proposed member and every proposed
    /// member agrees: sends the commit token and enters COMMIT.
    fn check_consensus(&mut self, now: u64) {
        let State::Gather(g) = &self.state else {
            return;
        };
        let members = g.round.members();
        if members.first() != Some(&self.id) || !members.iter().all(|m| g.consensus.contains(m)) {
            return;
        }
        let ring_id = RingId {
            rep: self.id,
            seq: self
                .highest_ring_seq
                .max(self.cur.ring_id.seq)
                .saturating_add(4),
        };
        tracing::trace!(node = self.id, ?members, proc = ?g.round.proc_set, fail = ?g.round.fail_set, %ring_id, "consensus");
        let ct = CommitToken {
            token_seq: 0,
            members,
            entries: Vec::new(),
        };
        self.commit_enter(now, ring_id, ct, Reason::Consensus);
    }

    /// Takes a leave: the leaver is given up on at once.
    pub(super) fn on_leave(
        &mut self,
        now: u64,
        sender: NodeId,
        l: Leave,
    ) -> Result<(), DropReason> {
        if l.ring_seq < self.cur.ring_id.seq {
            return Err(DropReason::Stale);
        }
        match &mut self.state {
            State::Operational(_) => {
                if !self.cur.members.contains(&sender) {
                    return Err(DropReason::Stale);
                }
                self.gather_enter(now, Reason::Leave, &[], Some(sender));
            }
            State::Gather(g) => {
                if !g.round.proc_set.contains(&sender) {
                    return Err(DropReason::Stale);
                }
                if g.round.fail_set.insert(sender) {
                    self.restart_gather_round(now);
                    self.check_consensus(now);
                }
            }
            State::Commit(Commit { members, .. }) => {
                if !members.contains(&sender) {
                    return Err(DropReason::Stale);
                }
                self.gather_enter(now, Reason::Leave, &[], Some(sender));
            }
            State::Recovery(r) => {
                if !r.next.members.contains(&sender) {
                    return Err(DropReason::Stale);
                }
                self.gather_enter(now, Reason::Leave, &[], Some(sender));
            }
            State::Left => {}
        }
        Ok(())
    }

    /// Enters COMMIT for `ring_id` from GATHER: adds this node's old-ring entry to the
    /// commit token and passes it on.
    fn commit_enter(&mut self, now: u64, ring_id: RingId, mut ct: CommitToken, reason: Reason) {
        let State::Gather(g) = &mut self.state else {
            return;
        };
        let round = std::mem::take(&mut g.round);
        self.set_state(
            State::Commit(Commit {
                round,
                ring_id,
                members: ct.members.clone(),
            }),
            reason,
        );
        self.highest_ring_seq = self.highest_ring_seq.max(ring_id.seq);
        self.timers.cancel(Timer::Join);
        self.timers.cancel(Timer::Consensus);
        ct.entries.push(MembEntry {
            old_ring: self.cur.ring_id,
            aru: self.cur.my_aru,
            high_delivered: self.cur.high_delivered,
            received_flg: self.cur.my_aru == self.cur.high_seq_received,
        });
        self.timers.arm(Timer::TokenLoss, now + self.t.token);
        self.forward_commit_token(now, ring_id, ct);
    }

    fn forward_commit_token(&mut self, now: u64, ring_id: RingId, mut ct: CommitToken) {
        ct.token_seq += 1;
        let dest = next_member(&ct.members, self.id);
        let p = Packet {
            sender: self.id,
            ring_id,
            message: Message::CommitToken(ct),
        };
        let bytes = Bytes::from(wire::encode(&p));
        self.send_token(now, PassedToken { dest, bytes });
    }

    /// Takes a commit token: in GATHER one that matches this node's round (enter COMMIT);
    /// in COMMIT its own, complete after one rotation (enter RECOVERY); at the representative
    /// in RECOVERY, the second rotation's end (the first token of the new ring).
    pub(super) fn on_commit_token(
        &mut self,
        now: u64,
        ring_id: RingId,
        ct: CommitToken,
    ) -> Result<(), DropReason> {
        let Some(my_idx) = ct.members.iter().position(|&m| m == self.id) else {
            return Err(DropReason::Stale);
        };
        if next_hop(&ct.members, ct.token_seq) != self.id {
            return Err(DropReason::MisdirectedToken);
        }
        let complete = ct.entries.len() == ct.members.len();
        match &mut self.state {
            State::Gather(g) => {
                if complete
                    || ct.entries.len() != my_idx
                    || ring_id.rep != ct.members[0]
                    || ring_id.seq <= self.cur.ring_id.seq
                    || self.abandoned.contains(&ring_id)
                    || g.round.members() != ct.members
                {
                    return Err(DropReason::Stale);
                }
                self.commit_enter(now, ring_id, ct, Reason::CommitToken);
            }
            State::Commit(c) => {
                if c.ring_id != ring_id || !complete || ct.members != c.members {
                    return Err(DropReason::Stale);
                }
                self.timers.cancel(Timer::TokenRetransmit);
                self.last_token_sent = None;
                self.timers.arm(Timer::TokenLoss, now + self.t.token);
                self.recovery_enter(ring_id, &ct);
                self.forward_commit_token(now, ring_id, ct);
            }
            State::Recovery(r) => {
                // The second rotation's end, not a re-sent copy of the first's: the last
                // member re-sends the first rotation's complete token until the second one
                // reaches it, and taking that copy for the second started the new ring's
                // token while the members behind a lost second-rotation hop were still in
                // COMMIT (they dropped the token, the sender stopped re-sending the commit
                // token, and the ring waited a token timeout). Found by a 16-node seed
                // sweep (700461) once commit tokens were re-sent every join interval.
                let second_rotation = ct.token_seq >= 2 * ct.members.len() as u64;
                let first = self.id == ring_id.rep
                    && complete
                    && second_rotation
                    && r.next.ring_id == ring_id
                    && !r.initial_token_sent;
                if !first {
                    return Err(DropReason::Stale);
                }
                r.initial_token_sent = true;
                self.timers.cancel(Timer::TokenRetransmit);
                self.last_token_sent = None;
                // The new ring's first token: a fresh token can be neither foreign nor a
                // duplicate here.
                let first_token = self.on_token(now, ring_id, Token::default());
                debug_assert!(first_token.is_ok(), "{first_token:?}");
            }
            State::Operational(_) | State::Left => return Err(DropReason::Stale),
        }
        Ok(())
    }
}

/// When a join taken in GATHER was heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard {
    /// Just now.
    Now,
    /// In COMMIT or RECOVERY, within the last join interval (`held.rs`).
    Held,
}

/// The round a fallback from COMMIT or RECOVERY starts from. Falling back because another
/// member asked (a join or a leave) is not a failure: start a clean round. Keeping the fail
/// set of the round that formed the abandoned ring would hand that round's exclusions to
/// the new round, and two groups that excluded each other once would do so forever.
fn fallback_round(round: &mut Round, reason: Reason) -> Round {
    let mut round = std::mem::take(round);
    if !matches!(reason, Reason::CommitTokenLoss | Reason::RecoveryTokenLoss) {
        round.fail_set.clear();
    }
    round
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{encode, round, Net};
    use super::super::{DropReason, PacketOutcome};
    use crate::event::{Event, MembState, Reason};
    use crate::wire::{Join, Message, NodeId, RingId};
    use crate::Config;

    const MS: u64 = 1_000_000;

    fn join(ring_seq: u64, proc_set: &[NodeId], fail_set: &[NodeId]) -> Message {
        Message::Join(Join {
            ring_seq,
            proc_set: proc_set.to_vec(),
            fail_set: fail_set.to_vec(),
            unheard: Vec::new(),
            unheard_epoch: 0,
        })
    }

    /// Hands node `to` a join from `from`, carrying `from`'s (singleton) ring id.
    fn hear(net: &mut Net, to: NodeId, from: NodeId, m: Message) -> PacketOutcome {
        let now = net.now;
        let ring_id = RingId { rep: from, seq: 0 };
        net.ring(to)
            .handle_packet(now, Some(from), encode(from, ring_id, m))
    }

    #[test]
    fn the_join_rules() {
        let mut net = Net::new(1, Config::default());
        assert_eq!(round(net.ring(1)), (vec![1], vec![]));
        // A new processor is heard of (it has heard of nobody yet: no agreement).
        assert_eq!(
            hear(&mut net, 1, 2, join(0, &[2], &[])),
            PacketOutcome::Accepted
        );
        assert_eq!(round(net.ring(1)), (vec![1, 2], vec![]));
        // A sender that gave up on this node: only the sender is given up on.
        assert_eq!(
            hear(&mut net, 1, 3, join(5, &[1, 3], &[1, 2])),
            PacketOutcome::Accepted
        );
        assert_eq!(round(net.ring(1)), (vec![1, 2, 3], vec![3]));
        // Failures seen by a stranger to this node's ring are not believed.
        assert_eq!(
            hear(&mut net, 1, 4, join(5, &[4], &[2])),
            PacketOutcome::Accepted
        );
        assert_eq!(round(net.ring(1)), (vec![1, 2, 3, 4], vec![3]));
        // A processor already given up on is not listened to.
        assert_eq!(
            hear(&mut net, 1, 3, join(6, &[1, 3, 5], &[])),
            PacketOutcome::Accepted
        );
        assert_eq!(round(net.ring(1)), (vec![1, 2, 3, 4], vec![3]));
        // Every change was announced in a new join carrying the node's sets.
        let last_join = std::iter::from_fn(|| net.ring(1).poll_transmit())
            .filter_map(
                |t| match crate::wire::decode(&t.payload).map(|p| p.message) {
                    Ok(Message::Join(j)) => Some(j),
                    _ => None,
                },
            )
            .last()
            .expect("joins sent");
        assert_eq!(last_join.proc_set, vec![1, 2, 3, 4]);
        assert_eq!(last_join.fail_set, vec![3]);
        // Agreement: 2 and 4 send the same sets; the lowest member commits.
        assert_eq!(
            hear(&mut net, 1, 2, join(6, &[1, 2, 3, 4], &[3])),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(1).state(), MembState::Gather);
        assert_eq!(
            hear(&mut net, 1, 4, join(6, &[1, 2, 3, 4], &[3])),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(1).state(), MembState::Commit);
        let ct = std::iter::from_fn(|| net.ring(1).poll_transmit())
            .find_map(
                |t| match crate::wire::decode(&t.payload).map(|p| p.message) {
                    Ok(Message::CommitToken(ct)) if t.dest == crate::Dest::Node(2) => Some(ct),
                    _ => None,
                },
            )
            .expect("the commit token goes to node 2");
        assert_eq!(ct.members, vec![1, 2, 4]);
        assert_eq!(ct.entries.len(), 1, "the representative's own entry");
    }

    #[test]
    fn a_join_older_than_the_ring_has_its_fail_set_ignored() {
        let mut net = Net::new(3, Config::default());
        net.form();
        let seq = net.ring(1).ring_id().seq;
        // A newer round from member 2 moves node 1 to GATHER.
        assert_eq!(
            hear(&mut net, 1, 2, join(seq + 1, &[1, 2, 3], &[])),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(1).state(), MembState::Gather);
        // From before the ring, even from a member: who wants in counts, not whom it gave
        // up on.
        assert_eq!(
            hear(&mut net, 1, 3, join(seq - 1, &[1, 2, 3, 5], &[2])),
            PacketOutcome::Accepted
        );
        assert_eq!(round(net.ring(1)), (vec![1, 2, 3, 5], vec![]));
        // Fresh, from a member of this node's ring: believed.
        assert_eq!(
            hear(&mut net, 1, 2, join(seq + 1, &[1, 2, 3, 5], &[3])),
            PacketOutcome::Accepted
        );
        assert_eq!(round(net.ring(1)), (vec![1, 2, 3, 5], vec![3]));
    }

    #[test]
    fn a_stale_join_from_a_member_changes_nothing() {
        let mut net = Net::new(3, Config::default());
        net.form();
        let seq = net.ring(1).ring_id().seq;
        assert_eq!(
            hear(&mut net, 1, 2, join(seq - 1, &[1, 2, 3], &[])),
            PacketOutcome::Dropped(DropReason::Stale)
        );
        assert_eq!(net.ring(1).state(), MembState::Operational);
    }

    #[test]
    fn consensus_timeout_gives_up_on_silent_processors() {
        let mut net = Net::new(1, Config::default());
        assert_eq!(
            hear(&mut net, 1, 2, join(0, &[2], &[])),
            PacketOutcome::Accepted
        );
        net.run_until(3_000 * MS);
        assert_eq!(net.ring(1).state(), MembState::Operational);
        assert_eq!(net.ring(1).members(), &[1]);
        assert!(net.events.iter().any(|(_, e)| matches!(
            e,
            Event::State {
                to: MembState::Commit,
                reason: Reason::Consensus,
                ..
            }
        )));
    }

    #[test]
    fn in_commit_a_join_naming_an_unknown_processor_falls_back_at_once() {
        let mut net = Net::new(3, Config::default());
        // Step until node 2 holds the commit token's first rotation.
        while net.ring(2).state() != MembState::Commit {
            assert!(net.step(1_000 * MS), "no commit");
        }
        let seq = net.ring(2).stable_ring_seq();
        // A late join of the round that led here names nobody new: stale.
        assert_eq!(
            hear(&mut net, 2, 3, join(0, &[1, 2, 3], &[])),
            PacketOutcome::Dropped(DropReason::Stale)
        );
        assert_eq!(net.ring(2).state(), MembState::Commit);
        // A member naming a processor node 2 never heard of, in a join no newer than the
        // proposed ring: back to GATHER now, not at the token timeout.
        assert!(seq > 0);
        assert_eq!(
            hear(&mut net, 2, 3, join(0, &[1, 2, 3, 7], &[])),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(2).state(), MembState::Gather);
        assert_eq!(round(net.ring(2)).0, vec![1, 2, 3, 7]);
    }

    /// Steps until node `id` is in `state`.
    fn until_state(net: &mut Net, id: NodeId, state: MembState) {
        let deadline = net.now + 10_000 * MS;
        while net.ring(id).state() != state {
            assert!(
                net.now < deadline && net.step(deadline),
                "node {id} did not reach {state:?} in 10 s"
            );
        }
    }

    #[test]
    fn a_fallback_from_commit_keeps_the_fail_set_on_token_loss_and_clears_it_on_a_join() {
        // Node 3 crashes: 1 and 2 give up on it and commit to {1, 2}.
        let mut net = Net::new(3, Config::default());
        net.form();
        net.down.push(3);
        until_state(&mut net, 1, MembState::Commit);
        // Node 2 crashes too, the commit token is lost: the token loss keeps the round's
        // fail set.
        net.down.push(2);
        until_state(&mut net, 1, MembState::Gather);
        assert_eq!(round(net.ring(1)).1, vec![3]);
        net.collect();
        assert!(net.events.iter().any(|(n, e)| *n == 1
            && matches!(
                e,
                Event::State {
                    from: MembState::Commit,
                    to: MembState::Gather,
                    reason: Reason::CommitTokenLoss,
                }
            )));
        // Node 2 is back; again in COMMIT, a member asks for a newer round: a clean round.
        net.down.retain(|&n| n != 2);
        until_state(&mut net, 1, MembState::Commit);
        let seq = net.ring(1).stable_ring_seq();
        assert_eq!(
            hear(&mut net, 1, 2, join(seq + 1, &[2], &[])),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(1).state(), MembState::Gather);
        assert!(round(net.ring(1)).1.is_empty(), "{:?}", round(net.ring(1)));
    }

    #[test]
    fn packets_of_an_abandoned_ring_are_stale() {
        let mut net = Net::new(2, Config::default());
        until_state(&mut net, 1, MembState::Commit);
        // The ring node 1 proposed, abandoned when node 2 falls back.
        let abandoned = match &net.ring(1).state {
            super::super::state::State::Commit(c) => c.ring_id,
            _ => unreachable!(),
        };
        let seq = net.ring(1).stable_ring_seq();
        assert_eq!(
            hear(&mut net, 1, 2, join(seq + 1, &[2], &[])),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(1).state(), MembState::Gather);
        let now = net.now;
        let merge = encode(2, abandoned, Message::MergeDetect(Default::default()));
        assert_eq!(
            net.ring(1).handle_packet(now, Some(2), merge),
            PacketOutcome::Dropped(DropReason::Stale)
        );
        net.form();
        assert_ne!(net.ring(1).ring_id(), abandoned, "a new ring id");
        let merge = encode(2, abandoned, Message::MergeDetect(Default::default()));
        assert_eq!(
            net.ring(1).handle_packet(now, Some(2), merge),
            PacketOutcome::Dropped(DropReason::Stale),
            "an abandoned ring never starts a merge"
        );
        assert_eq!(net.ring(1).state(), MembState::Operational);
    }

    #[test]
    fn a_merge_detect_of_another_live_ring_starts_gather_with_its_sender() {
        let mut net = Net::new(2, Config::default());
        net.form();
        let now = net.now;
        let other = RingId { rep: 7, seq: 100 };
        assert_eq!(
            net.ring(1).handle_packet(
                now,
                Some(7),
                encode(7, other, Message::MergeDetect(Default::default()))
            ),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(1).state(), MembState::Gather);
        assert_eq!(round(net.ring(1)).0, vec![1, 2, 7]);
        // Its own ring's merge-detect changes nothing.
        let own = net.ring(2).ring_id();
        assert_eq!(
            net.ring(2).handle_packet(
                now,
                Some(1),
                encode(1, own, Message::MergeDetect(Default::default()))
            ),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(2).state(), MembState::Operational);
    }

    #[test]
    fn a_leave_in_commit_falls_back_and_gives_up_on_the_leaver() {
        let mut net = Net::new(3, Config::default());
        until_state(&mut net, 2, MembState::Commit);
        let seq = net.ring(2).stable_ring_seq();
        let now = net.now;
        let leave = Message::Leave(crate::wire::Leave { ring_seq: seq });
        let ring = net.ring(3).ring_id();
        assert_eq!(
            net.ring(2)
                .handle_packet(now, Some(3), encode(3, ring, leave)),
            PacketOutcome::Accepted
        );
        assert_eq!(net.ring(2).state(), MembState::Gather);
        assert_eq!(round(net.ring(2)).1, vec![3]);
    }
}
