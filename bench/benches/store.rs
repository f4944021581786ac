//! Benchmarks of a full store copy's stages, one chunk of 1 MiB (1 KiB values, as the
//! store-copy figures use) at a time, so that a copy's rate can be set against what each
//! stage allows on the machine: the provider cuts the chunk from its snapshot (`cut`) and
//! encodes it with its CRC (`encode`); the transport carries it as datagrams with their
//! acknowledgements between two sans-IO endpoints, without sockets (`transport`); the
//! requester decodes it and checks its CRC (`decode_verify`), then loads it into its
//! database, a redb file in the temporary directory, digest included (`load`). For scale,
//! `append_to_file` appends the encoded chunk to a plain file: the floor any store pays
//! to keep it (what a bulk-load path would approach).
//!
//! `cargo bench -p ringlab-bench --bench store` measures (throughput in bytes of keys and
//! values); `-- --test` runs each once.
// A benchmark that keeps its database in a temporary file (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringlab_sync::store::transport::{Transport, TransportConfig, TransportEvent};
use ringlab_sync::store::{Chunk, ChunkMsg, StoreDb, Write};

/// Keys of one chunk: 1 MiB of 1 KiB values (under `chunk_keys`, 2000).
const KEYS: usize = 1000;
const VALUE: usize = 1024;
/// Keys in the store the provider cuts from: 16 chunks.
const STORE_KEYS: usize = 16 * KEYS;

fn key(i: usize) -> Vec<u8> {
    format!("fill-{i:012}").into_bytes()
}

fn pairs(from: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (from..from + KEYS)
        .map(|i| (key(i), vec![b'x'; VALUE]))
        .collect()
}

fn chunk_bytes() -> u64 {
    (KEYS * (key(0).len() + VALUE)) as u64
}

/// A store file of its own in the temporary directory, removed when dropped.
struct TempStore {
    db: Option<StoreDb>,
    path: std::path::PathBuf,
}

impl TempStore {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ringlab-bench-{name}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let db = StoreDb::open(&path, 10_000, 64 << 20).expect("a store file");
        Self { db: Some(db), path }
    }

    fn db(&mut self) -> &mut StoreDb {
        self.db.as_mut().expect("open")
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        self.db = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

fn stages(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_copy_chunk_1MiB");
    g.throughput(Throughput::Bytes(chunk_bytes()));
    g.sample_size(20);

    // The provider: a store of 16 MiB written through the log (as the ring's writes are),
    // cut chunk after chunk from one snapshot, wrapping around.
    let mut provider = TempStore::new("provider");
    for i in 0..STORE_KEYS {
        let w = Write {
            key: key(i),
            value: Some(vec![b'x'; VALUE]),
        };
        provider.db().apply(i as u64 + 1, &w).expect("a write");
        if i % 1000 == 999 {
            provider.db().flush().expect("a flush");
        }
    }
    provider.db().flush().expect("a flush");
    let snapshot = provider.db().snapshot().expect("a snapshot");
    let mut after: Option<Vec<u8>> = None;
    g.bench_function("cut", |b| {
        b.iter(|| {
            let (pairs, last) = snapshot
                .chunk(after.as_deref(), 2000, 1 << 20)
                .expect("a chunk");
            after = if last {
                None
            } else {
                pairs.last().map(|(k, _)| k.clone())
            };
            black_box(pairs.len())
        });
    });

    let msg = ChunkMsg::chunk(7, STORE_KEYS as u64, 3, Chunk { pairs: pairs(0) }, false);
    g.bench_function("encode", |b| {
        b.iter_batched(
            || Chunk { pairs: pairs(0) },
            |chunk| black_box(ChunkMsg::chunk(7, 9, 3, chunk, false).encode()),
            BatchSize::LargeInput,
        );
    });

    let encoded = Bytes::from(msg.encode());
    g.bench_function("transport", |b| {
        let (mut tx, mut rx) = (
            Transport::new(1, 11, TransportConfig::default()),
            Transport::new(2, 22, TransportConfig::default()),
        );
        let mut now = 1_000_000u64;
        b.iter(|| {
            tx.send(now, 2, encoded.clone()).expect("sent");
            // Datagrams both ways until the receiver has the whole message; bounded.
            for _ in 0..100_000 {
                now += 1_000;
                while let Some((_, d)) = tx.poll_transmit(now) {
                    rx.handle_datagram(now, 1, &d).expect("a fragment");
                }
                rx.handle_timeout(now);
                while let Some((_, d)) = rx.poll_transmit(now) {
                    tx.handle_datagram(now, 2, &d).expect("an ack");
                }
                tx.handle_timeout(now);
                let mut got = false;
                while let Some(e) = rx.poll_event() {
                    got |= matches!(e, TransportEvent::Received { .. });
                }
                while tx.poll_event().is_some() {}
                if got {
                    return;
                }
            }
            panic!("the chunk never arrived");
        });
    });

    g.bench_function("decode_verify", |b| {
        b.iter(|| {
            let m = ChunkMsg::decode(&encoded).expect("decodes");
            m.verify_crc().expect("its CRC");
            black_box(m.chunk.pairs.len())
        });
    });

    // The floor of keeping a chunk at all: its encoded bytes appended to a plain file (the
    // page cache, no fsync), what a store with a bulk-load path would pay at least.
    let append_path =
        std::env::temp_dir().join(format!("ringlab-bench-append-{}", std::process::id()));
    let mut file = std::fs::File::create(&append_path).expect("a file");
    let mut appended = 0u64;
    g.bench_function("append_to_file", |b| {
        b.iter(|| {
            use std::io::{Seek as _, Write as _};
            // Wrap at 256 MiB so that the file stays bounded.
            if appended >= 256 << 20 {
                file.rewind().expect("rewound");
                appended = 0;
            }
            file.write_all(&encoded).expect("written");
            appended += encoded.len() as u64;
        });
    });
    drop(file);
    let _ = std::fs::remove_file(&append_path);

    // The requester: chunks of fresh keys loaded one after another into a store being
    // copied, as a copy does.
    let mut requester = TempStore::new("requester");
    requester.db().begin_load().expect("a load");
    let mut next = 0usize;
    g.bench_function("load", |b| {
        b.iter_batched(
            || {
                next += KEYS;
                pairs(next)
            },
            |p| requester.db().load_chunk(&p).expect("loaded"),
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

// criterion_group! defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, stages);
}
use group::benches;
criterion_main!(benches);
