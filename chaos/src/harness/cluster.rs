//! The node processes of one run: started at fixed addresses (a restarted
//! node comes back at the same ones) on loopback or each in its network
//! namespace ([`Host`]), signalled, restarted, and always stopped: on drop,
//! on panic (drop runs while unwinding) and on Ctrl-C/SIGTERM (a signal
//! thread kills every child and removes the run's namespaces, then exits).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::http;

/// Why the cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The `eddy` binary could not be found or started.
    #[error("cannot start {binary}: {reason}")]
    Spawn {
        /// Path tried.
        binary: String,
        /// Why.
        reason: String,
    },
    /// A node did not come up.
    #[error("node-{node} did not become ready within {seconds} s (log: {log})")]
    NotReady {
        /// 1-based index.
        node: usize,
        /// Bound.
        seconds: u64,
        /// Its log file.
        log: String,
    },
    /// A free port could not be found.
    #[error("no free port: {0}")]
    Ports(std::io::Error),
    /// The node has no fault hook, or its hook does not know a field.
    #[error(
        "node-{node} refused the fault {spec} ({status}): {body}; faults through the hook need a node binary with the hook installed (eddy-chaos-node; the eddy binary has none) whose hook knows every field sent"
    )]
    NoFaultHook {
        /// 1-based index.
        node: usize,
        /// What was posted.
        spec: String,
        /// HTTP status.
        status: u16,
        /// Its answer.
        body: String,
    },
    /// A node's data directory or log could not be deleted (a wipe, or the
    /// files an earlier run left).
    #[error("cannot wipe node-{node}'s data in {path}: {source}")]
    Wipe {
        /// 1-based index.
        node: usize,
        /// The directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Where one node listens.
#[derive(Debug, Clone)]
pub struct Ports {
    /// HTTP API.
    pub http: SocketAddr,
    /// Binary protocol.
    pub tcp: SocketAddr,
    /// Gossip (UDP).
    pub gossip: SocketAddr,
    /// Peer links.
    pub peer: SocketAddr,
}

/// Where one node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The network namespace it is started in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// The address its four listeners bind: on loopback each gets a free
    /// port; in a namespace of its own the ports are fixed ([`NETNS_PORTS`]).
    pub ip: IpAddr,
}

/// Ports of a node alone in its namespace: http, tcp, gossip, peer (the
/// node's defaults).
pub const NETNS_PORTS: [u16; 4] = [8080, 7070, 7946, 7071];

impl Host {
    fn ports(&self) -> Result<Ports, ClusterError> {
        if self.netns.is_some() {
            let at = |port| SocketAddr::new(self.ip, port);
            let [http, tcp, gossip, peer] = NETNS_PORTS;
            return Ok(Ports {
                http: at(http),
                tcp: at(tcp),
                gossip: at(gossip),
                peer: at(peer),
            });
        }
        Ok(Ports {
            http: free_tcp(self.ip)?,
            tcp: free_tcp(self.ip)?,
            gossip: free_udp(self.ip)?,
            peer: free_tcp(self.ip)?,
        })
    }
}

/// Lifecycle of a node process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running.
    Up,
    /// SIGSTOPped.
    Stopped,
    /// SIGKILLed.
    Killed,
    /// Left gracefully and exited.
    Left,
    /// A spare never started yet (`add` starts it); not a member.
    Spare,
}

/// How one node is started.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Where it runs.
    pub host: Host,
    /// Started with the cluster; else a spare for `add`.
    pub start: bool,
    /// It keeps its copies in a data directory of its own.
    pub data_dir: bool,
    /// Extra `--set key=value` pairs, after (so winning over) the
    /// harness's own.
    pub sets: Vec<String>,
}

struct NodeProc {
    child: Option<Child>,
    host: Host,
    ports: Ports,
    state: State,
    log: PathBuf,
    data_dir: Option<PathBuf>,
    sets: Vec<String>,
}

/// Every child pid of this process, for the signal thread.
fn registry() -> &'static Mutex<Vec<u32>> {
    static PIDS: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(Vec::new()))
}

fn register(pid: u32) {
    if let Ok(mut pids) = registry().lock() {
        pids.push(pid);
    }
}

fn unregister(pid: u32) {
    if let Ok(mut pids) = registry().lock() {
        pids.retain(|p| *p != pid);
    }
}

/// SIGKILLs (after SIGCONT) every node this process started that is still
/// registered.
pub fn kill_all() {
    let pids = registry().lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        signal(pid, "-CONT");
        signal(pid, "-KILL");
        unregister(pid);
    }
}

