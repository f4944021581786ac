//! The chunk protocol's state machines (seed `ceph-mon-sync-message.txt`), sans-IO: the full
//! store transfer that brings a far-behind member back, point to point from one provider
//! while the ring goes on carrying writes. One [`Transfer`] per node plays every role: the
//! requester (this node needs a copy), a provider (this node serves copies from snapshots
//! of its store) and, in the push design, the leader (the lowest member whose store serves,
//! which hands requesters to providers: the seed's leader is one of the synchronised quorum,
//! and the ring's representative may be the very node that needs a copy).
//!
//! Messages are [`ChunkMsg`]s carried by the [`Transport`] (numbered datagrams with their
//! own acknowledgements, retransmission and pacing). Times are ns, handed in.
//!
//! # Push (`design = "push"`, the seed's, Ceph 2013)
//! 1. The requester picks a transfer id and sends [`Op::Start`] (with `last_key` when it
//!    resumes) to the leader. A leader that cannot serve (it is not synchronised itself, or
//!    not the leader) answers [`Op::StartReply`] with [`FLAG_RETRY`]: the requester asks
//!    again after `retry_ms`. Otherwise it answers naming a provider in `reply_to`
//!    ([`FLAG_REPLY_TO`]), turning through the members that serve, so that a requester whose
//!    provider died is sent to another.
//! 2. The requester sends [`Op::StartChunks`] (with `last_key`) to the provider, which opens
//!    a snapshot (one read transaction) and pushes [`Op::Chunk`]s, at most `chunk_window`
//!    ahead of the requester's [`Op::ChunkReply`] (a cumulative acknowledgement; with
//!    [`FLAG_RETRY`], "send that chunk again": its CRC failed).
//! 3. The requester sends [`Op::Heartbeat`] to the leader every `heartbeat_ms`; the leader
//!    answers [`Op::HeartbeatReply`] and forgets a requester it has not heard for the stall
//!    timeout.
//! 4. The last chunk has [`FLAG_LAST`], the snapshot's version and its chain hash; the
//!    requester sends [`Op::Finish`], the leader answers [`Op::FinishReply`], and the copy is
//!    whole.
//! 5. When the leader changes (a sync after which another member leads), the requester
//!    sends [`Op::Abort`] to the old leader and its provider and starts again from nothing,
//!    as the seed's design did. When the provider dies (its transport gives up, or nothing
//!    comes for the stall timeout), the requester itself asks another member that serves
//!    for the chunks after its last key ([`Op::StartChunks`] with `last_key`, as the seed;
//!    the new piece has an id of its own, the leader still knows the transfer's),
//!    up to `sync_max_retries` times in a row; past that it aborts and starts again from
//!    nothing.
//!
//! # Pull (`design = "pull"`, Ceph's replacement of July 2013)
//! 1. The requester picks a provider among the members that serve (turning through them)
//!    and sends [`Op::GetCookie`] (with `last_key` when it resumes). The provider opens a
//!    snapshot and answers [`Op::Cookie`]: the cookie in `id`, the snapshot's version and
//!    chain; or [`FLAG_RETRY`] without a cookie when it cannot serve now (the requester
//!    tries another after `retry_ms`).
//! 2. The requester asks [`Op::GetChunk`] for chunks `0, 1, ...`, at most `chunk_window`
//!    outstanding; the provider answers each with the [`Op::Chunk`] of that number, cut
//!    from the snapshot from where the previous one ended. The provider keeps only the
//!    snapshot and where its recent chunks began, keyed by the cookie, and forgets a cookie
//!    idle for `cookie_timeout_ms` (a later [`Op::GetChunk`] is answered [`Op::Abort`]).
//! 3. A leader change does not concern it. A dead provider, an expired cookie or a stall:
//!    the requester resumes after its last key at another provider (Ceph's pull design
//!    restarts from nothing; ringlab resumes, and counts what was sent again).
//!
//! # What the requester makes of it
//! [`Transfer::poll_fetched`] hands the store service what to do: [`Fetched::Begin`] before
//! the first chunk of a copy (empty the store, mark it loading, durably), [`Fetched::Pairs`]
//! for every chunk in order once its CRC checked, [`Fetched::Whole`] once the copy is whole
//! (with the first piece's version, so that the writes made between the pieces' snapshots
//! are replayed over the whole copy), [`Fetched::Aborted`] when what was loaded is worth
//! nothing. The service catches the copy up with the writes the ring delivered meanwhile.
//!
//! # Timeouts scale with the transfer
//! The stall timeout is `timeout_ms` plus the time `chunk_window` chunks of `chunk_bytes`
//! take at the slowest rate a transfer is expected to run at (the pacing's rate when it is
//! set, else 1 MiB/s), and it measures the time since the last *progress* (a chunk applied),
//! never the length of the transfer: a large store or a slow apply cannot loop forever on
//! chunk 0 (a known failure of several Raft implementations), and a dead provider is left
//! after a bounded wait.

use super::chunk_msg::{Chunk, ChunkMsg, Op, FLAG_RETRY};
#[cfg(doc)]
use super::chunk_msg::{FLAG_LAST, FLAG_REPLY_TO};
use super::db::{Pair, Snapshot, StoreDb};
use super::transport::{Transport, TransportConfig, TransportEvent, TransportStats};
use bytes::Bytes;
use ringlab_records::Body;
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

const MS: u64 = 1_000_000;

/// The slowest rate (bytes/s) a transfer without pacing is expected to run at: what the stall
/// timeout allows a window of chunks.
const SLOWEST_RATE: u64 = 1024 * 1024;

/// Provider sessions kept at once (a requester beyond is told to retry).
const MAX_SESSIONS: usize = 16;

