//! The ring's wire format: explicit, versioned, big-endian, with bounded lengths.
//!
//! Every packet starts with the same 20-byte header:
//!
//! | field | bytes | notes |
//! |---|---|---|
//! | magic | 2 | `0x524C` ("RL") |
//! | version | 1 | [`VERSION`] |
//! | type | 1 | [`MessageType`] |
//! | sender | 4 | node id of the sender (never 0) |
//! | ring id | 12 | representative (4) and ring seq (8) |
//!
//! followed by a body whose layout depends on the type (see each struct).
//!
//! Guarantees: [`decode`] never panics, whatever the input; every malformed input gives a
//! typed [`DecodeError`]; every list and payload has an upper bound checked before anything
//! is allocated; a decoded [`Packet`] is validated (sorted, duplicate-free node lists, no node
//! id 0, commit-token index within its member list), so the state machine never has to
//! re-check shape. `encode(decode(x)) == x` for every valid `x`, and `decode(encode(p)) == p`
//! for every valid `p` (property-tested).

use bytes::{BufMut, Bytes};
use std::fmt;

/// First two bytes of every packet.
pub const MAGIC: u16 = 0x524C;
/// Wire version spoken by this build.
/// Version 2 (issue 16): joins carry the sender's unheard set and a merge-detect its ring's
/// members and unheard set.
pub const VERSION: u8 = 2;
/// Size of the common header.
pub const HEADER_LEN: usize = 20;
/// Most entries a token's retransmit-request list may carry.
pub const RTR_MAX: usize = 64;
/// Most processors a join or commit token may name (corosync's PROCESSOR_COUNT_MAX).
pub const PROCESSORS_MAX: usize = 384;
/// Largest mcast payload (one frame) accepted.
pub const FRAME_MAX: usize = 65_000;
/// Fixed part of an mcast body before the payload: seq, flags, payload length.
pub const MCAST_FIXED_LEN: usize = 8 + 1 + 4;
/// Extra bytes an encapsulated mcast carries: old ring id, old seq, old origin, old flags.
pub const ENCAP_LEN: usize = 12 + 8 + 4 + 1;
/// Bytes an mcast adds around its frame, encapsulation included: a frame of at most
/// `netmtu - MCAST_OVERHEAD` bytes always fits in one datagram of `netmtu`.
pub const MCAST_OVERHEAD: usize = HEADER_LEN + MCAST_FIXED_LEN + ENCAP_LEN;

/// A node's identifier on the ring. 0 is reserved and never valid on the wire.
pub type NodeId = u32;

/// Identifies one ring: its representative (lowest member at formation) and its sequence.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct RingId {
    /// The representative's node id.
    pub rep: NodeId,
    /// The ring sequence number; grows by at least 4 at every new ring.
    pub seq: u64,
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.rep, self.seq)
    }
}

/// The type byte of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// The ordering, reliability and flow-control token.
    Token = 0,
    /// An ordered multicast frame.
    Mcast = 1,
    /// Sent by an idle ring's representative to find other rings.
    MergeDetect = 2,
    /// A membership proposal in GATHER.
    Join = 3,
    /// The commit token that forms a new ring.
    CommitToken = 4,
    /// Asks a representative holding the token on an idle ring to pass it on now.
    TokenHoldCancel = 5,
    /// A clean shutdown announcing itself.
    Leave = 6,
}

impl MessageType {
    /// Returns the type for a wire byte, if known.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Token,
            1 => Self::Mcast,
            2 => Self::MergeDetect,
            3 => Self::Join,
            4 => Self::CommitToken,
            5 => Self::TokenHoldCancel,
            6 => Self::Leave,
            _ => return None,
        })
    }

    /// Returns the protocol's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Mcast => "mcast",
            Self::MergeDetect => "merge_detect",
            Self::Join => "join",
            Self::CommitToken => "commit_token",
            Self::TokenHoldCancel => "token_hold_cancel",
            Self::Leave => "leave",
        }
    }
}

