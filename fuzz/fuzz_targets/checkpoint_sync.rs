//! Fuzz target: the decoder of the checkpoint service's sync messages
//! (`ringlab_sync::checkpoint::SyncChunk`, the state chunks transmitters send after a
//! configuration change): never panics; what decodes re-encodes to the same bytes; a chunk
//! built from the input encodes and decodes to itself; a receiver fed the input as one chunk
//! from each of two senders, then activated, never panics and counts what it refused.
#![no_main]
use ringlab_sync::{CheckpointService, Service, SyncChunk, SyncContext};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoded = SyncChunk::decode(data);
    if let Ok(c) = &decoded {
        assert_eq!(c.encode(), data);
    }
    ringlab_fuzz::value_round_trip(
        data,
        ringlab_fuzz::any_chunk,
        SyncChunk::encode,
        SyncChunk::decode,
    );
    let mut s = CheckpointService::new(1);
    s.sync_init(&SyncContext {
        me: 1,
        ring: ringlab_ring::RingId { rep: 1, seq: 4 },
        members: vec![1, 2, 3],
        trans: vec![1],
    });
    s.sync_deliver(3, data);
    s.sync_deliver(2, data);
    assert_eq!(s.malformed(), if decoded.is_ok() { 0 } else { 2 });
    s.sync_activate();
    let _ = s.digest();
});
