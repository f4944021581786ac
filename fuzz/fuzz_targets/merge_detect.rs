//! Fuzz target: the merge-detect body decoder (wire version 2: members and unheard), behind
//! a valid header of type 2.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlab_fuzz::body_round_trip(2, data));
