//! The chunk protocol's message (seed `ceph-mon-sync-message.txt`), sans-IO: pure data and
//! its codec. It carries both designs of the full store transfer that brings a far-behind
//! node back:
//!
//! - `design = "push"`, the seed's design (Ceph's first monitor sync, 2013): the requester
//!   asks the leader ([`Op::Start`]), the leader answers ([`Op::StartReply`], with
//!   [`FLAG_RETRY`] when it cannot serve now, naming a provider with [`FLAG_REPLY_TO`]); the
//!   requester asks that provider for chunks ([`Op::StartChunks`], with `last_key` to resume
//!   after a dead provider), which pushes [`Op::Chunk`]s and sends the next only after
//!   [`Op::ChunkReply`]; the requester heartbeats the leader ([`Op::Heartbeat`] /
//!   [`Op::HeartbeatReply`]); the last chunk has [`FLAG_LAST`] and the snapshot's version;
//!   then [`Op::Finish`] / [`Op::FinishReply`]; [`Op::Abort`] when the leader changes or a
//!   timeout fires.
//! - `design = "pull"`, the cookie-based design Ceph replaced it with in July 2013: the
//!   requester asks a provider of its choice for a cookie ([`Op::GetCookie`], with
//!   `last_key` to resume from, which Ceph's design does not do), the provider answers with
//!   one ([`Op::Cookie`]: the cookie in `id`, the snapshot's version; with [`FLAG_RETRY`]
//!   and no cookie when it cannot serve now), then the requester pulls chunk after chunk
//!   ([`Op::GetChunk`] numbered `chunk_no`, answered by an [`Op::Chunk`] of that number,
//!   [`FLAG_LAST`] on the last). The provider keeps only an iterator keyed by the cookie,
//!   expired after a timeout; a [`Op::GetChunk`] for an unknown or expired cookie is
//!   answered [`Op::Abort`].
//!
//! | op | value | design | from → to |
//! |---|---|---|---|
//! | [`Op::Start`] | 1 | push | requester → leader (or a member, which forwards it) |
//! | [`Op::StartReply`] | 2 | push | leader → requester |
//! | [`Op::Heartbeat`] | 3 | push | requester → leader |
//! | [`Op::HeartbeatReply`] | 4 | push | leader → requester |
//! | [`Op::Finish`] | 5 | push | requester → leader |
//! | [`Op::StartChunks`] | 6 | push | requester → provider |
//! | [`Op::Chunk`] | 7 | both | provider → requester |
//! | [`Op::ChunkReply`] | 8 | push | requester → provider |
//! | [`Op::FinishReply`] | 9 | push | leader → requester |
//! | [`Op::Abort`] | 10 | both | either way |
//! | [`Op::GetCookie`] | 11 | pull | requester → provider |
//! | [`Op::Cookie`] | 12 | pull | provider → requester |
//! | [`Op::GetChunk`] | 13 | pull | requester → provider |
//!
//! A chunk that fails its CRC ([`ChunkMsg::verify_crc`]) is never applied: it is asked
//! again, in push by an [`Op::ChunkReply`] with [`FLAG_RETRY`] and that chunk's number, in
//! pull by the same [`Op::GetChunk`] again.
//!
//! # Layout
//!
//! Big-endian, decoded with the one [`Reader`] of every codec:
//!
//! | field | bytes | present |
//! |---|---|---|
//! | format version | 1 | always, [`CHUNK_MSG_VERSION`] |
//! | op | 1 | always, [`Op`] |
//! | flags | 1 | always, [`Flags`]; unknown bits refused |
//! | version | 8 | always: the store version the snapshot is of (0 where meaningless) |
//! | id | 8 | always: push, the transfer id the requester picks at [`Op::Start`] (with the leader), or the piece's id it picks at [`Op::StartChunks`] (with the provider); pull, the cookie (0 before one is given) |
//! | chunk_no | 8 | always: the chunk sent, acknowledged or asked for |
//! | reply_to | 4 | iff [`FLAG_REPLY_TO`]; a node id, never 0 |
//! | last_key | 1 + (4 + ≤ [`MAX_KEY`]) | always a presence byte (0 or 1), then the key as a blob if 1 |
//! | crc | 4 | iff [`FLAG_CRC`]: CRC32C of the chunk section below ([`Chunk::crc`]) |
//! | chain | 32 | iff [`FLAG_CHAIN`] (a cookie, a last chunk): the history's chain hash at `version` |
//! | chunk | 2 + pairs | always: the pair count (≤ [`MAX_CHUNK_KEYS`]), then each pair as key blob (≤ [`MAX_KEY`]) and value blob (≤ [`MAX_CHUNK_VALUE`]); the whole section ≤ [`MAX_CHUNK_BYTES`] |
//!
//! A whole message is at most [`MAX_MESSAGE`] bytes. A decoded message is validated: only
//! an [`Op::Chunk`] carries pairs, [`FLAG_LAST`] or [`FLAG_CRC`]; a chunk's keys are
//! strictly increasing (it is a slice of the ordered store); a chunk's `last_key`, when both
//! are there, is its last pair's key. What decodes re-encodes to the same bytes.

