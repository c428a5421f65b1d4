//! The process harness: real node processes (`eddy-chaos-node`) on loopback, the
//! journaling workload, the scenario's faults at their times, then healing,
//! quiescing and the checks ([`check`]), and the report ([`crate::report`]).
//!
//! Network faults are made real by a [`backend::Backend`]: each node's fault
//! hook (`POST /v1/admin/faults`, installed by the `eddy-chaos-node` binary
//! the harness runs, never by `eddy`), which works
//! without root, or nftables in per-node network namespaces ([`netns`]),
//! chosen by `--network` and recorded in the report.

pub mod alerts;
pub mod backend;
pub mod check;
pub mod cluster;
pub mod http;
pub mod netns;
pub mod network;
pub mod nft;
mod schedule;
pub mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::report::{MemberSample, Report};
use crate::scenario::Scenario;
use backend::{Backend, NetworkChoice};
use cluster::{Cluster, ClusterError, NodeSetup};
use netns::NetnsError;
use network::Network;
use schedule::Faults;
use workload::{Driver, Entry, Journal};

/// How a run is set up beyond its scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `eddy` binary.
    pub binary: PathBuf,
    /// Where logs and the report go.
    pub out: PathBuf,
    /// Turn the injected replication bug on in every node (checker test).
    pub drop_log_entries: bool,
    /// Which backend makes the network faults real.
    pub network: NetworkChoice,
}

