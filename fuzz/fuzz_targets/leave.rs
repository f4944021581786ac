//! Fuzz target: the leave body decoder, behind a valid header of type 6.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlab_fuzz::body_round_trip(6, data));
