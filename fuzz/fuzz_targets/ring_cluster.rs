//! Fuzz target: three rings on a network the input drives. The rings' own datagrams go
//! through it (delivered in any order, dropped, duplicated, a multicast to any subset), time
//! jumps to the next timer or by any amount, nodes submit messages of any size and
//! guarantee, and, when the input says so, a real datagram is altered (bytes flipped,
//! truncated) before it is delivered: structure-aware input that reaches forming, recovery,
//! merges and token loss far more often than random bytes (`ring_input`) do.
//!
//! Checked: nothing panics; and while no datagram was altered (only loss, duplication and
//! reordering, which the protocol is built for), the deliveries agree: one message, one
//! position (ring, seq) on every node, and at one position the messages two nodes delivered
//! are the same, or one node's are a part of the other's (a packed frame whose start one
//! node missed).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use ringlab_ring::{Config, Dest, Event, Guarantee, MsgId, NodeId, Ring, RingId};
use std::collections::BTreeMap;

const NODES: u32 = 3;
const STEPS: usize = 600;
const WIRE_MAX: usize = 256;
const MS: u64 = 1_000_000;

struct Datagram {
    from: NodeId,
    to: Option<NodeId>,
    data: Bytes,
}

#[derive(Default)]
struct Agreement {
    /// Where each message was delivered.
    at: BTreeMap<MsgId, (RingId, u64)>,
    /// What each node delivered at each position.
    by_pos: BTreeMap<(RingId, u64), BTreeMap<NodeId, Vec<MsgId>>>,
}

impl Agreement {
    fn delivered(&mut self, node: NodeId, id: MsgId, ring: RingId, seq: u64) {
        let pos = (ring, seq);
        let first = *self.at.entry(id).or_insert(pos);
        assert_eq!(first, pos, "message {id:?} at two positions");
        self.by_pos
            .entry(pos)
            .or_default()
            .entry(node)
            .or_default()
            .push(id);
    }

    fn check(&self) {
        for (pos, nodes) in &self.by_pos {
            let lists: Vec<&Vec<MsgId>> = nodes.values().collect();
            for a in &lists {
                for b in &lists {
                    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
                    assert!(
                        long.ends_with(short),
                        "different messages at {pos:?}: {nodes:?}"
                    );
                }
            }
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let cfg = Config::default();
    let mut rings: Vec<Ring> = (1..=NODES)
        .map(|id| Ring::new(id, 1, cfg.clone(), 0, 0).expect("valid config"))
        .collect();
    let mut incs = vec![1u32; NODES as usize];
    let mut now = 0u64;
    let mut wire: Vec<Datagram> = Vec::new();
    let mut altered = false;
    let mut agreement = Agreement::default();
    for _ in 0..STEPS {
        for (i, r) in rings.iter_mut().enumerate() {
            let me = i as NodeId + 1;
            while let Some(t) = r.poll_transmit() {
                let to = match t.dest {
                    Dest::Node(n) => Some(n),
                    Dest::Multicast => None,
                };
                if wire.len() == WIRE_MAX {
                    wire.remove(0);
                }
                wire.push(Datagram {
                    from: me,
                    to,
                    data: t.payload,
                });
            }
            while let Some(e) = r.poll_event() {
                if let Event::Deliver(d) = e {
                    agreement.delivered(me, d.id, d.ring_id, d.seq);
                }
            }
        }
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=9u8)? {
            0..=4 if !wire.is_empty() => {
                // Deliver one datagram (kept on the wire if duplicated), to its destination
                // or, for a multicast, to any subset of the others.
                let i = u.choose_index(wire.len())?;
                let dup = u.ratio(1u8, 16)?;
                let d = if dup { &wire[i] } else { &wire.swap_remove(i) };
                let (from, data) = (d.from, d.data.clone());
                let targets: Vec<NodeId> = match d.to {
                    Some(n) => vec![n],
                    None => (1..=NODES)
                        .filter(|&n| n != from)
                        .filter(|_| u.ratio(7u8, 8).unwrap_or(true))
                        .collect(),
                };
                for n in targets {
                    let _ = rings[(n - 1) as usize].handle_packet(now, Some(from), data.clone());
                }
            }
            5 | 6 => {
                // Time: to the next timer, or by any amount up to 3 s.
                let next = rings.iter().filter_map(Ring::poll_timeout).min();
                now = match next {
                    Some(t) if t > now && u.arbitrary()? => t,
                    _ => now + u.int_in_range(1..=3000u64)? * MS,
                };
                for r in &mut rings {
                    r.handle_timeout(now);
                }
            }
            7 => {
                let n = u.int_in_range(1..=NODES)?;
                let len = u.int_in_range(0..=3000usize)?;
                let g = if u.arbitrary()? {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                };
                let _ = rings[(n - 1) as usize].submit(now, &vec![n as u8; len], g);
            }
            8 if !wire.is_empty() => {
                // An altered copy of a real datagram, from its true source.
                let d = &wire[u.choose_index(wire.len())?];
                let mut b = d.data.to_vec();
                for _ in 0..u.int_in_range(1..=4u8)? {
                    if b.is_empty() {
                        break;
                    }
                    let i = u.choose_index(b.len())?;
                    b[i] ^= u.int_in_range(1..=255u8)?;
                }
                if u.ratio(1u8, 4)? {
                    b.truncate(u.choose_index(b.len() + 1)?);
                }
                let to = d.to.unwrap_or(u.int_in_range(1..=NODES)?);
                altered = true;
                let _ = rings[(to - 1) as usize].handle_packet(now, Some(d.from), Bytes::from(b));
            }
            _ => {
                // A node crashes and comes back as a new incarnation, its ring seq kept.
                let n = u.int_in_range(1..=NODES)?;
                let i = (n - 1) as usize;
                incs[i] += 1;
                let seq = rings[i].stable_ring_seq();
                rings[i] = Ring::new(n, incs[i], cfg.clone(), seq, now).expect("valid config");
            }
        }
    }
    if !altered {
        agreement.check();
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
