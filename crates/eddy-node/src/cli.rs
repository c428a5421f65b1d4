//! The `eddy node` command line, shared by the stock binary and by programs
//! that host their own behaviours through `Node::builder().run()`.

use std::path::PathBuf;

use clap::Args;

use crate::config::{ConfigError, NodeConfig};

/// Options of `eddy node`; each also settable in the file or as `EDDY_<KEY>`.
#[derive(Debug, Clone, Args, Default)]
pub struct NodeArgs {
    /// TOML configuration file (see config/node.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Node name.
    #[arg(long)]
    pub name: Option<String>,
    /// HTTP listen address, e.g. 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long)]
    pub http_addr: Option<String>,
    /// Binary protocol listen address (port 0 picks a free one).
    #[arg(long)]
    pub tcp_addr: Option<String>,
    /// UDP gossip address (port 0 picks a free one).
    #[arg(long)]
    pub gossip_addr: Option<String>,
    /// Peer-link TCP address (port 0 picks a free one).
    #[arg(long)]
    pub peer_addr: Option<String>,
    /// Gossip address of a node to join (repeatable); replaces `seeds`.
    #[arg(long = "seed", value_name = "HOST:PORT")]
    pub seeds: Vec<String>,
    /// Log format: human or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Any other key: `--set key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Lets `Node::builder().run()` parse a command line of its own.
#[derive(Debug, clap::Parser)]
#[command(name = "eddy-node", about = "Run an eddy node")]
pub struct NodeCommand {
    /// The node options.
    #[command(flatten)]
    pub args: NodeArgs,
}

impl NodeArgs {
    /// The configuration these arguments describe, with the environment applied.
    pub fn load(&self) -> Result<NodeConfig, ConfigError> {
        let mut overrides = Vec::new();
        if let Some(name) = &self.name {
            overrides.push(format!("name=\"{name}\""));
        }
        if let Some(addr) = &self.http_addr {
            overrides.push(format!("http_addr=\"{addr}\""));
        }
        if let Some(addr) = &self.tcp_addr {
            overrides.push(format!("tcp_addr=\"{addr}\""));
        }
        if let Some(addr) = &self.gossip_addr {
            overrides.push(format!("gossip_addr=\"{addr}\""));
        }
        if let Some(addr) = &self.peer_addr {
            overrides.push(format!("peer_addr=\"{addr}\""));
        }
        if !self.seeds.is_empty() {
            let quoted: Vec<String> = self.seeds.iter().map(|s| format!("\"{s}\"")).collect();
            overrides.push(format!("seeds=[{}]", quoted.join(",")));
        }
        if let Some(format) = &self.log_format {
            overrides.push(format!("log_format=\"{format}\""));
        }
        overrides.extend(self.set.iter().cloned());
        let (config, notes) =
            NodeConfig::load_noting(self.config.as_deref(), std::env::vars(), &overrides)?;
        // Before logging starts (its format is a setting), so on stderr.
        for note in notes {
            eprintln!("warning: {note}");
        }
        Ok(config)
    }
}
