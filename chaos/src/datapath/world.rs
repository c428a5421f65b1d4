//! The simulated cluster: nodes, the network, the committed configuration
//! and the client, and every step the node's shell would take — written as
//! driver glue around the real decisions (`eddy_replica`, `eddy_control`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_cluster::PartitionTable;
use eddy_control::reach::serving_members;
use eddy_control::{
    Assignment, ClusterConfig, Command, Decision, MemberId, OwnerIsr, serving_table,
    target_table_with_vnodes,
};
use eddy_core::{
    Epoch, EventRef, Outputs, PartitionId, ProducerView, Registry, Replicated, Seq, Timestamp,
    encode_event,
};
use eddy_replica::{Admit, Confirmation, GiveUp, Installed, Placement, Role, Route, Slot, Take};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::kind::{TRAIL, Trail, key_of, values};
use super::net::{Ask, Body, Frame, Net};
use super::node::{CHUNK_BYTES, SimNode};
use super::{DataPathBug, DataPathReport};

/// The one partition simulated.
pub const P: PartitionId = PartitionId(0);

/// Steps a write waits for its backups' answers (the node's request
/// timeout).
const ANSWER_WITHIN: u64 = 60;

/// One committed configuration and the table nodes serve by under it.
struct Committed {
    config: ClusterConfig,
    table: PartitionTable,
}

/// A client write on its way: its owner waits for these backups.
struct Pending {
    id: u64,
    owner: usize,
    generation: u64,
    epoch: Epoch,
    position: Seq,
    value: u32,
    /// Backup (node index) → its member id, and whether it confirmed
    /// (`None`: no answer yet).
    expect: BTreeMap<usize, (MemberId, Option<bool>)>,
    deadline: u64,
    /// The shrink proposed for it, waiting to be seen committed.
    shrink: Option<Command>,
}

/// The client: writes one value at a time, retrying it (with the same
/// producer sequence number) until it is acknowledged.
#[derive(Default)]
struct Client {
    next: u32,
    acked: BTreeSet<u32>,
}

/// The whole simulated cluster.
pub struct World {
    pub rng: ChaCha8Rng,
    registry: Arc<Registry>,
    pub nodes: Vec<SimNode>,
    pub net: Net,
    history: Vec<Committed>,
    pub isolated: Vec<bool>,
    pending: Vec<Pending>,
    /// Nodes' proposals on their way to the controller's log, in order; a
    /// batch (one `propose_many`) lands in the log in one piece.
    proposals: std::collections::VecDeque<Vec<Command>>,
    next_write: u64,
    client: Client,
    min_insync: usize,
    bug: Option<DataPathBug>,
    pub step: u64,
    start: Instant,
    pub report: DataPathReport,
}

impl World {
    /// `nodes` nodes, all members from the start, `replication` copies.
    pub fn new(
        rng: ChaCha8Rng,
        nodes: usize,
        replication: u8,
        min_insync: usize,
        bug: Option<DataPathBug>,
        report: DataPathReport,
    ) -> Result<World, String> {
        let nodes: Vec<SimNode> = (0..nodes).map(SimNode::new).collect();
        let voters: Vec<_> = nodes
            .iter()
            .map(|n| (n.member(), eddy_control::testing::fixture_info(n.index)))
            .collect();
        let config = ClusterConfig::bootstrap(1, 1, replication, &voters);
        let mut world = World {
            rng,
            registry: super::kind::registry()?,
            net: Net::new(nodes.len()),
            isolated: vec![false; nodes.len()],
            nodes,
            history: Vec::new(),
            pending: Vec::new(),
            proposals: std::collections::VecDeque::new(),
            next_write: 1,
            client: Client::default(),
            min_insync,
            bug,
            step: 0,
            start: Instant::now(),
            report,
        };
        world.push(config);
        Ok(world)
    }

    /// The partition's latest committed assignment.
    fn committed(&self) -> Assignment {
        self.latest()
            .config
            .assignment(P)
            .cloned()
            .unwrap_or_default()
    }

    fn latest(&self) -> &Committed {
        // `new` pushes the bootstrap configuration; nothing pops.
        &self.history[self.history.len() - 1]
    }

    fn live(&self) -> BTreeSet<MemberId> {
        self.nodes
            .iter()
            .filter(|n| n.up && !self.isolated[n.index])
            .map(SimNode::member)
            .collect()
    }