/// Requesters a leader keeps track of.
const MAX_BOOK: usize = 1024;

/// Which design of the chunk protocol a transfer follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    /// The seed's: leader, provider, heartbeats, chunks pushed.
    Push,
    /// Ceph's replacement: a cookie from a provider of the requester's choice, chunks pulled.
    #[default]
    Pull,
}

impl Design {
    /// Its name in configs and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Pull => "pull",
        }
    }
}

/// How a full copy travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// The chunk protocol, point to point over its own transport, while the ring goes on.
    #[default]
    Unicast,
    /// Multicast on the ring during the sync (the whole ring waits for the copy).
    Ring,
}

impl Path {
    /// Its name in configs and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unicast => "unicast",
            Self::Ring => "ring",
        }
    }
}

/// The chunk protocol's knobs (in `[service_config.store]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferConfig {
    /// `push` or `pull`.
    pub design: Design,
    /// Bytes of keys and values a chunk carries at most (a lone larger value travels alone).
    pub chunk_bytes: usize,
    /// Keys a chunk carries at most.
    pub chunk_keys: usize,
    /// Chunks in flight (the seed: 1).
    pub chunk_window: usize,
    /// Resumes in a row before a transfer starts again from nothing.
    pub sync_max_retries: u32,
    /// Whether a dead or stalled provider's copy goes on after its last key at another
    /// (true) or starts again from nothing (false: Ceph's pull design).
    pub resume: bool,
    /// Push: how often the requester heartbeats the leader.
    pub heartbeat_ms: u64,
    /// The stall timeout's base (see the module docs).
    pub timeout_ms: u64,
    /// Pull: a provider forgets a cookie idle this long.
    pub cookie_timeout_ms: u64,
    /// How long a requester waits after [`FLAG_RETRY`] before asking again.
    pub retry_ms: u64,
    /// The transport's knobs (pacing: `transfer_rate_limit`).
    pub transport: TransportConfig,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            design: Design::Pull,
            chunk_bytes: 1024 * 1024,
            chunk_keys: 2000,
            chunk_window: 1,
            sync_max_retries: 5,
            resume: true,
            heartbeat_ms: 500,
            timeout_ms: 2000,
            cookie_timeout_ms: 10_000,
            retry_ms: 200,
            transport: TransportConfig::default(),
        }
    }
}

impl TransferConfig {
    /// How long a push requester and its leader wait without hearing each other (ns): the
    /// stall timeout, and at least four heartbeats.
    pub fn silence_ns(&self) -> u64 {
        self.stall_ns().max(4 * self.heartbeat_ms * MS)
    }

    /// The stall timeout (ns): see the module docs.
    pub fn stall_ns(&self) -> u64 {
        let rate = self.transport.rate_limit.unwrap_or(SLOWEST_RATE).max(1);
        let window = (self.chunk_bytes as u64).saturating_mul(self.chunk_window as u64);
        self.timeout_ms * MS + window.saturating_mul(1_000_000_000) / rate
    }
}

/// What the members are, as the store's last sync left them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The members of the current configuration.
    pub members: Vec<NodeId>,
    /// The members whose store serves (at the sync's target), this node excluded.
    pub serving: Vec<NodeId>,
    /// Whether this node's store serves (it may provide copies and lead).
    pub me_serving: bool,
}

impl View {
    /// The push design's leader: the lowest member whose store serves (Ceph's leader is
    /// always one of the synchronised quorum; the ring's own representative may be the very
    /// node that needs a copy). Every member computes the same one from the same sync.
    fn leader(&self, me: NodeId) -> Option<NodeId> {
        let me = self.me_serving.then_some(me);
        self.serving.iter().copied().chain(me).min()
    }
}

/// What the requester hands the store service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A copy begins: empty the store and mark it loading, durably.
    Begin,
    /// Pairs of the copy, in key order, their CRC checked.
    Pairs(Vec<Pair>),
    /// The copy is whole: its last piece is the snapshot at `version` with `chain`; the
    /// writes after `base` (the first piece's version) are to be replayed over it (none when
    /// `base == version`).
    Whole {
        /// The first piece's snapshot version.
        base: u64,
        /// The last piece's snapshot version.
        version: u64,
        /// The chain hash at `version`.
        chain: [u8; 32],
    },
    /// What was loaded is worth nothing (a leader change in push, too many resumes): the
    /// next copy begins again.
    Aborted,
}

/// A copy being fetched: what survives a resume.
#[derive(Clone, Debug, Default)]
struct Copy {
    /// Its `start` record was written.
    started: bool,
    /// [`Fetched::Begin`] was handed out.
    begun: bool,
    /// The last key applied (a resume goes on after it).
    last_key: Option<Vec<u8>>,
    /// The least and the greatest snapshot version of its pieces so far.
    base: Option<u64>,
    top: u64,
    /// The provider of the piece being received (or the last one).
    provider: Option<NodeId>,
    keys: u64,
    bytes: u64,
    chunks: u64,
    resent_bytes: u64,
    /// Resumes in a row without a chunk between.
    retries: u32,
}

/// The piece being received: chunks of one snapshot from one provider.
#[derive(Debug)]
struct Piece {
    provider: NodeId,
    /// The piece's id: push, fresh for every piece (a resume at the same provider must not
    /// take the old piece's chunks still in flight for the new one's); pull, the cookie.
    id: u64,
    /// Push: the transfer's id at the leader (its `Start`), for heartbeats and `Finish`.
    transfer: u64,
    /// The next chunk to apply.
    next: u64,
    /// Pull: the chunks asked so far (`0..asked`).
    asked: u64,
    /// Chunks that came ahead of `next`, at most a window.
    ahead: BTreeMap<u64, ChunkMsg>,
    /// The last progress (a chunk applied, the piece begun).
    progress_at: u64,
}

