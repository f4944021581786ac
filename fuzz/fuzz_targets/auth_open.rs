//! Fuzz target: opening authenticated datagrams (`ringlab_ring::auth::Authenticator::open`,
//! envelope version 2). Raw input never opens (no one without the key forges a MAC) and never
//! panics. Then the input drives one receiver (node 9) through a sequence of steps: datagrams
//! under the key, sealed by real transmitters (nodes 1-4, which may restart) or built with
//! any trailer fields, each given with the right, a wrong or no network source and each also
//! sent altered by one bit; receiver restarts from the marks it asked to keep; lost mark
//! writes. A model of the rules in `auth.rs` says what every open must return: the packet and
//! transmitter, or exactly which refusal; an altered datagram is always `BadMac` and changes
//! nothing; and the marks the receiver asks to keep are exactly the model's.
//!
//! Written against today's API, in this one file: when the envelope changes, change `forge`,
//! `DOMAIN` and the `Model` below.
#![no_main]
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use ringlab_ring::auth::{AuthError, Authenticator, Mark, RESERVE, TRAILER_LEN, WINDOW};
use ringlab_ring::event::Dest;
use std::collections::{BTreeMap, BTreeSet};

const KEY: &[u8] = b"ringlab fuzz key, 32 bytes long!";
const DOMAIN: &[u8] = b"ringlab-auth-2";
const ME: u32 = 9;
const STEPS: usize = 48;

/// The trailer fields, as a holder of the key writes them.
#[derive(Clone, Copy, Debug)]
struct Fields {
    tx: u32,
    tx_inc: u32,
    rx: u32,
    rx_inc: u32,
    counter: u64,
}

impl Fields {
    fn read(d: &[u8]) -> Self {
        let f = &d[d.len() - TRAILER_LEN..];
        let u = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().unwrap());
        Self {
            tx: u(0),
            tx_inc: u(4),
            rx: u(8),
            rx_inc: u(12),
            counter: u64::from_be_bytes(f[16..24].try_into().unwrap()),
        }
    }
}

/// A datagram with any trailer fields, MAC'd under the key.
fn forge(packet: &[u8], f: Fields) -> Vec<u8> {
    let mut b = packet.to_vec();
    b.extend_from_slice(&f.tx.to_be_bytes());
    b.extend_from_slice(&f.tx_inc.to_be_bytes());
    b.extend_from_slice(&f.rx.to_be_bytes());
    b.extend_from_slice(&f.rx_inc.to_be_bytes());
    b.extend_from_slice(&f.counter.to_be_bytes());
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    m.update(DOMAIN);
    m.update(&b);
    b.extend_from_slice(&m.finalize().into_bytes());
    b
}

/// One replay window: counters above `top` are new; below it, those within `WINDOW`, above
/// `floor` (a restart's mark) and not seen.
#[derive(Clone, Debug)]
struct Win {
    inc: u32,
    top: u64,
    floor: Option<u64>,
    seen: BTreeSet<u64>,
}

impl Win {
    fn new(inc: u32) -> Self {
        Self {
            inc,
            top: 0,
            floor: None,
            seen: BTreeSet::new(),
        }
    }
    fn fresh(&self, c: u64) -> bool {
        c > self.top
            || (self.top - c < WINDOW
                && self.floor.is_none_or(|f| c > f)
                && !self.seen.contains(&c))
    }
    fn record(&mut self, c: u64) {
        self.top = self.top.max(c);
        self.seen.insert(c);
    }
}

/// The receiver as `auth.rs` documents it.
#[derive(Default)]
struct Model {
    inc: u32,
    peers: BTreeMap<u32, u32>,
    /// Key: transmitter, and `None` for the group channel or `Some(ME)` for this node.
    windows: BTreeMap<(u32, Option<u32>), Win>,
    marks: BTreeMap<u32, Mark>,
    marks_dirty: bool,
}

