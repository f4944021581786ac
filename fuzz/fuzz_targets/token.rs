//! Fuzz target: the token body decoder, behind a valid header of type 0.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlab_fuzz::body_round_trip(0, data));
