//! The membership driver: `eddy_cluster::Membership` wired to a UDP socket,
//! tokio timers and the node's view of the partition table.
//!
//! One task owns the socket and the state machine. Datagrams and due timers go
//! in with the time; datagrams, timers and events come out and are sent,
//! scheduled (in order) and logged. The partition table is the committed
//! configuration's (the controller's), adopted as soon as it is published;
//! the live view only chooses the ring replicas outside each ISR, and is
//! applied after `settle_ms` (DESIGN §11: a burst of changes moves
//! partitions once). Both are published as a [`ClusterState`] on a watch
//! channel that ingress, HTTP and the peer links read.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_cluster::{
    MemberEntry, MemberStatus, Membership, MembershipConfig, MembershipEvent, MembershipTimer,
    NodeId, NodeIdentity, Placement,
};
use eddy_control::{ClusterConfig, MemberId};
use eddy_core::Timestamp;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::control::Committed;
use crate::control_plan::RingCache;

/// Distinct sources of bad datagrams logged at warn level; later ones are
/// only counted, so garbage cannot flood the log.
const MAX_LOGGED_BAD_SOURCES: usize = 64;

/// The cluster as this node sees it, published on every change.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// This node.
    pub local: NodeIdentity,
    /// Every member known (up, suspect, or recently down), by name.
    pub members: Vec<MemberEntry>,
    /// Version of the membership view the members come from.
    pub view_version: u64,
    /// Partition table and epochs: the committed configuration's.
    pub placement: Placement,
    /// The committed configuration; this node serves only as one of its
    /// members. `None` until the first one arrives.
    pub committed: Option<Arc<ClusterConfig>>,
}

impl ClusterState {
    /// Live members in this view.
    pub fn live_count(&self) -> usize {
        self.members.iter().filter(|m| m.status.is_live()).count()
    }

