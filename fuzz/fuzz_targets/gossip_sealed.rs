//! Fuzz target `gossip_sealed`: see [`eddy_fuzz::gossip_sealed`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::gossip_sealed(data));
