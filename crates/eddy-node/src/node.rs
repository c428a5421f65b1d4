//! Starting and stopping a node: registry, workers, HTTP server, readiness,
//! and the one shutdown signal every task listens to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eddy_cluster::{NodeId, NodeIdentity};
use eddy_core::{Behaviour, PartitionConfig, RegistryBuilder, RegistryError};
use ractor::{Actor, ActorRef};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerts::AlertHub;
use crate::cluster::{Cluster, DriverConfig};
use crate::config::{AckPolicy, NodeConfig};
use crate::framed::FrameLimits;
use crate::http::{AppState, router};
use crate::ingress::Ingress;
use crate::peer::PeerLinks;
use crate::worker::{Supervisor, SupervisorArgs, WorkerArgs};

/// Starting or running a node failed.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The kinds could not be registered.
    #[error("kinds: {0}")]
    Registry(#[from] RegistryError),
    /// A listening address could not be bound; nothing was started.
    #[error("{}", crate::cluster::bind_message(setting, *addr, source))]
    Bind {
        /// The setting that asked for the address (`http_addr`, …).
        setting: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The workers could not be started.
    #[error("cannot start partition workers: {0}")]
    Workers(String),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(String),
    /// The data directory could not be opened.
    #[error("data_dir: {0}")]
    Storage(String),
    /// The membership driver could not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The TLS files or the gossip key file could not be used.
    #[error("{0}")]
    Security(String),
    /// The tokens file could not be used; nothing was started.
    #[error(transparent)]
    Tokens(#[from] crate::auth::TokensError),
    /// The node would listen beyond loopback unprotected without
    /// `insecure = true`; nothing was started.
    #[error(transparent)]
    Exposure(#[from] crate::config::ConfigError),
}

/// Entry point for programs hosting behaviours:
/// `Node::builder().kind::<Fraud>().kind::<Vitals>().run()`.
pub struct Node;

impl Node {
    /// Starts describing a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            registry: eddy_core::Registry::builder(),
            fault_hook: false,
        }
    }
}

/// Collects the kinds a node hosts, and whether it takes injected faults.
pub struct NodeBuilder {
    registry: RegistryBuilder,
    /// Serve `POST /v1/admin/faults` ([`NodeBuilder::fault_hook`]).
    fault_hook: bool,
}

/// The node's TLS configurations and gossip seal from `tls_*` and
/// `gossip_key_file` (docs/SECURITY.md); `None` for each not configured.
fn load_security(
    config: &NodeConfig,
) -> Result<
    (
        Option<crate::tls::NodeTls>,
        Option<crate::gossip_seal::GossipSeal>,
    ),
    NodeError,
> {
    let tls = match config
        .tls_files()
        .map_err(|err| NodeError::Security(err.to_string()))?
    {
        Some(files) => {
            // Peers verify a node's certificate against its name.
            if !crate::tls::is_dns_name(&config.name) {
                return Err(NodeError::Security(format!(
                    "name `{}`: with TLS a node name must be a DNS name (letters, digits, `-`, `.`): peers check it in the node's certificate",
                    config.name
                )));
            }
            Some(
                crate::tls::NodeTls::load(&files)
                    .map_err(|err| NodeError::Security(err.to_string()))?,
            )
        }
        None => None,
    };
    let seal = match &config.gossip_key_file {
        Some(path) => Some(
            crate::gossip_seal::GossipSeal::from_file(path)
                .map_err(|err| NodeError::Security(err.to_string()))?,
        ),
        None => None,
    };
    tracing::debug!(
        tls = tls.is_some(),
        sealed_gossip = seal.is_some(),
        "transport security"
    );
    Ok((tls, seal))
}

/// What the start line says of TLS and the gossip key.
fn security_note(config: &NodeConfig) -> &'static str {
    match (config.tls_cert.is_some(), config.gossip_key_file.is_some()) {
        (true, true) => ", TLS with peer certificates, sealed gossip",
        (true, false) => ", TLS with peer certificates, gossip NOT sealed",
        (false, true) => ", sealed gossip, no TLS",
        (false, false) => "",
    }
}

