//! The Totem single-ring protocol (TOCS95) as a sans-IO state machine.
//!
//! Inputs: [`Ring::handle_packet`], [`Ring::handle_timeout`], [`Ring::submit`],
//! [`Ring::leave`]. Outputs, to drain after every input: [`Ring::poll_transmit`],
//! [`Ring::poll_event`], [`Ring::poll_timeout`]. Time is an argument (nanoseconds on any
//! monotonic clock); nothing here reads a clock, touches a socket or sleeps.
//!
//! # Layout: one concept per file
//! - `state.rs`: the membership state, one enum whose variants own their data
//!   (GATHER's round, COMMIT's proposed ring, RECOVERY's new ring and old-ring frames,
//!   OPERATIONAL's token counters and held token);
//! - `membership.rs`: GATHER and COMMIT: the join rules, consensus, the commit token;
//! - `token.rs`: one visit of the ORF token, one function per step of the paper;
//! - `ordering.rs`: the frames of one ring, the aru, and delivery in total order;
//! - `recovery.rs`: RECOVERY and the install step (extended virtual synchrony);
//! - `merge.rs`: merge detection between rings; `reach.rs`: who hears whom (asymmetric and
//!   partial connectivity); `rotation.rs`: the token's measured rotation time, which paces
//!   token retransmission;
//! - `timer.rs`: the timers and their table; `outcome.rs`: what became of a datagram;
//!   `stats.rs`: the counters.
//!
//! # What it guarantees (checked by the simulator's checker on every run)
//! - Agreed delivery: a frame is delivered once every lower seq of its ring is delivered.
//! - Safe delivery: a safe frame is delivered once the node has forwarded the token with an
//!   aru at or above its seq on two successive rotations, so every member has it.
//! - Extended virtual synchrony at every membership change: old-ring messages that the old
//!   ring can still deliver, then the transitional configuration, then what the transitional
//!   configuration allows, then the regular configuration (the install step, `recovery.rs`).
//! - Memory: the store of frames spans at most [`SORT_QUEUE_MAX`] seqs above the aru and
//!   holds frames of at most `netmtu` bytes (larger datagrams are dropped), the send queue is
//!   bounded in bytes, reassembly holds a bounded number of partial messages, and the
//!   token's retransmit list is bounded.
//!
//! # Deviations, and why
//! - EVS follows the paper, not corosync: after the transitional configuration a node
//!   delivers the old ring's remaining messages past a gap when their sender is in the
//!   transitional configuration (causality holds: that sender never had the missing message,
//!   or every transitional member would have it). corosync discards everything past the
//!   first gap ("TODO Not exactly to spec").
//! - Failure to receive follows the paper: the others put the member that holds the aru back
//!   into their fail set. corosync instead makes that member declare itself failed.
//! - Install waits for `retrans_flg` to stay clear for two rotations, then for the token's
//!   aru to cover the last recovery seq on two more rotations (as corosync), so every member
//!   holds every recovered message before any member installs.
//! - The commit token's second rotation ends at the representative, which then turns it into
//!   the first ORF token; so no ORF token reaches a member still in COMMIT.
//! - A graceful leave is its own message type (corosync reuses a join with node id 0).
//! - Stale packets: a join or mcast from a member of the current ring that carries an older
//!   ring seq, and packets of rings this node abandoned during COMMIT or RECOVERY, are
//!   dropped instead of starting GATHER (duplicated or reordered packets would otherwise
//!   re-form a healthy ring).
//! - Join processing (corosync's rules, with three additions the simulator showed were
//!   needed): a join from a processor already in the fail set is ignored; a join whose
//!   sender failed this node only adds the sender to the fail set (its view of the others is
//!   not adopted); fail sets are merged only from members of this node's own ring. Added:
//!   entering GATHER from a ring bumps the ring seq the joins carry past that ring's seq,
//!   and a join older than this node's ring has its fail set ignored, so leftovers of an
//!   earlier round cannot exclude live nodes after a partition heals; falling back from
//!   COMMIT or RECOVERY because another member asked (not on token loss) starts a clean
//!   round, so two groups that once excluded each other do not keep doing so.
//! - retrans_flg (corosync clears it when "I set it" and my queue is empty): with several
//!   setters a member could clear another's flag and install before the last old-ring
//!   frames arrived. Here a member forgets having set the flag as soon as its queue is empty,
//!   and install_seq needs two quiet rotations: flag clear *and* the token's seq unchanged.
//! - A message's fragments are all ordered on one ring: at install, partial reassemblies are
//!   dropped and a sender restarts a message cut by the configuration change.
//! - In RECOVERY a plain (not encapsulated) old-ring frame is dropped: the old ring's
//!   messages are exactly those the recovery exchange carries, so transitional members
//!   deliver the same set.
//! - A node in COMMIT or RECOVERY that hears a join from a member of the new ring naming a
//!   processor this node never heard of falls back to GATHER at once (corosync falls back on
//!   any join not older than its ring; the first version here waited for the token timeout).
//!   Simultaneous starts in namespaces showed the race: a node that had not yet heard the
//!   lowest id committed without it, the others ignored that commit token, and the ring
//!   formed only after a token timeout.
//! - Merge detection: the representative multicasts a merge-detect every `merge` ms while
//!   OPERATIONAL, whether the ring is busy or idle (corosync sends it only when the token is
//!   held on an idle ring), and `merge` defaults to 40 ms (corosync: 200). A healed
//!   partition then merges within about `merge` plus one membership round, whatever the
//!   hold timer; the cost is one small datagram per ring every 40 ms.
//! - `token_coefficient` is not applied; `token` is the effective timeout.
//! - Asymmetric and partial connectivity (`reach.rs`, knob `reachability`): deafness is
//!   announced in joins, one of every deaf pair is left out, a merge such a pair would break
//!   is not started, and a node in COMMIT falls back at once on a member's join that gave up on
//!   a proposed member. Totem and corosync re-form for as long as such a cut lasts.
//! - Joins from outsiders heard in COMMIT or RECOVERY are merged with right after the install
//!   (knob `pending_joins`); corosync drops them and the joiner waits a join interval. With
//!   the same knob, every join heard in COMMIT or RECOVERY is held for one join interval and
//!   taken when the node next gathers (`held.rs`): a commit that falls back, or a ring that
//!   gathers to merge with the joiner, does not wait a join interval for a join it has seen.
//! - A passed token is re-sent after a few measured rotations (`rotation.rs`, knob
//!   `adaptive_token_retransmit`), not after corosync's fixed `token_retransmit`.

