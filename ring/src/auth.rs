//! The keyed envelope every datagram travels in when a cluster has a key: HMAC-SHA256 over
//! the packet and a trailer that binds it to its transmitter, its intended receiver (one node,
//! or the group) and both their incarnations, with replay protection that survives a restart
//! of the receiver. Sans-IO: the runtime and the simulator call [`Authenticator::seal`] on
//! every datagram they send and [`Authenticator::open`] on every one they receive.
//!
//! # Wire format (version 2)
//!
//! `packet || tx u32 || tx_inc u32 || rx u32 || rx_inc u32 || counter u64 || mac [32]`
//!
//! | field | meaning |
//! |---|---|
//! | `tx`, `tx_inc` | the transmitter and its incarnation |
//! | `rx`, `rx_inc` | the receiver and the incarnation the transmitter knows it by; `rx = 0`: the group (every member), `rx_inc = 0` |
//! | `counter` | per transmitter incarnation and channel (the group, or one receiver), from 1 |
//! | `mac` | HMAC-SHA256(key, `ringlab-auth-2` \|\| packet \|\| the fields above) |
//!
//! The packet's own header names the ring it belongs to, so the MAC binds that too.
//!
//! # What a receiver checks, in order
//! 1. the MAC ([`AuthError::BadMac`]);
//! 2. that it is the receiver: the group, or itself at its current incarnation
//!    ([`AuthError::NotForMe`], [`AuthError::OldIncarnation`]): a token sealed for node 3 is
//!    refused by node 1, and one sealed for node 3 before node 3 restarted is refused by
//!    node 3 (a transmitter that has not yet heard node 3's new incarnation loses that
//!    datagram too, and re-sends it, sealed right, once it has: a token retransmission);
//! 3. that the transmitter's incarnation is not older than one already seen from it
//!    ([`AuthError::OldIncarnation`]);
//! 4. the replay window of that transmitter incarnation and channel: a counter seen
//!    before, or more than [`WINDOW`] below the highest seen, is refused
//!    ([`AuthError::Replayed`]).
//!
//! # Restarts
//! A restarted *transmitter* counts from 1 again in a higher incarnation, which every
//! receiver takes as new. A restarted *receiver* has lost its windows; two rules keep it from
//! taking again what it took before:
//! - unicast datagrams carry the receiver's incarnation, so everything sealed for its earlier
//!   incarnation is refused;
//! - for the group channel, a receiver keeps a *mark* per transmitter: a counter at least
//!   [`RESERVE`] above everything it has accepted, handed to the runtime to keep on stable
//!   storage ([`Authenticator::marks_to_persist`]) *before* the datagram is acted on. After a
//!   restart the marks seed the windows, so every group datagram accepted before the restart
//!   is refused. A transmitter that sees a peer come back in a higher incarnation moves its
//!   group counter [`JUMP`] ahead, past any mark that peer can hold; until then the restarted
//!   node refuses its group datagrams (one join interval, in practice).
//!
//! What this does not protect against: a member (or anyone) holding the key; floods (each
//! datagram costs a MAC check before it is refused); traffic analysis (nothing is
//! encrypted); a state file lost or rolled back with its marks.

use crate::event::Dest;
use crate::wire::NodeId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;

type HmacSha256 = Hmac<Sha256>;

/// Bytes the trailer adds to a packet.
pub const TRAILER_LEN: usize = 4 + 4 + 4 + 4 + 8 + 32;
/// Bytes of the trailer before the MAC.
const FIELDS_LEN: usize = TRAILER_LEN - 32;
/// Domain separation: what the MAC of this envelope version starts with.
const DOMAIN: &[u8] = b"ringlab-auth-2";
/// Counters accepted out of order below the highest seen, per transmitter and channel.
pub const WINDOW: u64 = 4096;
/// How far above an accepted group counter a receiver's mark goes (so marks are written
/// once per `RESERVE` datagrams of a transmitter, not per datagram).
pub const RESERVE: u64 = 1 << 20;
/// How far a transmitter moves its group counter when a peer restarts (above `RESERVE`).
pub const JUMP: u64 = 1 << 21;
/// The shortest key accepted, in bytes.
pub const KEY_MIN: usize = 16;

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AuthError {
    /// Too short to carry a trailer.
    #[error("no authentication trailer")]
    Missing,
    /// The MAC does not verify: forged, altered, or sealed with another key.
    #[error("bad MAC")]
    BadMac,
    /// Sealed for another node.
    #[error("sealed for another node")]
    NotForMe,
    /// Sealed for an earlier incarnation of this node, or by an earlier incarnation of its
    /// transmitter.
    #[error("sealed for or by an earlier incarnation")]
    OldIncarnation,
    /// Sealed by a node other than the one the network says sent it.
    #[error("sealed by another node than its source")]
    WrongSender,
    /// Seen before, or too old for the replay window.
    #[error("replayed")]
    Replayed,
}