/// Why a packet could not be decoded. Each variant is a distinct drop reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet ended before a field.
    #[error("truncated packet: {field} needs {need} bytes, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// The first two bytes are not ringlab's magic.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A version this build does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// A type byte no message has.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A count or length above its bound.
    #[error("{field} is {len}, above the bound {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its value.
        len: usize,
        /// Its bound.
        max: usize,
    },
    /// Bytes left after the body.
    #[error("{0} trailing bytes after the body")]
    TrailingBytes(usize),
    /// A node list that is not strictly increasing.
    #[error("{0} is not sorted and duplicate-free")]
    NotSorted(&'static str),
    /// Node id 0 where a real node is required.
    #[error("node id 0 in {0}")]
    ZeroNodeId(&'static str),
    /// A field whose value is impossible.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A decoded, validated packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The node that sent it (for an mcast: the node that originated the frame).
    pub sender: NodeId,
    /// The ring it belongs to (for a commit token: the proposed ring).
    pub ring_id: RingId,
    /// The body.
    pub message: Message,
}

/// The body of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// See [`Token`].
    Token(Token),
    /// See [`Mcast`].
    Mcast(Mcast),
    /// See [`MergeDetect`].
    MergeDetect(MergeDetect),
    /// See [`Join`].
    Join(Join),
    /// See [`CommitToken`].
    CommitToken(CommitToken),
    /// No body.
    TokenHoldCancel,
    /// See [`Leave`].
    Leave(Leave),
}

impl Message {
    /// Returns the type byte of this body.
    pub fn kind(&self) -> MessageType {
        match self {
            Self::Token(_) => MessageType::Token,
            Self::Mcast(_) => MessageType::Mcast,
            Self::MergeDetect(_) => MessageType::MergeDetect,
            Self::Join(_) => MessageType::Join,
            Self::CommitToken(_) => MessageType::CommitToken,
            Self::TokenHoldCancel => MessageType::TokenHoldCancel,
            Self::Leave(_) => MessageType::Leave,
        }
    }
}

/// The ORF token. Body: token_seq u64, seq u64, aru u64, aru_addr u32, fcc u32, backlog u32,
/// retrans_flg u8, rtr count u16, rtr entries u64 each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Token {
    /// Counts token passes; detects duplicate and retransmitted tokens.
    pub token_seq: u64,
    /// Highest seq multicast on the ring.
    pub seq: u64,
    /// All-received-up-to: the lowest my_aru seen this rotation.
    pub aru: u64,
    /// The node that last set `aru` (0: nobody holds it down).
    pub aru_addr: NodeId,
    /// Messages multicast during the last rotation (flow control).
    pub fcc: u32,
    /// Messages waiting to be sent, summed over the ring (flow control).
    pub backlog: u32,
    /// Set in RECOVERY while some member still has old-ring messages to re-send.
    pub retrans_flg: bool,
    /// Seqs some member is missing, at most [`RTR_MAX`].
    pub rtr: Vec<u64>,
}

/// The inner header of an old-ring frame re-sent on a new ring during RECOVERY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encapsulated {
    /// The old ring the frame belongs to.
    pub ring_id: RingId,
    /// Its seq on the old ring.
    pub seq: u64,
    /// The node that originated it on the old ring.
    pub origin: NodeId,
    /// Whether it asked for safe delivery.
    pub safe: bool,
}

/// An ordered multicast frame. Body: seq u64, flags u8 (bit 0 safe, bit 1 encapsulated),
/// [encapsulated: old ring id, old seq u64, old origin u32, old flags u8], payload length u32,
/// payload. The payload is a packed frame of application messages (see `pack`) and is
/// opaque here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mcast {
    /// Position in the ring's total order.
    pub seq: u64,
    /// Safe (true) or agreed delivery.
    pub safe: bool,
    /// Present when this frame carries an old ring's frame during RECOVERY.
    pub encapsulated: Option<Encapsulated>,
    /// The frame.
    pub payload: Bytes,
}

