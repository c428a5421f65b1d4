//! What a new user meets in the first hour (issue 16), on the real binary: a
//! quiet start with one summary line, and errors that say the fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed on drop, with its stdout and stderr lines
/// (tagged `out`/`err`) arriving on a channel.
struct Captured {
    child: Child,
    lines: mpsc::Receiver<(&'static str, String)>,
}

impl Captured {
    fn spawn(mut command: Command) -> Captured {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("eddy binary starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        for (tag, stream) in [
            ("out", Box::new(out) as Box<dyn std::io::Read + Send>),
            ("err", Box::new(err)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send((tag, line));
                }
            });
        }
        Captured { child, lines }
    }

    /// Lines until one satisfies `until` (bounded by `within`); that line
    /// included, last.
    fn lines_until(
        &self,
        within: Duration,
        until: impl Fn(&str, &str) -> bool,
    ) -> Vec<(&'static str, String)> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((tag, line)) => {
                    let done = until(tag, &line);
                    seen.push((tag, line));
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no such line within {within:?}; saw {seen:#?}"),
            }
        }
    }

    /// Whatever else arrives within `quiet` of the last line (bounded by
    /// `at_most` lines).
    fn drain(&self, quiet: Duration, at_most: usize) -> Vec<(&'static str, String)> {
        let mut seen = Vec::new();
        while seen.len() < at_most {
            match self.lines.recv_timeout(quiet) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `eddy node` on free loopback ports, logging at the default level.
fn node_command(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.arg("node");
    for key in ["http_addr", "tcp_addr", "gossip_addr", "peer_addr"] {
        command.args(["--set", &format!("{key}=\"127.0.0.1:0\"")]);
    }
    command.args(extra).env_remove("RUST_LOG");
    command
}

fn listening(tag: &str, line: &str) -> bool {
    tag == "out" && line.contains(" listening on ")
}

#[test]
fn a_node_start_says_where_it_listens_in_a_few_lines() {
    let node = Captured::spawn(node_command(&[]));
    let mut lines = node.lines_until(Duration::from_secs(30), listening);
    // Lines logged just after the summary still count as the start.
    lines.extend(node.drain(Duration::from_secs(1), 2000));
    let info: Vec<&String> = lines
        .iter()
        .filter(|(tag, line)| *tag == "err" && line.contains(" INFO "))
        .map(|(_, line)| line)
        .collect();
    assert!(
        info.len() < 15,
        "{} INFO lines at start: {info:#?}",
        info.len()
    );
    assert!(
        !lines.iter().any(|(_, l)| l.contains("taking ownership")),
        "per-partition lines are debug detail"
    );
    let summary = &lines
        .iter()
        .find(|(tag, line)| listening(tag, line))
        .expect("summary line")
        .1;
    for part in [
        "http://127.0.0.1:",
        "tcp://",
        "gossip://",
        "peer://",
        "1024 partitions",
        "data_dir none",
    ] {
        assert!(summary.contains(part), "`{part}` missing in `{summary}`");
    }
}

#[test]
fn per_partition_detail_is_logged_at_debug() {
    let mut command = node_command(&["--set", "partitions=4"]);
    command.env("RUST_LOG", "eddy_node=debug");
    let node = Captured::spawn(command);
    let lines = node.lines_until(Duration::from_secs(30), |tag, line| {
        tag == "err" && line.contains("taking ownership")
    });
    assert!(lines.last().is_some_and(|(_, l)| l.contains("DEBUG")));
}

/// A free loopback TCP port, held by the returned listener.
fn held_port() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

#[test]
fn a_port_clash_names_the_setting_behind_the_port() {
    let (_held, addr) = held_port();
    // After the free-port `--set`s, so it wins.
    let setting = format!("http_addr=\"{addr}\"");
    let mut command = node_command(&["--set", &setting]);
    command.stdout(Stdio::null());
    let output = command.output().expect("eddy runs");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("http_addr {addr} is in use")),
        "stderr: {err}"
    );
}

#[test]
fn a_typo_in_an_eddy_variable_is_refused_with_the_key_meant() {
    let output = node_command(&[])
        .env("EDDY_REPLICATON_FACTOR", "3")
        .output()
        .expect("eddy runs");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("EDDY_REPLICATON_FACTOR") && err.contains("EDDY_REPLICATION_FACTOR?"),
        "stderr: {err}"
    );
}

#[test]
fn a_typo_in_the_config_file_names_file_line_and_the_key_meant() {
    let dir = common::scratch("typo");
    let file = dir.join("node.toml");
    std::fs::write(&file, "name = \"n\"\nreplicaton_factor = 3\n").expect("write");
    let output = node_command(&["--config", &file.display().to_string()])
        .output()
        .expect("eddy runs");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("{} line 2", file.display()))
            && err.contains("did you mean `replication_factor`?"),
        "stderr: {err}"
    );
}

#[test]
fn eddy_data_dir_from_the_environment_is_applied() {
    let dir = common::scratch("env-data-dir");
    let mut command = node_command(&[]);
    command.env("EDDY_DATA_DIR", &dir);
    let node = Captured::spawn(command);
    let lines = node.lines_until(Duration::from_secs(30), listening);
    let summary = &lines.last().expect("summary").1;
    assert!(
        summary.contains(&format!("data_dir {}", dir.display())),
        "{summary}"
    );
}

#[test]
fn status_against_no_node_asks_whether_one_runs_there() {
    // A port just freed: nothing listens on it.
    let addr = held_port().1;
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["status", "--http-addr", &addr])
        .output()
        .expect("eddy runs");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("is a node running at {addr}?")),
        "stderr: {err}"
    );
}