/// Why a run could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Starting or driving the nodes failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Setting up the namespaces, or changing their rules, failed.
    #[error(transparent)]
    Network(#[from] NetnsError),
    /// The output directory.
    #[error("cannot write {path}: {source}")]
    Output {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The node binary the harness runs when none is named: `EDDY_BIN`, else
/// `eddy-chaos-node` (the node with the fault hook installed) next to this
/// executable, else on `PATH`.
pub fn default_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EDDY_BIN") {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(CHAOS_NODE)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(CHAOS_NODE))
}

/// The chaos crate's node binary: `eddy node` with the fault hook.
pub const CHAOS_NODE: &str = "eddy-chaos-node";

/// Runs `scenario` and returns its report (also written to `options.out`).
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, RunError> {
    std::fs::create_dir_all(&options.out).map_err(|source| RunError::Output {
        path: options.out.display().to_string(),
        source,
    })?;
    let duration = Duration::from_secs_f64(scenario.duration_s);
    let events = Arc::new(workload::plan(&scenario.workload, scenario.seed, duration));
    let journal = Arc::new(Journal {
        entries: Mutex::new(vec![Entry::default(); events.len()]),
        acks: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        rejected: Mutex::new(Vec::new()),
    });
    eprintln!(
        "eddy-chaos: {}: {} nodes, rf {}, {} events over {:.0} s, {} faults",
        scenario.name,
        scenario.nodes,
        scenario.replication_factor,
        events.len(),
        scenario.duration_s,
        scenario.faults.len()
    );
    // Declared before the cluster so that it drops after the nodes are
    // killed: then their namespaces are really gone.
    let mut backend = Backend::choose(options.network, scenario.nodes)?;
    eprintln!("eddy-chaos: network: {}", backend.describe());
    let setups = backend
        .hosts(scenario.nodes)
        .into_iter()
        .zip(1..)
        .map(|(host, i)| NodeSetup {
            host,
            start: scenario.starts(i),
            data_dir: scenario.has_data_dir(i),
            sets: scenario.sets(i),
        })
        .collect();
    let cluster = Cluster::start(
        options.binary.clone(),
        options.out.clone(),
        setups,
        scenario.replication_factor,
    )?;
    let mut network = Network::default();
    network.drop_log_entries = options.drop_log_entries;
    if network.is_faulty() {
        backend.apply(&network, &cluster)?;
    }
    let cluster = Arc::new(Mutex::new(cluster));
    // Whatever happens below (an error, a panic), the nodes and the
    // harness's threads stop when this goes out of scope.
    let stopper = Stopper::default();
    let targets = Arc::new(RwLock::new(lock(&cluster).up_urls()));
    // Let the table settle before traffic: the run measures faults, not
    // formation.
    let started_nodes = lock(&cluster).members();
    check::wait_converged(&cluster, started_nodes, Duration::from_secs(30));

    let alert_log = Arc::new(alerts::AlertLog::default());
    let stop_watching = Arc::new(AtomicBool::new(false));
    let urls = {
        let cluster = lock(&cluster);
        (1..=cluster.len())
            .map(|i| format!("http://{}", cluster.ports(i).http))
            .collect()
    };
    // Bounded even if a node never closes its stream.
    let bound = duration + Duration::from_secs(300);
    alerts::watch(urls, alert_log.clone(), stop_watching.clone(), bound);
    let started = Instant::now();
    let driver = Driver {
        targets: targets.clone(),
        stop_sending: stopper.stop_sending.clone(),
        give_up: stopper.give_up.clone(),
    };
    let clients = driver.run(events.clone(), journal.clone(), &scenario.workload, started);
    let members = Arc::new(Mutex::new(Vec::new()));
    let sampling = stopper.sampling.clone();
    let sampler = {
        let (cluster, members, sampling) = (cluster.clone(), members.clone(), sampling.clone());
        std::thread::spawn(move || sample_members(&cluster, &members, &sampling, started))
    };

    let mut spans = Vec::new();
    let mut faults = Faults {
        scenario,
        cluster: &cluster,
        backend: &mut backend,
        network: &mut network,
        fd_limits: Default::default(),
    };
    let fault_result = faults.inject(&targets, &mut spans, started);
    // The workload's window ends; then everything heals and the clients
    // finish their last requests.
    sleep_until(started, duration);
    driver.stop_sending.store(true, Ordering::Relaxed);
    let healed_at = started.elapsed();
    faults.heal_everything(&targets, &mut spans, started)?;
    fault_result?;
    let quiesce = Instant::now() + Duration::from_secs(60);
    for client in clients {
        while !client.is_finished() && Instant::now() < quiesce {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !client.is_finished() {
            driver.give_up.store(true, Ordering::Relaxed);
        }
        let _ = client.join();
    }
    let member_count = lock(&cluster).members();
    let converged = check::wait_converged(&cluster, member_count, Duration::from_secs(60));
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let converged_after_ms = converged.map(|at| {
        at.saturating_duration_since(started)
            .saturating_sub(healed_at)
            .as_millis() as u64
    });
    // Alerts of the last acknowledgements may still be on their way.
    std::thread::sleep(Duration::from_millis(500));
    stop_watching.store(true, Ordering::Relaxed);
    let mut findings = check::check(&cluster, &events, &journal, converged_after_ms.is_some());
    findings.alerts = alert_log.check(&events, &lock(&journal.entries));
    findings
        .violations
        .extend(findings.alerts.violations.iter().cloned());
    let report = Report::build(
        scenario,
        &events,
        &journal,
        findings,
        spans,
        lock(&members).clone(),
        converged_after_ms,
        started.elapsed(),
        backend.summary(),
    );
    report
        .write(&options.out)
        .map_err(|source| RunError::Output {
            path: options.out.display().to_string(),
            source,
        })?;
    Ok(report)
}

/// Locks `m`; a poisoned lock still holds valid data here (a panicking
/// thread of the harness leaves nothing half-written that matters).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sleep_until(started: Instant, at: Duration) {
    if let Some(wait) = at.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

/// Stops the run's threads and kills its nodes when dropped.
struct Stopper {
    stop_sending: Arc<AtomicBool>,
    give_up: Arc<AtomicBool>,
    sampling: Arc<AtomicBool>,
}

impl Default for Stopper {
    fn default() -> Stopper {
        Stopper {
            stop_sending: Arc::new(AtomicBool::new(false)),
            give_up: Arc::new(AtomicBool::new(false)),
            sampling: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop_sending.store(true, Ordering::Relaxed);
        self.give_up.store(true, Ordering::Relaxed);
        self.sampling.store(false, Ordering::Relaxed);
        cluster::kill_all();
    }
}

/// Every 500 ms: how many members each running node sees up.
fn sample_members(
    cluster: &Mutex<Cluster>,
    samples: &Mutex<Vec<MemberSample>>,
    running: &AtomicBool,
    started: Instant,
) {
    while running.load(Ordering::Relaxed) {
        let urls = lock(cluster).up_urls();
        let seen: Vec<usize> = urls
            .iter()
            .filter_map(|url| check::members_up(url))
            .collect();
        lock(samples).push(MemberSample {
            t_s: started.elapsed().as_secs_f64(),
            min_up: seen.iter().copied().min().unwrap_or(0),
            max_up: seen.iter().copied().max().unwrap_or(0),
            answering: seen.len(),
        });
        std::thread::sleep(Duration::from_millis(500));
    }
}