/// Why a key cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key needs at least {KEY_MIN} bytes, this one has {0}")]
pub struct KeyError(pub usize);

/// Where a sealed datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Channel {
    Group,
    Node(NodeId),
}

/// A receiver's replay window for one transmitter and channel.
#[derive(Clone, Debug)]
struct Window {
    /// The transmitter incarnation it is for.
    inc: u32,
    /// The highest counter accepted (or the mark a restart began with).
    top: u64,
    /// Bit `c % WINDOW` set: counter `c` (within the window below `top`) was accepted.
    seen: Box<[u64; (WINDOW / 64) as usize]>,
}

impl Window {
    /// Returns the window of a transmitter incarnation first heard now.
    fn new(inc: u32) -> Self {
        Self {
            inc,
            top: 0,
            seen: Box::new([0; (WINDOW / 64) as usize]),
        }
    }

    /// Returns a window that refuses every counter up to `top`: a restarted receiver's,
    /// from its mark.
    fn seeded(inc: u32, top: u64) -> Self {
        Self {
            inc,
            top,
            seen: Box::new([u64::MAX; (WINDOW / 64) as usize]),
        }
    }

    /// Returns whether `c` is new, without recording it.
    fn fresh(&self, c: u64) -> bool {
        if c > self.top {
            return true;
        }
        if self.top - c >= WINDOW {
            return false;
        }
        let bit = c % WINDOW;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) == 0
    }

    /// Records `c`, which [`Window::fresh`] said is new.
    fn record(&mut self, c: u64) {
        if c > self.top {
            let shift = c - self.top;
            if shift >= WINDOW {
                self.seen.fill(0);
            } else {
                for t in self.top + 1..c {
                    let bit = t % WINDOW;
                    self.seen[(bit / 64) as usize] &= !(1 << (bit % 64));
                }
            }
            self.top = c;
        }
        let bit = c % WINDOW;
        self.seen[(bit / 64) as usize] |= 1 << (bit % 64);
    }
}

/// A receiver's mark for one transmitter's group channel: every group counter of that
/// transmitter incarnation up to `counter` is refused after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    /// The transmitter's incarnation.
    pub inc: u32,
    /// The counter.
    pub counter: u64,
}

/// What [`Authenticator::open`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The packet inside.
    pub packet: &'a [u8],
    /// Its transmitter.
    pub tx: NodeId,
}

/// Seals outgoing datagrams and opens incoming ones for one node incarnation.
pub struct Authenticator {
    key: Vec<u8>,
    me: NodeId,
    inc: u32,
    counters: BTreeMap<Channel, u64>,
    /// The incarnation each peer was last seen in.
    peers: BTreeMap<NodeId, u32>,
    windows: BTreeMap<(NodeId, Channel), Window>,
    marks: BTreeMap<NodeId, Mark>,
    marks_dirty: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("me", &self.me)
            .field("inc", &self.inc)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Creates the authenticator of node `me` at `incarnation`, with the group-channel marks
    /// its earlier incarnations left on stable storage.
    pub fn new(
        key: Vec<u8>,
        me: NodeId,
        incarnation: u32,
        marks: BTreeMap<NodeId, Mark>,
    ) -> Result<Self, KeyError> {
        if key.len() < KEY_MIN {
            return Err(KeyError(key.len()));
        }
        let windows = marks
            .iter()
            .map(|(&tx, m)| ((tx, Channel::Group), Window::seeded(m.inc, m.counter)))
            .collect();
        Ok(Self {
            key,
            me,
            inc: incarnation,
            counters: BTreeMap::new(),
            peers: marks.iter().map(|(&tx, m)| (tx, m.inc)).collect(),
            windows,
            marks,
            marks_dirty: false,
        })
    }

