//! Fuzz target `peer_message`: see [`eddy_fuzz::peer_message`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::peer_message(data));
