//! One simulated node: the replication protocol of docs/PROTOCOL.md over the
//! real `eddy_core::Partition` (owner `submit`, backup `apply_replicated`,
//! snapshots) and the real `eddy_cluster::PartitionTable`, driven by messages
//! and ticks instead of sockets and tasks. Membership is a heartbeat detector
//! (foca's behaviour under faults is simulated in `eddy_cluster::sim`).
//!
//! Handlers never block: they return what to send in `Out`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use eddy_cluster::{NodeId, PartitionTable};
use eddy_core::{
    Epoch, EventRef, KindId, Outputs, Partition, PartitionConfig, PartitionId, ProducerView,
    Registry, Replicated, Seq, Submitted, Timestamp,
};

use super::Bug;

/// A peer silent this long is considered down.
pub const DETECT_MS: u64 = 800;
/// How often a node ticks (heartbeats, detection, takeovers, resyncs).
pub const TICK_MS: u64 = 50;
/// A backup that has not confirmed the owner's last entry gets a snapshot
/// again after this long.
const RESYNC_MS: u64 = 150;
/// A serving owner checks its backups this often even without writes, so an
/// owner that slept through a takeover learns it was deposed.
const CHECK_MS: u64 = 500;
/// A takeover round not finished by then starts over.
const SURVEY_MS: u64 = 600;
/// A node that has not seen every configured node serves nothing until this
/// long after it started (the node's `join_timeout_ms`).
const JOIN_TIMEOUT_MS: u64 = 3_000;
/// A node recomputes its table this long after its view changed (the
/// node's `settle_ms`, as the chaos scenarios set it).
const SETTLE_MS: u64 = 100;
/// A client request waiting for backups longer than this is failed (the
/// client retries; the event may or may not have been applied: ambiguous).
const ACK_PATIENCE_MS: u64 = 2_000;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addr {
    /// A node, by index.
    Node(usize),
    /// A client, by index.
    Client(usize),
}

/// What a node tells a client about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Applied, or a retry of an applied event; on every replica.
    Acked,
    /// Not the owner; try `hint`.
    NotOwner(Option<usize>),
    /// No majority, or the owner gave up waiting: retry later.
    Unavailable,
}

/// Messages between nodes and from/to clients.
#[derive(Debug, Clone)]
pub enum Body {
    /// I am alive.
    Heartbeat,
    /// Entries of `p` logged by its owner at `epoch`.
    Replicate(u32, Epoch, Vec<u8>),
    /// A whole copy of `p` from its owner: (owner's epoch, epoch of the
    /// copy's last entry, chunks).
    Snapshot(u32, Epoch, Epoch, Vec<Vec<u8>>),
    /// A backup's answer to `Replicate`/`Snapshot`.
    Replied(u32, Replicated),
    /// I take `p` over at this epoch: promise to refuse anything older, and
    /// say which copy you hold. (round, epoch)
    Survey(u32, u64, Epoch),
    /// (round, your promise held, held copy's last-entry epoch and position,
    /// highest epoch promised here)
    Surveyed(u32, u64, Option<(Epoch, Seq)>, Epoch),
    /// Send me your copy of `p`; refuse if you promised a higher epoch.
    /// (round, epoch)
    Pull(u32, u64, Epoch),
    /// (round, the copy's last-entry epoch and chunks)
    Pulled(u32, u64, Option<(Epoch, Vec<Vec<u8>>)>),
    /// A client's event: (request, key, event id, producer seq).
    Submit(u64, u32, u32, u64),
    /// The answer to a request.
    Answer(u64, Answer),
}

impl Body {
    /// Short tag for the trace digest.
    pub fn tag(&self) -> u8 {
        match self {
            Body::Heartbeat => 0,
            Body::Replicate(..) => 1,
            Body::Snapshot(..) => 2,
            Body::Replied(..) => 3,
            Body::Survey(..) => 4,
            Body::Surveyed(..) => 5,
            Body::Pull(..) => 6,
            Body::Pulled(..) => 7,
            Body::Submit(..) => 8,
            Body::Answer(..) => 9,
        }
    }
}