use crate::store::write::MAX_KEY;
use ringlab_ring::wire::{put_blob, DecodeError, NodeId, Reader};
use std::fmt;
use std::ops::BitOr;

/// The encoding's version (the leading byte).
pub const CHUNK_MSG_VERSION: u8 = 1;

/// The largest `chunk_bytes` budget a transfer may use (4 MiB; the default is
/// 1 MiB, its experiments go to 3 MiB). A chunk is filled while the next pair fits in the
/// budget, and always with at least one pair, so one value bigger than the budget travels
/// alone.
pub const MAX_CHUNK_BUDGET: usize = 4 * 1024 * 1024;

/// The longest value a chunk carries (bytes): a lone value as large as the largest budget.
/// (The store's own values are at most [`crate::store::MAX_VALUE`]; this leaves room.)
pub const MAX_CHUNK_VALUE: usize = MAX_CHUNK_BUDGET;

/// The most pairs one chunk carries (the `chunk_keys` knob's ceiling; its default is 2000,
/// as Ceph's `mon_sync_max_payload_keys`).
pub const MAX_CHUNK_KEYS: usize = 16 * 1024;

/// The largest chunk section (pair count and pairs, the bytes the CRC covers): a full
/// budget, or one pair of the longest key and the longest value alone.
pub const MAX_CHUNK_BYTES: usize = 2 + MAX_CHUNK_BUDGET + 4 + MAX_KEY + 4;

/// Bytes before the optional fields: format version, op, flags, version, id, chunk_no.
pub const FIXED_LEN: usize = 1 + 1 + 1 + 8 + 8 + 8;

/// The largest message (bytes): the fixed part, reply_to, last_key, crc, chain and the
/// largest chunk section.
pub const MAX_MESSAGE: usize = FIXED_LEN + 4 + 1 + 4 + MAX_KEY + 4 + 32 + MAX_CHUNK_BYTES;

/// The message's operation (one byte on the wire). Ops 1–10 are the seed's, with its
/// numbers; 11–13 are the pull design's. See the module docs for who sends which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    /// Push: a requester asks the leader for a sync (a member that gets it forwards it to
    /// the leader, naming the requester in `reply_to`).
    Start = 1,
    /// Push: the leader's answer to [`Op::Start`]: [`FLAG_RETRY`] when it cannot serve now
    /// (back off and ask again), [`FLAG_REPLY_TO`] naming the provider to ask for chunks.
    StartReply = 2,
    /// Push: the requester tells the leader it is still synchronising.
    Heartbeat = 3,
    /// Push: the leader's answer to a heartbeat.
    HeartbeatReply = 4,
    /// Push: the requester tells the leader it has the last chunk.
    Finish = 5,
    /// Push: the requester asks a provider to send it chunks, from the start or (with
    /// `last_key`) after the last key it received from a provider that died.
    StartChunks = 6,
    /// Both: a chunk (`chunk_no`), [`FLAG_LAST`] on the last one with the snapshot's version,
    /// [`FLAG_CRC`] with its CRC32C.
    Chunk = 7,
    /// Push: the requester acknowledges chunk `chunk_no` (the provider sends the next only
    /// then, within its window); with [`FLAG_RETRY`], asks that chunk again (a CRC failure).
    ChunkReply = 8,
    /// Push: the leader's answer to [`Op::Finish`].
    FinishReply = 9,
    /// Both: the receiver drops whatever it is doing with the sender (a leader change, a
    /// timeout; in pull, an unknown or expired cookie).
    Abort = 10,
    /// Pull: the requester asks a provider for a cookie, a snapshot to pull from; with
    /// `last_key`, to resume after that key.
    GetCookie = 11,
    /// Pull: the provider's answer to [`Op::GetCookie`]: the cookie in `id` and the
    /// snapshot's version; with [`FLAG_RETRY`] and no cookie (id 0) when it cannot serve
    /// now (Ceph's `OP_NO_COOKIE`).
    Cookie = 12,
    /// Pull: the requester asks for chunk `chunk_no` of cookie `id` (which acknowledges the
    /// ones before it; the same number again asks that chunk again).
    GetChunk = 13,
}

impl Op {
    /// Every op, in wire order.
    pub const ALL: [Self; 13] = [
        Self::Start,
        Self::StartReply,
        Self::Heartbeat,
        Self::HeartbeatReply,
        Self::Finish,
        Self::StartChunks,
        Self::Chunk,
        Self::ChunkReply,
        Self::FinishReply,
        Self::Abort,
        Self::GetCookie,
        Self::Cookie,
        Self::GetChunk,
    ];