/// A membership proposal. Body: ring_seq u64, proc count u16, procs u32..., fail count u16,
/// fails u32..., unheard_epoch u64, unheard count u16, unheard u32... Every list strictly
/// increasing, no 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Join {
    /// Highest ring seq the sender has seen.
    pub ring_seq: u64,
    /// Processors the sender believes should be on the ring.
    pub proc_set: Vec<NodeId>,
    /// Processors the sender has given up on.
    pub fail_set: Vec<NodeId>,
    /// Processors the sender could not hear at all for a whole consensus period and has not
    /// heard since (ringlab's, not corosync's: see `srp::reach`).
    pub unheard: Vec<NodeId>,
    /// Orders the sender's announcements of `unheard` (its incarnation in the high 32 bits,
    /// a count of changes in the low), so a reordered older join cannot undo a newer one.
    pub unheard_epoch: u64,
}

/// A ring's announcement by its representative (every `merge` ms), or a probe sent by any
/// member to a processor that said it cannot hear it. Body: member count u16, members
/// u32..., unheard count u16, unheard u32... Both lists strictly increasing, no 0.
/// corosync's merge detect has no body; the lists let a ring that hears it tell whether a
/// merge could hold (see `srp::reach`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeDetect {
    /// The sender's ring's members.
    pub members: Vec<NodeId>,
    /// Processors outside that ring that one of its members cannot hear.
    pub unheard: Vec<NodeId>,
}

impl Join {
    /// The processors the sender proposes: heard of and not given up on.
    pub fn live(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.proc_set
            .iter()
            .copied()
            .filter(|p| !self.fail_set.contains(p))
    }
}

/// A member's record in the commit token, filled in on the first rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembEntry {
    /// The ring the member last installed.
    pub old_ring: RingId,
    /// Its my_aru on that ring.
    pub aru: u64,
    /// The highest seq it delivered on that ring.
    pub high_delivered: u64,
    /// Whether it had received every message it knew of on that ring.
    pub received_flg: bool,
}

/// The commit token. Body: token_seq u64, member count u16, members u32..., entry count u16
/// (the memb_index: entries filled so far, at most the member count), entries (old ring id,
/// aru u64, high_delivered u64, received_flg u8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitToken {
    /// Counts passes.
    pub token_seq: u64,
    /// The proposed ring's members, strictly increasing.
    pub members: Vec<NodeId>,
    /// Entries of `members[0..entries.len()]`.
    pub entries: Vec<MembEntry>,
}

/// A graceful leave. Body: ring_seq u64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leave {
    /// Highest ring seq the leaving node had seen.
    pub ring_seq: u64,
}

/// Size of an encoded commit-token entry.
const ENTRY_LEN: usize = 12 + 8 + 8 + 1;

/// Returns the encoded size of `p`.
pub fn encoded_len(p: &Packet) -> usize {
    HEADER_LEN
        + match &p.message {
            Message::Token(t) => 8 * 3 + 4 * 3 + 1 + 2 + 8 * t.rtr.len(),
            Message::Mcast(m) => {
                MCAST_FIXED_LEN + m.encapsulated.map_or(0, |_| ENCAP_LEN) + m.payload.len()
            }
            Message::TokenHoldCancel => 0,
            Message::MergeDetect(m) => 2 + 4 * m.members.len() + 2 + 4 * m.unheard.len(),
            Message::Join(j) => {
                8 + 2
                    + 4 * j.proc_set.len()
                    + 2
                    + 4 * j.fail_set.len()
                    + 8
                    + 2
                    + 4 * j.unheard.len()
            }
            Message::CommitToken(c) => {
                8 + 2 + 4 * c.members.len() + 2 + ENTRY_LEN * c.entries.len()
            }
            Message::Leave(_) => 8,
        }
}

/// Encodes `p` into a new buffer.
///
/// The packet is expected to be valid (lists within their bounds); the state machine only
/// builds valid packets, and a list above its bound is a caller's bug caught by
/// `debug_assert`.
pub fn encode(p: &Packet) -> Vec<u8> {
    let mut b = Vec::with_capacity(encoded_len(p));
    encode_into(p, &mut b);
    b
}

