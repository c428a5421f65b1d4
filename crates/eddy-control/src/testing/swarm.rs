//! [`run_swarm`]: one seed of a randomised cluster size and fault mix over
//! the [`TestNet`] (TigerBeetle's swarm idea), in two phases: safety must
//! hold throughout the faults; once they stop and the network heals, a
//! leader must exist and every running controller converge within a bound.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;

use super::{NetConfig, TestNet};
use crate::controller::ControllerSettings;

/// Knobs of one [`run_swarm`] seed.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Ticks of the fault phase.
    pub fault_ticks: u64,
    /// Ticks the liveness phase may take to converge.
    pub converge_ticks: u64,
    /// Controller tuning.
    pub settings: ControllerSettings,
    /// Voters (3 or 5); `None` lets the seed choose.
    pub voters: Option<usize>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            fault_ticks: 300,
            converge_ticks: 600,
            settings: ControllerSettings::default(),
            voters: None,
        }
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SwarmReport {
    /// The seed.
    pub seed: u64,
    /// Voters.
    pub voters: usize,
    /// Entries committed (highest applied index).
    pub committed: u64,
    /// Ticks the liveness phase took to converge.
    pub converge_ticks: u64,
    /// Nodes wiped.
    pub wiped: usize,
    /// Minority probes proposed.
    pub probes: usize,
    /// Everything the checker found; empty when the seed passed.
    pub violations: Vec<String>,
}

impl SwarmReport {
    /// Whether the seed passed every check.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs one seed: a random cluster size and fault mix for
/// `swarm.fault_ticks` with a random workload, then heals, restarts the
/// crashed, stops the faults and requires convergence within
/// `swarm.converge_ticks`. `Err` carries the seed and every violation.
pub fn run_swarm(seed: u64, swarm: &SwarmConfig) -> Result<SwarmReport, String> {
    let report = run_swarm_report(seed, swarm);
    if report.passed() {
        Ok(report)
    } else {
        Err(format!("seed {seed}: {}", report.violations.join("\n  ")))
    }
}

/// [`run_swarm`], with the violations in the report (for the chaos CLI,
/// which prints a failing seed's whole report).
pub fn run_swarm_report(seed: u64, swarm: &SwarmConfig) -> SwarmReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
    // Drawn even when fixed, so a seed's fault mix does not depend on it.
    let drawn = if rng.random_range(0..2u32) == 0 { 3 } else { 5 };
    let voters = swarm.voters.unwrap_or(drawn);
    let net_config = NetConfig {
        voters,
        partitions: 8,
        replication: 2,
        loss_ppm: [0, 10_000, 100_000][rng.random_range(0..3usize)],
        max_delay_ticks: rng.random_range(0..4),
        settings: swarm.settings.clone(),
    };
    let fault_pct = rng.random_range(1..6u32);
    let mut net = TestNet::new(seed, net_config);
    let mut report = SwarmReport {
        seed,
        voters,
        ..SwarmReport::default()
    };
    // At most a minority of voters may be wiped: the rest must still form a
    // quorum for the liveness phase.
    let max_wipes = (voters - 1) / 2;
    let mut wiped: Vec<usize> = Vec::new();
    for _ in 0..swarm.fault_ticks {
        net.tick();
        if rng.random_range(0..3u32) == 0 {
            let index = rng.random_range(0..voters);
            net.random_proposal(index);
        }
        if rng.random_range(0..100u32) >= fault_pct {
            continue;
        }
        match rng.random_range(0..8u32) {
            0 => net.crash(rng.random_range(0..voters)),
            1 | 2 => net.restart(rng.random_range(0..voters)),
            3 if wiped.len() < max_wipes => {
                let index = rng.random_range(0..voters);
                if !wiped.contains(&index) {
                    net.wipe(index);
                    wiped.push(index);
                }
            }
            4 | 5 => {
                // A random split: shuffle, cut into a minority and a majority
                // (sometimes isolate one node completely).
                let mut order: Vec<usize> = (0..voters).collect();
                for i in (1..order.len()).rev() {
                    let j = rng.random_range(0..=i);
                    order.swap(i, j);
                }
                let minority_len = rng.random_range(1..=(voters - 1) / 2);
                let minority: Vec<usize> = order[..minority_len].to_vec();
                let majority: Vec<usize> = order[minority_len..].to_vec();
                if rng.random_range(0..2u32) == 0 {
                    net.split(vec![minority.clone(), majority]);
                } else {
                    net.split(vec![majority]);
                }
                // Let the split take hold, then probe the minority side.
                let probe = minority[rng.random_range(0..minority.len())];
                net.run(rng.random_range(0..30));
                net.propose_minority_probe(probe);
                report.probes += 1;
            }
            _ => net.heal(),
        }
    }
    // Liveness phase: no more faults.
    net.heal();
    net.config.loss_ppm = 0;
    for index in 0..voters {
        net.restart(index);
    }
    let mut joins_pending: Vec<usize> = wiped.clone();
    let mut converged_at = None;
    for tick in 0..swarm.converge_ticks {
        net.tick();
        if tick % 20 == 0
            && let Some(leader) = net.leader()
        {
            {
                joins_pending.retain(|&w| {
                    let member = net.nodes[w].member.clone();
                    let joined = net.nodes[leader]
                        .controller
                        .as_ref()
                        .is_some_and(|c| c.config().is_member(&member));
                    if !joined {
                        net.request_join(w, leader);
                    }
                    !joined
                });
            }
        }
        if joins_pending.is_empty() && net.converged() {
            converged_at = Some(tick);
            break;
        }
    }
    for &w in &wiped {
        let member = net.nodes[w].member.clone();
        let new_id = member.raft_id().0;
        for node in &net.nodes {
            let voter_in_config = node
                .controller
                .as_ref()
                .and_then(|c| c.config().member_named(&member.name))
                .is_some_and(|m| m.id == member && m.voter);
            if voter_in_config || node.disk.snapshot.conf.voters.contains(&new_id) {
                net.violations
                    .push(format!("wiped node came back as a voter: {member}"));
            }
        }
    }
    report.wiped = wiped.len();
    report.committed = net.log.keys().next_back().copied().unwrap_or(0);
    match converged_at {
        Some(ticks) => report.converge_ticks = ticks,
        None => net.violations.push(format!(
            "no convergence within {} ticks after healing (leader {:?})",
            swarm.converge_ticks,
            net.leader()
        )),
    }
    report.violations = net.violations;
    report
}
