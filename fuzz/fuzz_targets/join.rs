//! Fuzz target: the join body decoder, behind a valid header of type 3.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlab_fuzz::body_round_trip(3, data));
