//! One visit of the ORF token (TOCS95 §§5, 7 and 8, corosync's order of steps).
//!
//! A node that accepts a token of its ring (in OPERATIONAL the installed ring, in RECOVERY
//! the new one) runs the steps of [`Visit::run`], one function each:
//! failure to receive, the seq-unchanged count, retransmissions served, flow control, new
//! frames, retransmission requests, the aru, fcc and backlog, the safe point, recovery
//! progress, and finally holding or passing the token (in the Accelerated Ring, before the
//! visit's last frames).

use super::ordering::{next_hop, Frame, Ordering, SORT_QUEUE_MAX};
use super::state::{InstallProgress, State, TokenCounters};
use super::timer::{Timer, TimerTable};
use super::{pass_token, DropReason, Outbox, PassedToken, Ring, Stats};
use crate::config::{Config, Timing, Variant};
use crate::event::Reason;
use crate::pack::SendQueue;
use crate::wire::{self, Encapsulated, Message, NodeId, Packet, RingId, Token, RTR_MAX};
use bytes::Bytes;
use std::collections::VecDeque;

/// What a visit leads to.
#[derive(Debug, PartialEq, Eq)]
enum VisitOutcome {
    /// The token went on.
    Done,
    /// RECOVERY is complete: install the new ring.
    Install,
    /// A member held the aru back for `fail_recv_const` rotations.
    FailToRecv(NodeId),
}

/// Where the visit's new frames come from.
enum Mode<'a> {
    /// The application's messages, on the installed ring.
    Operational {
        queue: &'a mut SendQueue,
        held: &'a mut Option<PassedToken>,
    },
    /// The old ring's frames, encapsulated, on the new ring.
    Recovery {
        old_frames: &'a mut VecDeque<(u64, Frame)>,
        progress: &'a mut InstallProgress,
        old_ring: RingId,
    },
}

impl Mode<'_> {
    /// Returns the frames waiting to be sent.
    fn backlog(&self) -> u32 {
        (match self {
            Self::Operational { queue, .. } => queue.frames(),
            Self::Recovery { old_frames, .. } => old_frames.len(),
        }) as u32
    }

    /// Returns the next frame to send: (safe, payload, encapsulation).
    fn pop(&mut self) -> Option<(bool, Bytes, Option<Encapsulated>)> {
        match self {
            Self::Operational { queue, .. } => queue.pop().map(|f| (f.safe, f.finish(), None)),
            Self::Recovery {
                old_frames,
                old_ring,
                ..
            } => old_frames.pop_front().map(|(old_seq, f)| {
                (
                    f.safe,
                    f.payload,
                    Some(Encapsulated {
                        ring_id: *old_ring,
                        seq: old_seq,
                        origin: f.sender,
                        safe: f.safe,
                    }),
                )
            }),
        }
    }
}

/// One token visit: the token and everything its steps read and write.
struct Visit<'a> {
    me: NodeId,
    now: u64,
    cfg: &'a Config,
    t: &'a Timing,
    tok: Token,
    ord: &'a mut Ordering,
    mode: Mode<'a>,
    counters: &'a mut TokenCounters,
    out: &'a mut Outbox,
    timers: &'a mut TimerTable,
    last_token_sent: &'a mut Option<PassedToken>,
    stats: &'a mut Stats,
    /// How long after passing the token to re-send it if it has not come back.
    retransmit_after: u64,
}