mod held;
mod membership;
mod merge;
mod ordering;
mod outcome;
mod reach;
mod recovery;
mod rotation;
mod state;
mod stats;
#[cfg(test)]
mod testkit;
mod timer;
mod token;

pub use ordering::SORT_QUEUE_MAX;
pub use outcome::{DropReason, Drops, PacketOutcome};
pub use stats::Stats;

use crate::config::{Config, ConfigError, Timing};
use crate::event::{Dest, Event, MembState, Reason, Transmit};
use crate::pack::{MsgId, Reassembly, SendQueue, SubmitError};
use crate::wire::{self, Leave, Message, NodeId, Packet, RingId, MCAST_OVERHEAD};
use bytes::Bytes;
use ordering::Ordering;
use state::{Gather, Round, State};
use std::collections::VecDeque;
use timer::{Timer, TimerTable};

/// Abandoned ring ids remembered to drop their stale packets.
const ABANDONED_MAX: usize = 32;

/// Delivery guarantee asked for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Guarantee {
    /// Delivered in total order once every earlier message is delivered.
    Agreed,
    /// Delivered in total order once every member is known to have it.
    Safe,
}

/// A token this node passed on (kept to re-send it) or holds (on an idle ring).
#[derive(Clone, Debug)]
struct PassedToken {
    dest: NodeId,
    bytes: Bytes,
}

/// What the ring has to send and to say, drained by the `poll_*` calls.
#[derive(Debug, Default)]
struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Outbox {
    /// Encodes `p` and queues it to every node.
    fn multicast(&mut self, p: &Packet) {
        self.multicast_encoded(Bytes::from(wire::encode(p)));
    }

    /// Queues an encoded packet to every node.
    fn multicast_encoded(&mut self, payload: Bytes) {
        self.transmits.push_back(Transmit {
            dest: Dest::Multicast,
            payload,
        });
    }

    /// Queues an encoded packet to one node.
    fn unicast(&mut self, dest: NodeId, payload: Bytes) {
        self.transmits.push_back(Transmit {
            dest: Dest::Node(dest),
            payload,
        });
    }
}

