//! Typed errors of the core, one enum per concern. Each variant says whether
//! anything changed; for all of them the answer is "no" unless stated.

use thiserror::Error;

use crate::id::{Epoch, Seq};
use crate::time::Timestamp;

/// A payload could not be turned into (or back from) a kind's type.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// JSON did not match the kind's event schema; the message names the field
    /// or position serde reported.
    #[error("event does not match kind `{kind}`: {message}")]
    Json {
        /// Kind whose schema was applied.
        kind: &'static str,
        /// serde_json's description, which names the offending field.
        message: String,
    },
    /// Binary (postcard) bytes did not decode as the kind's event or state, or
    /// had bytes left over.
    #[error("binary payload does not decode as `{kind}` {what}: {message}")]
    Binary {
        /// Kind whose schema was applied.
        kind: &'static str,
        /// `event` or `state`.
        what: &'static str,
        /// postcard's description.
        message: String,
    },
}

/// Registering kinds failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Two behaviours share one `KIND`; names must be unique per node.
    #[error("kind `{0}` is registered twice")]
    DuplicateKind(&'static str),
    /// More kinds than a [`crate::KindId`] can number.
    #[error("too many kinds (at most {max})")]
    TooManyKinds {
        /// The limit.
        max: usize,
    },
    /// A kind name that clients could not address (empty or containing NUL,
    /// which the partition hash uses as separator).
    #[error("invalid kind name `{0}`: must be non-empty and contain no NUL byte")]
    InvalidKindName(&'static str),
}

/// An input could not be applied to a partition. The partition is unchanged
/// (state, timers, log position) unless a variant says otherwise.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The payload is not the kind's event.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The kind id is not one of the registry's.
    #[error("unknown kind id {0}")]
    UnknownKind(u16),
    /// The user's handler panicked; the key kept its previous state and the input
    /// was not logged.
    #[error("handler of `{kind}` panicked on key `{key}`: {message}")]
    HandlerPanicked {
        /// Kind of the key.
        kind: &'static str,
        /// The key.
        key: String,
        /// The panic payload if it was a string.
        message: String,
    },
    /// A replicated entry is not the next one (`expected`) in this partition's
    /// log: a gap or a duplicate. Nothing was applied.
    #[error("entry seq {got:?} out of order (expected {expected:?})")]
    OutOfOrder {
        /// The next seq this partition can apply.
        expected: Seq,
        /// The seq of the rejected entry.
        got: Seq,
    },
    /// The entry comes from an epoch older than one this partition has seen: a
    /// stale owner. Nothing was applied.
    #[error("entry from stale epoch {got:?} (current {current:?})")]
    StaleEpoch {
        /// Highest epoch seen.
        current: Epoch,
        /// The entry's epoch.
        got: Epoch,
    },
    /// The partition tracks the most producers it may; a new producer id was
    /// refused so existing producers keep exactly-once.
    #[error("too many producers in this partition (limit {limit})")]
    TooManyProducers {
        /// `PartitionConfig::max_producers`.
        limit: usize,
    },
    /// An encoded entry did not decode.
    #[error("malformed log entry: {0}")]
    Malformed(String),
    /// A replicated entry's time is before the last applied entry's: an
    /// owner never logs one (its clock is clamped to the log's), so the
    /// entries are damaged or not from an owner. Nothing was applied.
    #[error("entry time {got:?} is before the log's last time {last:?}")]
    TimeBackwards {
        /// Time of the last applied entry.
        last: Timestamp,
        /// The rejected entry's time.
        got: Timestamp,
    },
    /// A key longer than `PartitionConfig::max_key_bytes`.
    #[error("key is {len} bytes, more than the limit of {limit}")]
    KeyTooLong {
        /// Length of the offered key.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A snapshot stream was rejected while reading. Nothing was restored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The chunk does not start with the snapshot magic: not a snapshot.
    #[error("chunk {index}: bad magic, not an eddy snapshot")]
    BadMagic {
        /// Position of the chunk in the stream.
        index: u32,
    },
    /// Written by a format version this build does not read.
    #[error("chunk {index}: unsupported snapshot version {version} (this build reads {supported})")]
    UnsupportedVersion {
        /// Position of the chunk.
        index: u32,
        /// Version in the chunk.
        version: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The chunk's checksum does not match its bytes: corruption.
    #[error("chunk {index}: checksum mismatch (corrupt)")]
    Checksum {
        /// Position of the chunk.
        index: u32,
    },
    /// The chunk is shorter or longer than its header says.
    #[error("chunk {index}: length {got} does not match header ({expected})")]
    Length {
        /// Position of the chunk.
        index: u32,
        /// What the header announced (plus framing).
        expected: usize,
        /// What arrived.
        got: usize,
    },
    /// Chunks arrived out of order or one is missing.
    #[error("chunk {got} arrived where chunk {expected} was due")]
    Sequence {
        /// The chunk index due.
        expected: u32,
        /// The index that arrived.
        got: u32,
    },
    /// A record inside a checked chunk does not decode.
    #[error("chunk {index}: malformed record: {message}")]
    Record {
        /// Position of the chunk.
        index: u32,
        /// postcard's description.
        message: String,
    },
    /// The records do not form a valid snapshot (no header first, data after the
    /// end record, counts that do not match, another partition's snapshot).
    #[error("invalid snapshot structure: {0}")]
    Structure(String),
    /// The snapshot holds a kind this node does not host.
    #[error("snapshot holds unknown kind `{0}`")]
    UnknownKind(String),
    /// The stream ended before its end record: truncated.
    #[error("snapshot truncated: no end record after {chunks} chunks")]
    Truncated {
        /// Chunks received.
        chunks: u32,
    },
}