/// Messages a handler wants sent: (to, body).
pub type Out = Vec<(Addr, Body)>;

/// A node became the serving owner of a partition at an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Partition.
    pub partition: u32,
    /// Epoch it serves at.
    pub epoch: Epoch,
    /// Node index.
    pub node: usize,
    /// The node's generation.
    pub generation: u32,
}

struct Slot {
    part: Partition,
    /// Epoch of the last entry this copy holds (not raised by promises): with
    /// the position, what copies are compared by. A promotion that never
    /// wrote must not make a short copy look newest.
    content: Epoch,
    serving: bool,
    /// Backup → last position it confirmed (this generation of it).
    confirmed: BTreeMap<usize, Seq>,
    /// Backup → when it was last sent a snapshot.
    synced_at: BTreeMap<usize, u64>,
    /// When the backups were last checked.
    checked_at: u64,
}

impl Slot {
    /// A copy nobody has confirmed or been sent anything for yet.
    fn new(part: Partition, content: Epoch, serving: bool) -> Slot {
        Slot {
            part,
            content,
            serving,
            confirmed: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            checked_at: 0,
        }
    }
}

struct Takeover {
    round: u64,
    started: u64,
    /// The epoch this round takes over at.
    epoch: Epoch,
    waiting: BTreeSet<usize>,
    /// Most caught-up copy so far: (last-entry epoch, position, holder).
    best: Option<(Epoch, Seq, usize)>,
    pulling: bool,
}

struct Waiting {
    client: usize,
    request: u64,
    partition: u32,
    through: Seq,
    since: u64,
}

/// The epoch a node takes over at: above every epoch seen, and distinct per
/// node and generation (low 16 bits), so two takeovers never claim the same
/// epoch; the higher one fences the lower.
fn next_epoch(seen: Epoch, index: usize, generation: u32) -> Epoch {
    let tag = ((index as u64 & 0xff) << 8) | (u64::from(generation) & 0xff);
    Epoch((((seen.0 >> 16) + 1) << 16) | tag)
}

/// Fixed parameters every node shares.
#[derive(Clone)]
pub struct Shared {
    /// Node names by index.
    pub names: Vec<NodeId>,
    /// Partitions.
    pub partitions: u32,
    /// Replication factor.
    pub rf: usize,
    /// Registry with the `tally` kind.
    pub registry: Arc<Registry>,
    /// The `tally` kind's id.
    pub kind: KindId,
    /// Injected bug, if any.
    pub bug: Option<Bug>,
    /// Print every step concerning this partition to stderr.
    pub trace: Option<u32>,
}

/// One node.
pub struct Node {
    index: usize,
    /// Generation: +1 on every restart.
    pub generation: u32,
    heard: Vec<Option<u64>>,
    peer_generation: Vec<u32>,
    live: Vec<bool>,
    table: PartitionTable,
    /// When the table is recomputed from the changed view.
    settle_at: Option<u64>,
    slots: Vec<Option<Slot>>,
    takeovers: BTreeMap<u32, Takeover>,
    waiting: Vec<Waiting>,
    next_round: u64,
    /// Per partition, the highest epoch promised or served here: entries
    /// and snapshots of older epochs are refused.
    fence: Vec<Epoch>,
    started: u64,
    joined: bool,
    shared: Shared,
}

impl Node {
    /// A fresh process: knows only itself, holds nothing.
    pub fn new(index: usize, generation: u32, started: u64, shared: Shared) -> Node {
        let n = shared.names.len();
        let mut live = vec![false; n];
        live[index] = true;
        let table =
            PartitionTable::compute(&[shared.names[index].clone()], shared.partitions, shared.rf);
        Node {
            index,
            generation,
            heard: vec![None; n],
            peer_generation: vec![0; n],
            live,
            table,
            settle_at: None,
            slots: (0..shared.partitions).map(|_| None).collect(),
            takeovers: BTreeMap::new(),
            waiting: Vec::new(),
            next_round: 0,
            fence: vec![Epoch(0); shared.partitions as usize],
            started,
            joined: false,
            shared,
        }
    }