/// Sends a token (or commit token) to its next hop, keeps it in `kept` and arms its
/// retransmission for `retransmit_at`.
fn pass_token(
    out: &mut Outbox,
    timers: &mut TimerTable,
    kept: &mut Option<PassedToken>,
    retransmit_at: u64,
    token: PassedToken,
) {
    out.unicast(token.dest, token.bytes.clone());
    *kept = Some(token);
    timers.arm(Timer::TokenRetransmit, retransmit_at);
}

/// Rings this node abandoned during COMMIT or RECOVERY; their packets are stale.
#[derive(Debug, Default)]
struct Abandoned(VecDeque<RingId>);

impl Abandoned {
    /// Remembers `r`, forgetting the oldest beyond [`ABANDONED_MAX`].
    fn push(&mut self, r: RingId) {
        if self.0.len() == ABANDONED_MAX {
            self.0.pop_front();
        }
        self.0.push_back(r);
    }

    /// Returns whether `r` was abandoned.
    fn contains(&self, r: &RingId) -> bool {
        self.0.contains(r)
    }
}

/// One node's Totem protocol instance.
pub struct Ring {
    id: NodeId,
    inc: u32,
    cfg: Config,
    t: Timing,
    /// The membership state and the data that exists only in it.
    state: State,
    /// The highest ring seq seen, kept on stable storage.
    highest_ring_seq: u64,
    /// The installed ring (in RECOVERY: the old one).
    cur: Ordering,
    abandoned: Abandoned,
    queue: SendQueue,
    /// The counter of the last message this incarnation submitted.
    counter: u64,
    reassembly: Reassembly,
    /// The last token (or commit token) passed on, re-sent on `token_retransmit`.
    last_token_sent: Option<PassedToken>,
    timers: TimerTable,
    out: Outbox,
    stats: Stats,
    /// Who hears whom (`reach.rs`).
    reach: reach::Reach,
    /// Joins heard in COMMIT or RECOVERY, taken when this node next gathers (`held.rs`).
    held: held::HeldJoins,
    /// The token's measured rotation (`rotation.rs`).
    rotation: rotation::Rotation,
}

impl Ring {
    /// Creates a node that starts in GATHER, looking for others.
    ///
    /// `stored_ring_seq` is the highest ring seq this node id has ever seen, kept on stable
    /// storage across restarts (TOCS95 needs it so a restarted node never reuses a ring id);
    /// read it back with [`Ring::stable_ring_seq`].
    pub fn new(
        id: NodeId,
        incarnation: u32,
        cfg: Config,
        stored_ring_seq: u64,
        now: u64,
    ) -> Result<Self, ConfigError> {
        if id == 0 {
            return Err(ConfigError {
                knob: "nodeid",
                reason: "node id 0 is reserved".into(),
            });
        }
        let t = cfg.validate()?;
        let frame_cap = cfg.netmtu - MCAST_OVERHEAD;
        let mut r = Self {
            id,
            inc: incarnation,
            t,
            state: State::Gather(Gather::new(Round::alone(id), now)),
            highest_ring_seq: stored_ring_seq,
            cur: Ordering::new(RingId { rep: id, seq: 0 }, vec![id]),
            abandoned: Abandoned::default(),
            queue: SendQueue::new(cfg.send_queue_bytes, frame_cap),
            counter: 0,
            reassembly: Reassembly::default(),
            last_token_sent: None,
            timers: TimerTable::default(),
            out: Outbox::default(),
            stats: Stats::default(),
            reach: reach::Reach::default(),
            held: held::HeldJoins::default(),
            rotation: rotation::Rotation::default(),
            cfg,
        };
        r.state_event(MembState::Start, MembState::Gather, Reason::Startup);
        r.restart_gather_round(now);
        Ok(r)
    }

    /// Returns this node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Returns the membership state.
    pub fn state(&self) -> MembState {
        self.state.kind()
    }

    /// Returns the installed ring's id.
    pub fn ring_id(&self) -> RingId {
        self.cur.ring_id
    }

    /// Returns the installed ring's members.
    pub fn members(&self) -> &[NodeId] {
        &self.cur.members
    }

    /// Returns the counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Returns the config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Returns the highest ring seq seen, to keep on stable storage.
    pub fn stable_ring_seq(&self) -> u64 {
        self.highest_ring_seq
    }

    /// Returns (frames, bytes) waiting in the send queue.
    pub fn queue_depth(&self) -> (usize, usize) {
        (self.queue.frames(), self.queue.bytes())
    }

    /// Returns frames held for ordering and retransmission, over both rings in RECOVERY.
    pub fn stored_frames(&self) -> usize {
        let next = match &self.state {
            State::Recovery(r) => r.next.store.len(),
            _ => 0,
        };
        self.cur.store.len() + next
    }

