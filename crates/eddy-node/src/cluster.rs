//! The membership driver: `eddy_cluster::Membership` wired to a UDP socket,
//! tokio timers and the node's view of the partition table.
//!
//! One task owns the socket and the state machine. Datagrams and due timers go
//! in with the time; datagrams, timers and events come out and are sent,
//! scheduled (in order) and logged. When the membership view changes, the
//! partition table is recomputed after `settle_ms` (DESIGN §11: a burst of
//! changes moves partitions once) and published as a [`ClusterState`] on a
//! watch channel that ingress, HTTP and the peer links read. With a
//! controller (`voters` configured) the table is the committed
//! configuration's instead, adopted as soon as it is published.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_cluster::{
    MemberEntry, MemberStatus, Membership, MembershipConfig, MembershipEvent, MembershipTimer,
    NodeId, NodeIdentity, PartitionTable, Placement,
};
use eddy_control::{ClusterConfig, MemberId};
use eddy_core::{PartitionId, Timestamp};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::control::Committed;
use crate::control_plan::RingCache;
use crate::remembered::{MembershipFile, Remembered};

/// Distinct sources of bad datagrams logged at warn level; later ones are
/// only counted, so garbage cannot flood the log.
const MAX_LOGGED_BAD_SOURCES: usize = 64;

/// How often a majority base that could not be written is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(1);

/// The cluster as this node sees it, published on every change.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// This node.
    pub local: NodeIdentity,
    /// Every member known (up, suspect, or recently down), by name.
    pub members: Vec<MemberEntry>,
    /// Version of the membership view the members come from.
    pub view_version: u64,
    /// Partition table and epochs, recomputed after the settle delay.
    pub placement: Placement,
    /// The majority base of the keep-majority rule: the most members this
    /// node has seen live at once (remembered with `data_dir`); it grows
    /// with the cluster and falls only when the operator forgets members
    /// that are down (`POST /v1/admin/forget-down`).
    pub stable_members: usize,
    /// Rises each time this node regains a quorum ([`Self::has_quorum`])
    /// after losing it. A counter, not a flag, so a reader that was busy
    /// while the node was cut off still learns that it was.
    pub quorum_regained: u64,
    /// With a controller (`voters` configured): the placement is the
    /// committed configuration's, not the ring over the live view, and
    /// this node serves only as a committed member. `None` in that mode
    /// until the first configuration arrives.
    pub committed: Option<Arc<ClusterConfig>>,
    /// Whether the controller decides placement (then keep-majority and
    /// the majority base play no part).
    pub controlled: bool,
}

impl ClusterState {
    /// Live members in this view.
    pub fn live_count(&self) -> usize {
        self.members.iter().filter(|m| m.status.is_live()).count()
    }

    /// Keep-majority (DESIGN §6): whether this node sees more than half of
    /// its majority base. A node that does not stops acknowledging
    /// writes, so the minority side of a network split cannot accept writes
    /// the majority side will never see.
    pub fn sees_majority(&self) -> bool {
        self.live_count() * 2 > self.stable_members
    }

    /// Whether this node may acknowledge writes and take partitions over:
    /// it sees a majority *and* its partition table was computed from one.
    /// The table lags the view by the settle delay; a node back from a
    /// minority sees the majority again before its table does, and a table
    /// of the minority names too few backups (found by eddy-chaos
    /// `partitions`: an isolated node, healed, acknowledged writes with no
    /// backup for 100 ms under its one-node table, and lost them).
    pub fn has_quorum(&self) -> bool {
        if self.controlled {
            return self.committed_member();
        }
        self.sees_majority() && self.table_has_majority()
    }

    /// This node's identity as the controller knows members.
    pub fn member_id(&self) -> MemberId {
        MemberId::new(self.local.name.clone(), self.local.incarnation)
    }

    /// Whether this very incarnation is a committed member.
    pub fn committed_member(&self) -> bool {
        self.committed
            .as_ref()
            .is_some_and(|c| c.is_member(&self.member_id()))
    }

    /// Whether the partition table was computed from a majority of the base.
    fn table_has_majority(&self) -> bool {
        self.placement.table().nodes().len() * 2 > self.stable_members
    }

