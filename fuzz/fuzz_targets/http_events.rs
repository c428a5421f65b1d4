//! Fuzz target `http_events`: see [`eddy_fuzz::http_events`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::http_events(data));
