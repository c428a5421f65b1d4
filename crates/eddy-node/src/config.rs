//! Node configuration: defaults < TOML file < `EDDY_*` environment < flags.
//!
//! Every layer is turned into TOML key/value pairs and merged into one table,
//! which is then deserialized once with unknown keys refused. So a typo in the
//! file, an env var or a `--set` flag gets the same one-line error naming the
//! key, and no layer has its own parsing rules.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config_keys::{line_at, line_of, nearest};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AckPolicy {
    /// After every backup in the partition's replica set holds it.
    #[default]
    #[serde(rename = "all")]
    All,
    /// After the owner applied it; backups follow. Faster; a write
    /// acknowledged just before the owner dies can be lost.
    #[serde(rename = "1")]
    One,
}

/// Everything a node needs to start. See `config/node.toml` for the meaning
/// of each field and sensible values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node name, unique in the cluster; shown as the owner of partitions.
    pub name: String,
    /// Address of the HTTP API (`127.0.0.1:0` picks a free port).
    pub http_addr: SocketAddr,
    /// Address of the binary protocol (`eddy-client`, `eddy send`, `eddy tail`).
    pub tcp_addr: SocketAddr,
    /// UDP address of the SWIM gossip socket (membership).
    pub gossip_addr: SocketAddr,
    /// TCP address of the peer link (forwarding between nodes).
    pub peer_addr: SocketAddr,
    /// Gossip addresses (`host:port`) of nodes to join; empty starts a new cluster.
    pub seeds: Vec<String>,
    /// Copies of each partition: the owner plus `replication_factor - 1` backups.
    pub replication_factor: usize,
    /// `all`: acknowledge once every backup holds the write; `1`: once the owner has.
    pub acks: AckPolicy,
    /// Where partition copies are kept on disk (WAL + snapshots); none keeps
    /// state in memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// When the write-ahead log in `data_dir` is flushed to the device:
    /// `never`, `batch` (before acknowledging) or an interval (`"100ms"`).
    pub fsync: crate::writer::FsyncPolicy,
    /// SWIM probe period; detection of a dead node takes a few periods.
    pub probe_period_ms: u32,
    /// How long a probe waits for a direct ack before asking others to probe.
    pub probe_rtt_ms: u32,
    /// How long a suspected node has to refute before it is declared down.
    pub suspect_to_down_ms: u32,
    /// Delay between a membership change and recomputing the partition table,
    /// so a burst of changes moves partitions once.
    pub settle_ms: u64,
    /// Largest binary-protocol frame accepted; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// Requests of one binary-protocol connection processed at once.
    pub max_pending_requests: usize,
    /// Time a binary-protocol or peer frame may take to arrive once its
    /// first byte has; a slower one closes the connection.
    pub frame_read_timeout_ms: u64,
    /// Bytes all connections of the binary (or peer) port may hold in
    /// frames not yet received whole; a read beyond it closes its connection.
    pub max_partial_frame_bytes: usize,
    /// Open connections per listener (HTTP, binary, peer) at once; beyond
    /// it new connections are closed at once.
    pub max_connections: usize,
    /// Open connections from one IP address per listener at once.
    pub max_connections_per_source: usize,
    /// Time an HTTP client has to send a request's headers, counted from
    /// the end of the previous response on a kept-alive connection (so it
    /// is also the idle keep-alive timeout).
    pub http_header_timeout_ms: u64,
    /// Time an HTTP client has to send a request's whole body once its
    /// headers arrived.
    pub http_body_timeout_ms: u64,
    /// Partition count P. Fixed for the life of a cluster.
    pub partitions: u32,
    /// Partition worker actors; 0 means one per CPU core.
    pub workers: usize,
    /// Idle time after which a key is passivated to its encoded form.
    pub idle_timeout_ms: u64,
    /// Most keys with decoded state on this node (spread over partitions).
    pub max_active_keys: usize,
    /// Largest accepted request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Most events in one request; more gets 413.
    pub max_batch_events: usize,
    /// Events queued or being applied per worker; beyond it requests get 429.
    pub max_inflight_events: usize,
    /// How often workers fire due timers and passivate idle keys.
    pub tick_ms: u64,
    /// Alerts buffered for slow alert subscribers before they miss some.
    pub alert_buffer: usize,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Names of the cluster controller's Raft voters (1, 3 or 5, the same
    /// list on every node). A voter needs a `data_dir`, unless it is the
    /// only one. Empty: this node alone, if it has no seeds (see
    /// [`NodeConfig::with_default_voters`]).
    pub voters: Vec<String>,
    /// The controller's logical clock: a Raft tick every this many ms
    /// (elections after 10–20 ticks without a leader, heartbeats every 2).
    pub controller_tick_ms: u64,
    /// Under a controller: a write is acknowledged only while at least this
    /// many copies (the owner's included) are in sync; else 503 (Kafka's
    /// `min.insync.replicas`). Unset (the default): two wherever the
    /// cluster can hold two — `min(2, replication_factor, committed
    /// members)` — so no single lost node or disk loses an acknowledged
    /// write, and a one-node cluster still takes writes. 1 lets an owner
    /// shrink its ISR to itself and acknowledge alone. At most
    /// `replication_factor`.
    pub min_insync_replicas: Option<usize>,
    /// TLS (docs/SECURITY.md): PEM file of the cluster CA. With `tls_cert`
    /// and `tls_key` (all three or none): mutual TLS on the peer port, TLS
    /// on the HTTP and binary ports. None: plain TCP.
    pub tls_ca: Option<std::path::PathBuf>,
    /// This node's certificate, signed by `tls_ca`, naming its IP addresses.
    pub tls_cert: Option<std::path::PathBuf>,
    /// This node's private key (PEM).
    pub tls_key: Option<std::path::PathBuf>,
    /// File of the gossip key (the current one, then the previous one during
    /// a rotation); every gossip datagram is sealed with it. None: plain.
    pub gossip_key_file: Option<std::path::PathBuf>,
    // --- API tokens and exposure (docs/SECURITY.md, "Tokens") ---
    /// File of API tokens, one `role:name:secret` per line (roles `read`,
    /// `write`, `admin`); none: the node serves anyone (loopback only,
    /// unless `insecure`). Secrets live in that file, never in this config.
    pub tokens_file: Option<std::path::PathBuf>,
    /// Run listening beyond loopback without every protection (tokens,
    /// TLS, gossip key). Logged at start, shown by `/v1/cluster` and the
    /// dashboard. For a network you trust.
    pub insecure: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node-1".into(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tcp_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 7071)),
            seeds: Vec::new(),
            replication_factor: 2,
            acks: AckPolicy::All,
            data_dir: None,
            fsync: crate::writer::FsyncPolicy::Never,
            probe_period_ms: 500,
            probe_rtt_ms: 200,
            suspect_to_down_ms: 1000,
            settle_ms: 100,
            max_frame_bytes: 16 * 1024 * 1024,
            max_pending_requests: 64,
            frame_read_timeout_ms: 10_000,
            max_partial_frame_bytes: 256 * 1024 * 1024,
            max_connections: 1024,
            max_connections_per_source: 256,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 30_000,
            partitions: eddy_core::DEFAULT_PARTITIONS,
            workers: 0,
            idle_timeout_ms: 60_000,
            max_active_keys: 1_000_000,
            max_body_bytes: 8 * 1024 * 1024,
            max_batch_events: 10_000,
            max_inflight_events: 100_000,
            tick_ms: 100,
            alert_buffer: 8_192,
            log_format: LogFormat::Human,
            voters: Vec::new(),
            controller_tick_ms: 100,
            min_insync_replicas: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            gossip_key_file: None,
            tokens_file: None,
            insecure: false,
        }
    }
}