/// Where the requester stands.
#[derive(Debug)]
enum Req {
    /// Nothing wanted.
    Idle,
    /// Waiting before asking (after [`FLAG_RETRY`], a failure).
    Backoff { until: u64 },
    /// Push: asked the leader (transfer id `id`).
    Asking { leader: NodeId, id: u64, since: u64 },
    /// Pull: asked `provider` for a cookie.
    Cookie { provider: NodeId, since: u64 },
    /// Receiving chunks. Push: `leader` is heartbeated.
    Receiving {
        piece: Piece,
        leader: Option<(NodeId, u64)>,
        next_heartbeat: u64,
    },
    /// Push: the last chunk is in, [`Op::Finish`] sent to the leader.
    Finishing {
        leader: NodeId,
        id: u64,
        since: u64,
        whole: Fetched,
    },
}

/// A provider's session with one requester: a snapshot and where its recent chunks began.
struct Session {
    id: u64,
    snap: Snapshot,
    /// Where chunk `n` begins (the key it comes after), for the chunks that may be asked
    /// again (at most a window back).
    starts: BTreeMap<u64, Option<Vec<u8>>>,
    /// The next chunk to cut, and the key it comes after.
    next: u64,
    cursor: Option<Vec<u8>>,
    ended: bool,
    /// Push: chunks acknowledged (`0..acked`).
    acked: u64,
    heard_at: u64,
}

/// Counters of one node's transfers, both roles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStats {
    /// Copies begun here (as requester).
    pub copies: u64,
    /// Copies completed here.
    pub completed: u64,
    /// Resumes after a provider died or stalled.
    pub resumes: u64,
    /// Copies aborted (begun again from nothing).
    pub aborts: u64,
    /// Chunks whose CRC failed (asked again, never applied).
    pub crc_failures: u64,
    /// Chunk messages that did not decode.
    pub malformed: u64,
    /// Chunks served (as provider).
    pub chunks_served: u64,
    /// Bytes of chunk sections served.
    pub bytes_served: u64,
}

/// The chunk protocol of one node. See the module docs.
pub struct Transfer {
    cfg: TransferConfig,
    me: NodeId,
    /// Made at the first input, its nonce that input's time (unique per incarnation: a
    /// node's clock only goes forward, in a real host and in the simulator).
    transport: Option<Transport>,
    view: View,
    wanted: bool,
    req: Req,
    copy: Copy,
    /// The provider turned to next (an index into the serving members).
    turn: usize,
    /// The provider that just failed (a pull resume asks another when there is one).
    avoid: Option<NodeId>,
    sessions: BTreeMap<(NodeId, u64), Session>,
    /// Push leader: requester → (transfer id, provider, last heard).
    book: BTreeMap<NodeId, (u64, NodeId, u64)>,
    next_id: u64,
    fetched: VecDeque<Fetched>,
    records: VecDeque<Body>,
    stats: TransferStats,
}

impl Transfer {
    /// Creates the chunk protocol of node `me`.
    pub fn new(me: NodeId, cfg: TransferConfig) -> Self {
        Self {
            cfg,
            me,
            transport: None,
            view: View::default(),
            wanted: false,
            req: Req::Idle,
            copy: Copy::default(),
            turn: me as usize,
            avoid: None,
            sessions: BTreeMap::new(),
            book: BTreeMap::new(),
            next_id: 0,
            fetched: VecDeque::new(),
            records: VecDeque::new(),
            stats: TransferStats::default(),
        }
    }

    /// Returns its knobs.
    pub fn config(&self) -> &TransferConfig {
        &self.cfg
    }

    /// Returns its counters.
    pub fn stats(&self) -> &TransferStats {
        &self.stats
    }

    /// Returns the transport's counters (none before its first input).
    pub fn transport_stats(&self) -> Option<&TransportStats> {
        self.transport.as_ref().map(Transport::stats)
    }

    /// Returns the bytes it holds: the transport's buffers and the chunks that came ahead.
    pub fn held_bytes(&self) -> usize {
        let ahead = match &self.req {
            Req::Receiving { piece, .. } => {
                piece.ahead.values().map(|m| m.chunk.encoded_len()).sum()
            }
            _ => 0,
        };
        ahead + self.transport.as_ref().map_or(0, Transport::held_bytes)
    }

    /// Whether a copy is being fetched (asked for, or arriving).
    pub fn fetching(&self) -> bool {
        !matches!(self.req, Req::Idle)
    }

    fn transport(&mut self, now: u64) -> &mut Transport {
        let (me, cfg) = (self.me, self.cfg.transport.clone());
        self.transport
            .get_or_insert_with(|| Transport::new(me, now, cfg))
    }

    fn fresh_id(&mut self, now: u64) -> u64 {
        self.next_id += 1;
        // Unique per incarnation (see `transport`), never 0.
        (now ^ (self.next_id << 40) ^ u64::from(self.me) << 20).max(1)
    }

    fn send(&mut self, now: u64, to: NodeId, m: &ChunkMsg) {
        let bytes = Bytes::from(m.encode());
        if let Err(e) = self.transport(now).send(now, to, bytes) {
            tracing::warn!(error = %e, op = %m.op, "a chunk message was refused by its transport");
        }
    }

