//! The sans-io membership driven through the simulated network: joining,
//! failure detection, graceful leave, restarts, refusal of incompatible
//! nodes, garbage input, determinism.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eddy_cluster::sim::{SimConfig, Simulation, TraceEntry, measure};
use eddy_cluster::testing::identity;
use eddy_cluster::{
    Incompatible, MemberStatus, Membership, MembershipConfig, MembershipError, MembershipEvent,
    NodeIdentity, PROTOCOL_VERSION, PartitionTable,
};
use eddy_core::Timestamp;
use proptest::prelude::*;

fn converged_sim(nodes: usize, seed: u64) -> Simulation {
    let mut config = SimConfig::lan(nodes, seed);
    config.record_trace = true;
    let mut sim = Simulation::new(config).unwrap();
    sim.join_all_via(0);
    let at = sim.run_until_true(Timestamp(60_000), Simulation::converged);
    assert!(
        at.is_some(),
        "{nodes} nodes did not converge in 60 s (seed {seed})"
    );
    sim
}

#[test]
fn three_nodes_converge_and_detect_a_kill_within_two_and_a_half_seconds() {
    for seed in 1..=10 {
        let mut sim = converged_sim(3, seed);
        let victim = sim.node(2).unwrap().identity().clone();
        let killed_at = sim.now();
        sim.kill(2);
        let down_at = sim
            .run_until_true(killed_at.plus_ms(10_000), |s| s.all_see_down(&victim))
            .expect("victim declared down");
        let detection_ms = down_at.millis_since(killed_at);
        // Suspicion is surfaced before the verdict (foca has no notification
        // for it; the view mirrors it).
        let suspected = sim
            .trace()
            .iter()
            .any(|t| t.at >= killed_at && t.event == MembershipEvent::Suspect(victim.clone()));
        assert!(suspected, "seed {seed}: no Suspect event for the victim");
        // DESIGN §6 measured 1.6–1.95 s on loopback with these timings; over
        // 40 seeds the simulator gives 1.6–2.3 s (median 1.8 s): up to two
        // periods until a survivor probes the victim, one to conclude the
        // probe failed, then suspect_to_down_after (1 s).
        assert!(
            (1_500..=2_500).contains(&detection_ms),
            "seed {seed}: detection took {detection_ms} ms"
        );
    }
}

#[test]
fn every_node_computes_the_same_partition_table() {
    let sim = converged_sim(7, 3);
    let fingerprints: Vec<u64> = (0..sim.len())
        .map(|i| {
            let live = sim.node(i).unwrap().view().live_nodes();
            assert_eq!(live.len(), 7);
            PartitionTable::compute(&live, 1024, 3).fingerprint()
        })
        .collect();
    assert!(
        fingerprints.windows(2).all(|w| w[0] == w[1]),
        "{fingerprints:?}"
    );
}

#[test]
fn view_carries_metadata_of_members_that_joined_later() {
    // The late joiner's addresses reach even the first node: they travel in
    // the identity, not in a custom broadcast sent only a few times.
    let sim = converged_sim(12, 5);
    let late = sim.node(11).unwrap().identity().clone();
    let seen = sim.node(1).unwrap().view().get(&late.name).unwrap();
    assert_eq!(seen.identity.http_addr, late.http_addr);
    assert_eq!(seen.identity.peer_addr, late.peer_addr);
    assert_eq!(seen.identity.tcp_addr, late.tcp_addr);
}

#[test]
fn graceful_leave_is_seen_before_failure_detection_could() {
    let mut sim = converged_sim(5, 7);
    let leaver = sim.node(4).unwrap().identity().clone();
    let left_at = sim.now();
    sim.leave(4);
    let down_at = sim
        .run_until_true(left_at.plus_ms(10_000), |s| s.all_see_down(&leaver))
        .expect("leaver declared down");
    assert!(
        down_at.millis_since(left_at) < 1_000,
        "leave took {} ms",
        down_at.millis_since(left_at)
    );
}

#[test]
fn restarted_node_rejoins_under_a_new_generation() {
    let mut sim = converged_sim(4, 11);
    let old = sim.node(3).unwrap().identity().clone();
    sim.kill(3);
    sim.run_until_true(sim.now().plus_ms(10_000), |s| s.all_see_down(&old))
        .expect("old generation down");
    let new = NodeIdentity {
        generation: old.generation + 1,
        ..old.clone()
    };
    sim.restart(3, new.clone()).unwrap();
    sim.join(3, 0);
    sim.run_until_true(sim.now().plus_ms(10_000), Simulation::converged)
        .expect("restarted node converges");
    for observer in 0..3 {
        let entry = sim.node(observer).unwrap().view().get(&new.name).unwrap();
        assert_eq!(entry.identity.generation, new.generation);
        assert_eq!(entry.status, MemberStatus::Up);
    }
}