/// Installs (once) a thread that, on SIGINT or SIGTERM, SIGKILLs (after
/// SIGCONT, so stopped ones die too) every node this process started,
/// removes its network namespaces, and exits with 130.
pub fn kill_children_on_signal() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        std::thread::spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            kill_all();
            super::netns::remove_all();
            eprintln!(
                "eddy-chaos: interrupted; every node it started was killed, its namespaces removed"
            );
            std::process::exit(130);
        });
    });
}

/// `setpriv` (util-linux), if this machine has one that takes
/// `--pdeathsig`: nodes are started through it so the kernel SIGKILLs them
/// when the harness dies, even by SIGKILL, which no signal thread can catch.
/// It calls `prctl(PR_SET_PDEATHSIG, SIGKILL)` and execs the node; the
/// setting survives `exec` (unless the binary is set-uid). Our own crate
/// cannot make that call: `unsafe_code` is forbidden workspace-wide and
/// `CommandExt::pre_exec` is unsafe. Without `setpriv` nodes start as before
/// and only the signal thread and `Drop` stop them (a line says so, once).
///
/// The kernel sends the signal when the *thread* that spawned the node
/// exits: the harness spawns nodes from the thread that calls
/// [`super::run`], which outlives them.
fn death_signal() -> Option<&'static str> {
    static PROBED: OnceLock<bool> = OnceLock::new();
    let works = *PROBED.get_or_init(|| {
        let works = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            eprintln!(
                "eddy-chaos: no `setpriv --pdeathsig` here: nodes outlive a SIGKILLed harness"
            );
        }
        works
    });
    works.then_some("setpriv")
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Ports handed out start here and stay below the kernel's ephemeral range
/// (32768 and up by default). A port from `bind(0)` is an ephemeral one,
/// which the workload's own outgoing connections can take before the node
/// binds it, or while a killed node is down before its restart (found: a
/// five-node run failed with "Address already in use" at start).
const FIRST_PORT: u16 = 20_000;
/// Size of the range ports are drawn from.
const PORT_RANGE: u16 = 12_000;

/// Deletes node `i`'s file or directory `path`; one that is not there is
/// fine.
fn wipe(i: usize, path: &std::path::Path) -> Result<(), ClusterError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ClusterError::Wipe {
            node: i,
            path: path.display().to_string(),
            source: err,
        }),
        _ => Ok(()),
    }
}

/// A port of `ip` free for TCP (`udp` false) or UDP now, below the
/// ephemeral range, and never handed out before by this process (nodes of
/// one run keep theirs for restarts); processes draw from different places
/// of the range.
fn free_port(ip: IpAddr, udp: bool) -> Result<SocketAddr, ClusterError> {
    static DRAWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static HANDED_OUT: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    let drawn = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = (std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(drawn.wrapping_mul(97)))
        % u32::from(PORT_RANGE);
    let mut last = None;
    for offset in 0..u32::from(PORT_RANGE) {
        // Below PORT_RANGE, so it fits a u16.
        let port = FIRST_PORT + ((start + offset) % u32::from(PORT_RANGE)) as u16;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.contains(&port) {
            continue;
        }
        let bound = if udp {
            UdpSocket::bind((ip, port)).map(drop)
        } else {
            TcpListener::bind((ip, port)).map(drop)
        };
        match bound {
            Ok(()) => {
                handed_out.insert(port);
                return Ok(SocketAddr::new(ip, port));
            }
            Err(err) => last = Some(err),
        }
    }
    Err(ClusterError::Ports(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port")
    })))
}

fn free_tcp(ip: IpAddr) -> Result<SocketAddr, ClusterError> {
    free_port(ip, false)
}

fn free_udp(ip: IpAddr) -> Result<SocketAddr, ClusterError> {
    free_port(ip, true)
}

/// The nodes of one run.
pub struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    rf: usize,
    nodes: Vec<NodeProc>,
}

