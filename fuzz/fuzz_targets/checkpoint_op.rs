//! Fuzz target: the checkpoint operation decoder (`ringlab_sync::checkpoint::Op`, the payload
//! of a service operation): never panics; what decodes re-encodes to the same bytes; an
//! operation built from the input encodes and decodes to itself; a service applying it (on
//! top of a checkpoint with a section and an open) never panics.
#![no_main]
use ringlab_sync::{CheckpointService, Op, Service};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(op) = Op::decode(data) {
        assert_eq!(op.encode(), data);
    }
    ringlab_fuzz::value_round_trip(data, ringlab_fuzz::any_op, Op::encode, Op::decode);
    let mut s = CheckpointService::new(1);
    for op in [
        Op::Create(b"c".to_vec()),
        Op::Open(b"c".to_vec()),
        Op::Write(
            b"c".to_vec(),
            b"s".to_vec(),
            bytes::Bytes::from_static(b"d"),
        ),
    ] {
        s.deliver_op(1, &op.encode());
    }
    s.deliver_op(1, data);
    s.deliver_op(2, data);
    let _ = (s.digest(), s.counters());
});
