//! The `eddy` command.
//!
//! `eddy node` runs a node hosting the three example kinds (`account`,
//! `device`, `patient`); `eddy send` and `eddy tail` speak the binary protocol
//! to one; `eddy status` shows members and partition table; `eddy bench`
//! measures a node or a local cluster; `eddy demo` runs the main job.
#![forbid(unsafe_code)]

mod bench;
mod bench_cluster;
mod bench_disk;
mod cert;
mod demo;
mod new;
mod progress;
mod send;
mod status;
mod tail;
mod tls_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eddy_node::Node;
use eddy_node::cli::NodeArgs;

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "A clustered event processor: every key a live, stateful actor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job in one command: a local 3-node cluster, the fraud, iot and
    /// vitals workloads, one node killed halfway, and a summary of what happened.
    Demo(demo::DemoArgs),
    /// Run a node hosting the example kinds: account (fraud), device (iot), patient (vitals).
    Node(NodeArgs),
    /// Send NDJSON events from a file or stdin to a node.
    Send(send::SendArgs),
    /// Print alerts as JSON lines.
    Tail(tail::TailArgs),
    /// Create a crate for a kind of your own, pinned to this eddy's versions.
    New(new::NewArgs),
    /// Show the cluster's members and partition table as one node sees them.
    Status(status::StatusArgs),
    /// Measure throughput and latency of one node with the fraud workload.
    Bench(bench::BenchArgs),
    /// Make a local CA, node certificates and a gossip key (docs/SECURITY.md).
    Cert(cert::CertArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(args) => Node::builder()
            .kind::<eddy_fraud::Fraud>()
            .kind::<eddy_iot::Iot>()
            .kind::<eddy_vitals::Vitals>()
            .run_with(args),
        Command::Demo(args) => demo::run(args),
        Command::Send(args) => {
            // Same kinds in the same order as the node, to encode JSON events.
            let registry = eddy_core::Registry::builder()
                .kind::<eddy_fraud::Fraud>()
                .kind::<eddy_iot::Iot>()
                .kind::<eddy_vitals::Vitals>()
                .build();
            match registry {
                Ok(registry) => send::run(args, registry),
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tail(args) => tail::run(args),
        Command::New(args) => new::run(args),
        Command::Status(args) => status::run(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Cert(args) => cert::run(args),
    }
}

/// `--token` / `EDDY_TOKEN`, shared by the client subcommands.
#[derive(Clone, Default, clap::Args)]
pub struct TokenArg {
    /// API token presented to the node (role `read` for status and tail,
    /// `write` for send). Prefer the environment variable EDDY_TOKEN: a
    /// flag is visible to other users in `ps`.
    #[arg(long = "token", env = "EDDY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Never shows the token.
impl std::fmt::Debug for TokenArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.token.is_some() {
            "TokenArg(<set>)"
        } else {
            "TokenArg(none)"
        })
    }
}

impl TokenArg {
    /// The `Authorization` header value, if a token is set.
    pub fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// A client config presenting the token.
    pub fn client_config(&self) -> eddy_client::ClientConfig {
        eddy_client::ClientConfig::default().with_token(self.token.clone())
    }
}

/// Why connecting to `addr` failed, with the hint that fits: a refused
/// token is not a missing node.
fn connect_error(addr: &str, err: &eddy_client::ClientError, flag: &str) -> String {
    match err {
        eddy_client::ClientError::Protocol(_) => format!("{addr}: {err}"),
        _ => format!(
            "cannot connect to {addr}: {err}; {}",
            no_node_hint(addr, flag)
        ),
    }
}

/// What to say when nothing answers at `addr`: most often no node runs
/// there, or it runs at another address (`flag` sets the one asked).
fn no_node_hint(addr: &str, flag: &str) -> String {
    format!(
        "is a node running at {addr}? (start one with `eddy node`, or point {flag} at a running node)"
    )
}

/// The async runtime of a client subcommand; reports why if it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            None
        }
    }
}
