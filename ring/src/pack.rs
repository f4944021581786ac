//! Packing and fragmentation: application messages (1 byte to [`MESSAGE_MAX`]) in and out of
//! frames, the payloads of mcasts.
//!
//! A frame is `count u16` followed by `count` items. An item is one whole message or one
//! fragment of a message: `incarnation u32, counter u64, sent_t_ns u64, total_len u32,
//! offset u32, chunk_len u32`, then `chunk_len` bytes. The originating node is the mcast's
//! sender, so `(sender, incarnation, counter)` is the message id.
//!
//! Guarantees: small messages submitted between two token visits share frames; a large one
//! is cut into in-order fragments that never exceed the frame capacity; [`decode_frame`] never
//! panics and checks `offset + chunk_len <= total_len <= MESSAGE_MAX`; reassembly accepts a
//! fragment only if it continues the message it has for that sender, so a fragment after a
//! gap drops the partial message instead of delivering a corrupt one. The send queue is
//! bounded in bytes: a message that does not fit is refused with [`SubmitError::QueueFull`].

use crate::wire::{DecodeError, NodeId, Reader};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

/// Largest application message.
pub const MESSAGE_MAX: usize = 1 << 20;
/// Encoded size of one item header.
pub const ITEM_HEADER_LEN: usize = 4 + 8 + 8 + 4 + 4 + 4;
/// Most items one frame may hold.
pub const ITEMS_MAX: usize = 4096;
/// Most partial messages held in reassembly (one per sender and incarnation is normal).
pub const PARTIALS_MAX: usize = 512;

/// Identifies an application message: `node.incarnation.counter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    /// The sending node.
    pub node: NodeId,
    /// The sender's incarnation.
    pub inc: u32,
    /// The sender's per-incarnation counter, from 1.
    pub counter: u64,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.node, self.inc, self.counter)
    }
}

/// Why a message id string could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("message id must be node.incarnation.counter")]
pub struct MsgIdParseError;

impl FromStr for MsgId {
    type Err = MsgIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut it = s.split('.');
        let mut next = || it.next().ok_or(MsgIdParseError);
        let node = next()?.parse().map_err(|_| MsgIdParseError)?;
        let inc = next()?.parse().map_err(|_| MsgIdParseError)?;
        let counter = next()?.parse().map_err(|_| MsgIdParseError)?;
        Ok(Self { node, inc, counter })
    }
}

impl serde::Serialize for MsgId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MsgId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why the ring refused a message. Local misuse or back-pressure, never a peer's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Messages must carry at least one byte.
    #[error("empty message")]
    Empty,
    /// Above [`MESSAGE_MAX`].
    #[error("message of {len} bytes is above the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The send queue has no room for it now; try again after the token has passed.
    #[error("send queue full: {queued} of {limit} bytes queued, {needed} more needed")]
    QueueFull {
        /// Bytes queued.
        queued: usize,
        /// The bound.
        limit: usize,
        /// Bytes the message needs.
        needed: usize,
    },
    /// The node has left the ring.
    #[error("the node has left the ring")]
    Stopped,
}

/// One item of a decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Sender's incarnation.
    pub inc: u32,
    /// Sender's message counter.
    pub counter: u64,
    /// When the sender submitted it (sender's clock, ns).
    pub sent_t_ns: u64,
    /// Length of the whole message.
    pub total_len: u32,
    /// Where this chunk starts in the message.
    pub offset: u32,
    /// The chunk.
    pub data: Bytes,
}