    /// Returns the marks to write to stable storage when they changed since the last call:
    /// the caller keeps them before it acts on the datagram just opened, and if it cannot,
    /// drops that datagram and says so with [`Authenticator::marks_unsaved`].
    pub fn marks_to_persist(&mut self) -> Option<&BTreeMap<NodeId, Mark>> {
        if !self.marks_dirty {
            return None;
        }
        self.marks_dirty = false;
        Some(&self.marks)
    }

    /// Says the marks last returned could not be kept: they are returned again next time.
    pub fn marks_unsaved(&mut self) {
        self.marks_dirty = true;
    }

    fn mac(&self, packet: &[u8], fields: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(DOMAIN);
        m.update(packet);
        m.update(fields);
        m
    }

    /// Appends the trailer to `buf`, which holds one packet for `dest`. A datagram for a node
    /// whose incarnation this node has not heard yet (a member known only from another's
    /// join, at a simultaneous start) is sealed for the group instead: it keeps its replay
    /// protection, and the ring itself refuses a token that reaches a member it is not meant
    /// for.
    pub fn seal(&mut self, dest: Dest, buf: &mut Vec<u8>) {
        let (channel, rx, rx_inc) = match dest {
            Dest::Node(n) if n == self.me => (Channel::Node(n), n, self.inc),
            Dest::Node(n) => match self.peers.get(&n) {
                Some(&inc) => (Channel::Node(n), n, inc),
                None => (Channel::Group, 0, 0),
            },
            Dest::Multicast => (Channel::Group, 0, 0),
        };
        let counter = self.counters.entry(channel).or_insert(0);
        *counter = counter.saturating_add(1);
        let mut fields = [0u8; FIELDS_LEN];
        fields[0..4].copy_from_slice(&self.me.to_be_bytes());
        fields[4..8].copy_from_slice(&self.inc.to_be_bytes());
        fields[8..12].copy_from_slice(&rx.to_be_bytes());
        fields[12..16].copy_from_slice(&rx_inc.to_be_bytes());
        fields[16..24].copy_from_slice(&counter.to_be_bytes());
        let tag = self.mac(buf, &fields).finalize().into_bytes();
        buf.extend_from_slice(&fields);
        buf.extend_from_slice(&tag);
    }