/// Encodes `p`, appending to `b`.
pub fn encode_into(p: &Packet, b: &mut Vec<u8>) {
    b.put_u16(MAGIC);
    b.put_u8(VERSION);
    b.put_u8(p.message.kind() as u8);
    b.put_u32(p.sender);
    put_ring_id(b, p.ring_id);
    match &p.message {
        Message::Token(t) => {
            debug_assert!(t.rtr.len() <= RTR_MAX);
            b.put_u64(t.token_seq);
            b.put_u64(t.seq);
            b.put_u64(t.aru);
            b.put_u32(t.aru_addr);
            b.put_u32(t.fcc);
            b.put_u32(t.backlog);
            b.put_u8(t.retrans_flg as u8);
            b.put_u16(t.rtr.len() as u16);
            for s in &t.rtr {
                b.put_u64(*s);
            }
        }
        Message::Mcast(m) => {
            debug_assert!(m.payload.len() <= FRAME_MAX);
            b.put_u64(m.seq);
            b.put_u8(m.safe as u8 | (m.encapsulated.is_some() as u8) << 1);
            if let Some(e) = &m.encapsulated {
                put_ring_id(b, e.ring_id);
                b.put_u64(e.seq);
                b.put_u32(e.origin);
                b.put_u8(e.safe as u8);
            }
            b.put_u32(m.payload.len() as u32);
            b.put_slice(&m.payload);
        }
        Message::TokenHoldCancel => {}
        Message::MergeDetect(m) => {
            put_nodes(b, &m.members);
            put_nodes(b, &m.unheard);
        }
        Message::Join(j) => {
            b.put_u64(j.ring_seq);
            put_nodes(b, &j.proc_set);
            put_nodes(b, &j.fail_set);
            b.put_u64(j.unheard_epoch);
            put_nodes(b, &j.unheard);
        }
        Message::CommitToken(c) => {
            debug_assert!(c.entries.len() <= c.members.len());
            b.put_u64(c.token_seq);
            put_nodes(b, &c.members);
            b.put_u16(c.entries.len() as u16);
            for e in &c.entries {
                put_ring_id(b, e.old_ring);
                b.put_u64(e.aru);
                b.put_u64(e.high_delivered);
                b.put_u8(e.received_flg as u8);
            }
        }
        Message::Leave(l) => b.put_u64(l.ring_seq),
    }
}

fn put_nodes(b: &mut Vec<u8>, nodes: &[NodeId]) {
    debug_assert!(nodes.len() <= PROCESSORS_MAX);
    b.put_u16(nodes.len() as u16);
    for n in nodes {
        b.put_u32(*n);
    }
}

/// Writes a blob as [`Reader::blob`] reads it: its length as a big-endian u32, then its
/// bytes.
pub fn put_blob(b: &mut Vec<u8>, x: &[u8]) {
    b.put_u32(x.len() as u32);
    b.put_slice(x);
}

/// Writes a ring id as [`Reader::ring_id`] reads it.
pub fn put_ring_id(b: &mut Vec<u8>, r: RingId) {
    b.put_u32(r.rep);
    b.put_u64(r.seq);
}

/// The one bounds-checked reader of every binary codec in ringlab (the ring's packets and
/// frames here, every sync-layer and service message in `ringlab-sync`): every accessor
/// names the field it reads and returns a typed [`DecodeError`] instead of panicking, and
/// every length it reads is checked against a bound before anything is allocated.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Returns a reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Returns how many bytes were read.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Returns how many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads `n` bytes of `field`.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                field,
                need: n,
                have: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let s = self.take(2, field)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let s = self.take(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let s = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a count as a big-endian u16 and refuses one above `max` (before anything it
    /// counts is read or allocated).
    pub fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = self.u16(field)? as usize;
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        Ok(n)
    }

    /// Reads a blob: its length as a big-endian u32, at most `max`, then its bytes (see
    /// [`put_blob`]).
    pub fn blob(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        self.take(n, field)
    }

    /// Reads everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Returns an error unless every byte was read.
    pub fn end(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Reads a ring id: representative u32, then ring seq u64.
    pub fn ring_id(&mut self, field: &'static str) -> Result<RingId, DecodeError> {
        Ok(RingId {
            rep: self.u32(field)?,
            seq: self.u64(field)?,
        })
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(field)),
        }
    }

    fn nodes(&mut self, field: &'static str) -> Result<Vec<NodeId>, DecodeError> {
        let n = self.count(field, PROCESSORS_MAX)?;
        if self.remaining() < 4 * n {
            return Err(DecodeError::Truncated {
                field,
                need: 4 * n,
                have: self.remaining(),
            });
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.u32(field)?;
            if id == 0 {
                return Err(DecodeError::ZeroNodeId(field));
            }
            if v.last().is_some_and(|&l| l >= id) {
                return Err(DecodeError::NotSorted(field));
            }
            v.push(id);
        }
        Ok(v)
    }
}

