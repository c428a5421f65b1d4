//! eddy-chaos: proves the cluster's guarantees under faults, two ways.
//!
//! - [`control`]: seed campaigns of the Raft controller (`eddy_control`'s
//!   swarm: real controllers over tikv raft-rs on a seeded faulty network),
//!   each seed reproducible, with the controller's injected bugs exposed.
//! - [`harness`]: real node processes (`eddy-chaos-node node`: `eddy node`
//!   with the fault hook installed), a journaling workload, faults
//!   from a TOML scenario (SIGKILL, SIGSTOP/SIGCONT, restart, leave, network
//!   faults by nftables in per-node network namespaces when root, else
//!   through the nodes' fault hook; restarts without data, spares added
//!   later, operator actions, storage faults), a checker, an availability
//!   check ([`availability`]), and a JSON + HTML report.
//!
//! Both can be shown to fail: injected bugs (the controller's, and owners
//! acknowledging before the backups hold an entry) are caught.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod availability;
pub mod control;
pub mod datapath;
pub mod harness;
pub mod report;
pub mod scenario;