    /// Commits `config` with the table for today's live members.
    fn push(&mut self, config: ClusterConfig) {
        let target = target_table_with_vnodes(&config, &self.live(), 16);
        let table = serving_table(&config, &target);
        self.history.push(Committed { config, table });
    }

    /// The live members changed: the table follows.
    pub fn relive(&mut self) {
        let config = self.latest().config.clone();
        self.push(config);
    }

    /// Commits `command` (one ordered log stands in for Raft); `false` if
    /// the state machine rejected it.
    fn commit(&mut self, command: &Command) -> bool {
        let mut config = self.latest().config.clone();
        if config.apply(command).is_err() {
            return false;
        }
        if let Command::Elect { .. } = command {
            self.report.elections += 1;
        }
        self.push(config);
        true
    }

    /// A node's proposal to the controller: committed later, in order, or
    /// rejected then if the configuration moved on (a node cut off from
    /// the controller cannot make one).
    fn propose(&mut self, i: usize, commands: Vec<Command>) {
        if !self.isolated[i] && !commands.is_empty() {
            self.proposals.push_back(commands);
        }
    }

    /// The controller commits (or rejects) the oldest proposal, a batch in
    /// one piece; whether there was one.
    pub fn commit_proposal(&mut self) -> bool {
        let Some(commands) = self.proposals.pop_front() else {
            return false;
        };
        for command in &commands {
            self.commit(command);
        }
        true
    }

