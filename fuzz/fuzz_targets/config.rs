//! Fuzz target `config`: see [`eddy_fuzz::config`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::config(data));
