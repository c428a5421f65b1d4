//! Fixtures for tests that run the real `eddy` binary: a node child process
//! killed on drop, and a small HTTP client that does not treat 4xx as errors.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

thread_local! {
    /// Where the next [`NodeProcess::launch`] on this thread writes its logs.
    static LOG: std::cell::RefCell<Option<std::fs::File>> = const { std::cell::RefCell::new(None) };
    /// The CA the HTTP helpers of this thread trust (nodes with TLS).
    static CA: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Makes the HTTP helpers of this thread speak HTTPS trusting `ca`.
pub fn trust_ca(ca: &std::path::Path) {
    CA.with(|slot| *slot.borrow_mut() = Some(ca.to_path_buf()));
}

/// A running `eddy node` child process.
pub struct NodeProcess {
    child: Child,
    pub base: String,
    /// host:port of the binary protocol.
    pub tcp: String,
    /// host:port of the gossip (UDP) socket.
    pub gossip: String,
    /// host:port of the peer link.
    pub peer: String,
}

/// `--set` pairs on free loopback ports, fast ticks, then `sets`.
fn start_args(sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--http-addr",
        "127.0.0.1:0",
        "--tcp-addr",
        "127.0.0.1:0",
        "--gossip-addr",
        "127.0.0.1:0",
        "--peer-addr",
        "127.0.0.1:0",
        "--set",
        "tick_ms=20",
    ]
    .map(str::to_owned)
    .to_vec();
    for set in sets {
        args.extend(["--set".to_owned(), (*set).to_owned()]);
    }
    args
}

/// The `eddy` binary of this build.
pub fn eddy_binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_eddy"))
}

/// The chaos crate's node binary (`eddy node` with the fault hook), built
/// next to `eddy` by any workspace build.
pub fn chaos_node_binary() -> std::path::PathBuf {
    let sibling = std::path::Path::new(env!("CARGO_BIN_EXE_eddy"))
        .parent()
        .expect("bin dir")
        .join("eddy-chaos-node");
    assert!(
        sibling.exists(),
        "{} is not built: run the workspace tests (cargo nextest run --workspace) or build the workspace first",
        sibling.display()
    );
    sibling
}

impl NodeProcess {
    /// Starts `eddy node` on free loopback ports with extra `--set` pairs and
    /// waits (bounded) until it prints its addresses and answers /readyz.
    pub fn start(sets: &[&str]) -> NodeProcess {
        let node = NodeProcess::start_unready(sets);
        node.wait_ready(Duration::from_secs(10));
        node
    }

    /// Like [`NodeProcess::start`], but the node is the chaos crate's
    /// `eddy-chaos-node` (`eddy node` with the fault hook installed), for
    /// tests that inject faults through `POST /v1/admin/faults`.
    pub fn start_with_fault_hook(sets: &[&str]) -> NodeProcess {
        let node = NodeProcess::launch_unready_in(&chaos_node_binary(), None, &start_args(sets));
        node.wait_ready(Duration::from_secs(10));
        node
    }

    /// Like [`NodeProcess::start`], with JSON logs at debug level written to
    /// `log`.
    pub fn start_logged(sets: &[&str], log: &std::path::Path) -> NodeProcess {
        let mut all = vec!["log_format=\"json\""];
        all.extend_from_slice(sets);
        let file = std::fs::File::create(log).expect("log file");
        LOG.with(|slot| *slot.borrow_mut() = Some(file));
        NodeProcess::start(&all)
    }

    /// Starts `eddy node` with exactly these arguments (after `node`).
    pub fn launch(args: &[String]) -> NodeProcess {
        let node = NodeProcess::launch_unready(args);
        node.wait_ready(Duration::from_secs(10));
        node
    }

    /// Like [`NodeProcess::start`], without waiting for /readyz: a voter
    /// is ready only once enough voters run to form the cluster.
    pub fn start_unready(sets: &[&str]) -> NodeProcess {
        NodeProcess::launch_unready(&start_args(sets))
    }