/// Distinguishes the actor names of nodes started in one process (tests).
static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl NodeBuilder {
    /// Hosts behaviour `B`.
    pub fn kind<B: Behaviour>(mut self) -> Self {
        self.registry = self.registry.kind::<B>();
        self
    }

    /// Installs the fault hook: `POST /v1/admin/faults` turns injected
    /// network and storage faults on (`crate::faults`). Only a chaos
    /// binary (`eddy-chaos-node`) calls this; a node built without it has no
    /// such route (404) and nothing can turn a fault on. A binary installs
    /// the hook rather than a cargo feature compiling it in, because cargo
    /// unifies features: a feature any workspace member turned on would
    /// reach the `eddy` binary of every workspace build.
    pub fn fault_hook(mut self) -> Self {
        self.fault_hook = true;
        self
    }

    /// Starts the node inside the current tokio runtime.
    pub async fn start(self, config: NodeConfig) -> Result<RunningNode, NodeError> {
        // Create the recorder first so nothing counted at start is lost.
        let _ = crate::metrics::handle();
        // Before anything binds: an exposed, unprotected node never listens.
        config.check_exposure()?;
        let config = config.with_default_voters()?;
        let tokens = match &config.tokens_file {
            Some(path) => {
                let tokens = crate::auth::TokenStore::load(path)?;
                tracing::info!(tokens = %tokens.current().1.summary(), file = %path.display(), "API tokens required (SIGHUP reloads the file)");
                Some(Arc::new(tokens))
            }
            None => None,
        };
        if config.insecure {
            tracing::warn!(
                protected = ?config.protection(),
                "insecure = true: this node runs without every protection even if reachable from other machines"
            );
        }
        let registry = Arc::new(self.registry.build()?);
        let workers = config.worker_count();
        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let names: Vec<String> = (0..workers)
            .map(|i| format!("eddy-{}-{instance}-worker-{i}", config.name))
            .collect();
        let alerts = AlertHub::new(config.alert_buffer);
        let (tls, gossip_seal) = load_security(&config)?;
        let http_listener = bind_tcp("http_addr", config.http_addr).await?;
        let tcp_listener = bind_tcp("tcp_addr", config.tcp_addr).await?;
        let peer_listener = bind_tcp("peer_addr", config.peer_addr).await?;
        let gossip = crate::cluster::bind(config.gossip_addr).await?;
        let local_addr = |setting, addr: SocketAddr, bound: std::io::Result<SocketAddr>| {
            bound.map_err(|source| NodeError::Bind {
                setting,
                addr,
                source,
            })
        };
        let http_addr = local_addr("http_addr", config.http_addr, http_listener.local_addr())?;
        let tcp_addr = local_addr("tcp_addr", config.tcp_addr, tcp_listener.local_addr())?;
        let peer_addr = local_addr("peer_addr", config.peer_addr, peer_listener.local_addr())?;
        let gossip_addr = local_addr("gossip_addr", config.gossip_addr, gossip.local_addr())?;
        for (key, addr) in [
            ("http_addr", http_addr),
            ("tcp_addr", tcp_addr),
            ("peer_addr", peer_addr),
            ("gossip_addr", gossip_addr),
        ] {
            if addr.ip().is_unspecified() {
                tracing::warn!(key, %addr, "an unspecified address is advertised to peers as is; they cannot reach it on another machine");
            }
        }
        // The incarnation of this node's data: kept in data_dir, new at
        // every start without one (it lost everything it held). Found there:
        // an earlier process of this incarnation may have served (see
        // `ownership::OwnershipArgs::restarted`).
        let restarted = config
            .data_dir
            .as_ref()
            .is_some_and(|dir| dir.join(crate::incarnation::FILE).exists());
        let incarnation = match &config.data_dir {
            Some(dir) if config.is_voter() => crate::incarnation::load_or_create_voter(
                dir,
                &crate::control_log::ControlLog::path(dir),
            )
            .map_err(|err| NodeError::Storage(err.to_string()))?,
            Some(dir) => crate::incarnation::load_or_create(dir)
                .map_err(|err| NodeError::Storage(err.to_string()))?,
            None => crate::incarnation::fresh(),
        };
        let identity = NodeIdentity {
            protocol: eddy_cluster::PROTOCOL_VERSION,
            partitions: config.partitions,
            kinds: registry.fingerprint(),
            name: NodeId::new(&config.name),
            // A restarted process is a new member: its generation is newer.
            generation: crate::worker::now().0,
            incarnation,
            gossip_addr,
            peer_addr,
            http_addr,
            tcp_addr,
        };
        let faults = Arc::new(crate::faults::Faults::default());
        let storage = match &config.data_dir {
            Some(dir) => Some(
                crate::storage::Storage::open(dir)
                    .map_err(|err| NodeError::Storage(err.to_string()))?,
            ),
            None => None,
        };
        // The committed configuration places partitions.
        let (committed_tx, committed_rx) = watch::channel::<crate::control::Committed>(None);
        // Backups this node, as owner, finds unreachable: its serving ring
        // leaves them out, so another member stands in (isr_acks).
        let (unreachable_tx, unreachable_rx) = watch::channel(std::collections::BTreeSet::new());
        let cluster = Cluster::start(
            gossip,
            DriverConfig {
                faults: faults.clone(),
                identity: identity.clone(),
                membership: config.membership().with_seed(random_seed()),
                seeds: config.seeds.clone(),
                replication_factor: config.replication_factor,
                settle: Duration::from_millis(config.settle_ms),
                committed: committed_rx.clone(),
                unreachable: unreachable_rx,
                seal: gossip_seal,
                check: tls
                    .as_ref()
                    .map(|tls| crate::member_check::MemberCheck::new(tls.peer_connector.clone())),
            },
        )
        .await?;
        let peers = PeerLinks::new(
            identity.name.clone(),
            identity.params(),
            config.max_frame_bytes,
            faults.clone(),
            tls.as_ref().map(|tls| tls.peer_connector.clone()),
        );
        let partitions_per_worker = (config.partitions as usize).div_ceil(workers).max(1);
        let partition_config = PartitionConfig {
            idle_timeout_ms: config.idle_timeout_ms,
            max_active_keys: (config.max_active_keys / config.partitions as usize).max(1),
            hash_seed: random_seed(),
            ..PartitionConfig::default()
        };
        let mut untrusted = std::collections::BTreeSet::new();
        let (writer, recovered) = match (storage, &config.data_dir) {
            (Some(storage), Some(dir)) => {
                let reloaded = storage.load_all(|_| true, &registry, &partition_config);
                untrusted = crate::storage::untrusted_after_load(&reloaded);
                let (loaded, _) = reloaded;
                tracing::info!(copies = loaded.len(), dir = %dir.display(), fsync = %config.fsync, "partition copies loaded from disk");
                let fds = crate::fd_limit::raise_to_hard();
                tracing::debug!(?fds, "file descriptor limit");
                let writer = crate::writer::StorageWriter::start(
                    storage,
                    config.fsync,
                    config.partitions,
                    faults.clone(),
                )
                .map_err(|err| {
                    NodeError::Storage(format!("cannot start the storage writer: {err}"))
                })?;
                (Some(writer), loaded)
            }
            _ => (None, Vec::new()),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let control = start_control(
            &config,
            &identity,
            &cluster,
            &peers,
            committed_tx,
            &shutdown_rx,
        )?;
        let isr = crate::isr_acks::IsrAcks::new(
            control.clone(),
            names.clone(),
            config.min_insync(),
            unreachable_tx,
        );
        tokio::spawn(isr.clone().expire_unreachable(shutdown_rx.clone()));
        tokio::spawn(
            peers
                .clone()
                .keep_open(cluster.watch(), shutdown_rx.clone()),
        );
        let lost = crate::ownership::LostCopies::default();
        let worker = WorkerArgs {
            isr: isr.clone(),
            registry: registry.clone(),
            partition_config,
            alerts: alerts.clone(),
            tick: Duration::from_millis(config.tick_ms),
            index: 0,
            workers,
            cluster: cluster.watch(),
            links: peers.clone(),
            wait_for_backups: config.acks == AckPolicy::All,
            storage: writer,
            recovered: Arc::new(std::sync::Mutex::new(recovered)),
            damaged: Arc::new(untrusted.clone()),
            restarted: false,
            lost: lost.clone(),
        };
        let (supervisor, supervisor_task) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                worker,
                names: names.clone(),
            },
        )
        .await
        .map_err(|err| NodeError::Workers(err.to_string()))?;
        let ingress = Ingress::new(crate::ingress::IngressParts {
            isr: isr.clone(),
            registry,
            partitions: config.partitions,
            worker_names: names,
            max_inflight_events: config.max_inflight_events,
            alerts,
            cluster: cluster.watch(),
            peers: peers.clone(),
            wait_for_backups: config.acks == AckPolicy::All,
        });
        metrics::gauge!("eddy_partitions_owned").set(f64::from(config.partitions));
        tracing::debug!(partitions_per_worker, workers, "workers started");

        let leave = Arc::new(tokio::sync::Notify::new());
        let peer_server = tokio::spawn(crate::peer::serve(
            peer_listener,
            ingress.clone(),
            identity.name.clone(),
            FrameLimits {
                max_frame_bytes: config.max_frame_bytes,
                max_pending_requests: config.max_pending_requests,
                frame_read_timeout: Duration::from_millis(config.frame_read_timeout_ms),
                caps: config.connection_caps(),
                max_partial_frame_bytes: config.max_partial_frame_bytes,
            },
            crate::peer::Served {
                faults: faults.clone(),
                control: control.clone(),
                tls: tls.as_ref().map(|tls| tls.peer_acceptor.clone()),
            },
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::ownership::run(
            crate::ownership::OwnershipArgs {
                ingress: ingress.clone(),
                untrusted,
                lost,
                restarted,
                control: control.clone(),
            },
            shutdown_rx.clone(),
        ));
        let tcp = tokio::spawn(crate::tcp_ingress::serve(
            tcp_listener,
            ingress.clone(),
            crate::tcp_ingress::TcpLimits {
                max_frame_bytes: config.max_frame_bytes,
                max_pending_requests: config.max_pending_requests,
                max_batch_events: config.max_batch_events,
                frame_read_timeout: Duration::from_millis(config.frame_read_timeout_ms),
                caps: config.connection_caps(),
                max_partial_frame_bytes: config.max_partial_frame_bytes,
            },
            crate::tcp_ingress::Access {
                tls: tls.as_ref().map(|tls| tls.client_acceptor.clone()),
                tokens: tokens.clone(),
            },
            shutdown_rx.clone(),
        ));
        let history = Arc::new(std::sync::Mutex::new(crate::history::History::new(
            crate::history::HISTORY_SAMPLES,
        )));
        tokio::spawn(crate::history::sample(history.clone(), shutdown_rx.clone()));
        let app = router(
            AppState {
                history,
                ingress: ingress.clone(),
                max_batch_events: config.max_batch_events,
                shutdown: shutdown_rx.clone(),
                leave: leave.clone(),
                faults: faults.clone(),
                control: control.clone(),
                tokens: tokens.clone(),
                insecure: config.insecure,
            },
            config.max_body_bytes,
            self.fault_hook,
        );
        let server = tokio::spawn(crate::http_serve::serve(
            http_listener,
            app,
            config.http_limits(),
            tls.as_ref().map(|tls| tls.client_acceptor.clone()),
            shutdown_rx,
        ));
        // Serve only once this node is a committed member and its
        // partitions are taken; the HTTP and TCP ports answer 503 meanwhile.
        // Forming a cluster may need voters started after this one: while
        // the controller waits for them, say so at once instead of holding
        // the start (and the addresses it prints) back.
        let ready_by = tokio::time::Instant::now() + READY_WAIT;
        while !ingress.is_ready() && tokio::time::Instant::now() < ready_by {
            let waiting = control.view().state.starts_with("waiting for voters");
            if waiting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !ingress.is_ready() {
            let why = ingress
                .cluster()
                .no_quorum_reason()
                .unwrap_or_else(|| "partitions not taken over".into());
            tracing::warn!("not ready yet ({why}); serving 503 until it is");
        }
        // At debug: `run_with` prints the one summary line a person reads.
        tracing::debug!(node = %config.name, %http_addr, %tcp_addr, %gossip_addr, %peer_addr, workers, partitions = config.partitions, "node ready");
        let me = eddy_control::MemberId::new(identity.name.clone(), identity.incarnation);
        Ok(RunningNode {
            http_addr,
            tcp_addr,
            gossip_addr,
            peer_addr,
            cluster,
            peer_server,
            leave,
            drain: Duration::from_millis(config.settle_ms + 500),
            staying: tokio::spawn(stay(control.clone(), committed_rx.clone(), me.clone())),
            committed: committed_rx,
            me,
            control,
            tcp,
            ingress,
            shutdown,
            server,
            supervisor,
            supervisor_task,
            tokens,
        })
    }

    /// Runs a node from the process's command line (`--config`, `--set`, …)
    /// until SIGINT or SIGTERM; returns the process exit code.
    pub fn run(self) -> std::process::ExitCode {
        use clap::Parser;
        self.run_with(crate::cli::NodeCommand::parse().args)
    }

    /// [`run`](Self::run) with already parsed arguments.
    pub fn run_with(self, args: crate::cli::NodeArgs) -> std::process::ExitCode {
        let config = match args.load() {
            Ok(config) => config,
            Err(err) => {
                eprintln!("error: {err}");
                return std::process::ExitCode::from(2);
            }
        };
        crate::logging::init(config.log_format);
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("error: cannot start the async runtime: {err}");
                return std::process::ExitCode::FAILURE;
            }
        };
        runtime.block_on(async move {
            let node = match self.start(config.clone()).await {
                Ok(node) => node,
                Err(err) => {
                    eprintln!("error: {err}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            // The one line a person starting a node needs; tools and tests
            // read the actual addresses from it (words split on spaces).
            println!(
                "eddy node {} listening on {}://{} tcp://{} gossip://{} peer://{} ({} partitions, replication_factor {}, data_dir {}{})",
                config.name,
                if config.tls_cert.is_some() { "https" } else { "http" },
                node.http_addr(),
                node.tcp_addr(),
                node.gossip_addr(),
                node.peer_addr(),
                config.partitions,
                config.replication_factor,
                config
                    .data_dir
                    .as_deref()
                    .map_or_else(|| "none: state in memory only".into(), |d| d.display().to_string()),
                security_note(&config),
            );
            let mut hangups = hangups();
            loop {
                tokio::select! {
                    () = wait_for_signal() => break,
                    () = node.leave_requested() => break,
                    Some(()) = hangups.recv() => node.reload_tokens(),
                }
            }
            tracing::info!("stopping");
            match node.stop().await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err}");
                    std::process::ExitCode::FAILURE
                }
            }
        })
    }
}

