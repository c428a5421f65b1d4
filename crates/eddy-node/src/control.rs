//! The node's driver of the cluster controller (eddy-control): it runs the
//! Raft group and publishes the committed configuration (members by name
//! and incarnation, voters, leader, and per partition the owner, its epoch
//! and its in-sync replicas), which the data path acts on. On the leader it
//! also proposes the placement (`control_plan`); owners' ISR changes reach
//! it as `Propose` requests.
//!
//! One task owns the `Controller` (on a voter) and is its only caller:
//! ticks, frames from peers and proposals arrive on a channel, and after
//! every input the task drains the controller in the crate's order —
//! persist (appended and fsynced to `data_dir/raft/controller.log`), only
//! then send the frames, then read what was applied and published. Frames
//! go out from tasks of their own, so a slow peer never stalls the driver.
//!
//! Start: a voter with Raft state on disk restores it. Otherwise the driver
//! asks the configured voters it sees in gossip for their `Status` and
//! follows `eddy_control::bootstrap_decision`: bootstrap when every voter is
//! up and empty, join a running cluster, or wait. A node that is not a
//! Raft voter (a non-voter, a wiped voter back as a new incarnation) asks a
//! voter to `Join` it and learns the committed configuration from the
//! leader, which pushes it to every live non-voter when it changes and
//! every second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_cluster::{NodeId, NodeIdentity};
use eddy_control::{
    Assignment, BootstrapDecision, ClusterConfig, Command, Controller, ControllerSettings, Member,
    MemberId, MemberInfo, RaftPresence, bootstrap_decision,
};
use eddy_core::PartitionId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::ClusterState;
use crate::control_log::ControlLog;
use crate::control_msg::{self, ControlRequest, ControlResponse, StatusReport};
use crate::control_plan::Planning;
use crate::peer::PeerLinks;

/// How long a controller request to a peer may take (status, join, push).
const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Inputs queued for the driver; requests beyond it are refused.
const INPUT_QUEUE: usize = 1024;
/// Raft frames queued for the driver, apart from the other inputs so a
/// flood of proposals cannot crowd them out; beyond it they are dropped
/// (Raft retransmits).
const RAFT_QUEUE: usize = 1024;
/// Most inputs stepped before their effects are persisted (one fsync) and
/// sent: one fsync per input let a busy voter fall behind its queue, drop
/// the leader's frames and lag the committed configuration by seconds.
const INPUT_BATCH: usize = 256;

/// This node's part in the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A Raft voter: holds the log.
    Voter,
    /// A committed member that does not vote (learns the configuration from
    /// the leader).
    Member,
    /// Not (yet) a committed member.
    None,
}

/// A committed member, as shown by `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Incarnation of its data.
    pub incarnation: u64,
    /// Whether it is a Raft voter.
    pub voter: bool,
}

/// What the controller looks like from this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlView {
    /// This node's name.
    pub name: String,
    /// This node's incarnation.
    pub incarnation: u64,
    /// This node's role.
    pub role: Role,
    /// What the driver is doing (`running`, `waiting for voters: …`, …).
    pub state: String,
    /// The leader's name, if known.
    pub leader: Option<String>,
    /// The term of the leader known.
    pub term: u64,
    /// Index of the last committed (and applied) log entry known.
    pub committed_index: u64,
    /// The cluster id, once a configuration is known.
    pub cluster_id: Option<u64>,
    /// The committed members.
    pub members: Vec<MemberView>,
}

enum Input {
    /// A Raft frame from a peer.
    Raft(Vec<u8>),
    /// A request that wants an answer.
    Request(ControlRequest, oneshot::Sender<ControlResponse>),
    /// Status reports of configured voters (from a discovery task).
    Reports(Vec<StatusReport>),
    /// `Remove` these members (forget-down); answered when committed, or
    /// with why not.
    Remove(Vec<MemberId>, oneshot::Sender<RemoveResult>),
    /// Propose an owner's `SetIsr`; answered with the partition's
    /// assignment once a later version is committed (or dropped unanswered).
    Propose(Command, bool, oneshot::Sender<Assignment>),
    /// Propose each of these owner changes; nothing waits for them.
    ProposeMany(Vec<Command>),
}

/// Someone waiting for a partition's assignment to pass a version.
struct IsrWaiter {
    partition: PartitionId,
    version: u64,
    until: Instant,
    reply: IsrReply,
}

enum IsrReply {
    Local(oneshot::Sender<Assignment>),
    Peer(oneshot::Sender<ControlResponse>),
}

/// The committed configuration as the data path reads it (`None` until
/// this node learnt one).
pub type Committed = Option<Arc<ClusterConfig>>;

/// Outcome of a forget-down `Remove`: `Ok` once committed, with each
/// member and why its removal was rejected (`None`: removed); `Err`: not
/// committed, and why.
pub type RemoveResult = Result<Vec<(String, Option<String>)>, String>;

/// Handle to the driver: serves peers' controller messages and shows the
/// state. Cheap to clone.
#[derive(Clone)]
pub struct ControlHandle {
    inputs: mpsc::Sender<Input>,
    raft: mpsc::Sender<Vec<u8>>,
    view: watch::Receiver<ControlView>,
}

