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
    /// How many nodes (node-1 … node-V) are the controller's voters (1, 3
    /// or 5; they always get a `data_dir`). Default: see
    /// [`Scenario::voter_count`].
    #[serde(default)]
    pub voters: Option<usize>,
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
    /// Per-node settings (`[[node]]` tables): config overrides, spares
    /// started later by `add`, a data directory of their own.
    #[serde(default, rename = "node")]
    pub node_specs: Vec<NodeSpec>,
    /// The run fails if some partition could not acknowledge for longer
    /// than this: writes outstanding and none acknowledged (see
    /// [`crate::availability`]).
    #[serde(default = "default_max_unavailable_s")]
    pub max_unavailable_s: f64,
}

fn default_rf() -> usize {
    2
}

/// Default bound on the longest unavailability of a partition: failure
/// detection plus an election take 2–6 s, a blackholed link a few seconds
/// more, and the 2 shared cores of a busy machine double it
/// (chaos/README.md gives the figures).
pub const DEFAULT_MAX_UNAVAILABLE_S: f64 = 20.0;

fn default_max_unavailable_s() -> f64 {
    DEFAULT_MAX_UNAVAILABLE_S
}

/// Settings of one node (`[[node]]`), overriding the scenario's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Which node (1-based).
    pub id: usize,
    /// Started with the others; `false` makes it a spare that the `add`
    /// fault starts later (it is in every node's seed list from the start,
    /// as a planned node would be).
    #[serde(default = "yes")]
    pub start: bool,
    /// Overrides the scenario's `data_dir` for this node.
    #[serde(default)]
    pub data_dir: Option<bool>,
    /// Node configuration keys (`eddy node --set key=value`), e.g.
    /// `{ settle_ms = 50 }`; checked as the node would check them.
    /// Keys the harness sets itself (names, addresses, seeds, data_dir,
    /// replication_factor) are refused.
    #[serde(default)]
    pub config: toml::Table,
}

fn yes() -> bool {
    true
}

/// Node configuration keys the harness sets itself.
const HARNESS_KEYS: [&str; 8] = [
    "name",
    "seeds",
    "http_addr",
    "tcp_addr",
    "gossip_addr",
    "peer_addr",
    "data_dir",
    "replication_factor",
];

impl NodeSpec {
    /// The `--set key=value` arguments of its `config`, values in TOML.
    pub fn sets(&self) -> Vec<String> {
        self.config
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect()
    }
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
    /// For `restart`: start it without its data (its `data_dir` deleted;
    /// a running node is SIGKILLed first), as a replaced disk or a node
    /// rebuilt under the same name would come back.
    #[serde(default)]
    pub wipe: bool,
    /// Before the fault, wait (at most [`IN_SYNC_PATIENCE_S`]) until every
    /// partition has `replication_factor` in-sync copies, as an operator
    /// restarting or replacing nodes one at a time does (OPERATIONS.md): a
    /// schedule faster than re-replication can wipe every copy of a
    /// partition, which no replication factor survives. Later faults move
    /// by the time waited, so the schedule keeps its spacing.
    #[serde(default)]
    pub when_in_sync: bool,
}

/// Longest wait of a `when_in_sync` fault; the fault then happens anyway
/// and the wait is reported.
pub const IN_SYNC_PATIENCE_S: u64 = 60;

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
    /// Remove every network fault (not `storage_fail`).
    Heal,
    /// Cut the links between `node` and each of `with`, both ways; other
    /// links stay as they are (`for_s` restores just these).
    Cut,
    /// `node` leaves its side of a split for the side of `with`: its links
    /// to `with` work, its links to every other node are cut (`for_s`
    /// heals the network, as for `split`).
    Move,
    /// Start a spare node (`[[node]]` with `start = false`) for the first
    /// time; it joins through its seeds like any new node.
    Add,
    /// The operator action `POST /v1/admin/forget-down` on `node`: it
    /// proposes `Remove` of the members it sees down (only a majority of
    /// the voters can commit it).
    ForgetDown,
    /// `node`'s storage writes fail (fault hook `{"fail_storage": true}`)
    /// until `for_s` passes or the run heals.
    StorageFail,
    /// `node` runs out of file descriptors: its soft `RLIMIT_NOFILE` is
    /// set to 0 (`prlimit`), so the descriptors it holds keep working but
    /// every new file or socket fails with EMFILE (a write-ahead log is
    /// opened anew for a new copy and after each snapshot) until `for_s`
    /// passes or the run heals.
    /// Needs no hook.
    ExhaustFds,
    /// Every partition worker of `node` fails once (fault hook
    /// `{"fail_workers": true}`) and is restarted by its supervisor, as
    /// after a bug in the worker: the copies it held in memory are gone
    /// (with `data_dir` the new worker reloads them from the logs).
    WorkerFail,
}

