//! Fuzz target `wal_records`: see [`eddy_fuzz::wal_records`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::wal_records(data));
