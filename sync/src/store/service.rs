//! The `store` service: writes to the store are its operations, multicast on the ring and
//! applied in agreed order, each bumping the store's version by one; after every regular
//! configuration its sync brings members that are behind up to the most advanced one: by the
//! recent path (Ceph's: the missing writes from the log, multicast on the ring), or, for a
//! member the log cannot bring back, by a full copy multicast on the ring during the sync
//! (the full transfer's ring path).
//!
//! # Which writes apply
//! A write applies only where every node that applies it applies the same sequence before
//! it, which extended virtual synchrony gives this way:
//! - delivered *safe* (every member had it) in a *regular* configuration of a *primary*
//!   component (a strict majority of the configured nodes), on a node that serves: applied
//!   at once. An agreed write could be applied by a member that alone received it and is
//!   then cut off, so writes are submitted safe;
//! - delivered in a *transitional* configuration (the ring broke; the members that came
//!   along deliver what they have, alike): held until the next regular configuration, and
//!   applied before its sync if that configuration is primary too, else dropped. A member
//!   cut off into a minority may have delivered some of these writes safe in the old
//!   configuration and applied them: the majority's members all received them (that is
//!   what safe means) and apply them here, so the minority's history stays a prefix of the
//!   majority's. A minority applies nothing of its own;
//! - anything else (a minority, a node that does not serve): counted as not applied.
//!
//! The chain hash of every history ([`StoreDb::chain`]) checks all of it: a member whose
//! history is no prefix of the provider's is told from one that is only behind.
//!
//! # The sync
//! Every member multicasts its version and chain (`have`); once all are in, the provider
//! (the most advanced member, the lowest id among equals) multicasts the plan (the target
//! version and chain, and the members it cannot bring back from its log: too far behind,
//! or diverged) and then every write of its log after the least advanced member it can
//! serve; each member applies those after its own version, checking the chain (the *recent
//! path*). A member at the target serves at the end of the sync; one listed in the plan is
//! *behind*: it serves no read and applies no write until a full copy brings it back, by
//! one of two paths (`path`):
//!
//! - `unicast` (the default): the chunk protocol ([`super::transfer`]), point to point from
//!   one provider, after the sync, while the ring goes on carrying writes. The behind member
//!   tracks the version the serving members are at (it sees the same deliveries and knows
//!   which of them apply) and keeps the writes they apply meanwhile (at most `catchup_keep`,
//!   by default `log_keep`). Its copy is loaded into the emptied store, marked loading
//!   durably before the first chunk ([`StoreDb::begin_load`]); when the copy is whole (its
//!   last chunk, at the snapshot's version `V` with the chain there) and the ring's writes
//!   have reached `V`, the writes made between the snapshots of a resumed copy's pieces are
//!   replayed over it, it takes `V` and the chain ([`StoreDb::finish_load`]), applies the
//!   writes kept after `V`, and serves (its `finish` record). A copy that the kept writes
//!   cannot catch up (too many writes, or the member missed some in another configuration)
//!   starts again.
//! - `ring`: the provider multicasts its whole store at the target during the sync in
//!   chunks of about 48 KiB (`snapshot`); the whole ring's sync waits for the copy.
//!
//! Either way a crash during a copy leaves a store marked loading, which reports a chain no
//! history has and so is copied again, never served as whole.
//!
//! # Records
//! `{"ev":"store","version":V,"digest":"..."}` at every completed sync where the node
//! serves and when a copy is caught up; `{"ev":"store_sync","phase":...,"path":...,
//! "design":...,"provider":N,"version":V,"bytes":B,"keys":K,"last_key":"...","chunks":C,
//! "resent_bytes":R}` on the member a full copy goes to: `start`, `chunk` (each chunk
//! applied), `resume`, `finish`, `abort` (the ring path writes `start`, `finish`, `abort`,
//! without `design`, `last_key`, `chunks` and `resent_bytes`).
//!
//! # Authentication
//! The chunk protocol's datagrams do not pass the ring's authenticator: a real node with a
//! key refuses to start with `path = "unicast"` (see `ringlab_net::Node::start`).

use super::chunk_msg::{MAX_CHUNK_BUDGET, MAX_CHUNK_KEYS};
use super::db::{StoreDb, StoreError};
use super::transfer::{Design, Fetched, Path, Transfer, TransferConfig, TransferStats, View};
use super::transport::TransportConfig;
use super::write::{Write, MAX_KEY, MAX_VALUE};
use crate::control::{Args, Control, ControlContext, ControlError};
use crate::engine::{Outbox, Progress, SyncContext};
use crate::msg::ServiceId;
use crate::service::{
    OpDelivery, Plugin, Service, ServiceConfig, ServiceConfigError, StateSize, Storage, Workload,
};
use bytes::Bytes;
use rand::Rng;
use ringlab_records::Body;
use ringlab_ring::wire::{put_blob, DecodeError, Reader};
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The store service's number.
pub const STORE_SERVICE: ServiceId = 4;

/// The database's file in a node's state directory (or its simulated disk's name).
pub const DB_FILE: &str = "store.redb";

/// The sync messages' encoding version.
const SYNC_VERSION: u8 = 1;

/// The most members a plan lists.
const MAX_MEMBERS: usize = 1024;

/// Log entries read at once by the provider.
const LOG_BATCH: usize = 64;