    /// Why this node refuses writes now (`None`: it has a quorum).
    pub fn no_quorum_reason(&self) -> Option<String> {
        if self.controlled {
            return match &self.committed {
                _ if self.committed_member() => None,
                None => {
                    Some("this node has not learnt the committed cluster configuration yet".into())
                }
                Some(_) => Some(format!(
                    "{} is not a committed member of the cluster (yet)",
                    self.member_id()
                )),
            };
        }
        if !self.sees_majority() {
            return Some(format!(
                "this node sees {} of the {} members of its majority base, no majority",
                self.live_count(),
                self.stable_members
            ));
        }
        (!self.table_has_majority()).then(|| {
            format!(
                "this node's partition table holds {} of the {} members of its majority base (computed while it saw no majority); it is being recomputed",
                self.placement.table().nodes().len(),
                self.stable_members
            )
        })
    }

    /// The identity of a live member by name.
    pub fn live_member(&self, name: &NodeId) -> Option<&NodeIdentity> {
        self.members
            .iter()
            .find(|m| &m.identity.name == name && m.status.is_live())
            .map(|m| &m.identity)
    }

    /// Whether `name` is this node.
    pub fn is_local(&self, name: &NodeId) -> bool {
        *name == self.local.name
    }
}

/// The driver could not start.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The gossip socket could not be bound.
    #[error("{}", bind_message("gossip_addr", *addr, source))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A seed address did not resolve.
    #[error("seed `{seed}` does not resolve: {source}")]
    Seed {
        /// The seed as configured.
        seed: String,
        /// Why.
        source: std::io::Error,
    },
    /// The membership state machine refused its configuration.
    #[error("membership: {0}")]
    Membership(#[from] eddy_cluster::MembershipError),
}

/// What the driver needs to start.
pub struct DriverConfig {
    /// This node's identity with `gossip_addr` set to the bound socket.
    pub identity: NodeIdentity,
    /// SWIM settings.
    pub membership: MembershipConfig,
    /// Seeds as configured (`host:port`).
    pub seeds: Vec<String>,
    /// Replication factor of the table.
    pub replication_factor: usize,
    /// Settle delay before recomputing the table.
    pub settle: Duration,
    /// Injected network faults (chaos testing).
    pub faults: Arc<crate::faults::Faults>,
    /// Where the majority base is remembered (with `data_dir`).
    pub remember: Option<MembershipFile>,
    /// What was remembered there at start.
    pub remembered: Option<Remembered>,
    /// Rung when the operator lowers the majority base to the live count.
    pub forget: Arc<tokio::sync::Notify>,
    /// The majority base when nothing is remembered (`bootstrap_expect`).
    pub bootstrap_expect: usize,
    /// With a controller: the committed configuration, which then decides
    /// the placement.
    pub committed: Option<watch::Receiver<Committed>>,
    /// Seals every datagram with the cluster's gossip key
    /// (`gossip_key_file`); `None`: plain gossip.
    pub seal: Option<crate::gossip_seal::GossipSeal>,
    /// With TLS: members count once their certificate is verified
    /// ([`crate::member_check`]); `None`: every live member counts.
    pub check: Option<crate::member_check::MemberCheck>,
}

/// Milliseconds since the driver's start: the membership clock. Monotonic,
/// so wall-clock jumps cannot fire or delay SWIM timers.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Timestamp {
        Timestamp(u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Timestamp) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + Duration::from_millis(at.0))
    }
}

/// A running driver: its published state and the way to leave.
pub struct Cluster {
    state: watch::Receiver<Arc<ClusterState>>,
    leave: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Why an address could not be bound, naming the setting behind it and, for
/// a port in use, what to do: `http_addr 127.0.0.1:8080 is in use; …`.
pub fn bind_message(setting: &str, addr: SocketAddr, source: &std::io::Error) -> String {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "{setting} {addr} is in use (another eddy node?); stop it, or choose a free port with --set {setting}=\"{}:PORT\" (port 0 picks one)",
            addr.ip()
        )
    } else {
        format!("{setting} {addr}: cannot listen: {source}")
    }
}

/// Binds the gossip socket; the identity needs its actual address (port 0).
pub async fn bind(addr: SocketAddr) -> Result<UdpSocket, ClusterError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| ClusterError::Bind { addr, source })
}

