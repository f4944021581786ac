//! Fuzz target: the common header decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    let _ = ringlab_ring::wire::decode_header(data);
});