impl ControlHandle {
    /// The controller as this node sees it now.
    pub fn view(&self) -> ControlView {
        self.view.borrow().clone()
    }

    /// Answers one `PeerRequest::Control` body from `peer`. Undecodable
    /// bodies and Raft frames the controller refuses are counted
    /// (`eddy_controller_bad_frames_total`), never a panic.
    pub async fn serve(&self, peer: &NodeId, body: &[u8]) -> Vec<u8> {
        let request = match control_msg::decode::<ControlRequest>(body) {
            Ok(request) => request,
            Err(err) => {
                metrics::counter!("eddy_controller_bad_frames_total").increment(1);
                tracing::debug!(%peer, %err, "refused a controller message");
                return control_msg::encode(&ControlResponse::Refused(err.to_string()));
            }
        };
        let answer = match request {
            ControlRequest::Raft(frame) => {
                // One-way: Raft retransmits what a full queue drops.
                if self.raft.try_send(frame).is_err() {
                    metrics::counter!("eddy_controller_dropped_frames_total").increment(1);
                }
                ControlResponse::Ack
            }
            request => {
                let (reply, answer) = oneshot::channel();
                if self
                    .inputs
                    .try_send(Input::Request(request, reply))
                    .is_err()
                {
                    ControlResponse::Refused("controller busy".into())
                } else {
                    tokio::time::timeout(RPC_TIMEOUT, answer)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_else(|| ControlResponse::Refused("no answer".into()))
                }
            }
        };
        control_msg::encode(&answer)
    }

    /// Proposes an owner's `SetIsr` (or an `Elect` handing a partition
    /// over) — here if this node is a voter, and
    /// with `every_voter` (or on a non-voter) through the other live
    /// voters too, so an owner cut off from the leader alone still gets a
    /// shrink committed — and returns the partition's
    /// assignment once a version after the command's is committed, as the
    /// first voter to apply it reports (`None` if none did in `within`).
    pub async fn propose_isr(
        &self,
        command: Command,
        within: Duration,
        every_voter: bool,
    ) -> Option<Assignment> {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .try_send(Input::Propose(command, every_voter, reply))
            .ok()?;
        tokio::time::timeout(within, answer).await.ok()?.ok()
    }

    /// Proposes each of `commands` (owner changes) without waiting, here
    /// and through every other live voter: the outcome shows in the
    /// committed configuration.
    pub fn propose_many(&self, commands: Vec<Command>) {
        if commands.is_empty() {
            return;
        }
        if self.inputs.try_send(Input::ProposeMany(commands)).is_err() {
            tracing::debug!("the controller's inputs are full; owner changes proposed later");
        }
    }

    /// Proposes `Remove` of `members` and waits (bounded) for the commit.
    /// `Ok(names removed)`, or why nothing was committed (no leader, this
    /// node is no voter, a minority cannot commit).
    pub async fn remove(&self, members: Vec<MemberId>, within: Duration) -> RemoveResult {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .send(Input::Remove(members, reply))
            .await
            .map_err(|_| "the controller stopped".to_owned())?;
        match tokio::time::timeout(within, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the controller stopped".into()),
            Err(_) => Err(format!(
                "not committed within {within:?}: the controller sees no majority of its voters"
            )),
        }
    }
}

/// What the driver needs at start.
pub struct ControlArgs {
    /// This node's gossip identity (name, incarnation, addresses).
    pub identity: NodeIdentity,
    /// Configured voter names.
    pub voters: Vec<NodeId>,
    /// The Raft log, for a voter (`None` on a non-voter).
    pub log: Option<ControlLog>,
    /// Raft tick.
    pub tick: Duration,
    /// Partition count `P`.
    pub partitions: u32,
    /// Replication factor.
    pub replication: usize,
    /// Gossip membership (live members' addresses and incarnations).
    pub cluster: watch::Receiver<Arc<ClusterState>>,
    /// Where controller messages go out.
    pub links: PeerLinks,
    /// Where the committed configuration is published for the data path.
    pub committed: watch::Sender<Committed>,
}

/// Starts the driver task; it ends when `shutdown` turns true.
pub fn start(args: ControlArgs, shutdown: watch::Receiver<bool>) -> Result<ControlHandle, String> {
    let me = MemberId::new(args.identity.name.clone(), args.identity.incarnation);
    let (inputs_tx, inputs) = mpsc::channel(INPUT_QUEUE);
    let (raft_tx, raft) = mpsc::channel(RAFT_QUEUE);
    let mut driver = Driver {
        view: watch::channel(ControlView {
            name: me.name.to_string(),
            incarnation: me.incarnation,
            role: Role::None,
            state: "starting".into(),
            leader: None,
            term: 0,
            committed_index: 0,
            cluster_id: None,
            members: Vec::new(),
        })
        .0,
        me,
        info: MemberInfo {
            peer_addr: args.identity.peer_addr,
            http_addr: args.identity.http_addr,
            tcp_addr: args.identity.tcp_addr,
        },
        voters: args.voters,
        log: args.log,
        controller: None,
        known: None,
        partitions: args.partitions,
        replication: u8::try_from(args.replication).unwrap_or(u8::MAX),
        cluster: args.cluster,
        raft_links: args.links.apart(),
        links: args.links,
        inputs: inputs_tx.clone(),
        removing: Vec::new(),
        seen_cluster: None,
        leader_hint: None,
        stopped: false,
        committed: args.committed,
        logged_members: Vec::new(),
        published_at: None,
        planning: Planning::default(),
        leader_work_due: false,
        isr_waiters: Vec::new(),
    };
    let restore = driver
        .log
        .as_ref()
        .filter(|log| !log.state().is_empty())
        .map(|log| log.state().clone());
    if let Some(persisted) = restore {
        let controller = Controller::restore(driver.me.clone(), &persisted, driver.settings())
            .map_err(|err| format!("cannot restore the controller from its log: {err}"))?;
        tracing::info!(member = %driver.me, "controller restored from its Raft log");
        driver.controller = Some(controller);
    }
    let view = driver.view.subscribe();
    let tick = args.tick;
    tokio::spawn(driver.run(inputs, raft, tick, shutdown));
    Ok(ControlHandle {
        inputs: inputs_tx,
        raft: raft_tx,
        view,
    })
}