    /// Members this node sees as live (itself included).
    pub fn live(&self) -> &[bool] {
        &self.live
    }

    /// This node's partition table.
    pub fn table(&self) -> &PartitionTable {
        &self.table
    }

    /// Whether this node serves `p` as its owner.
    pub fn serves(&self, p: u32) -> bool {
        self.slot(p).is_some_and(|s| s.serving)
    }

    /// This node's copy of `p`.
    pub fn copy(&self, p: u32) -> Option<&Partition> {
        self.slot(p).map(|s| &s.part)
    }

    fn slot(&self, p: u32) -> Option<&Slot> {
        self.slots.get(p as usize).and_then(Option::as_ref)
    }

    fn trace(&self, now: u64, p: u32, what: std::fmt::Arguments<'_>) {
        if self.shared.trace == Some(p) {
            let copy = self.copy(p).map(|c| (c.epoch().0, c.last_seq().0));
            eprintln!(
                "t={now} n{}g{} p{p} serving={} copy={copy:?}: {what}",
                self.index,
                self.generation,
                self.serves(p)
            );
        }
    }

    /// A majority in the view and, unless the bug is injected, in the table
    /// (which lags the view by the settle delay).
    fn quorum(&self) -> bool {
        let n = self.live.len();
        let view = self.live.iter().filter(|l| **l).count() * 2 > n;
        view && (self.shared.bug == Some(Bug::ViewOnlyQuorum) || self.table.nodes().len() * 2 > n)
    }

    fn owner_index(&self, p: u32) -> Option<usize> {
        let owner = self.table.owner(PartitionId(p))?;
        self.shared.names.iter().position(|n| n == owner)
    }

    fn backups(&self, p: u32) -> Vec<usize> {
        self.table
            .replicas(PartitionId(p))
            .skip(1)
            .filter_map(|n| self.shared.names.iter().position(|m| m == n))
            .collect()
    }

    fn empty_partition(&self, p: u32) -> Partition {
        Partition::new(
            Arc::clone(&self.shared.registry),
            PartitionId(p),
            PartitionConfig::default(),
        )
    }

    fn restore(&self, chunks: &[Vec<u8>]) -> Option<Partition> {
        Partition::restore(
            Arc::clone(&self.shared.registry),
            PartitionConfig::default(),
            chunks.iter().map(Vec::as_slice),
        )
        .ok()
    }

    /// Periodic work: heartbeats, failure detection, takeovers, resyncs,
    /// acknowledgements.
    pub fn tick(&mut self, now: u64, out: &mut Out) {
        for peer in 0..self.live.len() {
            if peer != self.index {
                out.push((Addr::Node(peer), Body::Heartbeat));
            }
        }
        let mut changed = false;
        for peer in 0..self.live.len() {
            if peer == self.index {
                continue;
            }
            let live = self.heard[peer].is_some_and(|t| now.saturating_sub(t) < DETECT_MS);
            changed |= live != self.live[peer];
            self.live[peer] = live;
        }
        if changed {
            self.settle_at.get_or_insert(now + SETTLE_MS);
        }
        if self.settle_at.is_some_and(|at| at <= now) {
            self.settle_at = None;
            let members: Vec<NodeId> = (0..self.live.len())
                .filter(|&i| self.live[i])
                .map(|i| self.shared.names[i].clone())
                .collect();
            self.table = PartitionTable::compute(&members, self.shared.partitions, self.shared.rf);
        }
        // Join gating: serve once the cluster is formed, so a starting node
        // does not take partitions over on a partial view.
        self.joined |=
            self.live.iter().all(|l| *l) || now.saturating_sub(self.started) >= JOIN_TIMEOUT_MS;
        if self.joined {
            self.start_takeovers(now, out);
        }
        // Reconciliation: the owner the table names takes the partition over
        // (and fences this copy when it surveys); stop serving at once.
        for p in 0..self.shared.partitions {
            if self.serves(p) && self.owner_index(p).is_some_and(|o| o != self.index) {
                self.stop_serving(p);
            }
        }
        self.resync(now, out);
        self.settle(now, out);
    }

