//! The controllers on the seeded test network: safety across many seeds of
//! random faults, liveness after healing, and the scenarios the issue names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eddy_control::testing::{NetConfig, SwarmConfig, TestNet, run_swarm};
use eddy_control::{Command, ControllerSettings, InjectedBug, MemberId};
use eddy_core::{Epoch, PartitionId};

/// Seeds to run: 500 by default, more with `EDDY_CONTROL_SEEDS`.
fn seed_count() -> u64 {
    std::env::var("EDDY_CONTROL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

/// Runs until a leader exists (bounded), returning it.
fn elect(net: &mut TestNet) -> usize {
    for _ in 0..500 {
        if let Some(leader) = net.leader() {
            return leader;
        }
        net.tick();
    }
    panic!("no leader within 500 ticks");
}

/// Runs until the network converged (bounded).
fn converge(net: &mut TestNet) {
    for _ in 0..1000 {
        if net.converged() {
            return;
        }
        net.tick();
    }
    panic!("no convergence within 1000 ticks");
}

fn elect_command(net: &TestNet, leader: usize, partition: u32) -> Command {
    let config = net.nodes()[leader].controller.as_ref().unwrap().config();
    let epoch = config.assignment(PartitionId(partition)).unwrap().epoch;
    Command::Elect {
        partition: PartitionId(partition),
        owner: net.nodes()[leader].member.clone(),
        epoch: Epoch(epoch.0 + 1),
    }
}

#[test]
fn swarm_seeds_are_safe_and_converge() {
    let swarm = SwarmConfig::default();
    let mut failures = Vec::new();
    let mut probes = 0;
    let mut wiped = 0;
    for seed in 0..seed_count() {
        match run_swarm(seed, &swarm) {
            Ok(report) => {
                probes += report.probes;
                wiped += report.wiped;
            }
            Err(failure) => failures.push(failure),
        }
    }
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The fault mix really exercised minority proposals and wipes.
    assert!(probes > 100, "only {probes} minority probes");
    assert!(wiped > 20, "only {wiped} wipes");
}

/// The checker is not vacuous: a controller that applies entries before
/// they commit breaks state machine safety on some seed, and it is caught.
#[test]
fn the_checker_catches_applying_uncommitted_entries() {
    let swarm = SwarmConfig {
        settings: ControllerSettings {
            injected_bug: InjectedBug::ApplyUncommitted,
            ..ControllerSettings::default()
        },
        ..SwarmConfig::default()
    };
    // A safety finding, not merely a failure to converge afterwards.
    let safety = |failure: &String| {
        failure.contains("holds another configuration") || failure.contains("where another applied")
    };
    let caught = (0..200).find_map(|seed| run_swarm(seed, &swarm).err().filter(safety));
    assert!(caught.is_some(), "no seed of 200 caught the injected bug");
}

/// The persist-then-send check is not vacuous either: a controller that
/// hands out its persist effects one input late is caught sending a vote or
/// an append acknowledgement before it is durable.
#[test]
fn the_checker_catches_sending_before_persisting() {
    let swarm = SwarmConfig {
        settings: ControllerSettings {
            injected_bug: InjectedBug::PersistLate,
            ..ControllerSettings::default()
        },
        ..SwarmConfig::default()
    };
    let caught = (0..50).find_map(|seed| {
        run_swarm(seed, &swarm)
            .err()
            .filter(|f| f.contains("before persisting") || f.contains("durable"))
    });
    assert!(caught.is_some(), "no seed of 50 caught the injected bug");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let mut net = TestNet::new(
            seed,
            NetConfig {
                voters: 5,
                loss_ppm: 50_000,
                max_delay_ticks: 3,
                ..NetConfig::default()
            },
        );
        let mut trace = Vec::new();
        for tick in 0..400 {
            net.tick();
            if tick % 7 == 0 {
                net.random_proposal(tick as usize % 5);
            }
            trace.push((
                net.leader(),
                net.nodes()
                    .iter()
                    .map(|n| n.applied.len())
                    .collect::<Vec<_>>(),
            ));
        }
        trace
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12), "different seeds should differ somewhere");
}

