//! The Totem single-ring protocol (TOCS95) as a sans-IO state machine.
//!
//! Inputs: [`Ring::handle_packet`], [`Ring::handle_timeout`], [`Ring::submit`],
//! [`Ring::leave`]. Outputs, to drain after every input: [`Ring::poll_transmit`],
//! [`Ring::poll_event`], [`Ring::poll_timeout`]. Time is an argument (nanoseconds on any
//! monotonic clock); nothing here reads a clock, touches a socket or sleeps.
//!
//! # What it guarantees (checked by the simulator's checker on every run)
//! - Agreed delivery: a frame is delivered once every lower seq of its ring is delivered.
//! - Safe delivery: a safe frame is delivered once the node has forwarded the token with an
//!   aru at or above its seq on two successive rotations, so every member has it.
//! - Extended virtual synchrony at every membership change: old-ring messages that the old
//!   ring can still deliver, then the transitional configuration, then what the transitional
//!   configuration allows, then the regular configuration (see [`Ring`]'s install step).
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

use crate::config::{Config, ConfigError, Timing, Variant};
use crate::event::{ConfigChange, ConfigKind, Delivery, Dest, Event, MembState, Reason, Transmit};
use crate::pack::{self, MsgId, Reassembly, SendQueue, SubmitError};
use crate::wire::{
    self, CommitToken, Encapsulated, Join, Leave, MembEntry, Message, NodeId, Packet, RingId,
    Token, ENCAP_LEN, HEADER_LEN, MCAST_FIXED_LEN, PROCESSORS_MAX, RTR_MAX,
};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Bytes an mcast adds around its frame, encapsulation included.
pub const MCAST_OVERHEAD: usize = HEADER_LEN + MCAST_FIXED_LEN + ENCAP_LEN;
/// Most seqs held above the aru: the sort queue / retransmit window (corosync's 16384).
pub const SORT_QUEUE_MAX: u64 = 16_384;
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

/// Counters a node keeps; drop counters are per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Packets that did not decode.
    pub decode_errors: u64,
    /// Packets whose header sender differs from the transport's sender.
    pub sender_mismatch: u64,
    /// Datagrams larger than `netmtu`.
    pub oversized: u64,
    /// Tokens of another ring.
    pub foreign_tokens: u64,
    /// Tokens already seen (token_seq not above the last).
    pub duplicate_tokens: u64,
    /// Packets of an older or abandoned ring, or that the state ignores.
    pub stale_packets: u64,
    /// Frames whose packed items did not decode.
    pub frame_errors: u64,
    /// Tokens accepted.
    pub tokens_received: u64,
    /// Token retransmissions sent.
    pub token_retransmits: u64,
    /// New frames multicast.
    pub frames_sent: u64,
    /// Frames re-multicast on request.
    pub frames_retransmitted: u64,
    /// Seqs this node put on the token's retransmit list.
    pub retransmit_requests: u64,
    /// Application messages delivered.
    pub delivered: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// Times GATHER was entered from another state.
    pub gathers: u64,
    /// Regular configurations installed.
    pub installs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    TokenLoss,
    TokenRetransmit,
    Hold,
    Join,
    Consensus,
    MergeDetect,
}

const TIMERS: [Timer; 6] = [
    Timer::TokenLoss,
    Timer::TokenRetransmit,
    Timer::Hold,
    Timer::Join,
    Timer::Consensus,
    Timer::MergeDetect,
];

/// A frame held for delivery and retransmission.
#[derive(Clone, Debug)]
struct Frame {
    sender: NodeId,
    safe: bool,
    encapsulated: bool,
    payload: Bytes,
    /// The encoded mcast, re-sent as is on a retransmit request.
    wire: Bytes,
}

/// Ordering state of one ring.
#[derive(Debug, Default)]
struct Ordering {
    ring_id: RingId,
    members: Vec<NodeId>,
    store: BTreeMap<u64, Frame>,
    my_aru: u64,
    high_seq_received: u64,
    high_delivered: u64,
    last_token_seq: Option<u64>,
    safe_upto: u64,
    prev_forwarded_aru: u64,
    miss: BTreeMap<u64, u32>,
}

impl Ordering {
    fn new(ring_id: RingId, members: Vec<NodeId>) -> Self {
        Self {
            ring_id,
            members,
            ..Self::default()
        }
    }

    /// Stores a frame; returns whether it was new.
    fn insert(&mut self, seq: u64, frame: Frame) -> bool {
        if seq <= self.my_aru || seq > self.my_aru + SORT_QUEUE_MAX || self.store.contains_key(&seq)
        {
            return false;
        }
        self.store.insert(seq, frame);
        self.high_seq_received = self.high_seq_received.max(seq);
        while self.store.contains_key(&(self.my_aru + 1)) {
            self.my_aru += 1;
        }
        true
    }

    fn next_after(&self, me: NodeId) -> NodeId {
        next_member(&self.members, me)
    }
}

fn next_member(members: &[NodeId], me: NodeId) -> NodeId {
    match members.iter().position(|&m| m == me) {
        Some(i) => members[(i + 1) % members.len()],
        None => members[0],
    }
}

#[derive(Debug)]
struct Recovery {
    trans: Vec<NodeId>,
    high_ring_delivered: u64,
    queue: VecDeque<(u64, Frame)>,
    my_set_retrans: bool,
    last_seq: Option<u64>,
    quiet_rotations: u32,
    install_seq: Option<u64>,
    aru_rotations: u32,
    initial_token_sent: bool,
}

