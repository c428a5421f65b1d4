//! Deterministic simulation of a replicated cluster: simulated nodes
//! ([`node`]) over a seeded virtual clock and network that drops, delays,
//! duplicates and reorders messages, partitions nodes, crashes, pauses and
//! restarts them. Each seed draws its own cluster size, replication factor,
//! network and fault mix (the "swarm" idea), runs a fault phase in which
//! safety must hold throughout, heals everything, then checks liveness: a
//! connected cluster converges and every client's event is acknowledged
//! within a bound. Same seed, same run: the report carries a digest of every
//! delivered message.

pub mod node;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use eddy_cluster::NodeId;
use eddy_core::{PartitionId, Registry};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use node::{Addr, Answer, Body, Claim, Node, Shared, TICK_MS};

/// A deliberately broken protocol, to prove the checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bug {
    /// The owner acknowledges as soon as it applied an event, without waiting
    /// for its backups (an entry a backup never got is lost with the owner).
    AckBeforeReplication,
    /// A node acknowledges and takes over once its view holds a majority,
    /// while its table (recomputed a settle delay later) may still be the
    /// one it computed in a minority, naming too few backups: the node's
    /// rule before eddy-chaos `partitions` found it.
    ViewOnlyQuorum,
}

impl Bug {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeReplication => "ack-before-replication",
            Bug::ViewOnlyQuorum => "view-only-quorum",
        }
    }
}

impl std::str::FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Bug, String> {
        match s {
            "ack-before-replication" => Ok(Bug::AckBeforeReplication),
            "view-only-quorum" => Ok(Bug::ViewOnlyQuorum),
            other => Err(format!(
                "unknown bug `{other}` (known: ack-before-replication, view-only-quorum)"
            )),
        }
    }
}

/// Which faults a seed may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FaultSet {
    /// Crash, restart, pause, symmetric isolation, loss bursts.
    Symmetric,
    /// Also one-way partitions (a node sends but cannot receive, or the
    /// reverse).
    All,
}

/// What one simulated run does.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seed of everything.
    pub seed: u64,
    /// Injected bug.
    pub bug: Option<Bug>,
    /// Faults drawn from.
    pub faults: FaultSet,
    /// Length of the fault phase (virtual ms).
    pub fault_ms: u64,
    /// Bound on convergence after the faults stop (virtual ms).
    pub recover_ms: u64,
    /// Print every step concerning this partition to stderr.
    pub trace: Option<u32>,
}

impl SimOptions {
    /// Defaults for `seed`: 20 s of faults, 15 s to recover.
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            bug: None,
            faults: FaultSet::Symmetric,
            fault_ms: 20_000,
            recover_ms: 15_000,
            trace: None,
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Replication factor.
    pub rf: usize,
    /// Partitions.
    pub partitions: u32,
    /// Message loss (parts per million) outside loss bursts.
    pub loss_ppm: u32,
    /// Faults injected, as "at_ms kind node(s) duration_ms".
    pub faults: Vec<String>,
    /// Events clients sent (distinct).
    pub sent: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Events found applied.
    pub applied: u64,
    /// Acknowledged events missing from their key.
    pub lost: u64,
    /// Events applied more than once.
    pub duplicated: u64,
    /// Ownership changes (a node started serving a partition).
    pub takeovers: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Safety and liveness violations; empty means the run passed.
    pub violations: Vec<String>,
    /// xxh3 of the run's message trace: equal for equal seeds.
    pub digest: String,
}

impl SimReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that reproduces this run.
    pub fn reproduce(&self, bug: Option<Bug>, faults: FaultSet) -> String {
        let mut command = format!("eddy-chaos sim --seed {}", self.seed);
        if let Some(bug) = bug {
            command.push_str(" --bug ");
            command.push_str(bug.name());
        }
        if faults == FaultSet::All {
            command.push_str(" --faults all");
        }
        command
    }
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    Crash,
    Pause,
    Isolate,
    /// The node's outgoing messages are lost, incoming arrive.
    DeafSender,
    /// The node's incoming messages are lost, outgoing arrive.
    MuteReceiver,
    LossBurst,
}

