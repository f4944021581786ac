//! Fuzz target: packed frames (the payload of an mcast) through the item decoder and reassembly.
#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(items) = ringlab_ring::pack::decode_frame(&frame) {
        let mut r = ringlab_ring::pack::Reassembly::default();
        for item in items {
            let _ = r.push(3, item);
        }
    }
});