    /// Whether this node may serve: it is a committed member of this
    /// incarnation. (Whether a write may be acknowledged is the ISR's
    /// decision, per partition: `crate::isr_acks`.)
    pub fn has_quorum(&self) -> bool {
        self.committed_member()
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

    /// Why this node refuses writes now (`None`: it has a quorum).
    pub fn no_quorum_reason(&self) -> Option<String> {
        match &self.committed {
            _ if self.committed_member() => None,
            None => Some("this node has not learnt the committed cluster configuration yet".into()),
            Some(_) => Some(format!(
                "{} is not a committed member of the cluster (yet)",
                self.member_id()
            )),
        }
    }

    /// The members gossip sees live, as the controller names them (by
    /// incarnation).
    pub fn live_members(&self) -> BTreeSet<MemberId> {
        self.members
            .iter()
            .filter(|m| m.status.is_live())
            .map(|m| MemberId::new(m.identity.name.clone(), m.identity.incarnation))
            .collect()
    }

    /// The identity of a live member by name.
    pub fn live_member(&self, name: &NodeId) -> Option<&NodeIdentity> {
        self.members
            .iter()
            .find(|m| &m.identity.name == name && m.status.is_live())
            .map(|m| &m.identity)
    }

    /// The identity gossip last knew for `member`'s incarnation, live or
    /// recently down: where to reach it even while gossip calls it down.
    pub fn known_member(&self, member: &MemberId) -> Option<&NodeIdentity> {
        self.members
            .iter()
            .find(|m| {
                m.identity.name == member.name && m.identity.incarnation == member.incarnation
            })
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
    /// The committed configuration, which decides the placement.
    pub committed: watch::Receiver<Committed>,
    /// Backups this node, as owner, cannot ship to: left out of its
    /// serving ring (`eddy_control::reach`).
    pub unreachable: watch::Receiver<BTreeSet<NodeId>>,
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
    /// Asks the driver to leave; it answers once the leave is sent.
    leave: Option<tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>>,
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
            committed: None,
        };
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
            was_member: false,
            ring: RingCache::default(),
            seal: config.seal,
            check: config.check,
            check_retry: None,
            unreachable: config.unreachable,
        };
        let task = tokio::spawn(driver.run(leave_rx, Some(config.committed)));
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
    /// detector). Gossip stops; the driver still adopts committed
    /// configurations, so the workers keep serving as backups while the
    /// others re-place this node's copies, until the controller stops.
    pub async fn leave(mut self) {
        let Some(leave) = self.leave.take() else {
            return;
        };
        let (left, sent) = tokio::sync::oneshot::channel();
        if leave.send(left).is_err() {
            return;
        }
        if tokio::time::timeout(Duration::from_secs(2), sent)
            .await
            .is_err()
        {
            // Stuck sending: give up on the driver rather than on stopping.
            self.task.abort();
        }
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
    /// Whether the last published state named this node a committed member.
    was_member: bool,
    ring: RingCache,
    /// The gossip key: datagrams that do not open with it never reach the
    /// membership (a stranger can neither join nor forge members).
    seal: Option<crate::gossip_seal::GossipSeal>,
    /// Certificate checks of members (with TLS).
    check: Option<crate::member_check::MemberCheck>,
    /// When failed checks are tried again.
    check_retry: Option<tokio::time::Instant>,
    /// Backups this node cannot ship to (left out of its serving ring).
    unreachable: watch::Receiver<BTreeSet<NodeId>>,
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
        mut leave: tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>,
        mut committed: Option<watch::Receiver<Committed>>,
    ) {
        // `committed` becomes `None` once the controller stopped (then the
        // placement stays as it is).
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
                Ok(()) = self.unreachable.changed() => self.recompute(),
                asked = &mut leave => {
                    let now = self.clock.now();
                    if let Err(err) = self.membership.leave(now) {
                        tracing::debug!(%err, "leave");
                    }
                    self.leaving = true;
                    self.flush().await;
                    tracing::info!("left the cluster");
                    if let Ok(left) = asked {
                        let _ = left.send(());
                        self.follow_committed(committed).await;
                    }
                    return;
                }
            }
            self.flush().await;
        }
    }

    /// After leaving: only committed configurations, until the controller
    /// stops.
    async fn follow_committed(&mut self, mut committed: Option<watch::Receiver<Committed>>) {
        while let Some(rx) = committed.as_mut() {
            if rx.changed().await.is_err() {
                return;
            }
            let config = rx.borrow_and_update().clone();
            self.adopt(config);
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
                MembershipEvent::Idle(None) => {
                    tracing::info!("no other members known; retrying seeds");
                }
                MembershipEvent::Idle(Some(id)) => {
                    tracing::warn!(
                        generation = id.generation,
                        "every other member looks down from here; rejoining afresh as a new member"
                    );
                    changed = true;
                }
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

    /// Publishes a change of the state, and says when this node becomes
    /// (or stops being) a committed member.
    fn publish_change(&mut self, change: impl FnOnce(&mut ClusterState)) {
        let mut member = self.was_member;
        self.publish.send_modify(|state| {
            let state = Arc::make_mut(state);
            change(state);
            member = state.committed_member();
        });
        if member != self.was_member {
            if member {
                tracing::info!("this node is a committed member of the cluster");
            } else {
                tracing::warn!(
                    "this node is no committed member of the cluster (any more); it serves nothing"
                );
            }
        }
        self.was_member = member;
    }

    fn publish_members(&mut self) {
        let view = self.membership.view();
        let members: Vec<MemberEntry> = view
            .iter()
            .filter(|m| self.admitted(&m.identity))
            .cloned()
            .collect();
        let version = view.version();
        let local = self.membership.identity().clone();
        metrics::gauge!("eddy_cluster_members_up").set(
            members
                .iter()
                .filter(|m| m.status == MemberStatus::Up)
                .count() as f64,
        );
        self.publish_change(|state| {
            state.members = members;
            state.view_version = version;
            state.local = local;
        });
    }

    /// A new committed configuration: its assignments become the table
    /// ([`eddy_control::serving_table`]), with the committed epochs.
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
        let local = self.membership.identity();
        let serving = eddy_control::reach::serving_members(
            &live,
            &self.unreachable.borrow_and_update(),
            &local.name,
        );
        let me = MemberId::new(local.name.clone(), local.incarnation);
        let target = self.ring.target(&config, &serving);
        let table = eddy_control::serving_table(&config, target);
        let epochs = config.assignments().iter().map(|a| a.epoch.0).collect();
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

    /// The live view settled: the ring replicas outside each ISR follow
    /// it (a dead member's share goes to the others until it is back).
    fn recompute(&mut self) {
        let committed = self.publish.borrow().committed.clone();
        self.adopt(committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_cluster::testing::{identity, node_names};
    use eddy_cluster::{MemberEntry, MemberStatus};

    fn state() -> ClusterState {
        let members = (0..3)
            .map(|i| MemberEntry {
                identity: identity(&format!("node-{i}"), i as u16),
                status: if i == 0 {
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
            placement: Placement::new(&node_names(1), 64, 2),
            committed: None,
        }
    }

    #[test]
    fn only_a_committed_incarnation_has_a_quorum() {
        let mut state = state();
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
}