/// The most pairs one snapshot chunk carries.
const SNAPSHOT_PAIRS: usize = 1024;

/// About how many bytes one snapshot chunk carries (a lone larger pair travels alone).
const SNAPSHOT_BYTES: usize = 48 * 1024;

/// The chain a loading store reports: it matches no history, so the provider sends it a
/// full copy.
const LOADING_CHAIN: [u8; 32] = [0xff; 32];

/// The service's configuration (`[service_config.store]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Writes kept in the log (`store_log_keep`, default 10,000): a member within this many
    /// of the most advanced is brought back by the recent path.
    pub log_keep: u64,
    /// How a full copy travels: `unicast` (the chunk protocol, default) or `ring`.
    pub path: Path,
    /// The chunk protocol's design: `pull` (default) or `push`.
    pub design: Design,
    /// Bytes of keys and values a chunk carries at most (default 1 MiB; 1 KiB to 4 MiB).
    pub chunk_bytes: usize,
    /// Keys a chunk carries at most (default 2000, as Ceph).
    pub chunk_keys: usize,
    /// Chunks in flight (default 1, as the seed).
    pub chunk_window: usize,
    /// Resumes in a row before a copy starts again from nothing (default 5).
    pub sync_max_retries: u32,
    /// Whether a copy whose provider died or stalled goes on after its last key at another
    /// (default true); false: it starts again from nothing, as Ceph's pull design does (to
    /// measure what resuming saves).
    pub resume: bool,
    /// Pacing of the transfer's datagrams, bytes/s (default none).
    pub transfer_rate_limit: Option<u64>,
    /// The transfer's largest datagram on the wire (default 1400: fits a 1500-byte MTU; a
    /// real node refuses one above its `netmtu`).
    pub datagram_bytes: usize,
    /// Datagrams in flight per peer (default 64).
    pub datagram_window: usize,
    /// The stall timeout's base, ms (default 2000; see the transfer's docs).
    pub timeout_ms: u64,
    /// Push: the requester's heartbeat to the leader, ms (default 500).
    pub heartbeat_ms: u64,
    /// Pull: a provider forgets a cookie idle this long, ms (default 10,000).
    pub cookie_timeout_ms: u64,
    /// Writes delivered during a copy that the requester keeps to catch it up (default:
    /// `log_keep`); past that the copy starts again.
    pub catchup_keep: Option<u64>,
    /// The database's own page cache, bytes (default 64 MiB; 1 MiB to 64 GiB): what a
    /// node's memory holds of its store, whatever the store's size.
    pub cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let t = TransferConfig::default();
        Self {
            log_keep: 10_000,
            path: Path::Unicast,
            design: t.design,
            chunk_bytes: t.chunk_bytes,
            chunk_keys: t.chunk_keys,
            chunk_window: t.chunk_window,
            sync_max_retries: t.sync_max_retries,
            resume: t.resume,
            transfer_rate_limit: None,
            datagram_bytes: t.transport.datagram_bytes,
            datagram_window: t.transport.window,
            timeout_ms: t.timeout_ms,
            heartbeat_ms: t.heartbeat_ms,
            cookie_timeout_ms: t.cookie_timeout_ms,
            catchup_keep: None,
            cache_bytes: 64 << 20,
        }
    }
}

impl StoreConfig {
    /// Checks every knob's range.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        check(
            (1..=10_000_000).contains(&self.log_keep),
            format!("log_keep {} must be 1 to 10000000", self.log_keep),
        )?;
        check(
            (1024..=MAX_CHUNK_BUDGET).contains(&self.chunk_bytes),
            format!(
                "chunk_bytes {} must be 1024 to {MAX_CHUNK_BUDGET}",
                self.chunk_bytes
            ),
        )?;
        check(
            (1..=MAX_CHUNK_KEYS).contains(&self.chunk_keys),
            format!(
                "chunk_keys {} must be 1 to {MAX_CHUNK_KEYS}",
                self.chunk_keys
            ),
        )?;
        check(
            (1..=64).contains(&self.chunk_window),
            format!("chunk_window {} must be 1 to 64", self.chunk_window),
        )?;
        check(
            self.transfer_rate_limit.is_none_or(|r| r >= 1024),
            "transfer_rate_limit must be at least 1024 bytes/s".into(),
        )?;
        check(
            (100..=600_000).contains(&self.timeout_ms)
                && (10..=60_000).contains(&self.heartbeat_ms)
                && (100..=3_600_000).contains(&self.cookie_timeout_ms),
            "timeout_ms 100..600000, heartbeat_ms 10..60000, cookie_timeout_ms 100..3600000".into(),
        )?;
        check(
            self.catchup_keep
                .is_none_or(|k| (1..=10_000_000).contains(&k)),
            "catchup_keep must be 1 to 10000000".into(),
        )?;
        check(
            ((1 << 20)..=(64 << 30)).contains(&self.cache_bytes),
            format!(
                "cache_bytes {} must be 1048576 (1 MiB) to 68719476736 (64 GiB)",
                self.cache_bytes
            ),
        )?;
        self.transfer().transport.validate()
    }

    /// The chunk protocol's knobs.
    pub fn transfer(&self) -> TransferConfig {
        let d = TransferConfig::default();
        TransferConfig {
            design: self.design,
            chunk_bytes: self.chunk_bytes,
            chunk_keys: self.chunk_keys,
            chunk_window: self.chunk_window,
            sync_max_retries: self.sync_max_retries,
            resume: self.resume,
            heartbeat_ms: self.heartbeat_ms,
            timeout_ms: self.timeout_ms,
            cookie_timeout_ms: self.cookie_timeout_ms,
            retry_ms: d.retry_ms,
            transport: TransportConfig {
                // The app's framing travels in front (`crate::app::DATAGRAM_HEADER`).
                datagram_bytes: self.datagram_bytes - crate::app::DATAGRAM_HEADER,
                window: self.datagram_window,
                rate_limit: self.transfer_rate_limit,
                ..d.transport
            },
        }
    }
}