/// Reads and validates the common header; returns (type, sender, ring id).
pub fn decode_header(buf: &[u8]) -> Result<(MessageType, NodeId, RingId), DecodeError> {
    let mut r = Reader::new(buf);
    header(&mut r)
}

fn header(r: &mut Reader<'_>) -> Result<(MessageType, NodeId, RingId), DecodeError> {
    let magic = r.u16("magic")?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let t = r.u8("type")?;
    let kind = MessageType::from_u8(t).ok_or(DecodeError::UnknownType(t))?;
    let sender = r.u32("sender")?;
    if sender == 0 {
        return Err(DecodeError::ZeroNodeId("sender"));
    }
    let ring_id = r.ring_id("ring id")?;
    Ok((kind, sender, ring_id))
}

/// Decodes one packet. Never panics; the payload of an mcast is copied once into `Bytes`.
pub fn decode(buf: &[u8]) -> Result<Packet, DecodeError> {
    decode_inner(buf, None)
}

/// Decodes one packet held in `Bytes`; an mcast payload is a zero-copy slice of `buf`.
pub fn decode_bytes(buf: &Bytes) -> Result<Packet, DecodeError> {
    decode_inner(buf, Some(buf))
}

fn decode_inner(buf: &[u8], shared: Option<&Bytes>) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(buf);
    let (kind, sender, ring_id) = header(&mut r)?;
    let message = match kind {
        MessageType::Token => Message::Token(token_body(&mut r)?),
        MessageType::Mcast => Message::Mcast(mcast_body(&mut r, shared)?),
        MessageType::MergeDetect => Message::MergeDetect(MergeDetect {
            members: r.nodes("merge-detect members")?,
            unheard: r.nodes("merge-detect unheard")?,
        }),
        MessageType::Join => Message::Join(join_body(&mut r)?),
        MessageType::CommitToken => Message::CommitToken(commit_body(&mut r)?),
        MessageType::TokenHoldCancel => Message::TokenHoldCancel,
        MessageType::Leave => Message::Leave(Leave {
            ring_seq: r.u64("leave ring_seq")?,
        }),
    };
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(Packet {
        sender,
        ring_id,
        message,
    })
}

fn token_body(r: &mut Reader<'_>) -> Result<Token, DecodeError> {
    let token_seq = r.u64("token_seq")?;
    let seq = r.u64("token seq")?;
    let aru = r.u64("aru")?;
    let aru_addr = r.u32("aru_addr")?;
    let fcc = r.u32("fcc")?;
    let backlog = r.u32("backlog")?;
    let retrans_flg = r.bool("retrans_flg")?;
    let n = r.u16("rtr count")? as usize;
    if n > RTR_MAX {
        return Err(DecodeError::TooLong {
            field: "rtr list",
            len: n,
            max: RTR_MAX,
        });
    }
    if aru > seq {
        return Err(DecodeError::Invalid("aru above seq"));
    }
    let mut rtr = Vec::with_capacity(n);
    for _ in 0..n {
        rtr.push(r.u64("rtr entry")?);
    }
    Ok(Token {
        token_seq,
        seq,
        aru,
        aru_addr,
        fcc,
        backlog,
        retrans_flg,
        rtr,
    })
}