    /// Returns the next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// Returns the next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Returns the earliest deadline at which [`Ring::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// Queues an application message; returns its id, or why it was refused.
    pub fn submit(
        &mut self,
        now: u64,
        data: &[u8],
        guarantee: Guarantee,
    ) -> Result<MsgId, SubmitError> {
        if matches!(self.state, State::Left) {
            return Err(SubmitError::Stopped);
        }
        let counter = self.counter + 1;
        self.queue
            .push(data, guarantee == Guarantee::Safe, self.inc, counter, now)?;
        self.counter = counter;
        let id = MsgId {
            node: self.id,
            inc: self.inc,
            counter,
        };
        let State::Operational(op) = &mut self.state else {
            return Ok(id);
        };
        if op.held.is_some() {
            self.release_held(now);
        } else if op.counters.seqno_unchanged > self.cfg.seqno_unchanged_const
            && !op.counters.hold_cancel_sent
        {
            // The representative holds the token on an idle ring: ask it to pass it on.
            op.counters.hold_cancel_sent = true;
            self.out.multicast(&Packet {
                sender: self.id,
                ring_id: self.cur.ring_id,
                message: Message::TokenHoldCancel,
            });
        }
        Ok(id)
    }

    /// Leaves the ring gracefully: announces it so the others re-form at once, then stops.
    pub fn leave(&mut self, _now: u64) {
        if matches!(self.state, State::Left) {
            return;
        }
        let p = Packet {
            sender: self.id,
            ring_id: self.cur.ring_id,
            message: Message::Leave(Leave {
                ring_seq: self.highest_ring_seq,
            }),
        };
        // Twice: a single lost datagram would cost the others a token timeout.
        self.out.multicast(&p);
        self.out.multicast(&p);
        self.timers.cancel_all();
        self.last_token_sent = None;
        self.set_state(State::Left, Reason::Shutdown);
    }

    /// Processes expired timers.
    pub fn handle_timeout(&mut self, now: u64) {
        for timer in Timer::ALL {
            if self.timers.expire(timer, now) {
                self.on_timer(now, timer);
            }
        }
    }

    /// Processes one datagram and returns what became of it. `from` is the sender the
    /// transport believes in, when it knows; for every type but mcast (which a holder may
    /// re-send for another) it must match the header's sender. The ring keeps `datagram`
    /// (a frame is stored and re-sent as received) without copying it.
    pub fn handle_packet(
        &mut self,
        now: u64,
        from: Option<NodeId>,
        datagram: Bytes,
    ) -> PacketOutcome {
        match self.take_packet(now, from, datagram) {
            Ok(()) => PacketOutcome::Accepted,
            Err(reason) => PacketOutcome::Dropped(reason),
        }
    }

    fn take_packet(
        &mut self,
        now: u64,
        from: Option<NodeId>,
        datagram: Bytes,
    ) -> Result<(), DropReason> {
        if matches!(self.state, State::Left) {
            return Err(DropReason::Stopped);
        }
        // Every member runs with the same netmtu; a larger datagram is not ours, and refusing
        // it bounds the store at SORT_QUEUE_MAX frames of netmtu bytes.
        if datagram.len() > self.cfg.netmtu {
            return Err(DropReason::Oversized);
        }
        let p = wire::decode_bytes(&datagram).map_err(|e| {
            tracing::debug!(node = self.id, error = %e, "dropped undecodable packet");
            DropReason::from(&e)
        })?;
        let is_mcast = matches!(p.message, Message::Mcast(_));
        if from.is_some_and(|f| f != p.sender) && !is_mcast {
            return Err(DropReason::SenderMismatch);
        }
        let own_token = matches!(p.message, Message::Token(_) | Message::CommitToken(_));
        if p.sender == self.id && !own_token {
            return Err(DropReason::Echo);
        }
        // Whoever put this datagram on the wire was heard (an mcast may be re-sent by
        // another member than its sender).
        let heard = from.unwrap_or(p.sender);
        if self.cfg.reachability && self.reach.hear(heard, now) {
            if matches!(self.state, State::Gather(_)) {
                // Tell the others at once that this node hears it again: a round that
                // commits now must not carry the old announcement into the new ring.
                self.send_join();
            } else {
                // Acted on by the merge-detect, join or mcast this datagram carries, if it
                // is one of those; else at the next merge timer.
                self.reach.defer(heard);
            }
        }
        let Packet {
            sender,
            ring_id,
            message,
        } = p;
        match message {
            Message::Token(t) => self.on_token(now, ring_id, t),
            Message::Mcast(m) => self.on_mcast(now, sender, ring_id, m, datagram),
            Message::MergeDetect(md) => self.on_merge_detect(now, sender, ring_id, md),
            Message::Join(j) => self.on_join(now, sender, j),
            Message::CommitToken(c) => self.on_commit_token(now, ring_id, c),
            Message::TokenHoldCancel => {
                if !matches!(self.state, State::Operational(_)) || ring_id != self.cur.ring_id {
                    return Err(DropReason::Stale);
                }
                self.release_held(now);
                Ok(())
            }
            Message::Leave(l) => self.on_leave(now, sender, l),
        }
    }