impl Cluster {
    /// Starts each node of `setups` that is not a spare (each lists every
    /// node's gossip address as a seed, spares' too) and waits until each
    /// is ready. Logs go to `dir`.
    pub fn start(
        binary: PathBuf,
        dir: PathBuf,
        setups: Vec<NodeSetup>,
        rf: usize,
    ) -> Result<Cluster, ClusterError> {
        kill_children_on_signal();
        let count = setups.len();
        let mut nodes = Vec::with_capacity(count);
        for (setup, i) in setups.into_iter().zip(1..) {
            nodes.push(NodeProc {
                child: None,
                ports: setup.host.ports()?,
                host: setup.host,
                state: if setup.start {
                    State::Killed
                } else {
                    State::Spare
                },
                log: dir.join(format!("node-{i}.log")),
                data_dir: setup.data_dir.then(|| dir.join(format!("data-{i}"))),
                sets: setup.sets,
            });
        }
        // A run starts from a fresh cluster: data directories and logs left
        // in `dir` by an earlier run of the scenario would be loaded and
        // appended to (a rerun loaded the last run's copies and failed on
        // its gaps).
        for (node, i) in nodes.iter().zip(1..) {
            for path in node.data_dir.iter().chain(std::iter::once(&node.log)) {
                wipe(i, path)?;
            }
        }
        let mut cluster = Cluster {
            binary,
            dir,
            rf,
            nodes,
        };
        let starting: Vec<usize> = (1..=count)
            .filter(|&i| cluster.state(i) != State::Spare)
            .collect();
        for &i in &starting {
            cluster.spawn(i)?;
        }
        for &i in &starting {
            cluster.wait_ready(i, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// Nodes that are members: every node but spares not added yet.
    pub fn members(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.state != State::Spare)
            .count()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a cluster of no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s (1-based) ports.
    pub fn ports(&self, i: usize) -> &Ports {
        &self.nodes[i - 1].ports
    }

    /// Node `i`'s state.
    pub fn state(&self, i: usize) -> State {
        self.nodes[i - 1].state
    }

    /// HTTP base URLs of the nodes that are up.
    pub fn up_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.state == State::Up)
            .map(|n| format!("http://{}", n.ports.http))
            .collect()
    }

    /// 1-based indices of the nodes that are up.
    pub fn up(&self) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|&i| self.nodes[i - 1].state == State::Up)
            .collect()
    }

    fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.ports.gossip))
            .collect();
        let node = &mut self.nodes[i - 1];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| ClusterError::Spawn {
                binary: self.binary.display().to_string(),
                reason: format!("log file {}: {e}", node.log.display()),
            })?;
        // `setpriv` and `ip netns exec` both exec: the child's pid is the
        // node's, and the death signal `setpriv` sets survives both execs.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(setpriv) = death_signal() {
            argv.extend([setpriv, "--pdeathsig", "KILL", "--"].map(Into::into));
        }
        if let Some(ns) = &node.host.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(Into::into));
        }
        argv.push(self.binary.clone().into_os_string());
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        command
            .arg("node")
            .args(["--http-addr", &node.ports.http.to_string()])
            .args(["--tcp-addr", &node.ports.tcp.to_string()])
            .args(["--gossip-addr", &node.ports.gossip.to_string()])
            .args(["--peer-addr", &node.ports.peer.to_string()])
            .args(["--set", &format!("name=\"node-{i}\"")])
            .args(["--set", &format!("seeds=[{}]", seeds.join(","))])
            .args(["--set", &format!("replication_factor={}", self.rf)])
            .args(["--set", "settle_ms=100"])
            // In network namespaces the nodes listen on 10.X.0.i, which is
            // not loopback: without this they refuse to start unprotected.
            // The harness's bridge is reachable from this machine only.
            .args(["--set", "insecure=true"])
            .env(
                "RUST_LOG",
                std::env::var("EDDY_CHAOS_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(dir) = &node.data_dir {
            command.args(["--set", &format!("data_dir=\"{}\"", dir.display())]);
        }
        for set in &node.sets {
            command.args(["--set", set]);
        }
        let child = command.spawn().map_err(|e| ClusterError::Spawn {
            binary: self.binary.display().to_string(),
            reason: e.to_string(),
        })?;
        register(child.id());
        node.child = Some(child);
        node.state = State::Up;
        Ok(())
    }

    /// Waits until node `i` answers `/readyz` with 200.
    pub fn wait_ready(&self, i: usize, bound: Duration) -> Result<(), ClusterError> {
        let url = format!("http://{}/readyz", self.ports(i).http);
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if http::get(&url).is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ClusterError::NotReady {
            node: i,
            seconds: bound.as_secs(),
            log: self.nodes[i - 1].log.display().to_string(),
        })
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i - 1];
        if let Some(mut child) = node.child.take() {
            signal(child.id(), "-CONT");
            let _ = child.kill();
            let _ = child.wait();
            unregister(child.id());
        }
        node.state = State::Killed;
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&mut self, i: usize, stop: bool) {
        let node = &mut self.nodes[i - 1];
        if let Some(child) = &node.child {
            let wanted = if stop { State::Stopped } else { State::Up };
            if node.state != wanted && signal(child.id(), if stop { "-STOP" } else { "-CONT" }) {
                node.state = wanted;
            }
        }
    }

    /// Starts a killed or departed node again at its addresses.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        if matches!(self.state(i), State::Up | State::Stopped | State::Spare) {
            return Ok(());
        }
        self.spawn(i)
    }

    /// Starts node `i` again without its data: SIGKILLed first if it runs,
    /// its data directory deleted (a node without one restarts empty
    /// anyway).
    pub fn restart_wiped(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.state(i) == State::Spare {
            return Ok(());
        }
        self.kill(i);
        if let Some(dir) = &self.nodes[i - 1].data_dir {
            wipe(i, dir)?;
        }
        self.spawn(i)
    }

    /// Starts spare node `i` for the first time (a no-op otherwise).
    pub fn add(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.state(i) != State::Spare {
            return Ok(());
        }
        self.spawn(i)
    }

    /// `POST /v1/admin/forget-down` on node `i`: its status and answer, or
    /// why there was none.
    pub fn forget_down(&self, i: usize) -> String {
        let url = format!("http://{}/v1/admin/forget-down", self.ports(i).http);
        match http::post(&url, "{}") {
            Ok((status, body)) => format!("{status} {}", body.trim()),
            Err(err) => format!("no answer: {err}"),
        }
    }

    /// Sets node `i`'s soft limit of open files (`prlimit`) to `soft`, or
    /// with `None` to 0: the descriptors it holds keep working, every new
    /// one fails with EMFILE (the limit bounds descriptor numbers, and
    /// lower numbers may be free, so "as many as it has open" would not
    /// do). Returns the soft limit it had; `None` if it is not running or
    /// the limit could not be read or set.
    pub fn limit_fds(&self, i: usize, soft: Option<u64>) -> Option<u64> {
        let pid = self.nodes[i - 1].child.as_ref()?.id();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        let before = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))?
            .split_whitespace()
            .nth(3)?
            .parse()
            .ok()?;
        let soft = soft.unwrap_or(0);
        let set = Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        set.then_some(before)
    }

    /// Waits until node `i` answers HTTP at all (`/healthz`), ready or
    /// not: a node cut off from a majority is never ready.
    pub fn wait_answering(&self, i: usize, bound: Duration) -> bool {
        let url = format!("http://{}/healthz", self.ports(i).http);
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if http::get(&url).is_ok_and(|(status, _)| status == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Graceful leave; waits (bounded) for the process to exit.
    pub fn leave(&mut self, i: usize) {
        let url = format!("http://{}/v1/admin/leave", self.ports(i).http);
        let _ = http::post(&url, "{}");
        let node = &mut self.nodes[i - 1];
        if let Some(mut child) = node.child.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            unregister(child.id());
        }
        node.state = State::Left;
    }

    /// Sets node `i`'s network faults through its hook.
    pub fn set_faults(&self, i: usize, spec: &serde_json::Value) -> Result<(), ClusterError> {
        if self.state(i) != State::Up {
            return Ok(());
        }
        let url = format!("http://{}/v1/admin/faults", self.ports(i).http);
        match http::post(&url, &spec.to_string()) {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(ClusterError::NoFaultHook {
                node: i,
                spec: spec.to_string(),
                status,
                body,
            }),
            // A node that died meanwhile has no network to break.
            Err(_) => Ok(()),
        }
    }

    /// Last lines of node `i`'s log, for a failure report.
    pub fn log_tail(&self, i: usize, lines: usize) -> Vec<String> {
        let all = self.log_lines(i);
        all[all.len().saturating_sub(lines)..].to_vec()
    }

    /// Every line of node `i`'s log (all its runs: restarts append).
    pub fn log_lines(&self, i: usize) -> Vec<String> {
        let Ok(file) = std::fs::File::open(&self.nodes[i - 1].log) else {
            return Vec::new();
        };
        BufReader::new(file).lines().map_while(Result::ok).collect()
    }

    /// Where the logs are.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 1..=self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Shared handle: the fault thread and the checker both drive the cluster.
pub type SharedCluster = Arc<Mutex<Cluster>>;
