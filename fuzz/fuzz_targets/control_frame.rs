//! Fuzz target `control_frame`: see [`eddy_fuzz::control_frame`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::control_frame(data));
