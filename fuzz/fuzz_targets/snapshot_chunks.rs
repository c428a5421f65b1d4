//! Fuzz target `snapshot_chunks`: see [`eddy_fuzz::snapshot_chunks`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::snapshot_chunks(data));