/// Forget-down from a minority is impossible: a `Remove` proposed on the
/// side of an old leader cut off with one follower (2 of 5) never commits
/// there, while the majority elects a leader and commits its own changes;
/// after healing the minority adopts the majority's log.
#[test]
fn a_minority_cannot_commit() {
    let mut net = TestNet::new(
        3,
        NetConfig {
            voters: 5,
            ..NetConfig::default()
        },
    );
    let leader = elect(&mut net);
    let extra = MemberId::new("extra", 1);
    net.propose(
        leader,
        Command::Join {
            member: extra.clone(),
            info: eddy_control::testing::fixture_info(50),
        },
    );
    net.run(20);
    converge(&mut net);
    assert!(
        net.nodes()[leader]
            .controller
            .as_ref()
            .unwrap()
            .config()
            .is_member(&extra)
    );
    let follower = (leader + 1) % 5;
    let majority: Vec<usize> = (0..5).filter(|i| *i != leader && *i != follower).collect();
    net.split(vec![vec![leader, follower], majority.clone()]);
    assert!(
        net.propose(
            leader,
            Command::Remove {
                member: extra.clone()
            }
        )
        .is_some()
    );
    net.run(200);
    for index in [leader, follower] {
        let config = net.nodes()[index].controller.as_ref().unwrap().config();
        assert!(config.is_member(&extra), "the minority removed a member");
    }
    let new_leader = net.leader().unwrap();
    assert!(
        majority.contains(&new_leader),
        "the majority elected a leader"
    );
    let command = elect_command(&net, new_leader, 0);
    net.propose(new_leader, command);
    net.run(50);
    let owner = |net: &TestNet, i: usize| {
        net.nodes()[i]
            .controller
            .as_ref()
            .unwrap()
            .config()
            .assignment(PartitionId(0))
            .unwrap()
            .owner
            .clone()
    };
    assert!(owner(&net, majority[0]).is_some(), "the majority commits");
    net.heal();
    converge(&mut net);
    for index in 0..5 {
        assert!(
            net.nodes()[index]
                .controller
                .as_ref()
                .unwrap()
                .config()
                .is_member(&extra)
        );
        assert!(owner(&net, index).is_some());
    }
    assert_eq!(net.violations(), &[] as &[String]);
}

/// A whole-cluster crash loses nothing committed: every voter restarts from
/// its disk (with the log compacted into snapshots along the way) and the
/// configuration comes back identical.
#[test]
fn crash_and_restart_from_disk_keeps_the_configuration() {
    let settings = ControllerSettings {
        compact_after_entries: 8,
        ..ControllerSettings::default()
    };
    let mut net = TestNet::new(
        5,
        NetConfig {
            voters: 3,
            settings,
            ..NetConfig::default()
        },
    );
    let leader = elect(&mut net);
    for partition in 0..16 {
        let command = elect_command(&net, leader, partition);
        net.propose(leader, command);
        net.run(3);
    }
    converge(&mut net);
    let before = net.nodes()[leader]
        .controller
        .as_ref()
        .unwrap()
        .config()
        .clone();
    assert!(before.assignments().iter().all(|a| a.owner.is_some()));
    assert!(
        net.nodes().iter().all(|n| n.disk.snapshot.index > 0),
        "the log was compacted"
    );
    for index in 0..3 {
        net.crash(index);
    }
    net.run(30);
    for index in 0..3 {
        net.restart(index);
    }
    converge(&mut net);
    for node in net.nodes() {
        assert_eq!(node.controller.as_ref().unwrap().config(), &before);
    }
    assert_eq!(net.violations(), &[] as &[String]);
}

/// A follower that was down while the log was compacted catches up from
/// the leader's snapshot.
/// Three voters with a short log; one was down while 16 elections
/// committed, so the leader compacted past it. Returns it, not restarted.
fn lagging_voter() -> (TestNet, usize) {
    let settings = ControllerSettings {
        compact_after_entries: 4,
        ..ControllerSettings::default()
    };
    let mut net = TestNet::new(
        8,
        NetConfig {
            voters: 3,
            settings,
            ..NetConfig::default()
        },
    );
    let leader = elect(&mut net);
    let lagging = (leader + 1) % 3;
    net.crash(lagging);
    for partition in 0..16 {
        let command = elect_command(&net, leader, partition);
        net.propose(leader, command);
        net.run(3);
    }
    (net, lagging)
}

#[test]
fn a_lagging_voter_catches_up_from_a_snapshot() {
    let (mut net, lagging) = lagging_voter();
    net.restart(lagging);
    converge(&mut net);
    let node = &net.nodes()[lagging];
    assert!(node.disk.snapshot.index > 0, "installed a snapshot");
    assert!(
        node.controller
            .as_ref()
            .unwrap()
            .config()
            .assignments()
            .iter()
            .all(|a| a.owner.is_some())
    );
    assert_eq!(net.violations(), &[] as &[String]);
}

/// A snapshot frame lost on the way (the follower was paused, its queue
/// full, the link broke) is sent again: raft-rs itself waits for the
/// follower's answer forever.
#[test]
fn a_lost_snapshot_is_sent_again() {
    let (mut net, lagging) = lagging_voter();
    net.drop_snapshots_to(lagging, 2);
    net.restart(lagging);
    converge(&mut net);
    assert!(
        net.nodes()[lagging].disk.snapshot.index > 0,
        "installed a snapshot"
    );
    assert_eq!(net.violations(), &[] as &[String]);
}

