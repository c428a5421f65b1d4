//! A seeded, deterministic network of [`Controller`]s, and the checker of
//! what they commit — shared by this crate's tests and, later, the chaos
//! simulator (the same controllers, not a model: STYLE §17).
//!
//! Time is a tick count. Every tick, frames due are delivered in a random
//! order, every running controller ticks, and effects are drained the way a
//! node drains them: persist to the node's "disk" first, then send. Frames
//! are lost with `loss_ppm`, delayed `0..=max_delay_ticks` (so reordered),
//! dropped across cut links (at send and at delivery), and dropped when the
//! addressee is down or is another incarnation.
//!
//! Faults: [`TestNet::crash`] (the process dies, the disk stays),
//! [`TestNet::restart`] (from the disk), [`TestNet::wipe`] (the disk is lost:
//! the node comes back as a new incarnation, not a voter, and asks to be
//! joined), [`TestNet::split`] / [`TestNet::cut_one_way`] /
//! [`TestNet::heal`].
//!
//! Checks, accumulated in [`TestNet::violations`]:
//! - state machine safety: every node that applies log index `i` applies the
//!   same entry with the same outcome (so each node's applied sequence is a
//!   prefix of the longest), and nodes at the same applied index hold equal
//!   configurations;
//! - every published configuration satisfies the invariants, epochs never
//!   fall on a node, and no (partition, epoch) ever has two owners;
//! - a probe proposed on a minority side ([`TestNet::propose_minority_probe`],
//!   [`TestNet::propose_on_minority`]) is not applied anywhere while that
//!   split lasts;
//! - no frame is ever sent under a Raft id retired by a wipe, nor under an id
//!   other than the sender's own;
//! - nothing is promised before it is durable: a granted vote's term and vote,
//!   and an accepted append's entries, are on the sender's disk when the
//!   frame leaves (the persist-then-send contract, checked on the effects).
//!
//! [`run_swarm`] runs one seed of a randomised fault mix (TigerBeetle's
//! swarm idea) through a safety phase and a liveness phase: once faults stop
//! and the network heals, a leader must exist and every running controller
//! must converge within a bounded number of ticks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use eddy_cluster::{NodeId, PartitionTable};
use eddy_core::PartitionId;
use raft::eraftpb::{Message, MessageType};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::bootstrap::{BootstrapDecision, RaftPresence, bootstrap_decision};
use crate::command::{Command, ProposalTag, Rejection};
use crate::controller::{Controller, ControllerSettings};
use crate::member::{MemberId, MemberInfo, RaftId};
use crate::planner::{plan, target_table_with_vnodes};
use crate::state::ClusterConfig;
use crate::storage::PersistedState;
use crate::wire::decode_message;

mod swarm;

pub use swarm::{SwarmConfig, SwarmReport, run_swarm, run_swarm_report};

/// Frames in flight beyond which new ones are dropped (counted).
pub const MAX_IN_FLIGHT: usize = 100_000;

/// Ring placements the planner workload keeps before starting over.
const MAX_CACHED_TABLES: usize = 64;

/// Vnodes of the workload's ring: the workload only needs *a* placement to
/// aim at, and a 512-vnode ring per member set dominated the run time.
const WORKLOAD_VNODES: u32 = 16;

/// Shape of a test network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Voters (1, 3 or 5).
    pub voters: usize,
    /// Partitions of the configuration.
    pub partitions: u32,
    /// Replication factor of the configuration.
    pub replication: u8,
    /// Frame loss, parts per million.
    pub loss_ppm: u32,
    /// Largest delivery delay in ticks (0: next tick).
    pub max_delay_ticks: u64,
    /// Controller tuning; each node's seed is drawn from the network's.
    pub settings: ControllerSettings,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            voters: 3,
            partitions: 16,
            replication: 2,
            loss_ppm: 0,
            max_delay_ticks: 0,
            settings: ControllerSettings::default(),
        }
    }
}

/// One entry as a node applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRecord {
    /// Who proposed.
    pub tag: Option<ProposalTag>,
    /// What.
    pub command: Option<Command>,
    /// With which outcome.
    pub outcome: Result<(), Rejection>,
}

