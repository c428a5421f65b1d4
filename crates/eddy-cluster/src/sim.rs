//! A deterministic simulated network driving many [`Membership`]s in one
//! process: a virtual clock, one event queue ordered by `(time, sequence)`,
//! seeded latency and loss, and crash faults.
//!
//! The same [`SimConfig`] (seed included) gives the same run, event for event;
//! [`Simulation::trace`] records it when asked so a test can compare two runs.
//! The scenario helpers measure what docs/CLUSTER_SCALE.md reports: protocol
//! periods until every member sees every live member up, datagrams per member
//! per period, and periods until a killed member is down everywhere.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU32;

use eddy_core::Timestamp;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::config::MembershipConfig;
use crate::identity::NodeIdentity;
use crate::membership::{Membership, MembershipError, MembershipEvent, MembershipTimer};
use crate::testing;
use crate::view::MemberStatus;

/// Largest simulated cluster: fixture addresses are numbered by a `u16`.
pub const MAX_SIM_NODES: usize = u16::MAX as usize;

/// Parameters of one simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Cluster size, at most [`MAX_SIM_NODES`].
    pub nodes: usize,
    /// Seed of the network (latency, loss, join times) and, derived per node,
    /// of every node's foca RNG.
    pub seed: u64,
    /// One-way latency is uniform in `latency_min_ms..=latency_max_ms`.
    pub latency_min_ms: u64,
    /// See `latency_min_ms`.
    pub latency_max_ms: u64,
    /// Probability in parts per million that a datagram is lost.
    pub loss_ppm: u32,
    /// Nodes announce to the seed at a uniform time in `0..join_spread_ms`.
    pub join_spread_ms: u64,
    /// Membership configuration of every node (`rng_seed` is replaced).
    pub membership: MembershipConfig,
    /// Record every event in [`Simulation::trace`] (memory grows with the run).
    pub record_trace: bool,
}

impl SimConfig {
    /// LAN-like defaults for `nodes` nodes: 1–5 ms latency, no loss, joins
    /// spread over one probe period, [`MembershipConfig::lan`] sized for `nodes`.
    pub fn lan(nodes: usize, seed: u64) -> SimConfig {
        let hint =
            NonZeroU32::new(u32::try_from(nodes).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let membership = MembershipConfig::lan(hint);
        SimConfig {
            nodes,
            seed,
            latency_min_ms: 1,
            latency_max_ms: 5,
            loss_ppm: 0,
            join_spread_ms: u64::from(membership.probe_period_ms.get()),
            membership,
            record_trace: false,
        }
    }
}

/// One recorded step: when, which node, what it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time.
    pub at: Timestamp,
    /// Node index.
    pub node: usize,
    /// The event the node reported.
    pub event: MembershipEvent,
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams produced by all nodes.
    pub sent: u64,
    /// Datagrams lost by the network or addressed to a dead node.
    pub dropped: u64,
    /// Inputs a node rejected (see [`MembershipError`]).
    pub errors: u64,
    /// Events processed.
    pub steps: u64,
}

enum Action {
    Deliver {
        to: usize,
        bytes: Vec<u8>,
    },
    /// `incarnation` of the sim node that scheduled it; a restarted node
    /// never sees its predecessor's timers.
    Timer {
        node: usize,
        incarnation: u32,
        timer: MembershipTimer,
    },
    Join {
        node: usize,
        seed: SocketAddr,
    },
}

struct SimNode {
    membership: Membership,
    alive: bool,
    incarnation: u32,
    /// Alive and sees exactly the live nodes as up.
    converged: bool,
}

/// The simulated cluster.
pub struct Simulation {
    now: Timestamp,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    /// `(time, sequence)` → action; the sequence keeps equal times in
    /// scheduling order (foca needs its timers in order).
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    actions: HashMap<u64, Action>,
    next_seq: u64,
    rng: ChaCha8Rng,
    config: SimConfig,
    stats: SimStats,
    trace: Vec<TraceEntry>,
    alive_count: usize,
    converged_count: usize,
    /// Whether the last step changed any view; predicates over views only
    /// need re-checking then.
    view_changed: bool,
    /// Per node, its side of a network split (all 0: no split).
    side: Vec<u8>,
}