/// Decodes the items of a frame. Never panics.
pub fn decode_frame(frame: &Bytes) -> Result<Vec<Item>, DecodeError> {
    let mut r = Reader::new(frame);
    let n = r.count("item count", ITEMS_MAX)?;
    let mut items = Vec::with_capacity(n.min(frame.len() / ITEM_HEADER_LEN + 1));
    for _ in 0..n {
        let inc = r.u32("item incarnation")?;
        let counter = r.u64("item counter")?;
        let sent_t_ns = r.u64("item sent_t_ns")?;
        let total_len = r.u32("item total_len")?;
        let offset = r.u32("item offset")?;
        let chunk_len = r.u32("item chunk_len")?;
        if total_len as usize > MESSAGE_MAX || total_len == 0 {
            return Err(DecodeError::TooLong {
                field: "message length",
                len: total_len as usize,
                max: MESSAGE_MAX,
            });
        }
        if chunk_len == 0 || offset as u64 + chunk_len as u64 > total_len as u64 {
            return Err(DecodeError::Invalid("fragment bounds"));
        }
        let start = r.pos();
        r.take(chunk_len as usize, "item data")?;
        items.push(Item {
            inc,
            counter,
            sent_t_ns,
            total_len,
            offset,
            data: frame.slice(start..start + chunk_len as usize),
        });
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(items)
}

/// A frame waiting for the token.
#[derive(Debug)]
pub struct PendingFrame {
    /// Safe (true) or agreed.
    pub safe: bool,
    buf: BytesMut,
    items: u16,
    /// Counter of the message whose later fragment opens this frame.
    opens_with: Option<u64>,
    /// Counter of the message whose next fragment is in the following frame.
    continues: Option<u64>,
}

impl PendingFrame {
    /// Returns the encoded frame.
    pub fn finish(mut self) -> Bytes {
        self.buf[0..2].copy_from_slice(&self.items.to_be_bytes());
        self.buf.freeze()
    }
}

/// The bounded queue of frames a node will multicast when it holds the token.
#[derive(Debug)]
pub struct SendQueue {
    frames: VecDeque<PendingFrame>,
    bytes: usize,
    limit: usize,
    frame_cap: usize,
    /// Fragmented messages not yet wholly popped, to restart at a configuration change.
    fragmented: HashMap<u64, Fragmented>,
    /// The fragmented message whose first fragments have been popped but not its last.
    sending: Option<u64>,
}

#[derive(Debug)]
struct Fragmented {
    data: Bytes,
    safe: bool,
    inc: u32,
    sent_t_ns: u64,
}

/// What identifies an item besides its bytes.
#[derive(Clone, Copy)]
struct Stamp {
    inc: u32,
    counter: u64,
    sent_t_ns: u64,
}

/// Packs `data` at the tail of `frames` (reusing the last frame if it has room and the same
/// guarantee), adding what it takes to `bytes`; returns how many items it took.
fn pack_into(
    frames: &mut VecDeque<PendingFrame>,
    bytes: &mut usize,
    frame_cap: usize,
    data: &[u8],
    safe: bool,
    stamp: Stamp,
) -> usize {
    let Stamp {
        inc,
        counter,
        sent_t_ns,
    } = stamp;
    let mut offset = 0usize;
    let mut pieces = 0;
    while offset < data.len() {
        let room = match frames.back() {
            Some(f) if f.safe == safe && (f.items as usize) < ITEMS_MAX => frame_cap - f.buf.len(),
            _ => 0,
        };
        if room < ITEM_HEADER_LEN + 1 {
            let mut buf = BytesMut::with_capacity(frame_cap.min(64 + data.len()));
            buf.put_u16(0);
            *bytes += 2;
            let opens_with = (offset > 0).then_some(counter);
            if let Some(prev) = frames.back_mut() {
                if offset > 0 {
                    prev.continues = Some(counter);
                }
            }
            frames.push_back(PendingFrame {
                safe,
                buf,
                items: 0,
                opens_with,
                continues: None,
            });
            continue;
        }
        let chunk = (room - ITEM_HEADER_LEN).min(data.len() - offset);
        let f = frames.back_mut().expect("a frame was just ensured");
        f.buf.put_u32(inc);
        f.buf.put_u64(counter);
        f.buf.put_u64(sent_t_ns);
        f.buf.put_u32(data.len() as u32);
        f.buf.put_u32(offset as u32);
        f.buf.put_u32(chunk as u32);
        f.buf.put_slice(&data[offset..offset + chunk]);
        f.items += 1;
        *bytes += ITEM_HEADER_LEN + chunk;
        offset += chunk;
        pieces += 1;
    }
    pieces
}

impl SendQueue {
    /// Creates a queue of at most `limit` bytes, cutting frames of at most `frame_cap` bytes.
    pub fn new(limit: usize, frame_cap: usize) -> Self {
        assert!(frame_cap > ITEM_HEADER_LEN + 2);
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            limit,
            frame_cap,
            fragmented: HashMap::new(),
            sending: None,
        }
    }

    /// Returns the bytes needed to queue a message of `len` bytes in fresh frames.
    fn worst_case(&self, len: usize) -> usize {
        let per_frame = self.frame_cap - 2 - ITEM_HEADER_LEN;
        len.div_ceil(per_frame) * (ITEM_HEADER_LEN + 2) + len
    }

    /// Packs one message; returns nothing, or why it was refused.
    pub fn push(
        &mut self,
        data: &[u8],
        safe: bool,
        inc: u32,
        counter: u64,
        sent_t_ns: u64,
    ) -> Result<(), SubmitError> {
        if data.is_empty() {
            return Err(SubmitError::Empty);
        }
        if data.len() > MESSAGE_MAX {
            return Err(SubmitError::TooLarge {
                len: data.len(),
                max: MESSAGE_MAX,
            });
        }
        let needed = self.worst_case(data.len());
        if self.bytes + needed > self.limit {
            return Err(SubmitError::QueueFull {
                queued: self.bytes,
                limit: self.limit,
                needed,
            });
        }
        let fragments = pack_into(
            &mut self.frames,
            &mut self.bytes,
            self.frame_cap,
            data,
            safe,
            Stamp {
                inc,
                counter,
                sent_t_ns,
            },
        );
        if fragments > 1 {
            self.fragmented.insert(
                counter,
                Fragmented {
                    data: Bytes::copy_from_slice(data),
                    safe,
                    inc,
                    sent_t_ns,
                },
            );
        }
        Ok(())
    }

    /// Restarts, from its first fragment, a message whose fragments were cut by a
    /// configuration change: its remaining fragments are taken out of the queue and the whole
    /// message goes back at its head. Every fragment of a message is then ordered on one ring,
    /// so every member of a configuration either reassembles it or never sees any of it.
    pub fn restart_cut_message(&mut self) {
        let Some(counter) = self.sending.take() else {
            return;
        };
        let Some(m) = self.fragmented.remove(&counter) else {
            return;
        };
        // Drop the message's remaining fragments: whole frames, then the first item of the
        // frame that holds its last fragment.
        while let Some(f) = self.frames.front_mut() {
            if f.opens_with != Some(counter) {
                break;
            }
            if f.continues == Some(counter) || f.items == 1 {
                let f = self.frames.pop_front().expect("front exists");
                self.bytes -= f.buf.len();
                continue;
            }
            let chunk_at = 2 + ITEM_HEADER_LEN - 4;
            let chunk = u32::from_be_bytes([
                f.buf[chunk_at],
                f.buf[chunk_at + 1],
                f.buf[chunk_at + 2],
                f.buf[chunk_at + 3],
            ]) as usize;
            let cut = ITEM_HEADER_LEN + chunk;
            let rest = f.buf.split_off(2 + cut);
            f.buf.truncate(2);
            f.buf.extend_from_slice(&rest);
            f.items -= 1;
            f.opens_with = None;
            self.bytes -= cut;
            break;
        }
        // Re-pack the whole message into fresh frames ahead of everything else.
        let mut front: VecDeque<PendingFrame> = VecDeque::new();
        let stamp = Stamp {
            inc: m.inc,
            counter,
            sent_t_ns: m.sent_t_ns,
        };
        pack_into(
            &mut front,
            &mut self.bytes,
            self.frame_cap,
            &m.data,
            m.safe,
            stamp,
        );
        if let Some(last) = front.back_mut() {
            last.continues = None;
        }
        while let Some(f) = front.pop_back() {
            self.frames.push_front(f);
        }
        self.fragmented.insert(counter, m);
    }

    /// Takes the oldest frame, closing it to further packing.
    pub fn pop(&mut self) -> Option<PendingFrame> {
        let f = self.frames.pop_front()?;
        self.bytes -= f.buf.len();
        if let Some(c) = f.opens_with {
            if f.continues != Some(c) {
                self.fragmented.remove(&c);
            }
        }
        self.sending = f.continues;
        if let Some(c) = f.continues {
            if f.opens_with != Some(c) && !self.fragmented.contains_key(&c) {
                // A message that fit in one frame cannot continue; nothing to restart.
                self.sending = None;
            }
        }
        Some(f)
    }

    /// Returns the number of frames waiting.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Returns the bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Returns whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A whole message out of reassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    /// Its id.
    pub id: MsgId,
    /// Submit time at the sender.
    pub sent_t_ns: u64,
    /// The message.
    pub data: Bytes,
}