/// A simulated node: a controller (when running), its disk, its history.
#[derive(Debug)]
pub struct SimNode {
    /// Current incarnation.
    pub member: MemberId,
    /// Its addresses (fixtures).
    pub info: MemberInfo,
    /// The controller, while the process runs as a voter.
    pub controller: Option<Controller>,
    /// What it persisted (survives a crash, not a wipe).
    pub disk: PersistedState,
    /// Every entry it applied, by log index (across restarts).
    pub applied: BTreeMap<u64, AppliedRecord>,
    /// Ticks at which it applied each proposal, for latency figures.
    pub applied_at: BTreeMap<ProposalTag, u64>,
    /// Applied index whose configuration the checker last compared.
    checked_index: Option<u64>,
}

#[derive(Debug)]
struct Flight {
    deliver_at: u64,
    from: usize,
    to: RaftId,
    bytes: Vec<u8>,
}

/// The network.
#[derive(Debug)]
pub struct TestNet {
    config: NetConfig,
    rng: ChaCha8Rng,
    now: u64,
    nodes: Vec<SimNode>,
    in_flight: Vec<Flight>,
    /// Node groups of the current split; empty when healed.
    groups: Vec<Vec<usize>>,
    /// Rises with every split and heal, naming the current network shape.
    split_generation: u64,
    /// Probe member names proposed on a minority side, with the split
    /// generation they were proposed in.
    probes: BTreeMap<NodeId, u64>,
    /// Proposals made on a minority side, with the command and the split
    /// generation they were proposed in.
    probe_tags: BTreeMap<ProposalTag, (Command, u64)>,
    /// Every tag a proposal got. A tag's `seq` restarts at 0 with the
    /// process (command.rs), so a restarted node reuses tags; only a tag
    /// never used before can name a minority probe unambiguously.
    proposed_tags: BTreeSet<ProposalTag>,
    /// Directed links cut (`from`, `to`) on top of `groups`; cleared by heal.
    one_way: BTreeSet<(usize, usize)>,
    retired: BTreeSet<RaftId>,
    /// First entry applied at each index, by any node.
    log: BTreeMap<u64, AppliedRecord>,
    /// Fingerprint of the configuration at each applied index.
    config_at: BTreeMap<u64, Vec<u8>>,
    owners: BTreeMap<(PartitionId, u64), MemberId>,
    violations: Vec<String>,
    /// The planner's ring placements by member names (nodes lag behind each
    /// other, so several member sets are current at once; a ring is costly).
    tables: BTreeMap<Vec<NodeId>, PartitionTable>,
    /// Snapshot frames still to drop on the way to each node (by index).
    snapshot_drops: BTreeMap<usize, u32>,
    /// Frames dropped for loss, cuts, bounds or absent addressees.
    pub dropped: u64,
    /// Frames delivered.
    pub delivered: u64,
}

/// The fixture addresses of node `index`.
pub fn fixture_info(index: usize) -> MemberInfo {
    let [hi, lo] = u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo));
    MemberInfo {
        peer_addr: SocketAddr::new(ip, 7947),
        http_addr: SocketAddr::new(ip, 8080),
        tcp_addr: SocketAddr::new(ip, 7948),
    }
}