    /// Learns the members and who serves (after every sync of the store); a push requester
    /// whose leader changed aborts, any requester whose provider left resumes elsewhere.
    pub fn set_view(&mut self, now: u64, view: View) {
        let old = std::mem::replace(&mut self.view, view);
        let members = self.view.members.clone();
        // Providers forget requesters that left, leaders too.
        self.sessions.retain(|(r, _), _| members.contains(r));
        self.book.retain(|r, _| members.contains(r));
        if let Some(t) = self.transport.as_mut() {
            for p in old.members.iter().filter(|p| !members.contains(p)) {
                t.forget_peer(*p);
            }
        }
        let leader = self.view.leader(self.me);
        let push_leader = match &self.req {
            Req::Asking { leader, .. } | Req::Finishing { leader, .. } => Some(*leader),
            Req::Receiving {
                leader: Some((l, _)),
                ..
            } => Some(*l),
            _ => None,
        };
        if let Some(l) = push_leader {
            if Some(l) != leader {
                self.abort(now, "the leader changed");
                return;
            }
        }
        let provider = match &self.req {
            Req::Cookie { provider, .. } => Some(*provider),
            Req::Receiving { piece, .. } => Some(piece.provider),
            _ => None,
        };
        if let Some(p) = provider {
            if !members.contains(&p) {
                self.resume(now, "the provider left the configuration");
            }
        }
    }

    /// Gives up the copy being fetched (the store found it cannot catch it up: it missed
    /// writes); starts again from nothing.
    pub fn restart(&mut self, now: u64, why: &str) {
        self.wanted = true;
        self.abort(now, why);
        if matches!(self.req, Req::Idle) {
            self.ask(now);
        }
    }

    /// The store says whether it needs a copy (it is behind). A copy no longer wanted is
    /// dropped.
    pub fn want(&mut self, now: u64, wanted: bool) {
        if wanted == self.wanted {
            return;
        }
        self.wanted = wanted;
        if wanted {
            if matches!(self.req, Req::Idle) {
                self.ask(now);
            }
        } else {
            if self.copy.started {
                let provider = self.copy.provider;
                self.record("abort", provider, 0);
            }
            self.stop(now);
        }
    }

    /// Drops the copy being fetched, telling the peers (the store needs none any more, or
    /// it cannot use what it has).
    fn stop(&mut self, now: u64) {
        let mut tell = Vec::new();
        match std::mem::replace(&mut self.req, Req::Idle) {
            Req::Asking { leader, id, .. } => tell.push((leader, id)),
            Req::Receiving { piece, leader, .. } => {
                tell.push((piece.provider, piece.id));
                if let Some((l, _)) = leader {
                    tell.push((l, piece.transfer));
                }
            }
            Req::Finishing { leader, id, .. } => tell.push((leader, id)),
            _ => {}
        }
        for (to, id) in tell {
            let mut m = ChunkMsg::new(Op::Abort);
            m.id = id;
            self.send(now, to, &m);
        }
        self.copy = Copy::default();
    }

    /// Gives up the copy: what was loaded is worth nothing; starts again from nothing if
    /// still wanted.
    fn abort(&mut self, now: u64, why: &str) {
        tracing::info!(why, "store transfer aborted");
        let begun = self.copy.begun;
        self.record("abort", self.copy.provider, 0);
        self.stop(now);
        self.stats.aborts += 1;
        if begun {
            self.fetched.push_back(Fetched::Aborted);
        }
        if self.wanted {
            self.back_off(now);
        }
    }

    /// The provider died or stalled: go on after the last key at another, or abort after
    /// too many resumes in a row.
    fn resume(&mut self, now: u64, why: &str) {
        let failed = self.provider_now();
        if let Some(p) = failed {
            if let Some(t) = self.transport.as_mut() {
                t.forget_peer(p);
            }
        }
        self.avoid = failed;
        if !self.cfg.resume {
            // Ceph's pull design: what was loaded is dropped, and the copy starts again
            // from nothing (at another provider) after the back-off.
            self.abort(now, why);
            return;
        }
        self.copy.retries += 1;
        if self.copy.retries > self.cfg.sync_max_retries {
            self.abort(now, "too many resumes");
            return;
        }
        tracing::info!(why, "store transfer resumes");
        self.stats.resumes += 1;
        self.record("resume", failed, 0);
        // Push, as the seed: the requester itself asks another member for the chunks after
        // its last key (`OP_START_CHUNKS`), under the same leader and transfer id (for its
        // heartbeats and `Finish`) but with a fresh id for the piece, so that the old piece's
        // chunks still in flight from the same provider are never taken for the new one's.
        if let Req::Receiving {
            piece,
            leader: Some((leader, _)),
            ..
        } = &self.req
        {
            let (transfer, leader) = (piece.transfer, *leader);
            if let Some(provider) = self.next_provider(failed) {
                let id = self.fresh_id(now);
                let mut m = ChunkMsg::new(Op::StartChunks);
                m.id = id;
                m.last_key.clone_from(&self.copy.last_key);
                self.send(now, provider, &m);
                self.begin_piece(now, provider, id, transfer, Some(leader));
                return;
            }
        }
        self.req = Req::Idle;
        self.ask(now);
    }

    /// Waits `retry_ms` before asking again.
    fn back_off(&mut self, now: u64) {
        self.req = Req::Backoff {
            until: now + self.cfg.retry_ms * MS,
        };
    }

    fn provider_now(&self) -> Option<NodeId> {
        match &self.req {
            Req::Cookie { provider, .. } => Some(*provider),
            Req::Receiving { piece, .. } => Some(piece.provider),
            _ => None,
        }
    }