/// A sync message of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSync {
    /// The sender's version and chain.
    Have {
        /// Its version.
        version: u64,
        /// Its chain hash.
        chain: [u8; 32],
    },
    /// The provider's plan.
    Plan {
        /// The version every member should reach.
        target: u64,
        /// The chain hash at the target.
        chain: [u8; 32],
        /// Members the log cannot bring back (too far behind, or diverged).
        far: Vec<NodeId>,
    },
    /// One chunk of the provider's store at the target, for the members its log cannot
    /// bring back (the full transfer's ring path): pairs in key order.
    Snapshot {
        /// The pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// The last chunk.
        last: bool,
    },
    /// One write of the provider's log.
    Entry {
        /// Its version.
        version: u64,
        /// The chain hash after it.
        chain: [u8; 32],
        /// The write.
        write: Write,
    },
}

impl StoreSync {
    /// Returns its encoding: version, kind, fields.
    pub fn encode(&self) -> Bytes {
        let mut b = vec![SYNC_VERSION];
        match self {
            Self::Have { version, chain } => {
                b.push(1);
                b.extend_from_slice(&version.to_be_bytes());
                b.extend_from_slice(chain);
            }
            Self::Plan { target, chain, far } => {
                b.push(2);
                b.extend_from_slice(&target.to_be_bytes());
                b.extend_from_slice(chain);
                b.extend_from_slice(&(far.len() as u16).to_be_bytes());
                for n in far {
                    b.extend_from_slice(&n.to_be_bytes());
                }
            }
            Self::Snapshot { pairs, last } => {
                b.push(4);
                b.push(u8::from(*last));
                b.extend_from_slice(&(pairs.len() as u16).to_be_bytes());
                for (k, v) in pairs {
                    put_blob(&mut b, k);
                    put_blob(&mut b, v);
                }
            }
            Self::Entry {
                version,
                chain,
                write,
            } => {
                b.push(3);
                b.extend_from_slice(&version.to_be_bytes());
                b.extend_from_slice(chain);
                put_blob(&mut b, &write.encode());
            }
        }
        Bytes::from(b)
    }

    /// Decodes one (a typed error for garbage, never a panic).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        if r.u8("store sync version")? != SYNC_VERSION {
            return Err(DecodeError::Invalid("store sync version"));
        }
        let kind = r.u8("store sync kind")?;
        let hash = |r: &mut Reader<'_>, what| -> Result<[u8; 32], DecodeError> {
            let mut h = [0u8; 32];
            for x in &mut h {
                *x = r.u8(what)?;
            }
            Ok(h)
        };
        let m = match kind {
            1 => Self::Have {
                version: r.u64("have version")?,
                chain: hash(&mut r, "have chain")?,
            },
            2 => {
                let target = r.u64("plan target")?;
                let chain = hash(&mut r, "plan chain")?;
                let n = r.count("plan far count", MAX_MEMBERS)?;
                let mut far = Vec::with_capacity(n);
                for _ in 0..n {
                    far.push(r.u32("plan far node")?);
                }
                Self::Plan { target, chain, far }
            }
            3 => {
                let version = r.u64("entry version")?;
                let chain = hash(&mut r, "entry chain")?;
                let w = r.blob("entry write", MAX_KEY + MAX_VALUE + 16)?;
                Self::Entry {
                    version,
                    chain,
                    write: Write::decode(w)?,
                }
            }
            4 => {
                let last = match r.u8("snapshot last")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("snapshot last")),
                };
                let n = r.count("snapshot count", SNAPSHOT_PAIRS)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = r.blob("snapshot key", MAX_KEY)?.to_vec();
                    let v = r.blob("snapshot value", MAX_VALUE)?.to_vec();
                    pairs.push((k, v));
                }
                Self::Snapshot { pairs, last }
            }
            _ => return Err(DecodeError::Invalid("store sync kind")),
        };
        r.end()?;
        Ok(m)
    }
}

/// Its control commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Version, digest, standing.
    Status,
    /// Writes `key` = `value` through the ring.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Deletes `key` through the ring.
    Delete {
        /// The key.
        key: String,
    },
    /// Reads `key` here (refused while this node is behind).
    Get {
        /// The key.
        key: String,
    },
    /// Writes `keys` keys `fill-FROM`... of `size` bytes each through the ring.
    Fill {
        /// How many.
        keys: u64,
        /// Bytes of each value.
        size: usize,
        /// The first key's number (default 0), so that several fills make one larger store.
        #[serde(default)]
        from: u64,
    },
}