impl Ring {
    /// Takes a token: in OPERATIONAL for the installed ring, in RECOVERY for the new one.
    pub(super) fn on_token(
        &mut self,
        now: u64,
        ring_id: RingId,
        tok: Token,
    ) -> Result<(), DropReason> {
        let (ord, mode, counters) = match &mut self.state {
            State::Operational(op) => (
                &mut self.cur,
                Mode::Operational {
                    queue: &mut self.queue,
                    held: &mut op.held,
                },
                &mut op.counters,
            ),
            State::Recovery(r) => {
                let r = &mut **r;
                (
                    &mut r.next,
                    Mode::Recovery {
                        old_frames: &mut r.old_frames,
                        progress: &mut r.progress,
                        old_ring: self.cur.ring_id,
                    },
                    &mut r.counters,
                )
            }
            _ => return Err(DropReason::Stale),
        };
        if ring_id != ord.ring_id {
            return Err(DropReason::ForeignToken);
        }
        if next_hop(&ord.members, tok.token_seq) != self.id {
            return Err(DropReason::MisdirectedToken);
        }
        if ord.last_token_seq.is_some_and(|l| tok.token_seq <= l) {
            return Err(DropReason::DuplicateToken);
        }
        ord.last_token_seq = Some(tok.token_seq);
        let recovering = matches!(mode, Mode::Recovery { .. });
        self.stats.tokens_received += 1;
        self.timers.cancel(Timer::TokenRetransmit);
        self.last_token_sent = None;
        self.timers.arm(Timer::TokenLoss, now + self.t.token);
        self.rotation.visit(now);
        let retransmit_after = self
            .rotation
            .retransmit_after(self.cfg.adaptive_token_retransmit, self.t.token_retransmit);
        let outcome = Visit {
            me: self.id,
            now,
            cfg: &self.cfg,
            t: &self.t,
            tok,
            ord,
            mode,
            counters,
            out: &mut self.out,
            timers: &mut self.timers,
            last_token_sent: &mut self.last_token_sent,
            stats: &mut self.stats,
            retransmit_after,
        }
        .run();
        match outcome {
            VisitOutcome::Install => self.install(now),
            VisitOutcome::FailToRecv(n) => {
                tracing::info!(node = self.id, failed = n, "member failed to receive");
                self.gather_enter(now, Reason::FailToRecv, &[], Some(n));
            }
            VisitOutcome::Done if !recovering => self.deliver_ready(),
            VisitOutcome::Done => {}
        }
        Ok(())
    }
}