impl Cluster {
    /// Starts the driver on `socket` and announces to the seeds.
    pub async fn start(socket: UdpSocket, config: DriverConfig) -> Result<Cluster, ClusterError> {
        let clock = Clock(Instant::now());
        let mut seeds = Vec::new();
        for seed in &config.seeds {
            let resolved = tokio::net::lookup_host(seed.as_str())
                .await
                .map_err(|source| ClusterError::Seed {
                    seed: seed.clone(),
                    source,
                })?;
            seeds.extend(resolved.filter(SocketAddr::is_ipv4).take(1));
        }
        let mut membership =
            Membership::new(config.identity.clone(), &config.membership, clock.now())?;
        let placement = Placement::new(
            std::slice::from_ref(&config.identity.name),
            config.identity.partitions,
            config.replication_factor,
        );
        let state = ClusterState {
            local: config.identity.clone(),
            members: membership.view().iter().cloned().collect(),
            view_version: membership.view().version(),
            placement,
            // A restarted node counts the majority against the base it
            // remembers, a new one against `bootstrap_expect`, not against
            // itself alone.
            stable_members: config
                .remembered
                .as_ref()
                .map_or(config.bootstrap_expect, |r| r.stable_members)
                .max(1),
            quorum_regained: 0,
            committed: None,
            controlled: config.committed.is_some(),
        };
        metrics::gauge!("eddy_majority_base").set(state.stable_members as f64);
        if let Some(remembered) = &config.remembered {
            tracing::info!(
                stable_members = remembered.stable_members,
                members = ?remembered.members,
                "remembered a majority base; serving once a majority of it is back"
            );
        }
        let (publish, state_rx) = watch::channel(Arc::new(state));
        if let Err(err) = membership.join(&seeds, clock.now()) {
            // A seed that cannot be announced to now is retried by the
            // join-retry timer; not fatal.
            tracing::warn!(%err, "announce to seeds failed");
        }
        let (leave, leave_rx) = tokio::sync::oneshot::channel();
        let driver = Driver {
            socket,
            membership,
            clock,
            timers: BTreeMap::new(),
            timer_seq: 0,
            publish,
            settle: config.settle,
            faults: config.faults,
            settle_at: None,
            bad_sources: BTreeSet::new(),
            leaving: false,
            forget: config.forget,
            had_quorum: true,
            remember: config.remember,
            unsaved: None,
            ring: RingCache::default(),
            seal: config.seal,
            check: config.check,
            check_retry: None,
        };
        let task = tokio::spawn(driver.run(leave_rx, config.committed));
        Ok(Cluster {
            state: state_rx,
            leave: Some(leave),
            task,
        })
    }