/// SIGHUPs, one message each (never any where there are none).
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGHUP; tokens reload only on restart")
            }
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How long a start waits for the node to be ready before it returns (and
/// the binary prints its addresses) anyway, serving 503 until it is.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Starts the controller driver, which places partitions. A voter opens
/// its Raft log in `data_dir` (a damaged log stops the node, never loaded
/// silently); a lone voter without `data_dir` keeps it in memory.
fn start_control(
    config: &NodeConfig,
    identity: &NodeIdentity,
    cluster: &Cluster,
    peers: &PeerLinks,
    committed: watch::Sender<crate::control::Committed>,
    shutdown: &watch::Receiver<bool>,
) -> Result<crate::control::ControlHandle, NodeError> {
    let log = match (&config.data_dir, config.is_voter()) {
        (Some(dir), true) => {
            let opened = crate::control_log::ControlLog::open(dir)
                .map_err(|err| NodeError::Storage(err.to_string()))?;
            if opened.torn_bytes > 0 {
                metrics::counter!("eddy_storage_damaged_total").increment(1);
                tracing::warn!(
                    bytes = opened.torn_bytes,
                    "dropped a torn last record of the Raft log (a crash mid-write; it was never acknowledged)"
                );
            }
            Some(opened.log)
        }
        // Config validation: only a lone voter has no data_dir.
        (None, true) => Some(crate::control_log::ControlLog::in_memory()),
        (_, false) => None,
    };
    let handle = crate::control::start(
        crate::control::ControlArgs {
            identity: identity.clone(),
            voters: config.voters.iter().map(|v| NodeId::new(v)).collect(),
            log,
            tick: Duration::from_millis(config.controller_tick_ms),
            partitions: config.partitions,
            replication: config.replication_factor,
            cluster: cluster.watch(),
            links: peers.apart(),
            committed,
        },
        shutdown.clone(),
    )
    .map_err(NodeError::Storage)?;
    Ok(handle)
}

async fn bind_tcp(
    setting: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            setting,
            addr,
            source,
        })
}

