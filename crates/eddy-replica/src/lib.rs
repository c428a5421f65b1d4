//! eddy-replica: the data path of one partition on one node, sans-io.
//!
//! A node holds each partition it has a part in as a [`Slot`]: the copy
//! ([`eddy_core::Partition`]) and the role the node plays for it (owner,
//! backup, incoming, retiring). Every decision about a slot is made here,
//! from inputs the caller hands in — the committed configuration's epoch
//! and owner, the partition table, a peer's message, `now` — and comes back
//! as a value the caller carries out (write to the log, answer the peer,
//! log a warning). The node's partition worker (eddy-node) only moves bytes
//! and time; the seeded simulation `eddy-chaos datapath`
//! (chaos/src/datapath/) drives the same code.
//!
//! # The rules (docs/PROTOCOL.md)
//!
//! - A node never *becomes* owner by reading the table: the table only
//!   demotes or marks a partition [`Role::Incoming`]; promotion is
//!   [`take`], at an epoch the committed configuration gives this node.
//! - A copy refuses anything below its fence ([`fence`]): its own epoch, a
//!   newer one a deposing owner announced, or the committed configuration's.
//! - A copy follows one owner's log: entries from a newer owner are applied
//!   only after that owner's snapshot made the copy its follower
//!   ([`Slot::replicate`], Raft's log matching with the snapshot in place of
//!   `prevLogTerm`); a snapshot is installed only whole, from one stream
//!   ([`Slot::install`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod answer;
mod backup;
mod parked;
mod role;
mod slot;
mod stream;
mod takeover;
#[cfg(test)]
mod testing;
mod trust;

pub use answer::{Confirmation, confirmation};
pub use backup::{Installed, Replication};
pub use parked::{Admit, MAX_WAIT, Parked};
pub use role::{RETIRE_AFTER, Role, role_after_table};
pub use slot::{Route, Slot, fence};
pub use stream::Received;
pub use takeover::{Placed, Placement, Take, apply_placement, take};
pub use trust::{GiveUp, give_up, lost_with_worker, must_reelect, reelection};