/// The configuration could not be assembled. Displayed as one line.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config: {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// An override is not `key=value`.
    #[error("config: override `{0}` is not key=value")]
    Override(String),
    /// A key is unknown or its value has the wrong type or form.
    #[error("config: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Loads the configuration: defaults, then `file` if given, then every
    /// `EDDY_<KEY>` environment variable naming a known key, then `overrides`
    /// (`key=value`, from flags), each layer winning over the previous.
    ///
    /// An `EDDY_*` variable that is a near miss of a key
    /// (`EDDY_REPLICATON_FACTOR`) is an error; one that is no key at all
    /// (another tool's) is ignored — [`NodeConfig::load_noting`] reports it.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<NodeConfig, ConfigError> {
        Self::load_noting(file, env, overrides).map(|(config, _)| config)
    }

    /// [`NodeConfig::load`], also returning a note for every `EDDY_*`
    /// variable that was not applied, so none is ignored silently.
    pub fn load_noting(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<(NodeConfig, Vec<String>), ConfigError> {
        let file = match file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                Some((shown, text))
            }
            None => None,
        };
        let file = file
            .as_ref()
            .map(|(shown, text)| (shown.as_str(), text.as_str()));
        Self::load_text(file, env, overrides)
    }

    /// [`NodeConfig::load_noting`] with the file already read: `file` is
    /// the name errors show and the file's text. Every check of a loaded
    /// configuration runs here (the config fuzz target drives it).
    pub fn load_text(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<(NodeConfig, Vec<String>), ConfigError> {
        let known = known_keys();
        let mut table = toml::Table::new();
        // Where each key was set, so an error can point at it.
        let mut origin: std::collections::HashMap<String, String> = Default::default();
        if let Some((shown, text)) = file {
            table = text
                .parse::<toml::Table>()
                .map_err(|err| ConfigError::Syntax {
                    path: match err.span() {
                        Some(span) => format!("{shown} line {}", line_at(text, span.start)),
                        None => shown.to_owned(),
                    },
                    message: one_line(err.message()),
                })?;
            for key in table.keys() {
                let place = match line_of(text, key) {
                    Some(line) => format!("{shown} line {line}"),
                    None => shown.to_owned(),
                };
                origin.insert(key.clone(), place);
            }
        }
        let mut notes = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("EDDY_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if known.contains(&key.as_str()) {
                origin.insert(key.clone(), format!("environment variable {name}"));
                table.insert(key, parse_value(&value));
            } else if let Some(meant) = nearest(&key, known) {
                return Err(ConfigError::Invalid(format!(
                    "environment variable {name} is not a setting; did you mean EDDY_{}?",
                    meant.to_ascii_uppercase()
                )));
            } else {
                // Other tools' EDDY_* variables (EDDY_BIN, bench knobs) are
                // not ours, and a node must start beside them.
                notes.push(format!(
                    "environment variable {name} is not a node setting; ignored (settings: config/node.toml)"
                ));
            }
        }
        for pair in overrides {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError::Override(pair.clone()))?;
            let key = key.trim().replace('-', "_");
            origin.insert(key.clone(), format!("--set {key}=…"));
            table.insert(key, parse_value(value.trim()));
        }
        // Checking each key on its own lets the error name the key and
        // where it was set, which a whole-table deserialization does not.
        for (key, value) in &table {
            let place = origin
                .get(key)
                .map_or_else(String::new, |place| format!("{place}: "));
            if !known.contains(&key.as_str()) {
                let hint = match nearest(key, known) {
                    Some(meant) => format!("did you mean `{meant}`?"),
                    None => "every key is documented in config/node.toml".to_owned(),
                };
                return Err(ConfigError::Invalid(format!(
                    "{place}unknown key `{key}`; {hint}"
                )));
            }
            let mut single = toml::Table::new();
            single.insert(key.clone(), value.clone());
            if let Err(err) = toml::Value::Table(single).try_into::<NodeConfig>() {
                let message = one_line(err.message());
                return Err(ConfigError::Invalid(if message.contains(key.as_str()) {
                    format!("{place}{message}")
                } else {
                    format!("{place}{key}: {message}")
                }));
            }
        }
        let config: NodeConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|err: toml::de::Error| ConfigError::Invalid(one_line(err.message())))?;
        config.validate()?;
        let config = config.with_default_voters()?;
        Ok((config, notes))
    }

    /// The addresses this node listens on, by config key.
    pub fn listeners(&self) -> [(&'static str, SocketAddr); 4] {
        [
            ("http_addr", self.http_addr),
            ("tcp_addr", self.tcp_addr),
            ("gossip_addr", self.gossip_addr),
            ("peer_addr", self.peer_addr),
        ]
    }

    /// What protects this node's ports, as configured.
    pub fn protection(&self) -> crate::exposure::Protection {
        crate::exposure::Protection {
            tokens: self.tokens_file.is_some(),
            // A half-configured TLS is refused by `tls_files` already.
            tls: self.tls_files().is_ok_and(|files| files.is_some()),
            gossip_key: self.gossip_key_file.is_some(),
        }
    }

    /// Secure by default off loopback ([`crate::exposure::check`]).
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        crate::exposure::check(&self.listeners(), self.protection(), self.insecure)
            .map_err(ConfigError::Invalid)
    }

    /// The connection caps every TCP listener applies.
    pub fn connection_caps(&self) -> crate::gate::ConnectionCaps {
        crate::gate::ConnectionCaps {
            max_connections: self.max_connections,
            max_per_source: self.max_connections_per_source,
        }
    }

    /// The HTTP server's bounds.
    pub fn http_limits(&self) -> crate::http_serve::HttpLimits {
        crate::http_serve::HttpLimits {
            header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.http_body_timeout_ms),
            caps: self.connection_caps(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("partitions", self.partitions as usize),
            ("max_body_bytes", self.max_body_bytes),
            ("max_batch_events", self.max_batch_events),
            ("max_inflight_events", self.max_inflight_events),
            ("tick_ms", self.tick_ms as usize),
            ("alert_buffer", self.alert_buffer),
            ("max_active_keys", self.max_active_keys),
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_pending_requests", self.max_pending_requests),
            ("frame_read_timeout_ms", self.frame_read_timeout_ms as usize),
            ("max_partial_frame_bytes", self.max_partial_frame_bytes),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_source",
                self.max_connections_per_source,
            ),
            (
                "http_header_timeout_ms",
                self.http_header_timeout_ms as usize,
            ),
            ("http_body_timeout_ms", self.http_body_timeout_ms as usize),
            ("replication_factor", self.replication_factor),
            ("probe_period_ms", self.probe_period_ms as usize),
            ("probe_rtt_ms", self.probe_rtt_ms as usize),
            ("suspect_to_down_ms", self.suspect_to_down_ms as usize),
            ("controller_tick_ms", self.controller_tick_ms as usize),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key}: must be at least 1")));
            }
        }
        if self.name.is_empty() || self.name.len() > eddy_cluster::MAX_NAME_LEN {
            return Err(ConfigError::Invalid(format!(
                "name: must be 1 to {} bytes",
                eddy_cluster::MAX_NAME_LEN
            )));
        }
        if let Err(err) = self.membership().validate() {
            return Err(ConfigError::Invalid(err.to_string()));
        }
        for seed in &self.seeds {
            if std::net::ToSocketAddrs::to_socket_addrs(seed.as_str()).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "seeds: `{seed}` is not a host:port address"
                )));
            }
        }
        self.validate_voters()?;
        self.tls_files()?;
        self.check_exposure()
    }

    /// The TLS files when all three `tls_*` keys are set; an error when only
    /// some are (a half-configured node would silently speak plaintext).
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            _ => Err(ConfigError::Invalid(
                "tls_ca, tls_cert and tls_key: set all three (TLS) or none (plain TCP)".into(),
            )),
        }
    }

    /// `min_insync_replicas` as the acknowledgement rule reads it.
    pub fn min_insync(&self) -> eddy_control::MinInsync {
        self.min_insync_replicas.map_or(
            eddy_control::MinInsync::Auto,
            eddy_control::MinInsync::Exactly,
        )
    }

    /// `voters`: 1, 3 or 5 distinct names; a voter keeps its Raft log, so
    /// it must have a `data_dir` (a voter that forgot its votes could elect
    /// two leaders in one term), unless it is the only one: a lone voter
    /// without `data_dir` forgets its cluster with its data, and never
    /// admits another member. None: only without `seeds` (the node is then
    /// its own single voter); a node that joins others must be told who
    /// decides, or it could form a cluster of its own.
    fn validate_voters(&self) -> Result<(), ConfigError> {
        if let Some(copies) = self.min_insync_replicas
            && (copies == 0 || copies > self.replication_factor)
        {
            return Err(ConfigError::Invalid(format!(
                "min_insync_replicas = {copies}: must be 1..={} (replication_factor)",
                self.replication_factor
            )));
        }
        if self.voters.is_empty() {
            if self.seeds.is_empty() {
                return Ok(());
            }
            return Err(ConfigError::Invalid(
                "voters: a node with seeds needs the list of the cluster's controller voters (1, 3 or 5 node names, the same on every node; docs/OPERATIONS.md, \"Bootstrap\")".into(),
            ));
        }
        let mut names = self.voters.clone();
        names.sort();
        names.dedup();
        if !eddy_control::bootstrap::VOTER_COUNTS.contains(&names.len())
            || names.len() != self.voters.len()
        {
            return Err(ConfigError::Invalid(format!(
                "voters: {} names ({} distinct); list 1, 3 or 5 distinct node names",
                self.voters.len(),
                names.len()
            )));
        }
        if names
            .iter()
            .any(|n| n.is_empty() || n.len() > eddy_cluster::MAX_NAME_LEN)
        {
            return Err(ConfigError::Invalid(format!(
                "voters: every name must be 1 to {} bytes",
                eddy_cluster::MAX_NAME_LEN
            )));
        }
        if self.is_voter() && self.data_dir.is_none() && self.voters.len() > 1 {
            return Err(ConfigError::Invalid(format!(
                "voters: this node ({}) is a voter and needs a data_dir for its Raft log; set data_dir, or remove it from voters",
                self.name
            )));
        }
        Ok(())
    }

    /// The configuration with its voters settled: checked, and none means
    /// this node alone (validation lets that through only without seeds: a
    /// lone node is deliberately a cluster of one, its own single voter).
    /// `Node::start` applies it too, for configurations built in code.
    pub fn with_default_voters(mut self) -> Result<NodeConfig, ConfigError> {
        self.validate_voters()?;
        if self.voters.is_empty() {
            self.voters = vec![self.name.clone()];
        }
        Ok(self)
    }

    /// Whether this node is one of the configured controller voters.
    pub fn is_voter(&self) -> bool {
        self.voters.contains(&self.name)
    }

    /// SWIM settings: LAN defaults with this file's timings.
    pub fn membership(&self) -> eddy_cluster::MembershipConfig {
        let ms = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
        eddy_cluster::MembershipConfig {
            probe_period_ms: ms(self.probe_period_ms),
            probe_rtt_ms: ms(self.probe_rtt_ms),
            suspect_to_down_after_ms: ms(self.suspect_to_down_ms),
            ..eddy_cluster::MembershipConfig::default()
        }
    }

    /// Worker count with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