/// The committed configuration a non-voter learned from the leader.
struct Known {
    config: ClusterConfig,
    leader: NodeId,
    term: u64,
    index: u64,
}

struct Driver {
    me: MemberId,
    info: MemberInfo,
    voters: Vec<NodeId>,
    log: Option<ControlLog>,
    controller: Option<Controller>,
    /// On a non-voter: the configuration pushed by the leader.
    known: Option<Known>,
    partitions: u32,
    replication: u8,
    cluster: watch::Receiver<Arc<ClusterState>>,
    links: PeerLinks,
    /// Links of their own for Raft frames. A request to a voter (a
    /// proposal waits up to `RPC_TIMEOUT` for its commit) holds one of the
    /// connection's pending slots; owners proposing for hundreds of
    /// partitions at a failover filled them, so the appends that would
    /// commit those proposals waited behind them: no commit for seconds.
    /// Raft frames are answered at once, so on their own links they never
    /// wait.
    raft_links: PeerLinks,
    inputs: mpsc::Sender<Input>,
    view: watch::Sender<ControlView>,
    /// Forget-down proposals waiting for their commit.
    removing: Vec<PendingRemove>,
    /// A running cluster seen in a voter's status (then this node joins).
    seen_cluster: Option<u64>,
    /// A voter to send `Join` to (the leader when known).
    leader_hint: Option<NodeId>,
    /// The replica stopped (its log could not be written): it must never
    /// bootstrap or join afresh, having voted before.
    stopped: bool,
    committed: watch::Sender<Committed>,
    /// The committed members last logged.
    logged_members: Vec<String>,
    /// `(term, index)` of the configuration last published to `committed`.
    published_at: Option<(u64, u64)>,
    planning: Planning,
    /// A configuration was committed since the leader last pushed it to the
    /// non-voters and planned: done once per tick, not per commit (a
    /// first placement commits thousands of entries a second, and each
    /// push encodes the whole configuration for every non-voter).
    leader_work_due: bool,
    /// Owners waiting for their ISR changes to be applied here.
    isr_waiters: Vec<IsrWaiter>,
}

struct PendingRemove {
    tags: Vec<eddy_control::ProposalTag>,
    names: Vec<String>,
    reply: oneshot::Sender<RemoveResult>,
}