#[test]
fn restart_without_waiting_for_down_replaces_the_old_generation() {
    // The restarted process announces before anyone noticed the crash: foca
    // resolves the address conflict in favour of the higher generation.
    let mut sim = converged_sim(4, 13);
    let old = sim.node(2).unwrap().identity().clone();
    let new = NodeIdentity {
        generation: old.generation + 5,
        ..old.clone()
    };
    sim.restart(2, new.clone()).unwrap();
    sim.join(2, 0);
    let done = sim.run_until_true(sim.now().plus_ms(10_000), |s| {
        (0..4).all(|i| {
            s.node(i)
                .unwrap()
                .view()
                .get(&new.name)
                .is_some_and(|e| e.identity == new && e.status == MemberStatus::Up)
        }) && s.converged()
    });
    assert!(done.is_some(), "every node adopted the new generation");
}

fn refused_events(trace: &[TraceEntry], node: usize) -> Vec<(NodeIdentity, Incompatible)> {
    trace
        .iter()
        .filter(|t| t.node == node)
        .filter_map(|t| match &t.event {
            MembershipEvent::Refused { identity, reason } => {
                Some((identity.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn node_with_another_partition_count_is_refused_once_with_the_reason() {
    let stranger = NodeIdentity {
        partitions: 512,
        ..identity("stranger", 1)
    };
    let mut config = SimConfig::lan(2, 1);
    config.record_trace = true;
    let mut sim =
        Simulation::with_identities(config, vec![identity("node-0", 0), stranger.clone()]).unwrap();
    // It keeps knocking: unanswered, it re-announces every second.
    sim.join(1, 0);
    sim.run_until(Timestamp(10_000));
    assert!(sim.stats().sent >= 10, "the stranger retried");
    let refused = refused_events(sim.trace(), 0);
    assert_eq!(
        refused,
        vec![(
            stranger.clone(),
            Incompatible::Partitions {
                theirs: 512,
                ours: 1024
            }
        )],
        "reported once, with the reason"
    );
    assert_eq!(
        sim.node(0).unwrap().view().len(),
        1,
        "never entered the view"
    );
    assert_eq!(
        sim.node(1).unwrap().view().len(),
        1,
        "it was never answered"
    );
    assert_eq!(
        refused[0].1.to_string(),
        "partition count 512 differs from ours (1024)"
    );
}

#[test]
fn node_with_another_protocol_version_is_refused() {
    let future = NodeIdentity {
        protocol: PROTOCOL_VERSION + 1,
        ..identity("future", 1)
    };
    let mut config = SimConfig::lan(2, 2);
    config.record_trace = true;
    let mut sim =
        Simulation::with_identities(config, vec![identity("node-0", 0), future.clone()]).unwrap();
    sim.join(1, 0);
    sim.run_until(Timestamp(5_000));
    let refused = refused_events(sim.trace(), 0);
    assert_eq!(refused.len(), 1);
    assert!(
        matches!(refused[0].1, Incompatible::Protocol { theirs, ours }
        if theirs == PROTOCOL_VERSION + 1 && ours == PROTOCOL_VERSION)
    );
    assert_eq!(sim.node(0).unwrap().view().len(), 1);
}

#[test]
fn a_peer_claiming_our_name_is_refused() {
    let impostor = identity("node-0", 1); // same name, other address
    let mut config = SimConfig::lan(3, 4);
    config.record_trace = true;
    let mut sim = Simulation::with_identities(
        config,
        vec![identity("node-0", 0), impostor, identity("node-2", 2)],
    )
    .unwrap();
    sim.join(1, 2);
    sim.join(0, 2);
    sim.run_until(Timestamp(10_000));
    let refused = refused_events(sim.trace(), 0);
    assert!(
        refused
            .iter()
            .any(|(_, r)| matches!(r, Incompatible::DuplicateName(n) if n.as_str() == "node-0")),
        "{refused:?}"
    );
    assert!(
        sim.node(0)
            .unwrap()
            .view()
            .iter()
            .all(|e| e.identity.gossip_addr != identity("x", 1).gossip_addr),
        "the impostor never entered node-0's view"
    );
}

#[test]
fn same_seed_gives_the_same_event_trace() {
    let run = |seed| {
        let mut config = SimConfig::lan(10, seed);
        config.loss_ppm = 50_000; // 5 % loss exercises the network's RNG too
        config.record_trace = true;
        let mut sim = Simulation::new(config).unwrap();
        sim.join_all_via(0);
        sim.run_until(Timestamp(5_000));
        sim.kill(9);
        sim.run_until(Timestamp(10_000));
        (sim.trace().to_vec(), sim.stats())
    };
    let (first, first_stats) = run(42);
    let (second, second_stats) = run(42);
    assert!(first.len() > 50, "the scenario produced events");
    assert_eq!(first, second);
    assert_eq!(first_stats, second_stats);
    let (other, _) = run(43);
    assert_ne!(first, other, "the seed matters");
}

#[test]
fn lossy_network_still_converges() {
    for seed in 1..=3 {
        let mut config = SimConfig::lan(20, seed);
        config.loss_ppm = 50_000; // 5 %, announces and feeds included
        let mut sim = Simulation::new(config).unwrap();
        sim.join_all_via(0);
        let at = sim.run_until_true(Timestamp(30_000), Simulation::converged);
        assert!(
            at.is_some(),
            "seed {seed}: 20 nodes with 5 % loss did not converge in 30 s"
        );
    }
}

/// Runs until every view agrees (at most 60 s); how long that took.
fn ms_to_converge(sim: &mut Simulation) -> Option<u64> {
    let from = sim.now().0;
    sim.run_until_true(Timestamp(from + 60_000), Simulation::converged)
        .map(|at| at.0 - from)
}

#[test]
fn a_flaky_spell_heals_within_seconds_even_when_rejoins_are_lost() {
    // Heavy loss makes members declare each other down; each then rejoins
    // under a new generation, and its announce can be lost too. Once the
    // network heals, views must agree within seconds, not after the minute
    // of the periodic announce to down members (found by eddy-chaos
    // `partitions`: 53 s).
    for seed in 1..=12 {
        let mut sim = converged_sim(3, seed);
        // Every node has a seed, as in a deployment.
        sim.join(0, 1);
        let start = sim.now().0;
        sim.set_loss_ppm(400_000);
        sim.run_until(Timestamp(start + 20_000));
        sim.set_loss_ppm(0);
        let took = ms_to_converge(&mut sim);
        assert!(
            took.is_some_and(|ms| ms <= 5_000),
            "seed {seed}: converged {took:?} ms after the loss stopped"
        );
    }
}

#[test]
fn both_sides_of_a_healed_split_find_each_other_within_seconds() {
    // Five nodes split 2/3: each side declares the other down and carries
    // on. Neither side is alone, so neither retries its seeds; only the
    // announce to down members reconnects them (found by eddy-chaos
    // `split-brain`: 25 s and more with it every 65 s).
    for seed in 1..=6 {
        let mut sim = converged_sim(5, seed);
        let start = sim.now().0;
        sim.split(&[0, 1]);
        sim.run_until(Timestamp(start + 8_000));
        assert!(!sim.converged(), "seed {seed}: the split was felt");
        sim.split(&[]);
        let took = ms_to_converge(&mut sim);
        assert!(
            took.is_some_and(|ms| ms <= 8_000),
            "seed {seed}: converged {took:?} ms after the split healed"
        );
    }
}

#[test]
fn a_node_cut_off_from_everyone_does_not_declare_the_others_down_when_it_returns() {
    // Node 4 is isolated long enough to declare every other node down, then
    // the network heals. The downs it declared while nobody heard it are
    // stale: spread at the heal, they made every node of the majority
    // rejoin at once (eddy-chaos `five-nodes-rf3`, which then elected
    // partitions away from members that never failed).
    for seed in 1..=6 {
        let mut sim = converged_sim(5, seed);
        let start = sim.now().0;
        sim.split(&[4]);
        sim.run_until(Timestamp(start + 8_000));
        let isolated_at = sim.trace().len();
        sim.split(&[]);
        let took = ms_to_converge(&mut sim);
        assert!(
            took.is_some_and(|ms| ms <= 8_000),
            "seed {seed}: converged {took:?} ms after the heal"
        );
        let majority: Vec<NodeIdentity> = (0..4)
            .map(|i| sim.node(i).unwrap().identity().clone())
            .collect();
        for entry in &sim.trace()[isolated_at..] {
            let flapped = match &entry.event {
                MembershipEvent::Down(id) => majority.iter().any(|m| m.name == id.name),
                MembershipEvent::Rejoined(_) => entry.node < 4,
                _ => false,
            };
            assert!(
                !flapped,
                "seed {seed}: after the heal node {} saw {:?}",
                entry.node, entry.event
            );
        }
    }
}

#[test]
fn join_retries_until_a_seed_answers() {
    // The seed boots three seconds after the joiner.
    let mut sim = Simulation::new(SimConfig::lan(2, 21)).unwrap();
    let seed = sim.node(0).unwrap().identity().clone();
    sim.kill(0);
    sim.join(1, 0);
    sim.run_until(Timestamp(3_000));
    assert_eq!(sim.node(1).unwrap().view().len(), 1);
    sim.restart(0, seed).unwrap();
    let at = sim.run_until_true(Timestamp(6_000), Simulation::converged);
    assert!(at.is_some(), "the joiner's retry reached the late seed");
}

#[test]
fn small_clusters_scale_within_bounds() {
    for nodes in [10, 50] {
        let report = measure(SimConfig::lan(nodes, 1), 10, 200).unwrap();
        let convergence = report.convergence_periods.expect("converged");
        let detection = report.detection_periods.expect("detected");
        assert!(convergence <= 20.0, "{report:?}");
        assert!(detection <= 8.0, "{report:?}");
        assert!(report.steady_msgs_per_member_period <= 4.0, "{report:?}");
    }
}

fn fresh_member() -> Membership {
    Membership::new(
        identity("node-0", 0),
        &MembershipConfig::default(),
        Timestamp(0),
    )
    .unwrap()
}

/// A real datagram: `node-1` announcing to `node-0`.
fn announce_bytes() -> Vec<u8> {
    let mut joiner = Membership::new(
        identity("node-1", 1),
        &MembershipConfig::default(),
        Timestamp(0),
    )
    .unwrap();
    // Our own address in the seed list is skipped: one list serves all nodes.
    let seeds = [
        identity("node-1", 1).gossip_addr,
        identity("node-0", 0).gossip_addr,
    ];
    joiner.join(&seeds, Timestamp(0)).unwrap();
    assert_eq!(
        joiner.drain_timers().count(),
        1,
        "a join retry is scheduled"
    );
    joiner.drain_datagrams().next().unwrap().bytes
}

#[test]
fn a_real_announce_is_accepted_and_answered() {
    let mut member = fresh_member();
    member
        .handle_datagram(&announce_bytes(), Timestamp(1))
        .unwrap();
    assert_eq!(member.view().len(), 2);
    let replies: Vec<_> = member.drain_datagrams().collect();
    assert_eq!(replies.len(), 1, "a feed back to the joiner");
    assert_eq!(replies[0].to, identity("node-1", 1).gossip_addr);
}

#[test]
fn oversized_and_foreign_datagrams_are_typed_errors() {
    let mut member = fresh_member();
    assert!(matches!(
        member.handle_datagram(&vec![0u8; 1401], Timestamp(1)),
        Err(MembershipError::DatagramTooBig {
            len: 1401,
            max: 1400
        })
    ));
    assert!(matches!(
        member.handle_datagram(&[], Timestamp(1)),
        Err(MembershipError::Malformed(_))
    ));
    // Starts with another protocol version; the rest does not decode.
    assert!(matches!(
        member.handle_datagram(&[9, 0xff, 0xff], Timestamp(1)),
        Err(MembershipError::Protocol {
            theirs: 9,
            ours: PROTOCOL_VERSION
        })
    ));
    assert_eq!(member.view().version(), 0);
    assert_eq!(member.backlog(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic, never change the view and never make the
    /// node send anything.
    #[test]
    fn garbage_is_dropped_without_harm(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        let mut member = fresh_member();
        let _ = member.handle_datagram(&bytes, Timestamp(1));
        prop_assert_eq!(member.view().version(), 0);
        prop_assert_eq!(member.drain_datagrams().count(), 0);
    }

    /// A real datagram with bytes flipped or cut never panics.
    #[test]
    fn corrupted_datagrams_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = announce_bytes();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        let mut member = fresh_member();
        let _ = member.handle_datagram(&bytes, Timestamp(1));
        let len = cut.index(bytes.len());
        let _ = member.handle_datagram(&bytes[..len], Timestamp(2));
        // Whatever was accepted, the outputs are drainable and bounded.
        prop_assert!(member.drain_datagrams().count() <= 2);
    }
}
