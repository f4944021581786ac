//! Fuzz target: opening authenticated datagrams (`ringlab_net::auth::Authenticator::open`,
//! today's HMAC-SHA256 trailer). Raw input never opens (no one without the key forges a MAC)
//! and never panics; then the input drives a sequence of datagrams under the key, sealed by
//! the real sealer or built with a chosen transmitter and counter, each also altered by one
//! bit: a genuine datagram opens to its packet and transmitter exactly when a model of the
//! replay window (per transmitter: the highest counter, and the counters seen within 1024 of
//! it) says it is new; an altered one never opens.
//!
//! Written against today's API, in this one file: when the envelope is replaced, change
//! `open`, `seal`, `forge` and `WINDOW` below.
#![no_main]
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use ringlab_net::auth::Authenticator;
use std::collections::{BTreeSet, HashMap};

const KEY: &[u8] = b"ringlab fuzz key, 32 bytes long!";
const WINDOW: u64 = 1024;
const STEPS: usize = 48;

/// The packet and transmitter inside, or `None` when it does not open.
fn open(rx: &mut Authenticator, d: &[u8]) -> Option<(Vec<u8>, u32)> {
    rx.open(d).ok().map(|(p, n)| (p.to_vec(), n))
}

fn seal(tx: &mut Authenticator, packet: &[u8]) -> Vec<u8> {
    let mut b = packet.to_vec();
    tx.seal(&mut b);
    b
}

/// A datagram from `node` with `counter`, as a holder of the key would build it.
fn forge(packet: &[u8], node: u32, counter: u64) -> Vec<u8> {
    let mut b = packet.to_vec();
    b.extend_from_slice(&node.to_be_bytes());
    b.extend_from_slice(&counter.to_be_bytes());
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    m.update(&b);
    b.extend_from_slice(&m.finalize().into_bytes());
    b
}

#[derive(Default)]
struct Model {
    top: u64,
    seen: BTreeSet<u64>,
}

impl Model {
    fn accept(&mut self, c: u64) -> bool {
        if c <= self.top && (self.top - c >= WINDOW || self.seen.contains(&c)) {
            return false;
        }
        self.top = self.top.max(c);
        self.seen.insert(c);
        true
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut rx = Authenticator::new(KEY.to_vec(), 9, 1);
    let mut models: HashMap<u32, Model> = HashMap::new();
    // Sealers: node, incarnation, and the counter of its last datagram.
    let mut sealers: Vec<(Authenticator, u32, u64)> = Vec::new();
    // A few dozen datagrams per input: each costs three MACs.
    for _ in 0..STEPS {
        if u.is_empty() {
            break;
        }
        let n = u.int_in_range(0..=64usize)?;
        let packet = u.bytes(n.min(u.len()))?.to_vec();
        let (d, node, counter) = match u.int_in_range(0..=3u8)? {
            0 => {
                // The real sealer of node 1-4 at an incarnation the input picks.
                let node = u.int_in_range(1..=4u32)?;
                if !sealers.iter().any(|s| s.1 == node) {
                    let inc = u.int_in_range(0..=3u32)?;
                    sealers.push((
                        Authenticator::new(KEY.to_vec(), node, inc),
                        node,
                        (inc as u64) << 32,
                    ));
                }
                let s = sealers.iter_mut().find(|s| s.1 == node).unwrap();
                s.2 += 1;
                (seal(&mut s.0, &packet), node, s.2)
            }
            1 => {
                // Near the transmitter's highest counter: slides, duplicates, the window's edge.
                let node = u.int_in_range(1..=4u32)?;
                let top = models.get(&node).map_or(0, |m| m.top);
                let delta = u.int_in_range(-1100i64..=1100)?;
                let c = top.saturating_add_signed(delta);
                (forge(&packet, node, c), node, c)
            }
            2 => {
                let node = u.arbitrary()?;
                let c = u.arbitrary()?;
                (forge(&packet, node, c), node, c)
            }
            _ => {
                // Replay one of the counters seen (or the one right after the top).
                let node = u.int_in_range(1..=4u32)?;
                let m = models.entry(node).or_default();
                let c = match m.seen.iter().nth(u.choose_index(m.seen.len() + 1)?) {
                    Some(c) => *c,
                    None => m.top.saturating_add(1),
                };
                (forge(&packet, node, c), node, c)
            }
        };
        // One bit altered anywhere: never opens, and leaves the window as it was.
        let mut bad = d.clone();
        let bit = u.choose_index(bad.len() * 8)?;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(open(&mut rx, &bad), None, "altered bit {bit}");
        let fresh = models.entry(node).or_default().accept(counter);
        let got = open(&mut rx, &d);
        assert_eq!(
            got,
            fresh.then(|| (packet, node)),
            "node {node} counter {counter}"
        );
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rx = Authenticator::new(KEY.to_vec(), 9, 1);
    assert_eq!(open(&mut rx, data), None);
    let _ = run(&mut Unstructured::new(data));
});
