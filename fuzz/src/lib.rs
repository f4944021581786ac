//! Shared by the fuzz targets.

/// Puts `body` behind a valid header of type `kind` and decodes it: never panics, and what
/// decodes re-encodes to the same bytes. Lets the fuzzer spend its time on one body decoder.
pub fn body_round_trip(kind: u8, body: &[u8]) {
    let mut b = vec![0x52, 0x4C, ringlab_ring::wire::VERSION, kind, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8];
    b.extend_from_slice(body);
    if let Ok(p) = ringlab_ring::wire::decode(&b) {
        assert_eq!(ringlab_ring::wire::encode(&p), b);
    }
}
