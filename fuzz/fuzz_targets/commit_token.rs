//! Fuzz target: bodies of type 4 behind a valid header, so the fuzzer works on the commit_token body decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    let mut b = vec![0x52, 0x4C, ringlab_ring::wire::VERSION, 4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8];
    b.extend_from_slice(data);
    if let Ok(p) = ringlab_ring::wire::decode(&b) {
        assert_eq!(ringlab_ring::wire::encode(&p), b);
    }
});