#[derive(Debug)]
struct Partial {
    counter: u64,
    sent_t_ns: u64,
    total: usize,
    buf: BytesMut,
}

/// Reassembles fragments, per sender and incarnation, in delivery order.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: HashMap<(NodeId, u32), Partial>,
    /// Partial messages dropped because a fragment did not continue them.
    pub dropped: u64,
}

impl Reassembly {
    /// Feeds one delivered item from `sender`; returns the message if it is now whole.
    pub fn push(&mut self, sender: NodeId, item: Item) -> Option<Assembled> {
        let id = MsgId {
            node: sender,
            inc: item.inc,
            counter: item.counter,
        };
        let total = item.total_len as usize;
        if item.offset == 0 && item.data.len() == total {
            if self.partial.remove(&(sender, item.inc)).is_some() {
                self.dropped += 1;
            }
            return Some(Assembled {
                id,
                sent_t_ns: item.sent_t_ns,
                data: item.data,
            });
        }
        let key = (sender, item.inc);
        if item.offset == 0 {
            if self.partial.remove(&key).is_some() {
                self.dropped += 1;
            }
            if self.partial.len() >= PARTIALS_MAX {
                self.dropped += 1;
                return None;
            }
            // Grows with the data that arrives, not with the length a header claims.
            let mut buf = BytesMut::with_capacity(total.min(64 * 1024));
            buf.extend_from_slice(&item.data);
            self.partial.insert(
                key,
                Partial {
                    counter: item.counter,
                    sent_t_ns: item.sent_t_ns,
                    total,
                    buf,
                },
            );
            return None;
        }
        let p = match self.partial.get_mut(&key) {
            Some(p)
                if p.counter == item.counter
                    && p.total == total
                    && p.buf.len() == item.offset as usize =>
            {
                p
            }
            Some(_) => {
                self.partial.remove(&key);
                self.dropped += 1;
                return None;
            }
            None => {
                self.dropped += 1;
                return None;
            }
        };
        p.buf.extend_from_slice(&item.data);
        if p.buf.len() < p.total {
            return None;
        }
        let p = self.partial.remove(&key).expect("present");
        Some(Assembled {
            id,
            sent_t_ns: p.sent_t_ns,
            data: p.buf.freeze(),
        })
    }