/// The reply to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Always true.
    pub ok: bool,
    /// The store's version.
    pub version: u64,
    /// The digest of its contents (hex).
    pub digest: String,
    /// Keys and their bytes.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// `serving`; `unsynced` (a configuration changed, its sync has not completed); or
    /// `behind` (waiting for a full copy, or catching one up).
    pub standing: String,
    /// Whether this node's component is primary (writes apply).
    pub primary: bool,
    /// Writes delivered but not applied (minority, transitional, agreed) and missed while
    /// behind.
    pub not_applied: u64,
    /// The chunk protocol's counters on this node (as requester, provider and leader).
    #[serde(default)]
    pub transfer: TransferStats,
    /// Bytes the chunk protocol holds now (its transport's buffers and the chunks that came
    /// ahead): bounded by the windows, not by the store.
    #[serde(default)]
    pub transfer_held_bytes: u64,
}

/// The reply to `get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Got {
    /// Always true.
    pub ok: bool,
    /// The value (as UTF-8, lossily), if the key is there.
    pub value: Option<String>,
    /// The version it was read at.
    pub version: u64,
}

/// Where a node's store stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// No sync completed since the last configuration change (or the start): it applies no
    /// write and serves no read (writes delivered meanwhile are applied by no member).
    Unsynced,
    /// Its last sync completed with it at the target.
    Serving,
    /// Its last sync could not bring it back (too far behind, or diverged): waiting for a
    /// full copy (the unicast path) or for the next sync (the ring path's copy was cut).
    Behind(u64),
}

impl Standing {
    fn word(self) -> &'static str {
        match self {
            Self::Unsynced => "unsynced",
            Self::Serving => "serving",
            Self::Behind(_) => "behind",
        }
    }
}

/// The store service of one node.
pub struct StoreService {
    me: NodeId,
    nodes: Vec<NodeId>,
    db: StoreDb,
    members: Vec<NodeId>,
    primary: bool,
    /// Where it stands: it serves only once a sync completed with it at the target.
    standing: Standing,
    // The running sync.
    sent_have: bool,
    haves: BTreeMap<NodeId, (u64, [u8; 32])>,
    plan: Option<(u64, [u8; 32], Vec<NodeId>)>,
    plan_sent: bool,
    next_entry: u64,
    /// The provider's snapshot cursor: the next key to send (none: not started or done).
    snap_next: Option<Vec<u8>>,
    snap_done: bool,
    diverged: bool,
    records: VecDeque<Body>,
    malformed: u64,
    not_applied: u64,
    /// A database failure: the node stops applying (logged once).
    failed: Option<String>,
    /// This sync is loading a full copy here; it loaded one.
    loading_now: bool,
    loaded: bool,
    copy_from: Option<NodeId>,
    /// Writes delivered in a transitional configuration after a primary one, waiting for
    /// the next regular configuration.
    transitional: Vec<Write>,
    cfg: StoreConfig,
    /// The chunk protocol (the unicast path).
    transfer: Transfer,
    /// The time of the last input.
    now: u64,
    /// A sync completed: the transfer learns the members at the next tick.
    view_dirty: bool,
    /// The members the last plan could not bring back.
    far: Vec<NodeId>,
    /// Behind, waiting for a copy: the writes the serving members apply meanwhile.
    track: Option<Track>,
    /// The copy is whole (first and last piece's versions, the last one's chain), waiting
    /// for the ring's writes to reach its version.
    whole: Option<(u64, u64, [u8; 32])>,
    /// The copy being fetched cannot be caught up (the node missed writes): start again.
    restart: bool,
}

/// What a node waiting for a copy tracks of the ring: the version the serving members are
/// at (each write they apply bumps it; this node sees the same deliveries and knows which
/// apply, see the module docs) and the last writes, to catch the copy up.
#[derive(Debug)]
struct Track {
    version: u64,
    /// Every write after this version is held.
    floor: u64,
    writes: VecDeque<(u64, Write)>,
    keep: usize,
}

impl Track {
    fn push(&mut self, w: Write) {
        self.version += 1;
        self.writes.push_back((self.version, w));
        while self.writes.len() > self.keep {
            if let Some((v, _)) = self.writes.pop_front() {
                self.floor = v;
            }
        }
    }
}

impl StoreService {
    /// Creates the service of `me` in a cluster of `nodes`, on `db`, configured by `cfg`.
    pub fn with(me: NodeId, nodes: &[NodeId], db: StoreDb, cfg: StoreConfig) -> Self {
        Self {
            transfer: Transfer::new(me, cfg.transfer()),
            cfg,
            now: 0,
            view_dirty: false,
            far: Vec::new(),
            track: None,
            whole: None,
            restart: false,
            me,
            nodes: if nodes.is_empty() {
                vec![me]
            } else {
                nodes.to_vec()
            },
            db,
            members: vec![],
            primary: false,
            standing: Standing::Unsynced,
            sent_have: false,
            haves: BTreeMap::new(),
            plan: None,
            plan_sent: false,
            next_entry: 0,
            snap_next: None,
            snap_done: false,
            diverged: false,
            records: VecDeque::new(),
            malformed: 0,
            not_applied: 0,
            failed: None,
            loading_now: false,
            loaded: false,
            copy_from: None,
            transitional: Vec::new(),
        }
    }

    /// Returns its database.
    pub fn db(&self) -> &StoreDb {
        &self.db
    }

    /// Returns whether it serves: its last sync completed with it at the target.
    pub fn serving(&self) -> bool {
        self.standing == Standing::Serving && self.failed.is_none()
    }