/// The `data:` payloads of an SSE stream, one per received alert.
fn sse_alerts(url: &str) -> mpsc::Receiver<serde_json::Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = agent.get(url).call().expect("SSE stream opens");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data:") {
                let _ = tx.send(common::json(data.trim()));
            }
        }
    });
    rx
}

#[test]
fn alerts_raised_before_subscribing_are_replayed_then_live_ones_follow() {
    let node = common::NodeProcess::start(&[]);
    let events = node.url("/v1/events");
    // The README's example events: acct-7 in DE, then in the US.
    let (status, body, _) = common::post_json(
        &events,
        r#"{"kind":"account","key":"acct-7","event":{"amount":42.5,"country":"DE","merchant":"m-17"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = common::post(
        &events,
        "application/x-ndjson",
        "{\"kind\":\"account\",\"key\":\"acct-7\",\"event\":{\"amount\":40,\"country\":\"US\"}}\n{\"kind\":\"device\",\"key\":\"dev-1\",\"event\":{\"metric\":\"temp\",\"value\":91}}\n",
    );
    assert_eq!(status, 200, "{body}");

    let alerts = sse_alerts(&node.url("/v1/alerts?kind=account&replay=10"));
    let first = alerts
        .recv_timeout(Duration::from_secs(10))
        .expect("the earlier alert is replayed");
    assert_eq!(first["key"], "acct-7", "{first}");
    assert_eq!(first["alert"]["reason"], "impossible_travel", "{first}");

    // A live one follows, and the replayed one is not sent again.
    common::post_json(&events, &common::tx("acct-8", 1.0, "DE"));
    common::post_json(&events, &common::tx("acct-8", 1.0, "US"));
    let next = alerts
        .recv_timeout(Duration::from_secs(10))
        .expect("a live alert");
    assert_eq!(next["key"], "acct-8", "{next}");
}

#[test]
fn a_key_and_its_partition_copy_show_the_same_owner_epoch() {
    let dir = common::scratch("owner-epoch");
    let data_dir = format!("data_dir=\"{}\"", dir.display());
    let node = common::NodeProcess::start(&[&data_dir]);
    let (status, body, _) =
        common::post_json(&node.url("/v1/events"), &common::tx("acct-e", 1.0, "DE"));
    assert_eq!(status, 200, "{body}");
    assert!(node.terminate().success());
    // Restarted on its data, the node takes its partitions over again at a
    // higher owner epoch (a new process of the same member is elected
    // again), while its own table starts counting afresh.
    let node = common::NodeProcess::start(&[&data_dir]);
    let (status, body, _) = common::get(&node.url("/v1/actors/account/acct-e"));
    assert_eq!(status, 200, "{body}");
    let actor = common::json(&body);
    let partition = actor["partition"].as_u64().expect("partition");
    let owner_epoch = actor["owner_epoch"].as_u64().expect("owner_epoch");
    let table = common::partitions(&node);
    let copy = table["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .find(|c| c["partition"].as_u64() == Some(partition))
        .expect("the owner holds a copy")
        .clone();
    assert_eq!(copy["owner_epoch"].as_u64(), Some(owner_epoch), "{copy}");
    assert!(owner_epoch > 1, "a restart raised it: {copy}");
    assert!(copy["last_entry_epoch"].as_u64().is_some(), "{copy}");
    let row = &table["partitions"][partition as usize];
    assert!(row["local_table_epoch"].as_u64().is_some(), "{row}");
    assert!(row.get("epoch").is_none(), "one word per number: {row}");
    assert!(table["local_table_version"].as_u64().is_some());
    let (_, cluster, _) = common::get(&node.url("/v1/cluster"));
    assert!(
        common::json(&cluster)["local_view_version"]
            .as_u64()
            .is_some()
    );
}

/// `version` of `package` in a Cargo.lock text.
fn locked(lock: &str, package: &str) -> Option<String> {
    let entry = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&entry)? + entry.len();
    Some(lock[start..].split('"').next()?.to_owned())
}

#[test]
fn eddy_new_writes_a_crate_that_resolves_to_eddys_versions() {
    let dir = common::scratch("new");
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["new", "thermo-stat", "--dir"])
        .arg(&dir)
        .output()
        .expect("eddy runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let root = dir.join("thermo-stat");
    let main = std::fs::read_to_string(root.join("src/main.rs")).expect("main.rs");
    assert!(main.contains("const KIND: &'static str = \"thermo_stat\";"));
    // Resolve it (offline: the workspace's build fetched every crate) and
    // compare the versions cargo chose with the workspace's.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // `cargo tree` resolves for this platform only, so nothing else needs
    // downloading.
    let resolved = Command::new(cargo)
        .args(["tree", "--offline", "--prefix", "none", "-e", "normal"])
        .current_dir(&root)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8_lossy(&resolved.stdout);
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    let workspace_lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"),
    )
    .expect("workspace lock");
    for name in ["serde", "tokio", "axum", "ractor", "foca"] {
        let version = tree
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} v")))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name} not resolved:\n{tree}"));
        assert_eq!(
            Some(version.to_owned()),
            locked(&workspace_lock, name),
            "{name}"
        );
    }
    let eddy_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("checkout");
    assert!(
        tree.lines().any(|l| l.starts_with("eddy-node v")
            && l.contains(&eddy_root.join("crates/eddy-node").display().to_string())),
        "eddy-node by path from this checkout:\n{tree}"
    );
    // An existing directory is not overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["new", "thermo-stat", "--dir"])
        .arg(&dir)
        .output()
        .expect("eddy runs");
    assert_eq!(again.status.code(), Some(2));
}