    // ----- shared steps -----

    /// Moves to `next`, announcing the change of membership state (if it is one).
    fn set_state(&mut self, next: State, reason: Reason) {
        self.state_event(self.state.kind(), next.kind(), reason);
        self.state = next;
    }

    /// Announces a change of membership state, if `from` and `to` differ.
    fn state_event(&mut self, from: MembState, to: MembState, reason: Reason) {
        if from != to {
            tracing::debug!(node = self.id, ?from, ?to, ?reason, "state change");
            self.out.events.push_back(Event::State { from, to, reason });
        }
    }

    /// Sends a token (or commit token) to its next hop and keeps it to re-send.
    fn send_token(&mut self, now: u64, token: PassedToken) {
        let after = self.forming_retransmit().unwrap_or(self.t.token_retransmit);
        pass_token(
            &mut self.out,
            &mut self.timers,
            &mut self.last_token_sent,
            now + after,
            token,
        );
    }

    /// How soon a token passed while a ring is being formed (COMMIT, RECOVERY) is re-sent:
    /// every join interval (at most `token_retransmit`) with `adaptive_token_retransmit`,
    /// since no rotation of the new ring has been measured yet. A commit token lost on one
    /// hop otherwise costs a token timeout (the round falls back and its members, silent in
    /// COMMIT, are given up on by the others' consensus timers): under loss in bursts, the
    /// few re-sends of a fixed 238 ms period fall into one burst. corosync's fixed period
    /// with the knob off.
    fn forming_retransmit(&self) -> Option<u64> {
        let forming = matches!(self.state, State::Commit(_) | State::Recovery(_));
        (forming && self.cfg.adaptive_token_retransmit)
            .then(|| self.t.join.min(self.t.token_retransmit))
    }

    /// Passes on the token an idle ring's representative holds, if it holds one.
    fn release_held(&mut self, now: u64) {
        let State::Operational(op) = &mut self.state else {
            return;
        };
        if let Some(token) = op.held.take() {
            self.timers.cancel(Timer::Hold);
            self.send_token(now, token);
        }
    }

    /// Returns whether a packet of `ring_id` from `sender` belongs to a ring this node has
    /// left behind: an older ring of a current member, or an abandoned one.
    fn is_stale(&self, sender: NodeId, ring_id: RingId) -> bool {
        (ring_id.seq < self.cur.ring_id.seq && self.cur.members.contains(&sender))
            || self.abandoned.contains(&ring_id)
    }

    fn on_timer(&mut self, now: u64, timer: Timer) {
        match timer {
            Timer::TokenLoss => {
                let reason = match self.state {
                    State::Operational(_) => Reason::TokenLoss,
                    State::Commit(_) => Reason::CommitTokenLoss,
                    State::Recovery(_) => Reason::RecoveryTokenLoss,
                    State::Gather(_) | State::Left => return,
                };
                self.gather_enter(now, reason, &[], None);
            }
            Timer::TokenRetransmit => {
                if let Some(token) = self.last_token_sent.clone() {
                    self.stats.token_retransmits += 1;
                    self.out.unicast(token.dest, token.bytes);
                    let after = self.forming_retransmit().unwrap_or_else(|| {
                        self.rotation.retransmit_after(
                            self.cfg.adaptive_token_retransmit,
                            self.t.token_retransmit,
                        )
                    });
                    self.timers.arm(Timer::TokenRetransmit, now + after);
                }
            }
            Timer::Hold => self.release_held(now),
            Timer::Join => self.on_join_timer(now),
            Timer::Consensus => self.on_consensus_timeout(now),
            Timer::MergeDetect => self.on_merge_timer(now),
        }
    }
}
