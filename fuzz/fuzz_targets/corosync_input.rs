//! Fuzz target: what a corosync node reads from outside its own process: a CPG message's
//! payload (`parse_header`: any message another group member multicast) and corosync's log
//! (`LogParser::feed`, fed in two pieces at any split point). Never panics; a payload that
//! parses re-encodes to its first `HEADER_LEN` bytes; the log's transitions do not depend on
//! where the bytes were split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringlab_corosync::log::LogParser;
use ringlab_corosync::node::{encode_header, parse_header, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match parse_header(data) {
        Some((id, sent)) => assert_eq!(&encode_header(id, sent)[..], &data[..HEADER_LEN]),
        None => assert!(data.len() < HEADER_LEN),
    }
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut whole = LogParser::new(2026);
    let a = whole.feed(data);
    let mut parts = LogParser::new(2026);
    let mut b = parts.feed(&data[..split]);
    b.extend(parts.feed(&data[split..]));
    assert_eq!(a, b);
    assert_eq!(whole.state(), parts.state());
});
