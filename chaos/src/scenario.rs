//! Scenarios: what the process harness runs, written in TOML
//! (`chaos/scenarios/*.toml`). Validated as a whole before anything starts,
//! so a typo never leaves half a cluster running.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not TOML, or fields of the wrong shape.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        source: toml::de::Error,
    },
    /// Well-formed but impossible.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One chaos run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used for the report files.
    pub name: String,
    /// What it shows, one sentence.
    #[serde(default)]
    pub description: String,
    /// Nodes started (named node-1 … node-N).
    pub nodes: usize,
    /// `replication_factor` of every node.
    #[serde(default = "default_rf")]
    pub replication_factor: usize,
    /// Give every node a `data_dir` (restarts keep their copies).
    #[serde(default)]
    pub data_dir: bool,
    /// Seconds the workload runs; faults happen inside this window.
    pub duration_s: f64,
    /// Seed of the workload generators.
    #[serde(default)]
    pub seed: u64,
    /// What clients send.
    pub workload: WorkloadSpec,
    /// The fault schedule, in time order.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

fn default_rf() -> usize {
    2
}

/// The clients' traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Example kinds to send: `account`, `device`, `patient`.
    pub kinds: Vec<String>,
    /// Keys per kind.
    pub keys: u64,
    /// Target events per second over all clients.
    pub rate: u64,
    /// Concurrent clients; each owns a disjoint set of keys, so per-key order
    /// is the order sent.
    #[serde(default = "default_clients")]
    pub clients: usize,
    /// Events per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_clients() -> usize {
    4
}

fn default_batch() -> usize {
    50
}

/// One scheduled fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Seconds after the workload started.
    pub at_s: f64,
    /// What happens.
    pub action: Action,
    /// The node it happens to (1-based), for actions on one node.
    #[serde(default)]
    pub node: Option<usize>,
    /// The other side of a split (1-based), for `split`.
    #[serde(default)]
    pub with: Vec<usize>,
    /// Undo it after this many seconds (stop → cont, isolate/split/loss →
    /// heal, kill → restart).
    #[serde(default)]
    pub for_s: Option<f64>,
    /// For `loss`: probability 0–1 that a message between nodes is lost (a
    /// packet with the netns backend, a datagram or peer call with the hook).
    #[serde(default)]
    pub loss: Option<f64>,
    /// For `loss`: milliseconds added between nodes (netem on every packet
    /// where the kernel has it, else the hook, on every peer call).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// Fault actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL.
    Kill,
    /// Start a killed or departed node again (same name and addresses).
    Restart,
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Cont,
    /// Graceful leave (`POST /v1/admin/leave`).
    Leave,
    /// Cut the node off from every other node, both ways.
    Isolate,
    /// The node can send to the others but hears nothing from them.
    Deafen,
    /// `node` and `with` on one side, the rest on the other.
    Split,
    /// Packet loss and delay on every link of every node.
    Loss,
    /// Remove every network fault.
    Heal,
}

impl Action {
    /// Whether the action changes the network (made real by the run's
    /// backend: nftables in namespaces, or the nodes' fault hook).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Action::Isolate | Action::Deafen | Action::Split | Action::Loss | Action::Heal
        )
    }
}

/// Kinds the harness can generate, model and check.
pub const KINDS: [&str; 3] = ["account", "device", "patient"];

impl Scenario {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let scenario: Scenario = toml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: shown.clone(),
            source,
        })?;
        scenario
            .validate()
            .map_err(|reason| ScenarioError::Invalid {
                path: shown,
                reason,
            })?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=9).contains(&self.nodes) {
            return Err(format!("nodes = {}: 1 to 9 are supported", self.nodes));
        }
        if self.replication_factor == 0 || self.replication_factor > self.nodes {
            return Err(format!(
                "replication_factor = {} must be 1..={}",
                self.replication_factor, self.nodes
            ));
        }
        if !(self.duration_s > 0.0 && self.duration_s <= 600.0) {
            return Err("duration_s must be in (0, 600]".into());
        }
        let w = &self.workload;
        if w.kinds.is_empty() {
            return Err("workload.kinds is empty".into());
        }
        if let Some(kind) = w.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(format!(
                "workload.kinds: unknown kind `{kind}` (known: {KINDS:?})"
            ));
        }
        if w.keys == 0 || w.rate == 0 || w.clients == 0 || w.batch == 0 {
            return Err("workload.keys, rate, clients and batch must be positive".into());
        }
        let mut last = 0.0;
        for (i, fault) in self.faults.iter().enumerate() {
            let at = format!("faults[{i}] ({:?} at {} s)", fault.action, fault.at_s);
            if fault.at_s < last || fault.at_s > self.duration_s {
                return Err(format!(
                    "{at}: times must be in order and within duration_s"
                ));
            }
            last = fault.at_s;
            let needs_node = !matches!(fault.action, Action::Loss | Action::Heal);
            match fault.node {
                Some(n) if n >= 1 && n <= self.nodes => {}
                Some(n) => return Err(format!("{at}: node {n} does not exist")),
                None if needs_node => return Err(format!("{at}: needs `node`")),
                None => {}
            }
            if fault.action == Action::Split && fault.with.iter().any(|&n| n == 0 || n > self.nodes)
            {
                return Err(format!("{at}: `with` names a node that does not exist"));
            }
            if let Some(loss) = fault.loss
                && !(0.0..=1.0).contains(&loss)
            {
                return Err(format!("{at}: loss must be within 0..=1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        scenario.validate()?;
        Ok(scenario)
    }

    const BASE: &str = r#"
name = "t"
nodes = 3
duration_s = 10
[workload]
kinds = ["account"]
keys = 10
rate = 100
"#;

    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
        assert!(count >= 4, "several scenarios ship: {count}");
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse(BASE).is_ok());
        let bad_kind = BASE.replace("[\"account\"]", "[\"acount\"]");
        assert!(
            parse(&bad_kind)
                .unwrap_err()
                .contains("unknown kind `acount`")
        );
        let no_node = format!("{BASE}\n[[faults]]\nat_s = 1\naction = \"kill\"\n");
        assert!(parse(&no_node).unwrap_err().contains("needs `node`"));
        let late = format!("{BASE}\n[[faults]]\nat_s = 11\naction = \"kill\"\nnode = 1\n");
        assert!(parse(&late).unwrap_err().contains("within duration_s"));
        let typo = format!("{BASE}\nnodez = 3\n");
        assert!(parse(&typo).unwrap_err().contains("nodez"));
        let rf = BASE.replace("nodes = 3", "nodes = 3\nreplication_factor = 4");
        assert!(parse(&rf).unwrap_err().contains("replication_factor"));
    }
}
