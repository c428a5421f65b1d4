//! eddy-control: the cluster controller of eddy — the committed member set
//! and, per partition, the owner, its epoch and its in-sync replicas, agreed
//! by a Raft group of 1, 3 or 5 voters (tikv's raft-rs).
//!
//! Like `eddy-core` and `eddy-cluster` this crate owns no sockets, threads or
//! clocks: time arrives as ticks, messages as bytes, and every effect waits
//! in a queue the caller drains. foca still finds members and detects
//! failures; this crate decides, by consensus, what the cluster *is*.
//! docs/ARCHITECTURE.md ("Controller") records why raft-rs and how.
//!
//! # Main types
//!
//! - [`MemberId`]: a node name plus the incarnation of its data; its
//!   [`RaftId`] is derived from both, so a node that lost its data is a new
//!   member and never votes as its old self.
//! - [`ClusterConfig`]: the replicated state machine. [`Command`]s (`Join`,
//!   `Remove`, `Elect`, `SetIsr`) are validated when applied; a rejected one
//!   is a committed no-op with a [`Rejection`] every node agrees on.
//! - [`plan`]: the pure placement planner — commands toward the ring
//!   placement over committed members, never electing outside an ISR.
//! - [`Controller`]: one voter's Raft replica around raft-rs's `RawNode`.
//! - [`bootstrap_decision`]: whether a starting node restores, joins, waits
//!   or bootstraps a new group (only when every configured voter is empty).
//! - [`testing`]: a seeded network of controllers with faults and a safety
//!   and liveness checker, for this crate's tests and the chaos simulator.
//!
//! # Data flow
//!
//! A driver (eddy-node, later) calls [`Controller::tick`] every `tick_ms`,
//! [`Controller::step`] with each frame from a peer link, and
//! [`Controller::propose`] with commands (its own, the planner's, or a
//! joining node's). After every call it drains
//! [`Controller::drain_persist`] and makes those durable, then sends
//! [`Controller::drain_outbound`] to the named Raft ids, then reads
//! [`Controller::drain_applied`] (outcomes by [`ProposalTag`]) and
//! [`Controller::take_published`] (the configuration to act on). After a
//! restart [`Controller::restore`] rebuilds the voter from its
//! [`PersistedState`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bootstrap;
pub mod command;
pub mod controller;
pub mod isr;
pub mod member;
pub mod planner;
pub mod plausible;
pub mod reach;
pub mod state;
pub mod storage;
pub mod testing;
pub mod wire;

pub use bootstrap::{BootstrapDecision, RaftPresence, bootstrap_decision};
pub use command::{Command, Proposal, ProposalTag, Rejection};
pub use controller::{
    Applied, ControlError, Controller, ControllerSettings, InjectedBug, Outbound, pushed_is_newer,
};
pub use isr::{Decision, MinInsync, OwnerIsr};
pub use member::{Member, MemberId, MemberInfo, RaftId};
pub use planner::{plan, ring_members, serving_table, target_table, target_table_with_vnodes};
pub use reach::Unreachable;
pub use state::{Assignment, ClusterConfig, InvariantViolation};
pub use storage::{Persist, PersistedState};
