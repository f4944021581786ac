//! Fuzz target: the chunk transfer's transport datagram (`transport::Datagram::decode`) and
//! the transport that takes it (`Transport::handle_datagram`).
//!
//! - The bytes: decoding never panics, and what decodes re-encodes to the same bytes; fed
//!   to a fresh transport that has a message in flight and to a long-lived one (per
//!   thread), then their timers run and their outputs drained, they never panic.
//! - Datagrams built from the same bytes (with `arbitrary`), so the fuzzer reaches
//!   reassembly, acknowledgement and retransmission without guessing a whole header:
//!   fragments of a few messages with near-consistent geometry (sometimes off by a little),
//!   acks of the long-lived transport's own messages, and between them its own sends, time
//!   passing and forgotten peers. A built datagram that decodes decodes to itself.
//!
//! Everything a transport sends decodes, and what the long-lived one holds stays within its
//! bounds.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use ringlab_ring::NodeId;
use ringlab_sync::store::transport::{
    is_transfer_datagram, Datagram, MsgId, Transport, TransportConfig, FRAGMENT_HEADER_LEN,
    MAX_DATAGRAM,
};
use std::cell::RefCell;

/// The nonce of both transports (an ack must carry it).
const NONCE: u64 = 0x5254_0000_0000_0001;

/// Nonces the built fragments' senders use (a change is a restart).
const PEER_NONCES: [u64; 2] = [0x1111, 0x2222];

/// Small bounds, so the long-lived transport reaches them.
fn small() -> TransportConfig {
    TransportConfig {
        datagram_bytes: 128,
        window: 8,
        max_message: 4096,
        max_partial: 3,
        max_peers: 3,
        give_up_ns: 200_000_000,
        ..TransportConfig::default()
    }
}

/// The most the long-lived transport may hold: 3 peers × 3 partials × 4096, and what it
/// sends (it queues a message of at most 4096 only while it holds at most 3 × 4096).
const HELD_MAX: usize = 3 * 3 * 4096 + 4 * 4096;

struct LongLived {
    t: Transport,
    now: u64,
    round: u64,
    /// Its own messages, the latest last (what built acks acknowledge).
    sent: Vec<(NodeId, MsgId)>,
}

impl LongLived {
    fn check(&mut self) {
        drain(&mut self.t, self.now, 128);
        assert!(self.t.held_bytes() <= HELD_MAX, "{}", self.t.held_bytes());
    }

    /// Sends a message, unless it holds more than 3 × 4096 already (so what it sends stays
    /// below 4 × 4096).
    fn send(&mut self, to: NodeId, len: usize) {
        if self.t.held_bytes() > 3 * 4096 {
            return;
        }
        let msg = Bytes::from(vec![self.round as u8; len.min(4096)]);
        if let Ok(id) = self.t.send(self.now, to, msg) {
            self.sent.push((to, id));
            if self.sent.len() > 16 {
                self.sent.remove(0);
            }
        }
    }
}

thread_local! {
    static LONG: RefCell<LongLived> = RefCell::new(LongLived {
        t: Transport::new(1, NONCE, small()),
        now: 0,
        round: 0,
        sent: Vec::new(),
    });
}

/// Drains what it sends (checking it) and its events.
fn drain(t: &mut Transport, now: u64, datagram_bytes: usize) {
    for _ in 0..4096 {
        let Some((_, d)) = t.poll_transmit(now) else {
            break;
        };
        assert!(is_transfer_datagram(&d));
        assert!(d.len() <= datagram_bytes.max(64));
        let decoded = Datagram::decode(&d).expect("what it sends decodes");
        assert_eq!(decoded.encode(), &d[..]);
    }
    while t.poll_event().is_some() {}
}

/// A fragment of a small message, its geometry right or off by a little.
fn fragment(u: &mut Unstructured<'_>) -> Result<Datagram> {
    let nonce = match u.int_in_range(0..=9u8)? {
        0 => u.arbitrary()?,
        1..=3 => PEER_NONCES[1],
        _ => PEER_NONCES[0],
    };
    let seq = u.int_in_range(0..=7u64)?;
    let size = [96usize, 96, 100, 1368][u.int_in_range(0..=3usize)?];
    let count = u.int_in_range(1..=6u32)?;
    let last = u.int_in_range(1..=size)?;
    let mut total = (count as usize - 1) * size + last;
    let mut frag_no = u.int_in_range(0..=count - 1)?;
    let mut len = if frag_no + 1 == count { last } else { size };
    match u.int_in_range(0..=15u8)? {
        0 => {
            total = total
                .saturating_add(u.int_in_range(0..=3usize)?)
                .saturating_sub(1)
        }
        1 => {
            len = len
                .saturating_add(u.int_in_range(0..=3usize)?)
                .saturating_sub(1)
        }
        2 => frag_no = count,
        3 => total = 4096 + u.int_in_range(0..=200usize)?,
        _ => {}
    }
    let byte: u8 = u.arbitrary()?;
    Ok(Datagram::Fragment {
        id: MsgId { nonce, seq },
        frag_no,
        frag_count: count,
        total_len: total as u32,
        payload: Bytes::from(vec![byte; len.min(MAX_DATAGRAM - FRAGMENT_HEADER_LEN)]),
    })
}