    /// Returns the op for a wire byte, if known.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.get(usize::from(b).wrapping_sub(1)).copied()
    }

    /// Returns its name (for records and logs).
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::StartReply => "start_reply",
            Self::Heartbeat => "heartbeat",
            Self::HeartbeatReply => "heartbeat_reply",
            Self::Finish => "finish",
            Self::StartChunks => "start_chunks",
            Self::Chunk => "chunk",
            Self::ChunkReply => "chunk_reply",
            Self::FinishReply => "finish_reply",
            Self::Abort => "abort",
            Self::GetCookie => "get_cookie",
            Self::Cookie => "cookie",
            Self::GetChunk => "get_chunk",
        }
    }

    /// Whether the push design uses it.
    pub fn is_push(self) -> bool {
        (self as u8) <= Self::Abort as u8
    }

    /// Whether the pull design uses it.
    pub fn is_pull(self) -> bool {
        matches!(self, Self::Chunk | Self::Abort) || (self as u8) > Self::Abort as u8
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message's flags (one byte on the wire): a small bit set of [`FLAG_LAST`],
/// [`FLAG_RETRY`], [`FLAG_CRC`] and [`FLAG_REPLY_TO`]; any other bit is refused.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

/// The chunk is the last one of the snapshot.
pub const FLAG_LAST: Flags = Flags(0x01);
/// The receiver should retry its last operation (later, or elsewhere).
pub const FLAG_RETRY: Flags = Flags(0x02);
/// The message carries a CRC32C of its chunk.
pub const FLAG_CRC: Flags = Flags(0x04);
/// Answer not to the sender but to `reply_to` (the node it names).
pub const FLAG_REPLY_TO: Flags = Flags(0x08);
/// The message carries the chain hash of the store's history at `version` (ringlab's, not
/// the seed's: a copy must take on the history it is a copy of, see
/// [`crate::store::StoreDb::chain`]). Only on the last chunk and on a cookie.
pub const FLAG_CHAIN: Flags = Flags(0x10);

impl Flags {
    /// No flag.
    pub const EMPTY: Self = Self(0);
    /// Every known flag.
    pub const ALL: Self = Self(0x1f);

    /// Returns the flags of a wire byte; unknown bits are a typed error.
    pub fn from_bits(b: u8) -> Result<Self, DecodeError> {
        if b & !Self::ALL.0 != 0 {
            return Err(DecodeError::Invalid("chunk message flags (unknown bits)"));
        }
        Ok(Self(b))
    }

    /// Returns the wire byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// Returns these flags with those of `other` set or cleared.
    pub fn with(mut self, other: Self, on: bool) -> Self {
        if on {
            self.insert(other);
        } else {
            self.remove(other);
        }
        self
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (FLAG_LAST, "LAST"),
            (FLAG_RETRY, "RETRY"),
            (FLAG_CRC, "CRC"),
            (FLAG_REPLY_TO, "REPLY_TO"),
            (FLAG_CHAIN, "CHAIN"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(fl, _)| self.contains(*fl))
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("Flags()")
        } else {
            write!(f, "Flags({})", set.join("|"))
        }
    }
}

/// A chunk: a consistent slice of one snapshot of the store (one read transaction), its
/// key-value pairs in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The pairs, keys strictly increasing.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Chunk {
    /// Returns the encoded size of one pair (what it costs against a `chunk_bytes` budget).
    pub fn pair_len(key: &[u8], value: &[u8]) -> usize {
        4 + key.len() + 4 + value.len()
    }

    /// Returns the encoded size of the chunk section: the pair count and the pairs.
    pub fn encoded_len(&self) -> usize {
        2 + self
            .pairs
            .iter()
            .map(|(k, v)| Self::pair_len(k, v))
            .sum::<usize>()
    }

    /// Returns the CRC32C of the chunk section as it travels (the pair count, then each
    /// key and value as length-prefixed blobs), computed without copying the pairs.
    pub fn crc(&self) -> u32 {
        let mut c = crc32c::crc32c(&(self.pairs.len() as u16).to_be_bytes());
        for (k, v) in &self.pairs {
            c = crc32c::crc32c_append(c, &(k.len() as u32).to_be_bytes());
            c = crc32c::crc32c_append(c, k);
            c = crc32c::crc32c_append(c, &(v.len() as u32).to_be_bytes());
            c = crc32c::crc32c_append(c, v);
        }
        c
    }

    fn put(&self, b: &mut Vec<u8>) {
        debug_assert!(self.pairs.len() <= MAX_CHUNK_KEYS);
        debug_assert!(self.encoded_len() <= MAX_CHUNK_BYTES);
        b.extend_from_slice(&(self.pairs.len() as u16).to_be_bytes());
        for (k, v) in &self.pairs {
            debug_assert!(k.len() <= MAX_KEY && v.len() <= MAX_CHUNK_VALUE);
            put_blob(b, k);
            put_blob(b, v);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count("chunk pairs", MAX_CHUNK_KEYS)?;
        // Each pair takes at least its two lengths: refuse a count the bytes cannot hold
        // before allocating for it.
        if r.remaining() < 8 * n {
            return Err(DecodeError::Truncated {
                field: "chunk pairs",
                need: 8 * n,
                have: r.remaining(),
            });
        }
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n);
        let mut bytes = 2;
        for _ in 0..n {
            let k = r.blob("chunk key", MAX_KEY)?;
            let v = r.blob("chunk value", MAX_CHUNK_VALUE)?;
            bytes += Self::pair_len(k, v);
            if bytes > MAX_CHUNK_BYTES {
                return Err(DecodeError::TooLong {
                    field: "chunk bytes",
                    len: bytes,
                    max: MAX_CHUNK_BYTES,
                });
            }
            if pairs.last().is_some_and(|(l, _)| l.as_slice() >= k) {
                return Err(DecodeError::NotSorted("chunk keys"));
            }
            pairs.push((k.to_vec(), v.to_vec()));
        }
        Ok(Self { pairs })
    }
}

