//! eddy-core: the sans-io engine of eddy.
//!
//! Every stream key — an account, a device, a patient — is a virtual actor of a
//! *kind*. A user writes one [`Behaviour`] per kind: a deterministic handler from
//! `(state, event, ctx.now())` to a new state, alerts and timer requests. This
//! crate runs those handlers; it owns no sockets, threads or clocks, so the node
//! (tokio), the tests and the deterministic simulator all drive the same code.
//!
//! # Main types
//!
//! - [`Registry`]: the kinds a node hosts, type-erased; checks JSON and binary
//!   event payloads against each kind's schema.
//! - [`Partition`]: one of `P` shards ([`partition_of`] places a key). It holds
//!   many keys as virtual actors — active (decoded) or passive (encoded bytes) —
//!   plus their timers and the idempotent producers' high-water marks.
//! - [`Entry`]: every state change is a log entry stamped `(epoch, seq, ts)` by
//!   the owner: events and timer firings alike. [`PartitionLog`] keeps the tail.
//! - Snapshots ([`Partition::write_snapshot`], [`SnapshotReader`]): versioned,
//!   checksummed, bounded chunks.
//!
//! # Data flow
//!
//! Inputs enter as [`EventInput`]s through [`Partition::submit`] on the owner (or
//! as timer firings through [`Partition::tick`]); both stamp an [`Entry`], apply
//! it, and push the entry and any [`AlertRecord`]s into [`Outputs`], which the
//! caller drains: entries go to the log and the backups, alerts are published
//! once the entry is acknowledged. Backups feed the same entries to
//! [`Partition::apply`] and reach the same state and alerts — the determinism
//! contract the property tests in `tests/determinism.rs` check.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
pub mod behaviour;
pub mod entry;
pub mod error;
pub mod id;
pub mod log;
pub mod partition;
pub mod registry;
pub mod snapshot;
mod store;
pub mod testing;
pub mod time;
mod timers;
pub mod wire;
pub mod workload;

pub use admission::{AdmissionError, MAX_PRODUCER_SEQ, check_key, check_seq};
pub use behaviour::{Behaviour, Ctx, TimerOp};
pub use entry::{
    Entry, EntryView, EventInput, EventRef, Input, InputView, ProducerRef, ProducerView,
};
pub use error::{ApplyError, CodecError, RegistryError, SnapshotError};
pub use id::{ActorId, DEFAULT_PARTITIONS, Epoch, KindId, PartitionId, Seq, partition_of};
pub use log::{EntryBatch, LogError, PartitionLog};
pub use partition::{
    AlertCause, AlertRecord, Outputs, Partition, PartitionConfig, PartitionDump, PartitionStats,
    Replicated, Submitted,
};
pub use registry::{Registry, RegistryBuilder, encode_event};
pub use snapshot::{
    DEFAULT_CHUNK_BYTES, SNAPSHOT_VERSION, SnapshotReader, SnapshotWriteError, chunk_index,
};
pub use time::Timestamp;
pub use workload::Workload;