    fn fail(&mut self, e: StoreError) {
        if self.failed.is_none() {
            tracing::error!(error = %e, "the store failed; this node stops applying writes");
            self.failed = Some(e.to_string());
        }
    }

    /// Makes the writes applied during this input durable (the end of every input: the
    /// host drains records and replies only after it).
    fn flush(&mut self) {
        if let Err(e) = self.db.flush() {
            self.fail(e);
        }
    }

    fn apply(&mut self, w: &Write) {
        let v = self.db.version() + 1;
        if let Err(e) = self.db.apply(v, w) {
            self.fail(e);
        }
    }

    /// Writes a `store_sync` record of the ring path's copy (the store's size so far).
    fn ring_copy_record(&mut self, phase: &str, provider: NodeId, version: u64) {
        let (keys, bytes) = self.db.size();
        self.records.push_back(Body::StoreSync {
            phase: phase.into(),
            path: Path::Ring.as_str().into(),
            design: None,
            last_key: None,
            chunks: None,
            resent_bytes: None,
            provider,
            version,
            bytes,
            keys,
        });
    }

    /// Carries out what the chunk protocol hands over: begin a copy, load its pairs, take it
    /// as whole, drop it.
    fn take_fetched(&mut self) {
        while let Some(f) = self.transfer.poll_fetched() {
            if self.failed.is_some() {
                continue;
            }
            let done = match f {
                Fetched::Begin => {
                    self.whole = None; // A new copy supersedes any other.
                    self.db.begin_load()
                }
                Fetched::Pairs(p) => self.db.load_chunk(&p),
                Fetched::Whole {
                    base,
                    version,
                    chain,
                } => {
                    self.whole = Some((base, version, chain));
                    self.catch_up();
                    Ok(())
                }
                Fetched::Aborted => {
                    self.whole = None;
                    Ok(())
                }
            };
            if let Err(e) = done {
                self.fail(e);
            }
        }
    }

    /// A whole copy takes the writes made since its snapshots once the ring's writes reach
    /// its version: the node then serves. A copy the held writes cannot catch up (too many
    /// writes meanwhile) starts again.
    fn catch_up(&mut self) {
        // Not during a sync: its end decides again (see `sync_activate`).
        if !matches!(self.standing, Standing::Behind(_)) {
            return;
        }
        let (Some((base, version, chain)), Some(t)) = (self.whole, self.track.as_ref()) else {
            return;
        };
        if t.version < version {
            return; // The provider was ahead of this node's deliveries: wait for them.
        }
        if t.floor > base {
            self.whole = None;
            self.restart = true;
            return;
        }
        let t = self.track.take().expect("checked");
        self.whole = None;
        let done = (|| {
            // Over the whole copy, the writes between the pieces' snapshots (a put or a
            // delete sets its key outright: see `StoreDb::load_write`).
            for (_, w) in t.writes.iter().filter(|(v, _)| *v > base && *v <= version) {
                self.db.load_write(w)?;
            }
            self.db.finish_load(version, chain)?;
            for (v, w) in t.writes.iter().filter(|(v, _)| *v > version) {
                self.db.apply(*v, w)?;
            }
            Ok::<(), StoreError>(())
        })();
        if let Err(e) = done {
            self.fail(e);
            return;
        }
        self.standing = Standing::Serving;
        self.view_dirty = true;
        let finish = self.transfer.finished_record(self.db.version());
        self.records.push_back(finish);
        self.records.push_back(Body::Store {
            version: self.db.version(),
            digest: self.db.digest().hex(),
        });
    }

    /// The provider and its target (version, chain): the most advanced member, lowest id.
    fn provider(&self) -> Option<(NodeId, u64, [u8; 32])> {
        self.haves
            .iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
            .map(|(&n, &(v, c))| (n, v, c))
    }

    /// The provider's plan: the members it cannot serve from its log, and the least version
    /// among those it can (none: nobody needs entries).
    fn plan_for(&self, target: u64, chain: [u8; 32]) -> (Vec<NodeId>, Option<u64>) {
        let mut far = Vec::new();
        let mut from: Option<u64> = None;
        for (&n, &(v, c)) in &self.haves {
            if v == target {
                if c != chain {
                    far.push(n);
                }
                continue;
            }
            let served =
                v + 1 >= self.db.log_first() && self.db.chain_at(v).ok().flatten() == Some(c);
            if served {
                from = Some(from.map_or(v, |f| f.min(v)));
            } else {
                far.push(n);
            }
        }
        (far, from)
    }
}