impl Driver {
    fn settings(&self) -> ControllerSettings {
        ControllerSettings {
            // Distinct per node and per start: election timeouts must differ.
            seed: self.me.raft_id().0 ^ crate::worker::now().0,
            ..ControllerSettings::default()
        }
    }

    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut raft: mpsc::Receiver<Vec<u8>>,
        tick: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Discovery, joins and pushes run about once a second.
        let per_second = (1000 / tick.as_millis().max(1)).max(1) as u64;
        let mut ticks: u64 = 0;
        // Gossip's view of who is live changes the plan (a dead owner's
        // partitions are elected elsewhere): the leader plans at the next
        // tick, not at the next second.
        let mut members = self.cluster.clone();
        let mut live = members.borrow_and_update().live_members();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                Ok(()) = members.changed() => {
                    let now = members.borrow_and_update().live_members();
                    if now != live {
                        live = now;
                        self.leader_work_due = true;
                    }
                }
                _ = ticker.tick() => {
                    ticks += 1;
                    if let Some(controller) = &mut self.controller {
                        controller.tick();
                    }
                    if ticks.is_multiple_of(per_second) {
                        self.every_second();
                    } else if std::mem::take(&mut self.leader_work_due)
                        && self.controller.as_ref().is_some_and(Controller::is_leader)
                    {
                        self.push_config();
                        self.plan();
                    }
                }
                Some(frame) = raft.recv() => {
                    self.input(Input::Raft(frame));
                    self.more_inputs(&mut raft, &mut inputs);
                }
                input = inputs.recv() => match input {
                    Some(input) => {
                        self.input(input);
                        self.more_inputs(&mut raft, &mut inputs);
                    }
                    None => break,
                },
            }
            self.drain();
        }
    }

    /// Steps what else is queued already (bounded), so one persist and one
    /// send cover them all.
    fn more_inputs(
        &mut self,
        raft: &mut mpsc::Receiver<Vec<u8>>,
        inputs: &mut mpsc::Receiver<Input>,
    ) {
        for _ in 1..INPUT_BATCH {
            if let Ok(frame) = raft.try_recv() {
                self.input(Input::Raft(frame));
            } else if let Ok(input) = inputs.try_recv() {
                self.input(input);
            } else {
                return;
            }
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Raft(frame) => match &mut self.controller {
                Some(controller) => {
                    if let Err(err) = controller.step(&frame) {
                        metrics::counter!("eddy_controller_bad_frames_total").increment(1);
                        tracing::debug!(%err, "refused a Raft frame");
                    }
                }
                None => {
                    metrics::counter!("eddy_controller_dropped_frames_total").increment(1);
                }
            },
            Input::Request(ControlRequest::Propose(command), reply) => {
                self.propose_for_peer(command, reply);
            }
            Input::Request(request, reply) => {
                let answer = self.request(request);
                let _ = reply.send(answer);
            }
            Input::Reports(reports) => self.decide(&reports),
            Input::Remove(members, reply) => self.propose_remove(members, reply),
            Input::Propose(command, every_voter, reply) => {
                self.propose_isr(command, every_voter, reply);
            }
            Input::ProposeMany(commands) => self.propose_many(commands),
        }
    }

    /// An owner's `SetIsr`: proposed here on a voter (Raft forwards it to
    /// the leader) and sent to every other live voter, which proposes it
    /// too (the version makes duplicates harmless) and answers once it
    /// applied a later version. The first answer goes to `reply`.
    fn propose_isr(
        &mut self,
        command: Command,
        every_voter: bool,
        reply: oneshot::Sender<Assignment>,
    ) {
        let Some((partition, version)) = self.proposal_key(&command) else {
            return;
        };
        let (first_tx, first) = oneshot::channel::<Assignment>();
        let first_tx = Arc::new(std::sync::Mutex::new(Some(first_tx)));
        if let Some(controller) = &mut self.controller {
            if let Err(err) = controller.propose(command.clone()) {
                tracing::debug!(%err, "ISR change not proposed here");
            }
            let (local_tx, local) = oneshot::channel();
            self.isr_waiters.push(IsrWaiter {
                partition,
                version,
                until: Instant::now() + RPC_TIMEOUT * 2,
                reply: IsrReply::Local(local_tx),
            });
            let first_tx = first_tx.clone();
            tokio::spawn(async move {
                if let Ok(assignment) = local.await {
                    deliver(&first_tx, assignment);
                }
            });
        }
        let state = self.cluster.borrow().clone();
        let peers: Vec<NodeIdentity> = if every_voter || self.controller.is_none() {
            self.voters
                .iter()
                .filter(|name| **name != self.me.name)
                .filter_map(|name| state.live_member(name).cloned())
                .collect()
        } else {
            Vec::new()
        };
        let body = Arc::new(control_msg::encode(&ControlRequest::Propose(command)));
        for peer in peers {
            let (links, body, first_tx) = (self.links.clone(), body.clone(), first_tx.clone());
            tokio::spawn(async move {
                match links.control(&peer, RPC_TIMEOUT, &body).await {
                    Ok(bytes) => match control_msg::decode::<ControlResponse>(&bytes) {
                        Ok(ControlResponse::Assignment { assignment, .. }) => {
                            deliver(&first_tx, assignment);
                        }
                        other => {
                            tracing::debug!(voter = %peer.name, ?other, "ISR change not taken")
                        }
                    },
                    Err(err) => tracing::debug!(%err, "ISR change not delivered"),
                }
            });
        }
        tokio::spawn(async move {
            if let Ok(assignment) = first.await {
                let _ = reply.send(assignment);
            }
        });
    }

    /// Owner and ISR changes, and a node's own drain (only `Elect`s,
    /// `SetIsr`s and `SetDraining`s are taken),
    /// proposed here if this node is a voter (Raft forwards them to the
    /// leader) and through every other live voter too (each proposes them;
    /// a stale duplicate is rejected by its version or epoch): a node cut
    /// off from the leader alone still gets them committed, and one
    /// request per voter, not a message per partition, carries them.
    fn propose_many(&mut self, commands: Vec<Command>) {
        let commands = owner_changes(commands);
        if commands.is_empty() {
            return;
        }
        self.propose_here(&commands);
        let state = self.cluster.borrow().clone();
        let body = Arc::new(control_msg::encode(&ControlRequest::ProposeMany(commands)));
        for peer in self
            .voters
            .iter()
            .filter(|name| **name != self.me.name)
            .filter_map(|name| state.live_member(name).cloned())
        {
            let (links, body) = (self.links.clone(), body.clone());
            tokio::spawn(async move {
                if let Err(err) = links.control(&peer, RPC_TIMEOUT, &body).await {
                    tracing::debug!(%err, "owner changes not delivered");
                }
            });
        }
    }

    /// Proposes `commands` to this node's controller, if it is a voter
    /// (Raft forwards them to the leader).
    fn propose_here(&mut self, commands: &[Command]) {
        if let Some(controller) = &mut self.controller {
            for command in commands {
                if let Err(err) = controller.propose(command.clone()) {
                    tracing::debug!(%err, "an owner change not proposed here");
                }
            }
        }
    }

    /// The partition a proposal of an owner or ISR change is about, and the
    /// assignment version an answer must pass: a `SetIsr` names its own, an
    /// `Elect` moves on from the version known here.
    fn proposal_key(&self, command: &Command) -> Option<(PartitionId, u64)> {
        match command {
            Command::SetIsr {
                partition, version, ..
            } => Some((*partition, *version)),
            Command::Elect { partition, .. } => {
                let known = self.committed.borrow().clone();
                let version = match &self.controller {
                    Some(controller) => controller.config().assignment(*partition)?.version,
                    None => known.as_ref()?.assignment(*partition)?.version,
                };
                Some((*partition, version))
            }
            Command::Join { .. } | Command::Remove { .. } | Command::SetDraining { .. } => None,
        }
    }

    /// Answers the waiters whose partition passed their version, and drops
    /// those past their time.
    fn answer_isr_waiters(&mut self) {
        if self.isr_waiters.is_empty() {
            return;
        }
        let Some(config) = self.controller.as_ref().map(Controller::config) else {
            self.isr_waiters.clear();
            return;
        };
        let now = Instant::now();
        let mut waiting = Vec::new();
        for waiter in std::mem::take(&mut self.isr_waiters) {
            let passed = config
                .assignment(waiter.partition)
                .filter(|a| a.version > waiter.version)
                .cloned();
            match (passed, waiter.reply) {
                (Some(assignment), IsrReply::Local(reply)) => {
                    let _ = reply.send(assignment);
                }
                (Some(assignment), IsrReply::Peer(reply)) => {
                    let _ = reply.send(ControlResponse::Assignment {
                        partition: waiter.partition,
                        assignment,
                    });
                }
                (None, reply) if now < waiter.until => waiting.push(IsrWaiter { reply, ..waiter }),
                (None, _) => {}
            }
        }
        self.isr_waiters = waiting;
    }

    /// A peer owner's `SetIsr`: proposed here, answered once applied.
    fn propose_for_peer(&mut self, command: Command, reply: oneshot::Sender<ControlResponse>) {
        let Some(controller) = &mut self.controller else {
            let _ = reply.send(ControlResponse::Refused(format!(
                "{} is not a voter",
                self.me.name
            )));
            return;
        };
        // Peers change ISRs and owners only; membership has its own
        // requests.
        let key = match &command {
            Command::SetIsr {
                partition, version, ..
            } => Some((*partition, *version)),
            Command::Elect { partition, .. } => controller
                .config()
                .assignment(*partition)
                .map(|a| (*partition, a.version)),
            Command::Join { .. } | Command::Remove { .. } | Command::SetDraining { .. } => None,
        };
        let Some((partition, version)) = key else {
            let _ = reply.send(ControlResponse::Refused(
                "only SetIsr and Elect are proposed for peers".into(),
            ));
            return;
        };
        if let Err(err) = controller.propose(command) {
            tracing::debug!(%err, "a peer's ISR change not proposed here");
        }
        self.isr_waiters.push(IsrWaiter {
            partition,
            version,
            until: Instant::now() + RPC_TIMEOUT,
            reply: IsrReply::Peer(reply),
        });
    }

    /// The leader if known and live, else any live configured voter.
    fn voter_to_ask(&self) -> Option<NodeIdentity> {
        let state = self.cluster.borrow().clone();
        if let Some(peer) = self.leader_hint.as_ref().and_then(|l| state.live_member(l))
            && peer.name != self.me.name
        {
            return Some(peer.clone());
        }
        self.voters
            .iter()
            .filter(|name| **name != self.me.name)
            .find_map(|name| state.live_member(name).cloned())
    }

    /// On the leader: propose what moves the placement on.
    fn plan(&mut self) {
        let Some(controller) = &mut self.controller else {
            return;
        };
        if !controller.is_leader() {
            return;
        }
        let live = self.cluster.borrow().live_members();
        let commands = self
            .planning
            .commands(controller.config(), &live, Instant::now());
        for command in commands {
            if let Err(err) = controller.propose(command) {
                tracing::debug!(%err, "placement change not proposed");
                break;
            }
        }
    }

    fn request(&mut self, request: ControlRequest) -> ControlResponse {
        match request {
            ControlRequest::Raft(_) => ControlResponse::Refused("raft frames are one-way".into()),
            ControlRequest::Status => ControlResponse::Status(self.status()),
            ControlRequest::Propose(_) => {
                ControlResponse::Refused("proposals are answered when applied".into())
            }
            ControlRequest::ProposeMany(commands) => {
                if self.controller.is_none() {
                    return ControlResponse::Refused(format!("{} is not a voter", self.me.name));
                }
                // Membership has its own requests (and checks).
                self.propose_here(&owner_changes(commands));
                ControlResponse::Ack
            }
            ControlRequest::Join { member, info } => {
                let Some(controller) = &mut self.controller else {
                    return ControlResponse::Refused(format!("{} is not a voter", self.me.name));
                };
                if controller.config().is_member(&member) {
                    return ControlResponse::Ack;
                }
                if !self.log.as_ref().is_some_and(ControlLog::is_durable) {
                    // Its configuration dies with the process: a restart
                    // would found a new cluster beside the members.
                    return ControlResponse::Refused(format!(
                        "{} is a cluster of one without data_dir and admits no member; give it a data_dir to grow a cluster",
                        self.me.name
                    ));
                }
                match controller.propose(Command::Join { member, info }) {
                    Ok(_) => ControlResponse::Ack,
                    Err(err) => ControlResponse::Refused(err.to_string()),
                }
            }
            ControlRequest::Config {
                config,
                leader,
                term,
                index,
            } => {
                if self.controller.is_some() {
                    return ControlResponse::Refused("a voter learns from the log".into());
                }
                let config = match ClusterConfig::decode(&config) {
                    Ok(config) => config,
                    Err(err) => {
                        metrics::counter!("eddy_controller_bad_frames_total").increment(1);
                        return ControlResponse::Refused(err.to_string());
                    }
                };
                let newer = eddy_control::pushed_is_newer(
                    self.known.as_ref().map(|k| (k.term, k.index)),
                    (term, index),
                );
                if newer {
                    self.leader_hint = Some(leader.clone());
                    self.known = Some(Known {
                        config,
                        leader,
                        term,
                        index,
                    });
                }
                ControlResponse::Ack
            }
        }
    }

    fn status(&self) -> StatusReport {
        match &self.controller {
            Some(controller) => StatusReport {
                member: self.me.clone(),
                cluster: Some(controller.config().cluster_id()),
                leader: self.leader_name(),
                voters: controller
                    .config()
                    .members()
                    .filter(|m| m.voter)
                    .cloned()
                    .collect(),
            },
            None => StatusReport {
                member: self.me.clone(),
                cluster: None,
                leader: self.known.as_ref().map(|k| k.leader.clone()),
                voters: Vec::new(),
            },
        }
    }

    fn leader_name(&self) -> Option<NodeId> {
        let controller = self.controller.as_ref()?;
        let leader = controller.leader()?;
        controller
            .config()
            .member_by_raft_id(leader)
            .map(|m| m.id.name.clone())
    }

    /// Once a second: discover (until decided), ask to join (until a
    /// member), push the configuration (the leader).
    fn every_second(&mut self) {
        if self.stopped {
            return;
        }
        match &self.controller {
            Some(controller) if controller.is_leader() => {
                self.leader_work_due = false;
                self.push_config();
                self.plan();
            }
            Some(_) => {}
            None => {
                let member = self
                    .known
                    .as_ref()
                    .is_some_and(|k| k.config.is_member(&self.me));
                if self.seen_cluster.is_some() || self.known.is_some() {
                    if !member {
                        self.ask_to_join();
                    }
                } else {
                    self.discover();
                }
            }
        }
    }

    /// Asks every configured voter seen in gossip for its status; the
    /// reports come back as an input.
    fn discover(&self) {
        let state = self.cluster.borrow().clone();
        let peers: Vec<NodeIdentity> = self
            .voters
            .iter()
            .filter(|name| **name != self.me.name)
            .filter_map(|name| state.live_member(name).cloned())
            .collect();
        let links = self.links.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let body = control_msg::encode(&ControlRequest::Status);
            let asks = peers
                .iter()
                .map(|peer| links.control(peer, RPC_TIMEOUT, &body));
            let answers = futures_util::future::join_all(asks).await;
            let reports = answers
                .into_iter()
                .filter_map(Result::ok)
                .filter_map(|bytes| match control_msg::decode(&bytes) {
                    Ok(ControlResponse::Status(report)) => Some(report),
                    _ => None,
                })
                .collect();
            let _ = inputs.send(Input::Reports(reports)).await;
        });
    }

    fn decide(&mut self, reports: &[StatusReport]) {
        if self.controller.is_some() || self.stopped {
            return;
        }
        // A voter of a running group that holds no state lost the race to
        // persist the bootstrap (a peer bootstrapped and answered first):
        // it bootstraps the identical configuration from the peer's list.
        if let Some(report) = reports
            .iter()
            .find(|r| r.cluster.is_some() && r.voters.iter().any(|v| v.id == self.me))
        {
            let voters: Vec<(MemberId, MemberInfo)> = report
                .voters
                .iter()
                .map(|m| (m.id.clone(), m.info.clone()))
                .collect();
            let cluster_id = report.cluster.unwrap_or_default();
            self.bootstrap(cluster_id, &voters);
            return;
        }
        let observed: Vec<RaftPresence> = reports
            .iter()
            .map(|r| RaftPresence {
                member: r.member.clone(),
                cluster: r.cluster,
            })
            .collect();
        if let Some(leader) = reports.iter().find_map(|r| r.leader.clone()) {
            self.leader_hint = Some(leader);
        } else if let Some(voter) = reports.iter().find(|r| r.cluster.is_some()) {
            self.leader_hint = Some(voter.member.name.clone());
        }
        let mine = RaftPresence {
            member: self.me.clone(),
            cluster: None,
        };
        match bootstrap_decision(&mine, &observed, &self.voters, None) {
            BootstrapDecision::Bootstrap { voters, cluster_id } => {
                let state = self.cluster.borrow().clone();
                let with_info: Option<Vec<(MemberId, MemberInfo)>> = voters
                    .into_iter()
                    .map(|id| {
                        if id == self.me {
                            return Some((id, self.info.clone()));
                        }
                        let peer = state.live_member(&id.name)?;
                        let info = MemberInfo {
                            peer_addr: peer.peer_addr,
                            http_addr: peer.http_addr,
                            tcp_addr: peer.tcp_addr,
                        };
                        Some((id, info))
                    })
                    .collect();
                match with_info {
                    Some(voters) => self.bootstrap(cluster_id, &voters),
                    None => self.set_state("waiting for voters: one left gossip".into()),
                }
            }
            BootstrapDecision::JoinExisting { cluster } => {
                tracing::info!(cluster = format!("{cluster:016x}"), member = %self.me, "a controller cluster runs: asking to join it");
                self.seen_cluster = Some(cluster);
                self.set_state("joining".into());
                // At once, not a second later: a restarted node serves
                // nothing until it is a member again.
                self.ask_to_join();
            }
            BootstrapDecision::Wait { missing } => {
                let names: Vec<&str> = missing.iter().map(NodeId::as_str).collect();
                self.set_state(format!("waiting for voters: {}", names.join(", ")));
            }
            BootstrapDecision::WaitForCluster => {
                self.set_state("waiting for the voters to form a cluster".into());
            }
            BootstrapDecision::Misconfigured(reason) => {
                self.set_state(format!("misconfigured: {reason}"));
            }
            // `mine` holds no state here: a node with state restored at start.
            BootstrapDecision::Restore => {}
        }
    }

    fn bootstrap(&mut self, cluster_id: u64, voters: &[(MemberId, MemberInfo)]) {
        if self.log.is_none() {
            // Only a configured voter has a log (config validation), and
            // only a listed voter reaches here.
            self.set_state("misconfigured: a voter without data_dir".into());
            return;
        }
        let initial =
            ClusterConfig::bootstrap(cluster_id, self.partitions, self.replication, voters);
        match Controller::bootstrap(self.me.clone(), &initial, self.settings()) {
            Ok(controller) => {
                tracing::info!(cluster = format!("{cluster_id:016x}"), voters = voters.len(), member = %self.me, "controller cluster bootstrapped");
                self.controller = Some(controller);
            }
            Err(err) => self.set_state(format!("cannot bootstrap: {err}")),
        }
    }

    fn ask_to_join(&self) {
        // The leader if known, else any configured voter seen (a follower
        // proposes too: Raft forwards the proposal to its leader).
        let Some(target) = self.voter_to_ask() else {
            return;
        };
        let body = control_msg::encode(&ControlRequest::Join {
            member: self.me.clone(),
            info: self.info.clone(),
        });
        let links = self.links.clone();
        tokio::spawn(async move {
            match links.control(&target, RPC_TIMEOUT, &body).await {
                Ok(bytes) => match control_msg::decode::<ControlResponse>(&bytes) {
                    Ok(ControlResponse::Ack) => {}
                    other => tracing::debug!(voter = %target.name, ?other, "join not taken"),
                },
                Err(err) => tracing::debug!(%err, "join request failed"),
            }
        });
    }

    /// The leader sends the committed configuration to every live node
    /// that is not one of its voters.
    fn push_config(&self) {
        let Some(controller) = &self.controller else {
            return;
        };
        let config = controller.config();
        let body = control_msg::encode(&ControlRequest::Config {
            config: config.encode(),
            leader: self.me.name.clone(),
            term: controller.term(),
            index: controller.applied_index(),
        });
        let state = self.cluster.borrow().clone();
        let body = Arc::new(body);
        for entry in &state.members {
            let peer = &entry.identity;
            let voter = config
                .member_named(&peer.name)
                .is_some_and(|m| m.voter && m.id.incarnation == peer.incarnation);
            if voter || !entry.status.is_live() || peer.name == self.me.name {
                continue;
            }
            let links = self.links.clone();
            let peer = peer.clone();
            let body = body.clone();
            tokio::spawn(async move {
                if let Err(err) = links.control(&peer, RPC_TIMEOUT, &body).await {
                    tracing::debug!(%err, "configuration push failed");
                }
            });
        }
    }

    fn propose_remove(&mut self, members: Vec<MemberId>, reply: oneshot::Sender<RemoveResult>) {
        let Some(controller) = &mut self.controller else {
            let _ = reply.send(Err(format!(
                "{} is not a controller voter; ask a voter",
                self.me.name
            )));
            return;
        };
        let members: Vec<MemberId> = members
            .into_iter()
            .filter(|m| controller.config().is_member(m))
            .collect();
        if members.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
            return;
        }
        let mut tags = Vec::new();
        for member in &members {
            match controller.propose(Command::Remove {
                member: member.clone(),
            }) {
                Ok(tag) => tags.push(tag),
                Err(err) => {
                    let _ = reply.send(Err(format!(
                        "not proposed: {err} (no leader: the controller sees no majority of its voters)"
                    )));
                    return;
                }
            }
        }
        self.removing.push(PendingRemove {
            tags,
            names: members.iter().map(ToString::to_string).collect(),
            reply,
        });
    }

    /// After every input: persist, then send, then read what was applied
    /// and published (the crate's order).
    fn drain(&mut self) {
        let Some(controller) = &mut self.controller else {
            self.publish_view();
            return;
        };
        let persist = controller.drain_persist();
        if let Some(log) = &mut self.log
            && let Err(err) = log.persist(&persist)
        {
            // Nothing of this round may leave: peers would learn of votes
            // or entries that are not durable. The replica stops (the
            // group goes on with the other voters) and says why.
            tracing::error!(%err, "cannot persist the Raft log; the controller replica stops");
            metrics::counter!("eddy_storage_write_errors_total").increment(1);
            self.controller = None;
            self.stopped = true;
            self.set_state(format!("stopped: {err}"));
            return;
        }
        let outbound = controller.drain_outbound();
        let applied = controller.drain_applied();
        let published = controller.take_published().is_some();
        self.send(outbound);
        self.answer_isr_waiters();
        for pending in std::mem::take(&mut self.removing) {
            let mut outcomes = Vec::new();
            for tag in &pending.tags {
                if let Some(a) = applied.iter().find(|a| a.tag.as_ref() == Some(tag)) {
                    outcomes.push(a.outcome.clone());
                }
            }
            if outcomes.len() < pending.tags.len() {
                self.removing.push(pending);
                continue;
            }
            let result = pending
                .names
                .into_iter()
                .zip(outcomes)
                .map(|(name, outcome)| (name, outcome.err().map(|r| r.to_string())))
                .collect();
            let _ = pending.reply.send(Ok(result));
        }
        self.removing.retain(|p| !p.reply.is_closed());
        if published && let Some(controller) = &self.controller {
            {
                let members: Vec<String> = controller
                    .config()
                    .members()
                    .map(|m| m.id.to_string())
                    .collect();
                // Ownership and ISR changes commit all the time; a person
                // reads the member changes.
                if members != self.logged_members {
                    tracing::info!(
                        index = controller.applied_index(),
                        ?members,
                        "committed members"
                    );
                    self.logged_members = members;
                }
                if controller.is_leader() {
                    self.leader_work_due = true;
                }
            }
        }
        self.publish_view();
    }

    fn send(&self, outbound: Vec<eddy_control::Outbound>) {
        let Some(controller) = &self.controller else {
            return;
        };
        let state = self.cluster.borrow().clone();
        for frame in outbound {
            let Some(member) = controller.config().member_by_raft_id(frame.to) else {
                continue;
            };
            // Only to the same incarnation: a Raft id names one life. Also
            // to a member gossip calls down: Raft has its own timeouts, and
            // a voter starved of appends by a gossip flap (at a heal every
            // node can flap at once) fell 25 s behind the committed
            // configuration, refusing the new owners' entries meanwhile.
            let Some(peer) = state.known_member(&member.id).cloned() else {
                continue;
            };
            let body = control_msg::encode(&ControlRequest::Raft(frame.bytes));
            let links = self.raft_links.clone();
            tokio::spawn(async move {
                if let Err(err) = links.control(&peer, RPC_TIMEOUT, &body).await {
                    tracing::trace!(%err, "raft frame not delivered");
                }
            });
        }
    }

    fn set_state(&self, state: String) {
        self.view.send_if_modified(|view| {
            let changed = view.state != state;
            view.state = state;
            changed
        });
    }

    fn publish_view(&mut self) {
        let (role, leader, term, index, config) = match (&self.controller, &self.known) {
            (Some(controller), _) => (
                Role::Voter,
                self.leader_name(),
                controller.term(),
                controller.applied_index(),
                Some(controller.config()),
            ),
            (None, Some(known)) => (
                if known.config.is_member(&self.me) {
                    Role::Member
                } else {
                    Role::None
                },
                Some(known.leader.clone()),
                known.term,
                known.index,
                Some(&known.config),
            ),
            (None, None) => (Role::None, None, 0, 0, None),
        };
        if let Some(config) = config
            && self.published_at != Some((term, index))
        {
            self.published_at = Some((term, index));
            let config = Arc::new(config.clone());
            self.committed.send_replace(Some(config));
        }
        let members: Vec<MemberView> = config
            .map(|c| {
                c.members()
                    .map(|m: &Member| MemberView {
                        name: m.id.name.to_string(),
                        incarnation: m.id.incarnation,
                        voter: m.voter,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let is_leader = self.controller.as_ref().is_some_and(Controller::is_leader);
        metrics::gauge!("eddy_controller_leader").set(if is_leader { 1.0 } else { 0.0 });
        metrics::gauge!("eddy_controller_committed_index").set(index as f64);
        let running = config.is_some();
        self.view.send_if_modified(|view| {
            let before = view.clone();
            view.role = role;
            view.leader = leader.map(|l| l.to_string());
            view.term = term;
            view.committed_index = index;
            view.cluster_id = config.map(ClusterConfig::cluster_id);
            view.members = members;
            if running && role != Role::None {
                view.state = "running".into();
            }
            *view != before
        });
    }
}

/// Hands the first answer of several to whoever waits for it.
fn deliver(first: &std::sync::Mutex<Option<oneshot::Sender<Assignment>>>, assignment: Assignment) {
    if let Some(sender) = first.lock().ok().and_then(|mut f| f.take()) {
        let _ = sender.send(assignment);
    }
}

/// The commands a node proposes for itself or a peer in bulk: ownership,
/// ISR and drain changes, never membership (`Join` and `Remove` have their
/// own requests and checks).
fn owner_changes(commands: Vec<Command>) -> Vec<Command> {
    commands
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Command::Elect { .. } | Command::SetIsr { .. } | Command::SetDraining { .. }
            )
        })
        .collect()
}
