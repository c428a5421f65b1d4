//! [`run_swarm`]: one seed of a randomised cluster size and fault mix over
//! the [`TestNet`] (TigerBeetle's swarm idea), in two phases: safety must
//! hold throughout the faults; once they stop and the network heals, a
//! leader must exist and every running controller converge within a bound.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;

use super::{NetConfig, TestNet, fixture_info};
use crate::command::Command;
use crate::controller::ControllerSettings;
use crate::member::{MemberId, MemberInfo};

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
    /// Forget-downs (`Remove`) proposed and checked on a minority side (none
    /// committed).
    pub minority_removes: usize,
    /// Forget-downs the majority side committed during a split.
    pub majority_removes: usize,
    /// Directed links cut.
    pub one_way_cuts: usize,
    /// Wiped voters wiped again as non-voters.
    pub rewiped: usize,
    /// Members that joined late (after the bootstrap).
    pub late_joins: usize,
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
        settings: ControllerSettings {
            // A short log makes lagging voters catch up by snapshot, whose
            // frames the network loses like any other.
            compact_after_entries: [16, 1024][rng.random_range(0..2usize)]
                .min(swarm.settings.compact_after_entries),
            ..swarm.settings.clone()
        },
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
    // Members that join after the bootstrap (not nodes of the net: the
    // controller only needs their `Join` committed).
    let mut late: Vec<(MemberId, MemberInfo)> = Vec::new();
    for _ in 0..swarm.fault_ticks {
        net.tick();
        if rng.random_range(0..3u32) == 0 {
            let index = rng.random_range(0..voters);
            net.random_proposal(index);
        }
        if rng.random_range(0..100u32) >= fault_pct {
            continue;
        }
        match rng.random_range(0..11u32) {
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
                // (sometimes isolate one node completely). One-way cuts
                // left from before are healed first.
                net.heal();
                let mut order: Vec<usize> = (0..voters).collect();
                for i in (1..order.len()).rev() {
                    let j = rng.random_range(0..=i);
                    order.swap(i, j);
                }
                let minority_len = rng.random_range(1..=(voters - 1) / 2);
                let minority: Vec<usize> = order[..minority_len].to_vec();
                let majority: Vec<usize> = order[minority_len..].to_vec();
                if rng.random_range(0..2u32) == 0 {
                    net.split(vec![minority.clone(), majority.clone()]);
                } else {
                    net.split(vec![majority.clone()]);
                }
                // Let the split take hold, then probe the minority side.
                let probe = minority[rng.random_range(0..minority.len())];
                net.run(rng.random_range(0..30));
                net.propose_minority_probe(probe);
                report.probes += 1;
                // Forget-down of a non-voter on the minority: never commits.
                let doomed = removable(&net, probe);
                if net
                    .propose_on_minority(probe, Command::Remove { member: doomed })
                    .is_some()
                {
                    report.minority_removes += 1;
                }
                // The same on the majority: commits within a bound, when the
                // majority side holds a quorum of working voters.
                let working = majority
                    .iter()
                    .filter(|&&i| net.is_running(i) && !wiped.contains(&i))
                    .count();
                if working > voters / 2 {
                    majority_remove_commits(&mut net, &majority, &mut report);
                }
            }
            8 => {
                // One-way link cuts: some frames from `a` to `b` vanish
                // while `b` still reaches `a`.
                for _ in 0..rng.random_range(1..=voters) {
                    let a = rng.random_range(0..voters);
                    let b = rng.random_range(0..voters);
                    if a != b {
                        net.cut_one_way(a, b);
                        report.one_way_cuts += 1;
                    }
                }
            }
            9 if !wiped.is_empty() => {
                // A wiped voter, by now a non-voter member or asking to be
                // one, loses its data again: a wiped non-voter.
                let index = wiped[rng.random_range(0..wiped.len())];
                net.wipe(index);
                report.rewiped += 1;
            }
            10 if late.len() < 2 => {
                let k = late.len();
                let member = MemberId::new(&*format!("late-{k}"), 1);
                let info = fixture_info(200 + k);
                net.propose(
                    rng.random_range(0..voters),
                    Command::Join {
                        member: member.clone(),
                        info: info.clone(),
                    },
                );
                late.push((member, info));
                report.late_joins += 1;
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
    let mut late_pending = late.clone();
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
                // The workload may have removed a late joiner: it asks again.
                late_pending.retain(|(member, info)| {
                    let joined = net.nodes[leader]
                        .controller
                        .as_ref()
                        .is_some_and(|c| c.config().is_member(member));
                    if !joined {
                        let command = Command::Join {
                            member: member.clone(),
                            info: info.clone(),
                        };
                        net.propose(leader, command);
                    }
                    !joined
                });
            }
        }
        if joins_pending.is_empty() && late_pending.is_empty() && net.converged() {
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

/// A member node `index` may forget: a non-voter of its configuration,
/// else a name it does not know (then the `Remove` commits as rejected,
/// which still must not happen on a minority).
fn removable(net: &TestNet, index: usize) -> MemberId {
    net.nodes[index]
        .controller
        .as_ref()
        .and_then(|c| {
            c.config()
                .members()
                .find(|m| !m.voter)
                .map(|m| m.id.clone())
        })
        .unwrap_or_else(|| MemberId::new("ghost", 1))
}

/// Ticks the majority side gets to commit a `Remove` while the split lasts.
const MAJORITY_COMMIT_TICKS: u64 = 400;

/// The majority side of a split (holding a quorum of working voters)
/// commits a forget-down: proposed on its leader, again every 40 ticks (a
/// proposal can be lost to a leader change), it must be applied on a
/// majority-side node within [`MAJORITY_COMMIT_TICKS`].
fn majority_remove_commits(net: &mut TestNet, majority: &[usize], report: &mut SwarmReport) {
    let mut tags = Vec::new();
    for tick in 0..MAJORITY_COMMIT_TICKS {
        if tick % 40 == 0 {
            let leader = majority
                .iter()
                .copied()
                .filter(|&i| {
                    net.nodes[i]
                        .controller
                        .as_ref()
                        .is_some_and(|c| c.is_leader())
                })
                .max_by_key(|&i| net.nodes[i].controller.as_ref().map(|c| c.term()));
            if let Some(leader) = leader {
                let member = removable(net, leader);
                tags.extend(net.propose(leader, Command::Remove { member }));
            }
        }
        net.tick();
        let committed = majority
            .iter()
            .any(|&i| tags.iter().any(|t| net.nodes[i].applied_at.contains_key(t)));
        if committed {
            report.majority_removes += 1;
            return;
        }
    }
    let now = net.now;
    net.violations.push(format!(
        "tick {now}: the majority {majority:?} committed no Remove within {MAJORITY_COMMIT_TICKS} ticks"
    ));
}