impl Service for StoreService {
    fn id(&self) -> ServiceId {
        STORE_SERVICE
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn sync_init(&mut self, ctx: &SyncContext) {
        self.members = ctx.members.clone();
        let counted = ctx
            .members
            .iter()
            .filter(|m| self.nodes.contains(m))
            .count();
        self.primary = 2 * counted > self.nodes.len();
        // The old configuration's tail, delivered in the transitional one: applied if this
        // one is primary as well (see the module docs).
        for w in std::mem::take(&mut self.transitional) {
            if self.primary && self.serving() {
                self.apply(&w);
            } else if let (true, Standing::Behind(_), Some(t)) =
                (self.primary, self.standing, self.track.as_mut())
            {
                t.push(w);
            } else {
                self.not_applied += 1;
            }
        }
        self.standing = Standing::Unsynced;
        self.sync_abort();
    }

    fn state_token(&self) -> u64 {
        self.db.version()
    }

    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
        if !self.sent_have {
            let chain = if self.db.loading() {
                LOADING_CHAIN
            } else {
                self.db.chain()
            };
            let have = StoreSync::Have {
                version: self.db.version(),
                chain,
            };
            if !out.push(have.encode()) {
                return Progress::NotDone;
            }
            self.sent_have = true;
        }
        if self.haves.len() < self.members.len() {
            return Progress::NotDone; // Waiting for every member's version.
        }
        let Some((provider, target, chain)) = self.provider() else {
            return Progress::Done;
        };
        if provider != self.me {
            return Progress::Done;
        }
        if !self.plan_sent {
            let (far, from) = self.plan_for(target, chain);
            self.snap_done = far.is_empty() || self.cfg.path == Path::Unicast;
            let plan = StoreSync::Plan { target, chain, far };
            if !out.push(plan.encode()) {
                return Progress::NotDone;
            }
            self.plan_sent = true;
            self.next_entry = from.map_or(target + 1, |f| f + 1);
        }
        // The full copy for the members the log cannot bring back (the ring path).
        while !self.snap_done {
            let from = self.snap_next.clone().unwrap_or_default();
            let batch = match self.db.scan(&from, SNAPSHOT_PAIRS) {
                Ok(b) => b,
                Err(e) => {
                    self.fail(e);
                    return Progress::Done;
                }
            };
            let mut pairs = Vec::new();
            let mut size = 0;
            for (k, v) in batch.iter() {
                if !pairs.is_empty() && size + k.len() + v.len() > SNAPSHOT_BYTES {
                    break;
                }
                size += k.len() + v.len() + 8;
                pairs.push((k.clone(), v.clone()));
            }
            let last = pairs.len() == batch.len() && batch.len() < SNAPSHOT_PAIRS;
            let next = pairs.last().map(|(k, _)| {
                let mut n = k.clone();
                n.push(0);
                n
            });
            if !out.push(StoreSync::Snapshot { pairs, last }.encode()) {
                return Progress::NotDone;
            }
            self.snap_next = next;
            self.snap_done = last;
        }
        while self.next_entry <= target {
            let batch = match self.db.log_after(self.next_entry - 1, LOG_BATCH) {
                Ok(Some(b)) if !b.is_empty() => b,
                Ok(_) => break, // The log moved on meanwhile: the far list covers it.
                Err(e) => {
                    self.fail(e);
                    break;
                }
            };
            for e in batch {
                if e.version > target {
                    self.next_entry = target + 1;
                    break;
                }
                let m = StoreSync::Entry {
                    version: e.version,
                    chain: e.chain,
                    write: e.write,
                };
                if !out.push(m.encode()) {
                    return Progress::NotDone;
                }
                self.next_entry = e.version + 1;
            }
        }
        Progress::Done
    }

    fn sync_deliver(&mut self, sender: NodeId, payload: &[u8]) -> Option<String> {
        match StoreSync::decode(payload) {
            Ok(StoreSync::Have { version, chain }) => {
                self.haves.insert(sender, (version, chain));
            }
            Ok(StoreSync::Plan { target, chain, far }) => {
                self.plan = Some((target, chain, far));
            }
            Ok(StoreSync::Snapshot { pairs, last }) => {
                let (target, chain, far) = self.plan.clone()?;
                if far.contains(&self.me) && self.failed.is_none() && self.cfg.path == Path::Ring {
                    let started = !self.loading_now;
                    let loaded = (|| {
                        if !self.loading_now {
                            self.db.begin_load()?;
                            self.loading_now = true;
                        }
                        self.db.load_chunk(&pairs)?;
                        if last {
                            self.db.finish_load(target, chain)?;
                            self.loading_now = false;
                            self.loaded = true;
                        }
                        Ok::<(), StoreError>(())
                    })();
                    if let Err(e) = loaded {
                        self.fail(e);
                    }
                    if started {
                        self.ring_copy_record("start", sender, target);
                    }
                    if last {
                        self.ring_copy_record("finish", sender, target);
                    }
                    self.copy_from = Some(sender);
                }
            }
            Ok(StoreSync::Entry {
                version,
                chain,
                write,
            }) => {
                let far = self
                    .plan
                    .as_ref()
                    .is_none_or(|(_, _, far)| far.contains(&self.me));
                if !far && !self.diverged && version == self.db.version() + 1 {
                    self.apply(&write);
                    if self.db.chain() != chain {
                        self.diverged = true;
                    }
                }
            }
            Err(_) => self.malformed += 1,
        }
        None
    }

