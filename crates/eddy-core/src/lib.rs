//! eddy-core: the sans-io engine of eddy.
//! (crate docs are written with the partition module)
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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

pub use behaviour::{Behaviour, Ctx, TimerOp};
pub use entry::{Entry, EventInput, Input, ProducerRef};
pub use error::{ApplyError, CodecError, RegistryError, SnapshotError};
pub use id::{ActorId, DEFAULT_PARTITIONS, Epoch, KindId, PartitionId, Seq, partition_of};
pub use log::{LogError, PartitionLog};
pub use partition::{
    AlertRecord, Outputs, Partition, PartitionConfig, PartitionDump, PartitionStats, Submitted,
};
pub use registry::{Registry, RegistryBuilder, encode_event};
pub use snapshot::{DEFAULT_CHUNK_BYTES, SNAPSHOT_VERSION, SnapshotReader, SnapshotWriteError};
pub use time::Timestamp;
pub use workload::Workload;