    /// Asks for a copy (or its next piece) as the design says.
    fn ask(&mut self, now: u64) {
        if !self.wanted {
            self.req = Req::Idle;
            return;
        }
        match self.cfg.design {
            Design::Push => {
                let Some(leader) = self.view.leader(self.me).filter(|&l| l != self.me) else {
                    // No member serves: no one to ask until the configuration changes.
                    self.back_off(now);
                    return;
                };
                let id = self.fresh_id(now);
                let mut m = ChunkMsg::new(Op::Start);
                m.id = id;
                m.last_key.clone_from(&self.copy.last_key);
                self.send(now, leader, &m);
                self.req = Req::Asking {
                    leader,
                    id,
                    since: now,
                };
            }
            Design::Pull => {
                let Some(provider) = self.next_provider(self.avoid) else {
                    self.back_off(now);
                    return;
                };
                let mut m = ChunkMsg::new(Op::GetCookie);
                m.last_key.clone_from(&self.copy.last_key);
                self.send(now, provider, &m);
                self.req = Req::Cookie {
                    provider,
                    since: now,
                };
            }
        }
    }

    /// The next serving member in turn, other than `not` unless it is the only one (and
    /// never this node).
    fn next_provider(&mut self, not: Option<NodeId>) -> Option<NodeId> {
        let mut list: Vec<NodeId> = self
            .view
            .serving
            .iter()
            .copied()
            .filter(|&n| n != self.me)
            .collect();
        if list.len() > 1 {
            list.retain(|&n| Some(n) != not);
        }
        if list.is_empty() {
            return None;
        }
        self.turn = self.turn.wrapping_add(1);
        Some(list[self.turn % list.len()])
    }

    /// Takes a datagram of the transfer's transport from `from`; `db` serves snapshots.
    pub fn handle_datagram(&mut self, now: u64, from: NodeId, data: &[u8], db: &StoreDb) {
        if let Err(e) = self.transport(now).handle_datagram(now, from, data) {
            tracing::debug!(error = %e, from, "transfer datagram dropped");
        }
        self.drain_transport(now, db);
    }

    /// Timers: the transport's, the stall and heartbeat timers, backoffs, expiries.
    pub fn tick(&mut self, now: u64, db: &StoreDb) {
        if let Some(t) = self.transport.as_mut() {
            if t.poll_timeout().is_some_and(|d| d <= now) {
                t.handle_timeout(now);
            }
        }
        self.drain_transport(now, db);
        let stall = self.cfg.stall_ns();
        // Providers and leaders forget the silent.
        let cookie = self.cfg.cookie_timeout_ms * MS;
        self.sessions
            .retain(|_, s| now.saturating_sub(s.heard_at) < cookie.max(stall));
        let silence = self.cfg.silence_ns();
        self.book
            .retain(|_, (_, _, heard)| now.saturating_sub(*heard) < silence);
        match &mut self.req {
            Req::Idle => {}
            Req::Backoff { until } => {
                if now >= *until {
                    self.req = Req::Idle;
                    self.ask(now);
                }
            }
            Req::Asking { since, .. } | Req::Cookie { since, .. } => {
                if now.saturating_sub(*since) >= stall {
                    self.resume(now, "no answer");
                }
            }
            Req::Receiving {
                piece,
                leader,
                next_heartbeat,
            } => {
                if now.saturating_sub(piece.progress_at) >= stall {
                    self.resume(now, "no chunk for the stall timeout");
                    return;
                }
                if let Some((l, heard)) = *leader {
                    if now.saturating_sub(heard) >= silence {
                        self.abort(now, "the leader went silent");
                        return;
                    }
                    if now >= *next_heartbeat {
                        *next_heartbeat = now + self.cfg.heartbeat_ms * MS;
                        let mut m = ChunkMsg::new(Op::Heartbeat);
                        m.id = piece.transfer;
                        self.send(now, l, &m);
                    }
                }
            }
            Req::Finishing { since, .. } => {
                if now.saturating_sub(*since) >= stall {
                    // The data is whole; the leader's bookkeeping is not needed for it.
                    if let Req::Finishing { whole, .. } =
                        std::mem::replace(&mut self.req, Req::Idle)
                    {
                        self.complete(whole);
                    }
                }
            }
        }
    }

