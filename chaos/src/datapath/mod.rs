//! `eddy-chaos datapath`: seed campaigns of one partition's data path.
//!
//! The same code the node runs — `eddy_replica`'s slots (roles, fences,
//! log matching, snapshot streams, takeovers), `eddy_core`'s partitions,
//! `eddy_control`'s committed configuration, planner and owner ISR
//! bookkeeping — driven by a seeded scheduler over a network that reorders
//! across connections, resets and cuts them, with nodes that crash,
//! restart from their logs, lose their data and are cut off while still
//! serving. Raft is one ordered log of committed configurations here (its
//! own campaign is `eddy-chaos control`); nodes see it late.
//!
//! The checker: a node that takes the partition over holds every
//! acknowledged value; no two nodes serve one epoch; after the faults stop
//! the committed owner serves, accepts writes, and it and every in-sync
//! copy hold each acknowledged value exactly once. Deliberate bugs in the
//! driver prove it catches the loss classes.

mod kind;
mod net;
mod node;
mod world;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;

use world::World;

/// A deliberate bug in the simulated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DataPathBug {
    /// Writes are acknowledged once in the owner's log, without waiting for
    /// the in-sync backups (`acks = 1`): lost when the owner is.
    AckWithoutBackups,
    /// A node whose data was wiped comes back under its old identity, so it
    /// still counts as in sync (the first loss class of issue 14).
    WipeKeepsIdentity,
    /// A restarted partition worker trusts the copies it does not hold:
    /// a first-ISR member passes its lost copy off as empty.
    WorkerFailureTrusted,
}

impl DataPathBug {
    /// Every bug.
    pub const ALL: [DataPathBug; 3] = [
        DataPathBug::AckWithoutBackups,
        DataPathBug::WipeKeepsIdentity,
        DataPathBug::WorkerFailureTrusted,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DataPathBug::AckWithoutBackups => "ack-without-backups",
            DataPathBug::WipeKeepsIdentity => "wipe-keeps-identity",
            DataPathBug::WorkerFailureTrusted => "worker-failure-trusted",
        }
    }
}

impl std::str::FromStr for DataPathBug {
    type Err = String;
    fn from_str(s: &str) -> Result<DataPathBug, String> {
        DataPathBug::ALL
            .into_iter()
            .find(|bug| bug.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = DataPathBug::ALL.iter().map(|b| b.name()).collect();
                format!("unknown bug `{s}` (known: {})", known.join(", "))
            })
    }
}

/// What one seed runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPathOptions {
    /// The seed.
    pub seed: u64,
    /// Steps of the fault phase.
    pub steps: u64,
    /// The injected bug, if any.
    pub bug: Option<DataPathBug>,
}

impl DataPathOptions {
    /// Seed `seed` with the default length and no bug.
    pub fn new(seed: u64) -> DataPathOptions {
        DataPathOptions {
            seed,
            steps: 3_000,
            bug: None,
        }
    }