impl TestNet {
    /// `config.voters` nodes `node-0..`, bootstrapped as one group through
    /// [`bootstrap_decision`] and [`Controller::bootstrap`].
    pub fn new(seed: u64, config: NetConfig) -> TestNet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let members: Vec<MemberId> = (0..config.voters)
            .map(|i| MemberId::new(&*format!("node-{i}"), 1))
            .collect();
        let names: Vec<NodeId> = members.iter().map(|m| m.name.clone()).collect();
        let reports: Vec<RaftPresence> = members
            .iter()
            .map(|m| RaftPresence {
                member: m.clone(),
                cluster: None,
            })
            .collect();
        let mut net = TestNet {
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(0),
            now: 0,
            nodes: Vec::new(),
            in_flight: Vec::new(),
            groups: Vec::new(),
            split_generation: 0,
            probes: BTreeMap::new(),
            probe_tags: BTreeMap::new(),
            proposed_tags: BTreeSet::new(),
            one_way: BTreeSet::new(),
            retired: BTreeSet::new(),
            log: BTreeMap::new(),
            config_at: BTreeMap::new(),
            owners: BTreeMap::new(),
            violations: Vec::new(),
            tables: BTreeMap::new(),
            snapshot_drops: BTreeMap::new(),
            dropped: 0,
            delivered: 0,
        };
        for (index, member) in members.iter().enumerate() {
            let decision = bootstrap_decision(&reports[index], &reports, &names, None);
            let BootstrapDecision::Bootstrap { voters, cluster_id } = decision else {
                net.violations
                    .push(format!("bootstrap refused: {decision:?}"));
                continue;
            };
            let voters: Vec<(MemberId, MemberInfo)> = voters
                .into_iter()
                .map(|m| {
                    let i = members.iter().position(|x| *x == m).unwrap_or(0);
                    (m, fixture_info(i))
                })
                .collect();
            let initial = ClusterConfig::bootstrap(
                cluster_id,
                config.partitions,
                config.replication,
                &voters,
            );
            let settings = ControllerSettings {
                seed: rng.random(),
                ..config.settings.clone()
            };
            let controller = Controller::bootstrap(member.clone(), &initial, settings);
            net.nodes.push(SimNode {
                member: member.clone(),
                info: fixture_info(index),
                controller: None,
                disk: PersistedState::default(),
                applied: BTreeMap::new(),
                applied_at: BTreeMap::new(),
                checked_index: None,
            });
            match controller {
                Ok(controller) => {
                    net.nodes[index].controller = Some(controller);
                    net.drain(index);
                }
                Err(error) => net.violations.push(format!("bootstrap failed: {error}")),
            }
        }
        net.rng = rng;
        net
    }

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The nodes, to step a controller directly (hostile-input tests).
    pub fn nodes_mut(&mut self) -> &mut [SimNode] {
        &mut self.nodes
    }

    /// Everything the checker found so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.controller.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.is_leader())
            .max_by_key(|(_, c)| c.term())
            .map(|(i, _)| i)
    }

    /// Whether node `index` is running a controller.
    pub fn is_running(&self, index: usize) -> bool {
        self.nodes
            .get(index)
            .is_some_and(|n| n.controller.is_some())
    }

    /// One tick: deliver due frames, tick every controller, drain.
    pub fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        let (mut due, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|f| f.deliver_at <= now);
        self.in_flight = later;
        // Fisher-Yates with the network's RNG: delivery order is part of the
        // seed, not of the send order.
        for i in (1..due.len()).rev() {
            let j = self.rng.random_range(0..=i);
            due.swap(i, j);
        }
        for flight in due {
            self.deliver(flight);
        }
        for index in 0..self.nodes.len() {
            if let Some(controller) = self.nodes[index].controller.as_mut() {
                controller.tick();
                self.drain(index);
            }
        }
    }

    /// Runs `ticks` ticks.
    pub fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    /// Proposes `command` on node `index`; `None` if it is down or refused
    /// (no leader known).
    pub fn propose(&mut self, index: usize, command: Command) -> Option<ProposalTag> {
        let controller = self.nodes.get_mut(index)?.controller.as_mut()?;
        let tag = controller.propose(command).ok();
        if let Some(tag) = tag
            && !self.proposed_tags.insert(tag)
        {
            // Reused after a restart: no longer a probe's unique name.
            self.probe_tags.remove(&tag);
        }
        self.drain(index);
        tag
    }

    /// Node `index` campaigns now.
    pub fn campaign(&mut self, index: usize) {
        if let Some(controller) = self
            .nodes
            .get_mut(index)
            .and_then(|n| n.controller.as_mut())
        {
            let _ = controller.campaign();
            self.drain(index);
        }
    }

    /// The process of node `index` dies; its disk survives.
    pub fn crash(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.controller = None;
        }
    }

    /// Restarts a crashed voter from its disk (nothing if running, or if it
    /// has no Raft state: a wiped node only comes back through `Join`).
    pub fn restart(&mut self, index: usize) {
        let seed = self.rng.random();
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if node.controller.is_some() || node.disk.is_empty() {
            return;
        }
        let settings = ControllerSettings {
            seed,
            ..self.config.settings.clone()
        };
        match Controller::restore(node.member.clone(), &node.disk, settings) {
            Ok(controller) => {
                node.controller = Some(controller);
                self.drain(index);
            }
            Err(error) => self
                .violations
                .push(format!("node {index} cannot restore: {error}")),
        }
    }

    /// Node `index` loses its disk and restarts as a new incarnation: its
    /// old Raft id is retired, it runs no controller (it is not a voter),
    /// and it asks node `via` to propose its `Join`. Returns the new member.
    pub fn wipe(&mut self, index: usize) -> Option<MemberId> {
        let node = self.nodes.get_mut(index)?;
        self.retired.insert(node.member.raft_id());
        node.controller = None;
        node.disk = PersistedState::default();
        node.member = MemberId::new(node.member.name.clone(), node.member.incarnation + 1);
        Some(node.member.clone())
    }

    /// Asks running node `via` to propose the `Join` of wiped node `index`.
    pub fn request_join(&mut self, index: usize, via: usize) -> Option<ProposalTag> {
        let node = self.nodes.get(index)?;
        let command = Command::Join {
            member: node.member.clone(),
            info: node.info.clone(),
        };
        self.propose(via, command)
    }

    /// Splits the network into `groups` (node indices; a node in no group is
    /// cut off from everyone). Frames cross no group boundary.
    pub fn split(&mut self, groups: Vec<Vec<usize>>) {
        self.groups = groups;
        self.split_generation += 1;
    }

    /// Reconnects everyone (one-way cuts too).
    pub fn heal(&mut self) {
        self.groups.clear();
        self.one_way.clear();
        self.split_generation += 1;
    }

    /// Cuts the link from `from` to `to` only: `to` still reaches `from`
    /// (a half-broken link or a one-sided firewall rule). Lasts until heal.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.one_way.insert((from, to));
    }

    /// Drops the next `count` snapshot frames sent to node `to` (a lost
    /// frame carrying a snapshot, which Raft never resends by itself).
    pub fn drop_snapshots_to(&mut self, to: usize, count: u32) {
        self.snapshot_drops.insert(to, count);
    }

    /// Whether a frame from `a` reaches `b` now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        !self.one_way.contains(&(a, b))
            && (self.groups.is_empty()
                || self.groups.iter().any(|g| g.contains(&a) && g.contains(&b)))
    }

    /// Proposes `command` on node `index`, which the caller knows to be on a
    /// minority side of the current split; the checker then requires that
    /// no node applies it while the split lasts (forget-down — `Remove` —
    /// from a minority must never commit). Returns the tag when the probe is
    /// checked: not when refused, nor when its tag was used before (by the
    /// node before a restart: see `proposed_tags`).
    pub fn propose_on_minority(&mut self, index: usize, command: Command) -> Option<ProposalTag> {
        let before = self.proposed_tags.len();
        let tag = self.propose(index, command.clone())?;
        if self.proposed_tags.len() == before {
            return None;
        }
        self.probe_tags
            .insert(tag, (command, self.split_generation));
        Some(tag)
    }

    /// Proposes a probe `Join` on node `index`, which the caller knows to be
    /// on a minority side; the checker then requires it not to be applied
    /// anywhere while the current split lasts.
    pub fn propose_minority_probe(&mut self, index: usize) {
        let name = NodeId::new(&format!(
            "probe-{}-{}",
            self.split_generation,
            self.probes.len()
        ));
        self.probes.insert(name.clone(), self.split_generation);
        let command = Command::Join {
            member: MemberId::new(name, 1),
            info: fixture_info(999),
        };
        self.propose(index, command);
    }

    /// Whether the running controllers agree: one leader with the highest
    /// term, known by all, and every running node at the leader's applied
    /// index with its configuration.
    pub fn converged(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let Some(lead) = self.nodes[leader].controller.as_ref() else {
            return false;
        };
        self.nodes
            .iter()
            .filter_map(|n| n.controller.as_ref())
            .all(|c| {
                c.leader() == Some(lead.raft_id())
                    && c.applied_index() == lead.applied_index()
                    && c.config() == lead.config()
            })
    }

    fn deliver(&mut self, flight: Flight) {
        let Some(to) = self
            .nodes
            .iter()
            .position(|n| n.controller.is_some() && n.member.raft_id() == flight.to)
        else {
            self.dropped += 1;
            return;
        };
        if !self.connected(flight.from, to) {
            self.dropped += 1;
            return;
        }
        if let Some(controller) = self.nodes[to].controller.as_mut() {
            self.delivered += 1;
            // A refused frame (stale term, unknown peer) is normal traffic;
            // a decode failure would be ours, since we wrote every frame.
            if let Err(crate::ControlError::Wire(error)) = controller.step(&flight.bytes) {
                self.violations
                    .push(format!("frame did not decode: {error}"));
            }
            self.drain(to);
        }
    }

    /// Drains node `index` the way a node does: persist, then send; then
    /// record what it applied and check what it published.
    fn drain(&mut self, index: usize) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        let Some(controller) = node.controller.as_mut() else {
            return;
        };
        for persist in controller.drain_persist() {
            node.disk.apply(&persist);
        }
        let outbound = controller.drain_outbound();
        let applied = controller.drain_applied();
        let published = controller.take_published();
        let applied_index = controller.applied_index();
        let me = controller.raft_id();
        // Encoding the configuration is the costly part of a drain; only do
        // it when the applied index moved.
        let config_bytes = (node.checked_index != Some(applied_index) || published.is_some())
            .then(|| controller.config().encode());
        node.checked_index = Some(applied_index);
        for applied in applied {
            let record = AppliedRecord {
                tag: applied.tag,
                command: applied.command,
                outcome: applied.outcome,
            };
            if let Some(tag) = record.tag {
                node.applied_at.entry(tag).or_insert(now);
            }
            if let Some(Command::Join { member, .. }) = &record.command
                && self.probes.get(&member.name) == Some(&self.split_generation)
            {
                self.violations.push(format!(
                    "tick {now}: node {index} applied minority probe {} during its split",
                    member.name
                ));
            }
            if let Some(tag) = record.tag
                && let Some((command, generation)) = self.probe_tags.get(&tag)
                && *generation == self.split_generation
                && record.command.as_ref() == Some(command)
            {
                self.violations.push(format!(
                    "tick {now}: node {index} applied {:?}, proposed on a minority, during its split",
                    record.command
                ));
            }
            if let Some(before) = node.applied.insert(applied.index, record.clone())
                && before != record
            {
                self.violations.push(format!(
                    "tick {now}: node {index} re-applied index {} differently",
                    applied.index
                ));
            }
            match self.log.get(&applied.index) {
                Some(first) if *first != record => self.violations.push(format!(
                    "tick {now}: node {index} applied {record:?} at index {} where another applied {first:?}",
                    applied.index
                )),
                Some(_) => {}
                None => {
                    self.log.insert(applied.index, record);
                }
            }
        }
        if let Some(config_bytes) = config_bytes {
            match self.config_at.get(&applied_index) {
                Some(first) if *first != config_bytes => self.violations.push(format!(
                    "tick {now}: node {index} holds another configuration at index {applied_index}"
                )),
                Some(_) => {}
                None => {
                    self.config_at.insert(applied_index, config_bytes);
                }
            }
        }
        if let Some(config) = published {
            self.check_config(index, &config);
        }
        for out in outbound {
            if self.retired.contains(&me) {
                self.violations
                    .push(format!("tick {now}: retired Raft id {me} sent a frame"));
            }
            match decode_message(&out.bytes) {
                Ok(message) if message.from != me.0 => self.violations.push(format!(
                    "tick {now}: node {index} sent a frame as {} instead of {me}",
                    message.from
                )),
                Ok(message) => {
                    if let Some(problem) = sent_before_durable(&self.nodes[index].disk, &message) {
                        self.violations
                            .push(format!("tick {now}: node {index} {problem}"));
                    }
                }
                Err(error) => self.violations.push(format!(
                    "tick {now}: node {index} sent an undecodable frame: {error}"
                )),
            }
            let to_index = self.nodes.iter().position(|n| n.member.raft_id() == out.to);
            let is_snapshot = decode_message(&out.bytes)
                .is_ok_and(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot);
            if is_snapshot
                && let Some(left) = to_index.and_then(|to| self.snapshot_drops.get_mut(&to))
                && *left > 0
            {
                *left -= 1;
                self.dropped += 1;
                continue;
            }
            let lost = self.rng.random_range(0..1_000_000u32) < self.config.loss_ppm;
            let cut = to_index.is_some_and(|to| !self.connected(index, to));
            if lost || cut || self.in_flight.len() >= MAX_IN_FLIGHT {
                self.dropped += 1;
                continue;
            }
            let delay = self.rng.random_range(0..=self.config.max_delay_ticks);
            self.in_flight.push(Flight {
                deliver_at: now + 1 + delay,
                from: index,
                to: out.to,
                bytes: out.bytes,
            });
        }
    }

    fn check_config(&mut self, index: usize, config: &ClusterConfig) {
        if let Err(violation) = config.check_invariants() {
            self.violations.push(format!(
                "node {index} published a broken configuration: {violation}"
            ));
        }
        for (p, assignment) in config.assignments().iter().enumerate() {
            if let Some(owner) = &assignment.owner {
                let key = (PartitionId(p as u32), assignment.epoch.0);
                let first = self.owners.entry(key).or_insert_with(|| owner.clone());
                if first != owner {
                    self.violations.push(format!(
                        "partition {p} epoch {} has owners {first} and {owner}",
                        assignment.epoch.0
                    ));
                }
            }
        }
    }

    /// Random workload: node `index` proposes what the planner suggests (with
    /// a random caught-up report), or a random ISR shrink, or a random join
    /// or removal of an extra member.
    pub fn random_proposal(&mut self, index: usize) {
        let Some(config) = self
            .nodes
            .get(index)
            .and_then(|n| n.controller.as_ref())
            .map(|c| c.config().clone())
        else {
            return;
        };
        let live: BTreeSet<MemberId> = self
            .nodes
            .iter()
            .filter(|n| n.controller.is_some())
            .map(|n| n.member.clone())
            .chain(config.members().filter(|m| !m.voter).map(|m| m.id.clone()))
            .collect();
        let command = match self.rng.random_range(0..10u32) {
            0..=4 => {
                let caught_up: BTreeSet<(PartitionId, MemberId)> = config
                    .members()
                    .flat_map(|m| {
                        (0..config.partitions()).map(move |p| (PartitionId(p), m.id.clone()))
                    })
                    .filter(|_| self.rng.random_range(0..4u32) == 0)
                    .collect();
                let names = crate::planner::ring_members(&config, &live);
                if self.tables.len() >= MAX_CACHED_TABLES {
                    self.tables.clear();
                }
                let table = self
                    .tables
                    .entry(names)
                    .or_insert_with(|| target_table_with_vnodes(&config, &live, WORKLOAD_VNODES));
                let commands = plan(&config, table, &live, &caught_up);
                if commands.is_empty() {
                    return;
                }
                let pick = self.rng.random_range(0..commands.len());
                commands[pick].clone()
            }
            5..=6 => {
                let p = self.rng.random_range(0..config.partitions());
                let Some(a) = config.assignment(PartitionId(p)) else {
                    return;
                };
                let Some(owner) = a.owner.clone() else {
                    return;
                };
                let mut isr: Vec<MemberId> =
                    a.isr.iter().filter(|m| **m != owner).cloned().collect();
                isr.retain(|_| self.rng.random_range(0..2u32) == 0);
                isr.insert(0, owner);
                Command::SetIsr {
                    partition: PartitionId(p),
                    epoch: a.epoch,
                    version: a.version,
                    isr,
                }
            }
            7..=8 => {
                let k = self.rng.random_range(0..4u32);
                Command::Join {
                    member: MemberId::new(&*format!("extra-{k}"), self.rng.random_range(1..3)),
                    info: fixture_info(100 + k as usize),
                }
            }
            _ => {
                let extras: Vec<MemberId> = config
                    .members()
                    .filter(|m| !m.voter)
                    .map(|m| m.id.clone())
                    .collect();
                if extras.is_empty() {
                    return;
                }
                let pick = self.rng.random_range(0..extras.len());
                Command::Remove {
                    member: extras[pick].clone(),
                }
            }
        };
        self.propose(index, command);
    }
}

/// Whether `message` promises something its sender's `disk` does not hold
/// yet: a granted vote must be durable (term and vote), an accepted append
/// must have its entries durable — raft-rs's rule that the driver persists
/// before it sends, checked on the effects as drained.
fn sent_before_durable(disk: &PersistedState, message: &Message) -> Option<String> {
    let hs = &disk.hard_state;
    match message.get_msg_type() {
        MessageType::MsgRequestVoteResponse if !message.reject => {
            (hs.term != message.term || hs.vote != message.to).then(|| {
                format!(
                    "granted a vote to {} in term {} before persisting it (disk: term {}, vote {})",
                    message.to, message.term, hs.term, hs.vote
                )
            })
        }
        MessageType::MsgAppendResponse if !message.reject => {
            let last = disk.entries.last().map_or(disk.snapshot.index, |e| e.index);
            (last < message.index).then(|| {
                format!(
                    "acknowledged index {} with only {last} durable",
                    message.index
                )
            })
        }
        _ => None,
    }
}