    /// Verifies a datagram and records it in its replay window; returns the packet inside
    /// and its transmitter. `from` is the node the network says sent it, when the caller
    /// knows: a datagram sealed by another node is refused before it touches any window, so
    /// a copy sent first from a wrong address cannot use up the counter of the real one.
    pub fn open<'a>(
        &mut self,
        datagram: &'a [u8],
        from: Option<NodeId>,
    ) -> Result<Opened<'a>, AuthError> {
        if datagram.len() < TRAILER_LEN {
            return Err(AuthError::Missing);
        }
        let (packet, rest) = datagram.split_at(datagram.len() - TRAILER_LEN);
        let (fields, tag) = rest.split_at(FIELDS_LEN);
        self.mac(packet, fields)
            .verify_slice(tag)
            .map_err(|_| AuthError::BadMac)?;
        let u32_at =
            |i: usize| u32::from_be_bytes([fields[i], fields[i + 1], fields[i + 2], fields[i + 3]]);
        let (tx, tx_inc, rx, rx_inc) = (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
        let mut c = [0u8; 8];
        c.copy_from_slice(&fields[16..24]);
        let counter = u64::from_be_bytes(c);
        if from.is_some_and(|f| f != tx) {
            return Err(AuthError::WrongSender);
        }
        let channel = match rx {
            0 => Channel::Group,
            n if n == self.me => {
                if rx_inc != self.inc {
                    return Err(AuthError::OldIncarnation);
                }
                Channel::Node(n)
            }
            _ => return Err(AuthError::NotForMe),
        };
        let known = self.peers.get(&tx).copied();
        if known.is_some_and(|k| tx_inc < k) {
            return Err(AuthError::OldIncarnation);
        }
        let window = self
            .windows
            .entry((tx, channel))
            .or_insert_with(|| Window::new(tx_inc));
        if window.inc > tx_inc {
            return Err(AuthError::OldIncarnation);
        }
        if window.inc < tx_inc {
            *window = Window::new(tx_inc);
        }
        if !window.fresh(counter) {
            return Err(AuthError::Replayed);
        }
        window.record(counter);
        if known.is_none_or(|k| tx_inc > k) {
            // The peer restarted, or this node has not heard it before: it may hold marks of
            // this node's group counter. (Group datagrams sealed before the jump and still in
            // flight then fall out of the receivers' windows, counted as replayed.)
            let c = self.counters.entry(Channel::Group).or_insert(0);
            *c = c.saturating_add(JUMP);
        }
        self.peers.insert(tx, tx_inc);
        if channel == Channel::Group {
            let mark = self.marks.entry(tx).or_default();
            if mark.inc != tx_inc || counter > mark.counter {
                *mark = Mark {
                    inc: tx_inc,
                    counter: counter.saturating_add(RESERVE),
                };
                self.marks_dirty = true;
            }
        }
        Ok(Opened { packet, tx })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn node(me: NodeId, inc: u32) -> Authenticator {
        Authenticator::new(KEY.to_vec(), me, inc, BTreeMap::new()).unwrap()
    }

    fn sealed(a: &mut Authenticator, dest: Dest, body: &[u8]) -> Vec<u8> {
        let mut b = body.to_vec();
        a.seal(dest, &mut b);
        b
    }

    /// Makes `b` and `a` know each other's incarnations.
    fn meet(a: &mut Authenticator, b: &mut Authenticator) {
        let d = sealed(a, Dest::Multicast, b"hello");
        b.open(&d, None).unwrap();
        let d = sealed(b, Dest::Multicast, b"hello");
        a.open(&d, None).unwrap();
    }

    #[test]
    fn seal_open_replay_and_tamper() {
        let (mut a, mut b) = (node(1, 3), node(2, 1));
        let d1 = sealed(&mut a, Dest::Multicast, b"one");
        let d2 = sealed(&mut a, Dest::Multicast, b"two");
        // Out of order is fine, twice is not.
        assert_eq!(
            b.open(&d2, None).unwrap(),
            Opened {
                packet: b"two",
                tx: 1
            }
        );
        assert_eq!(b.open(&d1, None).unwrap().packet, b"one");
        assert_eq!(b.open(&d1, None), Err(AuthError::Replayed));
        let mut t = d2.clone();
        t[0] ^= 1;
        assert_eq!(b.open(&t, None), Err(AuthError::BadMac));
        let n = t.len();
        t[0] ^= 1;
        t[n - 40] ^= 1; // the counter
        assert_eq!(b.open(&t, None), Err(AuthError::BadMac));
        let mut other =
            Authenticator::new(b"another key here".to_vec(), 3, 1, BTreeMap::new()).unwrap();
        assert_eq!(other.open(&d2, None), Err(AuthError::BadMac));
        assert_eq!(b.open(b"short", None), Err(AuthError::Missing));
        assert!(Authenticator::new(b"short".to_vec(), 1, 1, BTreeMap::new()).is_err());
    }

    #[test]
    fn what_is_sealed_for_one_node_is_refused_by_another() {
        let (mut n1, mut n2, mut n3) = (node(1, 1), node(2, 1), node(3, 1));
        meet(&mut n2, &mut n3);
        meet(&mut n2, &mut n1);
        let token = sealed(&mut n2, Dest::Node(3), b"token");
        assert_eq!(n1.open(&token, None), Err(AuthError::NotForMe));
        assert_eq!(n3.open(&token, None).unwrap().packet, b"token");
        assert_eq!(n3.open(&token, None), Err(AuthError::Replayed));
        // Counters are per destination: node 1's window does not see node 3's gaps.
        let to_1 = sealed(&mut n2, Dest::Node(1), b"t1");
        assert!(n1.open(&to_1, None).is_ok());
    }

    #[test]
    fn a_restarted_receiver_refuses_what_it_took_before() {
        let (mut n1, mut n2) = (node(1, 1), node(2, 1));
        meet(&mut n1, &mut n2);
        let token = sealed(&mut n1, Dest::Node(2), b"token");
        let group: Vec<Vec<u8>> = (0..10)
            .map(|_| sealed(&mut n1, Dest::Multicast, b"m"))
            .collect();
        assert!(n2.open(&token, None).is_ok());
        for g in &group {
            assert!(n2.open(g, None).is_ok());
        }
        let marks = n2.marks_to_persist().expect("new marks").clone();
        assert!(
            n2.marks_to_persist().is_none(),
            "unchanged: nothing to write"
        );
        // Node 2 restarts with its marks: the token was for its old incarnation, and the
        // group datagrams are below its mark.
        let mut n2 = Authenticator::new(KEY.to_vec(), 2, 2, marks).unwrap();
        assert_eq!(n2.open(&token, None), Err(AuthError::OldIncarnation));
        for g in &group {
            assert_eq!(n2.open(g, None), Err(AuthError::Replayed));
        }
        // Node 1's group datagrams are refused until it hears node 2's new incarnation and
        // jumps past the mark; then everything flows again.
        let before = sealed(&mut n1, Dest::Multicast, b"m");
        assert_eq!(n2.open(&before, None), Err(AuthError::Replayed));
        let join = sealed(&mut n2, Dest::Multicast, b"join");
        assert!(n1.open(&join, None).is_ok());
        let after = sealed(&mut n1, Dest::Multicast, b"m");
        assert!(n2.open(&after, None).is_ok());
        let token = sealed(&mut n1, Dest::Node(2), b"token");
        assert!(n2.open(&token, None).is_ok());
    }

    #[test]
    fn a_restarted_transmitter_is_new_and_its_old_datagrams_are_not() {
        let (mut n1, mut n2) = (node(1, 1), node(2, 1));
        let old = sealed(&mut n1, Dest::Multicast, b"old");
        let old2 = sealed(&mut n1, Dest::Multicast, b"old2");
        assert!(n2.open(&old, None).is_ok());
        let mut n1 = node(1, 2);
        let new = sealed(&mut n1, Dest::Multicast, b"new");
        assert!(n2.open(&new, None).is_ok());
        assert_eq!(n2.open(&old2, None), Err(AuthError::OldIncarnation));
    }

    #[test]
    fn a_restarted_window_refuses_everything_up_to_its_mark() {
        let w = Window::seeded(1, 5_000);
        for c in [5_000, 4_999, 5_000 - WINDOW + 1, 5_000 - WINDOW, 1] {
            assert!(!w.fresh(c), "{c}");
        }
        assert!(w.fresh(5_001));
    }

    #[test]
    fn a_datagram_from_the_wrong_source_touches_no_window() {
        let (mut a, mut b) = (node(1, 1), node(2, 1));
        let d = sealed(&mut a, Dest::Multicast, b"m");
        // Sent first from node 3's address: refused, and the real copy still goes through.
        assert_eq!(b.open(&d, Some(3)), Err(AuthError::WrongSender));
        assert!(b.open(&d, Some(1)).is_ok());
        assert_eq!(b.open(&d, Some(1)), Err(AuthError::Replayed));
    }

    #[test]
    fn a_sender_that_never_heard_the_restarted_receiver_still_jumps_past_its_mark() {
        let (mut n1, mut n2) = (node(1, 1), node(2, 1));
        // Node 2 hears node 1; node 1 never hears node 2 (a one-way link, say).
        for _ in 0..3 {
            let d = sealed(&mut n1, Dest::Multicast, b"m");
            assert!(n2.open(&d, None).is_ok());
        }
        let marks = n2.marks_to_persist().expect("marks").clone();
        let mut n2 = Authenticator::new(KEY.to_vec(), 2, 2, marks).unwrap();
        let before = sealed(&mut n1, Dest::Multicast, b"m");
        assert_eq!(n2.open(&before, None), Err(AuthError::Replayed));
        let join = sealed(&mut n2, Dest::Multicast, b"join");
        assert!(n1.open(&join, None).is_ok(), "first contact");
        let after = sealed(&mut n1, Dest::Multicast, b"m");
        assert!(n2.open(&after, None).is_ok());
    }

    #[test]
    fn the_window_slides() {
        let mut w = Window::new(1);
        for c in 1..10_000u64 {
            assert!(w.fresh(c));
            w.record(c);
        }
        assert!(!w.fresh(9_000));
        assert!(!w.fresh(10));
        assert!(w.fresh(12_000));
        w.record(12_000);
        assert!(w.fresh(11_500));
        w.record(11_500);
        assert!(!w.fresh(11_500));
        assert!(!w.fresh(12_000 - WINDOW));
    }
}