impl Model {
    fn restarted(marks: BTreeMap<u32, Mark>, inc: u32) -> Self {
        Self {
            inc,
            peers: marks.iter().map(|(&t, m)| (t, m.inc)).collect(),
            windows: marks
                .iter()
                .map(|(&t, m)| {
                    let w = Win {
                        inc: m.inc,
                        top: m.counter,
                        floor: Some(m.counter),
                        seen: BTreeSet::new(),
                    };
                    ((t, None), w)
                })
                .collect(),
            marks,
            marks_dirty: false,
        }
    }

    fn open(&mut self, f: Fields, from: Option<u32>) -> std::result::Result<u32, AuthError> {
        if from.is_some_and(|s| s != f.tx) {
            return Err(AuthError::WrongSender);
        }
        let channel = match f.rx {
            0 => None,
            ME if f.rx_inc != self.inc => return Err(AuthError::OldIncarnation),
            ME => Some(ME),
            _ => return Err(AuthError::NotForMe),
        };
        if self.peers.get(&f.tx).is_some_and(|&k| f.tx_inc < k) {
            return Err(AuthError::OldIncarnation);
        }
        let w = self
            .windows
            .entry((f.tx, channel))
            .or_insert_with(|| Win::new(f.tx_inc));
        if w.inc > f.tx_inc {
            return Err(AuthError::OldIncarnation);
        }
        if w.inc < f.tx_inc {
            *w = Win::new(f.tx_inc);
        }
        if !w.fresh(f.counter) {
            return Err(AuthError::Replayed);
        }
        w.record(f.counter);
        self.peers.insert(f.tx, f.tx_inc);
        if channel.is_none() {
            let m = self.marks.entry(f.tx).or_default();
            if m.inc != f.tx_inc || f.counter > m.counter {
                *m = Mark {
                    inc: f.tx_inc,
                    counter: f.counter.saturating_add(RESERVE),
                };
                self.marks_dirty = true;
            }
        }
        Ok(f.tx)
    }

    /// The top counter of a window, for picking counters near it.
    fn top(&self, tx: u32, group: bool) -> u64 {
        let ch = if group { None } else { Some(ME) };
        self.windows.get(&(tx, ch)).map_or(0, |w| w.top)
    }
}