/// Seeds the key maps' hasher so clients cannot precompute colliding keys.
/// Not used for anything that must be reproducible.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// How long a leaving node waits for the others without seeing one more
/// of its partitions re-placed before it stops anyway.
const HAND_OVER_STALLED: Duration = Duration::from_secs(5);
/// The longest a leave waits for its hand-over: under Kubernetes' default
/// 30 s grace period, so the process still exits on its own.
const HAND_OVER_MAX: Duration = Duration::from_secs(20);

/// Waits, while it makes progress and at most [`HAND_OVER_MAX`], until no
/// partition counts on this node any more
/// (`eddy_control::ClusterConfig::partitions_held_by`): after its
/// `SetDraining`, the planner moved its ownerships to the others, brought
/// substitute copies in sync and dropped it from every ISR — so no write is
/// refused for want of the copy it held (min_insync_replicas) and nothing
/// rests on its data once it is gone. It serves as a backup meanwhile.
async fn handed_over(
    mut committed: watch::Receiver<crate::control::Committed>,
    me: &eddy_control::MemberId,
) {
    // Ownerships move first (elections), then copies (expansions, trims):
    // either is progress.
    let held = |committed: &crate::control::Committed| {
        committed.as_ref().map_or(0, |config| {
            let owned = config
                .assignments()
                .iter()
                .filter(|a| a.owner.as_ref() == Some(me))
                .count();
            config.partitions_held_by(me) + owned
        })
    };
    let give_up = tokio::time::Instant::now() + HAND_OVER_MAX;
    let mut left = held(&committed.borrow_and_update());
    let mut stalled = tokio::time::Instant::now() + HAND_OVER_STALLED;
    while left > 0 {
        match tokio::time::timeout_at(stalled.min(give_up), committed.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                tracing::warn!(
                    partitions = left,
                    "stopping while partitions still count on this node's copies (503 for their writes until the others caught up)"
                );
                return;
            }
        }
        let now = held(&committed.borrow_and_update());
        if now < left {
            stalled = tokio::time::Instant::now() + HAND_OVER_STALLED;
        }
        left = now;
    }
    tracing::info!("every partition re-placed on the others");
}