/// Why a chunk's CRC does not check: it is asked again, never applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CrcError {
    /// The message carries no CRC ([`FLAG_CRC`] unset).
    #[error("chunk carries no crc")]
    Missing,
    /// The CRC carried is not the chunk's.
    #[error("chunk crc mismatch: carried {carried:#010x}, computed {computed:#010x}")]
    Mismatch {
        /// The CRC the message carries.
        carried: u32,
        /// The CRC of the chunk it carries.
        computed: u32,
    },
}

/// One message of the chunk protocol. See the module docs for its layout and for which
/// design uses which op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkMsg {
    /// The operation.
    pub op: Op,
    /// The flags. [`FLAG_CRC`] and [`FLAG_REPLY_TO`] follow `crc` and `reply_to`: encoding
    /// sets or clears them from those fields, and decoding gives both in agreement.
    pub flags: Flags,
    /// The store version the snapshot is of (Ceph's `last_committed`), 0 where meaningless.
    pub version: u64,
    /// Push: the transfer id the requester picks at [`Op::Start`], echoed in the messages
    /// with the leader, and the piece id it picks at [`Op::StartChunks`], echoed in the
    /// messages with that provider (stray messages of an older transfer or piece are told
    /// apart). Pull: the cookie (0 in [`Op::GetCookie`] and in a refusing [`Op::Cookie`]).
    pub id: u64,
    /// The chunk sent ([`Op::Chunk`]), acknowledged ([`Op::ChunkReply`]) or asked for
    /// ([`Op::GetChunk`]), counted from 0 in a transfer.
    pub chunk_no: u64,
    /// Present iff [`FLAG_REPLY_TO`]: the node to answer instead of the sender (never 0).
    pub reply_to: Option<NodeId>,
    /// In a chunk, the key it ends at; in [`Op::StartChunks`] or [`Op::GetCookie`], the last
    /// key the requester received, to resume after it (none: from the start).
    pub last_key: Option<Vec<u8>>,
    /// Present iff [`FLAG_CRC`]: the CRC32C of the chunk ([`Chunk::crc`]).
    pub crc: Option<u32>,
    /// Present iff [`FLAG_CHAIN`]: the chain hash of the history at `version`.
    pub chain: Option<[u8; 32]>,
    /// The pairs; empty except in an [`Op::Chunk`].
    pub chunk: Chunk,
}

impl ChunkMsg {
    /// Returns a message of `op` with every other field empty.
    pub fn new(op: Op) -> Self {
        Self {
            op,
            flags: Flags::EMPTY,
            version: 0,
            id: 0,
            chunk_no: 0,
            reply_to: None,
            last_key: None,
            crc: None,
            chain: None,
            chunk: Chunk::default(),
        }
    }

    /// Returns the [`Op::Chunk`] number `chunk_no` of transfer or cookie `id`, of the snapshot
    /// at `version`, carrying `chunk` with its CRC and its last key ([`FLAG_LAST`] if `last`).
    pub fn chunk(id: u64, version: u64, chunk_no: u64, chunk: Chunk, last: bool) -> Self {
        let mut m = Self::new(Op::Chunk);
        m.id = id;
        m.version = version;
        m.chunk_no = chunk_no;
        m.flags = Flags::EMPTY.with(FLAG_LAST, last) | FLAG_CRC;
        m.crc = Some(chunk.crc());
        m.last_key = chunk.pairs.last().map(|(k, _)| k.clone());
        m.chunk = chunk;
        m
    }

