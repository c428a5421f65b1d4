//! eddy-cluster: the sans-io cluster logic of eddy — who is in the cluster and
//! which nodes hold each partition.
//!
//! Like `eddy-core`, this crate owns no sockets, threads or clocks. Every input
//! carries the time; every effect is left in a queue the caller drains. The
//! node (tokio) wires it to a UDP socket and timers; the simulator in [`sim`]
//! wires it to a seeded virtual network, which is how the scale figures in
//! `docs/CLUSTER_SCALE.md` were measured.
//!
//! # Main types
//!
//! - [`NodeIdentity`]: name, gossip/peer/HTTP/TCP addresses, a generation (a
//!   restarted node is a new member) and the cluster parameters `P` and
//!   protocol version. It implements foca's `Identity`, so this metadata rides
//!   in every gossip message and a late joiner learns it too.
//!   [`check_compatible`] refuses peers with another `P` or protocol.
//! - [`Membership`]: SWIM (foca) as a state machine with a [`MembershipView`]
//!   of every member's status (up / suspect / down) and a version.
//! - [`PartitionTable`]: for every partition its `[owner, backups...]` of
//!   distinct nodes, a pure function of the live names, computed on a
//!   consistent-hash [`Ring`] with virtual nodes over xxh3.
//!
//! # Data flow
//!
//! Datagrams from the gossip socket enter through
//! [`Membership::handle_datagram`], due timers through
//! [`Membership::handle_timer`], commands through [`Membership::join`] and
//! [`Membership::leave`]. After each call the shell drains
//! [`Membership::drain_datagrams`] (to send), [`Membership::drain_timers`]
//! (to deliver back at their time, in order) and [`Membership::drain_events`]
//! (to log and react). When [`MembershipView::version`] changed, the shell
//! recomputes [`PartitionTable::compute`] from [`MembershipView::live_nodes`]
//! (after a short settle delay, DESIGN §11) and hands [`PartitionTable::diff`]
//! to the handoff machinery.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod identity;
pub mod membership;
pub mod peer;
pub mod placement;
pub mod ring;
pub mod sim;
pub mod table;
pub mod testing;
pub mod view;

pub use config::{ConfigError, MembershipConfig};
pub use identity::{
    ClusterParams, Incompatible, MAX_NAME_LEN, NodeId, NodeIdentity, PROTOCOL_VERSION,
    check_compatible,
};
pub use membership::{
    Datagram, MAX_SEEDS, Membership, MembershipError, MembershipEvent, MembershipTimer,
    ScheduledTimer,
};
pub use peer::{
    ForwardOutcome, Held, PeerFailure, PeerRequest, PeerRequestRef, PeerResponse, ReplicaPart,
    ReplicaPartRef, check_hello,
};
pub use placement::Placement;
pub use ring::{DEFAULT_VNODES, MAX_VNODES, Ring};
pub use table::{PartitionMove, PartitionTable, Role};
pub use view::{MemberEntry, MemberStatus, MembershipView};
