//! Fuzz target: event-record JSON lines (records come from real nodes' files).
#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ringlab_records::Record>(data);
});