    /// The planner's next commands, committed; whether any was.
    pub fn plan(&mut self) -> bool {
        let config = self.latest().config.clone();
        let live = self.live();
        let target = target_table_with_vnodes(&config, &live, 16);
        let mut changed = false;
        for command in eddy_control::plan(&config, &target, &live, &BTreeSet::new()) {
            changed |= self.commit(&command);
        }
        changed
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.step * 10)
    }

    fn assignment(&self, node: usize) -> Assignment {
        let view = &self.history[self.nodes[node].view];
        view.config.assignment(P).cloned().unwrap_or_default()
    }

    fn ours(&self, node: usize) -> bool {
        let view = &self.history[self.nodes[node].view];
        view.table.owner(P) == Some(&self.nodes[node].name)
    }

    /// `node` learns the latest committed configuration.
    pub fn catch_up(&mut self, node: usize) -> Result<(), String> {
        if !self.nodes[node].up || self.isolated[node] {
            return Ok(());
        }
        self.nodes[node].view = self.history.len() - 1;
        self.on_view(node)
    }

    /// What the worker and the ownership task do with a new view: roles,
    /// the owner's bookkeeping, a takeover, new backups brought up to date,
    /// held messages run.
    fn on_view(&mut self, i: usize) -> Result<(), String> {
        let a = self.assignment(i);
        let me = self.nodes[i].member();
        let now = self.now();
        let registry = self.registry.clone();
        let held_empty = {
            let view = &self.history[self.nodes[i].view];
            let node = &mut self.nodes[i];
            let placement = Placement {
                table: &view.table,
                local: &node.name,
                committed: a.epoch,
                in_first_isr: a.is_first_isr() && a.isr.contains(&me),
            };
            let fresh = || eddy_core::Partition::new(registry, P, Default::default());
            let untrusted = node.untrusted;
            eddy_replica::apply_placement(&mut node.slot, P, &placement, now, untrusted, fresh)
                .held_empty
        };
        if held_empty {
            self.nodes[i].checkpoint()?;
        }
        let node = &mut self.nodes[i];
        if let Some(isr) = node.isr.as_mut() {
            isr.observe(&a);
        }
        if !node.serving() {
            node.isr = None;
        }
        let (untrusted, inherited) = (node.untrusted, node.inherited);
        if untrusted {
            self.give_up(i, &a);
        } else if a.owner.as_ref() == Some(&me) && !node.serving() {
            if eddy_replica::must_reelect(inherited, a.epoch) {
                self.propose(i, vec![eddy_replica::reelection(P, &a, &me)]);
            } else {
                self.nodes[i].inherited = None;
                self.take(i, &a)?;
            }
        }
        if self.nodes[i].serving() {
            let behind = {
                let backups: Vec<_> = self
                    .backups(i)
                    .into_iter()
                    .map(|j| self.nodes[j].identity())
                    .collect();
                let refs: Vec<_> = backups.iter().collect();
                self.nodes[i]
                    .slot
                    .as_mut()
                    .is_some_and(|s| s.keep_followers(&refs))
            };
            if behind {
                self.ship(i, &[], None);
            }
        }
        // Writes held for a shrink are decided again under this view.
        let held: Vec<u64> = self
            .pending
            .iter()
            .filter(|p| p.owner == i && p.shrink.is_some())
            .map(|p| p.id)
            .collect();
        for id in held {
            self.settle(id)?;
        }
        let epoch = a.epoch;
        for (_, frame) in self.nodes[i].parked.release(|_| epoch) {
            self.run_replica(frame)?;
        }
        Ok(())
    }

    /// The ownership task's proposal about an untrusted copy.
    fn give_up(&mut self, i: usize, a: &Assignment) {
        let me = self.nodes[i].member();
        if let GiveUp::Propose(commands) = eddy_replica::give_up(P, a, &me, &self.live()) {
            self.propose(i, commands);
        }
    }

    /// `node`'s partition worker fails and its supervisor starts another:
    /// with `data_dir` it reloads the copy from the log and takes an
    /// ownership it finds committed only at a newer epoch; without, the
    /// copy is lost and untrusted.
    pub fn fail_worker(&mut self, node: usize) -> Result<(), String> {
        let a = self.assignment(node);
        let me = self.nodes[node].member();
        self.nodes[node].fail_worker();
        if self.report.durable {
            self.nodes[node].load(&self.registry.clone())?;
            self.nodes[node].inherited = Some(a.epoch).filter(|_| a.owner.as_ref() == Some(&me));
        } else {
            self.nodes[node].untrusted = self.bug != Some(DataPathBug::WorkerFailureTrusted)
                && eddy_replica::lost_with_worker(Some(&a));
        }
        self.pending.retain(|p| p.owner != node);
        self.report.worker_failures += 1;
        self.on_view(node)
    }

    /// `node`, down, loses its data.
    pub fn wipe(&mut self, node: usize, keep_identity: bool) {
        self.nodes[node].wipe(keep_identity);
        self.report.wipes += 1;
    }

    /// The ownership task takes the partition the configuration gives.
    fn take(&mut self, i: usize, a: &Assignment) -> Result<(), String> {
        let registry = self.registry.clone();
        let fresh = || eddy_core::Partition::new(registry, P, Default::default());
        let node = &mut self.nodes[i];
        let taken = eddy_replica::take(&mut node.slot, a.epoch, true, node.untrusted, fresh);
        let had_copy = match taken {
            Take::Taken { had_copy, .. } => had_copy,
            Take::NoCopy => {
                // Elected without a copy: it hands the partition over as an
                // untrusted one does.
                node.untrusted = true;
                return Ok(());
            }
            Take::Untrusted | Take::Stale { .. } => return Ok(()),
        };
        if !had_copy {
            node.checkpoint()?;
        }
        node.isr = Some(OwnerIsr::with_min_insync(
            P,
            node.member(),
            a,
            self.min_insync,
        ));
        self.report.takeovers += 1;
        // The check that matters: a new owner holds every acknowledged write.
        let held = node.copy().map(values).unwrap_or_default();
        let name = node.name.clone();
        for value in &self.client.acked {
            if !held.contains_key(value) {
                self.report.violations.push(format!(
                    "step {}: {name} took the partition at epoch {} without acknowledged value {value}",
                    self.step, a.epoch.0
                ));
            }
        }
        self.ship(i, &[], None);
        Ok(())
    }

    /// The backups the owner `i` ships to: the table's, in its view — by
    /// a ring without the backups it finds unreachable, if any, as the
    /// node's cluster driver computes it (write-path rule 7).
    fn backups(&self, i: usize) -> Vec<usize> {
        let view = &self.history[self.nodes[i].view];
        let unreachable = self.nodes[i].reach.peers();
        let substitute;
        let table = if unreachable.is_empty() {
            &view.table
        } else {
            let serving = serving_members(&self.live(), &unreachable, &self.nodes[i].name);
            let target = target_table_with_vnodes(&view.config, &serving, 16);
            substitute = serving_table(&view.config, &target);
            &substitute
        };
        table
            .replicas(P)
            .skip(1)
            .filter_map(|name| self.nodes.iter().position(|n| n.name == *name))
            .collect()
    }

    /// Tells owner `i`'s ISR bookkeeping which committed backups it finds
    /// silent (the node's `IsrAcks::with` does the same).
    fn silence(&mut self, i: usize) {
        let unreachable = self.nodes[i].reach.peers();
        let silent = self
            .assignment(i)
            .isr
            .into_iter()
            .filter(|m| unreachable.contains(&m.name))
            .collect();
        if let Some(isr) = self.nodes[i].isr.as_mut() {
            isr.set_silent(silent);
        }
    }

    /// The member node `j` is in node `i`'s view of the configuration.
    fn member_seen(&self, i: usize, j: usize) -> MemberId {
        let view = &self.history[self.nodes[i].view];
        view.config
            .member_named(&self.nodes[j].name)
            .map_or_else(|| self.nodes[j].member(), |m| m.id.clone())
    }

    /// Whether owner `i` sees backup `j` live (gossip's view).
    fn sees(&self, i: usize, j: usize) -> bool {
        self.nodes[j].up && !self.isolated[i] && !self.isolated[j]
    }

    /// Ships `entries` (empty: a barrier) of owner `i` to its backups, a
    /// snapshot first to one that does not follow its log; returns the
    /// answers to wait for, by backup.
    fn ship(
        &mut self,
        i: usize,
        entries: &[u8],
        write: Option<u64>,
    ) -> BTreeMap<usize, (MemberId, Option<bool>)> {
        let mut expect = BTreeMap::new();
        let backups = self.backups(i);
        let Some((epoch, required)) = self.nodes[i].copy().map(|c| (c.epoch(), c.last_seq()))
        else {
            return expect;
        };
        let ask = Ask {
            write,
            required,
            epoch,
        };
        for j in backups {
            let member = self.member_seen(i, j);
            let identity = self.nodes[j].identity();
            let live = self.sees(i, j).then_some(&identity);
            let Some(slot) = self.nodes[i].slot.as_mut() else {
                continue;
            };
            let route = slot.route(live);
            if route == Route::Unreachable {
                expect.insert(j, (member, Some(false)));
                continue;
            }
            if route == Route::Entries {
                let body = Body::Replicate {
                    epoch,
                    entries: entries.to_vec(),
                    ask,
                };
                self.net.send(i, j, body);
            } else {
                let chunks = match slot
                    .partition
                    .as_ref()
                    .map(|c| c.snapshot_chunks(CHUNK_BYTES))
                {
                    Some(Ok(chunks)) => chunks,
                    _ => continue,
                };
                slot.snapshot_sent(&identity);
                let count = chunks.len();
                for (at, chunk) in chunks.into_iter().enumerate() {
                    let body = Body::Chunk {
                        epoch,
                        chunk,
                        last: at + 1 == count,
                        ask,
                    };
                    self.net.send(i, j, body);
                }
            }
            expect.insert(j, (member, None));
        }
        expect
    }

    /// The client sends its current value to a node serving the partition.
    pub fn client_write(&mut self) -> Result<(), String> {
        let serving: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].serving() && self.nodes[*i].isr.is_some())
            .collect();
        if serving.is_empty() {
            return Ok(());
        }
        let i = serving[self.rng.random_range(0..serving.len())];
        let value = self.client.next;
        let mut payload = Vec::new();
        encode_event::<Trail>(&value, &mut payload).map_err(|err| err.to_string())?;
        let key = key_of(value);
        let event = EventRef {
            kind: TRAIL,
            key: &key,
            payload: &payload,
            producer: Some(ProducerView {
                producer: "client",
                seq: u64::from(value) + 1,
            }),
        };
        let mut out = Outputs::default();
        let now = Timestamp(1_000 + self.step);
        let Some(copy) = self.nodes[i].slot.as_mut().and_then(Slot::owned) else {
            return Ok(());
        };
        copy.submit(now, event, &mut out)
            .map_err(|err| format!("submit failed: {err}"))?;
        let (epoch, position) = (copy.epoch(), copy.last_seq());
        let entries = out.log.as_bytes().to_vec();
        self.nodes[i].persist(&entries);
        let id = self.next_write;
        self.next_write += 1;
        let expect = self.ship(i, &entries, Some(id));
        self.pending.push(Pending {
            id,
            owner: i,
            generation: self.nodes[i].generation,
            epoch,
            position,
            value,
            expect,
            deadline: self.step + ANSWER_WITHIN,
            shrink: None,
        });
        self.settle(id)
    }

    /// Every serving owner checks its backups with a barrier.
    pub fn owner_checks(&mut self) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            self.nodes[i].reach.expire(now);
            if self.nodes[i].serving() {
                self.ship(i, &[], None);
            }
        }
    }

    /// Writes whose answers are all in, or overdue, are decided.
    pub fn expire(&mut self) -> Result<(), String> {
        self.expire_parked();
        let step = self.step;
        let now = self.now();
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|p| p.deadline <= step)
            .map(|p| p.id)
            .collect();
        for &id in &due {
            let Some(write) = self.pending.iter_mut().find(|p| p.id == id) else {
                continue;
            };
            let owner = write.owner;
            let mut silent = Vec::new();
            for (&j, (member, confirmed)) in &mut write.expect {
                if confirmed.is_none() {
                    silent.push((j, member.clone()));
                }
                confirmed.get_or_insert(false);
            }
            for (j, member) in silent {
                let needed = self.nodes[owner]
                    .isr
                    .as_ref()
                    .is_some_and(|isr| isr.is_required(&member));
                let name = self.nodes[j].name.clone();
                self.nodes[owner].reach.heard(&name, false, needed, now);
            }
        }
        for id in due {
            self.settle(id)?;
        }
        Ok(())
    }

    /// Decides write `id` if every answer is in: acknowledged, dropped
    /// (the client retries), or — when the committed ISR holds members
    /// that did not confirm — held while the owner's shrink is proposed,
    /// and decided again with each configuration the owner sees.
    fn settle(&mut self, id: u64) -> Result<(), String> {
        let Some(at) = self.pending.iter().position(|p| p.id == id) else {
            return Ok(());
        };
        let answered = self.pending[at].expect.values().all(|(_, c)| c.is_some());
        if !answered && self.bug != Some(DataPathBug::AckWithoutBackups) {
            return Ok(());
        }
        let i = self.pending[at].owner;
        if !self.nodes[i].up || self.nodes[i].generation != self.pending[at].generation {
            self.pending.remove(at);
            return Ok(());
        }
        if self.bug == Some(DataPathBug::AckWithoutBackups) {
            let write = self.pending.remove(at);
            self.acknowledge(write.value);
            return Ok(());
        }
        let write = &self.pending[at];
        let confirmed: BTreeSet<MemberId> = write
            .expect
            .values()
            .filter(|(_, c)| *c == Some(true))
            .map(|(m, _)| m.clone())
            .collect();
        let (epoch, position) = (write.epoch, write.position);
        self.silence(i);
        let a = self.assignment(i);
        let decision = match self.nodes[i].isr.as_mut().filter(|t| t.epoch() == epoch) {
            Some(isr) => {
                isr.observe(&a);
                isr.decide(position, &confirmed)
            }
            None => Decision::Deposed,
        };
        match decision {
            Decision::Ack => {
                let write = self.pending.remove(at);
                self.acknowledge(write.value);
            }
            Decision::Shrink { shrink, .. } => {
                if self.step > self.pending[at].deadline + ANSWER_WITHIN {
                    // The shrink never came: the ingress gives up (503).
                    self.pending.remove(at);
                } else if self.pending[at].shrink.as_ref() != Some(&shrink) {
                    self.pending[at].shrink = Some(shrink.clone());
                    self.propose(i, vec![shrink]);
                }
            }
            Decision::Deposed | Decision::TooFew { .. } => {
                self.pending.remove(at);
            }
        }
        Ok(())
    }

    fn acknowledge(&mut self, value: u32) {
        if self.client.acked.insert(value) {
            self.report.acknowledged += 1;
        }
        if self.client.next == value {
            self.client.next += 1;
        }
    }

    /// Delivers the next frame of a random connection.
    pub fn deliver(&mut self) -> Result<bool, String> {
        let pick = self.rng.random_range(0..1024usize);
        let Some(frame) = self.net.deliver(pick) else {
            return Ok(false);
        };
        self.report.frames += 1;
        if !self.nodes[frame.to].up {
            return Ok(true);
        }
        self.receive(frame)?;
        Ok(true)
    }

    fn receive(&mut self, frame: Frame) -> Result<(), String> {
        match frame.body {
            Body::Answer { answer, ask } => self.answered(frame.to, frame.from, answer, ask),
            Body::Replicate { .. } | Body::Chunk { .. } => self.replica(frame),
        }
    }

    /// Backup side: the worker's `offer`. A message at an epoch the node's
    /// view does not show waits (`Parked`), in arrival order.
    fn replica(&mut self, frame: Frame) -> Result<(), String> {
        let r = frame.to;
        let known = self.assignment(r).epoch;
        let epoch = frame_epoch(&frame);
        let now = self.now();
        match self.nodes[r].parked.admit(P, epoch, known, 1, frame, now) {
            Admit::Now(frame) => self.run_replica(frame),
            Admit::Held => Ok(()),
            Admit::Refused(frame) => {
                self.refuse(&frame, known);
                Ok(())
            }
        }
    }

    /// Answers `frame` without running it: its epoch is not known.
    fn refuse(&mut self, frame: &Frame, known: Epoch) {
        if let Body::Replicate { ask, .. } | Body::Chunk { ask, .. } = &frame.body {
            self.net
                .answer(frame, Replicated::EpochUnknown { known }, *ask);
        }
    }

    /// Every node refuses the held messages its view did not vouch for in
    /// time (the worker's `expire_parked`).
    pub fn expire_parked(&mut self) {
        let now = self.now();
        for r in 0..self.nodes.len() {
            let known = self.assignment(r).epoch;
            for (_, frame) in self.nodes[r].parked.expired(now) {
                self.refuse(&frame, known);
            }
        }
    }

    /// Backup side: the worker's `run_peer_write`.
    fn run_replica(&mut self, frame: Frame) -> Result<(), String> {
        let r = frame.to;
        let committed = self.assignment(r).epoch;
        let epoch = frame_epoch(&frame);
        let ask = match &frame.body {
            Body::Replicate { ask, .. } | Body::Chunk { ask, .. } => *ask,
            Body::Answer { .. } => return Ok(()),
        };
        let fence = eddy_replica::fence(self.nodes[r].slot.as_ref(), committed);
        if epoch < fence {
            self.net
                .answer(&frame, Replicated::Stale { current: fence }, ask);
            return Ok(());
        }
        let ours = self.ours(r);
        let answer = match &frame.body {
            Body::Replicate { entries, .. } => {
                let Some(slot) = self.nodes[r].slot.as_mut() else {
                    self.net
                        .answer(&frame, Replicated::NeedSnapshot { have: Seq(0) }, ask);
                    return Ok(());
                };
                let outcome = slot.replicate(epoch, entries, || ours);
                if matches!(outcome.answer, Replicated::Applied { .. }) && outcome.grew {
                    self.nodes[r].persist(entries);
                }
                outcome.answer
            }
            Body::Chunk { chunk, last, .. } => {
                let registry = self.registry.clone();
                let slot = self.nodes[r]
                    .slot
                    .get_or_insert_with(|| Slot::new(Role::Backup));
                let installed = slot.install((frame.link, epoch), chunk, *last, || {
                    SimNode::reader(&registry)
                });
                if let Installed::Written { .. } = installed {
                    self.report.snapshots += 1;
                    self.nodes[r].untrusted = false;
                    self.nodes[r].checkpoint()?;
                }
                installed.answer()
            }
            Body::Answer { .. } => return Ok(()),
        };
        if !matches!(&frame.body, Body::Chunk { last: false, .. }) {
            self.net.answer(&frame, answer, ask);
        }
        Ok(())
    }

    /// Owner side: a backup's answer.
    fn answered(&mut self, i: usize, j: usize, answer: Replicated, ask: Ask) -> Result<(), String> {
        let serving_epoch = self.nodes[i].copy().map(|c| c.epoch());
        if !self.nodes[i].serving() || serving_epoch != Some(ask.epoch) {
            return Ok(());
        }
        let member = self.member_seen(i, j);
        let name = self.nodes[j].name.clone();
        let now = self.now();
        self.nodes[i].reach.heard(&name, true, true, now);
        self.silence(i);
        let confirmed = match eddy_replica::confirmation(answer, ask.required) {
            Confirmation::Confirmed { .. } => {
                let expand = self.nodes[i]
                    .isr
                    .as_mut()
                    .and_then(|isr| isr.confirmed(&member, ask.required));
                if let Some(command) = expand {
                    self.propose(i, vec![command]);
                }
                true
            }
            Confirmation::Deposed(by) => {
                let ours = self.ours(i);
                if let Some(slot) = self.nodes[i].slot.as_mut() {
                    slot.deposed(by, ours);
                }
                self.nodes[i].isr = None;
                false
            }
            Confirmation::Behind | Confirmation::EpochUnknown(_) => {
                // Resent a snapshot with the next write or check.
                let name = self.nodes[j].name.clone();
                if let Some(slot) = self.nodes[i].slot.as_mut() {
                    slot.lost_track(&name);
                }
                false
            }
        };
        let Some(id) = ask.write else {
            return Ok(());
        };
        if let Some(write) = self.pending.iter_mut().find(|p| p.id == id)
            && let Some((_, slot)) = write.expect.get_mut(&j)
            && slot.is_none()
        {
            *slot = Some(confirmed);
        }
        self.settle(id)
    }

    /// The safety rule itself, between the takeovers that rely on it:
    /// every member of the committed ISR holds every acknowledged value —
    /// in memory if it runs, in its log if it is down (with `data_dir`).
    /// Not checked: an untrusted copy (never served, it leaves the ISR) and,
    /// without `data_dir`, a member that is down (its data is gone; it
    /// rejoins as a new incarnation, which takes the old one out).
    pub fn check_isr_holds_acks(&mut self) -> Result<(), String> {
        if self.client.acked.is_empty() {
            return Ok(());
        }
        let a = self.committed();
        for member in &a.isr {
            let Some(node) = self.nodes.iter().find(|n| n.member() == *member) else {
                continue;
            };
            if node.untrusted || (!node.up && !self.report.durable) {
                continue;
            }
            let held = if node.up {
                node.copy().map(values).unwrap_or_default()
            } else {
                node.logged(&self.registry)?
                    .as_ref()
                    .map(values)
                    .unwrap_or_default()
            };
            if let Some(value) = self.client.acked.iter().find(|v| !held.contains_key(v)) {
                self.report.violations.push(format!(
                    "step {}: {} is in the committed ISR (epoch {}) without acknowledged value {value}",
                    self.step, member.name, a.epoch.0
                ));
                break;
            }
        }
        Ok(())
    }

    /// No two nodes serve the partition at one epoch.
    pub fn check_owners(&mut self) {
        let mut serving: BTreeMap<Epoch, usize> = BTreeMap::new();
        for node in self.nodes.iter().filter(|n| n.serving()) {
            let epoch = node.copy().map_or(Epoch(0), |c| c.epoch());
            if let Some(other) = serving.insert(epoch, node.index) {
                self.report.violations.push(format!(
                    "step {}: n{other} and {} both serve epoch {}",
                    self.step, node.name, epoch.0
                ));
            }
        }
    }

    /// Whether the committed ISR holds a member other than `node` that is
    /// running with a copy it can vouch for, and stays in it whichever
    /// proposed ISR change commits, and no other member's copy is lost
    /// already: wiping `node` then loses no acknowledged write (one lost
    /// copy at a time is what the shipped defaults promise to survive;
    /// every in-sync copy lost is documented as not covered).
    pub fn may_wipe(&self, node: usize) -> bool {
        let me = self.nodes[node].member();
        if self.nodes.iter().any(|n| n.index != node && n.untrusted) {
            return false;
        }
        let proposed: Vec<&Vec<MemberId>> = self
            .proposals
            .iter()
            .flatten()
            .filter_map(|c| match c {
                Command::SetIsr { isr, .. } => Some(isr),
                _ => None,
            })
            .collect();
        self.latest().config.assignment(P).is_some_and(|a| {
            a.isr.iter().any(|m| {
                *m != me
                    && proposed.iter().all(|isr| isr.contains(m))
                    && self
                        .nodes
                        .iter()
                        .any(|n| n.up && !n.untrusted && n.member() == *m)
            })
        })
    }

    /// `node`'s process dies, with its connections.
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].crash();
        self.net.drop_node(node);
        self.report.crashes += 1;
        self.relive();
    }

    /// Cuts `node` off from every other node (and the controller): it
    /// keeps serving what it served, unseen.
    pub fn isolate(&mut self, node: usize) {
        self.isolated[node] = true;
        for other in 0..self.nodes.len() {
            self.net.set_cut(node, other, true);
            self.net.set_cut(other, node, true);
        }
        self.report.isolations += 1;
        self.relive();
    }

    /// Every link is restored.
    pub fn heal_links(&mut self) {
        self.net.heal();
        if self.isolated.iter().any(|x| *x) {
            self.isolated.iter_mut().for_each(|x| *x = false);
            self.relive();
        }
    }

    /// Restarts `node` (wiped: it joins as its new incarnation).
    pub fn restart(&mut self, node: usize) -> Result<(), String> {
        let latest = self.history.len() - 1;
        self.nodes[node].restart(&self.registry.clone(), latest)?;
        let member = self.nodes[node].member();
        let found = self.committed();
        self.nodes[node].inherited =
            Some(found.epoch).filter(|_| found.owner.as_ref() == Some(&member));
        let known = self.latest().config.is_member(&member);
        if !known {
            let command = Command::Join {
                member,
                info: eddy_control::testing::fixture_info(node),
            };
            self.commit(&command);
        }
        self.relive();
        self.catch_up(node)
    }

    /// Whether nothing is in flight and the committed owner serves the
    /// latest configuration's epoch.
    pub fn quiet(&self) -> bool {
        let a = self.committed();
        let serves = self.nodes.iter().any(|n| {
            Some(n.member()) == a.owner
                && n.serving()
                && n.copy().map(|c| c.epoch()) == Some(a.epoch)
        });
        self.pending.is_empty() && self.proposals.is_empty() && self.net.in_flight() == 0 && serves
    }

    /// The committed assignment and every node's part in it, for a
    /// violation's message.
    pub fn describe(&self) -> String {
        let a = self.committed();
        let isr: Vec<String> = a
            .isr
            .iter()
            .map(|m| format!("{}#{}", m.name, m.incarnation))
            .collect();
        let mut out = format!(
            "committed owner {:?} epoch {} isr [{}] v{}; table {:?};",
            a.owner
                .as_ref()
                .map(|m| format!("{}#{}", m.name, m.incarnation)),
            a.epoch.0,
            isr.join(","),
            a.version,
            self.latest()
                .table
                .replicas(P)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        );
        for n in &self.nodes {
            let slot = n.slot.as_ref().map(|s| {
                let copy = s
                    .partition
                    .as_ref()
                    .map(|c| (c.epoch().0, c.last_epoch().0, c.last_seq().0));
                format!("{:?} copy {:?} seen {}", s.role, copy, s.seen.0)
            });
            out.push_str(&format!(
                " {}#{} up {} view {}/{} isr {} slot {:?} parked {};",
                n.name,
                n.incarnation,
                n.up,
                n.view,
                self.history.len() - 1,
                n.isr.is_some(),
                slot,
                n.parked.len()
            ));
        }
        out.push_str(&format!(
            " pending {}, in flight {}",
            self.pending.len(),
            self.net.in_flight()
        ));
        out
    }

    /// The value the client is writing.
    pub fn client_next(&self) -> u32 {
        self.client.next
    }

    /// The one state the heal may end in without an owner serving: nothing
    /// was ever acknowledged and no member of the committed ISR holds a
    /// copy, after that ISR stopped being the first one (a member wiped
    /// and removed before any owner took). No node can tell such a member
    /// from one that lost its copy, so none starts empty: the partition
    /// stays offline, losing nothing (PROTOCOL.md, "What is not covered").
    pub fn offline_unwritten(&self) -> bool {
        let a = self.committed();
        self.client.acked.is_empty()
            && !a.is_first_isr()
            && a.isr.iter().all(|m| {
                self.nodes
                    .iter()
                    .find(|n| n.member() == *m)
                    .is_none_or(|n| n.copy().is_none())
            })
    }

    /// The end: the committed owner serves, its copy and every in-sync
    /// copy hold each acknowledged value exactly once.
    pub fn final_check(&mut self) {
        let Some(a) = self.latest().config.assignment(P).cloned() else {
            return;
        };
        let Some(owner) = a.owner.clone() else {
            self.report
                .violations
                .push("after the heal: the partition has no owner".into());
            return;
        };
        let find = |m: &MemberId| self.nodes.iter().find(|n| n.member() == *m);
        match find(&owner) {
            Some(node) if node.serving() && node.copy().map(|c| c.epoch()) == Some(a.epoch) => {}
            _ => {
                let state = self.describe();
                self.report.violations.push(format!(
                    "after the heal: owner {} does not serve epoch {}: {state}",
                    owner.name, a.epoch.0
                ));
            }
        }
        let mut found = Vec::new();
        for member in &a.isr {
            let held = find(member)
                .and_then(|n| n.copy())
                .map(values)
                .unwrap_or_default();
            for value in &self.client.acked {
                match held.get(value) {
                    Some(1) => {}
                    Some(n) => found.push(format!(
                        "{}: acknowledged value {value} applied {n} times",
                        member.name
                    )),
                    None => found.push(format!("{}: acknowledged value {value} lost", member.name)),
                }
            }
        }
        found.truncate(5);
        self.report.violations.extend(found);
    }
}

fn frame_epoch(frame: &Frame) -> Epoch {
    match &frame.body {
        Body::Replicate { epoch, .. } | Body::Chunk { epoch, .. } => *epoch,
        Body::Answer { ask, .. } => ask.epoch,
    }
}