/// How long no owner may have shipped to a leaving node before it goes:
/// longer than an owner's periodic check of its backups, which goes on
/// while the owner counts this node among them.
const UNSHIPPED_FOR: Duration =
    crate::worker::OWNER_CHECK_EVERY.saturating_add(Duration::from_millis(500));
/// The longest a leave waits for that quiet (an owner cut off from the
/// controller may never learn of the hand-over).
const UNSHIPPED_MAX: Duration = Duration::from_secs(5);

/// Waits, at most [`UNSHIPPED_MAX`], until no owner ships to this node:
/// the owners apply the hand-over [`handed_over`] saw committed a moment
/// later, and until then they still count this node's copy among those a
/// write needs — gone, it would have them refuse writes.
async fn until_unshipped(ingress: &Ingress) {
    let give_up = tokio::time::Instant::now() + UNSHIPPED_MAX;
    while ingress.shipped_here_within(UNSHIPPED_FOR) {
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!("stopping while owners still ship to this node as a backup");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes this node back into the ring placement whenever the committed
/// configuration shows it draining — a node that left gracefully and came
/// back with its `data_dir` — until aborted (by [`RunningNode::stop`]).
async fn stay(
    control: crate::control::ControlHandle,
    mut committed: watch::Receiver<crate::control::Committed>,
    me: eddy_control::MemberId,
) {
    const AGAIN_AFTER: Duration = Duration::from_secs(2);
    loop {
        let draining = committed
            .borrow_and_update()
            .as_ref()
            .is_some_and(|config| config.is_draining(&me));
        if draining {
            control.propose_many(vec![eddy_control::Command::SetDraining {
                member: me.clone(),
                draining: false,
            }]);
            tokio::time::sleep(AGAIN_AFTER).await;
            continue;
        }
        if committed.changed().await.is_err() {
            return;
        }
    }
}

/// A started node.
pub struct RunningNode {
    http_addr: SocketAddr,
    tcp_addr: SocketAddr,
    gossip_addr: SocketAddr,
    peer_addr: SocketAddr,
    cluster: Cluster,
    peer_server: JoinHandle<()>,
    leave: Arc<tokio::sync::Notify>,
    drain: Duration,
    /// The committed configuration, which a leave waits on.
    committed: watch::Receiver<crate::control::Committed>,
    me: eddy_control::MemberId,
    control: crate::control::ControlHandle,
    /// Undoes a drain this node finds committed ([`stay`]); ended by a leave.
    staying: JoinHandle<()>,
    tcp: JoinHandle<()>,
    ingress: Ingress,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), NodeError>>,
    supervisor: ActorRef<()>,
    supervisor_task: JoinHandle<()>,
    tokens: Option<Arc<crate::auth::TokenStore>>,
}

impl RunningNode {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound binary-protocol address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound gossip (UDP) address.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// The bound peer-link address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Reads the tokens file again and puts it in force for the next
    /// request on every port (SIGHUP does this). A file that does not load
    /// leaves the tokens in force; both outcomes are logged. No-op without
    /// a tokens file.
    pub fn reload_tokens(&self) {
        let Some(store) = &self.tokens else {
            tracing::info!("no tokens_file configured; nothing to reload");
            return;
        };
        match store.reload() {
            Ok(tokens) => {
                metrics::counter!("eddy_token_reloads_total", "outcome" => "ok").increment(1);
                tracing::info!(tokens = %tokens.summary(), file = %store.path().display(), "API tokens reloaded");
            }
            Err(err) => {
                metrics::counter!("eddy_token_reloads_total", "outcome" => "failed").increment(1);
                tracing::error!(%err, "API tokens not reloaded; the previous tokens stay in force");
            }
        }
    }

    /// Resolves when `POST /v1/admin/leave` asked the node to leave.
    pub async fn leave_requested(&self) {
        self.leave.notified().await;
    }

    /// The ingress handle, for in-process use.
    pub fn ingress(&self) -> &Ingress {
        &self.ingress
    }

    /// Leaves the cluster, lets the others take over (they promote the
    /// backups of our partitions) while open requests finish, then stops.
    pub async fn stop(self) -> Result<(), NodeError> {
        self.ingress.set_ready(false);
        // Writes already taken finish first (bounded): one deposed by the
        // hand-over below would be refused with a 503.
        // (A batch that passed the readiness check just before takes its
        // budget a moment later: look only after that moment.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        let quiet_by = tokio::time::Instant::now() + Duration::from_secs(2);
        while !self.ingress.is_idle() && tokio::time::Instant::now() < quiet_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Out of the ring first, still live: the others take over our
        // ownerships and copies while we serve as a backup.
        self.staying.abort();
        self.control
            .propose_many(vec![eddy_control::Command::SetDraining {
                member: self.me.clone(),
                draining: true,
            }]);
        handed_over(self.committed, &self.me).await;
        until_unshipped(&self.ingress).await;
        // Then gone from gossip: peers need not wait for detection.
        self.cluster.leave().await;
        tokio::time::sleep(self.drain).await;
        let _ = self.shutdown.send(true);
        let _ = self.tcp.await;
        let _ = self.peer_server.await;
        let served = match self.server.await {
            Ok(result) => result,
            Err(err) => Err(NodeError::Http(err.to_string())),
        };
        self.supervisor
            .stop_children_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        self.supervisor.stop(None);
        let _ = self.supervisor_task.await;
        served
    }
}
