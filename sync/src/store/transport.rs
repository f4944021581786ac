//! The chunk transfer's transport, sans-IO: reliable messages (up to [`MAX_MESSAGE`] bytes,
//! a few MiB) point to point between nodes over unreliable datagrams, with their own
//! fragmentation, acknowledgements, retransmission and optional pacing. No sockets, no
//! threads, no clock reads and no randomness: time is always an argument (`now`, in
//! nanoseconds), as in quinn-proto and smoltcp. The node's event loop (or the simulator)
//! hands it datagrams with [`Transport::handle_datagram`] and timers with
//! [`Transport::handle_timeout`], queues messages with [`Transport::send`], and after every
//! input drains [`Transport::poll_transmit`] and [`Transport::poll_event`], then sleeps
//! until [`Transport::poll_timeout`].
//!
//! # Layout
//!
//! Every datagram is big-endian, decoded with the one [`Reader`] of every codec, and starts
//! with [`MAGIC`] (`"RT"`; the ring's packets start with `"RL"`, which is how a node tells
//! them apart: [`is_transfer_datagram`]), the format version ([`TRANSPORT_VERSION`]) and a
//! kind byte. A datagram is at most [`MAX_DATAGRAM`] bytes.
//!
//! | field | bytes | kind | meaning |
//! |---|---|---|---|
//! | magic | 2 | both | `0x52 0x54`, [`MAGIC`] |
//! | version | 1 | both | [`TRANSPORT_VERSION`]; another is refused |
//! | kind | 1 | both | [`KIND_FRAGMENT`] or [`KIND_ACK`]; another is refused |
//! | nonce | 8 | both | the message's sender's nonce (one per incarnation); in an ack, the nonce of the acknowledged message's sender, the ack's receiver |
//! | seq | 8 | both | the message's number, unique per nonce |
//! | frag_no | 4 | fragment | this fragment's number, below frag_count |
//! | frag_count | 4 | fragment | the message's fragments, at least 1 |
//! | total_len | 4 | fragment | the message's length, at most the receiver's `max_message` |
//! | payload | rest | fragment | the fragment's bytes: empty only for an empty message |
//! | cumulative | 4 | ack | every fragment below it was received |
//! | sack | 8 | ack | bit i: fragment `cumulative + 1 + i` was received |
//! | complete | 1 | ack | 0 or 1: the whole message was received (the sender stops) |
//!
//! A fragment header is [`FRAGMENT_HEADER_LEN`] (32) bytes, an ack [`ACK_LEN`] (33). Every
//! fragment but the last carries the same number of bytes, the message's fragment size
//! (`datagram_bytes` − 32 at its sender, between [`MIN_FRAGMENT_PAYLOAD`] and
//! [`MAX_FRAGMENT_PAYLOAD`]); the last carries the rest, at least one byte. So every
//! fragment on its own implies the fragment size (a full one is it; the last one gives
//! `(total_len − len) / (frag_count − 1)`, which must divide exactly and be at least its
//! length), and `frag_count` must be `⌈total_len / size⌉`: [`Datagram::decode`] refuses a
//! fragment that contradicts itself, and the receiver refuses one whose count, length or
//! size differ from what the message's earlier fragments said
//! ([`TransportError::Inconsistent`]). What decodes re-encodes to the same bytes.
//!
//! # Behaviour
//!
//! - Sender: per peer, a FIFO of messages. Fragments go in order, within a window of
//!   `window` fragments in flight (sent, not yet acknowledged) per peer, across that peer's
//!   messages; retransmissions go first and do not count twice. At most `max_partial`
//!   messages of more than one fragment are in flight per peer (so the receiver's partials
//!   suffice), and a message starts only within [`SEQ_WINDOW`] numbers of the peer's oldest
//!   one (so the receiver's memory of completed numbers suffices). Acks mark fragments
//!   (cumulative and selective). The retransmission timeout is RFC 6298's, SRTT + 4 RTTVAR
//!   (samples only from fragments sent once: Karn), plus [`ACK_DELAY_NS`] as in QUIC's
//!   PTO (RFC 9002), within `rto_min_ns..=rto_max_ns`; it doubles on expiry (each fragment
//!   has its own deadline, but expiries within half a timeout of a doubling are the same
//!   timeout) and the backoff is dropped when an ack acknowledges something new, as in
//!   QUIC. A fragment is also retransmitted early when acks show three later
//!   fragments, sent after it, received, and it has been out longer than the timeout's
//!   estimate without floor or backoff (RACK's guard against reordering, RFC 8985); at
//!   most once per RTO. A message's new fragments stay within 65 of its first
//!   unacknowledged one (what an ack can report: the cumulative number and 64 SACK bits);
//!   beyond, the window goes to its next message meanwhile. A message is
//!   [`TransportEvent::Delivered`] when the receiver says it is complete. When one of a
//!   peer's messages with fragments in flight makes no progress (no newly acknowledged
//!   fragment) for `give_up_ns`, the peer is presumed gone: every message to it is
//!   [`TransportEvent::Failed`] and its send state forgotten. (The clock runs only while a
//!   message has fragments in flight: one waiting for the window behind another is not
//!   waiting on the peer.)
//! - Receiver: reassembles per (peer, nonce, seq) into one buffer per message, allocated
//!   only after `total_len ≤ max_message` was checked, and delivers each message once
//!   ([`TransportEvent::Received`]); it remembers which of the last [`SEQ_WINDOW`] numbers
//!   completed (a bitmap per peer), so a late duplicate is acknowledged as complete and not
//!   delivered again, and a fragment older than that is ignored. Acks go at once on a gap,
//!   a duplicate or completion, otherwise after every [`ACK_EVERY`]th in-order fragment or
//!   [`ACK_DELAY_NS`] after the first unacknowledged one. A peer's new nonce (a restart)
//!   drops its partials and its memory of the old nonce, and the old nonce is refused from
//!   then on. At most `max_partial` partial messages per peer (the oldest is dropped), for
//!   at most `max_peers` peers (the least recently heard is dropped); a partial that gets no
//!   new fragment for twice `give_up_ns` is dropped.
//! - Lost receiver state: acks of one partial message only ever grow, so when the union of
//!   a message's acks covers every fragment without an ack saying complete, or when acks
//!   keep saying fragments are missing that earlier acks reported for longer than an RTO,
//!   the receiver lost the message (it restarted, or dropped the partial): the sender then
//!   takes the latest ack as the truth and sends the rest again. (Across a receiver's
//!   restart a message may so be delivered to both incarnations.)
//! - Pacing: with `rate_limit`, a token bucket on the bytes of every datagram, filled at
//!   `rate_limit` bytes per second up to `window` full datagrams, starting empty (so N bytes
//!   take at least N / rate). Acks go without waiting for tokens but spend them.
//! - Bounds: nothing a peer sends makes it grow without bound (partials, completed-number
//!   memory, peers, retired nonces, pending acks are all capped); every wire value is read
//!   with checked or saturating arithmetic, and garbage gives a typed error, never a panic.
//!   What the layer above queues with [`Transport::send`] and does not drain from
//!   [`Transport::poll_event`] is its own to bound.

use crate::store::chunk_msg::MAX_MESSAGE;
use bytes::{BufMut, Bytes};
use ringlab_ring::wire::{DecodeError, Reader};
use ringlab_ring::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::ops::Bound;
use tracing::debug;

/// The first two bytes of every datagram of the transport (`"RT"`).
pub const MAGIC: [u8; 2] = *b"RT";

/// The encoding's version (the third byte).
pub const TRANSPORT_VERSION: u8 = 1;

/// The kind byte of a fragment.
pub const KIND_FRAGMENT: u8 = 1;

/// The kind byte of an ack.
pub const KIND_ACK: u8 = 2;

/// Bytes of a fragment before its payload: magic, version, kind, nonce, seq, frag_no,
/// frag_count, total_len.
pub const FRAGMENT_HEADER_LEN: usize = 2 + 1 + 1 + 8 + 8 + 4 + 4 + 4;

/// Bytes of an ack: magic, version, kind, nonce, seq, cumulative, sack, complete.
pub const ACK_LEN: usize = 2 + 1 + 1 + 8 + 8 + 4 + 8 + 1;

/// The smallest `datagram_bytes`.
pub const MIN_DATAGRAM: usize = 128;

/// The largest datagram (and `datagram_bytes`).
pub const MAX_DATAGRAM: usize = 65_000;

/// The smallest fragment size (the payload of a full fragment): a sender's smallest
/// datagram less the header. Bounds the fragments a message may have.
pub const MIN_FRAGMENT_PAYLOAD: usize = MIN_DATAGRAM - FRAGMENT_HEADER_LEN;

/// The largest fragment size.
pub const MAX_FRAGMENT_PAYLOAD: usize = MAX_DATAGRAM - FRAGMENT_HEADER_LEN;

/// Fragments an ack reports beyond its cumulative number.
pub const SACK_BITS: u32 = 64;

/// In-order fragments the receiver takes before it acknowledges them at once.
pub const ACK_EVERY: u32 = 4;

/// The longest the receiver delays an ack (2 ms).
pub const ACK_DELAY_NS: u64 = 2_000_000;

/// Message numbers per peer the receiver remembers completed: a fragment more than this
/// below the highest number it has seen from that nonce is ignored, and a sender keeps its
/// messages to a peer within this many numbers of the oldest.
pub const SEQ_WINDOW: u64 = 16_384;

/// The largest `window`.
pub const MAX_WINDOW: usize = 4096;

/// The largest `max_partial`.
pub const MAX_PARTIAL: usize = 1024;

/// The largest `max_message` (1 GiB).
pub const MAX_MESSAGE_LIMIT: usize = 1 << 30;

/// Old nonces per peer the receiver refuses after a restart.
const RETIRED_NONCES: usize = 4;

/// Acks waiting to be sent, at most (more are dropped: a retransmission asks again).
const MAX_PENDING_ACKS: usize = 16_384;

/// A partial message with no new fragment for this many `give_up_ns` is dropped.
const PARTIAL_EXPIRY_FACTOR: u64 = 2;

/// Later fragments acknowledged that make a fragment retransmit early.
const FAST_RETRANSMIT_AFTER: u32 = 3;

const MS: u64 = 1_000_000;

/// Returns whether `data` is a datagram of this transport (it starts with [`MAGIC`]).
pub fn is_transfer_datagram(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The transport's knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Largest datagram it emits, header included (default 1400; valid
    /// [`MIN_DATAGRAM`]..=[`MAX_DATAGRAM`]).
    pub datagram_bytes: usize,
    /// Fragments in flight (sent, not yet acknowledged) per peer (default 64; valid
    /// 1..=[`MAX_WINDOW`]).
    pub window: usize,
    /// Pacing: bytes per second of datagrams to all peers together (None: as fast as the
    /// window lets). A token bucket of `window` full datagrams, starting empty.
    pub rate_limit: Option<u64>,
    /// The initial retransmission timeout (default 50 ms); it then adapts (RFC 6298).
    pub rto_initial_ns: u64,
    /// The smallest retransmission timeout (default 5 ms).
    pub rto_min_ns: u64,
    /// The largest retransmission timeout, backoff included (default 1 s).
    pub rto_max_ns: u64,
    /// A message none of whose fragments has been newly acknowledged for this long fails,
    /// with every other message to that peer (default 5 s).
    pub give_up_ns: u64,
    /// The largest message accepted from the layer above and reassembled from a peer
    /// (default [`MAX_MESSAGE`], the chunk protocol's largest; at most
    /// [`MAX_MESSAGE_LIMIT`]).
    pub max_message: usize,
    /// Partly received messages kept per peer (default 8; valid 1..=[`MAX_PARTIAL`]); the
    /// oldest is dropped when a new one starts beyond this. Also the most messages of more
    /// than one fragment the sender has in flight per peer.
    pub max_partial: usize,
    /// Peers the receiver keeps state for (default 1024, at least 1); the least recently
    /// heard is dropped beyond this.
    pub max_peers: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            datagram_bytes: 1400,
            window: 64,
            rate_limit: None,
            rto_initial_ns: 50 * MS,
            rto_min_ns: 5 * MS,
            rto_max_ns: 1000 * MS,
            give_up_ns: 5000 * MS,
            max_message: MAX_MESSAGE,
            max_partial: 8,
            max_peers: 1024,
        }
    }
}