enum Event {
    Deliver {
        from: Addr,
        generation: u32,
        to: Addr,
        body: Body,
    },
    NodeTick(usize, u32),
    ClientTick(usize),
    Fault {
        victim: usize,
        kind: FaultKind,
        start: bool,
    },
}

struct Pending {
    request: u64,
    key: u32,
    id: u32,
    seq: u64,
    sent_at: u64,
    retry_at: Option<u64>,
}

struct Client {
    next_seq: u64,
    current: Option<Pending>,
    hint: Option<usize>,
}

struct SimNode {
    node: Node,
    alive: bool,
    paused: bool,
    /// Messages that arrived while paused, handled on resume.
    inbox: Vec<(Addr, u32, Body)>,
}

struct World {
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    rng: ChaCha8Rng,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    shared: Shared,
    latency: (u64, u64),
    loss_ppm: u32,
    dup_ppm: u32,
    burst: bool,
    /// Directed links that drop everything: (from, to).
    blocked: BTreeSet<(usize, usize)>,
    claims: Vec<Claim>,
    next_id: u32,
    next_request: u64,
    /// id → key, for every event a client sent.
    sent: BTreeMap<u32, u32>,
    acked: BTreeSet<u32>,
    generating: bool,
    digest: Xxh3,
    delivered: u64,
    violations: Vec<String>,
    initial_loss_ppm: u32,
    applied_count: u64,
    lost_count: u64,
    twice_count: u64,
}

const KEYS_MAX: u32 = 40;

/// Runs one seed.
pub fn run(options: &SimOptions) -> SimReport {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let n = rng.random_range(3..=5usize);
    let rf = rng.random_range(2..=3usize).min(n);
    let partitions = rng.random_range(4..=16u32);
    let clients = rng.random_range(2..=4usize);
    let latency_max = rng.random_range(2..=40u64);
    let loss_ppm = [0, 0, 10_000, 50_000][rng.random_range(0..4usize)];
    let dup_ppm = [0, 20_000][rng.random_range(0..2usize)];
    let registry = match Registry::builder().kind::<crate::tally::Tally>().build() {
        Ok(registry) => Arc::new(registry),
        Err(err) => return failed_setup(options, &err.to_string()),
    };
    let Some(kind) = registry.kind_id("tally") else {
        return failed_setup(options, "tally kind not registered");
    };
    let shared = Shared {
        names: (0..n).map(|i| NodeId::new(&format!("n{i}"))).collect(),
        partitions,
        rf,
        registry,
        kind,
        bug: options.bug,
        trace: options.trace,
    };
    let mut world = World {
        now: 0,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        next_event: 0,
        rng,
        nodes: (0..n)
            .map(|i| SimNode {
                node: Node::new(i, 1, 0, shared.clone()),
                alive: true,
                paused: false,
                inbox: Vec::new(),
            })
            .collect(),
        clients: (0..clients)
            .map(|_| Client {
                next_seq: 1,
                current: None,
                hint: None,
            })
            .collect(),
        shared,
        latency: (1, latency_max),
        loss_ppm,
        dup_ppm,
        burst: false,
        blocked: BTreeSet::new(),
        claims: Vec::new(),
        next_id: 1,
        next_request: 1,
        sent: BTreeMap::new(),
        acked: BTreeSet::new(),
        generating: true,
        digest: Xxh3::new(),
        delivered: 0,
        violations: Vec::new(),
        initial_loss_ppm: loss_ppm,
        applied_count: 0,
        lost_count: 0,
        twice_count: 0,
    };
    for i in 0..n {
        let start = world.rng.random_range(0..TICK_MS);
        world.schedule(start, Event::NodeTick(i, 1));
    }
    for c in 0..clients {
        world.schedule(500 + c as u64, Event::ClientTick(c));
    }
    let faults = world.plan_faults(options);
    world.run_until(options.fault_ms);
    // Heal: faults stop, lost nodes come back, the network is clean.
    world.heal_all();
    world.generating = false;
    let deadline = options.fault_ms + options.recover_ms;
    world.run_until(deadline);
    world.check_final(options.recover_ms);
    world.report(options, faults)
}

