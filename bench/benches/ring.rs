//! Benchmarks of the ring core: the codec per message type, packing, and a whole simulated
//! 5-node ring without loss carrying 100-byte messages (deliveries per second of the
//! cluster, all five nodes' deliveries counted).
//!
//! `cargo bench -p ringlab-bench` measures; `cargo bench -p ringlab-bench -- --test` runs each
//! once (CI does, so the benchmarks never rot).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringlab_ring::pack::{decode_frame, SendQueue};
use ringlab_ring::wire::{
    self, CommitToken, Encapsulated, Join, Leave, MembEntry, MergeDetect, Message, Packet, RingId,
    Token,
};
use ringlab_ring::{Config, Guarantee};
use ringlab_sim::{NetConfig, Sim};

fn packets() -> Vec<(&'static str, Packet)> {
    let ring_id = RingId { rep: 1, seq: 1_000 };
    let members: Vec<u32> = (1..=5).collect();
    vec![
        (
            "token",
            Message::Token(Token {
                token_seq: 123_456,
                seq: 99_999,
                aru: 99_990,
                aru_addr: 3,
                fcc: 40,
                backlog: 12,
                retrans_flg: false,
                rtr: vec![99_991, 99_993, 99_995],
            }),
        ),
        (
            "mcast_1338",
            Message::Mcast(wire::Mcast {
                seq: 99_999,
                safe: false,
                encapsulated: None,
                payload: Bytes::from(vec![7u8; 1338]),
            }),
        ),
        (
            "mcast_encapsulated",
            Message::Mcast(wire::Mcast {
                seq: 17,
                safe: true,
                encapsulated: Some(Encapsulated {
                    ring_id: RingId { rep: 1, seq: 996 },
                    seq: 5_000,
                    origin: 4,
                    safe: true,
                }),
                payload: Bytes::from(vec![7u8; 1313]),
            }),
        ),
        (
            "merge_detect",
            Message::MergeDetect(MergeDetect {
                members: members.clone(),
                unheard: vec![],
            }),
        ),
        (
            "join",
            Message::Join(Join {
                ring_seq: 1_000,
                proc_set: members.clone(),
                fail_set: vec![4],
                unheard: vec![],
                unheard_epoch: 0,
            }),
        ),
        (
            "commit_token",
            Message::CommitToken(CommitToken {
                token_seq: 7,
                members: members.clone(),
                entries: vec![
                    MembEntry {
                        old_ring: ring_id,
                        aru: 99_990,
                        high_delivered: 99_980,
                        received_flg: true,
                    };
                    5
                ],
            }),
        ),
        ("token_hold_cancel", Message::TokenHoldCancel),
        ("leave", Message::Leave(Leave { ring_seq: 1_000 })),
    ]
    .into_iter()
    .map(|(n, message)| {
        (
            n,
            Packet {
                sender: 2,
                ring_id,
                message,
            },
        )
    })
    .collect()
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for (name, p) in packets() {
        let bytes = wire::encode(&p);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| wire::encode(black_box(&p)))
        });
        let shared = Bytes::from(bytes.clone());
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| wire::decode_bytes(black_box(&shared)).unwrap())
        });
    }
    g.finish();
}

fn packing(c: &mut Criterion) {
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Elements(100));
    g.bench_function("pack_100x100B_then_decode", |b| {
        b.iter_batched(
            || SendQueue::new(1 << 22, 1338),
            |mut q| {
                for i in 0..100u64 {
                    q.push(&[i as u8; 100], false, 1, i + 1, 0).unwrap();
                }
                let mut n = 0;
                while let Some(f) = q.pop() {
                    n += decode_frame(&f.finish()).unwrap().len();
                }
                assert_eq!(n, 100);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Runs a formed 5-node ring for `virtual_ms` with every node offering 100-byte messages as
/// fast as the ring takes them; returns deliveries (all nodes).
fn saturated_ring(sim: &mut Sim, virtual_ms: u64) -> u64 {
    let start = sim.delivered;
    let step = 250_000; // 0.25 ms of virtual time between offers
    let steps = virtual_ms * 1_000_000 / step;
    let payload = [42u8; 100];
    for _ in 0..steps {
        for id in 1..=5 {
            // Keep about two rotations' worth queued: enough to saturate, never refused.
            while sim.ring(id).is_some_and(|r| r.queue_depth().0 < 40) {
                sim.submit(id, &payload, Guarantee::Agreed).unwrap();
            }
        }
        sim.run_for(step);
    }
    sim.delivered - start
}

fn formed(variant: ringlab_ring::Variant) -> Sim {
    let cfg = Config {
        variant,
        ..Config::default()
    };
    let mut sim = Sim::new(5, 1, cfg, NetConfig::default());
    sim.record_messages = false;
    sim.start_all();
    sim.run_for(100_000_000);
    assert!((1..=5).all(|i| sim.ring(i).unwrap().members().len() == 5));
    sim
}

fn simulated_ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulated_ring");
    g.sample_size(10);
    for variant in [
        ringlab_ring::Variant::Classic,
        ringlab_ring::Variant::Accelerated,
    ] {
        let mut sim = formed(variant);
        // Deliveries per 20 virtual ms, measured once to set the throughput unit.
        let per_iter = saturated_ring(&mut sim, 20);
        g.throughput(Throughput::Elements(per_iter));
        g.bench_function(format!("5_nodes_100B_{variant:?}").to_lowercase(), |b| {
            b.iter(|| saturated_ring(&mut sim, 20))
        });
    }
    g.finish();
}

// criterion_group! defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, codec, packing, simulated_ring);
}
use group::benches;
criterion_main!(benches);