impl Visit<'_> {
    /// Runs the visit's steps in order.
    fn run(mut self) -> VisitOutcome {
        if let Some(n) = self.failure_to_receive() {
            return VisitOutcome::FailToRecv(n);
        }
        self.count_seqno_unchanged();
        let resent = self.serve_retransmits();
        let n = self.flow_control(resent);
        let fresh = self.send_new_frames(n);
        self.request_missing();
        self.update_aru();
        self.update_fcc_and_backlog(resent + fresh.len() as u32);
        self.advance_safe_point();
        let install = self.recovery_progress();
        self.hold_or_pass(fresh);
        if install {
            VisitOutcome::Install
        } else {
            VisitOutcome::Done
        }
    }

    /// Failure to receive (OPERATIONAL only): returns the member that has held the aru down
    /// for `fail_recv_const` visits in a row.
    fn failure_to_receive(&mut self) -> Option<NodeId> {
        if matches!(self.mode, Mode::Recovery { .. }) {
            return None;
        }
        let (tok, c) = (&self.tok, &mut *self.counters);
        if tok.aru_addr != 0
            && tok.aru == c.fr_aru
            && tok.aru_addr == c.fr_addr
            && tok.aru < tok.seq
        {
            c.fr_count += 1;
        } else {
            c.fr_count = 0;
        }
        c.fr_aru = tok.aru;
        c.fr_addr = tok.aru_addr;
        (c.fr_count >= self.cfg.fail_recv_const
            && tok.aru_addr != self.me
            && self.ord.members.contains(&tok.aru_addr))
        .then_some(tok.aru_addr)
    }

    /// Counts visits that find the token's seq unchanged (an idle ring).
    fn count_seqno_unchanged(&mut self) {
        let c = &mut *self.counters;
        if self.tok.seq == c.last_token_seq_value {
            c.seqno_unchanged = c.seqno_unchanged.saturating_add(1);
        } else {
            c.seqno_unchanged = 0;
            c.hold_cancel_sent = false;
            c.last_token_seq_value = self.tok.seq;
        }
    }

    /// Step 1: re-multicasts the requested frames this node holds; returns how many.
    fn serve_retransmits(&mut self) -> u32 {
        let mut resent = 0u32;
        let (store, out) = (&self.ord.store, &mut *self.out);
        self.tok.rtr.retain(|s| match store.get(s) {
            Some(f) => {
                out.multicast_encoded(f.wire.clone());
                resent += 1;
                false
            }
            None => true,
        });
        self.stats.frames_retransmitted += resent as u64;
        resent
    }

    /// Step 2: flow control (TOCS95 §8.2): returns how many new frames this visit may send.
    fn flow_control(&self, resent: u32) -> u32 {
        let w = self.cfg.window_size;
        let my_cbl = self.mode.backlog();
        let mut allowed = self.cfg.max_messages.min(w.saturating_sub(self.tok.fcc));
        let others = self.tok.backlog.saturating_sub(self.counters.my_pbl);
        if my_cbl > 0 && others > 0 {
            let share = (w as u64 * my_cbl as u64 / (others as u64 + my_cbl as u64)) as u32;
            allowed = allowed.min(share.max(1));
        }
        allowed = allowed.saturating_sub(resent);
        let span_room = (self.tok.aru + SORT_QUEUE_MAX).saturating_sub(self.tok.seq);
        allowed
            .min(my_cbl)
            .min(span_room.min(u32::MAX as u64) as u32)
    }

    /// Step 3: gives up to `n` frames their seqs and stores them; returns their encodings,
    /// to multicast around the token pass.
    fn send_new_frames(&mut self, n: u32) -> Vec<Bytes> {
        let mut fresh: Vec<Bytes> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let Some((safe, payload, encapsulated)) = self.mode.pop() else {
                break;
            };
            self.tok.seq += 1;
            let seq = self.tok.seq;
            let wire = Bytes::from(wire::encode(&Packet {
                sender: self.me,
                ring_id: self.ord.ring_id,
                message: Message::Mcast(wire::Mcast {
                    seq,
                    safe,
                    encapsulated,
                    payload: payload.clone(),
                }),
            }));
            // A fresh seq above everything held: always new, always within the window.
            let _ = self.ord.insert(
                seq,
                Frame {
                    sender: self.me,
                    safe,
                    encapsulated: encapsulated.is_some(),
                    payload,
                    wire: wire.clone(),
                },
            );
            fresh.push(wire);
        }
        self.stats.frames_sent += fresh.len() as u64;
        fresh
    }

    /// Step 4: asks for what this node misses, once it has seen a seq missing on
    /// `miss_count_const` visits.
    fn request_missing(&mut self) {
        let ord = &mut *self.ord;
        let my_aru = ord.my_aru;
        ord.miss = ord.miss.split_off(&(my_aru + 1));
        let hi = self.tok.seq.min(my_aru + SORT_QUEUE_MAX);
        let mut s = my_aru + 1;
        while s <= hi && self.tok.rtr.len() < RTR_MAX {
            if !ord.store.contains_key(&s) {
                let c = ord.miss.entry(s).or_insert(0);
                *c += 1;
                if *c >= self.cfg.miss_count_const && !self.tok.rtr.contains(&s) {
                    self.tok.rtr.push(s);
                    self.stats.retransmit_requests += 1;
                }
            }
            s += 1;
        }
    }

    /// Step 5: lowers the token's aru to this node's, or raises it when this node held it.
    fn update_aru(&mut self) {
        let tok = &mut self.tok;
        if self.ord.my_aru < tok.aru || tok.aru_addr == self.me || tok.aru_addr == 0 {
            tok.aru = self.ord.my_aru.min(tok.seq);
            tok.aru_addr = if tok.aru >= tok.seq { 0 } else { self.me };
        }
    }

    /// Step 6: replaces this node's share of fcc (`sent` frames this visit) and of the
    /// backlog.
    fn update_fcc_and_backlog(&mut self, sent: u32) {
        let (tok, c) = (&mut self.tok, &mut *self.counters);
        tok.fcc = tok.fcc.saturating_sub(c.my_last_fcc).saturating_add(sent);
        c.my_last_fcc = sent;
        let backlog = self.mode.backlog();
        tok.backlog = tok.backlog.saturating_sub(c.my_pbl).saturating_add(backlog);
        c.my_pbl = backlog;
    }

    /// Step 7: the safe point (the aru forwarded on two successive visits), and frees the
    /// frames that are both safe and delivered.
    fn advance_safe_point(&mut self) {
        let ord = &mut *self.ord;
        ord.safe_upto = ord.safe_upto.max(self.tok.aru.min(ord.prev_forwarded_aru));
        ord.prev_forwarded_aru = self.tok.aru;
        let free_to = ord.safe_upto.min(ord.high_delivered);
        while ord
            .store
            .first_key_value()
            .is_some_and(|(k, _)| *k <= free_to)
        {
            ord.store.pop_first();
        }
    }

    /// Step 8 (RECOVERY only): returns whether the new ring can be installed.
    ///
    /// retrans_flg says some member still has old-ring frames to re-send; a member clears it
    /// only if it set it and has just run out, and forgets having set it as soon as it has
    /// nothing left. A visit is quiet when the flag is clear and the token's seq has not
    /// moved since this member's last visit (in RECOVERY only recovery frames move it).
    /// After a silent rotation flow control lets any member with frames left send at least
    /// one, so two quiet rotations mean every member is done and the seq is final: that is
    /// install_seq. Install follows once the aru has covered install_seq on two visits.
    fn recovery_progress(&mut self) -> bool {
        let Mode::Recovery {
            old_frames,
            progress: p,
            ..
        } = &mut self.mode
        else {
            return false;
        };
        let tok = &mut self.tok;
        if !old_frames.is_empty() {
            tok.retrans_flg = true;
            p.my_set_retrans = true;
        } else {
            if tok.retrans_flg && p.my_set_retrans {
                tok.retrans_flg = false;
            }
            p.my_set_retrans = false;
        }
        let quiet = !tok.retrans_flg && p.last_seq == Some(tok.seq);
        p.last_seq = Some(tok.seq);
        if tok.retrans_flg {
            p.quiet_rotations = 0;
            p.install_seq = None;
        } else if quiet && p.install_seq.is_none() {
            p.quiet_rotations += 1;
            if p.quiet_rotations == 2 {
                p.install_seq = Some(tok.seq);
            }
        } else if p.install_seq.is_none() {
            p.quiet_rotations = 0;
        }
        match p.install_seq {
            Some(is) if tok.aru >= is => p.aru_rotations += 1,
            _ => p.aru_rotations = 0,
        }
        p.aru_rotations >= 2
    }

    /// Step 9: holds the token on an idle ring (the representative, OPERATIONAL) or passes
    /// it on, multicasting the visit's new frames before it (classic) or, up to
    /// `accelerated_window` of them, after it (accelerated).
    fn hold_or_pass(mut self, mut fresh: Vec<Bytes>) {
        let hold = match &self.mode {
            Mode::Operational { queue, .. } => {
                self.me == self.ord.ring_id.rep
                    && self.counters.seqno_unchanged > self.cfg.seqno_unchanged_const
                    && queue.is_empty()
                    && self.tok.rtr.is_empty()
                    && self.tok.aru == self.tok.seq
            }
            Mode::Recovery { .. } => false,
        };
        self.tok.token_seq += 1;
        let dest = self.ord.next_after(self.me);
        let bytes = Bytes::from(wire::encode(&Packet {
            sender: self.me,
            ring_id: self.ord.ring_id,
            message: Message::Token(std::mem::take(&mut self.tok)),
        }));
        let after = match self.cfg.variant {
            Variant::Classic => 0,
            Variant::Accelerated => (self.cfg.accelerated_window as usize).min(fresh.len()),
        };
        let before = fresh.len() - after;
        for w in fresh.drain(..before) {
            self.out.multicast_encoded(w);
        }
        let token = PassedToken { dest, bytes };
        match self.mode {
            Mode::Operational { held, .. } if hold => {
                *held = Some(token);
                self.timers.arm(Timer::Hold, self.now + self.t.hold);
            }
            _ => pass_token(
                self.out,
                self.timers,
                self.last_token_sent,
                self.now + self.retransmit_after,
                token,
            ),
        }
        for w in fresh {
            self.out.multicast_encoded(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{encode, kind, Net};
    use super::super::{DropReason, PacketOutcome};
    use crate::event::{Event, MembState, Reason};
    use crate::wire::{Message, MessageType, Token};
    use crate::{Config, Guarantee};

    const MS: u64 = 1_000_000;

    /// Runs the network until a token is on its way to `to`, and takes it, decoded.
    fn token_to(net: &mut Net, to: u32) -> (crate::RingId, Token) {
        let p = net.take_token(to);
        let Message::Token(tok) = p.message else {
            unreachable!("taken by type")
        };
        (p.ring_id, tok)
    }

    #[test]
    fn duplicate_foreign_and_untimely_tokens_are_dropped() {
        let mut net = Net::new(3, Config::default());
        net.form();
        let (ring_id, tok) = token_to(&mut net, 2);
        let now = net.now;
        let data = encode(1, ring_id, Message::Token(tok.clone()));
        assert_eq!(
            net.ring(2).handle_packet(now, Some(1), data.clone()),
            PacketOutcome::Accepted
        );
        assert_eq!(
            net.ring(2).handle_packet(now, Some(1), data),
            PacketOutcome::Dropped(DropReason::DuplicateToken)
        );
        let mut other = ring_id;
        other.seq += 100;
        let mut newer = tok.clone();
        newer.token_seq += 10;
        assert_eq!(
            net.ring(2)
                .handle_packet(now, Some(1), encode(1, other, Message::Token(newer))),
            PacketOutcome::Dropped(DropReason::ForeignToken)
        );
        // A token reaches nobody in GATHER.
        let mut lone = Net::new(1, Config::default());
        assert_eq!(
            lone.ring(1)
                .handle_packet(0, Some(2), encode(2, ring_id, Message::Token(tok))),
            PacketOutcome::Dropped(DropReason::Stale)
        );
    }

    #[test]
    fn a_token_meant_for_another_member_is_dropped() {
        let mut net = Net::new(3, Config::default());
        net.form();
        // The token node 1 passed to node 2, replayed to node 3 (the attack of a node that
        // holds the key and resends what it saw).
        let (ring_id, tok) = token_to(&mut net, 2);
        let now = net.now;
        let data = encode(1, ring_id, Message::Token(tok));
        assert_eq!(
            net.ring(3).handle_packet(now, Some(1), data.clone()),
            PacketOutcome::Dropped(DropReason::MisdirectedToken)
        );
        assert_eq!(
            net.ring(2).handle_packet(now, Some(1), data),
            PacketOutcome::Accepted
        );
    }

    #[test]
    fn a_visit_serves_the_retransmit_requests_it_can_and_keeps_the_rest() {
        let mut net = Net::new(3, Config::default());
        net.form();
        net.submit(1, 100, Guarantee::Agreed);
        // Node 1 sends the frame on its next visit, then node 2 gets the token.
        let (ring_id, tok) = token_to(&mut net, 1);
        let outcome = net.hand(1, 3, ring_id, Message::Token(tok));
        assert_eq!(outcome, PacketOutcome::Accepted);
        let (ring_id, mut tok) = token_to(&mut net, 2);
        net.drain_wire(); // the frame reaches node 2
        let held = tok.seq;
        assert!(held > 0, "the message got a seq");
        tok.rtr = vec![held, held + 1000];
        net.collect();
        let before = net.wire.len();
        let now = net.now;
        let outcome =
            net.ring(2)
                .handle_packet(now, Some(1), encode(1, ring_id, Message::Token(tok)));
        assert_eq!(outcome, PacketOutcome::Accepted);
        net.collect();
        let sent: Vec<_> = net.wire.iter().skip(before).collect();
        let resent = sent
            .iter()
            .filter(|p| kind(&p.data) == Some(MessageType::Mcast))
            .count();
        assert_eq!(resent, 2, "the frame re-multicast to both other nodes");
        let (_, fwd) = token_to(&mut net, 3);
        assert_eq!(fwd.rtr, vec![held + 1000], "served seqs leave the list");
        assert_eq!(net.ring(2).stats().frames_retransmitted, 1);
    }

    #[test]
    fn flow_control_caps_a_visit_at_max_messages_and_counts_it_in_fcc() {
        let cfg = Config {
            max_messages: 7,
            window_size: 50,
            ..Config::default()
        };
        let mut net = Net::new(3, cfg);
        net.form();
        for _ in 0..30 {
            net.submit(1, 1300, Guarantee::Agreed); // one frame each
        }
        let (ring_id, tok) = token_to(&mut net, 1);
        net.collect();
        let before = net.wire.len();
        let now = net.now;
        let outcome = net.ring(1).handle_packet(
            now,
            Some(3),
            encode(3, ring_id, Message::Token(tok.clone())),
        );
        assert_eq!(outcome, PacketOutcome::Accepted);
        net.collect();
        let frames = net
            .wire
            .iter()
            .skip(before)
            .filter(|p| kind(&p.data) == Some(MessageType::Mcast))
            .count();
        assert_eq!(frames, 7 * 2, "max_messages frames, each to two nodes");
        let (_, fwd) = token_to(&mut net, 2);
        assert_eq!(fwd.seq, tok.seq + 7);
        assert_eq!(fwd.fcc, tok.fcc + 7);
        assert_eq!(fwd.backlog, 23, "the frames left are the node's backlog");
        assert_eq!(
            fwd.aru, fwd.seq,
            "node 1 holds every frame: the aru follows the seq"
        );
    }

    #[test]
    fn a_member_missing_frames_holds_the_aru_and_asks_for_them() {
        let mut net = Net::new(3, Config::default());
        net.form();
        // Node 3 loses node 1's first three frames.
        let mut lost = 0;
        net.lose = Some(Box::new(move |p| {
            let lose =
                p.to == 3 && p.from == 1 && kind(&p.data) == Some(MessageType::Mcast) && lost < 3;
            lost += u32::from(lose);
            lose
        }));
        for _ in 0..5 {
            net.submit(1, 1300, Guarantee::Agreed);
        }
        // Node 1's visit sends the frames; one rotation later node 3 has lowered the aru to
        // its own and named itself.
        let (ring_id, tok) = token_to(&mut net, 1);
        let outcome = net.hand(1, 3, ring_id, Message::Token(tok));
        assert_eq!(outcome, PacketOutcome::Accepted);
        let (ring_id, tok) = token_to(&mut net, 1);
        assert_eq!(tok.aru_addr, 3);
        assert!(tok.aru < tok.seq);
        let outcome = net.hand(1, 3, ring_id, Message::Token(tok));
        assert_eq!(outcome, PacketOutcome::Accepted);
        // After miss_count_const visits node 3 asks; the others serve; all deliver alike.
        net.run_until(net.now + 200 * MS);
        assert!(net.ring(3).stats().retransmit_requests >= 3);
        assert_eq!(net.delivered(3), net.delivered(1));
        assert_eq!(net.delivered(3).len(), 5);
    }

    #[test]
    fn safe_messages_wait_for_the_aru_to_cover_them_twice() {
        let mut net = Net::new(3, Config::default());
        net.form();
        net.submit(2, 10, Guarantee::Safe);
        net.submit(2, 10, Guarantee::Agreed);
        // Deliver datagram by datagram; count token visits at node 1 until it delivers.
        let mut visits = 0;
        while net.delivered(1).is_empty() {
            net.collect();
            let next_is_token = net
                .wire
                .front()
                .is_some_and(|p| p.to == 1 && kind(&p.data) == Some(MessageType::Token));
            visits += u32::from(next_is_token);
            assert!(net.step(net.now + 10 * MS), "the ring stalled");
        }
        assert!(visits >= 2, "delivered after {visits} visits");
        assert_eq!(
            net.delivered(1).len(),
            2,
            "the agreed message waits behind the safe one"
        );
    }

    #[test]
    fn an_idle_representative_holds_the_token_until_there_is_traffic() {
        let mut net = Net::new(3, Config::default());
        net.form();
        // Long enough for every member to have seen the seq unchanged many times.
        net.run_until(net.now + 1_000 * MS);
        net.collect();
        let tokens = |net: &Net| {
            net.wire
                .iter()
                .filter(|p| kind(&p.data) == Some(MessageType::Token))
                .count()
        };
        assert_eq!(tokens(&net), 0, "no token moves on an idle ring");
        assert!(
            matches!(&net.ring(1).state, super::super::state::State::Operational(op) if op.held.is_some()),
            "the representative holds it"
        );
        net.submit(3, 10, Guarantee::Agreed);
        net.collect();
        assert!(
            net.wire
                .iter()
                .any(|p| p.from == 3 && kind(&p.data) == Some(MessageType::TokenHoldCancel)),
            "a node with traffic asks the holder to let go"
        );
        net.run_until(net.now + 10 * MS);
        assert_eq!(net.delivered(1).len(), 1);
    }

    #[test]
    fn a_member_that_never_receives_is_excluded_after_fail_recv_const_rotations() {
        let cfg = Config {
            fail_recv_const: 10,
            ..Config::default()
        };
        let mut net = Net::new(3, cfg);
        net.form();
        net.lose = Some(Box::new(|p| {
            p.to == 3 && kind(&p.data) == Some(MessageType::Mcast)
        }));
        for _ in 0..3 {
            net.submit(1, 100, Guarantee::Agreed);
        }
        net.run_until(net.now + 2_000 * MS);
        let excluded = net.events.iter().any(|(n, e)| {
            *n != 3
                && matches!(
                    e,
                    Event::State {
                        from: MembState::Operational,
                        to: MembState::Gather,
                        reason: Reason::FailToRecv
                    }
                )
        });
        assert!(excluded, "a member left OPERATIONAL for failure to receive");
    }
}
