//! Fuzz target: any datagram through the packet decoder: never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ringlab_ring::wire::decode(data) {
        assert_eq!(ringlab_ring::wire::encode(&p), data);
    }
});