    /// Returns it answering to `node` instead of its sender ([`FLAG_REPLY_TO`]).
    pub fn with_reply_to(mut self, node: NodeId) -> Self {
        self.reply_to = Some(node);
        self.flags.insert(FLAG_REPLY_TO);
        self
    }

    /// Returns the flags as they travel: `flags` with [`FLAG_CRC`] and [`FLAG_REPLY_TO`]
    /// following `crc` and `reply_to`.
    pub fn wire_flags(&self) -> Flags {
        self.flags
            .with(FLAG_CRC, self.crc.is_some())
            .with(FLAG_REPLY_TO, self.reply_to.is_some())
            .with(FLAG_CHAIN, self.chain.is_some())
    }

    /// Whether [`FLAG_LAST`] is set.
    pub fn is_last(&self) -> bool {
        self.flags.contains(FLAG_LAST)
    }

    /// Whether [`FLAG_RETRY`] is set.
    pub fn is_retry(&self) -> bool {
        self.flags.contains(FLAG_RETRY)
    }

    /// Checks the chunk against the CRC it carries: a typed error when it carries none or
    /// when they differ (the chunk is then asked again, never applied).
    pub fn verify_crc(&self) -> Result<(), CrcError> {
        let carried = self.crc.ok_or(CrcError::Missing)?;
        let computed = self.chunk.crc();
        if carried != computed {
            return Err(CrcError::Mismatch { carried, computed });
        }
        Ok(())
    }

