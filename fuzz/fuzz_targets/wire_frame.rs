//! Fuzz target `wire_frame`: see [`eddy_fuzz::wire_frame`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::wire_frame(data));