    fn start_takeovers(&mut self, now: u64, out: &mut Out) {
        if !self.quorum() {
            return;
        }
        for p in 0..self.shared.partitions {
            if self.owner_index(p) != Some(self.index) || self.serves(p) {
                self.takeovers.remove(&p);
                continue;
            }
            if let Some(t) = self.takeovers.get(&p)
                && now.saturating_sub(t.started) < SURVEY_MS
            {
                // Messages get lost: ask again whoever has not answered.
                if t.pulling {
                    if let Some((_, _, holder)) = t.best {
                        out.push((Addr::Node(holder), Body::Pull(p, t.round, t.epoch)));
                    }
                } else {
                    for &peer in &t.waiting {
                        out.push((Addr::Node(peer), Body::Survey(p, t.round, t.epoch)));
                    }
                }
                continue;
            }
            let round = self.next_round;
            self.next_round += 1;
            let own = self
                .slot(p)
                .map(|s| (s.content, s.part.last_seq(), self.index));
            let seen =
                self.fence[p as usize].max(self.copy(p).map(Partition::epoch).unwrap_or_default());
            let epoch = next_epoch(seen, self.index, self.generation);
            self.fence[p as usize] = epoch;
            // Every live peer, and every peer not heard from since this
            // process started: a restarted node's view may not yet include
            // the one backup holding the newest copy.
            let waiting: BTreeSet<usize> = (0..self.live.len())
                .filter(|&i| i != self.index && (self.live[i] || self.heard[i].is_none()))
                .collect();
            for &peer in &waiting {
                out.push((Addr::Node(peer), Body::Survey(p, round, epoch)));
            }
            self.trace(
                now,
                p,
                format_args!(
                    "surveys {waiting:?} for epoch {} (heard {:?})",
                    epoch.0, self.heard
                ),
            );
            self.takeovers.insert(
                p,
                Takeover {
                    round,
                    started: now,
                    epoch,
                    waiting,
                    best: own,
                    pulling: false,
                },
            );
        }
    }

    /// Backups that have not confirmed the owner's last entry get a snapshot
    /// (new backups, restarted ones, lost messages).
    fn resync(&mut self, now: u64, out: &mut Out) {
        for p in 0..self.shared.partitions {
            if !self.serves(p) {
                continue;
            }
            let backups = self.backups(p);
            let Some(slot) = self.slots[p as usize].as_mut() else {
                continue;
            };
            let last = slot.part.last_seq();
            if now.saturating_sub(slot.checked_at) >= CHECK_MS {
                // An empty batch: answered `Stale` by a backup that promised
                // a newer owner.
                slot.checked_at = now;
                for &b in &backups {
                    out.push((
                        Addr::Node(b),
                        Body::Replicate(p, slot.part.epoch(), Vec::new()),
                    ));
                }
            }
            let mut snapshot = None;
            for b in backups {
                let behind = slot.confirmed.get(&b).is_none_or(|&c| c < last);
                let due = slot
                    .synced_at
                    .get(&b)
                    .is_none_or(|&t| now.saturating_sub(t) >= RESYNC_MS);
                if behind && due {
                    if snapshot.is_none() {
                        snapshot = slot.part.snapshot_chunks(1 << 16).ok();
                    }
                    if let Some(chunks) = &snapshot {
                        out.push((
                            Addr::Node(b),
                            Body::Snapshot(p, slot.part.epoch(), slot.content, chunks.clone()),
                        ));
                        slot.synced_at.insert(b, now);
                    }
                }
            }
        }
    }