    /// Drops every partial message (at a configuration change: their senders restart them).
    pub fn clear(&mut self) {
        self.dropped += self.partial.len() as u64;
        self.partial.clear();
    }

    /// Returns the bytes held in partial messages.
    pub fn bytes(&self) -> usize {
        self.partial.values().map(|p| p.buf.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_then_reassemble(sizes in proptest::collection::vec(1usize..5000, 1..20), cap in 100usize..1500) {
            let mut q = SendQueue::new(1 << 24, cap);
            let msgs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 7 + j) as u8).collect()).collect();
            for (i, m) in msgs.iter().enumerate() {
                q.push(m, false, 2, i as u64 + 1, 99).unwrap();
            }
            let mut r = Reassembly::default();
            let mut out = vec![];
            while let Some(f) = q.pop() {
                let b = f.finish();
                prop_assert!(b.len() <= cap);
                for item in decode_frame(&b).unwrap() {
                    if let Some(a) = r.push(5, item) { out.push(a); }
                }
            }
            prop_assert_eq!(out.len(), msgs.len());
            for (i, a) in out.iter().enumerate() {
                prop_assert_eq!(a.id, MsgId { node: 5, inc: 2, counter: i as u64 + 1 });
                prop_assert_eq!(&a.data[..], &msgs[i][..]);
            }
            prop_assert_eq!(q.bytes(), 0);
        }

        #[test]
        fn frame_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_frame(&Bytes::from(b));
        }
    }

    #[test]
    fn queue_is_bounded_and_typed() {
        let mut q = SendQueue::new(10_000, 1338);
        assert_eq!(q.push(&[], false, 1, 1, 0), Err(SubmitError::Empty));
        assert!(matches!(
            q.push(&vec![0; MESSAGE_MAX + 1], false, 1, 1, 0),
            Err(SubmitError::TooLarge { .. })
        ));
        let mut n = 0;
        while q.push(&[1; 100], false, 1, n + 1, 0).is_ok() {
            n += 1;
        }
        assert!(n > 50 && q.bytes() <= 10_000);
        assert!(matches!(
            q.push(&[1; 100], false, 1, 1, 0),
            Err(SubmitError::QueueFull { .. })
        ));
    }

    #[test]
    fn a_gap_drops_the_partial_message() {
        let mut q = SendQueue::new(1 << 20, 200);
        q.push(&[7; 500], true, 1, 1, 0).unwrap();
        let frames: Vec<_> = std::iter::from_fn(|| q.pop()).map(|f| f.finish()).collect();
        assert!(frames.len() >= 3);
        let mut r = Reassembly::default();
        for item in decode_frame(&frames[0]).unwrap() {
            assert!(r.push(1, item).is_none());
        }
        for item in decode_frame(&frames[2]).unwrap() {
            assert!(r.push(1, item).is_none());
        }
        assert_eq!(r.dropped, 1);
    }

    #[test]
    fn a_cut_message_restarts_whole_ahead_of_the_rest() {
        let mut q = SendQueue::new(1 << 20, 200);
        q.push(&[1; 30], false, 1, 1, 0).unwrap();
        q.push(
            &(0..700).map(|i| i as u8).collect::<Vec<_>>(),
            false,
            1,
            2,
            0,
        )
        .unwrap();
        q.push(&[3; 20], false, 1, 3, 0).unwrap();
        // The first frame holds message 1 and the start of message 2; pop it and one more.
        let mut r = Reassembly::default();
        let mut first = vec![];
        for _ in 0..2 {
            for item in decode_frame(&q.pop().unwrap().finish()).unwrap() {
                first.extend(r.push(4, item).map(|a| a.id.counter));
            }
        }
        assert_eq!(first, vec![1]);
        // A configuration change: receivers drop partials, the sender restarts message 2.
        r.clear();
        q.restart_cut_message();
        let mut out = vec![];
        while let Some(f) = q.pop() {
            for item in decode_frame(&f.finish()).unwrap() {
                if let Some(a) = r.push(4, item) {
                    out.push((a.id.counter, a.data.len()));
                }
            }
        }
        assert_eq!(out, vec![(2, 700), (3, 20)]);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn reassembly_holds_a_bounded_number_of_partials() {
        let mut r = Reassembly::default();
        for inc in 0..(PARTIALS_MAX as u32 + 100) {
            let item = Item {
                inc,
                counter: 1,
                sent_t_ns: 0,
                total_len: MESSAGE_MAX as u32,
                offset: 0,
                data: Bytes::from_static(b"first fragment"),
            };
            assert!(r.push(9, item).is_none());
        }
        assert_eq!(r.partial.len(), PARTIALS_MAX);
        assert!(r.bytes() < PARTIALS_MAX * 64);
        assert_eq!(r.dropped, 100);
    }

    #[test]
    fn msg_id_text_round_trip() {
        let id: MsgId = "3.1.42".parse().unwrap();
        assert_eq!(
            id,
            MsgId {
                node: 3,
                inc: 1,
                counter: 42
            }
        );
        assert_eq!(id.to_string(), "3.1.42");
        assert!("3.1".parse::<MsgId>().is_err());
    }
}