impl Action {
    /// Whether the action changes the network (made real by the run's
    /// backend: nftables in namespaces, or the nodes' fault hook).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Action::Isolate
                | Action::Deafen
                | Action::Split
                | Action::Loss
                | Action::Heal
                | Action::Cut
                | Action::Move
        )
    }

    /// Whether `for_s` can undo it.
    fn undoable(self) -> bool {
        !matches!(
            self,
            Action::Restart
                | Action::Cont
                | Action::Heal
                | Action::Add
                | Action::ForgetDown
                | Action::WorkerFail
        )
    }

    /// Whether it needs `with` (other nodes).
    fn needs_with(self) -> bool {
        matches!(self, Action::Split | Action::Cut | Action::Move)
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
        let voters = self.voter_count();
        if ![1, 3, 5].contains(&voters) || voters > self.nodes {
            return Err(format!("voters = {voters}: 1, 3 or 5, at most `nodes`"));
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
        if self.max_unavailable_s.is_nan() || self.max_unavailable_s <= 0.0 {
            return Err("max_unavailable_s must be positive".into());
        }
        self.validate_nodes()?;
        let mut started: Vec<bool> = (1..=self.nodes).map(|i| self.starts(i)).collect();
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
            if fault.with.iter().any(|&n| n == 0 || n > self.nodes) {
                return Err(format!("{at}: `with` names a node that does not exist"));
            }
            if fault.action.needs_with() && fault.with.is_empty() {
                return Err(format!("{at}: needs `with`"));
            }
            if matches!(fault.action, Action::Cut | Action::Move)
                && fault.node.is_some_and(|n| fault.with.contains(&n))
            {
                return Err(format!("{at}: `with` names `node` itself"));
            }
            if !fault.with.is_empty() && !fault.action.needs_with() {
                return Err(format!("{at}: `with` is for split, cut and move"));
            }
            if fault.for_s.is_some() && !fault.action.undoable() {
                return Err(format!("{at}: `for_s` cannot undo it"));
            }
            if fault.for_s.is_some_and(|s| s.is_nan() || s <= 0.0) {
                return Err(format!("{at}: `for_s` must be positive"));
            }
            if fault.wipe && fault.action != Action::Restart {
                return Err(format!("{at}: `wipe` is for restart"));
            }
            // Spares exist from their `add` on (validation order is time
            // order: the schedule is sorted).
            if let Some(n) = fault.node {
                let up = &mut started[n - 1];
                match (fault.action, *up) {
                    (Action::Add, true) => {
                        return Err(format!(
                            "{at}: node {n} is already started (`add` is for a `[[node]]` with start = false)"
                        ));
                    }
                    (Action::Add, false) => *up = true,
                    (_, false) => {
                        return Err(format!("{at}: node {n} is a spare not yet added"));
                    }
                    (_, true) => {}
                }
            }
            if let Some(spare) = fault.with.iter().find(|&&w| !started[w - 1]) {
                return Err(format!("{at}: node {spare} is a spare not yet added"));
            }
            if let Some(loss) = fault.loss
                && !(0.0..=1.0).contains(&loss)
            {
                return Err(format!("{at}: loss must be within 0..=1"));
            }
        }
        if let Some(spare) = (1..=voters).find(|&v| !self.starts(v)) {
            return Err(format!(
                "node {spare} is a voter: voters start with the run (the cluster forms only once they all run)"
            ));
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for spec in &self.node_specs {
            let at = format!("node {}", spec.id);
            if spec.id == 0 || spec.id > self.nodes {
                return Err(format!("[[node]] id = {}: no such node", spec.id));
            }
            if seen.contains(&spec.id) {
                return Err(format!("{at}: two [[node]] tables"));
            }
            seen.push(spec.id);
            if let Some(key) = spec
                .config
                .keys()
                .find(|k| HARNESS_KEYS.contains(&k.as_str()))
            {
                return Err(format!(
                    "{at}: config.{key} is set by the harness (use the scenario's fields)"
                ));
            }
            // Exactly the node's own check of `--set` pairs.
            eddy_node::NodeConfig::load(None, std::iter::empty(), &spec.sets())
                .map_err(|err| format!("{at}: {err}"))?;
        }
        if !(1..=self.nodes).any(|i| self.starts(i)) {
            return Err("every node is a spare: one must start".into());
        }
        Ok(())
    }

    /// This node's `[[node]]` table, if it has one.
    pub fn spec(&self, node: usize) -> Option<&NodeSpec> {
        self.node_specs.iter().find(|s| s.id == node)
    }

    /// Whether node `i` starts with the run (not a spare).
    pub fn starts(&self, i: usize) -> bool {
        self.spec(i).is_none_or(|s| s.start)
    }

    /// The controller's voter count: as configured, else 1 below three
    /// nodes, 5 from five (every node of a five-node cluster votes, so the
    /// side of a split with most nodes also has most voters), else 3.
    pub fn voter_count(&self) -> usize {
        self.voters.unwrap_or(match self.nodes {
            0..=2 => 1,
            3..=4 => 3,
            _ => 5,
        })
    }

    /// Whether node `i` keeps its copies in a data directory.
    pub fn has_data_dir(&self, i: usize) -> bool {
        i <= self.voter_count()
            || self
                .spec(i)
                .and_then(|s| s.data_dir)
                .unwrap_or(self.data_dir)
    }

    /// The `--set` pairs of node `i`: the voters, then its own config.
    pub fn sets(&self, i: usize) -> Vec<String> {
        let mut sets = Vec::new();
        let names: Vec<String> = (1..=self.voter_count())
            .map(|v| format!("\"node-{v}\""))
            .collect();
        sets.push(format!("voters=[{}]", names.join(",")));
        sets.extend(self.spec(i).map(NodeSpec::sets).unwrap_or_default());
        sets
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
voters = 1
duration_s = 10
[workload]
kinds = ["account"]
keys = 10
rate = 100
"#;

    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            names.push(Scenario::load(&path).unwrap_or_else(|e| panic!("{e}")).name);
        }
        // One per class of issue 14 (lost acknowledged events under the
        // defaults) and of those found since, beside the CI ones.
        for class in [
            "split-brain",
            "worker-failure",
            "smoke",
            "netns-smoke",
            "wiped-node-minority",
            "fresh-node-cut-off",
            "membership-file",
            "forget-down-minority",
            "wal-write-failure",
            "wal-fds-exhausted",
            "single-link-cut",
        ] {
            assert!(names.iter().any(|n| n == class), "{class} ships: {names:?}");
        }
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

    fn fault(line: &str) -> String {
        format!("{BASE}\n[[faults]]\nat_s = 1\n{line}\n")
    }

    #[test]
    fn the_new_verbs_load() {
        let text = format!(
            "{}\n\
             [[node]]\nid = 3\nstart = false\ndata_dir = true\nconfig = {{ settle_ms = 50, tick_ms = 20 }}\n\
             [[faults]]\nat_s = 1\naction = \"cut\"\nnode = 1\nwith = [2]\nfor_s = 2\n\
             [[faults]]\nat_s = 2\naction = \"add\"\nnode = 3\n\
             [[faults]]\nat_s = 3\naction = \"move\"\nnode = 3\nwith = [2]\n\
             [[faults]]\nat_s = 4\naction = \"restart\"\nnode = 3\nwipe = true\n\
             [[faults]]\nat_s = 5\naction = \"forget_down\"\nnode = 1\n\
             [[faults]]\nat_s = 6\naction = \"storage_fail\"\nnode = 2\nfor_s = 1\n\
             [[faults]]\nat_s = 7\naction = \"exhaust_fds\"\nnode = 1\nfor_s = 1\n\
             [[faults]]\nat_s = 8\naction = \"worker_fail\"\nnode = 2\n",
            BASE.replace(
                "duration_s = 10",
                "duration_s = 10\nmax_unavailable_s = 4.5"
            )
        );
        let scenario = parse(&text).unwrap();
        assert_eq!(scenario.max_unavailable_s, 4.5);
        let actions: Vec<Action> = scenario.faults.iter().map(|f| f.action).collect();
        use Action::*;
        assert_eq!(
            actions,
            [
                Cut,
                Add,
                Move,
                Restart,
                ForgetDown,
                StorageFail,
                ExhaustFds,
                WorkerFail
            ]
        );
        assert!(scenario.faults[3].wipe);
        assert!(scenario.starts(1) && !scenario.starts(3));
        assert!(scenario.has_data_dir(1), "a voter keeps its Raft log");
        assert!(!scenario.has_data_dir(2) && scenario.has_data_dir(3));
        let mut sets = scenario.spec(3).unwrap().sets();
        sets.sort();
        assert_eq!(sets, ["settle_ms=50", "tick_ms=20"]);
        assert_eq!(
            parse(BASE).unwrap().max_unavailable_s,
            DEFAULT_MAX_UNAVAILABLE_S
        );
    }

    #[test]
    fn mistakes_with_the_new_verbs_are_named() {
        let err = |text: &str| parse(text).unwrap_err();
        assert!(err(&fault("action = \"cut\"\nnode = 1")).contains("needs `with`"));
        assert!(err(&fault("action = \"cut\"\nnode = 1\nwith = [1]")).contains("`node` itself"));
        assert!(err(&fault("action = \"move\"\nnode = 1\nwith = [4]")).contains("does not exist"));
        assert!(err(&fault("action = \"kill\"\nnode = 1\nwith = [2]")).contains("`with` is for"));
        assert!(
            err(&fault("action = \"kill\"\nnode = 1\nwipe = true"))
                .contains("`wipe` is for restart")
        );
        assert!(
            err(&fault("action = \"forget_down\"\nnode = 1\nfor_s = 2")).contains("cannot undo")
        );
        assert!(err(&fault("action = \"add\"\nnode = 1")).contains("already started"));
        assert!(err(&fault("action = \"storage_fail\"")).contains("needs `node`"));
        assert!(err(&fault("action = \"exhaust_fds\"")).contains("needs `node`"));
        let spare = format!("{BASE}[[node]]\nid = 2\nstart = false\n");
        let early = format!("{spare}[[faults]]\nat_s = 1\naction = \"kill\"\nnode = 2\n");
        assert!(err(&early).contains("spare not yet added"));
        let early_with =
            format!("{spare}[[faults]]\nat_s = 1\naction = \"cut\"\nnode = 1\nwith = [2]\n");
        assert!(err(&early_with).contains("spare not yet added"));
        let config = |c: &str| format!("{BASE}[[node]]\nid = 1\nconfig = {{ {c} }}\n");
        assert!(err(&config("settle_mss = 1")).contains("settle_mss"));
        assert!(err(&config("replication_factor = \"one\"")).contains("replication_factor"));
        assert!(err(&config("probe_period_ms = 0")).contains("at least 1"));
        assert!(err(&config("seeds = []")).contains("set by the harness"));
        let twice = format!("{BASE}[[node]]\nid = 1\n[[node]]\nid = 1\n");
        assert!(err(&twice).contains("two [[node]]"));
        let nobody = format!(
            "{BASE}[[node]]\nid = 1\nstart = false\n[[node]]\nid = 2\nstart = false\n[[node]]\nid = 3\nstart = false\n"
        );
        assert!(err(&nobody).contains("one must start"));
        let zero = BASE.replace("duration_s = 10", "duration_s = 10\nmax_unavailable_s = 0");
        assert!(err(&zero).contains("max_unavailable_s"));
    }
}