    /// Answers clients whose entries every backup now holds; fails those
    /// that waited too long.
    fn settle(&mut self, now: u64, out: &mut Out) {
        let quorum = self.quorum();
        let mut keep = Vec::with_capacity(self.waiting.len());
        for w in std::mem::take(&mut self.waiting) {
            let held = self.serves(w.partition)
                && quorum
                && (self.shared.bug == Some(Bug::AckBeforeReplication)
                    || self.backups(w.partition).iter().all(|b| {
                        self.slot(w.partition)
                            .and_then(|s| s.confirmed.get(b))
                            .is_some_and(|&c| c >= w.through)
                    }));
            if held {
                self.trace(
                    now,
                    w.partition,
                    format_args!("acks through {}", w.through.0),
                );
                out.push((
                    Addr::Client(w.client),
                    Body::Answer(w.request, Answer::Acked),
                ));
            } else if !self.serves(w.partition) || now.saturating_sub(w.since) > ACK_PATIENCE_MS {
                out.push((
                    Addr::Client(w.client),
                    Body::Answer(w.request, Answer::Unavailable),
                ));
            } else {
                keep.push(w);
            }
        }
        self.waiting = keep;
    }

    /// Stops serving `p` (fenced or deposed); its waiting clients retry.
    fn stop_serving(&mut self, p: u32) {
        if self.serves(p) {
            self.trace(0, p, format_args!("stops serving"));
        }
        if let Some(slot) = self.slots[p as usize].as_mut() {
            slot.serving = false;
            slot.confirmed.clear();
            slot.synced_at.clear();
        }
    }

    fn promote(
        &mut self,
        p: u32,
        part: Partition,
        content: Epoch,
        epoch: Epoch,
        claims: &mut Vec<Claim>,
    ) {
        let mut part = part;
        part.set_epoch(epoch);
        claims.push(Claim {
            partition: p,
            epoch: part.epoch(),
            node: self.index,
            generation: self.generation,
        });
        self.slots[p as usize] = Some(Slot::new(part, content, true));
        self.takeovers.remove(&p);
        self.trace(0, p, format_args!("serves at epoch {}", epoch.0));
    }