    /// When it next needs a [`Transfer::tick`].
    pub fn poll_deadline(&self) -> Option<u64> {
        let stall = self.cfg.stall_ns();
        let own = match &self.req {
            Req::Idle => None,
            Req::Backoff { until } => Some(*until),
            Req::Asking { since, .. } | Req::Cookie { since, .. } => Some(since + stall),
            Req::Receiving {
                piece,
                leader,
                next_heartbeat,
            } => Some((piece.progress_at + stall).min(if leader.is_some() {
                *next_heartbeat
            } else {
                u64::MAX
            })),
            Req::Finishing { since, .. } => Some(since + stall),
        };
        let expiry = self
            .sessions
            .values()
            .map(|s| s.heard_at + (self.cfg.cookie_timeout_ms * MS).max(stall))
            .chain(
                self.book
                    .values()
                    .map(|(_, _, h)| h + self.cfg.silence_ns()),
            )
            .min();
        [
            own,
            expiry,
            self.transport.as_ref().and_then(Transport::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Returns the next datagram to send: (to, bytes).
    pub fn poll_datagram(&mut self, now: u64) -> Option<(NodeId, Bytes)> {
        self.transport.as_mut()?.poll_transmit(now)
    }

    /// Returns the next thing the store is to do with the copy.
    pub fn poll_fetched(&mut self) -> Option<Fetched> {
        self.fetched.pop_front()
    }

    /// Returns its next `store_sync` record.
    pub fn poll_record(&mut self) -> Option<Body> {
        self.records.pop_front()
    }

    /// Writes a `store_sync` record of `phase`.
    fn record(&mut self, phase: &str, provider: Option<NodeId>, version: u64) {
        let c = &self.copy;
        self.records.push_back(Body::StoreSync {
            phase: phase.into(),
            path: Path::Unicast.as_str().into(),
            design: Some(self.cfg.design.as_str().into()),
            last_key: c
                .last_key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            chunks: Some(c.chunks),
            resent_bytes: Some(c.resent_bytes),
            provider: provider.unwrap_or(0),
            version,
            bytes: c.bytes,
            keys: c.keys,
        });
    }

    fn drain_transport(&mut self, now: u64, db: &StoreDb) {
        loop {
            let Some(ev) = self.transport.as_mut().and_then(Transport::poll_event) else {
                return;
            };
            match ev {
                TransportEvent::Received { from, msg } => match ChunkMsg::decode(&msg) {
                    Ok(m) => self.on_message(now, from, m, db),
                    Err(e) => {
                        self.stats.malformed += 1;
                        tracing::debug!(error = %e, from, "chunk message dropped");
                    }
                },
                TransportEvent::Delivered { .. } => {}
                TransportEvent::Failed { to, .. } => {
                    self.sessions.retain(|(r, _), _| *r != to);
                    if self.provider_now() == Some(to) {
                        self.resume(now, "the provider's transport gave up");
                    }
                }
            }
        }
    }

    fn on_message(&mut self, now: u64, from: NodeId, m: ChunkMsg, db: &StoreDb) {
        match m.op {
            // Provider and leader roles.
            Op::Start => self.lead_start(now, from, &m),
            Op::Heartbeat | Op::Finish => {
                let known = self.book.get(&from).is_some_and(|(id, _, _)| *id == m.id);
                if m.op == Op::Finish {
                    self.book.remove(&from);
                } else if let Some(e) = self.book.get_mut(&from) {
                    e.2 = now;
                }
                let op = if m.op == Op::Finish {
                    Op::FinishReply
                } else {
                    Op::HeartbeatReply
                };
                let mut r = ChunkMsg::new(op);
                r.id = m.id;
                if !known && m.op == Op::Heartbeat {
                    r.flags = FLAG_RETRY; // Not known (any more): start again.
                }
                self.send(now, from, &r);
            }
            Op::StartChunks => self.provide_start(now, from, &m, db, Design::Push),
            Op::GetCookie => self.provide_start(now, from, &m, db, Design::Pull),
            Op::ChunkReply => self.provide_ack(now, from, &m),
            Op::GetChunk => self.provide_get(now, from, &m),
            // Requester role.
            Op::StartReply => self.on_start_reply(now, from, &m),
            Op::Cookie => self.on_cookie(now, from, &m),
            Op::Chunk => self.on_chunk(now, from, m),
            Op::HeartbeatReply => {
                if let Req::Receiving {
                    piece,
                    leader: Some((l, heard)),
                    ..
                } = &mut self.req
                {
                    if *l == from && piece.transfer == m.id {
                        if m.is_retry() {
                            self.abort(now, "the leader forgot the transfer");
                        } else {
                            *heard = now;
                        }
                    }
                }
            }
            Op::FinishReply => {
                if matches!(&self.req, Req::Finishing { leader, id, .. } if *leader == from && *id == m.id)
                {
                    if let Req::Finishing { whole, .. } =
                        std::mem::replace(&mut self.req, Req::Idle)
                    {
                        self.complete(whole);
                    }
                }
            }
            Op::Abort => {
                // To a provider or leader: forget the requester's transfer.
                self.sessions.remove(&(from, m.id));
                if self.book.get(&from).is_some_and(|(id, _, _)| *id == m.id) {
                    self.book.remove(&from);
                }
                // To a requester: its piece is gone (an expired cookie, say).
                let mine = match &self.req {
                    Req::Receiving { piece, .. } => piece.provider == from && piece.id == m.id,
                    Req::Asking { leader, id, .. } => *leader == from && *id == m.id,
                    _ => false,
                };
                if mine {
                    self.resume(now, "the peer aborted");
                }
            }
        }
    }

    /// Leader: a requester asks for a sync.
    fn lead_start(&mut self, now: u64, from: NodeId, m: &ChunkMsg) {
        let mut r = ChunkMsg::new(Op::StartReply);
        r.id = m.id;
        let leads = self.view.leader(self.me) == Some(self.me);
        let mut choices: Vec<NodeId> = self
            .view
            .serving
            .iter()
            .copied()
            .filter(|&n| n != from)
            .collect();
        // The leader coordinates; it provides only when no other member serves.
        if self.view.me_serving && choices.is_empty() {
            choices.push(self.me);
        }
        choices.sort_unstable();
        if !leads
            || choices.is_empty()
            || (self.book.len() >= MAX_BOOK && !self.book.contains_key(&from))
        {
            r.flags = FLAG_RETRY;
        } else {
            self.turn = self.turn.wrapping_add(1);
            let provider = choices[self.turn % choices.len()];
            self.book.insert(from, (m.id, provider, now));
            r = r.with_reply_to(provider);
        }
        self.send(now, from, &r);
    }

    /// Provider: a requester asks for chunks (push) or a cookie (pull).
    fn provide_start(&mut self, now: u64, from: NodeId, m: &ChunkMsg, db: &StoreDb, d: Design) {
        let refuse = |s: &mut Self, op: Op, id: u64| {
            let mut r = ChunkMsg::new(op);
            r.id = id;
            r.flags = FLAG_RETRY;
            s.send(now, from, &r);
        };
        let (reply_op, id) = match d {
            Design::Push => (Op::Abort, m.id),
            Design::Pull => (Op::Cookie, 0),
        };
        if !self.view.me_serving || !self.view.members.contains(&from) {
            return refuse(self, reply_op, id);
        }
        // One session per requester: a new one replaces the old.
        self.sessions.retain(|(r, _), _| *r != from);
        if self.sessions.len() >= MAX_SESSIONS {
            return refuse(self, reply_op, id);
        }
        let snap = match db.snapshot() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no snapshot to serve a transfer from");
                return refuse(self, reply_op, id);
            }
        };
        let id = match d {
            Design::Push => m.id,
            Design::Pull => self.fresh_id(now),
        };
        let (version, chain) = (snap.version, snap.chain);
        let s = Session {
            id,
            snap,
            starts: BTreeMap::new(),
            next: 0,
            cursor: m.last_key.clone(),
            ended: false,
            acked: 0,
            heard_at: now,
        };
        self.sessions.insert((from, id), s);
        match d {
            Design::Push => self.push_more(now, (from, id)),
            Design::Pull => {
                let mut r = ChunkMsg::new(Op::Cookie);
                r.id = id;
                r.version = version;
                r.chain = Some(chain);
                self.send(now, from, &r);
            }
        }
    }

    /// Cuts chunk `n` of a session (the next one, or one of the last window again).
    fn cut(&mut self, key: (NodeId, u64), n: u64) -> Option<ChunkMsg> {
        let (keys, bytes, window) = (
            self.cfg.chunk_keys,
            self.cfg.chunk_bytes,
            self.cfg.chunk_window as u64,
        );
        let s = self.sessions.get_mut(&key)?;
        let after = if n == s.next {
            if s.ended {
                return None;
            }
            s.cursor.clone()
        } else {
            s.starts.get(&n)?.clone()
        };
        let (pairs, last) = match s.snap.chunk(after.as_deref(), keys, bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reading a snapshot failed");
                return None;
            }
        };
        if n == s.next {
            s.starts.insert(n, after);
            s.cursor = pairs.last().map(|(k, _)| k.clone()).or(s.cursor.take());
            s.next += 1;
            s.ended = last;
            // Only the last window (and one) may be asked again.
            while s.starts.len() > window as usize + 1 {
                s.starts.pop_first();
            }
        }
        let mut m = ChunkMsg::chunk(s.id, s.snap.version, n, Chunk { pairs }, last);
        if last {
            m.chain = Some(s.snap.chain);
        }
        self.stats.chunks_served += 1;
        self.stats.bytes_served += m.chunk.encoded_len() as u64;
        Some(m)
    }