fn known_keys() -> &'static [&'static str] {
    crate::config_keys::fields_of::<NodeConfig>()
}

/// A TOML literal if the text is one (`8080`, `true`, `"x"`), else a string,
/// so `EDDY_NAME=node-2` needs no quotes.
fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: &[&str],
    ) -> Result<NodeConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("eddy-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("n{}.toml", file.map_or(0, str::len)));
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write");
        }
        NodeConfig::load(
            file.map(|_| path.as_path()),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            &flags.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn layers_override_in_order() {
        let config = load(
            Some("name = \"from-file\"\ntick_ms = 7\nworkers = 3\n"),
            &[
                ("EDDY_TICK_MS", "9"),
                ("EDDY_NAME", "from-env"),
                ("EDDY_BENCH_KEYS", "5"),
            ],
            &["name=from-flag"],
        )
        .expect("valid");
        assert_eq!(config.name, "from-flag");
        assert_eq!(config.tick_ms, 9);
        assert_eq!(config.workers, 3);
        assert_eq!(config.partitions, 1024, "default kept");
    }

    #[test]
    fn a_voter_needs_a_data_dir_and_voters_come_in_odd_counts() {
        let three = "voters=[\"node-1\",\"node-2\",\"node-3\"]";
        let err = load(None, &[], &[three])
            .expect_err("node-1 is a voter without data_dir")
            .to_string();
        assert!(err.contains("voter") && err.contains("data_dir"), "{err}");
        let voter = load(None, &[], &[three, "data_dir=\"/tmp/x\""]).unwrap();
        assert!(voter.is_voter());
        let other = load(None, &[], &[three, "name=\"node-4\""]).unwrap();
        assert!(!other.is_voter(), "a non-voter needs no data_dir");
        let err = load(None, &[], &["voters=[\"a\",\"b\"]"])
            .expect_err("two voters")
            .to_string();
        assert!(err.contains("1, 3 or 5"), "{err}");
    }

    #[test]
    fn a_lone_node_is_its_own_voter_and_a_joining_node_must_name_the_voters() {
        let alone = load(None, &[], &[]).unwrap();
        assert_eq!(alone.voters, ["node-1"], "a cluster of one, deliberately");
        assert!(alone.is_voter() && alone.data_dir.is_none());
        let err = load(None, &[], &["seeds=[\"127.0.0.1:7946\"]"])
            .expect_err("seeds without voters")
            .to_string();
        assert!(err.contains("voters") && err.contains("seeds"), "{err}");
        let member = load(
            None,
            &[],
            &[
                "seeds=[\"127.0.0.1:7946\"]",
                "voters=[\"node-1\"]",
                "name=\"node-2\"",
            ],
        )
        .unwrap();
        assert!(!member.is_voter());
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = load(None, &[], &["http_addr=x"])
            .expect_err("bad address")
            .to_string();
        assert!(
            err.contains("http_addr") || err.contains("socket address"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let err = load(Some("tick_ms = \"soon\""), &[], &[])
            .expect_err("bad type")
            .to_string();
        assert!(err.contains("tick_ms"), "{err}");
        let err = load(Some("tikc_ms = 5"), &[], &[])
            .expect_err("typo")
            .to_string();
        assert!(err.contains("tikc_ms"), "{err}");
        let err = load(None, &[], &["partitions=0"])
            .expect_err("zero")
            .to_string();
        assert!(err.contains("partitions"), "{err}");
        assert!(load(None, &[], &["novalue"]).is_err());
        assert!(load(Some("name = ["), &[], &[]).is_err());
    }

    #[test]
    fn a_typo_in_the_file_names_file_line_and_the_key_meant() {
        let err = load(Some("name = \"a\"\n\nreplicaton_factor = 3\n"), &[], &[])
            .expect_err("typo")
            .to_string();
        assert!(err.contains(".toml line 3:"), "{err}");
        assert!(err.contains("unknown key `replicaton_factor`"), "{err}");
        assert!(err.contains("did you mean `replication_factor`?"), "{err}");
        let err = load(None, &[], &["zzz_not_a_key=1"])
            .expect_err("far from any key")
            .to_string();
        assert!(err.contains("--set zzz_not_a_key"), "{err}");
        assert!(err.contains("config/node.toml"), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
        let err = load(Some("name = \"a\"\ntick_ms = ["), &[], &[])
            .expect_err("syntax")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn every_eddy_variable_is_applied_or_reported() {
        let dir = std::env::temp_dir().join("eddy-env-data-dir");
        let shown = dir.display().to_string();
        let (config, notes) = NodeConfig::load_noting(
            None,
            [
                ("EDDY_DATA_DIR".to_owned(), shown.clone()),
                ("EDDY_BIN".to_owned(), "/x/eddy".to_owned()),
                ("PATH".to_owned(), "/bin".to_owned()),
            ],
            &[],
        )
        .expect("valid");
        assert_eq!(config.data_dir, Some(dir), "EDDY_DATA_DIR applied");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("EDDY_BIN"), "{notes:?}");
        let err = load(None, &[("EDDY_REPLICATON_FACTOR", "3")], &[])
            .expect_err("near miss")
            .to_string();
        assert!(
            err.contains("EDDY_REPLICATON_FACTOR")
                && err.contains("did you mean EDDY_REPLICATION_FACTOR?"),
            "{err}"
        );
        let err = load(None, &[("EDDY_TICK_MS", "soon")], &[])
            .expect_err("bad value")
            .to_string();
        assert!(err.contains("EDDY_TICK_MS"), "{err}");
    }

    #[test]
    fn tls_takes_all_three_files_or_none() {
        assert!(load(None, &[], &[]).unwrap().tls_files().unwrap().is_none());
        let err = load(None, &[], &["tls_ca=\"ca.pem\""])
            .expect_err("only the CA")
            .to_string();
        assert!(err.contains("all three"), "{err}");
        let config = load(
            None,
            &[("EDDY_TLS_CA", "ca.pem"), ("EDDY_TLS_CERT", "n.pem")],
            &["tls_key=\"n.key\""],
        )
        .expect("all three");
        let files = config.tls_files().unwrap().expect("tls");
        assert_eq!(files.key, std::path::PathBuf::from("n.key"));
    }

    #[test]
    fn beyond_loopback_needs_protection_or_insecure() {
        let err = load(None, &[], &["http_addr=\"0.0.0.0:8080\""])
            .expect_err("exposed without tokens")
            .to_string();
        assert!(
            err.contains("http_addr 0.0.0.0:8080") && err.contains("insecure = true"),
            "{err}"
        );
        let config = load(None, &[], &["http_addr=\"0.0.0.0:8080\"", "insecure=true"])
            .expect("insecure says so");
        assert!(config.insecure);
        let tokens =
            load(None, &[("EDDY_TOKENS_FILE", "/etc/eddy/tokens")], &[]).expect("loopback");
        assert_eq!(
            tokens.tokens_file,
            Some("/etc/eddy/tokens".into()),
            "EDDY_TOKENS_FILE applied"
        );
    }

    #[test]
    fn min_insync_replicas_is_at_most_the_replication_factor() {
        let err = load(None, &[], &["min_insync_replicas=3"])
            .expect_err("above replication_factor 2")
            .to_string();
        assert!(err.contains("min_insync_replicas = 3"), "{err}");
        let config = load(None, &[], &["min_insync_replicas=2"]).expect("2 of 2");
        assert_eq!(config.min_insync_replicas, Some(2));
        assert_eq!(config.min_insync(), eddy_control::MinInsync::Exactly(2));
        let config = load(None, &[], &[]).expect("defaults");
        assert_eq!(config.min_insync(), eddy_control::MinInsync::Auto);
    }

    #[test]
    fn shipped_node_toml_is_valid_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/node.toml");
        let text = std::fs::read_to_string(&path).expect("config/node.toml exists");
        NodeConfig::load(Some(&path), Vec::new(), &[]).expect("shipped config loads");
        for key in known_keys() {
            assert!(
                text.contains(&format!("{key} =")),
                "config/node.toml lacks `{key}`"
            );
        }
    }
}