    /// The command that reruns exactly this seed and prints its report.
    pub fn reproduce(&self) -> String {
        let mut command = format!(
            "eddy-chaos datapath --seed {} --steps {}",
            self.seed, self.steps
        );
        if let Some(bug) = self.bug {
            command.push_str(" --bug ");
            command.push_str(bug.name());
        }
        command
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataPathReport {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Copies per partition.
    pub replication: u8,
    /// `min_insync_replicas`.
    pub min_insync: usize,
    /// Whether nodes keep a `data_dir`: without one a crash loses the
    /// node's data (it comes back a new incarnation) and a failed
    /// partition worker's copies are gone; with one the replacement
    /// reloads them from the log.
    pub durable: bool,
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Owners elected (committed `Elect`s).
    pub elections: u64,
    /// Takeovers run by nodes.
    pub takeovers: u64,
    /// Snapshots installed.
    pub snapshots: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Crashes, wipes among them.
    pub crashes: u64,
    /// Nodes that lost their data.
    pub wipes: u64,
    /// Partition workers that failed (the process lived on).
    pub worker_failures: u64,
    /// Nodes cut off from everyone.
    pub isolations: u64,
    /// Single directed links cut.
    pub link_cuts: u64,
    /// Connections reset.
    pub resets: u64,
    /// Seeds that ended with the partition offline, never written and
    /// with no in-sync copy (`World::offline_unwritten`).
    pub offline_unwritten: u64,
    /// Everything the checker found; empty when the seed passed.
    pub violations: Vec<String>,
}

impl DataPathReport {
    /// Whether the seed passed every check.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Adds `other`'s counts to these (a campaign's totals).
    pub fn add(&mut self, other: &DataPathReport) {
        self.acknowledged += other.acknowledged;
        self.elections += other.elections;
        self.takeovers += other.takeovers;
        self.snapshots += other.snapshots;
        self.frames += other.frames;
        self.crashes += other.crashes;
        self.wipes += other.wipes;
        self.worker_failures += other.worker_failures;
        self.isolations += other.isolations;
        self.link_cuts += other.link_cuts;
        self.resets += other.resets;
        self.offline_unwritten += other.offline_unwritten;
    }
}

/// Steps the heal phase may take to acknowledge a write and go quiet.
const HEAL_STEPS: u64 = 4_000;

/// Runs one seed.
pub fn run(options: DataPathOptions) -> DataPathReport {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let nodes = rng.random_range(3..=4usize);
    let replication = rng.random_range(2..=3u8);
    let min_insync = rng.random_range(1..=2usize).min(usize::from(replication));
    let durable = rng.random_range(0..4u8) > 0;
    let report = DataPathReport {
        seed: options.seed,
        nodes,
        replication,
        min_insync,
        durable,
        ..DataPathReport::default()
    };
    let mut world = match World::new(rng, nodes, replication, min_insync, options.bug, report) {
        Ok(world) => world,
        Err(err) => {
            return DataPathReport {
                violations: vec![err],
                ..DataPathReport::default()
            };
        }
    };
    if let Err(err) = faults(&mut world, options).and_then(|()| heal(&mut world)) {
        world.report.violations.push(err);
    }
    world.report.clone()
}

/// The fault phase: a random mix of deliveries, views, writes, planning
/// and faults.
fn faults(world: &mut World, options: DataPathOptions) -> Result<(), String> {
    let keep_identity = options.bug == Some(DataPathBug::WipeKeepsIdentity);
    for step in 0..options.steps {
        world.step = step;
        let roll = world.rng.random_range(0..1000u32);
        let n = world.nodes.len();
        let node = world.rng.random_range(0..n);
        match roll {
            0..500 => {
                world.deliver()?;
            }
            // The controller commits a proposal far more often than
            // nodes learn of it (Raft's round trip vs. a node's view).
            500..600 => world.catch_up(node)?,
            600..720 => world.client_write()?,
            720..780 => {
                world.plan();
            }
            780..800 => world.owner_checks(),
            // Without data_dir a crash is a wipe: never of the last live
            // in-sync copy (PROTOCOL.md, "What is not covered").
            800..808
                if world.nodes[node].up
                    && world.nodes.iter().all(|x| x.up)
                    && (world.report.durable || world.may_wipe(node)) =>
            {
                world.crash(node);
                if !world.report.durable {
                    world.wipe(node, keep_identity);
                }
            }
            808..820 if !world.nodes[node].up && world.may_wipe(node) => {
                world.wipe(node, keep_identity);
            }
            820..840 if !world.nodes[node].up => world.restart(node)?,
            840..846 if !world.isolated.iter().any(|x| *x) => world.isolate(node),
            846..852 => {
                let other = world.rng.random_range(0..n);
                if other != node {
                    world.net.set_cut(node, other, true);
                    world.report.link_cuts += 1;
                }
            }
            852..880 => world.heal_links(),
            880..890 => {
                let other = world.rng.random_range(0..n);
                if other != node {
                    world.net.reset(node, other);
                    world.report.resets += 1;
                }
            }
            // Without data_dir a failed worker's copies are gone, as with a
            // wipe: never the last live in-sync copy.
            890..894 if world.nodes[node].up && (world.report.durable || world.may_wipe(node)) => {
                world.fail_worker(node)?;
            }
            _ => {}
        }
        if world.rng.random_range(0..3u8) == 0 {
            world.commit_proposal();
        }
        world.expire()?;
        world.check_owners();
        if step % 20 == 0 {
            world.check_isr_holds_acks()?;
        }
    }
    Ok(())
}

/// The faults stop: links heal, the crashed restart, and the cluster must
/// acknowledge a write and settle within [`HEAL_STEPS`].
fn heal(world: &mut World) -> Result<(), String> {
    world.heal_links();
    for node in 0..world.nodes.len() {
        if !world.nodes[node].up {
            world.restart(node)?;
        }
    }
    let target = world.client_next() + 1;
    let start = world.step;
    let mut settled = false;
    for step in start..start + HEAL_STEPS {
        world.step = step;
        while world.deliver()? {}
        while world.commit_proposal() {}
        for node in 0..world.nodes.len() {
            world.catch_up(node)?;
        }
        let planned = world.plan();
        if step % 10 == 0 {
            world.owner_checks();
        }
        if world.client_next() < target {
            world.client_write()?;
        }
        world.expire()?;
        world.check_owners();
        if world.client_next() >= target && world.quiet() && !planned && step > start + 50 {
            settled = true;
            break;
        }
    }
    if !settled && world.offline_unwritten() {
        world.report.offline_unwritten = 1;
        return Ok(());
    }
    if !settled {
        let state = world.describe();
        world.report.violations.push(format!(
            "after the heal: no write acknowledged and quiet within {HEAL_STEPS} steps: {state}"
        ));
    }
    world.final_check();
    Ok(())
}