fn receiver(inc: u32, marks: BTreeMap<u32, Mark>) -> Authenticator {
    Authenticator::new(KEY.to_vec(), ME, inc, marks).unwrap()
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut rx = receiver(1, BTreeMap::new());
    let mut model = Model {
        inc: 1,
        ..Model::default()
    };
    // Real transmitters: node 1-4 and its authenticator.
    let mut sealers: BTreeMap<u32, Authenticator> = BTreeMap::new();
    for _ in 0..STEPS {
        if u.is_empty() {
            break;
        }
        let n = u.int_in_range(0..=64usize)?;
        let packet = u.bytes(n.min(u.len()))?.to_vec();
        let d = match u.int_in_range(0..=7u8)? {
            0 | 1 => {
                // A real transmitter seals, for the group or for node 9 (for the group
                // when it has not heard node 9's incarnation yet).
                let node = u.int_in_range(1..=4u32)?;
                let restart = u.ratio(1u8, 8)?;
                if restart || !sealers.contains_key(&node) {
                    let inc = u.int_in_range(0..=4u32)?;
                    sealers.insert(
                        node,
                        Authenticator::new(KEY.to_vec(), node, inc, BTreeMap::new()).unwrap(),
                    );
                }
                let s = sealers.get_mut(&node).unwrap();
                let dest = if u.arbitrary()? {
                    Dest::Multicast
                } else {
                    Dest::Node(ME)
                };
                let mut b = packet.clone();
                s.seal(dest, &mut b);
                b
            }
            2 => {
                // Near a window's top: slides, duplicates, the window's edge.
                let tx = u.int_in_range(1..=4u32)?;
                let group = u.arbitrary()?;
                let delta = u.int_in_range(-(WINDOW as i64 + 64)..=(WINDOW as i64 + 64))?;
                let counter = model.top(tx, group).saturating_add_signed(delta);
                let known = model.peers.get(&tx).copied().unwrap_or(0);
                let tx_inc = known.saturating_add(u.int_in_range(0..=1u32)?);
                let (rx_id, rx_inc) = if group { (0, 0) } else { (ME, model.inc) };
                forge(
                    &packet,
                    Fields {
                        tx,
                        tx_inc,
                        rx: rx_id,
                        rx_inc,
                        counter,
                    },
                )
            }
            3 => {
                // Any trailer at all.
                let (any_rx, any_inc): (u32, u32) = (u.arbitrary()?, u.arbitrary()?);
                let f = Fields {
                    tx: u.arbitrary()?,
                    tx_inc: u.arbitrary()?,
                    rx: *u.choose(&[0, ME, any_rx])?,
                    rx_inc: *u.choose(&[0, model.inc, model.inc.wrapping_sub(1), any_inc])?,
                    counter: u.arbitrary()?,
                };
                forge(&packet, f)
            }
            4 => {
                // The receiver greets a transmitter, which learns its incarnation.
                let i = u.choose_index(sealers.len() + 1)?;
                if let Some(s) = sealers.values_mut().nth(i) {
                    let mut b = b"hello".to_vec();
                    rx.seal(Dest::Multicast, &mut b);
                    let _ = s.open(&b, Some(ME));
                }
                continue;
            }
            5 => {
                // The receiver restarts from the marks it asked to keep.
                let inc = model.inc + 1;
                rx = receiver(inc, model.marks.clone());
                model = Model::restarted(model.marks.clone(), inc);
                continue;
            }
            6 => {
                // The last mark write failed: the marks are asked for again, all of them.
                rx.marks_unsaved();
                assert_eq!(rx.marks_to_persist(), Some(&model.marks));
                continue;
            }
            _ => {
                // A replay of a counter one window has seen (or just above its top).
                let Some(((tx, ch), w)) = model
                    .windows
                    .iter()
                    .nth(u.choose_index(model.windows.len() + 1)?)
                else {
                    continue;
                };
                let counter = match w.seen.iter().nth(u.choose_index(w.seen.len() + 1)?) {
                    Some(&c) => c,
                    None => w.top.saturating_add(1),
                };
                let (rx_id, rx_inc) = if ch.is_some() {
                    (ME, model.inc)
                } else {
                    (0, 0)
                };
                forge(
                    &packet,
                    Fields {
                        tx: *tx,
                        tx_inc: w.inc,
                        rx: rx_id,
                        rx_inc,
                        counter,
                    },
                )
            }
        };
        let f = Fields::read(&d);
        let from = match u.int_in_range(0..=2u8)? {
            0 => None,
            1 => Some(f.tx),
            _ => Some(u.arbitrary()?),
        };
        // One bit altered anywhere: refused for its MAC, and nothing changes.
        let mut bad = d.clone();
        let bit = u.choose_index(bad.len() * 8)?;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            rx.open(&bad, from),
            Err(AuthError::BadMac),
            "altered bit {bit}"
        );
        let want = model.open(f, from).map(|tx| (packet.clone(), tx));
        let got = rx.open(&d, from).map(|o| (o.packet.to_vec(), o.tx));
        assert_eq!(got, want, "{f:?} from {from:?}");
        // The marks to keep are the model's, asked for exactly when they changed.
        let asked = rx.marks_to_persist().cloned();
        if std::mem::take(&mut model.marks_dirty) {
            assert_eq!(asked.as_ref(), Some(&model.marks));
        } else {
            assert_eq!(asked, None);
        }
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rx = receiver(1, BTreeMap::new());
    assert!(matches!(
        rx.open(data, None),
        Err(AuthError::Missing | AuthError::BadMac)
    ));
    let _ = run(&mut Unstructured::new(data));
});