#[derive(Debug)]
struct CommitInfo {
    ring_id: RingId,
    members: Vec<NodeId>,
}

enum TokenOutcome {
    Done,
    Install,
    FailToRecv(NodeId),
}

/// One node's Totem protocol instance.
pub struct Ring {
    id: NodeId,
    inc: u32,
    cfg: Config,
    t: Timing,
    state: MembState,
    highest_ring_seq: u64,
    cur: Ordering,
    next: Option<Ordering>,
    commit: Option<CommitInfo>,
    recovery: Option<Recovery>,
    abandoned: VecDeque<RingId>,
    proc_set: BTreeSet<NodeId>,
    fail_set: BTreeSet<NodeId>,
    consensus: BTreeSet<NodeId>,
    queue: SendQueue,
    counter: u64,
    reassembly: Reassembly,
    last_token_sent: Option<(NodeId, Bytes)>,
    held: Option<(NodeId, Bytes)>,
    seqno_unchanged: u32,
    last_token_seq_value: u64,
    hold_cancel_sent: bool,
    fr_aru: u64,
    fr_addr: NodeId,
    fr_count: u32,
    my_last_fcc: u32,
    my_pbl: u32,
    timers: [Option<u64>; 6],
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
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
        let mut r = Ring {
            id,
            inc: incarnation,
            t,
            state: MembState::Start,
            highest_ring_seq: stored_ring_seq,
            cur: Ordering::new(RingId { rep: id, seq: 0 }, vec![id]),
            next: None,
            commit: None,
            recovery: None,
            abandoned: VecDeque::new(),
            proc_set: BTreeSet::from([id]),
            fail_set: BTreeSet::new(),
            consensus: BTreeSet::new(),
            queue: SendQueue::new(cfg.send_queue_bytes, frame_cap),
            counter: 0,
            reassembly: Reassembly::default(),
            last_token_sent: None,
            held: None,
            seqno_unchanged: 0,
            last_token_seq_value: 0,
            hold_cancel_sent: false,
            fr_aru: 0,
            fr_addr: 0,
            fr_count: 0,
            my_last_fcc: 0,
            my_pbl: 0,
            timers: [None; 6],
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            cfg,
        };
        r.set_state(MembState::Gather, Reason::Startup);
        r.restart_gather_round(now);
        Ok(r)
    }

    /// Returns this node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Returns the membership state.
    pub fn state(&self) -> MembState {
        self.state
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
        self.cur.store.len() + self.next.as_ref().map_or(0, |n| n.store.len())
    }

    /// Returns the next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Returns the next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Returns the earliest deadline at which [`Ring::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.iter().flatten().copied().min()
    }

    /// Queues an application message; returns its id, or why it was refused.
    pub fn submit(
        &mut self,
        now: u64,
        data: &[u8],
        guarantee: Guarantee,
    ) -> Result<MsgId, SubmitError> {
        if self.state == MembState::Left {
            return Err(SubmitError::Stopped);
        }
        let counter = self.counter + 1;
        self.queue
            .push(data, guarantee == Guarantee::Safe, self.inc, counter, now)?;
        self.counter = counter;
        if self.state == MembState::Operational {
            if self.held.is_some() {
                self.release_held(now);
            } else if self.seqno_unchanged > self.cfg.seqno_unchanged_const
                && !self.hold_cancel_sent
            {
                self.hold_cancel_sent = true;
                let p = Packet {
                    sender: self.id,
                    ring_id: self.cur.ring_id,
                    message: Message::TokenHoldCancel,
                };
                self.multicast(&p);
            }
        }
        Ok(MsgId {
            node: self.id,
            inc: self.inc,
            counter,
        })
    }

    /// Leaves the ring gracefully: announces it so the others re-form at once, then stops.
    pub fn leave(&mut self, _now: u64) {
        if self.state == MembState::Left {
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
        self.multicast(&p);
        self.multicast(&p);
        self.timers = [None; 6];
        self.held = None;
        self.last_token_sent = None;
        self.set_state(MembState::Left, Reason::Shutdown);
    }

    /// Processes expired timers.
    pub fn handle_timeout(&mut self, now: u64) {
        for (i, timer) in TIMERS.iter().enumerate() {
            if self.timers[i].is_some_and(|d| d <= now) {
                self.timers[i] = None;
                self.on_timer(now, *timer);
            }
        }
    }

    /// Processes one datagram. `from` is the sender the transport believes in, when it knows;
    /// for every type but mcast (which a holder may re-send for another) it must match the
    /// header's sender.
    pub fn handle_packet(&mut self, now: u64, from: Option<NodeId>, data: &[u8]) {
        if self.state == MembState::Left {
            return;
        }
        // Every member runs with the same netmtu; a larger datagram is not ours, and refusing
        // it bounds the store at SORT_QUEUE_MAX frames of netmtu bytes.
        if data.len() > self.cfg.netmtu {
            self.stats.oversized += 1;
            return;
        }
        let wire = Bytes::copy_from_slice(data);
        let p = match wire::decode_bytes(&wire) {
            Ok(p) => p,
            Err(e) => {
                self.stats.decode_errors += 1;
                tracing::debug!(node = self.id, error = %e, "dropped undecodable packet");
                return;
            }
        };
        let is_mcast = matches!(p.message, Message::Mcast(_));
        if from.is_some_and(|f| f != p.sender) && !is_mcast {
            self.stats.sender_mismatch += 1;
            return;
        }
        let own_token = matches!(p.message, Message::Token(_) | Message::CommitToken(_));
        if p.sender == self.id && !own_token {
            return;
        }
        let Packet {
            sender,
            ring_id,
            message,
        } = p;
        match message {
            Message::Token(t) => self.on_token(now, ring_id, t),
            Message::Mcast(m) => self.on_mcast(now, sender, ring_id, m, wire),
            Message::MergeDetect => self.on_merge_detect(now, sender, ring_id),
            Message::Join(j) => self.on_join(now, sender, ring_id, j),
            Message::CommitToken(c) => self.on_commit_token(now, ring_id, c),
            Message::TokenHoldCancel => {
                if self.state == MembState::Operational && ring_id == self.cur.ring_id {
                    self.release_held(now);
                }
            }
            Message::Leave(l) => self.on_leave(now, sender, l),
        }
    }

    // ----- helpers -----

    fn set_state(&mut self, to: MembState, reason: Reason) {
        if self.state != to {
            tracing::debug!(node = self.id, from = ?self.state, ?to, ?reason, "state change");
            self.events.push_back(Event::State {
                from: self.state,
                to,
                reason,
            });
            self.state = to;
        }
    }

    fn arm(&mut self, t: Timer, at: u64) {
        self.timers[t as usize] = Some(at);
    }

    fn cancel(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    fn multicast(&mut self, p: &Packet) {
        self.transmits.push_back(Transmit {
            dest: Dest::Multicast,
            payload: Bytes::from(wire::encode(p)),
        });
    }

    fn send_token(&mut self, now: u64, dest: NodeId, bytes: Bytes) {
        self.transmits.push_back(Transmit {
            dest: Dest::Node(dest),
            payload: bytes.clone(),
        });
        self.last_token_sent = Some((dest, bytes));
        self.arm(Timer::TokenRetransmit, now + self.t.token_retransmit);
    }

    fn release_held(&mut self, now: u64) {
        if let Some((dest, bytes)) = self.held.take() {
            self.cancel(Timer::Hold);
            self.send_token(now, dest, bytes);
        }
    }

    fn is_stale(&self, sender: NodeId, ring_id: RingId) -> bool {
        (ring_id.seq < self.cur.ring_id.seq && self.cur.members.contains(&sender))
            || self.abandoned.contains(&ring_id)
    }

    // ----- timers -----

    fn on_timer(&mut self, now: u64, timer: Timer) {
        match timer {
            Timer::TokenLoss => match self.state {
                MembState::Operational => self.gather_enter(now, Reason::TokenLoss, None, None),
                MembState::Commit => self.gather_enter(now, Reason::CommitTokenLoss, None, None),
                MembState::Recovery => {
                    self.gather_enter(now, Reason::RecoveryTokenLoss, None, None)
                }
                _ => {}
            },
            Timer::TokenRetransmit => {
                if let Some((dest, bytes)) = self.last_token_sent.clone() {
                    self.stats.token_retransmits += 1;
                    self.transmits.push_back(Transmit {
                        dest: Dest::Node(dest),
                        payload: bytes,
                    });
                    self.arm(Timer::TokenRetransmit, now + self.t.token_retransmit);
                }
            }
            Timer::Hold => self.release_held(now),
            Timer::Join => {
                if self.state == MembState::Gather {
                    self.send_join();
                    self.arm(Timer::Join, now + self.t.join);
                    self.check_consensus(now);
                }
            }
            Timer::Consensus => {
                if self.state == MembState::Gather {
                    let missing: Vec<NodeId> = self
                        .proc_set
                        .difference(&self.fail_set)
                        .filter(|m| !self.consensus.contains(m))
                        .copied()
                        .collect();
                    tracing::trace!(node = self.id, ?missing, "consensus timeout");
                    self.fail_set.extend(missing);
                    self.restart_gather_round(now);
                    self.check_consensus(now);
                }
            }
            Timer::MergeDetect => {
                // Every `merge` ms, whatever the token does. corosync sends merge detect only
                // from an idle representative, so a heal waits for the hold timer and the
                // merge timer both; a busy ring's foreign messages usually find the other
                // side first, but an idle one needs this (see the module docs).
                if self.state == MembState::Operational && self.cur.ring_id.rep == self.id {
                    let p = Packet {
                        sender: self.id,
                        ring_id: self.cur.ring_id,
                        message: Message::MergeDetect,
                    };
                    self.multicast(&p);
                    self.arm(Timer::MergeDetect, now + self.t.merge);
                }
            }
        }
    }

    // ----- membership -----

    fn gather_enter(
        &mut self,
        now: u64,
        reason: Reason,
        add_proc: Option<NodeId>,
        add_fail: Option<NodeId>,
    ) {
        match self.state {
            MembState::Operational => {
                // A new round: its joins carry a ring seq above the ring it leaves, so a join
                // left over from the round that formed this ring (or from a ring of the
                // same seq elsewhere) is recognisably older and its fail set is not trusted.
                self.highest_ring_seq = self
                    .highest_ring_seq
                    .max(self.cur.ring_id.seq.saturating_add(1));
                self.proc_set.extend(self.cur.members.iter().copied());
                self.fail_set.clear();
                self.held = None;
                self.cancel(Timer::Hold);
                self.cancel(Timer::MergeDetect);
            }
            MembState::Commit | MembState::Recovery => {
                // Falling back because another member asked (a join or a leave) is not a
                // failure: start a clean round. Keeping the fail set of the round that formed
                // the abandoned ring would hand that round's exclusions to the new round,
                // and two groups that excluded each other once would do so forever.
                if !matches!(reason, Reason::CommitTokenLoss | Reason::RecoveryTokenLoss) {
                    self.fail_set.clear();
                }
                if let Some(c) = self.commit.take() {
                    if self.abandoned.len() == ABANDONED_MAX {
                        self.abandoned.pop_front();
                    }
                    self.abandoned.push_back(c.ring_id);
                }
                self.next = None;
                self.recovery = None;
            }
            _ => {}
        }
        self.cancel(Timer::TokenLoss);
        self.cancel(Timer::TokenRetransmit);
        self.last_token_sent = None;
        if let Some(p) = add_proc {
            if self.proc_set.len() < PROCESSORS_MAX {
                self.proc_set.insert(p);
            }
        }
        if let Some(f) = add_fail {
            if f != self.id {
                self.fail_set.insert(f);
            }
        }
        if self.state != MembState::Gather {
            self.stats.gathers += 1;
            self.set_state(MembState::Gather, reason);
        }
        self.restart_gather_round(now);
    }

    fn restart_gather_round(&mut self, now: u64) {
        self.consensus.clear();
        self.consensus.insert(self.id);
        self.send_join();
        self.arm(Timer::Join, now + self.t.join);
        self.arm(Timer::Consensus, now + self.t.consensus);
    }

    fn send_join(&mut self) {
        let p = Packet {
            sender: self.id,
            ring_id: self.cur.ring_id,
            message: Message::Join(Join {
                ring_seq: self.highest_ring_seq.max(self.cur.ring_id.seq),
                proc_set: self.proc_set.iter().copied().collect(),
                fail_set: self.fail_set.iter().copied().collect(),
            }),
        };
        self.multicast(&p);
    }

    fn on_join(&mut self, now: u64, sender: NodeId, _ring_id: RingId, j: Join) {
        match self.state {
            MembState::Operational => {
                if j.ring_seq < self.cur.ring_id.seq && self.cur.members.contains(&sender) {
                    self.stats.stale_packets += 1;
                    return;
                }
                self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
                self.gather_enter(now, Reason::Join, None, None);
            }
            MembState::Gather => {
                self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
            }
            MembState::Commit | MembState::Recovery => {
                let c = self
                    .commit
                    .as_ref()
                    .expect("commit info in COMMIT and RECOVERY");
                // A member whose join names a processor this node never heard of (in a
                // join not older than this node's ring) cannot accept this commit: the
                // commit token would never complete its rotation. Fall back now rather than
                // at the token timeout. Found by simultaneous starts in namespaces: a node
                // that had not yet heard the lowest id committed without it, and the others
                // ignored its commit token. Late joins of the round that led here name no
                // new processor (a round's proc sets only grow), so they change nothing.
                let disagrees = j.ring_seq >= self.cur.ring_id.seq
                    && j.proc_set.iter().any(|n| !self.proc_set.contains(n));
                if c.members.contains(&sender) && (j.ring_seq >= c.ring_id.seq || disagrees) {
                    self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
                    self.gather_enter(now, Reason::Join, None, None);
                } else {
                    self.stats.stale_packets += 1;
                    return;
                }
            }
            MembState::Start | MembState::Left => return,
        }
        self.process_join(now, sender, j);
    }

    fn process_join(&mut self, now: u64, sender: NodeId, j: Join) {
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
        tracing::trace!(node = self.id, sender, ring_seq = j.ring_seq, fresh, ?jp, ?jf, proc = ?self.proc_set, fail = ?self.fail_set, "join");
        if jp == self.proc_set && jf == self.fail_set {
            self.consensus.insert(sender);
            self.check_consensus(now);
            return;
        }
        // A processor already given up on in this round is not listened to; it comes back
        // through the next ring's merge detection.
        if self.fail_set.contains(&sender) {
            return;
        }
        let i_am_failed = jf.contains(&self.id);
        if jp.is_subset(&self.proc_set) && jf.is_subset(&self.fail_set) {
            return;
        }
        if self.proc_set.union(&jp).count() > PROCESSORS_MAX {
            self.stats.stale_packets += 1;
            return;
        }
        let before = (self.proc_set.len(), self.fail_set.len());
        self.proc_set.extend(jp.iter().copied());
        if i_am_failed {
            // It gave up on this node: the two cannot agree this round. Its view of the
            // others is not adopted, or one slow member would make everyone fail everyone.
            self.fail_set.insert(sender);
        } else if self.cur.members.contains(&sender) {
            // Failures seen by a member of this node's own ring are believed.
            self.fail_set
                .extend(jf.iter().copied().filter(|&f| f != self.id));
        }
        if (self.proc_set.len(), self.fail_set.len()) != before {
            self.restart_gather_round(now);
        }
        if jp == self.proc_set && jf == self.fail_set {
            self.consensus.insert(sender);
        }
        self.check_consensus(now);
    }

    fn check_consensus(&mut self, now: u64) {
        if self.state != MembState::Gather {
            return;
        }
        let members: Vec<NodeId> = self.proc_set.difference(&self.fail_set).copied().collect();
        if members.first() != Some(&self.id) || !members.iter().all(|m| self.consensus.contains(m))
        {
            return;
        }
        let ring_id = RingId {
            rep: self.id,
            seq: self
                .highest_ring_seq
                .max(self.cur.ring_id.seq)
                .saturating_add(4),
        };
        tracing::trace!(node = self.id, ?members, proc = ?self.proc_set, fail = ?self.fail_set, %ring_id, "consensus");
        let ct = CommitToken {
            token_seq: 0,
            members,
            entries: Vec::new(),
        };
        self.commit_enter(now, ring_id, ct, Reason::Consensus);
    }

    fn on_leave(&mut self, now: u64, sender: NodeId, l: Leave) {
        if l.ring_seq < self.cur.ring_id.seq {
            self.stats.stale_packets += 1;
            return;
        }
        match self.state {
            MembState::Operational => {
                if self.cur.members.contains(&sender) {
                    self.gather_enter(now, Reason::Leave, None, Some(sender));
                }
            }
            MembState::Gather => {
                if self.proc_set.contains(&sender) && self.fail_set.insert(sender) {
                    self.restart_gather_round(now);
                    self.check_consensus(now);
                }
            }
            MembState::Commit | MembState::Recovery => {
                let c = self
                    .commit
                    .as_ref()
                    .expect("commit info in COMMIT and RECOVERY");
                if c.members.contains(&sender) {
                    self.gather_enter(now, Reason::Leave, None, Some(sender));
                }
            }
            MembState::Start | MembState::Left => {}
        }
    }

    fn on_merge_detect(&mut self, now: u64, sender: NodeId, ring_id: RingId) {
        if self.state == MembState::Operational
            && ring_id != self.cur.ring_id
            && !self.is_stale(sender, ring_id)
        {
            self.gather_enter(now, Reason::MergeDetect, Some(sender), None);
        }
    }

    fn commit_enter(&mut self, now: u64, ring_id: RingId, mut ct: CommitToken, reason: Reason) {
        self.set_state(MembState::Commit, reason);
        self.highest_ring_seq = self.highest_ring_seq.max(ring_id.seq);
        self.cancel(Timer::Join);
        self.cancel(Timer::Consensus);
        self.commit = Some(CommitInfo {
            ring_id,
            members: ct.members.clone(),
        });
        ct.entries.push(MembEntry {
            old_ring: self.cur.ring_id,
            aru: self.cur.my_aru,
            high_delivered: self.cur.high_delivered,
            received_flg: self.cur.my_aru == self.cur.high_seq_received,
        });
        self.arm(Timer::TokenLoss, now + self.t.token);
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
        self.send_token(now, dest, Bytes::from(wire::encode(&p)));
    }

    fn on_commit_token(&mut self, now: u64, ring_id: RingId, ct: CommitToken) {
        let Some(my_idx) = ct.members.iter().position(|&m| m == self.id) else {
            self.stats.stale_packets += 1;
            return;
        };
        let complete = ct.entries.len() == ct.members.len();
        match self.state {
            MembState::Gather => {
                let members: Vec<NodeId> =
                    self.proc_set.difference(&self.fail_set).copied().collect();
                if complete
                    || ct.entries.len() != my_idx
                    || ring_id.rep != ct.members[0]
                    || ring_id.seq <= self.cur.ring_id.seq
                    || self.abandoned.contains(&ring_id)
                    || members != ct.members
                {
                    self.stats.stale_packets += 1;
                    return;
                }
                self.commit_enter(now, ring_id, ct, Reason::CommitToken);
            }
            MembState::Commit => {
                let ours = self.commit.as_ref().is_some_and(|c| c.ring_id == ring_id);
                if !ours || !complete {
                    self.stats.stale_packets += 1;
                    return;
                }
                self.cancel(Timer::TokenRetransmit);
                self.last_token_sent = None;
                self.arm(Timer::TokenLoss, now + self.t.token);
                self.recovery_enter(ring_id, &ct);
                self.forward_commit_token(now, ring_id, ct);
            }
            MembState::Recovery => {
                let first = self.id == ring_id.rep
                    && complete
                    && self.next.as_ref().is_some_and(|n| n.ring_id == ring_id)
                    && self
                        .recovery
                        .as_ref()
                        .is_some_and(|r| !r.initial_token_sent);
                if !first {
                    self.stats.stale_packets += 1;
                    return;
                }
                if let Some(r) = self.recovery.as_mut() {
                    r.initial_token_sent = true;
                }
                self.cancel(Timer::TokenRetransmit);
                self.last_token_sent = None;
                self.on_token(now, ring_id, Token::default());
            }
            _ => self.stats.stale_packets += 1,
        }
    }

    fn recovery_enter(&mut self, ring_id: RingId, ct: &CommitToken) {
        self.set_state(MembState::Recovery, Reason::CommitComplete);
        let trans: Vec<(NodeId, MembEntry)> = ct
            .members
            .iter()
            .zip(&ct.entries)
            .filter(|(_, e)| e.old_ring == self.cur.ring_id)
            .map(|(m, e)| (*m, *e))
            .collect();
        let low_ring_aru = trans
            .iter()
            .map(|(_, e)| e.aru)
            .min()
            .unwrap_or(self.cur.my_aru);
        let high_ring_delivered = trans
            .iter()
            .map(|(_, e)| e.high_delivered)
            .max()
            .unwrap_or(0);
        let queue: VecDeque<(u64, Frame)> = self
            .cur
            .store
            .range(low_ring_aru + 1..)
            .filter(|(_, f)| !f.encapsulated)
            .map(|(s, f)| (*s, f.clone()))
            .collect();
        tracing::debug!(node = self.id, %ring_id, low_ring_aru, resend = queue.len(), "recovery");
        self.next = Some(Ordering::new(ring_id, ct.members.clone()));
        self.recovery = Some(Recovery {
            trans: trans.iter().map(|(m, _)| *m).collect(),
            high_ring_delivered,
            queue,
            my_set_retrans: false,
            last_seq: None,
            quiet_rotations: 0,
            install_seq: None,
            aru_rotations: 0,
            initial_token_sent: false,
        });
        self.reset_token_counters();
    }

    fn reset_token_counters(&mut self) {
        self.my_last_fcc = 0;
        self.my_pbl = 0;
        self.seqno_unchanged = 0;
        self.last_token_seq_value = 0;
        self.hold_cancel_sent = false;
        self.fr_count = 0;
        self.fr_aru = 0;
        self.fr_addr = 0;
    }

    /// Installs the new ring: the EVS delivery steps, then OPERATIONAL.
    fn install(&mut self, now: u64) {
        let (Some(rec), Some(next)) = (self.recovery.take(), self.next.take()) else {
            return;
        };
        self.commit = None;
        let old_ring = self.cur.ring_id;
        tracing::debug!(node = self.id, new = %next.ring_id, old = %old_ring, "install");
        // 1. What the old ring can still deliver: agreed frames up to the first gap, and safe
        //    ones some transitional member already delivered as safe (so all old members had them).
        let old_safe = self.cur.safe_upto.max(rec.high_ring_delivered);
        loop {
            let s = self.cur.high_delivered + 1;
            let Some(f) = self.cur.store.get(&s) else {
                break;
            };
            if f.safe && s > old_safe {
                break;
            }
            let f = f.clone();
            self.deliver_frame(old_ring, s, &f);
            self.cur.high_delivered = s;
        }
        // 2. The transitional configuration.
        let left: Vec<NodeId> = self
            .cur
            .members
            .iter()
            .filter(|m| !rec.trans.contains(m))
            .copied()
            .collect();
        self.events.push_back(Event::Config(ConfigChange {
            kind: ConfigKind::Transitional,
            ring_id: next.ring_id,
            members: rec.trans.clone(),
            left,
            joined: Vec::new(),
        }));
        // 3. What the transitional configuration allows: in order, past gaps only from its members.
        let mut expected = self.cur.high_delivered + 1;
        let mut gap = false;
        let rest: Vec<(u64, Frame)> = self
            .cur
            .store
            .range(expected..)
            .map(|(s, f)| (*s, f.clone()))
            .collect();
        for (s, f) in rest {
            if s != expected {
                gap = true;
            }
            expected = s + 1;
            if gap && !rec.trans.contains(&f.sender) {
                continue;
            }
            self.deliver_frame(old_ring, s, &f);
        }
        // Fragments never span rings: partial messages are dropped here and their senders
        // restart them whole on the new ring (see `SendQueue::restart_cut_message`).
        self.reassembly.clear();
        self.queue.restart_cut_message();
        // 4. The regular configuration.
        self.events.push_back(Event::Config(ConfigChange {
            kind: ConfigKind::Regular,
            ring_id: next.ring_id,
            members: next.members.clone(),
            left: self
                .cur
                .members
                .iter()
                .filter(|m| !next.members.contains(m))
                .copied()
                .collect(),
            joined: next
                .members
                .iter()
                .filter(|m| !rec.trans.contains(m))
                .copied()
                .collect(),
        }));
        self.stats.installs += 1;
        self.cur = next;
        self.proc_set = self.cur.members.iter().copied().collect();
        self.fail_set.clear();
        self.consensus.clear();
        self.set_state(MembState::Operational, Reason::Installed);
        if self.cur.ring_id.rep == self.id {
            self.arm(Timer::MergeDetect, now + self.t.merge);
        }
        self.deliver_ready();
    }

    // ----- ordering -----

    fn on_mcast(&mut self, now: u64, sender: NodeId, ring_id: RingId, m: wire::Mcast, wire: Bytes) {
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
            if self.state == MembState::Recovery {
                self.stats.stale_packets += 1;
                return;
            }
            if self.cur.insert(m.seq, frame) && self.state == MembState::Operational {
                self.deliver_ready();
            }
            return;
        }
        if self.state == MembState::Recovery {
            if let Some(next) = self.next.as_mut() {
                if ring_id == next.ring_id {
                    let payload = frame.payload.clone();
                    if next.insert(m.seq, frame) {
                        if let Some(e) = m.encapsulated {
                            self.recover_old_frame(e, payload);
                        }
                    }
                    return;
                }
            }
        }
        if self.state == MembState::Operational && !self.is_stale(sender, ring_id) {
            self.gather_enter(now, Reason::ForeignMessage, Some(sender), None);
        } else {
            self.stats.stale_packets += 1;
        }
    }

    /// Stores an old-ring frame received encapsulated during RECOVERY.
    fn recover_old_frame(&mut self, e: Encapsulated, payload: Bytes) {
        if e.ring_id != self.cur.ring_id {
            return;
        }
        let wire = Bytes::from(wire::encode(&Packet {
            sender: e.origin,
            ring_id: e.ring_id,
            message: Message::Mcast(wire::Mcast {
                seq: e.seq,
                safe: e.safe,
                encapsulated: None,
                payload: payload.clone(),
            }),
        }));
        self.cur.insert(
            e.seq,
            Frame {
                sender: e.origin,
                safe: e.safe,
                encapsulated: false,
                payload,
                wire,
            },
        );
    }

    fn deliver_ready(&mut self) {
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

    fn deliver_frame(&mut self, ring_id: RingId, seq: u64, f: &Frame) {
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
                self.events.push_back(Event::Deliver(Delivery {
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

    fn on_token(&mut self, now: u64, ring_id: RingId, tok: Token) {
        let recovering = match self.state {
            MembState::Operational => false,
            MembState::Recovery => true,
            _ => {
                self.stats.stale_packets += 1;
                return;
            }
        };
        let mut ord = if recovering {
            match self.next.take() {
                Some(n) => n,
                None => return,
            }
        } else {
            std::mem::take(&mut self.cur)
        };
        let outcome = if ring_id != ord.ring_id {
            self.stats.foreign_tokens += 1;
            None
        } else if ord.last_token_seq.is_some_and(|l| tok.token_seq <= l) {
            self.stats.duplicate_tokens += 1;
            None
        } else {
            ord.last_token_seq = Some(tok.token_seq);
            Some(self.process_token(now, &mut ord, recovering, tok))
        };
        if recovering {
            self.next = Some(ord);
        } else {
            self.cur = ord;
        }
        match outcome {
            Some(TokenOutcome::Install) => self.install(now),
            Some(TokenOutcome::FailToRecv(n)) => {
                tracing::info!(node = self.id, failed = n, "member failed to receive");
                self.gather_enter(now, Reason::FailToRecv, None, Some(n));
            }
            Some(TokenOutcome::Done) if !recovering => self.deliver_ready(),
            Some(TokenOutcome::Done) | None => {}
        }
    }

    fn process_token(
        &mut self,
        now: u64,
        ord: &mut Ordering,
        recovering: bool,
        mut tok: Token,
    ) -> TokenOutcome {
        self.stats.tokens_received += 1;
        self.cancel(Timer::TokenRetransmit);
        self.last_token_sent = None;
        self.arm(Timer::TokenLoss, now + self.t.token);

        // Failure to receive: the aru held down by the same member for fail_recv_const visits.
        if !recovering {
            if tok.aru_addr != 0
                && tok.aru == self.fr_aru
                && tok.aru_addr == self.fr_addr
                && tok.aru < tok.seq
            {
                self.fr_count += 1;
            } else {
                self.fr_count = 0;
            }
            self.fr_aru = tok.aru;
            self.fr_addr = tok.aru_addr;
            if self.fr_count >= self.cfg.fail_recv_const
                && tok.aru_addr != self.id
                && ord.members.contains(&tok.aru_addr)
            {
                return TokenOutcome::FailToRecv(tok.aru_addr);
            }
        }
        if tok.seq == self.last_token_seq_value {
            self.seqno_unchanged = self.seqno_unchanged.saturating_add(1);
        } else {
            self.seqno_unchanged = 0;
            self.hold_cancel_sent = false;
            self.last_token_seq_value = tok.seq;
        }

        // 1. Serve retransmit requests for frames this node holds.
        let mut resent = 0u32;
        let transmits = &mut self.transmits;
        tok.rtr.retain(|s| match ord.store.get(s) {
            Some(f) => {
                transmits.push_back(Transmit {
                    dest: Dest::Multicast,
                    payload: f.wire.clone(),
                });
                resent += 1;
                false
            }
            None => true,
        });
        self.stats.frames_retransmitted += resent as u64;

        // 2. Flow control (TOCS95 §8.2).
        let w = self.cfg.window_size;
        let my_cbl = if recovering {
            self.recovery.as_ref().map_or(0, |r| r.queue.len())
        } else {
            self.queue.frames()
        } as u32;
        let mut allowed = self.cfg.max_messages.min(w.saturating_sub(tok.fcc));
        let others = tok.backlog.saturating_sub(self.my_pbl);
        if my_cbl > 0 && others > 0 {
            let share = (w as u64 * my_cbl as u64 / (others as u64 + my_cbl as u64)) as u32;
            allowed = allowed.min(share.max(1));
        }
        allowed = allowed.saturating_sub(resent);
        let span_room = (tok.aru + SORT_QUEUE_MAX).saturating_sub(tok.seq);
        let n = allowed
            .min(my_cbl)
            .min(span_room.min(u32::MAX as u64) as u32);

        // 3. New frames (old-ring frames, encapsulated, in RECOVERY).
        let mut fresh: Vec<Bytes> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (safe, payload, encapsulated) = if recovering {
                let Some((old_seq, f)) = self.recovery.as_mut().and_then(|r| r.queue.pop_front())
                else {
                    break;
                };
                (
                    f.safe,
                    f.payload,
                    Some(Encapsulated {
                        ring_id: self.cur.ring_id,
                        seq: old_seq,
                        origin: f.sender,
                        safe: f.safe,
                    }),
                )
            } else {
                let Some(f) = self.queue.pop() else { break };
                (f.safe, f.finish(), None)
            };
            tok.seq += 1;
            let seq = tok.seq;
            let wire = Bytes::from(wire::encode(&Packet {
                sender: self.id,
                ring_id: ord.ring_id,
                message: Message::Mcast(wire::Mcast {
                    seq,
                    safe,
                    encapsulated,
                    payload: payload.clone(),
                }),
            }));
            ord.insert(
                seq,
                Frame {
                    sender: self.id,
                    safe,
                    encapsulated: encapsulated.is_some(),
                    payload,
                    wire: wire.clone(),
                },
            );
            fresh.push(wire);
        }
        let sent = fresh.len() as u32;
        self.stats.frames_sent += sent as u64;

        // 4. Request what this node misses, once seen missing miss_count_const times.
        let my_aru = ord.my_aru;
        ord.miss = ord.miss.split_off(&(my_aru + 1));
        let hi = tok.seq.min(my_aru + SORT_QUEUE_MAX);
        let mut s = my_aru + 1;
        while s <= hi && tok.rtr.len() < RTR_MAX {
            if !ord.store.contains_key(&s) {
                let c = ord.miss.entry(s).or_insert(0);
                *c += 1;
                if *c >= self.cfg.miss_count_const && !tok.rtr.contains(&s) {
                    tok.rtr.push(s);
                    self.stats.retransmit_requests += 1;
                }
            }
            s += 1;
        }

        // 5. The aru.
        if ord.my_aru < tok.aru || tok.aru_addr == self.id || tok.aru_addr == 0 {
            tok.aru = ord.my_aru.min(tok.seq);
            tok.aru_addr = if tok.aru >= tok.seq { 0 } else { self.id };
        }

        // 6. fcc and backlog.
        tok.fcc = tok
            .fcc
            .saturating_sub(self.my_last_fcc)
            .saturating_add(resent + sent);
        self.my_last_fcc = resent + sent;
        let my_cbl_after = if recovering {
            self.recovery.as_ref().map_or(0, |r| r.queue.len())
        } else {
            self.queue.frames()
        } as u32;
        tok.backlog = tok
            .backlog
            .saturating_sub(self.my_pbl)
            .saturating_add(my_cbl_after);
        self.my_pbl = my_cbl_after;

        // 7. Safe point (aru forwarded on two successive rotations) and freeing.
        ord.safe_upto = ord.safe_upto.max(tok.aru.min(ord.prev_forwarded_aru));
        ord.prev_forwarded_aru = tok.aru;
        let free_to = ord.safe_upto.min(ord.high_delivered);
        while ord
            .store
            .first_key_value()
            .is_some_and(|(k, _)| *k <= free_to)
        {
            ord.store.pop_first();
        }

        // 8. Recovery progress. retrans_flg says some member still has old-ring frames to
        //    re-send; a member clears it only if it set it and has just run out, and forgets
        //    having set it as soon as it has nothing left. A rotation is quiet when the flag
        //    is clear and the token's seq has not moved since this member's last visit (in
        //    RECOVERY only recovery frames move it). After a silent rotation flow control
        //    lets any member with frames left send at least one, so two quiet rotations mean
        //    every member is done and the seq is final: that is install_seq. Install follows
        //    once the aru has covered install_seq on two visits.
        let mut install = false;
        if recovering {
            if let Some(r) = self.recovery.as_mut() {
                if !r.queue.is_empty() {
                    tok.retrans_flg = true;
                    r.my_set_retrans = true;
                } else {
                    if tok.retrans_flg && r.my_set_retrans {
                        tok.retrans_flg = false;
                    }
                    r.my_set_retrans = false;
                }
                let quiet = !tok.retrans_flg && r.last_seq == Some(tok.seq);
                r.last_seq = Some(tok.seq);
                if tok.retrans_flg {
                    r.quiet_rotations = 0;
                    r.install_seq = None;
                } else if quiet && r.install_seq.is_none() {
                    r.quiet_rotations += 1;
                    if r.quiet_rotations == 2 {
                        r.install_seq = Some(tok.seq);
                    }
                } else if r.install_seq.is_none() {
                    r.quiet_rotations = 0;
                }
                match r.install_seq {
                    Some(is) if tok.aru >= is => r.aru_rotations += 1,
                    _ => r.aru_rotations = 0,
                }
                install = r.aru_rotations >= 2;
            }
        }

        // 9. Hold the token on an idle ring, or pass it on.
        let hold = !recovering
            && self.id == ord.ring_id.rep
            && self.seqno_unchanged > self.cfg.seqno_unchanged_const
            && self.queue.is_empty()
            && tok.rtr.is_empty()
            && tok.aru == tok.seq;
        tok.token_seq += 1;
        let dest = ord.next_after(self.id);
        let bytes = Bytes::from(wire::encode(&Packet {
            sender: self.id,
            ring_id: ord.ring_id,
            message: Message::Token(tok),
        }));
        let after = match self.cfg.variant {
            Variant::Classic => 0,
            Variant::Accelerated => (self.cfg.accelerated_window as usize).min(fresh.len()),
        };
        let before = fresh.len() - after;
        for w in fresh.drain(..before) {
            self.transmits.push_back(Transmit {
                dest: Dest::Multicast,
                payload: w,
            });
        }
        if hold {
            self.held = Some((dest, bytes));
            self.arm(Timer::Hold, now + self.t.hold);
        } else {
            self.send_token(now, dest, bytes);
        }
        for w in fresh {
            self.transmits.push_back(Transmit {
                dest: Dest::Multicast,
                payload: w,
            });
        }
        if install {
            TokenOutcome::Install
        } else {
            TokenOutcome::Done
        }
    }
}