/// A voter that lost its data comes back as a new incarnation: never a
/// voter, never speaking under its old Raft id, a member only once its
/// `Join` committed — which drops its old incarnation from every ISR.
#[test]
fn a_wiped_voter_rejoins_as_a_new_non_voting_member() {
    let mut net = TestNet::new(
        21,
        NetConfig {
            voters: 3,
            ..NetConfig::default()
        },
    );
    let leader = elect(&mut net);
    let victim = (leader + 1) % 3;
    let old = net.nodes()[victim].member.clone();
    // The victim owns partition 0, in sync with the leader.
    let config = net.nodes()[leader]
        .controller
        .as_ref()
        .unwrap()
        .config()
        .clone();
    net.propose(
        leader,
        Command::Elect {
            partition: PartitionId(0),
            owner: old.clone(),
            epoch: Epoch(1),
        },
    );
    net.run(10);
    let isr = vec![old.clone(), net.nodes()[leader].member.clone()];
    net.propose(
        leader,
        Command::SetIsr {
            partition: PartitionId(0),
            epoch: Epoch(1),
            version: 1,
            isr,
        },
    );
    net.run(10);
    let new = net.wipe(victim).unwrap();
    assert_ne!(new.raft_id(), old.raft_id());
    net.run(50);
    assert!(!config.is_member(&new));
    net.request_join(victim, net.leader().unwrap()).unwrap();
    net.run(50);
    let leader = net.leader().unwrap();
    let config = net.nodes()[leader]
        .controller
        .as_ref()
        .unwrap()
        .config()
        .clone();
    let member = config.member_named(&new.name).unwrap();
    assert_eq!(member.id, new);
    assert!(!member.voter);
    let a = config.assignment(PartitionId(0)).unwrap();
    assert_eq!(
        (a.owner.clone(), a.isr.clone()),
        (None, vec![net.nodes()[leader].member.clone()])
    );
    // The two remaining voters still commit (2 of the 3 Raft voters).
    let command = Command::Elect {
        partition: PartitionId(0),
        owner: net.nodes()[leader].member.clone(),
        epoch: Epoch(2),
    };
    net.propose(leader, command);
    net.run(20);
    assert!(
        net.nodes()[leader]
            .controller
            .as_ref()
            .unwrap()
            .config()
            .assignment(PartitionId(0))
            .unwrap()
            .owner
            .is_some()
    );
    assert_eq!(net.violations(), &[] as &[String]);
}

/// A 1-voter cluster is deliberate and works alone.
#[test]
fn a_single_voter_cluster_commits_alone() {
    let mut net = TestNet::new(
        1,
        NetConfig {
            voters: 1,
            ..NetConfig::default()
        },
    );
    net.campaign(0);
    let leader = elect(&mut net);
    assert_eq!(leader, 0);
    let command = elect_command(&net, 0, 3);
    net.propose(0, command);
    net.run(2);
    assert!(
        net.nodes()[0]
            .controller
            .as_ref()
            .unwrap()
            .config()
            .assignment(PartitionId(3))
            .unwrap()
            .owner
            .is_some()
    );
}

/// The minority check is not vacuous: a proposal registered as made on a
/// minority that is in fact made on the majority's leader commits during
/// the split, and the checker reports it.
#[test]
fn the_checker_catches_a_commit_during_the_split() {
    let mut net = TestNet::new(
        4,
        NetConfig {
            voters: 3,
            ..NetConfig::default()
        },
    );
    let leader = elect(&mut net);
    let follower = (leader + 1) % 3;
    let alone = (leader + 2) % 3;
    net.split(vec![vec![leader, follower], vec![alone]]);
    let ghost = MemberId::new("ghost", 1);
    assert!(
        net.propose_on_minority(leader, Command::Remove { member: ghost })
            .is_some()
    );
    net.run(30);
    assert!(
        net.violations()
            .iter()
            .any(|v| v.contains("proposed on a minority, during its split")),
        "{:?}",
        net.violations()
    );
}

/// One-way cuts: a leader whose frames reach nobody (while it still hears
/// everyone) loses its quorum; the others elect a leader and commit, and
/// after healing everyone converges on their log.
#[test]
fn a_leader_nobody_hears_is_replaced() {
    let mut net = TestNet::new(
        6,
        NetConfig {
            voters: 3,
            ..NetConfig::default()
        },
    );
    let old = elect(&mut net);
    for other in (0..3).filter(|&i| i != old) {
        net.cut_one_way(old, other);
        assert!(net.connected(other, old), "the other direction still works");
    }
    let mut new = None;
    for _ in 0..300 {
        net.tick();
        new = (0..3).find(|&i| i != old && net.nodes()[i].controller.as_ref().unwrap().is_leader());
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the nodes that cannot hear the old leader elect another");
    let command = elect_command(&net, new, 1);
    net.propose(new, command);
    net.run(30);
    let owner = |net: &TestNet, i: usize| {
        net.nodes()[i]
            .controller
            .as_ref()
            .unwrap()
            .config()
            .assignment(PartitionId(1))
            .unwrap()
            .owner
            .clone()
    };
    assert!(owner(&net, new).is_some(), "the new leader commits");
    net.heal();
    converge(&mut net);
    assert!(owner(&net, old).is_some(), "the old leader caught up");
    assert_eq!(net.violations(), &[] as &[String]);
}