fn mcast_body(r: &mut Reader<'_>, shared: Option<&Bytes>) -> Result<Mcast, DecodeError> {
    let seq = r.u64("mcast seq")?;
    if seq == 0 {
        return Err(DecodeError::Invalid("mcast seq 0"));
    }
    let flags = r.u8("mcast flags")?;
    if flags & !0b11 != 0 {
        return Err(DecodeError::Invalid("mcast flags"));
    }
    let encapsulated = if flags & 0b10 != 0 {
        let ring_id = r.ring_id("encapsulated ring id")?;
        let seq = r.u64("encapsulated seq")?;
        let origin = r.u32("encapsulated origin")?;
        if origin == 0 {
            return Err(DecodeError::ZeroNodeId("encapsulated origin"));
        }
        if seq == 0 {
            return Err(DecodeError::Invalid("encapsulated seq 0"));
        }
        let safe = r.bool("encapsulated flags")?;
        Some(Encapsulated {
            ring_id,
            seq,
            origin,
            safe,
        })
    } else {
        None
    };
    let len = r.u32("payload length")? as usize;
    if len > FRAME_MAX {
        return Err(DecodeError::TooLong {
            field: "payload",
            len,
            max: FRAME_MAX,
        });
    }
    let start = r.pos();
    let slice = r.take(len, "payload")?;
    let payload = match shared {
        Some(b) => b.slice(start..start + len),
        None => Bytes::copy_from_slice(slice),
    };
    Ok(Mcast {
        seq,
        safe: flags & 1 != 0,
        encapsulated,
        payload,
    })
}

fn join_body(r: &mut Reader<'_>) -> Result<Join, DecodeError> {
    Ok(Join {
        ring_seq: r.u64("join ring_seq")?,
        proc_set: r.nodes("proc set")?,
        fail_set: r.nodes("fail set")?,
        unheard_epoch: r.u64("unheard epoch")?,
        unheard: r.nodes("unheard set")?,
    })
}

