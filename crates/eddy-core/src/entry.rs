//! Entries of the partition log: every change of state is one, events and timer
//! firings alike, stamped by the owner with `(epoch, seq, ts)`.
//!
//! Applying the same entries to the same snapshot gives the same states and the
//! same alerts on every replica; that is the contract failover rests on.

use serde::{Deserialize, Serialize};

use crate::id::{Epoch, KindId, Seq};
use crate::time::Timestamp;

/// An idempotent producer's identity and the sequence number of this event.
/// The owner applies each `(producer, seq)` at most once per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerRef {
    /// Stable id the client chose (e.g. a UUID per process).
    pub producer: String,
    /// Increases by at least one per event the producer sends to a partition.
    pub seq: u64,
}

/// An event as it enters the owner: kind, key, binary payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInput {
    /// Kind as numbered by the node's registry.
    pub kind: KindId,
    /// The key.
    pub key: String,
    /// Postcard encoding of the kind's `Event` (see [`crate::encode_event`]).
    pub payload: Vec<u8>,
    /// Set when the client wants exactly-once across retries.
    pub producer: Option<ProducerRef>,
}

/// What an entry does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Deliver an event to a key.
    Event(EventInput),
    /// Fire a key's timer.
    Timer {
        /// The key's kind.
        kind: KindId,
        /// The key.
        key: String,
        /// The tag the handler gave the timer.
        tag: u64,
    },
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Owner epoch that wrote the entry.
    pub epoch: Epoch,
    /// Position in the partition's log.
    pub seq: Seq,
    /// The owner's time for the entry; handlers see it as `ctx.now()`.
    pub ts: Timestamp,
    /// The change.
    pub input: Input,
}

// KindId travels inside entries between nodes of one cluster, which register
// the same kinds in the same order (checked at join).
impl Serialize for KindId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KindId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(KindId)
    }
}
