//! Fuzz target: the mcast body decoder, behind a valid header of type 1.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlab_fuzz::body_round_trip(1, data));
