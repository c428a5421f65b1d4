//! eddy-control: the sans-io cluster controller (placeholder doc, completed below).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bootstrap;
pub mod command;
pub mod controller;
pub mod member;
pub mod planner;
pub mod state;
pub mod storage;
pub mod testing;
pub mod wire;

pub use bootstrap::{BootstrapDecision, RaftPresence, bootstrap_decision};
pub use command::{Command, Proposal, ProposalTag, Rejection};
pub use controller::{
    Applied, ControlError, Controller, ControllerSettings, InjectedBug, Outbound,
};
pub use member::{Member, MemberId, MemberInfo, RaftId};
pub use planner::{plan, target_table};
pub use state::{Assignment, ClusterConfig, InvariantViolation};
pub use storage::{Persist, PersistedState};
