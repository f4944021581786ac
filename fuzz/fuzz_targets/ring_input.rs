//! Fuzz target: a running node fed arbitrary datagrams and timeouts: the state machine never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringlab_ring::{Config, Guarantee, Ring};

fuzz_target!(|data: &[u8]| {
    let mut ring = Ring::new(2, 1, Config::default(), 0, 0).unwrap();
    let mut now = 0u64;
    // Datagrams are length-prefixed chunks; a zero length means "advance time".
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        if len == 0 {
            now += 60_000_000;
            ring.handle_timeout(now);
            let _ = ring.submit(now, b"x", Guarantee::Safe);
        } else {
            let _ = ring.handle_packet(now, None, bytes::Bytes::copy_from_slice(pkt));
        }
        while ring.poll_transmit().is_some() {}
        while ring.poll_event().is_some() {}
    }
});
