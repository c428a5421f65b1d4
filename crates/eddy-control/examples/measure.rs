//! Prints the controller's figures on the seeded test network (benchmarks
//! print, tests assert — STYLE §12): ticks to elect a first leader, ticks to
//! replace a crashed leader, commit latency in ticks with no faults, and the
//! CPU cost of the real controllers (whole network, one thread).
//!
//! `cargo run -p eddy-control --example measure --release [seeds]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eddy_control::Command;
use eddy_control::testing::{NetConfig, TestNet};
use eddy_core::{Epoch, PartitionId};

fn summary(name: &str, mut values: Vec<u64>) {
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<44} n={:<4} min={:<3} p50={:<3} p90={:<3} p99={:<3} max={}",
        values.len(),
        values[0],
        at(0.5),
        at(0.9),
        at(0.99),
        values[values.len() - 1]
    );
}

fn until_leader(net: &mut TestNet, limit: u64) -> Option<u64> {
    let start = net.now();
    while net.now() - start < limit {
        if net.leader().is_some() {
            return Some(net.now() - start);
        }
        net.tick();
    }
    None
}

/// Wall time of the whole in-process network: idle ticks, and proposals
/// committed per second when the leader gets `batch` proposals every tick.
fn cost(voters: usize) {
    let mut net = TestNet::new(
        1,
        NetConfig {
            voters,
            ..NetConfig::default()
        },
    );
    until_leader(&mut net, 1000).expect("a leader");
    let start = std::time::Instant::now();
    net.run(10_000);
    let idle_us = start.elapsed().as_secs_f64() * 1e6 / 10_000.0;
    let leader = net.leader().unwrap();
    let owner = net.nodes()[leader].member.clone();
    let batch = 50;
    let ticks = 200;
    let start = std::time::Instant::now();
    for _ in 0..ticks {
        for _ in 0..batch {
            // Rejected after the first (wrong epoch), but committed all the same.
            let command = Command::Elect {
                partition: PartitionId(0),
                owner: owner.clone(),
                epoch: Epoch(1),
            };
            net.propose(leader, command).unwrap();
        }
        net.tick();
    }
    net.run(10);
    let elapsed = start.elapsed().as_secs_f64();
    let committed = net.nodes()[leader].applied.len();
    println!(
        "{voters} voters: {idle_us:.1} µs per idle network tick; {:.0} commands committed per second \
         ({committed} in {elapsed:.2} s, {batch} per tick, all voters applying)",
        committed as f64 / elapsed
    );
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for voters in [3, 5] {
        cost(voters);
    }
    for voters in [3, 5] {
        for delay in [0, 2] {
            let config = NetConfig {
                voters,
                max_delay_ticks: delay,
                ..NetConfig::default()
            };
            let label = format!("{voters} voters, delay 0..={delay} ticks");
            let mut first = Vec::new();
            let mut failover = Vec::new();
            let mut commit_leader = Vec::new();
            let mut commit_all = Vec::new();
            for seed in 0..seeds {
                let mut net = TestNet::new(seed, config.clone());
                first.push(until_leader(&mut net, 1000).expect("a leader"));
                net.run(5);
                // Commit latency: one proposal at a time on the leader.
                for partition in 0..8u32 {
                    let leader = net.leader().unwrap();
                    let owner = net.nodes()[leader].member.clone();
                    let command = Command::Elect {
                        partition: PartitionId(partition),
                        owner,
                        epoch: Epoch(1),
                    };
                    let proposed_at = net.now();
                    let tag = net.propose(leader, command).unwrap();
                    let mut leader_at = None;
                    for _ in 0..100 {
                        net.tick();
                        let at: Vec<Option<&u64>> =
                            net.nodes().iter().map(|n| n.applied_at.get(&tag)).collect();
                        if leader_at.is_none() {
                            leader_at = at[leader].copied();
                        }
                        if at.iter().all(Option::is_some) {
                            commit_all
                                .push(at.iter().map(|t| *t.unwrap()).max().unwrap() - proposed_at);
                            break;
                        }
                    }
                    commit_leader.push(leader_at.unwrap() - proposed_at);
                }
                // Failover: crash the leader, count ticks until another leads.
                let leader = net.leader().unwrap();
                net.crash(leader);
                failover.push(until_leader(&mut net, 1000).expect("a new leader"));
            }
            println!("{label}");
            summary("  ticks to the first leader", first);
            summary("  ticks to a new leader after a leader crash", failover);
            summary("  commit latency on the leader (ticks)", commit_leader);
            summary("  commit latency on every voter (ticks)", commit_all);
        }
    }
}
