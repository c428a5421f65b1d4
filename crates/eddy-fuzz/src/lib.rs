//! The bodies of eddy's fuzz targets, one module per decoder of bytes a node
//! takes from outside (docs/FUZZING.md): `fuzz/` runs them under libFuzzer,
//! `tests/corpus.rs` runs the committed corpus through them on stable. Each target feeds its input to the
//! node's own decoding function and asserts what it can: nothing panics,
//! a refusal is an `Err`, and what decodes re-encodes to itself.
//!
//! Checksums would make almost every mutated input a checksum error, so
//! most targets take a mode byte: raw bytes (the framing and its checks),
//! or bodies the target frames with a correct checksum (the decoders
//! behind the checksum).
#![forbid(unsafe_code)]
// A fuzz harness's `expect`s are assertions like its `assert!`s: a failed
// one is a finding, reported by libFuzzer with the input that caused it.
#![allow(clippy::expect_used)]

mod config;
mod control;
mod gossip;
mod http;
mod peer;
pub mod seeds;
mod snapshot;
mod wal;
mod wire;

use std::sync::{Arc, OnceLock};

use eddy_core::Registry;

pub use config::config;
pub use control::control_frame;
pub use gossip::{gossip_datagram, gossip_sealed};
pub use http::http_events;
pub use peer::peer_message;
pub use snapshot::snapshot_chunks;
pub use wal::wal_records;
pub use wire::wire_frame;

/// The kinds `eddy node` hosts, in its order.
pub fn registry() -> Arc<Registry> {
    static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            Arc::new(
                Registry::builder()
                    .kind::<eddy_fraud::Fraud>()
                    .kind::<eddy_iot::Iot>()
                    .kind::<eddy_vitals::Vitals>()
                    .build()
                    .expect("the example kinds register"),
            )
        })
        .clone()
}

/// Splits `data` into pieces, each a `u16` LE length then that many bytes
/// (the last one cut short if the input ends first).
pub fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [lo, hi, rest @ ..] = data {
        let n = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// The inverse of [`pieces`], for building seed inputs.
pub fn join_pieces<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let n = u16::try_from(part.len()).expect("a piece fits a u16 length");
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}