    /// Handles one message.
    /// `generation` is the sending node's at the time it sent: messages of
    /// a previous incarnation of a peer are dropped (over TCP they would have
    /// died with its connection).
    pub fn handle(
        &mut self,
        now: u64,
        from: Addr,
        generation: u32,
        body: Body,
        out: &mut Out,
        claims: &mut Vec<Claim>,
    ) {
        if let Addr::Node(peer) = from {
            if generation < self.peer_generation[peer] {
                return;
            }
            if generation > self.peer_generation[peer] {
                // A restarted peer holds nothing it confirmed before.
                self.peer_generation[peer] = generation;
                for slot in self.slots.iter_mut().flatten() {
                    slot.confirmed.remove(&peer);
                    slot.synced_at.remove(&peer);
                }
            }
        }
        if let Some(p) = partition_of_body(&body)
            && self.shared.trace == Some(p)
        {
            self.trace(now, p, format_args!("from {from:?}: {}", describe(&body)));
        }
        let peer = match from {
            Addr::Node(i) => i,
            Addr::Client(c) => {
                if let Body::Submit(request, key, id, seq) = body {
                    self.submit(now, c, request, key, id, seq, out);
                }
                return;
            }
        };
        match body {
            Body::Heartbeat => {
                self.heard[peer] = Some(now);
            }
            Body::Replicate(p, epoch, entries) => {
                let fence = self.fence[p as usize];
                let outcome = if epoch < fence || (self.serves(p) && epoch <= fence) {
                    Replicated::Stale { current: fence }
                } else {
                    if self.serves(p) {
                        self.stop_serving(p);
                    }
                    self.fence[p as usize] = epoch;
                    let empty = self.empty_partition(p);
                    let slot = self.slots[p as usize]
                        .get_or_insert_with(|| Slot::new(empty, Epoch(0), false));
                    let before = slot.part.last_seq();
                    let outcome = slot.part.apply_replicated(epoch, &entries);
                    if slot.part.last_seq() > before {
                        slot.content = epoch;
                    }
                    outcome
                };
                out.push((Addr::Node(peer), Body::Replied(p, outcome)));
            }
            Body::Snapshot(p, epoch, content, chunks) => {
                let fence = self.fence[p as usize];
                let outcome = if epoch < fence || (self.serves(p) && epoch <= fence) {
                    Replicated::Stale { current: fence }
                } else {
                    let Some(copy) = self.restore(&chunks) else {
                        return;
                    };
                    if self.serves(p) {
                        self.stop_serving(p);
                    }
                    self.fence[p as usize] = epoch;
                    let mine = self.slot(p).map(|s| (s.content, s.part.last_seq()));
                    match mine {
                        // A late snapshot older than what is held.
                        Some(held) if held > (content, copy.last_seq()) => {
                            Replicated::Applied { through: held.1 }
                        }
                        _ => {
                            let through = copy.last_seq();
                            self.slots[p as usize] = Some(Slot::new(copy, content, false));
                            Replicated::Applied { through }
                        }
                    }
                };
                out.push((Addr::Node(peer), Body::Replied(p, outcome)));
            }
            Body::Replied(p, outcome) => {
                if !self.serves(p) {
                    return;
                }
                match outcome {
                    Replicated::Applied { through } => {
                        if let Some(slot) = self.slots[p as usize].as_mut() {
                            let c = slot.confirmed.entry(peer).or_default();
                            *c = (*c).max(through);
                        }
                    }
                    Replicated::NeedSnapshot { .. } => {
                        if let Some(slot) = self.slots[p as usize].as_mut() {
                            slot.synced_at.remove(&peer);
                            slot.confirmed.remove(&peer);
                        }
                        self.resync(now, out);
                    }
                    Replicated::Stale { current } => {
                        if current > self.fence[p as usize] {
                            self.fence[p as usize] = current;
                            self.stop_serving(p);
                        }
                    }
                }
                self.settle(now, out);
            }
            Body::Survey(p, round, epoch) => {
                // The promise: from now on refuse entries of older epochs and
                // stop acknowledging, so nothing is acknowledged after the
                // position reported here.
                if epoch > self.fence[p as usize] {
                    self.fence[p as usize] = epoch;
                    self.stop_serving(p);
                }
                let held = self.slot(p).map(|s| (s.content, s.part.last_seq()));
                let fence = self.fence[p as usize];
                out.push((Addr::Node(peer), Body::Surveyed(p, round, held, fence)));
            }
            Body::Surveyed(p, round, held, fence) => {
                let Some(t) = self.takeovers.get_mut(&p) else {
                    return;
                };
                if t.round != round || t.pulling {
                    return;
                }
                if fence > t.epoch {
                    // Someone took over at a higher epoch meanwhile: give up
                    // this round; the next one goes above it.
                    self.fence[p as usize] = self.fence[p as usize].max(fence);
                    self.takeovers.remove(&p);
                    return;
                }
                t.waiting.remove(&peer);
                if let Some((content, seq)) = held
                    && t.best.is_none_or(|(e, s, _)| (content, seq) > (e, s))
                {
                    t.best = Some((content, seq, peer));
                }
                if t.waiting.is_empty() {
                    self.decide(p, out, claims);
                }
            }
            Body::Pull(p, round, epoch) => {
                let copy = if epoch < self.fence[p as usize] {
                    None
                } else {
                    self.fence[p as usize] = epoch;
                    self.stop_serving(p);
                    self.slot(p)
                        .and_then(|s| Some((s.content, s.part.snapshot_chunks(1 << 16).ok()?)))
                };
                out.push((Addr::Node(peer), Body::Pulled(p, round, copy)));
            }
            Body::Pulled(p, round, copy) => {
                let Some(t) = self.takeovers.get(&p) else {
                    return;
                };
                if t.round != round || !t.pulling {
                    return;
                }
                let epoch = t.epoch;
                let restored =
                    copy.and_then(|(content, chunks)| Some((content, self.restore(&chunks)?)));
                match restored {
                    Some((content, part))
                        if self.fence[p as usize] == epoch
                            && self.owner_index(p) == Some(self.index)
                            && self.quorum() =>
                    {
                        self.promote(p, part, content, epoch, claims);
                    }
                    _ => {
                        self.takeovers.remove(&p);
                    }
                }
            }
            Body::Submit(..) | Body::Answer(..) => {}
        }
    }