impl TransportConfig {
    /// Checks every knob's range; the error names the knob.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        check(
            (MIN_DATAGRAM..=MAX_DATAGRAM).contains(&self.datagram_bytes),
            format!(
                "datagram_bytes {} must be {MIN_DATAGRAM} to {MAX_DATAGRAM}",
                self.datagram_bytes
            ),
        )?;
        check(
            (1..=MAX_WINDOW).contains(&self.window),
            format!("window {} must be 1 to {MAX_WINDOW}", self.window),
        )?;
        check(
            self.rate_limit != Some(0),
            "rate_limit must be at least 1 byte/s".into(),
        )?;
        check(
            self.rto_min_ns >= 1
                && self.rto_min_ns <= self.rto_initial_ns
                && self.rto_initial_ns <= self.rto_max_ns,
            format!(
                "need 1 <= rto_min_ns ({}) <= rto_initial_ns ({}) <= rto_max_ns ({})",
                self.rto_min_ns, self.rto_initial_ns, self.rto_max_ns
            ),
        )?;
        check(self.give_up_ns >= 1, "give_up_ns must be at least 1".into())?;
        check(
            self.max_message <= MAX_MESSAGE_LIMIT,
            format!(
                "max_message {} must be at most {MAX_MESSAGE_LIMIT}",
                self.max_message
            ),
        )?;
        check(
            (1..=MAX_PARTIAL).contains(&self.max_partial),
            format!(
                "max_partial {} must be 1 to {MAX_PARTIAL}",
                self.max_partial
            ),
        )?;
        check(self.max_peers >= 1, "max_peers must be at least 1".into())
    }

    /// Returns it with every knob clamped into its valid range.
    fn clamped(mut self) -> Self {
        self.datagram_bytes = self.datagram_bytes.clamp(MIN_DATAGRAM, MAX_DATAGRAM);
        self.window = self.window.clamp(1, MAX_WINDOW);
        self.rate_limit = self.rate_limit.map(|r| r.max(1));
        self.rto_min_ns = self.rto_min_ns.max(1);
        self.rto_max_ns = self.rto_max_ns.max(self.rto_min_ns);
        self.rto_initial_ns = self.rto_initial_ns.clamp(self.rto_min_ns, self.rto_max_ns);
        self.give_up_ns = self.give_up_ns.max(1);
        self.max_message = self.max_message.min(MAX_MESSAGE_LIMIT);
        self.max_partial = self.max_partial.clamp(1, MAX_PARTIAL);
        self.max_peers = self.max_peers.max(1);
        self
    }

    /// The payload of a full fragment.
    fn fragment_size(&self) -> usize {
        self.datagram_bytes - FRAGMENT_HEADER_LEN
    }
}

/// A message's id: its sender's nonce (picked per incarnation by the caller) and a sequence
/// number, unique per nonce (one counter for all peers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    /// The sender's nonce.
    pub nonce: u64,
    /// The message's number.
    pub seq: u64,
}

/// What the transport tells the layer above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A whole message arrived (delivered once per [`MsgId`]; no order between messages is
    /// promised).
    Received {
        /// Its sender.
        from: NodeId,
        /// The message.
        msg: Bytes,
    },
    /// The receiver has every fragment of a message we sent.
    Delivered {
        /// Where it went.
        to: NodeId,
        /// Its id, as [`Transport::send`] returned it.
        id: MsgId,
    },
    /// A message we sent gave up (no acknowledgement progress for `give_up_ns`, on it or on
    /// another message to the same peer): the peer is presumed gone.
    Failed {
        /// Where it was going.
        to: NodeId,
        /// Its id, as [`Transport::send`] returned it.
        id: MsgId,
    },
}

/// Why a message was refused or a datagram dropped.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    /// The datagram does not decode (garbage, truncated, an unknown version or kind, a
    /// fragment that contradicts itself).
    #[error("undecodable transfer datagram: {0}")]
    Decode(#[from] DecodeError),
    /// A message (to send, or announced by a fragment's `total_len`) above `max_message`.
    #[error("message of {len} bytes is above the bound {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A fragment or an ack that disagrees with what earlier fragments of the same message,
    /// or the message itself, said.
    #[error("inconsistent {what} for message {seq} of nonce {nonce:#x}")]
    Inconsistent {
        /// The message's sender's nonce.
        nonce: u64,
        /// The message's number.
        seq: u64,
        /// What disagrees.
        what: &'static str,
    },
}

/// The transport's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams emitted (fragments, retransmissions and acks).
    pub datagrams_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Fragments sent again.
    pub retransmitted: u64,
    /// Their bytes.
    pub retransmitted_bytes: u64,
    /// Acks emitted.
    pub acks_sent: u64,
    /// Datagrams taken by [`Transport::handle_datagram`].
    pub datagrams_received: u64,
    /// Of those, the ones refused with an error.
    pub malformed: u64,
    /// Fragments received again (of a partial message, or of a completed one).
    pub duplicates: u64,
    /// Messages we sent that were delivered ([`TransportEvent::Delivered`]).
    pub messages_sent: u64,
    /// Messages received whole ([`TransportEvent::Received`]).
    pub messages_received: u64,
    /// Messages we sent that failed ([`TransportEvent::Failed`]).
    pub failed: u64,
    /// Datagrams ignored as stale: of a retired nonce, below the completed-number memory,
    /// acks for another incarnation or for nothing we send.
    pub stale: u64,
    /// Partial messages dropped (beyond `max_partial`, beyond `max_peers`, expired).
    pub evicted: u64,
    /// Messages whose receiver lost its state, sent again from what its latest ack said.
    pub resets: u64,
    /// Fragments queued for retransmission early, on acks of later ones (not on a timeout).
    pub fast_retransmits: u64,
    /// Timeouts (handle_timeout calls that found fragments to retransmit).
    pub timeouts: u64,
}

/// A decoded datagram of the transport (see the module docs for the layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datagram {
    /// A piece of a message.
    Fragment {
        /// The message's id.
        id: MsgId,
        /// This fragment's number.
        frag_no: u32,
        /// The message's fragments.
        frag_count: u32,
        /// The message's length.
        total_len: u32,
        /// The fragment's bytes.
        payload: Bytes,
    },
    /// The receiver's state of a message.
    Ack {
        /// The message's id (its nonce is the ack's receiver's).
        id: MsgId,
        /// Every fragment below it was received.
        cumulative: u32,
        /// Bit i: fragment `cumulative + 1 + i` was received.
        sack: u64,
        /// The whole message was received.
        complete: bool,
    },
}

impl Datagram {
    /// Returns the encoded size.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Fragment { payload, .. } => FRAGMENT_HEADER_LEN + payload.len(),
            Self::Ack { .. } => ACK_LEN,
        }
    }

    /// Returns its encoding. The fields are written as they are: [`Datagram::decode`] is
    /// what validates them.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        match self {
            Self::Fragment {
                id,
                frag_no,
                frag_count,
                total_len,
                payload,
            } => put_fragment(&mut b, *id, *frag_no, *frag_count, *total_len, payload),
            Self::Ack {
                id,
                cumulative,
                sack,
                complete,
            } => put_ack(&mut b, *id, *cumulative, *sack, *complete),
        }
        b
    }

    /// Decodes exactly one datagram: a typed error for garbage (and for a fragment that
    /// contradicts itself), never a panic.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(match decode_ref(buf)? {
            DatagramRef::Fragment(f) => Self::Fragment {
                id: f.id,
                frag_no: f.frag_no,
                frag_count: f.frag_count,
                total_len: f.total_len,
                payload: Bytes::copy_from_slice(f.payload),
            },
            DatagramRef::Ack {
                id,
                cumulative,
                sack,
                complete,
            } => Self::Ack {
                id,
                cumulative,
                sack,
                complete,
            },
        })
    }
}

fn put_header(b: &mut Vec<u8>, kind: u8, id: MsgId) {
    b.put_slice(&MAGIC);
    b.put_u8(TRANSPORT_VERSION);
    b.put_u8(kind);
    b.put_u64(id.nonce);
    b.put_u64(id.seq);
}

fn put_fragment(
    b: &mut Vec<u8>,
    id: MsgId,
    frag_no: u32,
    frag_count: u32,
    total_len: u32,
    payload: &[u8],
) {
    put_header(b, KIND_FRAGMENT, id);
    b.put_u32(frag_no);
    b.put_u32(frag_count);
    b.put_u32(total_len);
    b.put_slice(payload);
}

fn put_ack(b: &mut Vec<u8>, id: MsgId, cumulative: u32, sack: u64, complete: bool) {
    put_header(b, KIND_ACK, id);
    b.put_u32(cumulative);
    b.put_u64(sack);
    b.put_u8(u8::from(complete));
}

/// A fragment borrowed from the datagram, with the fragment size it implies.
struct FragRef<'a> {
    id: MsgId,
    frag_no: u32,
    frag_count: u32,
    total_len: u32,
    /// The message's fragment size (0 for a message of one fragment).
    size: u32,
    payload: &'a [u8],
}

enum DatagramRef<'a> {
    Fragment(FragRef<'a>),
    Ack {
        id: MsgId,
        cumulative: u32,
        sack: u64,
        complete: bool,
    },
}

fn decode_ref(buf: &[u8]) -> Result<DatagramRef<'_>, DecodeError> {
    if buf.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong {
            field: "transfer datagram",
            len: buf.len(),
            max: MAX_DATAGRAM,
        });
    }
    let mut r = Reader::new(buf);
    let magic = r.u16("transfer magic")?;
    if magic != u16::from_be_bytes(MAGIC) {
        return Err(DecodeError::BadMagic(magic));
    }
    let v = r.u8("transfer version")?;
    if v != TRANSPORT_VERSION {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let kind = r.u8("transfer kind")?;
    if kind != KIND_FRAGMENT && kind != KIND_ACK {
        return Err(DecodeError::UnknownType(kind));
    }
    let id = MsgId {
        nonce: r.u64("transfer nonce")?,
        seq: r.u64("transfer seq")?,
    };
    match kind {
        KIND_FRAGMENT => {
            let frag_no = r.u32("fragment number")?;
            let frag_count = r.u32("fragment count")?;
            let total_len = r.u32("fragment total_len")?;
            let payload = r.rest();
            let size = fragment_size(frag_no, frag_count, total_len, payload.len())?;
            Ok(DatagramRef::Fragment(FragRef {
                id,
                frag_no,
                frag_count,
                total_len,
                size,
                payload,
            }))
        }
        KIND_ACK => {
            let cumulative = r.u32("ack cumulative")?;
            let sack = r.u64("ack sack")?;
            let complete = match r.u8("ack complete")? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("ack complete")),
            };
            r.end()?;
            Ok(DatagramRef::Ack {
                id,
                cumulative,
                sack,
                complete,
            })
        }
        k => Err(DecodeError::UnknownType(k)),
    }
}

/// Checks a fragment against itself and returns the fragment size it implies (0 for a
/// message of one fragment): see the module docs.
fn fragment_size(
    frag_no: u32,
    frag_count: u32,
    total_len: u32,
    len: usize,
) -> Result<u32, DecodeError> {
    if frag_count == 0 {
        return Err(DecodeError::Invalid("fragment count 0"));
    }
    if frag_no >= frag_count {
        return Err(DecodeError::Invalid("fragment number beyond the count"));
    }
    let (total, len, count) = (u64::from(total_len), len as u64, u64::from(frag_count));
    if count == 1 {
        return if len == total {
            Ok(0)
        } else {
            Err(DecodeError::Invalid(
                "fragment length of a one-fragment message",
            ))
        };
    }
    if len == 0 {
        return Err(DecodeError::Invalid("empty fragment"));
    }
    let size = if frag_no < frag_count - 1 {
        len
    } else {
        let rest = total
            .checked_sub(len)
            .filter(|r| r % (count - 1) == 0)
            .ok_or(DecodeError::Invalid("last fragment length"))?;
        let size = rest / (count - 1);
        if size < len {
            return Err(DecodeError::Invalid("last fragment length"));
        }
        size
    };
    if !(MIN_FRAGMENT_PAYLOAD as u64..=MAX_FRAGMENT_PAYLOAD as u64).contains(&size) {
        return Err(DecodeError::Invalid("fragment size"));
    }
    if total.div_ceil(size) != count {
        return Err(DecodeError::Invalid("fragment count"));
    }
    // size <= MAX_FRAGMENT_PAYLOAD, so it fits.
    Ok(size as u32)
}

fn bit(v: &[u64], i: u64) -> bool {
    usize::try_from(i / 64)
        .ok()
        .and_then(|w| v.get(w))
        .is_some_and(|w| (w >> (i % 64)) & 1 == 1)
}

fn set_bit(v: &mut [u64], i: u64) {
    if let Some(w) = usize::try_from(i / 64).ok().and_then(|w| v.get_mut(w)) {
        *w |= 1 << (i % 64);
    }
}

fn clear_bit(v: &mut [u64], i: u64) {
    if let Some(w) = usize::try_from(i / 64).ok().and_then(|w| v.get_mut(w)) {
        *w &= !(1 << (i % 64));
    }
}

fn bitset(bits: u32) -> Vec<u64> {
    vec![0; (bits as usize).div_ceil(64)]
}

/// RFC 6298's estimator, per peer, with exponential backoff on timeouts: expiries within
/// half a timeout of a doubling do not double it again (as with the RFC's one timer per
/// connection, although each fragment has its own deadline), and, as in QUIC (RFC 9002),
/// no backoff is left once an ack acknowledges something new (samples still follow Karn's
/// rule).
#[derive(Debug)]
struct Rtt {
    srtt: Option<u64>,
    rttvar: u64,
    /// The timeout from the estimate, without backoff.
    base: u64,
    /// The current timeout, backoff included.
    rto: u64,
    /// When it last backed off.
    backed_off_at: Option<u64>,
}

impl Rtt {
    fn new(cfg: &TransportConfig) -> Self {
        Self {
            srtt: None,
            rttvar: 0,
            base: cfg.rto_initial_ns,
            rto: cfg.rto_initial_ns,
            backed_off_at: None,
        }
    }

    fn sample(&mut self, r: u64, cfg: &TransportConfig) {
        let (srtt, rttvar) = match self.srtt {
            None => (r, r / 2),
            Some(s) => {
                let d = u128::from(s.abs_diff(r));
                let var = (3 * u128::from(self.rttvar) + d) / 4;
                let srtt = (7 * u128::from(s) + u128::from(r)) / 8;
                (
                    u64::try_from(srtt).unwrap_or(u64::MAX),
                    u64::try_from(var).unwrap_or(u64::MAX),
                )
            }
        };
        self.srtt = Some(srtt);
        self.rttvar = rttvar;
        // As QUIC's PTO (RFC 9002): the receiver may hold an ack for ACK_DELAY_NS, which
        // the samples (taken from the fragment that triggered an ack) do not show.
        self.base = srtt
            .saturating_add(rttvar.saturating_mul(4).max(1))
            .saturating_add(ACK_DELAY_NS)
            .clamp(cfg.rto_min_ns, cfg.rto_max_ns);
        self.rto = self.base;
        self.backed_off_at = None;
    }

