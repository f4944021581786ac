//! Heap allocations on the ring's per-packet path, counted with a counting global allocator.
//!
//! Five [`Ring`]s exchange their datagrams directly (no simulator, no sockets) while every
//! node keeps its send queue topped up with 100-byte agreed messages. After the ring has
//! formed and warmed up, every datagram's way into the ring is wrapped in a count of the
//! allocations it makes, per message type: the copy out of the receive buffer the node
//! makes, then `handle_packet`. Queuing the load and draining events are not counted. Prints allocations per packet (mean and max) and per delivered message.
//!
//! `cargo bench -p ringlab-bench --bench allocs` prints the table; `-- --test` (as CI runs
//! every benchmark) runs a shorter pass and checks that it counted something.

// The counting allocator is a `GlobalAlloc`: an unsafe trait, forwarded unchanged to `System`.
#![allow(unsafe_code)]

use bytes::Bytes;
use ringlab_ring::wire;
use ringlab_ring::{Config, Dest, Event, Guarantee, MembState, NodeId, Ring};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(n as u64, Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Default)]
struct Tally {
    packets: u64,
    allocs: u64,
    bytes: u64,
    max: u64,
}

/// Runs five rings for `packets` handled datagrams after warm-up; returns the tallies per
/// message type and the messages delivered while counting.
fn run(variant: ringlab_ring::Variant, packets: u64) -> (BTreeMap<&'static str, Tally>, u64) {
    let cfg = Config {
        variant,
        ..Config::default()
    };
    let n = 5u32;
    let mut rings: Vec<Ring> = (1..=n)
        .map(|id| Ring::new(id, 1, cfg.clone(), 0, 0).expect("valid config"))
        .collect();
    let mut now = 0u64;
    let mut wire_q: VecDeque<(NodeId, NodeId, Bytes)> = VecDeque::new();
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut delivered = 0u64;
    let mut handled = 0u64;
    let warmup = 20_000u64;
    let payload = [42u8; 100];
    while handled < warmup + packets {
        for r in rings.iter_mut() {
            while let Some(t) = r.poll_transmit() {
                match t.dest {
                    Dest::Multicast => {
                        for to in 1..=n {
                            if to != r.id() {
                                wire_q.push_back((r.id(), to, t.payload.clone()));
                            }
                        }
                    }
                    Dest::Node(to) => wire_q.push_back((r.id(), to, t.payload)),
                }
            }
            while let Some(e) = r.poll_event() {
                if matches!(e, Event::Deliver(_)) && handled >= warmup {
                    delivered += 1;
                }
            }
            if r.state() == MembState::Operational {
                while r.queue_depth().0 < 40 {
                    r.submit(now, &payload, Guarantee::Agreed).expect("room");
                }
            }
        }
        now += 5_000;
        let Some((from, to, data)) = wire_q.pop_front() else {
            let next = rings
                .iter()
                .filter_map(|r| r.poll_timeout())
                .min()
                .expect("timers");
            now = now.max(next);
            for r in rings.iter_mut() {
                r.handle_timeout(now);
            }
            continue;
        };
        let kind = wire::decode_header(&data).map_or("undecodable", |(k, _, _)| k.name());
        let ring = &mut rings[to as usize - 1];
        let before = ALLOCS.load(Relaxed);
        let before_bytes = BYTES.load(Relaxed);
        // As the node does: one copy out of the receive buffer, then the ring keeps it.
        let _ = ring.handle_packet(now, Some(from), Bytes::copy_from_slice(&data));
        let a = ALLOCS.load(Relaxed) - before;
        let b = BYTES.load(Relaxed) - before_bytes;
        handled += 1;
        if handled > warmup {
            let t = tallies.entry(kind).or_default();
            t.packets += 1;
            t.allocs += a;
            t.bytes += b;
            t.max = t.max.max(a);
        }
        for r in rings.iter_mut() {
            if r.poll_timeout().is_some_and(|d| d <= now) {
                r.handle_timeout(now);
            }
        }
    }
    (tallies, delivered)
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let packets = if test { 20_000 } else { 500_000 };
    println!("| variant | packet | handled | allocations / packet | max | bytes / packet |");
    println!("|---|---|---|---|---|---|");
    for variant in [
        ringlab_ring::Variant::Classic,
        ringlab_ring::Variant::Accelerated,
    ] {
        let (tallies, delivered) = run(variant, packets);
        let mut all = Tally::default();
        for (kind, t) in &tallies {
            println!(
                "| {variant:?} | {kind} | {} | {:.3} | {} | {:.0} |",
                t.packets,
                t.allocs as f64 / t.packets as f64,
                t.max,
                t.bytes as f64 / t.packets as f64
            );
            all.packets += t.packets;
            all.allocs += t.allocs;
        }
        println!(
            "| {variant:?} | all ({delivered} messages delivered) | {} | {:.3} | | allocations / delivered message: {:.3} |",
            all.packets,
            all.allocs as f64 / all.packets as f64,
            all.allocs as f64 / delivered.max(1) as f64
        );
        assert!(
            all.packets > 0 && delivered > 0,
            "the allocation benchmark handled no packets or delivered nothing"
        );
    }
}