    fn sync_activate(&mut self) {
        let (target, chain, far) = match self.plan.take() {
            Some(p) => p,
            None => (self.db.version(), self.db.chain(), vec![]),
        };
        let at_target =
            self.db.version() == target && self.db.chain() == chain && !self.db.loading();
        let copied = far.contains(&self.me) && self.loaded;
        self.standing = if (far.contains(&self.me) && !copied) || self.diverged || !at_target {
            Standing::Behind(target)
        } else {
            Standing::Serving
        };
        if self.serving() {
            self.records.push_back(Body::Store {
                version: self.db.version(),
                digest: self.db.digest().hex(),
            });
        }
        if self.cfg.path == Path::Unicast {
            match self.standing {
                Standing::Behind(target) => {
                    // The writes the serving members apply from here on bump `target`.
                    let broken = self.track.as_ref().is_some_and(|t| t.version != target);
                    if broken || self.track.is_none() {
                        // A copy begun before missed writes it cannot get back.
                        self.restart |= broken && (self.whole.is_some() || self.db.loading());
                        self.whole = None;
                        self.track = Some(Track {
                            version: target,
                            floor: target,
                            writes: VecDeque::new(),
                            keep: self.cfg.catchup_keep.unwrap_or(self.cfg.log_keep) as usize,
                        });
                    }
                }
                _ => {
                    self.track = None;
                    self.whole = None;
                }
            }
            self.far = far;
            self.view_dirty = true;
            // The transitional tail counted at this configuration's start may have brought
            // the ring's writes to a whole copy's version.
            self.catch_up();
        }
        self.sync_abort();
    }

    fn sync_abort(&mut self) {
        if self.loading_now {
            let version = self.plan.as_ref().map_or(0, |p| p.0);
            self.ring_copy_record("abort", self.copy_from.unwrap_or(0), version);
        }
        self.copy_from = None;
        self.sent_have = false;
        self.haves.clear();
        self.plan = None;
        self.plan_sent = false;
        self.next_entry = 0;
        self.snap_next = None;
        self.snap_done = false;
        self.diverged = false;
        self.loading_now = false;
        self.loaded = false;
    }

    fn deliver_op(&mut self, _: NodeId, _: &[u8]) {
        // Every write needs its delivery context: see `deliver_op_in`.
        self.not_applied += 1;
    }

    fn deliver_op_in(&mut self, d: &OpDelivery, payload: &[u8]) {
        let w = match Write::decode(payload) {
            Ok(w) => w,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        if let (true, Standing::Behind(_), Some(t)) =
            (self.primary, self.standing, self.track.as_mut())
        {
            // Waiting for a copy: what the serving members apply is tracked.
            if !d.regular {
                self.transitional.push(w);
            } else if d.safe {
                t.push(w);
                self.catch_up();
            }
            self.not_applied += 1;
        } else if !self.primary || !self.serving() {
            self.not_applied += 1;
        } else if !d.regular {
            self.transitional.push(w);
        } else if d.safe {
            self.apply(&w);
        } else {
            self.not_applied += 1;
        }
    }

    fn safe_ops(&self) -> bool {
        true
    }

    fn control(
        &mut self,
        request: &serde_json::Value,
        ctx: &ControlContext,
    ) -> Result<Control, ControlError> {
        let cmd: Command = serde_json::from_value(request.clone())
            .map_err(|e| ControlError::BadCommand(format!("svc store: {e}")))?;
        let bound = |arg: &'static str, value: usize, max: usize| {
            if value > max {
                Err(ControlError::BadArgument {
                    cmd: "svc store".into(),
                    arg,
                    value: value.to_string(),
                    bound: format!("at most {max}"),
                })
            } else {
                Ok(())
            }
        };
        match cmd {
            Command::Status => {
                let (keys, bytes) = self.db.size();
                Ok(Control::new(
                    vec![],
                    &Status {
                        ok: true,
                        version: self.db.version(),
                        digest: self.db.digest().hex(),
                        keys,
                        bytes,
                        standing: self.standing.word().into(),
                        primary: self.primary,
                        not_applied: self.not_applied,
                        transfer: *self.transfer.stats(),
                        transfer_held_bytes: self.transfer.held_bytes() as u64,
                    },
                ))
            }
            Command::Put { key, value } => {
                bound("key", key.len(), MAX_KEY)?;
                bound("value", value.len(), MAX_VALUE)?;
                let w = Write {
                    key: key.into_bytes(),
                    value: Some(value.into_bytes()),
                };
                Ok(Control::new(
                    vec![w.encode()],
                    &serde_json::json!({"ok": true}),
                ))
            }
            Command::Delete { key } => {
                bound("key", key.len(), MAX_KEY)?;
                let w = Write {
                    key: key.into_bytes(),
                    value: None,
                };
                Ok(Control::new(
                    vec![w.encode()],
                    &serde_json::json!({"ok": true}),
                ))
            }
            Command::Get { key } => {
                if !self.serving() {
                    return Err(ControlError::BadCommand(
                        "svc store get: this node does not serve (unsynced, or behind and \
                         waiting for a full transfer)"
                            .into(),
                    ));
                }
                let value = self
                    .db
                    .get(key.as_bytes())
                    .map_err(|e| ControlError::BadCommand(format!("svc store get: {e}")))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                Ok(Control::new(
                    vec![],
                    &Got {
                        ok: true,
                        value,
                        version: self.db.version(),
                    },
                ))
            }
            Command::Fill { keys, size, from } => {
                bound("size", size, MAX_VALUE)?;
                let each = (size + 32) as u64;
                let most = ctx.room() / each.max(1);
                if keys > most {
                    return Err(ControlError::BadArgument {
                        cmd: "svc store fill".into(),
                        arg: "keys",
                        value: keys.to_string(),
                        bound: format!("at most {most} now (max_fill_bytes)"),
                    });
                }
                let ops = (from..from.saturating_add(keys))
                    .map(|i| {
                        Write {
                            key: format!("fill-{i}").into_bytes(),
                            value: Some(vec![b'x'; size]),
                        }
                        .encode()
                    })
                    .collect();
                Ok(Control::new(
                    ops,
                    &serde_json::json!({"ok": true, "keys": keys}),
                ))
            }
        }
    }

    fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.db.version().to_be_bytes());
        h.update(self.db.digest().0);
        h.update(self.db.chain());
        h.finalize().into()
    }

    fn size(&self) -> StateSize {
        let (items, bytes) = self.db.size();
        StateSize { items, bytes }
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }

    fn poll_record(&mut self) -> Option<Body> {
        // The transfer's first: a copy's `finish` and `store` (the service's) come after its
        // chunks.
        self.transfer
            .poll_record()
            .or_else(|| self.records.pop_front())
    }

    fn tick(&mut self, now: u64, _operational: bool) {
        self.now = now;
        if self.cfg.path != Path::Unicast {
            return;
        }
        if self.view_dirty {
            self.view_dirty = false;
            let serving: Vec<NodeId> = self
                .members
                .iter()
                .copied()
                .filter(|m| *m != self.me && !self.far.contains(m))
                .collect();
            let view = View {
                members: self.members.clone(),
                serving,
                me_serving: self.serving(),
            };
            self.transfer.set_view(now, view);
            // A whole copy waiting for the ring's writes to reach it needs no other.
            let behind = matches!(self.standing, Standing::Behind(_))
                && self.failed.is_none()
                && self.whole.is_none();
            self.transfer.want(now, behind);
        }
        if self.restart {
            self.restart = false;
            if matches!(self.standing, Standing::Behind(_)) {
                self.transfer
                    .restart(now, "the node missed writes the copy needs");
            }
        }
        self.transfer.tick(now, &self.db);
        self.take_fetched();
        self.flush();
    }

    fn poll_deadline(&self) -> Option<u64> {
        self.transfer.poll_deadline()
    }

    fn handle_datagram(&mut self, now: u64, from: NodeId, data: &[u8]) {
        self.now = now;
        if self.cfg.path != Path::Unicast {
            return;
        }
        self.transfer.handle_datagram(now, from, data, &self.db);
        self.take_fetched();
        self.flush();
    }

    fn poll_datagram(&mut self, now: u64) -> Option<(NodeId, Bytes)> {
        self.transfer.poll_datagram(now)
    }
}

impl Plugin for StoreService {
    const NAME: &'static str = "store";
    const ID: ServiceId = STORE_SERVICE;

    fn new(me: NodeId) -> Self {
        let cfg = StoreConfig::default();
        let db = StoreDb::in_memory(cfg.log_keep).expect("an in-memory store");
        Self::with(me, &[], db, cfg)
    }

    fn configure(me: NodeId, cfg: &ServiceConfig) -> Result<Self, ServiceConfigError> {
        let bad = |reason: String| ServiceConfigError {
            service: Self::NAME,
            reason,
        };
        let parsed: StoreConfig = if cfg.section.is_null() {
            StoreConfig::default()
        } else {
            serde_json::from_value(cfg.section.clone()).map_err(|e| bad(e.to_string()))?
        };
        parsed.validate().map_err(bad)?;
        let db = match &cfg.storage {
            Storage::None => StoreDb::in_memory(parsed.log_keep),
            Storage::Dir(dir) => StoreDb::open(
                &dir.join(DB_FILE),
                parsed.log_keep,
                usize::try_from(parsed.cache_bytes).unwrap_or(usize::MAX),
            ),
            Storage::Sim(disks) => StoreDb::on_disk(&disks.disk(DB_FILE), parsed.log_keep),
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self::with(me, &cfg.nodes, db, parsed))
    }

    fn parse_args(args: &Args<'_>) -> Result<serde_json::Value, ControlError> {
        let op = args.text("op").unwrap_or_else(|| "status".into());
        let cmd = match op.as_str() {
            "status" | "digest" => {
                args.allow(&["op"])?;
                Command::Status
            }
            "put" => {
                args.allow(&["op", "key", "value"])?;
                Command::Put {
                    key: args.required("key")?,
                    value: args.required("value")?,
                }
            }
            "delete" => {
                args.allow(&["op", "key"])?;
                Command::Delete {
                    key: args.required("key")?,
                }
            }
            "get" => {
                args.allow(&["op", "key"])?;
                Command::Get {
                    key: args.required("key")?,
                }
            }
            "fill" => {
                args.allow(&["op", "keys", "size", "from"])?;
                Command::Fill {
                    keys: args.number("keys")?.unwrap_or(100),
                    size: args.number("size")?.unwrap_or(100),
                    from: args.number("from")?.unwrap_or(0),
                }
            }
            other => {
                return Err(ControlError::BadCommand(format!(
                    "svc store: unknown command {other:?} (known: status, digest, put, \
                     delete, get, fill)"
                )))
            }
        };
        Ok(serde_json::to_value(cmd).expect("a command serialises"))
    }

    fn workload_op(rng: &mut dyn rand::RngCore, w: &Workload) -> Bytes {
        // Keys of about 1 KiB values, as many as the state size asks.
        let keys = (w.state_bytes / 1024).max(1);
        let key = format!("k{}", rng.gen_range(0..keys)).into_bytes();
        let value = if rng.gen_range(0..10) == 0 {
            None
        } else {
            Some(vec![rng.gen::<u8>(); rng.gen_range(1..=2048)])
        };
        Bytes::from(Write { key, value }.encode())
    }
}
