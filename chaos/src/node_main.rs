//! `eddy-chaos-node`: the chaos harness's node flavour. The same node as
//! `eddy node` (the three example kinds, the same command line) with the
//! fault hook installed, so `POST /v1/admin/faults` can cut links, drop
//! gossip, fail storage writes and turn on the deliberate replication bug
//! the checkers must catch. Only this binary installs the hook; the `eddy`
//! binary of any build answers 404 there.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eddy_node::Node;
use eddy_node::cli::NodeArgs;

#[derive(Parser)]
#[command(
    name = "eddy-chaos-node",
    version,
    about = "An eddy node with the fault hook installed (chaos testing only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node like `eddy node`, with `POST /v1/admin/faults`.
    Node(NodeArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(args) => Node::builder()
            .kind::<eddy_fraud::Fraud>()
            .kind::<eddy_iot::Iot>()
            .kind::<eddy_vitals::Vitals>()
            .fault_hook()
            .run_with(args),
    }
}