    /// How long a fragment may be outstanding, when later ones were acknowledged, before
    /// it is taken for lost rather than reordered (RACK's idea, RFC 8985): the timeout's
    /// estimate without its floor and backoff, SRTT + 4 RTTVAR + [`ACK_DELAY_NS`].
    fn reorder_window(&self) -> u64 {
        match self.srtt {
            Some(s) => s
                .saturating_add(self.rttvar.saturating_mul(4))
                .saturating_add(ACK_DELAY_NS),
            None => self.base / 2,
        }
    }

    /// Something new was acknowledged: the path works.
    fn progress(&mut self) {
        self.rto = self.base;
        self.backed_off_at = None;
    }

    /// A fragment timed out at `now`.
    fn timeout(&mut self, now: u64, cfg: &TransportConfig) {
        if self
            .backed_off_at
            .is_some_and(|t| now < t.saturating_add(self.rto / 2))
        {
            return;
        }
        self.rto = self
            .rto
            .saturating_mul(2)
            .clamp(cfg.rto_min_ns, cfg.rto_max_ns);
        self.backed_off_at = Some(now);
    }
}

/// A fragment in flight.
#[derive(Clone, Copy, Debug)]
struct Flight {
    sent_at: u64,
    deadline: u64,
    /// Waiting in the retransmission queue.
    pending: bool,
    /// Later fragments, sent after it, acknowledged since it was last sent.
    later_acked: u32,
    /// No early retransmission before this.
    fast_ok_at: u64,
    /// The deadline was brought forward by acks of later fragments (its expiry is no
    /// timeout: no backoff).
    early: bool,
}

/// The send state of a message whose first fragment went.
#[derive(Debug)]
struct Started {
    acked: Vec<u64>,
    acked_count: u32,
    /// The first fragment not acknowledged.
    prefix: u32,
    sends: Vec<u16>,
    /// Fragments from here on are neither acknowledged nor in flight up to the next one
    /// that is acknowledged: the next to send for the first time (or again after a reset).
    next_new: u32,
    /// Fragments below this were sent at least once.
    sent_hw: u32,
    last_progress: u64,
    /// Since when acks say fragments are missing that earlier acks reported.
    regress_since: Option<u64>,
}

impl Started {
    fn new(frag_count: u32, now: u64) -> Self {
        Self {
            acked: bitset(frag_count),
            acked_count: 0,
            prefix: 0,
            sends: vec![0; frag_count as usize],
            next_new: 0,
            sent_hw: 0,
            last_progress: now,
            regress_since: None,
        }
    }

    fn normalize(&mut self, seq: u64, frag_count: u32, flight: &FlightMap) {
        while self.next_new < frag_count
            && (bit(&self.acked, u64::from(self.next_new))
                || flight.contains_key(&(seq, self.next_new)))
        {
            self.next_new += 1;
        }
    }

    /// Marks fragment `i` acknowledged. Returns None if it already was, else Some of when
    /// it was last sent and whether only once, if it was in flight.
    fn mark(
        &mut self,
        seq: u64,
        i: u32,
        flight: &mut FlightMap,
        retx: &mut BTreeSet<(u64, u32)>,
    ) -> Option<Option<(u64, bool)>> {
        if bit(&self.acked, u64::from(i)) {
            return None;
        }
        set_bit(&mut self.acked, u64::from(i));
        self.acked_count += 1;
        let Some(fl) = flight.remove(&(seq, i)) else {
            return Some(None);
        };
        if fl.pending {
            retx.remove(&(seq, i));
        }
        let once = self.sends.get(i as usize).is_some_and(|&s| s == 1);
        Some(Some((fl.sent_at, once)))
    }

    /// Takes an ack's set as the receiver's whole state of the message, and sends the rest
    /// again from the start (what was in flight may be beyond what it can report).
    fn reset(
        &mut self,
        seq: u64,
        frag_count: u32,
        cumulative: u32,
        sack: u64,
        flight: &mut FlightMap,
        retx: &mut BTreeSet<(u64, u32)>,
    ) {
        drop_flights(flight, retx, seq);
        self.acked.iter_mut().for_each(|w| *w = 0);
        for i in 0..cumulative {
            set_bit(&mut self.acked, u64::from(i));
        }
        for b in 0..SACK_BITS {
            if (sack >> b) & 1 == 1 {
                set_bit(&mut self.acked, u64::from(cumulative) + 1 + u64::from(b));
            }
        }
        self.acked_count = cumulative + sack.count_ones();
        self.prefix = cumulative;
        self.next_new = 0;
        self.normalize(seq, frag_count, flight);
        self.regress_since = None;
    }
}

type FlightMap = BTreeMap<(u64, u32), Flight>;

/// A message to send.
#[derive(Debug)]
struct OutMsg {
    id: MsgId,
    data: Bytes,
    frag_count: u32,
    size: usize,
    st: Option<Started>,
}

impl OutMsg {
    fn fragment(&self, i: u32) -> &[u8] {
        let start = (i as usize).saturating_mul(self.size).min(self.data.len());
        let end = start.saturating_add(self.size).min(self.data.len());
        &self.data[start..end]
    }
}

/// Returns the index of message `seq` in a peer's queue (sorted by number: one counter,
/// messages queued in order).
fn find_msg(queue: &VecDeque<OutMsg>, seq: u64) -> Option<usize> {
    queue.binary_search_by_key(&seq, |m| m.id.seq).ok()
}

/// What we send to one peer.
#[derive(Debug)]
struct SendPeer {
    queue: VecDeque<OutMsg>,
    flight: FlightMap,
    retx: BTreeSet<(u64, u32)>,
    rtt: Rtt,
}

/// Whether message `seq` has fragments in flight.
fn has_flights(flight: &FlightMap, seq: u64) -> bool {
    flight.range((seq, 0)..=(seq, u32::MAX)).next().is_some()
}

/// Forgets the fragments in flight of message `seq`.
fn drop_flights(flight: &mut FlightMap, retx: &mut BTreeSet<(u64, u32)>, seq: u64) {
    let keys: Vec<_> = flight
        .range((seq, 0)..=(seq, u32::MAX))
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        flight.remove(&k);
        retx.remove(&k);
    }
}

/// Which message numbers of a nonce completed, over the last [`SEQ_WINDOW`].
#[derive(Debug, Default)]
struct SeqMemory {
    high: Option<u64>,
    done: Vec<u64>,
}

#[derive(Debug, PartialEq, Eq)]
enum SeqState {
    Open,
    Done,
    Stale,
}

impl SeqMemory {
    fn state(&self, seq: u64) -> SeqState {
        match self.high {
            Some(h) if seq <= h && h - seq >= SEQ_WINDOW => SeqState::Stale,
            Some(h) if seq <= h && bit(&self.done, seq % SEQ_WINDOW) => SeqState::Done,
            _ => SeqState::Open,
        }
    }

    fn advance(&mut self, seq: u64) {
        if self.done.is_empty() {
            self.done = bitset(SEQ_WINDOW as u32);
        }
        match self.high {
            Some(h) if seq <= h => {}
            Some(h) if seq - h < SEQ_WINDOW => {
                for s in h + 1..=seq {
                    clear_bit(&mut self.done, s % SEQ_WINDOW);
                }
                self.high = Some(seq);
            }
            _ => {
                self.done.iter_mut().for_each(|w| *w = 0);
                self.high = Some(seq);
            }
        }
    }

    fn mark_done(&mut self, seq: u64) {
        self.advance(seq);
        set_bit(&mut self.done, seq % SEQ_WINDOW);
    }
}

/// A message being reassembled.
#[derive(Debug)]
struct Partial {
    frag_count: u32,
    total_len: u32,
    size: u32,
    buf: Vec<u8>,
    received: Vec<u64>,
    received_count: u32,
    /// The first fragment missing.
    cum: u32,
    /// In-order fragments since the last ack.
    unacked: u32,
    ack_due: Option<u64>,
    order: u64,
    last_new: u64,
}

impl Partial {
    fn ack_fields(&self) -> (u32, u64) {
        let mut sack = 0u64;
        for b in 0..SACK_BITS {
            let i = u64::from(self.cum) + 1 + u64::from(b);
            if i < u64::from(self.frag_count) && bit(&self.received, i) {
                sack |= 1 << b;
            }
        }
        (self.cum, sack)
    }
}

/// What we receive from one peer.
#[derive(Debug)]
struct RecvPeer {
    nonce: u64,
    retired: VecDeque<u64>,
    seqs: SeqMemory,
    partials: BTreeMap<u64, Partial>,
    last_active: u64,
}

impl RecvPeer {
    fn new(nonce: u64, now: u64) -> Self {
        Self {
            nonce,
            retired: VecDeque::new(),
            seqs: SeqMemory::default(),
            partials: BTreeMap::new(),
            last_active: now,
        }
    }
}

/// An ack to send: its state is read when it goes.
#[derive(Clone, Copy, Debug)]
struct AckReq {
    to: NodeId,
    nonce: u64,
    seq: u64,
    frag_count: u32,
}

/// The pacer's token bucket, in bytes × 10⁹ (so that ns × bytes/s adds up exactly).
#[derive(Debug)]
struct Pacer {
    rate: u64,
    cap: i128,
    tokens: i128,
    last: Option<u64>,
}

const NANO: i128 = 1_000_000_000;

impl Pacer {
    fn new(rate: u64, cfg: &TransportConfig) -> Self {
        Self {
            rate,
            cap: (cfg.window as i128) * (cfg.datagram_bytes as i128) * NANO,
            tokens: 0,
            last: None,
        }
    }

    fn refill(&mut self, now: u64) {
        match self.last {
            None => self.last = Some(now),
            Some(l) if now > l => {
                let add = u128::from(now - l).saturating_mul(u128::from(self.rate));
                let add = i128::try_from(add).unwrap_or(i128::MAX).min(2 * self.cap);
                self.tokens = (self.tokens + add).min(self.cap);
                self.last = Some(now);
            }
            Some(_) => {}
        }
    }

    fn can_send(&self, bytes: usize) -> bool {
        self.tokens >= bytes as i128 * NANO
    }

    fn spend(&mut self, bytes: usize) {
        self.tokens = (self.tokens - bytes as i128 * NANO).max(-self.cap);
    }

    /// When `bytes` may go (None before any refill).
    fn ready_at(&self, bytes: usize) -> Option<u64> {
        let last = self.last?;
        let need = bytes as i128 * NANO - self.tokens;
        if need <= 0 {
            return Some(last);
        }
        let rate = i128::from(self.rate.max(1));
        let wait = u64::try_from((need + rate - 1) / rate).unwrap_or(u64::MAX);
        Some(last.saturating_add(wait.max(1)))
    }
}

/// The next fragment to send to a peer.
#[derive(Clone, Copy, Debug)]
enum Cand {
    Retx { seq: u64, frag: u32 },
    New { idx: usize, frag: u32 },
}

/// The transport of one node (see the module docs).
pub struct Transport {
    me: NodeId,
    nonce: u64,
    cfg: TransportConfig,
    next_seq: u64,
    send: BTreeMap<NodeId, SendPeer>,
    recv: BTreeMap<NodeId, RecvPeer>,
    acks: VecDeque<AckReq>,
    ack_keys: BTreeSet<(NodeId, u64, u64)>,
    events: VecDeque<TransportEvent>,
    pacer: Option<Pacer>,
    /// The peer served last (round robin).
    rr: NodeId,
    partial_order: u64,
    stats: TransportStats,
}