fn commit_body(r: &mut Reader<'_>) -> Result<CommitToken, DecodeError> {
    let token_seq = r.u64("commit token_seq")?;
    let members = r.nodes("commit members")?;
    if members.is_empty() {
        return Err(DecodeError::Invalid("empty commit member list"));
    }
    let n = r.count("memb_index", members.len())?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(MembEntry {
            old_ring: r.ring_id("entry old ring")?,
            aru: r.u64("entry aru")?,
            high_delivered: r.u64("entry high_delivered")?,
            received_flg: r.bool("entry received_flg")?,
        });
    }
    Ok(CommitToken {
        token_seq,
        members,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring_id() -> impl Strategy<Value = RingId> {
        (1u32.., any::<u64>()).prop_map(|(rep, seq)| RingId { rep, seq })
    }

    fn nodes() -> impl Strategy<Value = Vec<NodeId>> {
        proptest::collection::btree_set(1u32.., 0..40).prop_map(|s| s.into_iter().collect())
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
                proptest::collection::vec(any::<u64>(), 0..=RTR_MAX)
            )
                .prop_map(
                    |(token_seq, a, b, aru_addr, fcc, backlog, retrans_flg, rtr)| {
                        Message::Token(Token {
                            token_seq,
                            seq: a.max(b),
                            aru: a.min(b),
                            aru_addr,
                            fcc,
                            backlog,
                            retrans_flg,
                            rtr,
                        })
                    }
                ),
            (
                1u64..,
                any::<bool>(),
                proptest::option::of((ring_id(), 1u64.., 1u32.., any::<bool>())),
                proptest::collection::vec(any::<u8>(), 0..2000)
            )
                .prop_map(|(seq, safe, e, payload)| Message::Mcast(Mcast {
                    seq,
                    safe,
                    encapsulated: e.map(|(ring_id, seq, origin, safe)| Encapsulated {
                        ring_id,
                        seq,
                        origin,
                        safe
                    }),
                    payload: Bytes::from(payload),
                })),
            (nodes(), nodes()).prop_map(|(members, unheard)| Message::MergeDetect(MergeDetect {
                members,
                unheard
            })),
            (any::<u64>(), nodes(), nodes(), nodes(), any::<u64>()).prop_map(
                |(ring_seq, proc_set, fail_set, unheard, unheard_epoch)| {
                    Message::Join(Join {
                        ring_seq,
                        proc_set,
                        fail_set,
                        unheard,
                        unheard_epoch,
                    })
                }
            ),
            (
                any::<u64>(),
                nodes(),
                any::<u16>(),
                ring_id(),
                any::<u64>(),
                any::<bool>()
            )
                .prop_filter("non-empty", |t| !t.1.is_empty())
                .prop_map(|(token_seq, members, k, old_ring, aru, received_flg)| {
                    let n = k as usize % (members.len() + 1);
                    let entries = (0..n)
                        .map(|i| MembEntry {
                            old_ring,
                            aru: aru.wrapping_add(i as u64),
                            high_delivered: aru / 2,
                            received_flg,
                        })
                        .collect();
                    Message::CommitToken(CommitToken {
                        token_seq,
                        members,
                        entries,
                    })
                }),
            Just(Message::TokenHoldCancel),
            any::<u64>().prop_map(|ring_seq| Message::Leave(Leave { ring_seq })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_every_message_type(sender in 1u32.., ring_id in ring_id(), message in message()) {
            let p = Packet { sender, ring_id, message };
            let b = encode(&p);
            prop_assert_eq!(b.len(), encoded_len(&p));
            prop_assert_eq!(&decode(&b).unwrap(), &p);
            prop_assert_eq!(&decode_bytes(&Bytes::from(b.clone())).unwrap(), &p);
            // Every strict prefix is a typed error, never a panic or a success.
            for cut in [0, 1, 5, HEADER_LEN - 1, b.len() / 2, b.len().saturating_sub(1)] {
                if cut < b.len() {
                    prop_assert!(decode(&b[..cut]).is_err());
                }
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(t in 0u8..8, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![0x52, 0x4C, VERSION, t, 0, 0, 0, 7];
            b.extend_from_slice(&[0; 12]);
            b.extend_from_slice(&body);
            let _ = decode(&b);
        }
    }

    #[test]
    fn typed_errors() {
        let p = Packet {
            sender: 3,
            ring_id: RingId { rep: 1, seq: 8 },
            message: Message::Leave(Leave { ring_seq: 8 }),
        };
        let mut b = encode(&p);
        assert_eq!(
            decode(&b[..3]),
            Err(DecodeError::Truncated {
                field: "type",
                need: 1,
                have: 0
            })
        );
        b[2] = 9;
        assert_eq!(decode(&b), Err(DecodeError::UnsupportedVersion(9)));
        b[2] = VERSION;
        b[3] = 42;
        assert_eq!(decode(&b), Err(DecodeError::UnknownType(42)));
        b[0] = 0;
        assert!(matches!(decode(&b), Err(DecodeError::BadMagic(_))));
        let mut b = encode(&p);
        b.push(0);
        assert_eq!(decode(&b), Err(DecodeError::TrailingBytes(1)));
        // A commit token whose memb_index exceeds its member list (corosync issue #35).
        let ct = Packet {
            sender: 1,
            ring_id: RingId { rep: 1, seq: 12 },
            message: Message::CommitToken(CommitToken {
                token_seq: 1,
                members: vec![1, 2],
                entries: vec![],
            }),
        };
        let mut b = encode(&ct);
        let idx = HEADER_LEN + 8 + 2 + 8;
        b[idx..idx + 2].copy_from_slice(&3u16.to_be_bytes());
        assert!(matches!(
            decode(&b),
            Err(DecodeError::TooLong {
                field: "memb_index",
                ..
            })
        ));
        // An oversized rtr count is refused before anything is read.
        let tok = Packet {
            sender: 1,
            ring_id: RingId { rep: 1, seq: 12 },
            message: Message::Token(Token::default()),
        };
        let mut b = encode(&tok);
        let idx = HEADER_LEN + 8 * 3 + 4 * 3 + 1;
        b[idx..idx + 2].copy_from_slice(&(RTR_MAX as u16 + 1).to_be_bytes());
        assert!(matches!(
            decode(&b),
            Err(DecodeError::TooLong {
                field: "rtr list",
                ..
            })
        ));
        // Unsorted proc set.
        let j = Packet {
            sender: 1,
            ring_id: RingId::default(),
            message: Message::Join(Join {
                ring_seq: 0,
                proc_set: vec![1, 2],
                fail_set: vec![],
                unheard: vec![],
                unheard_epoch: 0,
            }),
        };
        let mut b = encode(&j);
        let idx = HEADER_LEN + 8 + 2;
        b[idx..idx + 4].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(decode(&b), Err(DecodeError::NotSorted("proc set")));
    }
}