    /// Push provider: sends chunks while the window allows.
    fn push_more(&mut self, now: u64, key: (NodeId, u64)) {
        let window = self.cfg.chunk_window as u64;
        loop {
            let Some(s) = self.sessions.get(&key) else {
                return;
            };
            if s.ended || s.next >= s.acked.saturating_add(window) {
                return;
            }
            let n = s.next;
            let Some(m) = self.cut(key, n) else { return };
            self.send(now, key.0, &m);
        }
    }

    /// Push provider: an acknowledgement, or a request to send a chunk again.
    fn provide_ack(&mut self, now: u64, from: NodeId, m: &ChunkMsg) {
        let key = (from, m.id);
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        s.heard_at = now;
        if m.is_retry() {
            if let Some(c) = self.cut(key, m.chunk_no) {
                self.send(now, from, &c);
            }
            return;
        }
        // Never beyond what was sent (a stray or hostile acknowledgement).
        s.acked = s.acked.max(m.chunk_no.saturating_add(1)).min(s.next);
        let done = s.ended && s.acked >= s.next;
        if done {
            self.sessions.remove(&key);
            return;
        }
        self.push_more(now, key);
    }

    /// Pull provider: a requester asks for chunk `chunk_no` of its cookie.
    fn provide_get(&mut self, now: u64, from: NodeId, m: &ChunkMsg) {
        let key = (from, m.id);
        let Some(s) = self.sessions.get_mut(&key) else {
            let mut r = ChunkMsg::new(Op::Abort);
            r.id = m.id;
            self.send(now, from, &r);
            return;
        };
        s.heard_at = now;
        // Chunks are cut in order: one asked ahead of the next cuts those between too
        // (bounded by the window).
        let window = self.cfg.chunk_window as u64;
        if m.chunk_no >= s.next.saturating_add(window) {
            return;
        }
        while let Some(s) = self.sessions.get(&key) {
            if s.next >= m.chunk_no || s.ended {
                break;
            }
            let n = s.next;
            let Some(c) = self.cut(key, n) else { return };
            self.send(now, from, &c);
        }
        if let Some(c) = self.cut(key, m.chunk_no) {
            self.send(now, from, &c);
        }
    }

    /// Push requester: the leader's answer.
    fn on_start_reply(&mut self, now: u64, from: NodeId, m: &ChunkMsg) {
        let Req::Asking { leader, id, .. } = self.req else {
            return;
        };
        if leader != from || id != m.id {
            return;
        }
        match m.reply_to {
            Some(provider) if !m.is_retry() => {
                let mut s = ChunkMsg::new(Op::StartChunks);
                s.id = id;
                s.last_key.clone_from(&self.copy.last_key);
                self.send(now, provider, &s);
                self.begin_piece(now, provider, id, id, Some(leader));
            }
            _ => {
                self.back_off(now);
            }
        }
    }

    /// Pull requester: the provider's cookie.
    fn on_cookie(&mut self, now: u64, from: NodeId, m: &ChunkMsg) {
        let Req::Cookie { provider, .. } = self.req else {
            return;
        };
        if provider != from {
            return;
        }
        if m.is_retry() || m.id == 0 {
            self.back_off(now);
            return;
        }
        self.begin_piece(now, provider, m.id, m.id, None);
        self.pull_more(now);
    }