    /// A receiver of every published state.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// Tells the cluster we leave (so peers need not wait for the failure
    /// detector) and stops the driver.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}

struct Driver {
    socket: UdpSocket,
    membership: Membership,
    clock: Clock,
    timers: BTreeMap<(Timestamp, u64), MembershipTimer>,
    timer_seq: u64,
    publish: watch::Sender<Arc<ClusterState>>,
    settle: Duration,
    faults: Arc<crate::faults::Faults>,
    settle_at: Option<tokio::time::Instant>,
    bad_sources: BTreeSet<SocketAddr>,
    leaving: bool,
    /// Rung by `POST /v1/admin/forget-down`.
    forget: Arc<tokio::sync::Notify>,
    /// Whether the last published state had a quorum.
    had_quorum: bool,
    /// Where a new majority base is written.
    remember: Option<MembershipFile>,
    /// A base that could not be written yet, and when to try again: a base
    /// only in memory is forgotten by a restart (found by the chaos review:
    /// a node that joined with a new `data_dir` was left without the file).
    unsaved: Option<tokio::time::Instant>,
    ring: RingCache,
    /// The gossip key: datagrams that do not open with it never reach the
    /// membership (a stranger can neither join nor forge members).
    seal: Option<crate::gossip_seal::GossipSeal>,
    /// Certificate checks of members (with TLS).
    check: Option<crate::member_check::MemberCheck>,
    /// When failed checks are tried again.
    check_retry: Option<tokio::time::Instant>,
}

/// The next finished member check; never, without checks.
async fn next_check(
    check: &mut Option<crate::member_check::MemberCheck>,
) -> Option<crate::member_check::Outcome> {
    match check {
        Some(check) => check.next().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(
        mut self,
        mut leave: tokio::sync::oneshot::Receiver<()>,
        mut committed: Option<watch::Receiver<Committed>>,
    ) {
        let mut buf = vec![0u8; 65_536];
        self.flush().await;
        loop {
            let committed_changed = async {
                match committed.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let next_timer = self
                .timers
                .keys()
                .next()
                .map(|(at, _)| self.clock.instant(*at));
            let timer_due = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let settle_at = self.settle_at;
            let settled = async {
                match settle_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let check_retry = self.check_retry;
            let retry_checks = async {
                match check_retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let unsaved = self.unsaved;
            let retry_save = async {
                match unsaved {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((_, from)) if !self.faults.gossip_in(from) => {}
                    Ok((len, from)) => self.received(from, len, &mut buf),
                    Err(err) => tracing::debug!(%err, "gossip receive failed"),
                },
                () = timer_due => {
                    let now = self.clock.now();
                    // Due timers in order (DESIGN §6: foca needs them ordered).
                    while let Some(entry) = self.timers.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let timer = entry.remove();
                        if let Err(err) = self.membership.handle_timer(timer, now) {
                            tracing::debug!(%err, "membership timer");
                        }
                    }
                }
                () = settled => {
                    self.settle_at = None;
                    self.recompute();
                }
                alive = committed_changed => match (alive, committed.as_mut()) {
                    (true, Some(rx)) => {
                        let config = rx.borrow_and_update().clone();
                        self.adopt(config);
                    }
                    // The controller stopped: the placement stays as it is.
                    _ => committed = None,
                },
                Some(outcome) = next_check(&mut self.check) => {
                    let admitted = self.check.as_mut().is_some_and(|c| c.record(outcome));
                    if admitted {
                        self.members_changed();
                    }
                    self.start_checks();
                }
                () = retry_checks => {
                    self.check_retry = None;
                    self.start_checks();
                }
                () = self.forget.notified() => self.forget_down(),
                () = retry_save => self.retry_save(),
                _ = &mut leave => {
                    let now = self.clock.now();
                    if let Err(err) = self.membership.leave(now) {
                        tracing::debug!(%err, "leave");
                    }
                    self.leaving = true;
                    self.flush().await;
                    tracing::info!("left the cluster");
                    return;
                }
            }
            self.flush().await;
        }
    }

    /// Hands a received datagram (`buf[..len]`) to the membership, opening
    /// it first when gossip is sealed.
    fn received(&mut self, from: SocketAddr, len: usize, buf: &mut [u8]) {
        let payload = match &self.seal {
            Some(seal) => match seal.open(&mut buf[..len]) {
                Ok(payload) => payload,
                Err(err) => return self.bad_datagram(from, &err),
            },
            None => &buf[..len],
        };
        let now = self.clock.now();
        if let Err(err) = self.membership.handle_datagram(payload, now) {
            self.bad_datagram(from, &err);
        }
    }

    fn bad_datagram(&mut self, from: SocketAddr, err: &dyn std::fmt::Display) {
        metrics::counter!("eddy_gossip_bad_datagrams_total").increment(1);
        if self.bad_sources.len() < MAX_LOGGED_BAD_SOURCES && self.bad_sources.insert(from) {
            tracing::warn!(%from, %err, "dropped a datagram on the gossip port (further ones from this source are only counted)");
        }
    }

    /// Sends what the state machine produced, schedules its timers, reacts
    /// to its events.
    async fn flush(&mut self) {
        let datagrams: Vec<_> = self.membership.drain_datagrams().collect();
        for datagram in datagrams {
            if !self.faults.gossip_out(datagram.to) {
                continue;
            }
            let sealed;
            let bytes = match &self.seal {
                Some(seal) => match seal.seal(&datagram.bytes) {
                    Ok(bytes) => {
                        sealed = bytes;
                        &sealed
                    }
                    Err(err) => {
                        tracing::error!(%err, "gossip datagram not sent");
                        continue;
                    }
                },
                None => &datagram.bytes,
            };
            if let Err(err) = self.socket.send_to(bytes, datagram.to).await {
                tracing::debug!(to = %datagram.to, %err, "gossip send failed");
            }
        }
        let timers: Vec<_> = self.membership.drain_timers().collect();
        for timer in timers {
            self.timer_seq += 1;
            self.timers.insert((timer.at, self.timer_seq), timer.timer);
        }
        let events: Vec<_> = self.membership.drain_events().collect();
        let mut changed = false;
        for event in events {
            match event {
                MembershipEvent::Up(id) => {
                    tracing::info!(member = %id.name, gossip = %id.gossip_addr, "member up");
                    changed = true;
                }
                MembershipEvent::Suspect(id) => {
                    tracing::info!(member = %id.name, "member suspected");
                    changed = true;
                }
                MembershipEvent::Down(id) => {
                    tracing::warn!(member = %id.name, "member down");
                    metrics::counter!("eddy_members_down_total").increment(1);
                    changed = true;
                }
                MembershipEvent::Refused { identity, reason } => {
                    // A refused node keeps gossiping; one line a second at most.
                    crate::warn_limited!(member = %identity.name, gossip = %identity.gossip_addr, %reason, "refused a node: it cannot join this cluster");
                    metrics::counter!("eddy_members_refused_total").increment(1);
                }
                MembershipEvent::Rejoined(id) => {
                    tracing::warn!(
                        generation = id.generation,
                        "the cluster declared this node down; rejoined as a new member"
                    );
                    changed = true;
                }
                MembershipEvent::Active => tracing::info!("joined the cluster"),
                MembershipEvent::Idle => tracing::info!("no other members known; retrying seeds"),
                // Leaving makes foca report us defunct; that is the point.
                MembershipEvent::Defunct if self.leaving => {}
                MembershipEvent::Defunct => tracing::error!("declared down by the cluster"),
            }
        }
        if changed {
            self.start_checks();
            self.members_changed();
        }
    }

    /// Publishes the members and schedules the table's recomputation.
    fn members_changed(&mut self) {
        self.publish_members();
        if self.settle_at.is_none() {
            self.settle_at = Some(tokio::time::Instant::now() + self.settle);
        }
    }

    /// Starts certificate checks of live members not admitted yet.
    fn start_checks(&mut self) {
        let Some(check) = &mut self.check else {
            return;
        };
        let members: Vec<MemberEntry> = self.membership.view().iter().cloned().collect();
        self.check_retry = check.start(&members, &self.membership.identity().name);
    }

    /// Whether a member counts: this node, any member without TLS, a
    /// member whose certificate was verified with it.
    fn admitted(&self, identity: &NodeIdentity) -> bool {
        self.check.as_ref().is_none_or(|check| {
            identity.name == self.membership.identity().name || check.admitted(identity)
        })
    }

    /// Live members that count, sorted by name: the table's input.
    fn live_admitted(&self) -> Vec<eddy_cluster::NodeId> {
        self.membership
            .view()
            .iter()
            .filter(|m| m.status.is_live() && self.admitted(&m.identity))
            .map(|m| m.identity.name.clone())
            .collect()
    }

    /// `POST /v1/admin/forget-down`: the operator says the members down now
    /// are gone for good; the base becomes the live count.
    fn forget_down(&mut self) {
        let live = self.publish.borrow().live_count();
        tracing::warn!(
            members = live,
            "members down forgotten by the operator; majority base set to the live count"
        );
        self.publish_change(|state| state.stable_members = live);
        self.remember_base(live);
    }

    /// Records a new majority base: the gauge, and `membership.json` with
    /// `data_dir`. (A small synchronous write, only when the base moves.)
    /// A failed write is retried every second until one succeeds.
    fn remember_base(&mut self, members: usize) {
        metrics::gauge!("eddy_majority_base").set(members as f64);
        let Some(file) = &self.remember else {
            return;
        };
        let remembered = Remembered {
            stable_members: members,
            members: self
                .live_admitted()
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        match file.save(&remembered) {
            Ok(()) => {
                if self.unsaved.take().is_some() {
                    tracing::info!(members, "majority base remembered");
                }
            }
            Err(err) => {
                metrics::counter!("eddy_storage_write_errors_total").increment(1);
                if self.unsaved.is_none() {
                    tracing::error!(%err, "cannot remember the majority base; retrying every second");
                }
                self.unsaved = Some(tokio::time::Instant::now() + SAVE_RETRY);
            }
        }
    }

    fn retry_save(&mut self) {
        if self.unsaved.is_some() {
            // The base now, which later changes may have moved.
            let current = self.publish.borrow().stable_members;
            self.remember_base(current);
        }
    }

    /// Publishes a change of the state, counting a regained quorum (see
    /// [`ClusterState::quorum_regained`]) in the same publication: no
    /// reader may see the quorum back without the count moved.
    fn publish_change(&mut self, change: impl FnOnce(&mut ClusterState)) {
        let had = self.had_quorum;
        let mut quorum = had;
        self.publish.send_modify(|state| {
            let state = Arc::make_mut(state);
            change(state);
            quorum = state.has_quorum();
            if quorum && !had {
                state.quorum_regained += 1;
            }
        });
        if quorum && !had {
            tracing::info!("this node has a quorum again");
        }
        self.had_quorum = quorum;
    }

    fn publish_members(&mut self) {
        let before = self.publish.borrow().live_count();
        let view = self.membership.view();
        let members: Vec<MemberEntry> = view
            .iter()
            .filter(|m| self.admitted(&m.identity))
            .cloned()
            .collect();
        let version = view.version();
        let local = self.membership.identity().clone();
        // The base rises with the live count in the same publication: when
        // more members are live than ever, at once (a node cut off right
        // after the cluster formed must not count against a base of one).
        // It never falls on failures: members the detector calls down may
        // be alive on the other side of a split, and a base lowered to a
        // majority of the rest let both sides of a 2/3 split of five nodes
        // acknowledge (found by eddy-chaos `split-brain`: 12,183
        // acknowledged events lost). Only the operator lowers it
        // ([`Self::forget_down`]).
        let mut grown = None;
        self.publish_change(|state| {
            state.members = members;
            state.view_version = version;
            state.local = local;
            let live = state.live_count();
            if live > state.stable_members {
                state.stable_members = live;
                grown = Some(live);
            }
        });
        if let Some(live) = grown {
            tracing::info!(
                members = live,
                "more members live than ever; majority base raised"
            );
            self.remember_base(live);
        }
        let after = self.publish.borrow().live_count();
        if after != before {
            let state = self.publish.borrow().clone();
            if !state.sees_majority() {
                tracing::error!(
                    live = after,
                    stable = state.stable_members,
                    "this node sees no majority of its majority base; it stops acknowledging writes"
                );
            }
        }
    }

    /// A new committed configuration: its assignments become the table
    /// (owner, the rest of its ISR, then the ring replicas outside the ISR,
    /// which the owner brings up to date so they can join it), with the
    /// committed epochs.
    fn adopt(&mut self, config: Committed) {
        let Some(config) = config else {
            return;
        };
        let live: BTreeSet<MemberId> = self
            .membership
            .view()
            .iter()
            .filter(|m| m.status.is_live() && self.admitted(&m.identity))
            .map(|m| MemberId::new(m.identity.name.clone(), m.identity.incarnation))
            .collect();
        let target = self.ring.target(&config, &live);
        let sets: Vec<Vec<NodeId>> = config
            .assignments()
            .iter()
            .enumerate()
            .map(|(p, a)| {
                let Some(owner) = &a.owner else {
                    return Vec::new();
                };
                let mut set = vec![owner.name.clone()];
                for name in a
                    .isr
                    .iter()
                    .map(|m| &m.name)
                    .chain(target.replicas(PartitionId(p as u32)))
                {
                    if !set.contains(name) {
                        set.push(name.clone());
                    }
                }
                set
            })
            .collect();
        let table = PartitionTable::from_sets(config.partitions(), &sets);
        let epochs = config.assignments().iter().map(|a| a.epoch.0).collect();
        let local = self.membership.identity();
        let me = MemberId::new(local.name.clone(), local.incarnation);
        let owned = config
            .assignments()
            .iter()
            .filter(|a| a.owner.as_ref() == Some(&me))
            .count();
        metrics::gauge!("eddy_partitions_owned").set(owned as f64);
        self.publish_change(|state| {
            state.placement.assign(table, epochs);
            state.committed = Some(config);
        });
    }

    fn recompute(&mut self) {
        if self.publish.borrow().controlled {
            // The controller places owners and in-sync sets; the live view
            // only picks the ring replicas outside them (a dead member's
            // share goes to the others until it is back).
            let committed = self.publish.borrow().committed.clone();
            self.adopt(committed);
            return;
        }
        let live = self.live_admitted();
        let mut next = self.publish.borrow().as_ref().clone();
        let moves = next.placement.update(&live);
        if moves.is_empty() {
            return;
        }
        let owners_moved = moves.iter().filter(|m| m.owner_changed()).count();
        tracing::info!(
            members = live.len(),
            partitions_changed = moves.len(),
            owners_moved,
            version = next.placement.version(),
            "partition table recomputed"
        );
        let owned = next
            .placement
            .table()
            .partitions_of(&next.local.name)
            .iter()
            .filter(|(_, role)| *role == eddy_cluster::Role::Owner)
            .count();
        metrics::gauge!("eddy_partitions_owned").set(owned as f64);
        metrics::gauge!("eddy_cluster_members_up").set(
            next.members
                .iter()
                .filter(|m| m.status == MemberStatus::Up)
                .count() as f64,
        );
        self.publish_change(|state| *state = next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_cluster::testing::{identity, node_names};
    use eddy_cluster::{MemberEntry, MemberStatus};

    fn state(live: usize, table_nodes: usize, stable: usize) -> ClusterState {
        let members = (0..3)
            .map(|i| MemberEntry {
                identity: identity(&format!("node-{i}"), i as u16),
                status: if i < live {
                    MemberStatus::Up
                } else {
                    MemberStatus::Down
                },
                since: Timestamp(0),
            })
            .collect();
        ClusterState {
            local: identity("node-0", 0),
            members,
            view_version: 1,
            placement: Placement::new(&node_names(table_nodes), 64, 2),
            stable_members: stable,
            quorum_regained: 0,
            committed: None,
            controlled: false,
        }
    }

    #[test]
    fn under_a_controller_only_a_committed_incarnation_has_a_quorum() {
        let mut state = state(1, 1, 3);
        state.controlled = true;
        assert!(!state.has_quorum(), "no configuration learnt yet");
        let local = state.local.clone();
        let info = eddy_control::MemberInfo {
            peer_addr: local.peer_addr,
            http_addr: local.http_addr,
            tcp_addr: local.tcp_addr,
        };
        let other = MemberId::new(local.name.clone(), local.incarnation + 1);
        state.committed = Some(Arc::new(ClusterConfig::bootstrap(
            1,
            64,
            2,
            &[(other, info.clone())],
        )));
        assert!(!state.has_quorum(), "the same name as another incarnation");
        assert!(
            state
                .no_quorum_reason()
                .is_some_and(|r| r.contains("not a committed member"))
        );
        state.committed = Some(Arc::new(ClusterConfig::bootstrap(
            1,
            64,
            2,
            &[(state.member_id(), info)],
        )));
        assert!(state.has_quorum(), "a member, whatever the live view says");
    }

    #[test]
    fn quorum_needs_a_majority_in_view_and_in_table() {
        assert!(state(3, 3, 3).has_quorum());
        assert!(state(2, 2, 3).has_quorum(), "two of three is a majority");
        let cut_off = state(1, 1, 3);
        assert!(!cut_off.sees_majority() && !cut_off.has_quorum());
        assert!(
            cut_off
                .no_quorum_reason()
                .is_some_and(|r| r.contains("sees 1"))
        );
        // Back from a minority: the view is whole, the table not yet.
        let healed = state(3, 1, 3);
        assert!(healed.sees_majority());
        assert!(!healed.has_quorum());
        assert!(
            healed
                .no_quorum_reason()
                .is_some_and(|r| r.contains("partition table holds 1")),
        );
        assert_eq!(state(1, 1, 1).no_quorum_reason(), None, "a cluster of one");
    }
}