/// An ack of one of the long-lived transport's messages (or of something else).
fn ack(u: &mut Unstructured<'_>, sent: &[(NodeId, MsgId)]) -> Result<(NodeId, Datagram)> {
    let (to, mut id) = match sent.len() {
        0 => (
            2,
            MsgId {
                nonce: NONCE,
                seq: 0,
            },
        ),
        n => sent[u.int_in_range(0..=n - 1)?],
    };
    if u.ratio(1, 10)? {
        id.nonce = u.arbitrary()?;
    }
    let cumulative = u.int_in_range(0..=40u32)?;
    let sack =
        u.arbitrary::<u64>()? & [0, 0xff, 0xffff_ffff, u64::MAX][u.int_in_range(0..=3usize)?];
    Ok((
        to,
        Datagram::Ack {
            id,
            cumulative,
            sack,
            complete: u.ratio(1, 4)?,
        },
    ))
}

/// Runs operations built from `data` on the long-lived transport.
fn built(l: &mut LongLived, data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=9u8)? {
            0..=4 => {
                let d = fragment(&mut u)?;
                let b = d.encode();
                if let Ok(back) = Datagram::decode(&b) {
                    assert_eq!(back, d);
                }
                let from = 2 + u.int_in_range(0..=3u32)?;
                let _ = l.t.handle_datagram(l.now, from, &b);
            }
            5 | 6 => {
                let (from, d) = ack(&mut u, &l.sent)?;
                let b = d.encode();
                assert_eq!(Datagram::decode(&b), Ok(d));
                let _ = l.t.handle_datagram(l.now, from, &b);
            }
            7 => {
                l.now += u.int_in_range(0..=300u64)? * 1_000_000;
                if l.t.poll_timeout().is_some_and(|at| at <= l.now) {
                    l.t.handle_timeout(l.now);
                }
            }
            8 => {
                let to = 2 + u.int_in_range(0..=2u32)?;
                let len = u.int_in_range(0..=4096usize)?;
                l.send(to, len);
            }
            _ => l.t.forget_peer(2 + u.int_in_range(0..=3u32)?),
        }
        l.check();
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Datagram::decode(data) {
        assert_eq!(d.encode(), data);
        assert_eq!(d.encoded_len(), data.len());
        assert!(is_transfer_datagram(data));
    }

    // A fresh transport (default knobs but a 64 KiB max_message, so a fragment's buffer
    // stays small) with a message of three fragments in flight to node 2.
    let fresh = TransportConfig {
        max_message: 64 * 1024,
        ..TransportConfig::default()
    };
    let mut t = Transport::new(1, NONCE, fresh);
    let _ = t.send(0, 2, Bytes::from_static(&[7; 3000]));
    drain(&mut t, 0, 1400);
    let r = t.handle_datagram(1_000, 2, data);
    assert_eq!(r.is_err(), t.stats().malformed == 1);
    drain(&mut t, 1_000, 1400);
    if let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        drain(&mut t, at, 1400);
    }
    t.handle_timeout(u64::MAX / 2);
    drain(&mut t, u64::MAX / 2, 1400);

    LONG.with(|l| {
        let mut l = l.borrow_mut();
        let l = &mut *l;
        l.round += 1;
        // The bytes as they are, from a peer and after a time step given by their length.
        l.now += 1 + (data.len() as u64 % 7) * 3_000_000;
        let from = 2 + (data.len() % 3) as u32;
        if l.t.is_idle() {
            let len = (l.round as usize * 131) % 4096;
            l.send(from, len);
        }
        l.check();
        let _ = l.t.handle_datagram(l.now, from, data);
        if l.t.poll_timeout().is_some_and(|at| at <= l.now) {
            l.t.handle_timeout(l.now);
        }
        l.check();
        // Then datagrams and operations built from the same bytes.
        let _ = built(l, data);
    });
});
