//! The `eddy` command.
//!
//! `eddy node` runs a node hosting the three example kinds (`account`,
//! `device`, `patient`). Other subcommands of DESIGN §7 (send, tail, status,
//! bench, demo) arrive with their issues.
#![forbid(unsafe_code)]

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
    /// Run a node hosting the example kinds: account (fraud), device (iot), patient (vitals).
    Node(NodeArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(args) => Node::builder()
            .kind::<eddy_fraud::Fraud>()
            .kind::<eddy_iot::Iot>()
            .kind::<eddy_vitals::Vitals>()
            .run_with(args),
    }
}