fn failed_setup(options: &SimOptions, why: &str) -> SimReport {
    SimReport {
        seed: options.seed,
        nodes: 0,
        rf: 0,
        partitions: 0,
        loss_ppm: 0,
        faults: Vec::new(),
        sent: 0,
        acked: 0,
        applied: 0,
        lost: 0,
        duplicated: 0,
        takeovers: 0,
        delivered: 0,
        violations: vec![format!("setup failed: {why}")],
        digest: String::new(),
    }
}

impl World {
    fn schedule(&mut self, at: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((at, id)));
        self.events.insert(id, event);
    }

    fn ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.random_range(0..1_000_000u32) < ppm
    }

    fn send(&mut self, from: Addr, to: Addr, body: Body) {
        if let (Addr::Node(a), Addr::Node(b)) = (from, to)
            && self.blocked.contains(&(a, b))
        {
            return;
        }
        let loss = if self.burst { 300_000 } else { self.loss_ppm };
        if self.ppm(loss) {
            return;
        }
        let generation = match from {
            Addr::Node(i) => self.nodes[i].node.generation,
            Addr::Client(_) => 0,
        };
        let copies = if self.ppm(self.dup_ppm) { 2 } else { 1 };
        for _ in 0..copies {
            // Independent latencies reorder messages.
            let delay = self.rng.random_range(self.latency.0..=self.latency.1);
            self.schedule(
                self.now + delay,
                Event::Deliver {
                    from,
                    generation,
                    to,
                    body: body.clone(),
                },
            );
        }
    }

    fn plan_faults(&mut self, options: &SimOptions) -> Vec<String> {
        let kinds: &[FaultKind] = match options.faults {
            FaultSet::Symmetric => &[
                FaultKind::Crash,
                FaultKind::Pause,
                FaultKind::Isolate,
                FaultKind::LossBurst,
            ],
            FaultSet::All => &[
                FaultKind::Crash,
                FaultKind::Pause,
                FaultKind::Isolate,
                FaultKind::LossBurst,
                FaultKind::DeafSender,
                FaultKind::MuteReceiver,
            ],
        };
        // Swarm: each seed enables a random non-empty subset.
        let mut enabled: Vec<FaultKind> = kinds
            .iter()
            .copied()
            .filter(|_| self.rng.random_range(0..2u8) == 1)
            .collect();
        if enabled.is_empty() {
            enabled.push(kinds[self.rng.random_range(0..kinds.len())]);
        }
        let mut plan = Vec::new();
        let mut at = 1_500;
        // One fault at a time, each healed with time to recover before the
        // next: with rf copies the design survives rf - 1 failures at once.
        while at < options.fault_ms.saturating_sub(2_000) {
            let kind = enabled[self.rng.random_range(0..enabled.len())];
            let victim = self.rng.random_range(0..self.nodes.len());
            let duration = self.rng.random_range(200..3_000u64);
            plan.push(format!("{at} {kind:?} n{victim} {duration}"));
            self.schedule(
                at,
                Event::Fault {
                    victim,
                    kind,
                    start: true,
                },
            );
            self.schedule(
                at + duration,
                Event::Fault {
                    victim,
                    kind,
                    start: false,
                },
            );
            at += duration + self.rng.random_range(1_500..4_000u64);
        }
        plan
    }

    fn fault(&mut self, victim: usize, kind: FaultKind, start: bool) {
        let n = self.nodes.len();
        let others = (0..n).filter(|&i| i != victim);
        match (kind, start) {
            (FaultKind::Crash, true) => self.nodes[victim].alive = false,
            (FaultKind::Crash, false) => self.restart(victim),
            (FaultKind::Pause, true) => self.nodes[victim].paused = true,
            (FaultKind::Pause, false) => self.resume(victim),
            (FaultKind::Isolate, true) => {
                for o in others {
                    self.blocked.insert((victim, o));
                    self.blocked.insert((o, victim));
                }
            }
            (FaultKind::DeafSender, true) => {
                for o in others {
                    self.blocked.insert((victim, o));
                }
            }
            (FaultKind::MuteReceiver, true) => {
                for o in others {
                    self.blocked.insert((o, victim));
                }
            }
            (FaultKind::Isolate | FaultKind::DeafSender | FaultKind::MuteReceiver, false) => {
                self.blocked.retain(|(a, b)| *a != victim && *b != victim);
            }
            (FaultKind::LossBurst, start) => self.burst = start,
        }
    }

    fn restart(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if node.alive {
            return;
        }
        let generation = node.node.generation + 1;
        node.node = Node::new(index, generation, self.now, self.shared.clone());
        node.alive = true;
        node.paused = false;
        node.inbox.clear();
        self.schedule(self.now + TICK_MS, Event::NodeTick(index, generation));
    }

    fn resume(&mut self, index: usize) {
        if !self.nodes[index].paused {
            return;
        }
        self.nodes[index].paused = false;
        let inbox = std::mem::take(&mut self.nodes[index].inbox);
        for (from, generation, body) in inbox {
            self.deliver(from, generation, Addr::Node(index), body);
        }
        let generation = self.nodes[index].node.generation;
        self.schedule(self.now, Event::NodeTick(index, generation));
    }

    fn heal_all(&mut self) {
        self.blocked.clear();
        self.burst = false;
        self.loss_ppm = 0;
        self.dup_ppm = 0;
        for i in 0..self.nodes.len() {
            self.restart(i);
            self.resume(i);
        }
    }

    fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(event) = self.events.remove(&id) else {
                continue;
            };
            self.now = at;
            match event {
                Event::Deliver {
                    from,
                    generation,
                    to,
                    body,
                } => self.deliver(from, generation, to, body),
                Event::NodeTick(i, generation) => self.node_tick(i, generation),
                Event::ClientTick(c) => self.client_tick(c),
                Event::Fault {
                    victim,
                    kind,
                    start,
                } => {
                    if options_trace(self) {
                        eprintln!("t={} fault {kind:?} n{victim} start={start}", self.now);
                    }
                    self.digest.update(&[0xff, start as u8]);
                    self.digest.update(&(victim as u64).to_le_bytes());
                    self.fault(victim, kind, start);
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn node_tick(&mut self, i: usize, generation: u32) {
        let node = &mut self.nodes[i];
        if !node.alive || node.node.generation != generation {
            return;
        }
        if node.paused {
            // Ticks resume with the node.
            return;
        }
        let mut out = Vec::new();
        node.node.tick(self.now, &mut out);
        self.flush(Addr::Node(i), out);
        self.schedule(self.now + TICK_MS, Event::NodeTick(i, generation));
    }

    fn deliver(&mut self, from: Addr, generation: u32, to: Addr, body: Body) {
        self.delivered += 1;
        self.digest.update(&self.now.to_le_bytes());
        self.digest
            .update(&[addr_byte(from), addr_byte(to), body.tag()]);
        match to {
            Addr::Client(c) => {
                if let Body::Answer(request, answer) = body {
                    self.answer(c, request, answer);
                }
            }
            Addr::Node(i) => {
                let node = &mut self.nodes[i];
                if !node.alive {
                    return;
                }
                if node.paused {
                    node.inbox.push((from, generation, body));
                    return;
                }
                let mut out = Vec::new();
                let before = self.claims.len();
                node.node
                    .handle(self.now, from, generation, body, &mut out, &mut self.claims);
                self.check_claims(before);
                self.flush(Addr::Node(i), out);
            }
        }
    }

    fn flush(&mut self, from: Addr, out: Vec<(Addr, Body)>) {
        for (to, body) in out {
            self.send(from, to, body);
        }
    }

    /// Safety, checked as it happens: one owner per partition and epoch.
    fn check_claims(&mut self, from: usize) {
        for k in from..self.claims.len() {
            let new = &self.claims[k];
            let clash = self.claims[..k].iter().find(|c| {
                c.partition == new.partition
                    && c.epoch == new.epoch
                    && (c.node, c.generation) != (new.node, new.generation)
            });
            if let Some(old) = clash {
                self.violations.push(format!(
                    "t={} two owners of partition {} at epoch {}: n{} and n{}",
                    self.now, new.partition, new.epoch.0, old.node, new.node
                ));
            }
        }
    }

    fn client_tick(&mut self, c: usize) {
        let now = self.now;
        let n = self.nodes.len();
        let target = |world: &mut World, hint: Option<usize>| {
            hint.unwrap_or_else(|| world.rng.random_range(0..n))
        };
        let client = &self.clients[c];
        match &client.current {
            None if self.generating => {
                let id = self.next_id;
                self.next_id += 1;
                let key = self.rng.random_range(0..KEYS_MAX);
                let request = self.next_request;
                self.next_request += 1;
                let client = &mut self.clients[c];
                let seq = client.next_seq;
                client.next_seq += 1;
                client.current = Some(Pending {
                    request,
                    key,
                    id,
                    seq,
                    sent_at: now,
                    retry_at: None,
                });
                self.sent.insert(id, key);
                let hint = self.clients[c].hint;
                let to = target(self, hint);
                self.send(
                    Addr::Client(c),
                    Addr::Node(to),
                    Body::Submit(request, key, id, seq),
                );
            }
            None => {}
            Some(p) => {
                // No answer (lost, or the node died): try again elsewhere.
                let timed_out = now.saturating_sub(p.sent_at) > 1_000;
                let retry = p.retry_at.is_some_and(|t| now >= t);
                if timed_out || retry {
                    let (key, id, seq) = (p.key, p.id, p.seq);
                    let request = self.next_request;
                    self.next_request += 1;
                    let hint = if timed_out {
                        None
                    } else {
                        self.clients[c].hint
                    };
                    let to = target(self, hint);
                    if let Some(p) = self.clients[c].current.as_mut() {
                        p.request = request;
                        p.sent_at = now;
                        p.retry_at = None;
                    }
                    self.send(
                        Addr::Client(c),
                        Addr::Node(to),
                        Body::Submit(request, key, id, seq),
                    );
                }
            }
        }
        self.schedule(now + 10, Event::ClientTick(c));
    }

    fn answer(&mut self, c: usize, request: u64, answer: Answer) {
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(p) = client.current.as_mut() else {
            return;
        };
        if p.request != request {
            return;
        }
        match answer {
            Answer::Acked => {
                self.acked.insert(p.id);
                client.current = None;
            }
            Answer::NotOwner(hint) => {
                client.hint = hint;
                p.retry_at = Some(now + 20);
            }
            Answer::Unavailable => {
                client.hint = None;
                p.retry_at = Some(now + 100);
            }
        }
    }

    /// After the recovery window: converged, everything acknowledged, every
    /// acknowledged event applied exactly once, replicas equal their owner.
    fn check_final(&mut self, recover_ms: u64) {
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.node.live().iter().filter(|l| **l).count() != n {
                self.violations.push(format!(
                    "n{i} does not see every node {recover_ms} ms after the faults stopped"
                ));
            }
        }
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(p) = &client.current {
                self.violations.push(format!(
                    "client {c}'s event {} not acknowledged {recover_ms} ms after the faults stopped",
                    p.id
                ));
            }
        }
        let table = self.nodes[0].node.table().clone();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.node.table().fingerprint() != table.fingerprint() {
                self.violations
                    .push(format!("n{i}'s table differs from n0's"));
            }
        }
        let mut applied: BTreeMap<u32, u32> = BTreeMap::new();
        for p in 0..self.shared.partitions {
            let Some(owner) = table
                .owner(PartitionId(p))
                .and_then(|o| self.shared.names.iter().position(|m| m == o))
            else {
                self.violations.push(format!("partition {p} has no owner"));
                continue;
            };
            let servers: Vec<usize> = (0..n).filter(|&i| self.nodes[i].node.serves(p)).collect();
            if servers != [owner] {
                self.violations.push(format!(
                    "partition {p}: table owner n{owner}, serving: {servers:?}"
                ));
            }
            let Some(copy) = self.nodes[owner].node.copy(p) else {
                continue;
            };
            let Ok(dump) = copy.dump() else {
                self.violations
                    .push(format!("partition {p}: owner copy does not encode"));
                continue;
            };
            for ((_, key), bytes) in &dump.keys {
                let Ok(marks) = postcard::from_bytes::<crate::tally::Marks>(bytes) else {
                    self.violations
                        .push(format!("{key}: state does not decode"));
                    continue;
                };
                for id in marks.ids {
                    *applied.entry(id).or_default() += 1;
                    let expected = self.sent.get(&id).map(|k| format!("k{k}"));
                    if expected.as_deref() != Some(key.as_str()) {
                        self.violations
                            .push(format!("{key} holds event {id} never sent to it"));
                    }
                }
            }
            for replica in table.replicas(PartitionId(p)).skip(1) {
                let Some(b) = self.shared.names.iter().position(|m| m == replica) else {
                    continue;
                };
                let same = self.nodes[b]
                    .node
                    .copy(p)
                    .and_then(|c| c.dump().ok())
                    .is_some_and(|d| d.keys == dump.keys);
                if !same {
                    self.violations.push(format!(
                        "partition {p}: backup n{b} differs from owner n{owner}"
                    ));
                }
            }
        }
        let lost: Vec<u32> = self
            .acked
            .iter()
            .copied()
            .filter(|id| !applied.contains_key(id))
            .collect();
        if !lost.is_empty() {
            let examples: Vec<String> = lost
                .iter()
                .take(5)
                .map(|id| {
                    let key = self.sent.get(id).copied().unwrap_or_default();
                    format!("{id} (k{key}, partition {})", key % self.shared.partitions)
                })
                .collect();
            self.violations.push(format!(
                "{} acknowledged events lost, e.g. {}",
                lost.len(),
                examples.join(", ")
            ));
        }
        let twice: Vec<u32> = applied
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(id, _)| *id)
            .collect();
        if !twice.is_empty() {
            self.violations.push(format!(
                "{} events applied twice, e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(5)]
            ));
        }
        self.applied_count = applied.len() as u64;
        self.lost_count = lost.len() as u64;
        self.twice_count = twice.len() as u64;
    }

    fn report(self, options: &SimOptions, faults: Vec<String>) -> SimReport {
        SimReport {
            seed: options.seed,
            nodes: self.nodes.len(),
            rf: self.shared.rf,
            partitions: self.shared.partitions,
            loss_ppm: self.initial_loss_ppm,
            faults,
            sent: self.sent.len() as u64,
            acked: self.acked.len() as u64,
            applied: self.applied_count,
            lost: self.lost_count,
            duplicated: self.twice_count,
            takeovers: self.claims.len() as u64,
            delivered: self.delivered,
            violations: self.violations,
            digest: format!("{:016x}", self.digest.digest()),
        }
    }
}

fn options_trace(world: &World) -> bool {
    world.shared.trace.is_some()
}

fn addr_byte(addr: Addr) -> u8 {
    match addr {
        Addr::Node(i) => i as u8,
        Addr::Client(c) => 0x80 | c as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_byte_for_byte() {
        let a = run(&SimOptions::new(7));
        let b = run(&SimOptions::new(7));
        assert_eq!(a.digest, b.digest);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let c = run(&SimOptions::new(8));
        assert_ne!(a.digest, c.digest, "another seed is another run");
    }
}