    /// Waits (bounded) until the node answers /readyz.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while get(&self.url("/readyz")).0 != 200 {
            assert!(Instant::now() < deadline, "node never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`NodeProcess::launch`] with debug logs written to `log`.
    pub fn launch_logged(args: &[String], log: &std::path::Path) -> NodeProcess {
        let file = std::fs::File::create(log).expect("log file");
        LOG.with(|slot| *slot.borrow_mut() = Some(file));
        NodeProcess::launch(args)
    }

    /// Starts `eddy node` with these arguments once it printed its addresses.
    pub fn launch_unready(args: &[String]) -> NodeProcess {
        NodeProcess::launch_unready_in(&eddy_binary(), None, args)
    }

    /// [`NodeProcess::launch`] in directory `dir` (relative paths of a
    /// shipped config resolve there).
    pub fn launch_in(dir: Option<&std::path::Path>, args: &[String]) -> NodeProcess {
        let node = NodeProcess::launch_unready_in(&eddy_binary(), dir, args);
        node.wait_ready(Duration::from_secs(10));
        node
    }

    /// Starts `<binary> node` in directory `dir` with these arguments once
    /// it printed its addresses.
    pub fn launch_unready_in(
        binary: &std::path::Path,
        dir: Option<&std::path::Path>,
        args: &[String],
    ) -> NodeProcess {
        let mut command = Command::new(binary);
        // The harness's own variable is no node setting: a node would warn
        // about it on its first log line.
        command
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .env_remove("EDDY_TEST_NODE_LOGS");
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        // `EDDY_TEST_NODE_LOGS=DIR`: every node's log in DIR, for a failure
        // that needs them.
        let logged = LOG.with(|slot| slot.borrow_mut().take()).or_else(|| {
            let dir = std::env::var_os("EDDY_TEST_NODE_LOGS")?;
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::fs::File::create(
                std::path::Path::new(&dir).join(format!("node-{}-{n}.log", std::process::id())),
            )
            .ok()
        });
        match logged {
            Some(file) => command.env("RUST_LOG", "debug").stderr(file),
            None => command.env("RUST_LOG", "warn").stderr(Stdio::null()),
        };
        let child = command.spawn().expect("eddy binary starts");
        // Guard first: if anything below panics, Drop still kills the child.
        let mut node = NodeProcess {
            child,
            base: String::new(),
            tcp: String::new(),
            gossip: String::new(),
            peer: String::new(),
        };
        let stdout = node.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node prints its address within 20 s");
        let word = |prefix: &str| {
            line.split_whitespace()
                .find(|w| w.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} address in `{line}`"))
                .to_owned()
        };
        // http:// or https:// (a node with TLS).
        node.base = word("http");
        node.tcp = word("tcp://").trim_start_matches("tcp://").to_owned();
        node.gossip = word("gossip://").trim_start_matches("gossip://").to_owned();
        node.peer = word("peer://").trim_start_matches("peer://").to_owned();
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies without a word to its peers.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        self.wait_for_exit()
    }

    /// Waits (bounded) for the process to exit on its own: a graceful
    /// leave first hands its partitions over (at most 20 s).
    pub fn wait_for_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the node in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS line")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)));
    if let Some(ca) = CA.with(|slot| slot.borrow().clone()) {
        let pem = std::fs::read(&ca).expect("CA file");
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
                .unversioned_rustls_crypto_provider(eddy_client::tls::provider())
                .build(),
        );
    }
    builder.build().into()
}

/// (status, body, retry-after header).
pub type Reply = (u16, String, Option<String>);

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("request completes");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body, retry)
}

/// Like [`reply`], but a failed connection is status 0 (a killed node).
fn try_reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    match response {
        Ok(_) => reply(response),
        Err(err) => (0, err.to_string(), None),
    }
}

/// GET that reports a dead node as status 0 instead of panicking.
pub fn try_get(url: &str) -> Reply {
    try_reply(agent().get(url).call())
}

/// JSON POST that reports a dead node as status 0 instead of panicking.
pub fn try_post(url: &str, body: &str) -> Reply {
    try_reply(
        agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

pub fn post(url: &str, content_type: &str, body: &str) -> Reply {
    reply(
        agent()
            .post(url)
            .header("content-type", content_type)
            .send(body),
    )
}

pub fn post_json(url: &str, body: &str) -> Reply {
    post(url, "application/json", body)
}

/// [`post_json`] again while the answer is 503 (bounded: 5 s): a write
/// caught by a partition changing owner, or short of in-sync copies, is
/// refused, to be retried. A refused write may have been applied on its
/// owner, so a caller that counts events retries with producer ids
/// ([`tx_once`]).
pub fn post_json_retrying(url: &str, body: &str) -> Reply {
    retrying_503(|| post_json(url, body))
}

/// `call` again while it answers 503 (bounded: 20 retries 250 ms apart).
pub fn retrying_503(call: impl FnMut() -> Reply) -> Reply {
    retrying_503_for(Duration::from_secs(5), call)
}

/// `call` again, 250 ms apart, while it answers 503 and `limit` has not
/// passed.
pub fn retrying_503_for(limit: Duration, mut call: impl FnMut() -> Reply) -> Reply {
    let deadline = std::time::Instant::now() + limit;
    let mut reply = call();
    while reply.0 == 503 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        reply = call();
    }
    reply
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// The `events` count of a key, or None if it has no state. A read caught
/// by its partition changing owner (503) is retried, bounded (5 s).
pub fn events_of(node: &NodeProcess, kind: &str, key: &str) -> Option<u64> {
    let url = node.url(&format!("/v1/actors/{kind}/{key}"));
    let (status, body, _) = retrying_503(|| get(&url));
    match status {
        200 => json(&body)["state"]["events"].as_u64(),
        404 => None,
        other => panic!("unexpected {other}: {body}"),
    }
}

pub fn tx(key: &str, amount: f64, country: &str) -> String {
    format!(
        r#"{{"kind":"account","key":"{key}","event":{{"amount":{amount},"country":"{country}","merchant":"m-1"}}}}"#
    )
}

/// [`tx`] with producer id `key` and sequence number `seq`: a retry of it
/// after a 503 is applied at most once.
pub fn tx_once(key: &str, amount: f64, country: &str, seq: u64) -> String {
    format!(
        r#"{{"kind":"account","key":"{key}","event":{{"amount":{amount},"country":"{country}","merchant":"m-1"}},"producer":"{key}","seq":{seq}}}"#
    )
}

/// Writes raw bytes to `addr` and reads until the node closes the
/// connection; returns what it sent back.
pub fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(bytes).expect("writes");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("node closes the connection");
    answer
}

/// The controller voters of a test cluster of `count` nodes: node-1 for
/// one or two, node-1..3 up to four, node-1..5 from five.
pub fn voters_for(count: usize) -> String {
    let voters = match count {
        0..=2 => 1,
        3..=4 => 3,
        _ => 5,
    };
    let names: Vec<String> = (1..=voters).map(|i| format!("\"node-{i}\"")).collect();
    format!("voters=[{}]", names.join(","))
}

/// `data_dir` of node `i` under `root`.
pub fn data_dir_in(root: &std::path::Path, i: usize) -> String {
    format!("data_dir=\"{}\"", root.join(format!("node-{i}")).display())
}

/// A fresh directory for one cluster's data (voters keep their Raft log
/// there), unique in this test process.
pub fn cluster_root() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    scratch(&format!("cluster-{n}"))
}

