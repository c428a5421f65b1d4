//! eddy-node: the I/O shell around `eddy-core`.
//!
//! A node hosts the kinds registered with [`Node::builder`] and serves them
//! over HTTP. Inside, everything is owned, nothing shared between partitions:
//!
//! ```text
//! HTTP (axum) ── validate ──▶ Ingress ── batch per worker ──▶ Worker actors (ractor)
//!   POST /v1/events            bounded in-flight budget         own partitions p % W == i
//!   GET  /v1/actors/…                                           stamp time, apply, tick
//! TCP (frames) ── validate ──┘
//!   GET  /v1/alerts (SSE) ◀──────────── AlertHub (bounded broadcast) ◀── alerts
//! ```
//!
//! - [`config`]: defaults < TOML < `EDDY_*` env < flags, one-line errors;
//!   [`config_keys`]: the key names behind "did you mean …?".
//! - [`ingress`]: splits batches by worker, enforces the in-flight budget
//!   (429 on overload), gathers the acknowledgement.
//! - [`worker`]: ractor actors owning partitions; the only place the wall
//!   clock enters the core; a supervisor restarts a failed worker.
//! - [`http`]: the API of DESIGN §7; every refusal is a JSON error that names
//!   the item and field and changes nothing.
//! - [`alerts`], [`metrics`], [`logging`], [`cli`], [`node`]; [`origin`]:
//!   which browser requests may change anything; [`auth`]: API tokens and
//!   roles, checked by [`http_auth`] and [`tcp_ingress`].
//! - [`dashboard`]: the embedded web page at `/`; [`history`]: the
//!   per-second throughput ring behind its chart (`GET /v1/stats/history`).
//! - [`tcp_ingress`]: the binary protocol (frames in `eddy_core::wire`),
//!   pipelined per connection with a bound on pending requests.
//! - [`cluster`], [`peer`], [`framed`]: membership over UDP, peer links;
//!   [`ownership`]: who owns what, takeover and handoff (the decisions
//!   about one partition's copy are `eddy_replica`'s);
//!   [`storage`]: the optional on-disk copy, written by the [`writer`]
//!   thread with group commit (docs/PROTOCOL.md explains the replication
//!   protocol).
//! - [`tls`], [`gossip_seal`], [`member_check`]: TLS on the TCP ports
//!   (mutual on the peer port), sealed gossip, and admitting members by
//!   certificate (docs/SECURITY.md).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alerts;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod config_keys;
pub mod control;
pub mod control_log;
pub mod control_msg;
pub mod control_plan;
pub mod dashboard;
pub mod exposure;
pub mod faults;
pub mod fd_limit;
pub mod framed;
pub mod gate;
pub mod gossip_seal;
pub mod history;
pub mod http;
pub mod http_auth;
pub mod http_serve;
pub mod in_flight;
pub mod incarnation;
pub mod ingress;
pub mod isr_acks;
pub mod logging;
pub mod member_check;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod ownership;
pub mod peer;
pub mod quiet;
pub mod replace_file;
pub mod storage;
pub mod tcp_ingress;
pub mod tls;
pub mod worker;
pub mod writer;

pub use config::NodeConfig;
pub use ingress::{BatchReply, Ingress, IngressError, IngressEvent};
pub use node::{Node, NodeBuilder, NodeError, RunningNode};