    /// Every live member answered: take the most caught-up copy.
    fn decide(&mut self, p: u32, out: &mut Out, claims: &mut Vec<Claim>) {
        let Some(t) = self.takeovers.get_mut(&p) else {
            return;
        };
        let epoch = t.epoch;
        if self.fence[p as usize] != epoch {
            self.takeovers.remove(&p);
            return;
        }
        match t.best {
            Some((_, _, holder)) if holder != self.index => {
                t.pulling = true;
                out.push((Addr::Node(holder), Body::Pull(p, t.round, epoch)));
            }
            _ => {
                let (part, content) = match self.slots[p as usize].take() {
                    Some(slot) => (slot.part, slot.content),
                    None => (self.empty_partition(p), Epoch(0)),
                };
                self.promote(p, part, content, epoch, claims);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        now: u64,
        client: usize,
        request: u64,
        key: u32,
        id: u32,
        seq: u64,
        out: &mut Out,
    ) {
        let p = key % self.shared.partitions;
        if !self.serves(p) {
            out.push((
                Addr::Client(client),
                Body::Answer(request, Answer::NotOwner(self.owner_index(p))),
            ));
            return;
        }
        if !self.quorum() {
            out.push((
                Addr::Client(client),
                Body::Answer(request, Answer::Unavailable),
            ));
            return;
        }
        let key_name = format!("k{key}");
        let producer = format!("c{client}");
        let payload = postcard::to_allocvec(&crate::tally::Mark { id }).unwrap_or_default();
        let backups = self.backups(p);
        let kind = self.shared.kind;
        let Some(slot) = self.slots[p as usize].as_mut() else {
            return;
        };
        let mut outputs = Outputs::default();
        let input = EventRef {
            kind,
            key: &key_name,
            payload: &payload,
            producer: Some(ProducerView {
                producer: &producer,
                seq,
            }),
        };
        let through = match slot.part.submit(Timestamp(now), input, &mut outputs) {
            Ok(Submitted::Applied(seq)) => {
                let entries = outputs.log.as_bytes().to_vec();
                let epoch = slot.part.epoch();
                slot.content = epoch;
                for b in backups {
                    out.push((Addr::Node(b), Body::Replicate(p, epoch, entries.clone())));
                }
                seq
            }
            // A retry of an applied event: answered once the copies hold
            // everything up to now (a barrier), like a new event.
            Ok(Submitted::Duplicate) => slot.part.last_seq(),
            Err(_) => {
                out.push((
                    Addr::Client(client),
                    Body::Answer(request, Answer::Unavailable),
                ));
                return;
            }
        };
        self.waiting.push(Waiting {
            client,
            request,
            partition: p,
            through,
            since: now,
        });
        self.settle(now, out);
    }
}

fn partition_of_body(body: &Body) -> Option<u32> {
    match body {
        Body::Replicate(p, ..)
        | Body::Snapshot(p, ..)
        | Body::Replied(p, _)
        | Body::Survey(p, ..)
        | Body::Surveyed(p, ..)
        | Body::Pull(p, ..)
        | Body::Pulled(p, ..) => Some(*p),
        _ => None,
    }
}

fn describe(body: &Body) -> String {
    match body {
        Body::Replicate(_, e, bytes) => format!("replicate epoch {} ({} bytes)", e.0, bytes.len()),
        Body::Snapshot(_, e, c, _) => format!("snapshot epoch {} content {}", e.0, c.0),
        Body::Replied(_, outcome) => format!("replied {outcome:?}"),
        Body::Survey(_, round, e) => format!("survey round {round} epoch {}", e.0),
        Body::Surveyed(_, round, held, f) => {
            format!("surveyed round {round}: {held:?} fence {}", f.0)
        }
        Body::Pull(_, round, e) => format!("pull round {round} epoch {}", e.0),
        Body::Pulled(_, round, copy) => {
            format!("pulled round {round}: {:?}", copy.as_ref().map(|c| c.0))
        }
        other => format!("{:?}", other.tag()),
    }
}
