//! Datagram authentication: an HMAC-SHA256 trailer under a shared cluster key, with replay
//! protection.
//!
//! With a key, every datagram is `packet || transmitter u32 || counter u64 || mac[32]`,
//! where `mac = HMAC-SHA256(key, packet || transmitter || counter)`. The counter is
//! `incarnation << 32 | n`, so it grows across restarts too; a receiver keeps, per
//! transmitter, the highest counter seen and a 1024-wide window below it, and drops a
//! datagram whose counter it has seen or that is older than the window.
//!
//! What this protects against: anyone without the key forging or altering datagrams
//! (membership, tokens, messages), and replays of captured datagrams, including across a
//! receiver's view of a sender's restart. What it does not: confidentiality (nothing is
//! encrypted), a member that holds the key and misbehaves, floods that cost verification
//! time, a node restarted with a lower incarnation (the state file must survive), and
//! traffic analysis.

use hmac::{Hmac, Mac};
use ringlab_ring::NodeId;
use sha2::Sha256;
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// Bytes the trailer adds.
pub const TRAILER_LEN: usize = 4 + 8 + 32;
const WINDOW: u64 = 1024;

/// Why a datagram failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Too short to carry a trailer.
    #[error("no authentication trailer")]
    Missing,
    /// The MAC does not verify.
    #[error("bad MAC")]
    BadMac,
    /// Seen before, or older than the replay window.
    #[error("replayed")]
    Replayed,
}

#[derive(Default)]
struct Window {
    top: u64,
    seen: [u64; (WINDOW / 64) as usize],
}

impl Window {
    /// Records `c`; returns false if it was seen or is too old.
    fn accept(&mut self, c: u64) -> bool {
        if c > self.top {
            let shift = c - self.top;
            if shift >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for _ in 0..shift {
                    // Slide by one: clear the bit that the new top reuses.
                    let top = self.top + 1;
                    self.top = top;
                    let bit = top % WINDOW;
                    self.seen[(bit / 64) as usize] &= !(1 << (bit % 64));
                }
            }
            self.top = c;
            let bit = c % WINDOW;
            self.seen[(bit / 64) as usize] |= 1 << (bit % 64);
            return true;
        }
        if self.top - c >= WINDOW {
            return false;
        }
        let bit = c % WINDOW;
        let (w, b) = ((bit / 64) as usize, bit % 64);
        if self.seen[w] & (1 << b) != 0 {
            return false;
        }
        self.seen[w] |= 1 << b;
        true
    }
}

/// Signs outgoing datagrams and verifies incoming ones.
pub struct Authenticator {
    key: Vec<u8>,
    me: NodeId,
    next: u64,
    windows: HashMap<NodeId, Window>,
}

impl Authenticator {
    /// Creates an authenticator for node `me` at `incarnation`.
    pub fn new(key: Vec<u8>, me: NodeId, incarnation: u32) -> Self {
        Self {
            key,
            me,
            next: (incarnation as u64) << 32,
            windows: HashMap::new(),
        }
    }

    fn mac(&self, packet: &[u8], tx: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(packet);
        m.update(tx);
        m
    }

    /// Appends the trailer to `buf`, which holds one packet.
    pub fn seal(&mut self, buf: &mut Vec<u8>) {
        self.next += 1;
        let mut tx = [0u8; 12];
        tx[..4].copy_from_slice(&self.me.to_be_bytes());
        tx[4..].copy_from_slice(&self.next.to_be_bytes());
        let tag = self.mac(buf, &tx).finalize().into_bytes();
        buf.extend_from_slice(&tx);
        buf.extend_from_slice(&tag);
    }

    /// Verifies a datagram; returns the packet inside and its transmitter.
    pub fn open<'a>(&mut self, datagram: &'a [u8]) -> Result<(&'a [u8], NodeId), AuthError> {
        if datagram.len() < TRAILER_LEN {
            return Err(AuthError::Missing);
        }
        let (packet, rest) = datagram.split_at(datagram.len() - TRAILER_LEN);
        let (tx, tag) = rest.split_at(12);
        self.mac(packet, tx)
            .verify_slice(tag)
            .map_err(|_| AuthError::BadMac)?;
        let node = NodeId::from_be_bytes([tx[0], tx[1], tx[2], tx[3]]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&tx[4..]);
        let counter = u64::from_be_bytes(c);
        if !self.windows.entry(node).or_default().accept(counter) {
            return Err(AuthError::Replayed);
        }
        Ok((packet, node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_replay() {
        let mut a = Authenticator::new(b"0123456789abcdef".to_vec(), 1, 3);
        let mut b = Authenticator::new(b"0123456789abcdef".to_vec(), 2, 1);
        let mut d1 = b"hello".to_vec();
        a.seal(&mut d1);
        let mut d2 = b"world".to_vec();
        a.seal(&mut d2);
        // Out of order is fine, twice is not.
        assert_eq!(b.open(&d2).unwrap(), (&b"world"[..], 1));
        assert_eq!(b.open(&d1).unwrap(), (&b"hello"[..], 1));
        assert_eq!(b.open(&d1), Err(AuthError::Replayed));
        // Tampering and the wrong key fail.
        let mut t = d2.clone();
        t[0] ^= 1;
        assert_eq!(b.open(&t), Err(AuthError::BadMac));
        let mut c = Authenticator::new(b"another key here".to_vec(), 3, 1);
        assert_eq!(c.open(&d2), Err(AuthError::BadMac));
        assert_eq!(b.open(b"short"), Err(AuthError::Missing));
        // A restarted sender (higher incarnation) is accepted; its old datagrams are not.
        let mut a2 = Authenticator::new(b"0123456789abcdef".to_vec(), 1, 4);
        let mut d3 = b"again".to_vec();
        a2.seal(&mut d3);
        assert!(b.open(&d3).is_ok());
        assert_eq!(b.open(&d2), Err(AuthError::Replayed));
    }

    #[test]
    fn the_window_slides() {
        let mut w = Window::default();
        for c in 1..5000u64 {
            assert!(w.accept(c));
        }
        assert!(!w.accept(4000));
        assert!(!w.accept(10));
        assert!(w.accept(6000));
        assert!(w.accept(5500));
        assert!(!w.accept(5500));
    }
}