impl Simulation {
    /// `config.nodes` nodes named `node-{i}` at fixture addresses, not joined.
    pub fn new(config: SimConfig) -> Result<Simulation, MembershipError> {
        let count = config.nodes.min(MAX_SIM_NODES);
        let identities = (0..count)
            // `count` ≤ u16::MAX, so the index fits.
            .map(|i| testing::identity(&format!("node-{i}"), u16::try_from(i).unwrap_or(u16::MAX)))
            .collect();
        Simulation::with_identities(config, identities)
    }

    /// One node per identity (gossip addresses must differ), not joined.
    /// `config.nodes` is ignored.
    pub fn with_identities(
        config: SimConfig,
        identities: Vec<NodeIdentity>,
    ) -> Result<Simulation, MembershipError> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut nodes = Vec::with_capacity(identities.len());
        let mut by_addr = HashMap::with_capacity(identities.len());
        for (index, identity) in identities.into_iter().enumerate() {
            by_addr.insert(identity.gossip_addr, index);
            let membership_config = config.membership.clone().with_seed(rng.random());
            nodes.push(SimNode {
                membership: Membership::new(identity, &membership_config, Timestamp(0))?,
                alive: true,
                incarnation: 0,
                converged: false,
            });
        }
        let alive_count = nodes.len();
        let mut sim = Simulation {
            now: Timestamp(0),
            nodes,
            by_addr,
            queue: BinaryHeap::new(),
            actions: HashMap::new(),
            next_seq: 0,
            rng,
            config,
            stats: SimStats::default(),
            trace: Vec::new(),
            alive_count,
            converged_count: 0,
            view_changed: false,
            side: vec![0; alive_count],
        };
        sim.refresh_convergence();
        Ok(sim)
    }

    /// Splits the network from now on: `side` (node indices) and the rest
    /// cannot reach each other. An empty `side` heals.
    pub fn split(&mut self, side: &[usize]) {
        for (node, s) in self.side.iter_mut().enumerate() {
            *s = u8::from(side.contains(&node));
        }
    }

    /// Changes the datagram loss from now on (a flaky spell, then healing).
    pub fn set_loss_ppm(&mut self, loss_ppm: u32) {
        self.config.loss_ppm = loss_ppm;
    }

    /// Virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Recorded events (empty unless `record_trace`).
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a simulation of zero nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index`'s membership, if it exists.
    pub fn node(&self, index: usize) -> Option<&Membership> {
        self.nodes.get(index).map(|n| &n.membership)
    }

    /// The probe period, the unit of the reported figures.
    pub fn probe_period_ms(&self) -> u64 {
        u64::from(self.config.membership.probe_period_ms.get())
    }

    /// Every node except `seed` announces to node `seed` at a random time in
    /// the next `join_spread_ms`.
    pub fn join_all_via(&mut self, seed: usize) {
        let Some(seed_addr) = self
            .nodes
            .get(seed)
            .map(|n| n.membership.identity().gossip_addr)
        else {
            return;
        };
        for node in 0..self.nodes.len() {
            if node != seed {
                let delay = self.rng.random_range(0..self.config.join_spread_ms.max(1));
                self.schedule(
                    self.now.plus_ms(delay),
                    Action::Join {
                        node,
                        seed: seed_addr,
                    },
                );
            }
        }
    }

    /// Node `index` announces to node `seed` now.
    pub fn join(&mut self, index: usize, seed: usize) {
        if let Some(seed_addr) = self
            .nodes
            .get(seed)
            .map(|n| n.membership.identity().gossip_addr)
        {
            self.schedule(
                self.now,
                Action::Join {
                    node: index,
                    seed: seed_addr,
                },
            );
        }
    }

    /// Crashes node `index`: it stops handling anything; datagrams to it are
    /// lost.
    pub fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index)
            && node.alive
        {
            node.alive = false;
            self.alive_count -= 1;
            self.refresh_convergence();
        }
    }

    /// Node `index` leaves gracefully now, then stops like a killed node.
    pub fn leave(&mut self, index: usize) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if node.alive && node.membership.leave(now).is_err() {
            self.stats.errors += 1;
        }
        self.drain(index);
        self.kill(index);
    }

    /// Replaces node `index` by a fresh process with `identity` (typically the
    /// same name with a higher generation), alive but not joined. Timers of
    /// the old process are discarded.
    pub fn restart(&mut self, index: usize, identity: NodeIdentity) -> Result<(), MembershipError> {
        let seed = self.rng.random();
        let config = self.config.membership.clone().with_seed(seed);
        let membership = Membership::new(identity, &config, self.now)?;
        let Some(node) = self.nodes.get_mut(index) else {
            return Ok(());
        };
        self.by_addr.remove(&node.membership.identity().gossip_addr);
        self.by_addr
            .insert(membership.identity().gossip_addr, index);
        node.membership = membership;
        if !node.alive {
            node.alive = true;
            self.alive_count += 1;
        }
        node.incarnation += 1;
        self.refresh_convergence();
        Ok(())
    }

    /// Processes events until virtual time `until` (inclusive).
    pub fn run_until(&mut self, until: Timestamp) {
        while self.step_before(until) {}
        self.now = self.now.max(until);
    }

    /// Runs until `done(self)` holds, checked after every step that changed a
    /// view (so `done` must depend only on views), or `deadline` passes. Returns the time it first held.
    pub fn run_until_true(
        &mut self,
        deadline: Timestamp,
        mut done: impl FnMut(&Simulation) -> bool,
    ) -> Option<Timestamp> {
        if done(self) {
            return Some(self.now);
        }
        while self.step_before(deadline) {
            if self.view_changed && done(self) {
                return Some(self.now);
            }
        }
        None
    }

    /// Whether every live node sees every live node (itself included) as up
    /// and nothing else as live.
    pub fn converged(&self) -> bool {
        debug_assert_eq!(
            self.converged_count,
            self.nodes.iter().filter(|n| n.converged).count()
        );
        self.converged_count == self.alive_count
    }

    /// Recomputes every node's convergence flag (after a change of the live set).
    fn refresh_convergence(&mut self) {
        for index in 0..self.nodes.len() {
            self.update_convergence(index);
        }
    }

    fn update_convergence(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let now = node.alive && node.membership.view().up_count() == self.alive_count;
        if now != node.converged {
            node.converged = now;
            if now {
                self.converged_count += 1;
            } else {
                self.converged_count -= 1;
            }
        }
    }

    /// Whether every live node has `victim` down.
    pub fn all_see_down(&self, victim: &NodeIdentity) -> bool {
        self.nodes.iter().filter(|n| n.alive).all(|n| {
            n.membership
                .view()
                .get(&victim.name)
                .is_some_and(|e| e.status == MemberStatus::Down)
        })
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse((at, seq)));
        self.actions.insert(seq, action);
    }

    /// Runs the next event if it is due by `until`; false when none is.
    fn step_before(&mut self, until: Timestamp) -> bool {
        let Some(&Reverse((at, seq))) = self.queue.peek() else {
            return false;
        };
        if at > until {
            return false;
        }
        self.queue.pop();
        let Some(action) = self.actions.remove(&seq) else {
            debug_assert!(false, "every queued sequence has an action");
            return true;
        };
        self.now = at;
        self.stats.steps += 1;
        self.view_changed = false;
        let node = match &action {
            Action::Deliver { to, .. } => *to,
            Action::Timer { node, .. } | Action::Join { node, .. } => *node,
        };
        if let Action::Timer { incarnation, .. } = action
            && incarnation != self.nodes[node].incarnation
        {
            return true;
        }
        if !self.nodes[node].alive {
            if matches!(action, Action::Deliver { .. }) {
                self.stats.dropped += 1;
            }
            return true;
        }
        let membership = &mut self.nodes[node].membership;
        let version_before = membership.view().version();
        let result = match action {
            Action::Deliver { bytes, .. } => membership.handle_datagram(&bytes, at),
            Action::Timer { timer, .. } => membership.handle_timer(timer, at),
            Action::Join { seed, .. } => membership.join(&[seed], at),
        };
        if result.is_err() {
            self.stats.errors += 1;
        }
        let view = self.nodes[node].membership.view();
        if view.version() != version_before {
            self.view_changed = true;
            debug_assert_eq!(view.check_invariants(), Ok(()));
            self.update_convergence(node);
        }
        self.drain(node);
        true
    }

    /// foca's rhythm: after every input, take everything out.
    fn drain(&mut self, node: usize) {
        let now = self.now;
        let incarnation = self.nodes[node].incarnation;
        let membership = &mut self.nodes[node].membership;
        let datagrams: Vec<_> = membership.drain_datagrams().collect();
        let timers: Vec<_> = membership.drain_timers().collect();
        let events: Vec<_> = membership.drain_events().collect();
        debug_assert_eq!(membership.backlog(), 0, "drained everything");
        for datagram in datagrams {
            self.stats.sent += 1;
            let lost = self.config.loss_ppm > 0
                && self.rng.random_range(0..1_000_000u32) < self.config.loss_ppm;
            match self.by_addr.get(&datagram.to) {
                Some(&to) if !lost && self.side[to] == self.side[node] => {
                    let latency = self.rng.random_range(
                        self.config.latency_min_ms
                            ..=self.config.latency_max_ms.max(self.config.latency_min_ms),
                    );
                    self.schedule(
                        now.plus_ms(latency),
                        Action::Deliver {
                            to,
                            bytes: datagram.bytes,
                        },
                    );
                }
                _ => self.stats.dropped += 1,
            }
        }
        for timer in timers {
            self.schedule(
                timer.at,
                Action::Timer {
                    node,
                    incarnation,
                    timer: timer.timer,
                },
            );
        }
        if self.config.record_trace {
            for event in events {
                self.trace.push(TraceEntry {
                    at: now,
                    node,
                    event,
                });
            }
        }
    }
}

/// Results of [`measure`], in protocol periods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleReport {
    /// Cluster size.
    pub nodes: usize,
    /// Periods from the start until every member sees all members up.
    pub convergence_periods: Option<f64>,
    /// Datagrams per member per period while converging.
    pub join_msgs_per_member_period: f64,
    /// Datagrams per member per period in the steady state: the
    /// `steady_periods` that follow `steady_periods` of settling after
    /// convergence (the join updates' backlog drains while settling).
    pub steady_msgs_per_member_period: f64,
    /// Periods from killing one member until every other member has it down.
    pub detection_periods: Option<f64>,
    /// Inputs the nodes rejected during the run (e.g. foca's incomplete probe
    /// cycles); reported, not expected to be zero.
    pub errors: u64,
}

/// The scale scenario: all nodes join via node 0, run to convergence, settle
/// for `steady_periods`, measure `steady_periods` of steady traffic, kill the
/// last node and run until all others mark it down. Gives up on a phase after
/// `max_periods`.
pub fn measure(
    config: SimConfig,
    steady_periods: u64,
    max_periods: u64,
) -> Result<ScaleReport, MembershipError> {
    let nodes = config.nodes;
    let mut sim = Simulation::new(config)?;
    let period = sim.probe_period_ms();
    let periods = |ms: u64| ms as f64 / period as f64;
    sim.join_all_via(0);
    let start = sim.now();
    let converged_at =
        sim.run_until_true(start.plus_ms(max_periods * period), Simulation::converged);
    let join_ms = sim.now().millis_since(start).max(1);
    let join_sent = sim.stats().sent;
    let per_member = |sent: u64, ms: u64| sent as f64 / nodes.max(1) as f64 / periods(ms);

    sim.run_until(sim.now().plus_ms(steady_periods * period));
    let settled_sent = sim.stats().sent;
    let steady_start = sim.now();
    sim.run_until(steady_start.plus_ms(steady_periods * period));
    let steady_sent = sim.stats().sent - settled_sent;
    let steady_ms = sim.now().millis_since(steady_start).max(1);

    let mut detection_periods = None;
    if let Some(victim) = sim
        .node(nodes.saturating_sub(1))
        .map(|m| m.identity().clone())
        && nodes > 1
    {
        let killed_at = sim.now();
        sim.kill(nodes - 1);
        let down_at = sim.run_until_true(killed_at.plus_ms(max_periods * period), |s| {
            s.all_see_down(&victim)
        });
        detection_periods = down_at.map(|t| periods(t.millis_since(killed_at)));
    }
    Ok(ScaleReport {
        nodes,
        convergence_periods: converged_at.map(|t| periods(t.millis_since(start))),
        join_msgs_per_member_period: per_member(join_sent, join_ms),
        steady_msgs_per_member_period: per_member(steady_sent, steady_ms),
        detection_periods,
        errors: sim.stats().errors,
    })
}