/// The `--set` pairs of node `i` of a `count`-node cluster under `root`
/// joining through `seed` (none for node-1): name, voters, data_dir.
pub fn member_sets(
    i: usize,
    count: usize,
    root: &std::path::Path,
    seed: Option<&str>,
) -> Vec<String> {
    let mut sets = vec![
        format!("name=\"node-{i}\""),
        "settle_ms=100".to_owned(),
        voters_for(count),
        data_dir_in(root, i),
    ];
    if let Some(seed) = seed {
        sets.push(format!("seeds=[\"{seed}\"]"));
    }
    sets
}

/// Starts `count` nodes named node-1.. (the first of them the controller's
/// voters, see [`voters_for`]), all but the first joining through the
/// first's gossip address, each with a data_dir under a fresh root; waits
/// until every one is ready, not for the tables.
pub fn start_cluster(count: usize, extra: &[&str]) -> Vec<NodeProcess> {
    start_cluster_in(&cluster_root(), count, extra)
}

/// [`start_cluster`] with the data under `root`.
pub fn start_cluster_in(root: &std::path::Path, count: usize, extra: &[&str]) -> Vec<NodeProcess> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for i in 1..=count {
        let seed = nodes.first().map(|n| n.gossip.clone());
        let mut sets = member_sets(i, count, root, seed.as_deref());
        sets.extend(extra.iter().map(|s| (*s).to_owned()));
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        nodes.push(NodeProcess::start_unready(&sets));
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
    }
    nodes
}

/// `GET /v1/partitions` of a node.
pub fn partitions(node: &NodeProcess) -> serde_json::Value {
    let (status, body, _) = get(&node.url("/v1/partitions"));
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// The owners a table names.
pub fn owners(table: &serde_json::Value) -> std::collections::BTreeSet<String> {
    table["owned"]
        .as_object()
        .expect("owned map")
        .keys()
        .cloned()
        .collect()
}

/// Waits (bounded) until every node's table is identical and its owners
/// satisfy `wanted`; returns the common table.
pub fn wait_for_agreement(
    nodes: &[&NodeProcess],
    wanted: impl Fn(&std::collections::BTreeSet<String>) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tables: Vec<_> = nodes.iter().map(|n| partitions(n)).collect();
        let agreed = tables
            .iter()
            .all(|t| wanted(&owners(t)) && t["fingerprint"] == tables[0]["fingerprint"]);
        if agreed {
            return tables[0].clone();
        }
        if Instant::now() >= deadline {
            // The first partitions on which the tables differ, for the report.
            let differing: Vec<String> =
                (0..tables[0]["partitions"].as_array().map_or(0, Vec::len))
                    .filter(|&p| {
                        tables
                            .iter()
                            .any(|t| t["partitions"][p] != tables[0]["partitions"][p])
                    })
                    .take(3)
                    .map(|p| {
                        let rows: Vec<String> = tables
                            .iter()
                            .map(|t| format!("{} {}", t["node"], t["partitions"][p]))
                            .collect();
                        rows.join(" / ")
                    })
                    .collect();
            panic!(
                "tables did not converge: {:?}; differing: {differing:#?}",
                tables.iter().map(owners).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until `node`'s committed configuration has `copies`
/// in-sync copies of every partition (a restarted node caught up).
pub fn wait_in_sync(node: &NodeProcess, copies: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = partitions(node);
        let short =
            eddy_node::http::partitions_short_of_copies(&table, copies).expect("a partition table");
        if short == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{short} partitions have fewer than {copies} in-sync copies"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An empty directory of this test process, under the system's temp dir.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The sum of a metric's samples (every label set) on `node`.
pub fn metric(node: &NodeProcess, name: &str) -> f64 {
    let (status, body, _) = get(&node.url("/metrics"));
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}