    /// Returns the encoded size.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + self.reply_to.map_or(0, |_| 4)
            + 1
            + self.last_key.as_ref().map_or(0, |k| 4 + k.len())
            + self.crc.map_or(0, |_| 4)
            + self.chain.map_or(0, |_| 32)
            + self.chunk.encoded_len()
    }

    /// Returns its encoding (see the module docs). The message is expected to be valid
    /// (within its bounds, pairs only in a chunk); a caller's bug is caught by
    /// `debug_assert`.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.op == Op::Chunk || self.chunk.pairs.is_empty());
        debug_assert!(self.reply_to != Some(0));
        let mut b = Vec::with_capacity(self.encoded_len());
        b.push(CHUNK_MSG_VERSION);
        b.push(self.op as u8);
        b.push(self.wire_flags().bits());
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.chunk_no.to_be_bytes());
        if let Some(n) = self.reply_to {
            b.extend_from_slice(&n.to_be_bytes());
        }
        match &self.last_key {
            Some(k) => {
                debug_assert!(k.len() <= MAX_KEY);
                b.push(1);
                put_blob(&mut b, k);
            }
            None => b.push(0),
        }
        if let Some(c) = self.crc {
            b.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(c) = &self.chain {
            b.extend_from_slice(c);
        }
        self.chunk.put(&mut b);
        debug_assert!(b.len() <= MAX_MESSAGE);
        b
    }

    /// Decodes exactly one message: a typed error for garbage, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLong {
                field: "chunk message",
                len: buf.len(),
                max: MAX_MESSAGE,
            });
        }
        let mut r = Reader::new(buf);
        let v = r.u8("chunk message version")?;
        if v != CHUNK_MSG_VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let o = r.u8("chunk message op")?;
        let op = Op::from_u8(o).ok_or(DecodeError::UnknownType(o))?;
        let flags = Flags::from_bits(r.u8("chunk message flags")?)?;
        let version = r.u64("chunk message version field")?;
        let id = r.u64("chunk message id")?;
        let chunk_no = r.u64("chunk number")?;
        let reply_to = if flags.contains(FLAG_REPLY_TO) {
            match r.u32("reply_to")? {
                0 => return Err(DecodeError::ZeroNodeId("reply_to")),
                n => Some(n),
            }
        } else {
            None
        };
        let last_key = match r.u8("last_key presence")? {
            0 => None,
            1 => Some(r.blob("last_key", MAX_KEY)?.to_vec()),
            _ => return Err(DecodeError::Invalid("last_key presence")),
        };
        let crc = if flags.contains(FLAG_CRC) {
            Some(r.u32("chunk crc")?)
        } else {
            None
        };
        let chain = if flags.contains(FLAG_CHAIN) {
            let mut c = [0u8; 32];
            for x in &mut c {
                *x = r.u8("chunk message chain")?;
            }
            Some(c)
        } else {
            None
        };
        let chunk = Chunk::read(&mut r)?;
        r.end()?;
        if chain.is_some() && !(op == Op::Cookie || (op == Op::Chunk && flags.contains(FLAG_LAST)))
        {
            return Err(DecodeError::Invalid(
                "CHAIN flag outside a cookie or a last chunk",
            ));
        }
        if op != Op::Chunk {
            if !chunk.pairs.is_empty() {
                return Err(DecodeError::Invalid("pairs outside a chunk"));
            }
            if flags.contains(FLAG_LAST) || flags.contains(FLAG_CRC) {
                return Err(DecodeError::Invalid("LAST or CRC flag outside a chunk"));
            }
        }
        if let (Some(k), Some((l, _))) = (&last_key, chunk.pairs.last()) {
            if k != l {
                return Err(DecodeError::Invalid("chunk last_key is not its last key"));
            }
        }
        Ok(Self {
            op,
            flags,
            version,
            id,
            chunk_no,
            reply_to,
            last_key,
            crc,
            chain,
            chunk,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn pairs(n: usize) -> Chunk {
        Chunk {
            pairs: (0..n)
                .map(|i| (format!("key{i:05}").into_bytes(), vec![i as u8; i % 7]))
                .collect(),
        }
    }

    /// A valid message of `op`, its optional fields chosen by `rng`.
    fn message(op: Op, rng: &mut ChaCha8Rng) -> ChunkMsg {
        let mut m = if op == Op::Chunk {
            ChunkMsg::chunk(
                rng.gen(),
                rng.gen(),
                rng.gen(),
                pairs(rng.gen_range(0..20)),
                rng.gen(),
            )
        } else {
            ChunkMsg::new(op)
        };
        m.version = rng.gen();
        m.id = rng.gen();
        m.chunk_no = rng.gen();
        m.flags = m.flags.with(FLAG_RETRY, rng.gen());
        if rng.gen() {
            m.reply_to = Some(rng.gen_range(1..=u32::MAX));
        }
        if op != Op::Chunk && rng.gen() {
            m.last_key = Some(vec![rng.gen(); rng.gen_range(0..40)]);
        }
        if op == Op::Chunk && rng.gen_bool(0.2) {
            m.crc = None; // a chunk may travel without its CRC (and then fails verify_crc)
        }
        if (op == Op::Cookie || (op == Op::Chunk && m.is_last())) && rng.gen() {
            m.chain = Some(rng.gen());
        }
        m.flags = m.wire_flags();
        m
    }

    #[test]
    fn every_op_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for op in Op::ALL {
            assert_eq!(Op::from_u8(op as u8), Some(op));
            assert!(op.is_push() || op.is_pull(), "{op}");
            for _ in 0..50 {
                let m = message(op, &mut rng);
                let b = m.encode();
                assert_eq!(b.len(), m.encoded_len());
                assert_eq!(b[1], op as u8);
                let d = ChunkMsg::decode(&b).unwrap();
                assert_eq!(d, m);
                assert_eq!(d.encode(), b);
            }
        }
        assert_eq!(Op::from_u8(0), None);
        assert_eq!(Op::from_u8(14), None);
        // The seed's numbers.
        assert_eq!(Op::Start as u8, 1);
        assert_eq!(Op::Abort as u8, 10);
        assert_eq!(Op::FinishReply as u8, 9);
        assert_eq!(
            (FLAG_LAST.bits(), FLAG_RETRY.bits(), FLAG_CRC.bits()),
            (1, 2, 4)
        );
        assert_eq!(FLAG_REPLY_TO.bits(), 8);
    }

    #[test]
    fn a_chunk_carries_its_crc_and_last_key() {
        let m = ChunkMsg::chunk(7, 100, 3, pairs(5), true);
        assert!(m.is_last() && m.flags.contains(FLAG_CRC));
        assert_eq!(m.last_key.as_deref(), Some(&b"key00004"[..]));
        m.verify_crc().unwrap();
        let b = m.encode();
        let d = ChunkMsg::decode(&b).unwrap();
        d.verify_crc().unwrap();
        // The CRC covers exactly the chunk section, the message's tail.
        let section = &b[b.len() - m.chunk.encoded_len()..];
        assert_eq!(crc32c::crc32c(section), m.chunk.crc());
        // An empty last chunk (an empty store) is a valid chunk too.
        let e = ChunkMsg::chunk(7, 0, 0, Chunk::default(), true);
        assert_eq!(ChunkMsg::decode(&e.encode()).unwrap(), e);
        e.verify_crc().unwrap();
    }

    #[test]
    fn crc_mismatch_is_detected() {
        let m = ChunkMsg::chunk(1, 9, 0, pairs(10), false);
        let mut b = m.encode();
        // Corrupt one byte of the last value (decodes fine: same shape, wrong CRC).
        let n = b.len();
        b[n - 1] ^= 0x40;
        let d = ChunkMsg::decode(&b).unwrap();
        assert!(matches!(
            d.verify_crc(),
            Err(CrcError::Mismatch { carried, computed }) if carried == m.crc.unwrap() && computed != carried
        ));
        // A corrupted CRC field.
        let mut d2 = m.clone();
        d2.crc = Some(m.crc.unwrap() ^ 1);
        assert!(matches!(
            ChunkMsg::decode(&d2.encode()).unwrap().verify_crc(),
            Err(CrcError::Mismatch { .. })
        ));
        // No CRC at all.
        let mut d3 = m;
        d3.crc = None;
        let d3 = ChunkMsg::decode(&d3.encode()).unwrap();
        assert!(!d3.flags.contains(FLAG_CRC));
        assert_eq!(d3.verify_crc(), Err(CrcError::Missing));
    }

    #[test]
    fn truncations_and_garbage_are_typed_errors() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for op in Op::ALL {
            let b = message(op, &mut rng).encode();
            for cut in 0..b.len() {
                assert!(
                    matches!(
                        ChunkMsg::decode(&b[..cut]),
                        Err(DecodeError::Truncated { .. })
                    ),
                    "{op} cut at {cut}"
                );
            }
            let mut extra = b.clone();
            extra.push(0);
            assert_eq!(ChunkMsg::decode(&extra), Err(DecodeError::TrailingBytes(1)));
        }
        for _ in 0..20_000 {
            let n = rng.gen_range(0..80);
            let mut g: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if n > 2 && rng.gen() {
                g[0] = CHUNK_MSG_VERSION;
                g[1] = rng.gen_range(1..=13);
                g[2] &= 0x0f;
            }
            if let Ok(m) = ChunkMsg::decode(&g) {
                assert_eq!(m.encode(), g);
                let _ = m.verify_crc();
            }
        }
        // Mutations of valid messages: never a panic, and what decodes re-encodes the same.
        for _ in 0..5_000 {
            let op = Op::ALL[rng.gen_range(0..Op::ALL.len())];
            let mut b = message(op, &mut rng).encode();
            let i = rng.gen_range(0..b.len());
            b[i] = rng.gen();
            if let Ok(m) = ChunkMsg::decode(&b) {
                assert_eq!(m.encode(), b);
            }
        }
    }

    #[test]
    fn header_errors_are_typed() {
        let b = ChunkMsg::new(Op::Start).encode();
        let mut v = b.clone();
        v[0] = 2;
        assert_eq!(
            ChunkMsg::decode(&v),
            Err(DecodeError::UnsupportedVersion(2))
        );
        let mut o = b.clone();
        o[1] = 0;
        assert_eq!(ChunkMsg::decode(&o), Err(DecodeError::UnknownType(0)));
        o[1] = 14;
        assert_eq!(ChunkMsg::decode(&o), Err(DecodeError::UnknownType(14)));
        // Unknown flag bits are refused, each one.
        for bit in 5..8 {
            let mut f = b.clone();
            f[2] = 1 << bit;
            assert!(matches!(ChunkMsg::decode(&f), Err(DecodeError::Invalid(_))));
            assert!(Flags::from_bits(1 << bit).is_err());
        }
        assert_eq!(Flags::from_bits(0x1f).unwrap(), Flags::ALL);
        // reply_to 0.
        let mut z = ChunkMsg::new(Op::StartReply).with_reply_to(5).encode();
        z[FIXED_LEN..FIXED_LEN + 4].copy_from_slice(&[0; 4]);
        assert_eq!(
            ChunkMsg::decode(&z),
            Err(DecodeError::ZeroNodeId("reply_to"))
        );
        // A bad last_key presence byte.
        let mut p = b.clone();
        p[FIXED_LEN] = 2;
        assert!(matches!(ChunkMsg::decode(&p), Err(DecodeError::Invalid(_))));
        // LAST or CRC outside a chunk.
        let mut l = b.clone();
        l[2] = FLAG_LAST.bits();
        assert!(matches!(ChunkMsg::decode(&l), Err(DecodeError::Invalid(_))));
        let mut c = ChunkMsg::new(Op::ChunkReply).encode();
        c[2] = FLAG_CRC.bits();
        c.splice(FIXED_LEN + 1..FIXED_LEN + 1, [0u8; 4]);
        assert!(matches!(ChunkMsg::decode(&c), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn chunk_shape_is_validated() {
        // Pairs outside a chunk.
        let mut b = ChunkMsg::new(Op::ChunkReply).encode();
        b.truncate(b.len() - 2);
        pairs(2).put(&mut b);
        assert!(matches!(ChunkMsg::decode(&b), Err(DecodeError::Invalid(_))));
        // Keys not strictly increasing.
        let mut u = ChunkMsg::chunk(1, 1, 0, pairs(3), false);
        u.chunk.pairs.swap(0, 1);
        u.crc = Some(u.chunk.crc());
        u.last_key = u.chunk.pairs.last().map(|(k, _)| k.clone());
        assert_eq!(
            ChunkMsg::decode(&u.encode()),
            Err(DecodeError::NotSorted("chunk keys"))
        );
        let mut d = ChunkMsg::chunk(1, 1, 0, pairs(3), false);
        d.chunk.pairs[1].0 = d.chunk.pairs[0].0.clone();
        d.crc = Some(d.chunk.crc());
        assert_eq!(
            ChunkMsg::decode(&d.encode()),
            Err(DecodeError::NotSorted("chunk keys"))
        );
        // A last_key that is not the chunk's last key.
        let mut k = ChunkMsg::chunk(1, 1, 0, pairs(3), false);
        k.last_key = Some(b"elsewhere".to_vec());
        assert!(matches!(
            ChunkMsg::decode(&k.encode()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn bounds_are_enforced() {
        let too_long = |b: &[u8], f: &str| {
            assert!(
                matches!(ChunkMsg::decode(b), Err(DecodeError::TooLong { field, .. }) if field == f),
                "{f}: {:?}",
                ChunkMsg::decode(b)
            );
        };
        let base = ChunkMsg::new(Op::Chunk).encode(); // no pairs, no last key, no crc
        let head = &base[..base.len() - 2];
        // A key one byte too long.
        let mut b = head.to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        put_blob(&mut b, &vec![b'k'; MAX_KEY + 1]);
        put_blob(&mut b, b"v");
        too_long(&b, "chunk key");
        // A last_key one byte too long.
        let mut b = base[..FIXED_LEN].to_vec();
        b.push(1);
        put_blob(&mut b, &vec![b'k'; MAX_KEY + 1]);
        b.extend_from_slice(&0u16.to_be_bytes());
        too_long(&b, "last_key");
        // A value one byte too long (refused on its length, before its bytes).
        let mut b = head.to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        put_blob(&mut b, b"k");
        b.extend_from_slice(&(MAX_CHUNK_VALUE as u32 + 1).to_be_bytes());
        too_long(&b, "chunk value");
        // A pair count above the bound.
        let mut b = head.to_vec();
        b.extend_from_slice(&(MAX_CHUNK_KEYS as u16 + 1).to_be_bytes());
        too_long(&b, "chunk pairs");
        // A count the bytes cannot hold is refused before anything is allocated.
        let mut b = head.to_vec();
        b.extend_from_slice(&(MAX_CHUNK_KEYS as u16).to_be_bytes());
        assert!(matches!(
            ChunkMsg::decode(&b),
            Err(DecodeError::Truncated {
                field: "chunk pairs",
                ..
            })
        ));
        // The largest lone value travels; a message above the bound does not.
        let lone = Chunk {
            pairs: vec![(vec![b'k'; MAX_KEY], vec![1; MAX_CHUNK_VALUE])],
        };
        assert_eq!(lone.encoded_len(), MAX_CHUNK_BYTES);
        let mut m = ChunkMsg::chunk(1, 1, 0, lone, true).with_reply_to(1);
        m.chain = Some([7; 32]);
        m.flags = m.wire_flags();
        let b = m.encode();
        assert_eq!(b.len(), MAX_MESSAGE);
        // (assert!, not assert_eq!: a failure would print megabytes)
        assert!(ChunkMsg::decode(&b).unwrap() == m);
        let mut over = b;
        over.push(0);
        too_long(&over, "chunk message");
        // A full budget of small pairs fits within the chunk bound.
        let v = vec![0u8; 4096 - 16];
        let full = Chunk {
            pairs: (0..MAX_CHUNK_BUDGET / 4096)
                .map(|i| (format!("k{i:06}").into_bytes(), v.clone()))
                .collect(),
        };
        assert!(full.encoded_len() <= MAX_CHUNK_BYTES);
        let m = ChunkMsg::chunk(1, 1, 0, full, false);
        assert!(ChunkMsg::decode(&m.encode()).unwrap() == m);
    }

    #[test]
    fn flags_behave_as_a_bit_set() {
        let mut f = FLAG_LAST | FLAG_CRC;
        assert!(f.contains(FLAG_LAST) && f.contains(FLAG_CRC) && !f.contains(FLAG_RETRY));
        f.remove(FLAG_LAST);
        assert_eq!(f, FLAG_CRC);
        f.insert(FLAG_REPLY_TO);
        assert_eq!(f.bits(), 0x0c);
        assert_eq!(format!("{f:?}"), "Flags(CRC|REPLY_TO)");
        assert!(Flags::EMPTY.is_empty());
        // The wire flags follow the optional fields, whatever `flags` says.
        let mut m = ChunkMsg::new(Op::StartReply);
        m.flags = FLAG_REPLY_TO | FLAG_RETRY;
        assert_eq!(m.wire_flags(), FLAG_RETRY);
        m.reply_to = Some(3);
        let d = ChunkMsg::decode(&m.encode()).unwrap();
        assert_eq!(d.reply_to, Some(3));
        assert!(d.is_retry() && d.flags.contains(FLAG_REPLY_TO));
    }
}
