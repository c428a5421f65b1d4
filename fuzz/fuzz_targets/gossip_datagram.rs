//! Fuzz target `gossip_datagram`: see [`eddy_fuzz::gossip_datagram`] (crates/eddy-fuzz, docs/FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy_fuzz::gossip_datagram(data));