    fn begin_piece(
        &mut self,
        now: u64,
        provider: NodeId,
        id: u64,
        transfer: u64,
        leader: Option<NodeId>,
    ) {
        self.copy.provider = Some(provider);
        if !self.copy.started {
            self.copy.started = true;
            self.stats.copies += 1;
            self.record("start", Some(provider), 0);
        }
        self.req = Req::Receiving {
            piece: Piece {
                provider,
                id,
                transfer,
                next: 0,
                asked: 0,
                ahead: BTreeMap::new(),
                progress_at: now,
            },
            leader: leader.map(|l| (l, now)),
            next_heartbeat: now + self.cfg.heartbeat_ms * MS,
        };
    }

    /// Pull requester: keeps `chunk_window` chunks asked.
    fn pull_more(&mut self, now: u64) {
        let window = self.cfg.chunk_window as u64;
        let mut asks = Vec::new();
        if let Req::Receiving { piece, .. } = &mut self.req {
            while piece.asked < piece.next + window {
                asks.push((piece.provider, piece.id, piece.asked));
                piece.asked += 1;
            }
        }
        for (to, id, n) in asks {
            let mut g = ChunkMsg::new(Op::GetChunk);
            g.id = id;
            g.chunk_no = n;
            self.send(now, to, &g);
        }
    }

    /// Requester: a chunk.
    fn on_chunk(&mut self, now: u64, from: NodeId, m: ChunkMsg) {
        let window = self.cfg.chunk_window as u64;
        let design = self.cfg.design;
        let Req::Receiving { piece, .. } = &mut self.req else {
            return;
        };
        if piece.provider != from || piece.id != m.id {
            return;
        }
        if m.chunk_no < piece.next || m.chunk_no >= piece.next + window {
            return; // Already applied, or beyond the window.
        }
        if m.verify_crc().is_err() {
            // Never applied: asked again.
            self.stats.crc_failures += 1;
            self.copy.resent_bytes += m.chunk.encoded_len() as u64;
            let (op, flags) = match design {
                Design::Push => (Op::ChunkReply, FLAG_RETRY),
                Design::Pull => (Op::GetChunk, super::chunk_msg::Flags::EMPTY),
            };
            let mut r = ChunkMsg::new(op);
            r.id = m.id;
            r.chunk_no = m.chunk_no;
            r.flags = flags;
            let to = piece.provider;
            self.send(now, to, &r);
            return;
        }
        piece.ahead.insert(m.chunk_no, m);
        // Apply what is in order.
        let mut applied = Vec::new();
        while let Some(c) = piece.ahead.remove(&piece.next) {
            piece.next += 1;
            piece.progress_at = now;
            applied.push(c);
        }
        if applied.is_empty() {
            return;
        }
        let (provider, id, transfer, next) = (piece.provider, piece.id, piece.transfer, piece.next);
        let mut whole = None;
        for c in applied {
            if !self.copy.begun {
                self.copy.begun = true;
                self.fetched.push_back(Fetched::Begin);
            }
            self.copy.base = Some(self.copy.base.map_or(c.version, |b| b.min(c.version)));
            self.copy.top = self.copy.top.max(c.version);
            self.copy.retries = 0;
            self.copy.chunks += 1;
            self.copy.keys += c.chunk.pairs.len() as u64;
            self.copy.bytes += c
                .chunk
                .pairs
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
            if let Some((k, _)) = c.chunk.pairs.last() {
                self.copy.last_key = Some(k.clone());
            }
            let last = c.is_last();
            let (version, chain) = (c.version, c.chain);
            self.fetched.push_back(Fetched::Pairs(c.chunk.pairs));
            self.record("chunk", Some(provider), version);
            if last && version < self.copy.top {
                // A piece came from a newer snapshot than the last: replaying the writes
                // after the first cannot make the copy consistent at this version.
                self.abort(now, "the last piece is older than an earlier one");
                return;
            }
            if last {
                whole = Some(Fetched::Whole {
                    base: self.copy.base.unwrap_or(version),
                    version,
                    chain: chain.unwrap_or([0; 32]),
                });
                break;
            }
        }
        match design {
            Design::Push => {
                let mut r = ChunkMsg::new(Op::ChunkReply);
                r.id = id;
                r.chunk_no = next - 1;
                self.send(now, provider, &r);
                if let Some(w) = whole {
                    let Req::Receiving { leader, .. } = &self.req else {
                        return;
                    };
                    let leader = leader.map_or(provider, |(l, _)| l);
                    let mut f = ChunkMsg::new(Op::Finish);
                    f.id = transfer;
                    if let Fetched::Whole { version, .. } = w {
                        f.version = version;
                    }
                    self.send(now, leader, &f);
                    self.req = Req::Finishing {
                        leader,
                        id: transfer,
                        since: now,
                        whole: w,
                    };
                }
            }
            Design::Pull => match whole {
                Some(w) => {
                    self.req = Req::Idle;
                    self.complete(w);
                }
                None => self.pull_more(now),
            },
        }
    }

    /// The copy is whole: handed to the store, which catches it up and then serves.
    fn complete(&mut self, whole: Fetched) {
        self.stats.completed += 1;
        self.fetched.push_back(whole);
        self.wanted = false;
        self.req = Req::Idle;
    }

    /// Returns the `finish` record of the copy, which the store writes once it caught up
    /// at `version` (then forgets the copy).
    pub fn finished_record(&mut self, version: u64) -> Body {
        self.record("finish", self.copy.provider, version);
        let r = self.records.pop_back().expect("just pushed");
        self.copy = Copy::default();
        r
    }
}

#[cfg(test)]
mod tests;