impl fmt::Debug for Transport {
    /// A summary (the messages' bytes are left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("me", &self.me)
            .field("nonce", &self.nonce)
            .field("send_peers", &self.send.len())
            .field("recv_peers", &self.recv.len())
            .field("pending_acks", &self.acks.len())
            .field("events", &self.events.len())
            .field("held_bytes", &self.held_bytes())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Returns the transport of node `me`, whose messages carry `nonce` (pick one per
    /// incarnation, so a restart is told from a duplicate). `cfg` should pass
    /// [`TransportConfig::validate`]; knobs outside their ranges are clamped into them.
    pub fn new(me: NodeId, nonce: u64, cfg: TransportConfig) -> Self {
        let cfg = cfg.clamped();
        let pacer = cfg.rate_limit.map(|r| Pacer::new(r, &cfg));
        Self {
            me,
            nonce,
            cfg,
            next_seq: 0,
            send: BTreeMap::new(),
            recv: BTreeMap::new(),
            acks: VecDeque::new(),
            ack_keys: BTreeSet::new(),
            events: VecDeque::new(),
            pacer,
            rr: 0,
            partial_order: 0,
            stats: TransportStats::default(),
        }
    }

    /// Returns the node it belongs to.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Returns its nonce.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Returns its knobs (clamped).
    pub fn config(&self) -> &TransportConfig {
        &self.cfg
    }

    /// Queues a message to `to` and returns its id; refuses ([`TransportError::TooLarge`])
    /// one above `max_message`.
    pub fn send(&mut self, now: u64, to: NodeId, msg: Bytes) -> Result<MsgId, TransportError> {
        if msg.len() > self.cfg.max_message {
            return Err(TransportError::TooLarge {
                len: msg.len(),
                max: self.cfg.max_message,
            });
        }
        let size = self.cfg.fragment_size();
        // max_message <= 1 GiB and size >= 96: the count fits in a u32.
        let frag_count = msg.len().div_ceil(size).max(1) as u32;
        let id = MsgId {
            nonce: self.nonce,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if let Some(p) = self.pacer.as_mut() {
            p.refill(now);
        }
        let cfg = &self.cfg;
        let peer = self.send.entry(to).or_insert_with(|| SendPeer {
            queue: VecDeque::new(),
            flight: BTreeMap::new(),
            retx: BTreeSet::new(),
            rtt: Rtt::new(cfg),
        });
        peer.queue.push_back(OutMsg {
            id,
            data: msg,
            frag_count,
            size,
            st: None,
        });
        Ok(id)
    }

    /// Drops everything queued or in flight to `peer` (no events for them), the acks owed
    /// to it and its partial messages (its memory of completed messages stays).
    pub fn forget_peer(&mut self, peer: NodeId) {
        self.send.remove(&peer);
        if let Some(r) = self.recv.get_mut(&peer) {
            r.partials.clear();
        }
        self.acks.retain(|a| a.to != peer);
        self.ack_keys.retain(|k| k.0 != peer);
    }

    /// Takes one datagram from `from`. Garbage and hostile input give a typed error (and
    /// count in `malformed`), never a panic.
    pub fn handle_datagram(
        &mut self,
        now: u64,
        from: NodeId,
        data: &[u8],
    ) -> Result<(), TransportError> {
        self.stats.datagrams_received += 1;
        let r = match decode_ref(data) {
            Ok(DatagramRef::Fragment(f)) => self.on_fragment(now, from, f),
            Ok(DatagramRef::Ack {
                id,
                cumulative,
                sack,
                complete,
            }) => self.on_ack(now, from, id, cumulative, sack, complete),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &r {
            self.stats.malformed += 1;
            debug!(me = self.me, from, error = %e, "transfer datagram refused");
        }
        r
    }

    /// Runs the timers due at `now`: delayed acks, retransmissions (with backoff), give-ups,
    /// expiries of partial messages.
    pub fn handle_timeout(&mut self, now: u64) {
        let expiry = self.cfg.give_up_ns.saturating_mul(PARTIAL_EXPIRY_FACTOR);
        let mut due = Vec::new();
        for (&from, peer) in &mut self.recv {
            let before = peer.partials.len();
            peer.partials
                .retain(|_, p| p.last_new.saturating_add(expiry) > now);
            self.stats.evicted += (before - peer.partials.len()) as u64;
            for (&seq, p) in &mut peer.partials {
                if p.ack_due.is_some_and(|d| d <= now) {
                    p.ack_due = None;
                    due.push((from, peer.nonce, seq, p.frag_count));
                }
            }
        }
        for (to, nonce, seq, frag_count) in due {
            self.queue_ack(to, nonce, seq, frag_count);
        }
        let mut gone = Vec::new();
        for (&to, peer) in &mut self.send {
            // Started messages are a prefix of the queue.
            let mut started = peer.queue.iter().take_while(|m| m.st.is_some());
            let stuck = started.any(|m| {
                m.st.as_ref().is_some_and(|s| {
                    s.last_progress.saturating_add(self.cfg.give_up_ns) <= now
                        && has_flights(&peer.flight, m.id.seq)
                })
            });
            if stuck {
                gone.push(to);
                continue;
            }
            let mut expired = false;
            for (k, f) in peer.flight.iter_mut() {
                if !f.pending && f.deadline <= now {
                    f.pending = true;
                    peer.retx.insert(*k);
                    if f.early {
                        self.stats.fast_retransmits += 1;
                    } else {
                        expired = true;
                    }
                }
            }
            if expired {
                self.stats.timeouts += 1;
                peer.rtt.timeout(now, &self.cfg);
            }
        }
        for to in gone {
            self.fail_peer(to);
        }
    }

    /// Returns the next datagram to send (to, bytes), as the window and the pacing allow at
    /// `now`: acks first, then retransmissions, then new fragments, peers in turn.
    pub fn poll_transmit(&mut self, now: u64) -> Option<(NodeId, Bytes)> {
        if let Some(p) = self.pacer.as_mut() {
            p.refill(now);
        }
        while let Some(req) = self.acks.pop_front() {
            self.ack_keys.remove(&(req.to, req.nonce, req.seq));
            if let Some(d) = self.build_ack(req) {
                self.stats.acks_sent += 1;
                self.count_sent(d.len());
                return Some((req.to, d));
            }
        }
        let (to, cand, len) = self.candidate()?;
        if self.pacer.as_ref().is_some_and(|p| !p.can_send(len)) {
            return None;
        }
        let d = self.emit(now, to, cand)?;
        self.rr = to;
        self.count_sent(d.len());
        Some((to, d))
    }

    /// Returns the next event for the layer above.
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// Returns when it next needs [`Transport::handle_timeout`] (a retransmission, a
    /// give-up, a delayed ack, an expiry) or [`Transport::poll_transmit`] (the pacer's next
    /// slot); None when it has nothing to wait for.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut put = |x: u64| t = Some(t.map_or(x, |t| t.min(x)));
        for peer in self.send.values() {
            for f in peer.flight.values() {
                if !f.pending {
                    put(f.deadline);
                }
            }
            for m in &peer.queue {
                match &m.st {
                    Some(s) if has_flights(&peer.flight, m.id.seq) => {
                        put(s.last_progress.saturating_add(self.cfg.give_up_ns))
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
        let expiry = self.cfg.give_up_ns.saturating_mul(PARTIAL_EXPIRY_FACTOR);
        for peer in self.recv.values() {
            for p in peer.partials.values() {
                if let Some(d) = p.ack_due {
                    put(d);
                }
                put(p.last_new.saturating_add(expiry));
            }
        }
        if let Some(p) = &self.pacer {
            if let Some(at) = self.candidate().and_then(|(_, _, len)| p.ready_at(len)) {
                put(at);
            }
        }
        t
    }

    /// Returns its counters.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Returns the bytes of messages it holds for sending (queued and in flight) and of
    /// partial messages being reassembled: the memory it holds.
    pub fn held_bytes(&self) -> usize {
        let out: usize = self
            .send
            .values()
            .flat_map(|p| p.queue.iter())
            .map(|m| m.data.len())
            .sum();
        let partial: usize = self
            .recv
            .values()
            .flat_map(|p| p.partials.values())
            .map(|p| p.buf.len())
            .sum();
        out + partial
    }

    /// Returns whether nothing is queued, in flight or waiting to be acknowledged (by us:
    /// partial messages from peers may still be held).
    pub fn is_idle(&self) -> bool {
        self.send.values().all(|p| p.queue.is_empty())
            && self.acks.is_empty()
            && self
                .recv
                .values()
                .flat_map(|p| p.partials.values())
                .all(|p| p.ack_due.is_none())
    }

    fn count_sent(&mut self, len: usize) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += len as u64;
        if let Some(p) = self.pacer.as_mut() {
            p.spend(len);
        }
    }

    fn queue_ack(&mut self, to: NodeId, nonce: u64, seq: u64, frag_count: u32) {
        if self.acks.len() >= MAX_PENDING_ACKS || !self.ack_keys.insert((to, nonce, seq)) {
            return;
        }
        self.acks.push_back(AckReq {
            to,
            nonce,
            seq,
            frag_count,
        });
    }

    /// Builds an ack from the receiver's state now (None when there is nothing to say any
    /// more).
    fn build_ack(&mut self, req: AckReq) -> Option<Bytes> {
        let peer = self.recv.get_mut(&req.to)?;
        if peer.nonce != req.nonce {
            return None;
        }
        let id = MsgId {
            nonce: req.nonce,
            seq: req.seq,
        };
        let mut b = Vec::with_capacity(ACK_LEN);
        if let Some(p) = peer.partials.get_mut(&req.seq) {
            p.unacked = 0;
            p.ack_due = None;
            let (cum, sack) = p.ack_fields();
            put_ack(&mut b, id, cum, sack, false);
        } else if peer.seqs.state(req.seq) == SeqState::Done {
            put_ack(&mut b, id, req.frag_count, 0, true);
        } else {
            return None;
        }
        Some(Bytes::from(b))
    }

    fn fail_peer(&mut self, to: NodeId) {
        let Some(peer) = self.send.remove(&to) else {
            return;
        };
        debug!(
            me = self.me,
            to,
            messages = peer.queue.len(),
            "transfer peer presumed gone: its messages fail"
        );
        for m in peer.queue {
            self.stats.failed += 1;
            self.events
                .push_back(TransportEvent::Failed { to, id: m.id });
        }
    }

    fn on_fragment(
        &mut self,
        now: u64,
        from: NodeId,
        f: FragRef<'_>,
    ) -> Result<(), TransportError> {
        if f.total_len as usize > self.cfg.max_message {
            return Err(TransportError::TooLarge {
                len: f.total_len as usize,
                max: self.cfg.max_message,
            });
        }
        if !self.recv.contains_key(&from) && self.recv.len() >= self.cfg.max_peers {
            self.evict_recv_peer();
        }
        let peer = self
            .recv
            .entry(from)
            .or_insert_with(|| RecvPeer::new(f.id.nonce, now));
        peer.last_active = now;
        let (nonce, seq) = (f.id.nonce, f.id.seq);
        if peer.nonce != nonce {
            if peer.retired.contains(&nonce) {
                self.stats.stale += 1;
                return Ok(());
            }
            debug!(
                me = self.me,
                from,
                old = peer.nonce,
                new = nonce,
                "transfer peer restarted: its partial messages are dropped"
            );
            self.stats.evicted += peer.partials.len() as u64;
            peer.retired.push_back(peer.nonce);
            if peer.retired.len() > RETIRED_NONCES {
                peer.retired.pop_front();
            }
            peer.nonce = nonce;
            peer.partials.clear();
            peer.seqs = SeqMemory::default();
        }
        match peer.seqs.state(seq) {
            SeqState::Stale => {
                self.stats.stale += 1;
                return Ok(());
            }
            SeqState::Done => {
                self.stats.duplicates += 1;
                self.queue_ack(from, nonce, seq, f.frag_count);
                return Ok(());
            }
            SeqState::Open => {}
        }
        let inconsistent = |what| TransportError::Inconsistent { nonce, seq, what };
        if let Some(p) = peer.partials.get(&seq) {
            if p.frag_count != f.frag_count {
                return Err(inconsistent("fragment count"));
            }
            if p.total_len != f.total_len {
                return Err(inconsistent("message length"));
            }
            if p.size != f.size {
                return Err(inconsistent("fragment size"));
            }
        } else {
            peer.seqs.advance(seq);
            if let Some(h) = peer.seqs.high {
                let before = peer.partials.len();
                peer.partials.retain(|&s, _| h - s < SEQ_WINDOW);
                self.stats.evicted += (before - peer.partials.len()) as u64;
            }
            if f.frag_count == 1 {
                peer.seqs.mark_done(seq);
                self.stats.messages_received += 1;
                self.events.push_back(TransportEvent::Received {
                    from,
                    msg: Bytes::copy_from_slice(f.payload),
                });
                self.queue_ack(from, nonce, seq, 1);
                return Ok(());
            }
            if peer.partials.len() >= self.cfg.max_partial {
                let oldest = peer
                    .partials
                    .iter()
                    .min_by_key(|(_, p)| p.order)
                    .map(|(&s, _)| s);
                if let Some(s) = oldest {
                    debug!(me = self.me, from, seq = s, "partial message dropped");
                    peer.partials.remove(&s);
                    self.stats.evicted += 1;
                }
            }
            self.partial_order += 1;
            peer.partials.insert(
                seq,
                Partial {
                    frag_count: f.frag_count,
                    total_len: f.total_len,
                    size: f.size,
                    // total_len <= max_message was checked above.
                    buf: vec![0; f.total_len as usize],
                    received: bitset(f.frag_count),
                    received_count: 0,
                    cum: 0,
                    unacked: 0,
                    ack_due: None,
                    order: self.partial_order,
                    last_new: now,
                },
            );
        }
        let Some(p) = peer.partials.get_mut(&seq) else {
            return Ok(());
        };
        let i = f.frag_no;
        if bit(&p.received, u64::from(i)) {
            self.stats.duplicates += 1;
            self.queue_ack(from, nonce, seq, f.frag_count);
            return Ok(());
        }
        let off = (i as usize).saturating_mul(p.size as usize);
        let Some(dst) = off
            .checked_add(f.payload.len())
            .and_then(|end| p.buf.get_mut(off..end))
        else {
            return Err(inconsistent("fragment offset"));
        };
        dst.copy_from_slice(f.payload);
        set_bit(&mut p.received, u64::from(i));
        p.received_count += 1;
        p.last_new = now;
        let old_cum = p.cum;
        while p.cum < p.frag_count && bit(&p.received, u64::from(p.cum)) {
            p.cum += 1;
        }
        if p.received_count == p.frag_count {
            let buf = std::mem::take(&mut p.buf);
            peer.partials.remove(&seq);
            peer.seqs.mark_done(seq);
            self.stats.messages_received += 1;
            self.events.push_back(TransportEvent::Received {
                from,
                msg: Bytes::from(buf),
            });
            self.queue_ack(from, nonce, seq, f.frag_count);
        } else if i != old_cum || p.cum != old_cum + 1 || p.received_count != p.cum {
            // Out of order, filling a gap, or with gaps behind it: at once.
            self.queue_ack(from, nonce, seq, f.frag_count);
        } else {
            p.unacked += 1;
            if p.unacked >= ACK_EVERY {
                self.queue_ack(from, nonce, seq, f.frag_count);
            } else if p.ack_due.is_none() {
                p.ack_due = Some(now.saturating_add(ACK_DELAY_NS));
            }
        }
        Ok(())
    }

    fn evict_recv_peer(&mut self) {
        let oldest = self
            .recv
            .iter()
            .min_by_key(|(&id, p)| (p.last_active, id))
            .map(|(&id, _)| id);
        if let Some(id) = oldest {
            if let Some(p) = self.recv.remove(&id) {
                debug!(me = self.me, peer = id, "transfer receive state dropped");
                self.stats.evicted += p.partials.len() as u64;
            }
        }
    }

    fn on_ack(
        &mut self,
        now: u64,
        from: NodeId,
        id: MsgId,
        cumulative: u32,
        sack: u64,
        complete: bool,
    ) -> Result<(), TransportError> {
        let seq = id.seq;
        let inconsistent = |what| TransportError::Inconsistent {
            nonce: id.nonce,
            seq,
            what,
        };
        let found = self.send.get_mut(&from).and_then(|peer| {
            let idx = find_msg(&peer.queue, seq)?;
            Some((peer, idx))
        });
        let (peer, idx) = match found {
            Some(x) if id.nonce == self.nonce => x,
            _ => {
                self.stats.stale += 1;
                return Ok(());
            }
        };
        let SendPeer {
            queue,
            flight,
            retx,
            rtt,
        } = peer;
        let Some(m) = queue.get_mut(idx) else {
            return Ok(());
        };
        let fc = m.frag_count;
        let Some(st) = m.st.as_mut() else {
            return Err(inconsistent("ack of a message not sent yet"));
        };
        if complete {
            let _ = queue.remove(idx);
            drop_flights(flight, retx, seq);
            self.stats.messages_sent += 1;
            self.events
                .push_back(TransportEvent::Delivered { to: from, id });
            return Ok(());
        }
        if cumulative >= fc {
            return Err(inconsistent("ack cumulative"));
        }
        let after = fc - cumulative - 1;
        if after < SACK_BITS && sack >> after != 0 {
            return Err(inconsistent("ack beyond the fragment count"));
        }
        let top = match sack {
            0 => u64::from(cumulative),
            s => u64::from(cumulative) + 2 + u64::from(63 - s.leading_zeros()),
        };
        if top > u64::from(st.sent_hw) {
            return Err(inconsistent("ack of a fragment never sent"));
        }
        let regressed = bit(&st.acked, u64::from(cumulative))
            || (0..SACK_BITS).any(|b| {
                let i = u64::from(cumulative) + 1 + u64::from(b);
                i < u64::from(fc) && bit(&st.acked, i) && (sack >> b) & 1 == 0
            });
        let mut progress = false;
        let mut sample: Option<u64> = None;
        let mut later: Vec<(u32, u64)> = Vec::new();
        for i in st.prefix..cumulative {
            if let Some(s) = st.mark(seq, i, flight, retx) {
                progress = true;
                if let Some((at, true)) = s {
                    sample = Some(sample.map_or(at, |x| x.max(at)));
                }
            }
        }
        for b in 0..SACK_BITS {
            if (sack >> b) & 1 == 0 {
                continue;
            }
            // Below fc (checked above), so it fits.
            let i = cumulative + 1 + b;
            if let Some(s) = st.mark(seq, i, flight, retx) {
                progress = true;
                if let Some((at, once)) = s {
                    if once {
                        sample = Some(sample.map_or(at, |x| x.max(at)));
                    }
                    later.push((i, at));
                }
            }
        }
        while st.prefix < fc && bit(&st.acked, u64::from(st.prefix)) {
            st.prefix += 1;
        }
        if progress {
            st.last_progress = now;
        }
        if progress {
            rtt.progress();
        }
        if let Some(at) = sample {
            rtt.sample(now.saturating_sub(at), &self.cfg);
        }
        if !later.is_empty() {
            let reorder = rtt.reorder_window();
            for (&(_, f), fl) in flight.range_mut((seq, 0)..=(seq, u32::MAX)) {
                if fl.pending {
                    continue;
                }
                let n = later
                    .iter()
                    .filter(|&&(j, at)| j > f && at >= fl.sent_at)
                    .count() as u32;
                fl.later_acked = fl.later_acked.saturating_add(n);
                if fl.later_acked < FAST_RETRANSMIT_AFTER || now < fl.fast_ok_at {
                    continue;
                }
                let due = fl.sent_at.saturating_add(reorder);
                if now >= due {
                    fl.pending = true;
                    fl.later_acked = 0;
                    retx.insert((seq, f));
                    self.stats.fast_retransmits += 1;
                } else if due < fl.deadline {
                    // Perhaps only reordered: give it until it is overdue.
                    fl.deadline = due;
                    fl.early = true;
                }
            }
        }
        let lost = st.acked_count >= fc
            || (regressed
                && st
                    .regress_since
                    .is_some_and(|t| now.saturating_sub(t) >= rtt.rto));
        if lost {
            debug!(
                me = self.me,
                to = from,
                seq,
                "transfer receiver lost a message: sending it again"
            );
            st.reset(seq, fc, cumulative, sack, flight, retx);
            self.stats.resets += 1;
        } else if regressed {
            st.regress_since.get_or_insert(now);
        } else {
            st.regress_since = None;
        }
        st.normalize(seq, fc, flight);
        Ok(())
    }

    /// Returns the next fragment to send, its peer and its datagram's length.
    fn candidate(&self) -> Option<(NodeId, Cand, usize)> {
        let after = self
            .send
            .range((Bound::Excluded(self.rr), Bound::Unbounded));
        let upto = self.send.range(..=self.rr);
        after
            .chain(upto)
            .find_map(|(&to, peer)| self.peer_candidate(peer).map(|(c, len)| (to, c, len)))
    }

    fn peer_candidate(&self, peer: &SendPeer) -> Option<(Cand, usize)> {
        if let Some(&(seq, frag)) = peer.retx.first() {
            if let Some(m) = find_msg(&peer.queue, seq).and_then(|i| peer.queue.get(i)) {
                let len = FRAGMENT_HEADER_LEN + m.fragment(frag).len();
                return Some((Cand::Retx { seq, frag }, len));
            }
        }
        if peer.flight.len() >= self.cfg.window {
            return None;
        }
        let front = peer.queue.front()?.id.seq;
        let mut multi = 0usize;
        for (idx, m) in peer.queue.iter().enumerate() {
            match &m.st {
                Some(st) => {
                    // Only what an ack can report (the receiver's cumulative number is at
                    // least our prefix); beyond, the next message may go meanwhile.
                    if st.next_new < m.frag_count
                        && u64::from(st.next_new) <= u64::from(st.prefix) + u64::from(SACK_BITS)
                    {
                        let len = FRAGMENT_HEADER_LEN + m.fragment(st.next_new).len();
                        return Some((
                            Cand::New {
                                idx,
                                frag: st.next_new,
                            },
                            len,
                        ));
                    }
                    if m.frag_count > 1 {
                        multi += 1;
                    }
                }
                None => {
                    if (m.frag_count > 1 && multi >= self.cfg.max_partial)
                        || m.id.seq.saturating_sub(front) >= SEQ_WINDOW
                    {
                        return None;
                    }
                    let len = FRAGMENT_HEADER_LEN + m.fragment(0).len();
                    return Some((Cand::New { idx, frag: 0 }, len));
                }
            }
        }
        None
    }

    fn emit(&mut self, now: u64, to: NodeId, cand: Cand) -> Option<Bytes> {
        let peer = self.send.get_mut(&to)?;
        let SendPeer {
            queue,
            flight,
            retx,
            rtt,
        } = peer;
        let (idx, frag) = match cand {
            Cand::Retx { seq, frag } => {
                retx.remove(&(seq, frag));
                (find_msg(queue, seq)?, frag)
            }
            Cand::New { idx, frag } => (idx, frag),
        };
        let m = queue.get_mut(idx)?;
        let (id, fc) = (m.id, m.frag_count);
        let waiting = has_flights(flight, id.seq);
        let st = m.st.get_or_insert_with(|| Started::new(fc, now));
        if !waiting {
            // The give-up clock runs while something is outstanding.
            st.last_progress = now;
        }
        let sends = st.sends.get_mut(frag as usize)?;
        *sends = sends.saturating_add(1);
        let resent = *sends > 1;
        st.sent_hw = st.sent_hw.max(frag + 1);
        let deadline = now.saturating_add(rtt.rto);
        flight.insert(
            (id.seq, frag),
            Flight {
                sent_at: now,
                deadline,
                pending: false,
                later_acked: 0,
                // Early retransmission at most once per RTO.
                fast_ok_at: if resent { deadline } else { now },
                early: false,
            },
        );
        if matches!(cand, Cand::New { .. }) {
            st.next_new = frag + 1;
            st.normalize(id.seq, fc, flight);
        }
        let payload = m.fragment(frag);
        let mut b = Vec::with_capacity(FRAGMENT_HEADER_LEN + payload.len());
        // data.len() <= max_message <= 1 GiB.
        put_fragment(&mut b, id, frag, fc, m.data.len() as u32, payload);
        if resent {
            self.stats.retransmitted += 1;
            self.stats.retransmitted_bytes += b.len() as u64;
        }
        Some(Bytes::from(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// A link's faults (both ways, every pair of nodes).
    #[derive(Clone, Copy, Debug)]
    struct Link {
        loss: f64,
        dup: f64,
        delay_min: u64,
        delay_max: u64,
    }

    const CLEAN: Link = Link {
        loss: 0.0,
        dup: 0.0,
        delay_min: MS / 2,
        delay_max: MS / 2,
    };

    type Filter = Box<dyn FnMut(NodeId, NodeId, &[u8]) -> bool>;

    /// A datagram on the wire: (arrival, order, from, to, bytes).
    type OnWire = Reverse<(u64, u64, NodeId, NodeId, Bytes)>;

    /// A deterministic network of transports: datagrams in flight in an `(at, seq)` queue,
    /// faults from a seeded RNG, time always jumping to the next arrival or timer.
    struct Net {
        seed: u64,
        now: u64,
        rng: ChaCha8Rng,
        link: Link,
        cfg: TransportConfig,
        nodes: BTreeMap<NodeId, Transport>,
        wire: BinaryHeap<OnWire>,
        order: u64,
        /// Drops a datagram (from, to, bytes) when it returns true.
        filter: Option<Filter>,
        events: Vec<(u64, NodeId, TransportEvent)>,
        errors: Vec<(NodeId, TransportError)>,
        steps: u64,
    }

    impl Net {
        fn new(seed: u64, link: Link, cfg: TransportConfig, ids: &[NodeId]) -> Self {
            let nodes = ids
                .iter()
                .map(|&id| {
                    (
                        id,
                        Transport::new(id, seed * 1000 + u64::from(id), cfg.clone()),
                    )
                })
                .collect();
            Self {
                seed,
                now: 0,
                rng: ChaCha8Rng::seed_from_u64(seed),
                link,
                cfg,
                nodes,
                wire: BinaryHeap::new(),
                order: 0,
                filter: None,
                events: Vec::new(),
                errors: Vec::new(),
                steps: 0,
            }
        }

        fn node(&mut self, id: NodeId) -> &mut Transport {
            self.nodes.get_mut(&id).expect("a node of the net")
        }

        /// Replaces node `id` by a fresh incarnation with `nonce`.
        fn restart(&mut self, id: NodeId, nonce: u64) {
            self.nodes
                .insert(id, Transport::new(id, nonce, self.cfg.clone()));
        }

        fn send(&mut self, from: NodeId, to: NodeId, msg: Bytes) -> MsgId {
            let now = self.now;
            self.node(from).send(now, to, msg).expect("accepted")
        }

        fn flush(&mut self) {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                loop {
                    let now = self.now;
                    let Some((to, d)) = self.node(id).poll_transmit(now) else {
                        break;
                    };
                    assert!(d.len() <= self.cfg.datagram_bytes.max(ACK_LEN));
                    self.schedule(id, to, d);
                }
                while let Some(e) = self.node(id).poll_event() {
                    self.events.push((self.now, id, e));
                }
            }
        }

        fn schedule(&mut self, from: NodeId, to: NodeId, d: Bytes) {
            if self.filter.as_mut().is_some_and(|f| f(from, to, &d)) {
                return;
            }
            if self.rng.gen_bool(self.link.loss) {
                return;
            }
            let copies = if self.rng.gen_bool(self.link.dup) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now
                    + self
                        .rng
                        .gen_range(self.link.delay_min..=self.link.delay_max);
                self.order += 1;
                self.wire
                    .push(Reverse((at, self.order, from, to, d.clone())));
            }
        }

        /// Runs to the next arrival or timer; false when there is none.
        fn step(&mut self) -> bool {
            self.flush();
            let next_wire = self.wire.peek().map(|Reverse(x)| x.0);
            let next_timer = self
                .nodes
                .values()
                .filter_map(Transport::poll_timeout)
                .min();
            let Some(t) = next_wire.into_iter().chain(next_timer).min() else {
                return false;
            };
            self.now = self.now.max(t);
            while self.wire.peek().is_some_and(|Reverse(x)| x.0 <= self.now) {
                let Some(Reverse((_, _, from, to, d))) = self.wire.pop() else {
                    break;
                };
                let now = self.now;
                if let Some(n) = self.nodes.get_mut(&to) {
                    if let Err(e) = n.handle_datagram(now, from, &d) {
                        self.errors.push((to, e));
                    }
                }
            }
            let now = self.now;
            for n in self.nodes.values_mut() {
                if n.poll_timeout().is_some_and(|d| d <= now) {
                    n.handle_timeout(now);
                }
            }
            self.flush();
            self.steps += 1;
            assert!(self.steps < 20_000_000, "seed {}: runaway", self.seed);
            true
        }

        /// Runs until `done` or `limit` ns of simulated time; returns whether `done` held.
        fn run_until(&mut self, limit: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
            while !done(self) {
                if self.now > limit || !self.step() {
                    return done(self);
                }
            }
            true
        }

        fn received(&self, at: NodeId) -> Vec<Bytes> {
            self.events
                .iter()
                .filter_map(|(_, n, e)| match e {
                    TransportEvent::Received { msg, .. } if *n == at => Some(msg.clone()),
                    _ => None,
                })
                .collect()
        }

        fn count(&self, at: NodeId, f: impl Fn(&TransportEvent) -> bool) -> usize {
            self.events
                .iter()
                .filter(|(_, n, e)| *n == at && f(e))
                .count()
        }

        fn delivered(&self, at: NodeId) -> usize {
            self.count(at, |e| matches!(e, TransportEvent::Delivered { .. }))
        }

        fn failed(&self, at: NodeId) -> usize {
            self.count(at, |e| matches!(e, TransportEvent::Failed { .. }))
        }

        fn time_of(&self, f: impl Fn(NodeId, &TransportEvent) -> bool) -> Option<u64> {
            self.events.iter().find(|(_, n, e)| f(*n, e)).map(|x| x.0)
        }
    }

    fn payload(n: usize, seed: u64) -> Bytes {
        let mut v = vec![0u8; n];
        ChaCha8Rng::seed_from_u64(seed).fill(&mut v[..]);
        Bytes::from(v)
    }

    /// A message whose first 8 bytes are its number (so each is told apart).
    fn numbered(i: u64, len: usize) -> Bytes {
        let mut v = i.to_be_bytes().to_vec();
        v.resize(len.max(8), (i % 251) as u8);
        Bytes::from(v)
    }

    const MIB: usize = 1024 * 1024;

    /// Asserts that two lists of messages are equal, printing only their sizes if not.
    #[track_caller]
    fn assert_msgs(got: &[Bytes], want: &[Bytes], context: &str) {
        if got != want {
            let sizes = |v: &[Bytes]| v.iter().map(Bytes::len).collect::<Vec<_>>();
            panic!(
                "{context}: received messages of sizes {:?}, want {:?}",
                sizes(got),
                sizes(want)
            );
        }
    }

    #[test]
    fn transport_big_message_arrives_intact_once() {
        let mut net = Net::new(1, CLEAN, TransportConfig::default(), &[1, 2]);
        let msg = payload(3 * MIB, 7);
        let id = net.send(1, 2, msg.clone());
        assert_eq!(
            id,
            MsgId {
                nonce: 1001,
                seq: 0
            }
        );
        assert!(net.run_until(10_000 * MS, |n| n.delivered(1) == 1));
        assert_msgs(&net.received(2), &[msg], "");
        assert!(net.errors.is_empty(), "{:?}", net.errors);
        // Quiet afterwards: nothing held, nothing pending, no second delivery.
        net.run_until(60_000 * MS, |_| false);
        assert_eq!(net.received(2).len(), 1);
        for n in net.nodes.values() {
            assert_eq!(n.held_bytes(), 0);
            assert!(n.is_idle());
            assert_eq!(n.poll_timeout(), None);
        }
        let s = net.nodes[&1].stats();
        assert_eq!(s.retransmitted, 0, "{s:?}");
        assert_eq!(s.messages_sent, 1);
        assert_eq!(net.nodes[&2].stats().messages_received, 1);
        assert_eq!(net.nodes[&2].stats().duplicates, 0);
    }

    #[test]
    fn transport_big_message_survives_30_percent_loss_both_ways() {
        for seed in 1..=3 {
            let link = Link {
                loss: 0.3,
                dup: 0.0,
                delay_min: MS / 5,
                delay_max: 2 * MS,
            };
            let mut net = Net::new(seed, link, TransportConfig::default(), &[1, 2]);
            let msg = payload(3 * MIB, seed);
            net.send(1, 2, msg.clone());
            assert!(
                net.run_until(60_000 * MS, |n| n.delivered(1) == 1),
                "seed {seed}: not delivered by {} ms: {:?}",
                net.now / MS,
                net.nodes[&1].stats()
            );
            assert_msgs(&net.received(2), &[msg], &format!("seed {seed}"));
            let s = *net.nodes[&1].stats();
            assert!(s.retransmitted > 0, "seed {seed}: {s:?}");
            assert_eq!(s.failed, 0, "seed {seed}");
            assert!(net.errors.is_empty(), "seed {seed}: {:?}", net.errors);
            net.run_until(60_000 * MS, |_| false);
            assert_eq!(net.received(2).len(), 1, "seed {seed}");
            assert_eq!(net.nodes[&1].held_bytes() + net.nodes[&2].held_bytes(), 0);
        }
    }

    #[test]
    fn transport_duplicates_and_reordering_deliver_each_message_once() {
        for seed in 1..=4 {
            let link = Link {
                loss: 0.1,
                dup: 0.3,
                delay_min: MS / 10,
                delay_max: 5 * MS,
            };
            let mut net = Net::new(seed, link, TransportConfig::default(), &[1, 2, 3]);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut sent: BTreeMap<NodeId, Vec<Bytes>> = BTreeMap::new();
            let mut n = 0;
            for i in 0..60u64 {
                let (from, to) = [(1, 2), (2, 1), (1, 3), (3, 2)][rng.gen_range(0..4)];
                let len = if i == 0 { 0 } else { rng.gen_range(8..40_000) };
                let m = if len == 0 {
                    Bytes::new()
                } else {
                    numbered(i, len)
                };
                net.send(from, to, m.clone());
                sent.entry(to).or_default().push(m);
                n += 1;
            }
            let done = |net: &Net| (1..=3).map(|id| net.delivered(id)).sum::<usize>() == n;
            assert!(net.run_until(60_000 * MS, done), "seed {seed}");
            net.run_until(60_000 * MS, |_| false);
            for (to, mut want) in sent {
                let mut got = net.received(to);
                got.sort();
                want.sort();
                assert_msgs(&got, &want, &format!("seed {seed}: node {to}"));
            }
            let dups: u64 = net.nodes.values().map(|t| t.stats().duplicates).sum();
            assert!(dups > 0, "seed {seed}: the link duplicated nothing?");
            assert!(net.errors.is_empty(), "seed {seed}: {:?}", net.errors);
            for t in net.nodes.values() {
                assert_eq!(t.held_bytes(), 0, "seed {seed}");
                assert!(t.is_idle());
            }
        }
    }

    #[test]
    fn transport_many_small_messages_all_delivered() {
        let link = Link {
            loss: 0.05,
            dup: 0.05,
            delay_min: MS / 10,
            delay_max: 2 * MS,
        };
        let mut net = Net::new(9, link, TransportConfig::default(), &[1, 2, 3]);
        let mut want2 = Vec::new();
        let mut want3 = Vec::new();
        for i in 0..3000u64 {
            let m = numbered(i, 8 + (i as usize * 37) % 3000);
            if i % 3 == 0 {
                net.send(1, 3, m.clone());
                want3.push(m);
            } else {
                net.send(1, 2, m.clone());
                want2.push(m);
            }
        }
        assert!(net.run_until(120_000 * MS, |n| n.delivered(1) == 3000));
        net.run_until(120_000 * MS, |_| false);
        for (to, mut want) in [(2, want2), (3, want3)] {
            let mut got = net.received(to);
            got.sort();
            want.sort();
            assert_msgs(&got, &want, &format!("node {to}"));
        }
        assert_eq!(net.nodes[&1].stats().messages_sent, 3000);
        assert_eq!(net.failed(1), 0);
        assert!(net.errors.is_empty(), "{:?}", net.errors);
    }

    #[test]
    fn transport_dead_peer_fails_after_give_up_and_holds_nothing() {
        let cfg = TransportConfig::default();
        let give_up = cfg.give_up_ns;
        // Node 9 is not there: everything to it is lost.
        let mut net = Net::new(3, CLEAN, cfg, &[1, 2]);
        let ids: Vec<MsgId> = (0..3)
            .map(|i| net.send(1, 9, payload(100_000 + i, i as u64)))
            .collect();
        let ok = net.send(1, 2, payload(50_000, 4));
        assert!(net.run_until(60_000 * MS, |n| n.failed(1) == 3));
        let at = net
            .time_of(|n, e| n == 1 && matches!(e, TransportEvent::Failed { .. }))
            .expect("failed");
        assert!(at >= give_up, "failed at {at}, before give_up {give_up}");
        let failed: Vec<_> = net
            .events
            .iter()
            .filter_map(|(_, _, e)| match e {
                TransportEvent::Failed { to: 9, id } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(failed, ids);
        assert!(net
            .events
            .iter()
            .any(|(_, n, e)| *n == 1 && *e == TransportEvent::Delivered { to: 2, id: ok }));
        net.run_until(60_000 * MS, |_| false);
        let t = &net.nodes[&1];
        assert_eq!(t.held_bytes(), 0);
        assert!(t.is_idle());
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.stats().failed, 3);
        // A later message to the same peer starts afresh, and fails alone.
        net.send(1, 9, payload(10, 5));
        assert!(net.run_until(60_000 * MS, |n| n.failed(1) == 4));
        assert_eq!(net.nodes[&1].held_bytes(), 0);
    }

    #[test]
    fn transport_pacing_takes_at_least_bytes_over_rate() {
        for rate in [1_000_000u64, 5_000_000] {
            let cfg = TransportConfig {
                rate_limit: Some(rate),
                ..TransportConfig::default()
            };
            let mut net = Net::new(5, CLEAN, cfg, &[1, 2]);
            let n = MIB;
            net.send(1, 2, payload(n, 1));
            assert!(net.run_until(60_000 * MS, |net| net.delivered(1) == 1));
            let got = net
                .time_of(|id, e| id == 2 && matches!(e, TransportEvent::Received { .. }))
                .expect("received");
            let floor = n as u64 * 1_000_000_000 / rate;
            assert!(got >= floor, "rate {rate}: {got} ns < {floor} ns");
            // And not much slower than the rate allows (headers, acks).
            assert!(got <= floor * 11 / 10 + 20 * MS, "rate {rate}: {got} ns");
            assert_eq!(net.nodes[&1].stats().retransmitted, 0);
        }
    }

    #[test]
    fn transport_receiver_restart_mid_message_lets_messages_through() {
        let mut net = Net::new(11, CLEAN, TransportConfig::default(), &[1, 2]);
        let first = payload(MIB, 1);
        net.send(1, 2, first.clone());
        assert!(
            net.run_until(10_000 * MS, |n| n.nodes[&2].stats().datagrams_received
                >= 300)
        );
        assert!(net.received(2).is_empty());
        net.restart(2, 77);
        let second = payload(200_000, 2);
        net.send(1, 2, second.clone());
        assert!(net.run_until(30_000 * MS, |n| n.delivered(1) + n.failed(1) == 2));
        net.run_until(60_000 * MS, |_| false);
        let got = net.received(2);
        assert!(got.contains(&second), "the next message did not arrive");
        // The transport noticed the lost state and sent the first one again, whole.
        assert!(got.contains(&first));
        assert_eq!(got.len(), 2);
        assert_eq!(net.failed(1), 0);
        assert!(net.nodes[&1].stats().resets >= 1);
        assert_eq!(net.nodes[&2].held_bytes(), 0);
    }

    #[test]
    fn transport_sender_restart_drops_its_old_partials() {
        let mut net = Net::new(12, CLEAN, TransportConfig::default(), &[1, 2]);
        net.send(1, 2, payload(MIB, 1));
        assert!(
            net.run_until(10_000 * MS, |n| n.nodes[&2].stats().datagrams_received
                >= 100)
        );
        assert!(net.nodes[&2].held_bytes() >= MIB);
        net.restart(1, 4242);
        let second = payload(5000, 2);
        net.send(1, 2, second.clone());
        assert!(net.run_until(30_000 * MS, |n| n.delivered(1) == 1));
        net.run_until(60_000 * MS, |_| false);
        assert_msgs(&net.received(2), &[second], "");
        assert_eq!(net.nodes[&2].held_bytes(), 0);
        assert!(net.nodes[&2].stats().evicted >= 1);
        // Stray fragments of the old incarnation are refused from then on.
        let old = Datagram::Fragment {
            id: MsgId {
                nonce: 12 * 1000 + 1,
                seq: 0,
            },
            frag_no: 0,
            frag_count: 2,
            total_len: 200,
            payload: Bytes::from(vec![0; 100]),
        };
        let now = net.now;
        let t = net.node(2);
        let stale = t.stats().stale;
        t.handle_datagram(now, 1, &old.encode()).unwrap();
        let t = &net.nodes[&2];
        assert_eq!(t.stats().stale, stale + 1);
        assert_eq!(t.held_bytes(), 0);
    }

    #[test]
    fn transport_receiver_with_fewer_partials_than_the_sender_still_gets_everything() {
        // The receiver keeps one partial, the sender has 8 messages in flight: partials
        // are dropped after being acknowledged, and the sender must notice and resend.
        for seed in 1..=3 {
            let link = Link {
                loss: 0.1,
                dup: 0.05,
                delay_min: MS / 10,
                delay_max: 3 * MS,
            };
            let mut net = Net::new(seed, link, TransportConfig::default(), &[1, 2]);
            net.nodes.insert(
                2,
                Transport::new(
                    2,
                    99,
                    TransportConfig {
                        max_partial: 1,
                        ..TransportConfig::default()
                    },
                ),
            );
            let mut want: Vec<Bytes> = (0..40).map(|i| numbered(i, 9000)).collect();
            for m in &want {
                net.send(1, 2, m.clone());
            }
            assert!(
                net.run_until(120_000 * MS, |n| n.delivered(1) == 40),
                "seed {seed}: {:?}",
                net.nodes[&1].stats()
            );
            net.run_until(120_000 * MS, |_| false);
            let mut got = net.received(2);
            got.sort();
            want.sort();
            assert_msgs(&got, &want, &format!("seed {seed}"));
            assert!(net.nodes[&2].stats().evicted > 0, "seed {seed}");
            assert!(net.nodes[&1].stats().resets > 0, "seed {seed}");
        }
    }

    #[test]
    fn transport_fast_retransmit_beats_the_timeout() {
        let cfg = TransportConfig {
            rto_initial_ns: 1000 * MS,
            rto_min_ns: 1000 * MS,
            rto_max_ns: 1000 * MS,
            ..TransportConfig::default()
        };
        let mut net = Net::new(13, CLEAN, cfg, &[1, 2]);
        let mut dropped = false;
        net.filter = Some(Box::new(move |_, _, d| {
            let lose = !dropped
                && matches!(
                    Datagram::decode(d),
                    Ok(Datagram::Fragment { frag_no: 5, .. })
                );
            dropped |= lose;
            lose
        }));
        let msg = payload(100 * 1368, 3);
        net.send(1, 2, msg.clone());
        assert!(net.run_until(10_000 * MS, |n| n.delivered(1) == 1));
        assert!(
            net.now < 100 * MS,
            "took {} ms: no fast retransmit",
            net.now / MS
        );
        assert_msgs(&net.received(2), &[msg], "");
        assert_eq!(net.nodes[&1].stats().retransmitted, 1);
    }

    #[test]
    fn transport_rto_adapts_to_the_round_trip() {
        let link = Link {
            delay_min: 10 * MS,
            delay_max: 10 * MS,
            ..CLEAN
        };
        let mut net = Net::new(14, link, TransportConfig::default(), &[1, 2]);
        net.send(1, 2, payload(MIB, 1));
        assert!(net.run_until(10_000 * MS, |n| n.delivered(1) == 1));
        let rtt = &net.nodes[&1].send[&2].rtt;
        let srtt = rtt.srtt.expect("sampled");
        assert!((20 * MS..=23 * MS).contains(&srtt), "srtt {srtt}");
        assert!(rtt.rto >= srtt && rtt.rto < 50 * MS, "rto {}", rtt.rto);
        assert_eq!(net.nodes[&1].stats().retransmitted, 0);
    }

    #[test]
    fn transport_forget_peer_drops_everything_silently() {
        let mut net = Net::new(15, CLEAN, TransportConfig::default(), &[1, 2]);
        net.send(1, 2, payload(MIB, 1));
        net.send(1, 2, payload(10, 2));
        assert!(
            net.run_until(10_000 * MS, |n| n.nodes[&2].stats().datagrams_received
                >= 50)
        );
        net.node(1).forget_peer(2);
        net.node(2).forget_peer(1);
        assert_eq!(net.nodes[&1].held_bytes(), 0);
        assert_eq!(net.nodes[&2].held_bytes(), 0);
        assert!(net.nodes[&1].is_idle());
        net.run_until(60_000 * MS, |_| false);
        assert_eq!(net.delivered(1) + net.failed(1), 0);
        assert!(net.received(2).is_empty());
    }

    fn fragment(nonce: u64, seq: u64, no: u32, count: u32, total: u32, len: usize) -> Vec<u8> {
        Datagram::Fragment {
            id: MsgId { nonce, seq },
            frag_no: no,
            frag_count: count,
            total_len: total,
            payload: Bytes::from(vec![no as u8; len]),
        }
        .encode()
    }

    fn ack(nonce: u64, seq: u64, cumulative: u32, sack: u64, complete: bool) -> Vec<u8> {
        Datagram::Ack {
            id: MsgId { nonce, seq },
            cumulative,
            sack,
            complete,
        }
        .encode()
    }

    fn drain(t: &mut Transport, now: u64) -> Vec<(NodeId, Datagram)> {
        std::iter::from_fn(|| t.poll_transmit(now))
            .map(|(to, d)| (to, Datagram::decode(&d).expect("it decodes what it sends")))
            .collect()
    }

    #[test]
    fn transport_garbage_truncated_and_inconsistent_input_gives_typed_errors() {
        let cfg = TransportConfig {
            max_message: 10_000,
            ..TransportConfig::default()
        };
        let mut t = Transport::new(2, 5, cfg);
        let bad = |t: &mut Transport, d: &[u8], want: TransportError| {
            assert_eq!(t.handle_datagram(0, 1, d), Err(want), "{d:02x?}");
        };
        let decode = |e| TransportError::Decode(e);
        bad(&mut t, b"hello", decode(DecodeError::BadMagic(0x6865)));
        bad(
            &mut t,
            b"",
            decode(DecodeError::Truncated {
                field: "transfer magic",
                need: 2,
                have: 0,
            }),
        );
        bad(&mut t, b"RL\x01\x01", decode(DecodeError::BadMagic(0x524c)));
        bad(
            &mut t,
            b"RT\x02\x01",
            decode(DecodeError::UnsupportedVersion(2)),
        );
        bad(&mut t, b"RT\x01\x63", decode(DecodeError::UnknownType(99)));
        bad(&mut t, b"RT\x01\x00", decode(DecodeError::UnknownType(0)));
        // frag_no >= frag_count, frag_count 0.
        bad(
            &mut t,
            &fragment(1, 0, 3, 3, 300, 100),
            decode(DecodeError::Invalid("fragment number beyond the count")),
        );
        bad(
            &mut t,
            &fragment(1, 0, 0, 0, 0, 0),
            decode(DecodeError::Invalid("fragment count 0")),
        );
        // total_len above max_message, in fragments that are right otherwise.
        bad(
            &mut t,
            &fragment(1, 0, 0, 200, 20_000, 100),
            TransportError::TooLarge {
                len: 20_000,
                max: 10_000,
            },
        );
        // Wrong lengths.
        bad(
            &mut t,
            &fragment(1, 0, 0, 3, 300, 99),
            decode(DecodeError::Invalid("fragment count")),
        );
        bad(
            &mut t,
            &fragment(1, 0, 0, 7, 350, 50),
            decode(DecodeError::Invalid("fragment size")),
        );
        bad(
            &mut t,
            &fragment(1, 0, 2, 3, 300, 101),
            decode(DecodeError::Invalid("last fragment length")),
        );
        bad(
            &mut t,
            &fragment(1, 0, 2, 3, 301, 100),
            decode(DecodeError::Invalid("last fragment length")),
        );
        bad(
            &mut t,
            &fragment(1, 0, 0, 1, 50, 49),
            decode(DecodeError::Invalid(
                "fragment length of a one-fragment message",
            )),
        );
        bad(
            &mut t,
            &fragment(1, 0, 1, 2, 0, 0),
            decode(DecodeError::Invalid("empty fragment")),
        );
        // Every truncation of a good fragment is refused.
        let good = fragment(1, 0, 0, 3, 300, 100);
        for n in 0..good.len() {
            let r = t.handle_datagram(0, 1, &good[..n]);
            assert!(matches!(r, Err(TransportError::Decode(_))), "{n}: {r:?}");
        }
        // Inconsistent with earlier fragments of the same message.
        assert_eq!(t.handle_datagram(0, 1, &good), Ok(()));
        let inconsistent = |what| TransportError::Inconsistent {
            nonce: 1,
            seq: 0,
            what,
        };
        bad(
            &mut t,
            &fragment(1, 0, 1, 2, 200, 100),
            inconsistent("fragment count"),
        );
        bad(
            &mut t,
            &fragment(1, 0, 1, 3, 290, 100),
            inconsistent("message length"),
        );
        bad(
            &mut t,
            &fragment(1, 0, 1, 3, 300, 120),
            inconsistent("fragment size"),
        );
        bad(
            &mut t,
            &fragment(1, 0, 0, 1, 300, 300),
            inconsistent("fragment count"),
        );
        // Acks: a bad complete byte, trailing bytes.
        let mut a = ack(5, 0, 0, 0, false);
        *a.last_mut().unwrap() = 2;
        bad(&mut t, &a, decode(DecodeError::Invalid("ack complete")));
        let mut a = ack(5, 0, 0, 0, false);
        a.push(0);
        bad(&mut t, &a, decode(DecodeError::TrailingBytes(1)));
        // Acks that contradict the message: node 2 sends 10 fragments, 2 in flight.
        let mut s = Transport::new(
            2,
            5,
            TransportConfig {
                window: 2,
                ..TransportConfig::default()
            },
        );
        s.send(0, 1, payload(10 * 1368, 1)).unwrap();
        s.send(0, 1, payload(1, 1)).unwrap();
        assert_eq!(drain(&mut s, 0).len(), 2);
        let inconsistent = |seq, what| TransportError::Inconsistent {
            nonce: 5,
            seq,
            what,
        };
        for (d, want) in [
            (ack(5, 0, 11, 0, false), inconsistent(0, "ack cumulative")),
            (ack(5, 0, 10, 0, false), inconsistent(0, "ack cumulative")),
            (
                ack(5, 0, 8, 2, false),
                inconsistent(0, "ack beyond the fragment count"),
            ),
            (
                ack(5, 0, 3, 0, false),
                inconsistent(0, "ack of a fragment never sent"),
            ),
            (
                ack(5, 0, 0, 0b10, false),
                inconsistent(0, "ack of a fragment never sent"),
            ),
            (
                ack(5, 1, 0, 0, false),
                inconsistent(1, "ack of a message not sent yet"),
            ),
        ] {
            assert_eq!(s.handle_datagram(0, 1, &d), Err(want));
        }
        assert_eq!(s.stats().malformed, 6);
        // Acks of another incarnation, of another peer or of nothing are stale, not errors.
        for (from, d) in [
            (1, ack(6, 0, 1, 0, false)),
            (3, ack(5, 0, 1, 0, false)),
            (1, ack(5, 9, 0, 0, true)),
        ] {
            assert_eq!(s.handle_datagram(0, from, &d), Ok(()));
        }
        assert_eq!(s.stats().stale, 3);
        // Every datagram but the one good fragment was refused, and counted.
        let errors = 21 + good.len() as u64;
        assert_eq!(t.stats().malformed, errors);
        assert_eq!(t.stats().datagrams_received, errors + 1);
        assert!(drain(&mut t, 0).len() <= 1);
    }

    #[test]
    fn transport_random_and_mutated_input_never_panics() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let cfg = TransportConfig {
            max_message: 50_000,
            max_partial: 3,
            max_peers: 4,
            datagram_bytes: 200,
            ..TransportConfig::default()
        };
        let mut t = Transport::new(1, 5, cfg);
        t.send(0, 2, payload(5000, 1)).unwrap();
        let mut valid: Vec<Vec<u8>> = vec![
            fragment(3, 0, 0, 3, 300, 100),
            fragment(3, 1, 2, 3, 300, 100),
            fragment(3, 2, 0, 1, 10, 10),
            ack(5, 0, 1, 0b101, false),
            ack(5, 0, 0, 0, true),
        ];
        let mut now = 0;
        for round in 0..60_000 {
            now += rng.gen_range(0..3 * MS);
            let d: Vec<u8> = match round % 3 {
                0 => (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect(),
                1 => {
                    let mut d = valid[rng.gen_range(0..valid.len())].clone();
                    for _ in 0..rng.gen_range(1..4) {
                        let i = rng.gen_range(0..d.len());
                        d[i] = rng.gen();
                    }
                    if rng.gen_bool(0.2) {
                        d.truncate(rng.gen_range(0..d.len()));
                    }
                    d
                }
                _ => {
                    // Header fields taken from a small range, so they often agree.
                    let count = rng.gen_range(0..5);
                    let size = [96u32, 100, 1368][rng.gen_range(0..3)];
                    let total = rng.gen_range(0..=count * size + 3);
                    let no = rng.gen_range(0..=count);
                    let len = rng.gen_range(0..=size as usize + 2);
                    if rng.gen_bool(0.5) {
                        fragment(
                            rng.gen_range(3..5),
                            rng.gen_range(0..6),
                            no,
                            count,
                            total,
                            len,
                        )
                    } else {
                        ack(
                            5,
                            rng.gen_range(0..2),
                            rng.gen_range(0..40),
                            rng.gen(),
                            rng.gen(),
                        )
                    }
                }
            };
            let from = rng.gen_range(1..8);
            if t.handle_datagram(now, from, &d).is_ok() && valid.len() < 64 {
                valid.push(d);
            }
            t.handle_timeout(now);
            for (_, d) in drain(&mut t, now) {
                assert!(d.encoded_len() <= 200);
            }
            while t.poll_event().is_some() {}
            if t.is_idle() {
                t.send(
                    now,
                    rng.gen_range(1..4),
                    payload(rng.gen_range(0..3000), round),
                )
                .unwrap();
            }
            // Partials: at most 4 peers × 3 × 50 000; sent: at most one message queued
            // (plus the first).
            assert!(
                t.held_bytes() <= 4 * 3 * 50_000 + 8000,
                "{}",
                t.held_bytes()
            );
            assert!(t.recv.len() <= 4);
        }
    }

    #[test]
    fn transport_memory_stays_bounded() {
        let cfg = TransportConfig {
            max_message: 100_000,
            max_partial: 4,
            max_peers: 8,
            ..TransportConfig::default()
        };
        let mut t = Transport::new(1, 5, cfg.clone());
        // One hostile peer starting many messages: at most max_partial are kept.
        for seq in 0..1000 {
            t.handle_datagram(seq, 2, &fragment(3, seq, 0, 74, 100_000, 1368))
                .unwrap();
            assert!(t.held_bytes() <= 4 * 100_000);
        }
        // Many peers: at most max_peers are kept, each with at most max_partial.
        for peer in 3..1000 {
            for seq in 0..6 {
                t.handle_datagram(0, peer, &fragment(3, seq, 0, 74, 100_000, 1368))
                    .unwrap();
            }
            assert!(t.recv.len() <= 8);
            assert!(t.held_bytes() <= 8 * 4 * 100_000);
        }
        // Single-fragment messages with ever higher numbers: nothing held, the memory of
        // completed numbers is a fixed bitmap, and old numbers become stale.
        for seq in 0..3 * SEQ_WINDOW {
            t.handle_datagram(0, 2, &fragment(8, seq, 0, 1, 4, 4))
                .unwrap();
            while t.poll_event().is_some() {}
            drain(&mut t, 0);
        }
        assert_eq!(t.recv[&2].seqs.done.len() as u64, SEQ_WINDOW / 64);
        let stale = t.stats().stale;
        t.handle_datagram(0, 2, &fragment(8, 5, 0, 1, 4, 4))
            .unwrap();
        assert_eq!(t.stats().stale, stale + 1);
        assert!(t.poll_event().is_none());
        // A sender holds what was queued, no more, and nothing once delivered; the
        // receiver one message's worth at most.
        let mut net = Net::new(16, CLEAN, cfg, &[1, 2]);
        for i in 0..10 {
            net.send(1, 2, payload(90_000, i));
        }
        let mut peak = (0, 0);
        let done = net.run_until(60_000 * MS, |n| {
            peak.0 = peak.0.max(n.nodes[&1].held_bytes());
            peak.1 = peak.1.max(n.nodes[&2].held_bytes());
            n.delivered(1) == 10
        });
        assert!(done);
        // Its Debug is a summary, not the bytes it holds.
        assert!(format!("{:?}", net.nodes[&1]).len() < 1000);
        assert!(peak.0 <= 900_000, "{peak:?}");
        assert!(peak.1 <= 4 * 90_000, "{peak:?}");
        assert_eq!(net.nodes[&1].held_bytes(), 0);
        // Fragments in flight never exceed the window.
        assert!(net.nodes[&1].send[&2].flight.is_empty());
    }

    #[test]
    fn transport_window_bounds_fragments_in_flight() {
        let cfg = TransportConfig {
            window: 7,
            ..TransportConfig::default()
        };
        let mut t = Transport::new(1, 5, cfg);
        t.send(0, 2, payload(100 * 1368, 1)).unwrap();
        assert_eq!(drain(&mut t, 0).len(), 7);
        // An ack of the first four lets four more go.
        t.handle_datagram(MS, 2, &ack(5, 0, 4, 0, false)).unwrap();
        let more = drain(&mut t, MS);
        let nos: Vec<u32> = more
            .iter()
            .map(|(_, d)| match d {
                Datagram::Fragment { frag_no, .. } => *frag_no,
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(nos, vec![7, 8, 9, 10]);
    }

    #[test]
    fn transport_receiver_acks_gaps_duplicates_and_completion_at_once_else_delays() {
        let mut t = Transport::new(2, 9, TransportConfig::default());
        let f = |no, len| fragment(1, 0, no, 6, 5 * 1368 + 10, len);
        // One in-order fragment: the ack waits, at most ACK_DELAY_NS.
        t.handle_datagram(0, 1, &f(0, 1368)).unwrap();
        assert!(drain(&mut t, 0).is_empty());
        assert_eq!(t.poll_timeout(), Some(ACK_DELAY_NS));
        assert!(!t.is_idle());
        t.handle_timeout(ACK_DELAY_NS);
        let acks = drain(&mut t, ACK_DELAY_NS);
        let want = |cumulative, sack, complete| {
            (
                1,
                Datagram::Ack {
                    id: MsgId { nonce: 1, seq: 0 },
                    cumulative,
                    sack,
                    complete,
                },
            )
        };
        assert_eq!(acks, vec![want(1, 0, false)]);
        // A gap: at once, with the SACK bit.
        t.handle_datagram(3 * MS, 1, &f(3, 1368)).unwrap();
        assert_eq!(drain(&mut t, 3 * MS), vec![want(1, 0b10, false)]);
        // A duplicate: at once.
        t.handle_datagram(3 * MS, 1, &f(3, 1368)).unwrap();
        assert_eq!(drain(&mut t, 3 * MS), vec![want(1, 0b10, false)]);
        assert_eq!(t.stats().duplicates, 1);
        // Filling the gap, in order but with holes behind: at once.
        t.handle_datagram(3 * MS, 1, &f(1, 1368)).unwrap();
        t.handle_datagram(3 * MS, 1, &f(2, 1368)).unwrap();
        assert_eq!(drain(&mut t, 3 * MS), vec![want(4, 0, false)]);
        t.handle_datagram(3 * MS, 1, &f(4, 1368)).unwrap();
        assert!(drain(&mut t, 3 * MS).is_empty());
        // Completion: at once, and the message is delivered.
        t.handle_datagram(3 * MS, 1, &f(5, 10)).unwrap();
        assert_eq!(drain(&mut t, 3 * MS), vec![want(6, 0, true)]);
        match t.poll_event() {
            Some(TransportEvent::Received { from: 1, msg }) => {
                assert_eq!(msg.len(), 5 * 1368 + 10);
                assert_eq!(msg[1368 * 3], 3);
                assert_eq!(msg[5 * 1368], 5);
            }
            e => panic!("{e:?}"),
        }
        // A late duplicate of the completed message: acknowledged complete, not delivered.
        t.handle_datagram(4 * MS, 1, &f(2, 1368)).unwrap();
        assert_eq!(drain(&mut t, 4 * MS), vec![want(6, 0, true)]);
        assert_eq!(t.poll_event(), None);
        assert_eq!(t.held_bytes(), 0);
        assert!(t.is_idle());
        // Every ACK_EVERY in-order fragments: at once.
        let g = |no| fragment(1, 1, no, 10, 10 * 1368, 1368);
        for no in 0..ACK_EVERY {
            assert!(drain(&mut t, 5 * MS).is_empty());
            t.handle_datagram(5 * MS, 1, &g(no)).unwrap();
        }
        assert_eq!(drain(&mut t, 5 * MS).len(), 1);
    }

    #[test]
    fn transport_partials_expire() {
        let cfg = TransportConfig::default();
        let mut t = Transport::new(2, 9, cfg.clone());
        t.handle_datagram(0, 1, &fragment(1, 0, 0, 3, 3000, 1368))
            .unwrap();
        assert_eq!(t.held_bytes(), 3000);
        let mut now = 0;
        while let Some(at) = t.poll_timeout() {
            now = at;
            t.handle_timeout(now);
            drain(&mut t, now);
        }
        assert_eq!(now, 2 * cfg.give_up_ns);
        assert_eq!(t.held_bytes(), 0);
        assert_eq!(t.stats().evicted, 1);
    }

    #[test]
    fn transport_refuses_messages_above_max_message() {
        let mut t = Transport::new(
            1,
            1,
            TransportConfig {
                max_message: 1000,
                ..TransportConfig::default()
            },
        );
        assert_eq!(
            t.send(0, 2, payload(1001, 1)),
            Err(TransportError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
        assert!(t.send(0, 2, payload(1000, 1)).is_ok());
        assert_eq!(t.stats().malformed, 0);
    }

    #[test]
    fn transport_datagrams_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for _ in 0..5000 {
            let id = MsgId {
                nonce: rng.gen(),
                seq: rng.gen(),
            };
            let d = if rng.gen_bool(0.5) {
                let size = rng.gen_range(MIN_FRAGMENT_PAYLOAD..=MAX_FRAGMENT_PAYLOAD);
                let count = rng.gen_range(1..=40u32);
                let last = if count == 1 {
                    rng.gen_range(0..=size)
                } else {
                    rng.gen_range(1..=size)
                };
                let total = (count as usize - 1) * size + last;
                let no = rng.gen_range(0..count);
                let len = if no + 1 == count { last } else { size };
                Datagram::Fragment {
                    id,
                    frag_no: no,
                    frag_count: count,
                    total_len: total as u32,
                    payload: payload(len, rng.gen()),
                }
            } else {
                Datagram::Ack {
                    id,
                    cumulative: rng.gen(),
                    sack: rng.gen(),
                    complete: rng.gen(),
                }
            };
            let b = d.encode();
            assert_eq!(b.len(), d.encoded_len());
            assert!(is_transfer_datagram(&b));
            assert_eq!(Datagram::decode(&b), Ok(d));
        }
        assert!(!is_transfer_datagram(b"RL\x01\x01"));
        assert!(!is_transfer_datagram(b"R"));
    }

    #[test]
    fn transport_config_validates_and_clamps() {
        let d = TransportConfig::default();
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(d.max_message, MAX_MESSAGE);
        let bad = [
            TransportConfig {
                datagram_bytes: 127,
                ..d.clone()
            },
            TransportConfig {
                datagram_bytes: 65_001,
                ..d.clone()
            },
            TransportConfig {
                window: 0,
                ..d.clone()
            },
            TransportConfig {
                window: 4097,
                ..d.clone()
            },
            TransportConfig {
                rate_limit: Some(0),
                ..d.clone()
            },
            TransportConfig {
                rto_min_ns: 60 * MS,
                ..d.clone()
            },
            TransportConfig {
                rto_max_ns: 10 * MS,
                ..d.clone()
            },
            TransportConfig {
                give_up_ns: 0,
                ..d.clone()
            },
            TransportConfig {
                max_message: MAX_MESSAGE_LIMIT + 1,
                ..d.clone()
            },
            TransportConfig {
                max_partial: 0,
                ..d.clone()
            },
            TransportConfig {
                max_peers: 0,
                ..d.clone()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
            assert_eq!(c.clone().clamped().validate(), Ok(()), "{c:?}");
            // A transport built from it works.
            let mut t = Transport::new(1, 1, c);
            t.send(0, 2, payload(3000, 1)).unwrap();
            if t.config().rate_limit.is_some() {
                assert!(drain(&mut t, 1).is_empty());
                assert!(t.poll_timeout().is_some());
            } else {
                assert!(!drain(&mut t, 1).is_empty());
            }
        }
    }

    #[test]
    fn transport_retransmissions_track_the_loss_rate() {
        // A table a regression shows in: retransmitted fragments, as a share of fragments
        // sent, stay close to the loss rate (0 on a lossless link with jitter, and no
        // spurious retransmissions from reordering or delayed acks).
        for (loss, slack) in [(0.0, 0.0), (0.01, 0.02), (0.1, 0.03), (0.3, 0.05)] {
            let (mut retx, mut sent) = (0, 0);
            for seed in 1..=3 {
                let link = Link {
                    loss,
                    dup: 0.0,
                    delay_min: MS / 2,
                    delay_max: MS,
                };
                let mut net = Net::new(seed, link, TransportConfig::default(), &[1, 2]);
                net.send(1, 2, payload(MIB, seed));
                net.send(2, 1, payload(MIB / 2, seed));
                let done = |n: &Net| n.delivered(1) + n.delivered(2) == 2;
                assert!(net.run_until(60_000 * MS, done), "loss {loss} seed {seed}");
                assert_eq!(net.failed(1) + net.failed(2), 0);
                for t in net.nodes.values() {
                    let s = t.stats();
                    retx += s.retransmitted;
                    sent += s.datagrams_sent - s.acks_sent;
                }
            }
            let share = retx as f64 / sent as f64;
            assert!(
                share <= loss + slack,
                "loss {loss}: {retx} of {sent} fragments retransmitted"
            );
        }
    }

    #[test]
    fn transport_message_waiting_for_the_window_does_not_give_up() {
        // Paced at 200 kB/s, the first message takes about 10 s (twice give_up_ns); the
        // second one starts while the first is blocked on a lost fragment, then waits for
        // the window while the first goes on: it is not waiting on the peer, so nothing
        // fails.
        let cfg = TransportConfig {
            rate_limit: Some(200_000),
            ..TransportConfig::default()
        };
        let mut net = Net::new(17, CLEAN, cfg, &[1, 2]);
        // Fragment 3 of the first message is lost 100 times: the first message is held at
        // 65 fragments in flight, and the second one goes meanwhile.
        let mut lost = 0;
        net.filter = Some(Box::new(move |_, _, d| {
            let lose = lost < 100
                && matches!(
                    Datagram::decode(d),
                    Ok(Datagram::Fragment {
                        id: MsgId { seq: 0, .. },
                        frag_no: 3,
                        ..
                    })
                );
            lost += u32::from(lose);
            lose
        }));
        let (a, b) = (payload(2 * MIB, 1), payload(200_000, 2));
        net.send(1, 2, a.clone());
        net.send(1, 2, b.clone());
        assert!(net.run_until(60_000 * MS, |n| n.delivered(1) + n.failed(1) == 2));
        assert_eq!(net.failed(1), 0);
        assert!(net.now > 2 * TransportConfig::default().give_up_ns);
        let mut got = net.received(2);
        got.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_msgs(&got, &want, "");
    }
}
