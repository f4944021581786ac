//! Fuzz target: the sync-layer message decoder (`ringlab_sync::msg::Msg`), the bytes of every
//! ring message a node with services delivers: never panics; what decodes re-encodes to the
//! same bytes; a message built from the input encodes and decodes to itself.
#![no_main]
use bytes::Bytes;
use ringlab_sync::Msg;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Msg::decode(&Bytes::copy_from_slice(data)) {
        assert_eq!(m.encode(), data);
    }
    ringlab_fuzz::value_round_trip(data, ringlab_fuzz::any_msg, Msg::encode, |b| {
        Msg::decode(&Bytes::copy_from_slice(b))
    });
});
