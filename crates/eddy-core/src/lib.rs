//! eddy-core: the sans-io engine of eddy.
//! (crate docs are written with the partition module)

pub mod behaviour;
pub mod testing;
pub mod time;
pub mod wire;
pub mod workload;

pub use behaviour::{Behaviour, Ctx, TimerOp};
pub use time::Timestamp;
pub use workload::Workload;
