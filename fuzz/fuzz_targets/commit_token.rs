//! Fuzz target: the commit_token body decoder, behind a valid header of type 4.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlab_fuzz::body_round_trip(4, data));
