//! The placement planner: which commands move the committed assignments
//! toward the ring placement, without ever electing outside an ISR.
//!
//! The target is the `eddy_cluster` ring over the committed members the
//! failure detector does not call down: a dead member's partitions get a
//! new replica among the others, so the replication factor is restored
//! (and a member back from the dead takes its share again once caught up).
//! A merely suspected member keeps its place, so a slow node does not move
//! partitions. Per partition, at most one command per call, in this order:
//!
//! 1. owner missing or not live → `Elect` a live ISR member (the first in
//!    ring order, else the first in ISR order) at epoch + 1; an owner that
//!    is draining (leaving gracefully) → `Elect` a live ISR member that is
//!    not, if there is one (it stays in the ISR as a backup until rule 5
//!    drops it, so no write needs it gone first); a never-owned
//!    partition first gets its live ring replicas as ISR (`SetIsr` at epoch
//!    0), then its first owner from them; a partition with no live ISR
//!    member gets nothing (it waits, or stays offline);
//! 2. ISR members not live beside a live owner → `SetIsr` without them (as
//!    Kafka's controller does on a broker's death: the owner holds every
//!    acknowledged write, so a smaller ISR loses nothing, and the owner
//!    need not wait out a dead backup on its next write) — but only while
//!    another live member stays beside the owner: the owner alone is left
//!    to the owner's own shrink, when a write needs it;
//! 3. ring replicas the data plane reports caught up but not yet in the ISR →
//!    `SetIsr` expanding it (the planner cannot know a copy is complete);
//! 4. the ring's owner is a live ISR member but not the owner → `Elect` it
//!    (handoff: expand first, then elect);
//! 5. the owner is the ring's owner and every ring replica is in the ISR →
//!    `SetIsr` dropping live members the ring no longer places there (dead
//!    ones are rule 2's).
//!
//! Commands are computed from one configuration; the caller proposes them
//! and plans again once they committed (a rejection just means the state
//! moved on).

use std::collections::BTreeSet;

use eddy_cluster::{DEFAULT_VNODES, NodeId, PartitionTable};
use eddy_core::{Epoch, PartitionId};

use crate::command::Command;
use crate::member::MemberId;
use crate::state::{Assignment, ClusterConfig};

/// The ring placement over `config`'s committed members that are `live`.
/// Costly (a ring of 512 points per member is sorted), so compute it once
/// per change of [`ring_members`] and pass it to [`plan`] (DESIGN §6: never
/// on the hot path).
pub fn target_table(config: &ClusterConfig, live: &BTreeSet<MemberId>) -> PartitionTable {
    target_table_with_vnodes(config, live, DEFAULT_VNODES)
}

/// The names the ring target is computed over: committed members that are
/// `live` and not draining, in the configuration's order.
pub fn ring_members(config: &ClusterConfig, live: &BTreeSet<MemberId>) -> Vec<NodeId> {
    config
        .staying_members()
        .filter(|m| live.contains(&m.id))
        .map(|m| m.id.name.clone())
        .collect()
}

/// [`target_table`] with another vnode count: every node of a cluster must
/// use the same one. Test workloads use few vnodes to plan cheaply.
pub fn target_table_with_vnodes(
    config: &ClusterConfig,
    live: &BTreeSet<MemberId>,
    vnodes: u32,
) -> PartitionTable {
    let names = ring_members(config, live);
    PartitionTable::compute_with_vnodes(
        &names,
        config.partitions(),
        usize::from(config.replication()),
        vnodes,
    )
}

/// The table nodes serve by under `config`: per partition its committed
/// owner, the rest of its ISR, then the ring replicas of `target` outside
/// the ISR (which the owner brings up to date so they can join it). A
/// partition without an owner has no replicas: nobody serves it.
pub fn serving_table(config: &ClusterConfig, target: &PartitionTable) -> PartitionTable {
    let sets: Vec<Vec<NodeId>> = config
        .assignments()
        .iter()
        .enumerate()
        .map(|(p, a)| {
            let Some(owner) = &a.owner else {
                return Vec::new();
            };
            let mut set = vec![owner.name.clone()];
            let partition = PartitionId(u32::try_from(p).unwrap_or(u32::MAX));
            for name in a
                .isr
                .iter()
                .map(|m| &m.name)
                .chain(target.replicas(partition))
            {
                if !set.contains(name) {
                    set.push(name.clone());
                }
            }
            set
        })
        .collect();
    PartitionTable::from_sets(config.partitions(), &sets)
}

/// The commands that move `config` toward the ring placement `table`
/// ([`target_table`] of the same live members), given the members the
/// failure detector sees `live` and the `(partition, member)` copies the data
/// plane reports `caught_up`.
pub fn plan(
    config: &ClusterConfig,
    table: &PartitionTable,
    live: &BTreeSet<MemberId>,
    caught_up: &BTreeSet<(PartitionId, MemberId)>,
) -> Vec<Command> {
    let mut commands = Vec::new();
    for (index, assignment) in config.assignments().iter().enumerate() {
        let partition = PartitionId(u32::try_from(index).unwrap_or(u32::MAX));
        let ring: Vec<MemberId> = table
            .replicas(partition)
            .filter_map(|name| config.member_named(name).map(|m| m.id.clone()))
            .collect();
        if let Some(owner) = assignment.owner.as_ref().filter(|o| config.is_draining(o))
            && live.contains(owner)
        {
            let staying = ring.iter().chain(&assignment.isr).find(|m| {
                live.contains(*m) && assignment.isr.contains(*m) && !config.is_draining(m)
            });
            if let Some(successor) = staying {
                commands.push(Command::Elect {
                    partition,
                    owner: successor.clone(),
                    epoch: Epoch(assignment.epoch.0.saturating_add(1)),
                });
                continue;
            }
        }
        if let Some(command) = plan_partition(partition, assignment, &ring, live, caught_up) {
            commands.push(command);
        }
    }
    commands
}

fn plan_partition(
    partition: PartitionId,
    assignment: &Assignment,
    ring: &[MemberId],
    live: &BTreeSet<MemberId>,
    caught_up: &BTreeSet<(PartitionId, MemberId)>,
) -> Option<Command> {
    let next = Epoch(assignment.epoch.0.saturating_add(1));
    let elect = |owner: &MemberId| Command::Elect {
        partition,
        owner: owner.clone(),
        epoch: next,
    };
    let owner = match &assignment.owner {
        Some(owner) if live.contains(owner) => owner,
        _ => {
            let first_isr_gone =
                assignment.epoch == Epoch(0) && !assignment.isr.iter().any(|m| live.contains(m));
            if assignment.isr.is_empty() || first_isr_gone {
                // Only a partition that never held data may start empty,
                // with its live ring replicas in sync from the start (so a
                // first owner that dies at once has a successor); a first
                // ISR that died before its first owner is named again.
                let isr: Vec<MemberId> =
                    ring.iter().filter(|m| live.contains(*m)).cloned().collect();
                return (assignment.epoch == Epoch(0) && !isr.is_empty()).then(|| {
                    Command::SetIsr {
                        partition,
                        epoch: assignment.epoch,
                        version: assignment.version,
                        isr,
                    }
                });
            }
            let in_ring_order = ring
                .iter()
                .find(|m| live.contains(*m) && assignment.isr.contains(*m));
            let in_isr_order = assignment.isr.iter().find(|m| live.contains(*m));
            return in_ring_order.or(in_isr_order).map(elect);
        }
    };
    // Dead members leave the ISR, but never down to the owner alone: its
    // last other copy may be the one to elect if the owner fails too (or
    // the only complete one, if the owner's is not), and it holds the
    // writes a `min_insync_replicas` above one refused to acknowledge
    // without it. A new ring replica joins first (on the owner's proposal);
    // then the dead one is dropped.
    let live_isr = assignment.isr.iter().filter(|m| live.contains(*m)).count();
    if live_isr < assignment.isr.len() && live_isr >= 2 {
        return Some(Command::SetIsr {
            partition,
            epoch: assignment.epoch,
            version: assignment.version,
            isr: assignment
                .isr
                .iter()
                .filter(|m| live.contains(*m))
                .cloned()
                .collect(),
        });
    }
    let joining: Vec<&MemberId> = ring
        .iter()
        .filter(|m| !assignment.isr.contains(*m) && caught_up.contains(&(partition, (*m).clone())))
        .collect();
    if !joining.is_empty() {
        let mut isr = assignment.isr.clone();
        isr.extend(joining.into_iter().cloned());
        return Some(Command::SetIsr {
            partition,
            epoch: assignment.epoch,
            version: assignment.version,
            isr,
        });
    }
    let ring_owner = ring.first()?;
    if ring_owner != owner {
        return (live.contains(ring_owner) && assignment.isr.contains(ring_owner))
            .then(|| elect(ring_owner));
    }
    // Only live members: a dead one is not placed by the ring (it is over
    // the live members), yet it may hold the last other copy — rule 2's to
    // drop, never down to the owner alone.
    let all_placed = ring.iter().all(|m| assignment.isr.contains(m));
    let has_extra = assignment
        .isr
        .iter()
        .any(|m| !ring.contains(m) && live.contains(m));
    (all_placed && has_extra).then(|| Command::SetIsr {
        partition,
        epoch: assignment.epoch,
        version: assignment.version,
        isr: ring
            .iter()
            .chain(assignment.isr.iter().filter(|m| !live.contains(*m)))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::member::MemberInfo;

    fn info() -> MemberInfo {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        MemberInfo {
            peer_addr: addr,
            http_addr: addr,
            tcp_addr: addr,
        }
    }

    fn voters(count: usize) -> Vec<(MemberId, MemberInfo)> {
        (0..count)
            .map(|i| (MemberId::new(&*format!("node-{i}"), 1), info()))
            .collect()
    }

    fn all_live(config: &ClusterConfig) -> BTreeSet<MemberId> {
        config.members().map(|m| m.id.clone()).collect()
    }

    /// Every member of `members` caught up on each of 64 partitions.
    fn copies_of(members: &BTreeSet<MemberId>) -> BTreeSet<(PartitionId, MemberId)> {
        (0..64)
            .flat_map(|p| members.iter().map(move |m| (PartitionId(p), m.clone())))
            .collect()
    }

    /// Plans and applies until nothing is left, asserting every planned
    /// command is accepted; returns the rounds it took.
    fn settle(
        config: &mut ClusterConfig,
        live: &BTreeSet<MemberId>,
        caught_up: &BTreeSet<(PartitionId, MemberId)>,
    ) -> usize {
        for round in 0..10 {
            let commands = plan(config, &target_table(config, live), live, caught_up);
            if commands.is_empty() {
                return round;
            }
            for command in &commands {
                assert_eq!(config.apply(command), Ok(()), "{command:?}");
            }
        }
        panic!("the planner did not settle in 10 rounds");
    }

    #[test]
    fn a_fresh_cluster_starts_every_partition_on_its_ring_owner_with_its_backups_in_sync() {
        let mut config = ClusterConfig::bootstrap(1, 64, 2, &voters(3));
        let live = all_live(&config);
        settle(&mut config, &live, &BTreeSet::new());
        let names: Vec<NodeId> = config.members().map(|m| m.id.name.clone()).collect();
        let table = PartitionTable::compute(&names, 64, 2);
        for p in (0..64).map(PartitionId) {
            let a = config.assignment(p).unwrap();
            assert_eq!(a.owner.as_ref().map(|m| &m.name), table.owner(p));
            assert_eq!(a.epoch, Epoch(1));
            let isr: Vec<&NodeId> = a.isr.iter().map(|m| &m.name).collect();
            assert_eq!(isr, table.replicas(p).collect::<Vec<_>>(), "{p:?}");
        }
        // Its first owner dies before any write: a backup takes over.
        let mut live = live;
        live.remove(&MemberId::new("node-0", 1));
        settle(&mut config, &live, &BTreeSet::new());
        assert!(
            config
                .assignments()
                .iter()
                .all(|a| a.owner.as_ref().is_some_and(|o| live.contains(o))),
            "no partition offline"
        );
    }

    #[test]
    fn a_dead_owner_is_replaced_by_a_live_isr_member_only() {
        let mut config = ClusterConfig::bootstrap(1, 64, 3, &voters(3));
        let live = all_live(&config);
        settle(&mut config, &live, &BTreeSet::new());
        // Every partition has ISR [owner, second ring replica] (third not caught up).
        for p in (0..64).map(PartitionId) {
            let a = config.assignment(p).unwrap().clone();
            let owner = a.owner.clone().unwrap();
            let other = config
                .members()
                .map(|m| m.id.clone())
                .find(|m| *m != owner)
                .unwrap();
            config
                .apply(&Command::SetIsr {
                    partition: p,
                    epoch: a.epoch,
                    version: a.version,
                    isr: vec![owner, other],
                })
                .unwrap();
        }
        let dead = MemberId::new("node-0", 1);
        let mut live = live;
        live.remove(&dead);
        let before = config.clone();
        let commands = plan(
            &config,
            &target_table(&config, &live),
            &live,
            &BTreeSet::new(),
        );
        for command in &commands {
            if let Command::Elect {
                partition,
                owner,
                epoch,
            } = command
            {
                let a = before.assignment(*partition).unwrap();
                assert_eq!(a.owner.as_ref(), Some(&dead), "only dead owners move");
                assert!(a.isr.contains(owner) && live.contains(owner));
                assert_eq!(*epoch, Epoch(a.epoch.0 + 1));
            }
        }
        let moved = before
            .assignments()
            .iter()
            .filter(|a| a.owner.as_ref() == Some(&dead))
            .count();
        assert_eq!(
            commands
                .iter()
                .filter(|c| matches!(c, Command::Elect { .. }))
                .count(),
            moved
        );
        assert!(moved > 0, "node-0 owned some partitions");
    }

    #[test]
    fn a_partition_without_live_isr_member_gets_no_owner() {
        let mut config = ClusterConfig::bootstrap(1, 8, 1, &voters(2));
        let live = all_live(&config);
        settle(&mut config, &live, &BTreeSet::new());
        let only_node_1: BTreeSet<MemberId> = [MemberId::new("node-1", 1)].into();
        // node-0's partitions have ISR [node-0] (rf 1): nothing may move.
        let commands = plan(
            &config,
            &target_table(&config, &only_node_1),
            &only_node_1,
            &BTreeSet::new(),
        );
        assert_eq!(commands, vec![], "elected outside an ISR");
        let dead_owned = config
            .assignments()
            .iter()
            .filter(|a| a.owner.as_ref().is_some_and(|o| !only_node_1.contains(o)))
            .count();
        assert!(dead_owned > 0, "node-0 owned some partitions");
    }

    #[test]
    fn a_new_member_is_added_only_when_caught_up_then_takes_over() {
        let mut config = ClusterConfig::bootstrap(1, 64, 2, &voters(3));
        let mut live = all_live(&config);
        let all_copies = |members: &BTreeSet<MemberId>| -> BTreeSet<(PartitionId, MemberId)> {
            (0..64)
                .flat_map(|p| members.iter().map(move |m| (PartitionId(p), m.clone())))
                .collect()
        };
        let old_copies = all_copies(&live);
        settle(&mut config, &live, &old_copies);
        let newcomer = MemberId::new("node-3", 1);
        config
            .apply(&Command::Join {
                member: newcomer.clone(),
                info: info(),
            })
            .unwrap();
        live.insert(newcomer.clone());
        let commands = plan(&config, &target_table(&config, &live), &live, &old_copies);
        assert!(
            commands.iter().all(|c| match c {
                Command::SetIsr { isr, .. } => !isr.contains(&newcomer),
                Command::Elect { owner, .. } => *owner != newcomer,
                _ => true,
            }),
            "nothing for the newcomer before its copies caught up: {commands:?}"
        );
        settle(&mut config, &live, &old_copies);
        // The data plane reports the newcomer's copies complete.
        settle(&mut config, &live, &all_copies(&live));
        let names: Vec<NodeId> = config.members().map(|m| m.id.name.clone()).collect();
        let table = PartitionTable::compute(&names, 64, 2);
        let mut owned = 0;
        for p in (0..64).map(PartitionId) {
            let a = config.assignment(p).unwrap();
            assert_eq!(a.owner.as_ref().map(|m| &m.name), table.owner(p), "{p:?}");
            let mut ring: Vec<&NodeId> = table.replicas(p).collect();
            let mut isr: Vec<&NodeId> = a.isr.iter().map(|m| &m.name).collect();
            ring.sort();
            isr.sort();
            assert_eq!(isr, ring, "{p:?}");
            owned += usize::from(a.owner.as_ref() == Some(&newcomer));
        }
        assert!(owned > 0, "the newcomer took over its ring partitions");
    }

    #[test]
    fn a_dead_members_copies_are_restored_on_the_others_and_it_takes_its_share_back() {
        let mut config = ClusterConfig::bootstrap(1, 64, 2, &voters(3));
        let everyone = all_live(&config);
        settle(&mut config, &everyone, &copies_of(&everyone));
        let dead = MemberId::new("node-0", 1);
        let mut live = everyone.clone();
        live.remove(&dead);
        // The owners stream to their new ring replicas, which then report
        // caught up.
        settle(&mut config, &live, &copies_of(&live));
        for (p, a) in config.assignments().iter().enumerate() {
            assert!(a.owner.as_ref().is_some_and(|o| live.contains(o)), "{p}");
            assert!(!a.isr.contains(&dead), "{p}: {:?}", a.isr);
            assert_eq!(a.isr.len(), 2, "{p}: two copies again: {:?}", a.isr);
        }
        // Back (its copies caught up): it owns its ring share again.
        settle(&mut config, &everyone, &copies_of(&everyone));
        let owned = config
            .assignments()
            .iter()
            .filter(|a| a.owner.as_ref() == Some(&dead))
            .count();
        assert!(owned > 0, "node-0 owns partitions again");
    }

    #[test]
    fn the_leader_never_shrinks_an_isr_to_its_owner_alone() {
        let mut config = ClusterConfig::bootstrap(1, 64, 2, &voters(3));
        let everyone = all_live(&config);
        settle(&mut config, &everyone, &BTreeSet::new());
        let dead = MemberId::new("node-0", 1);
        let mut live = everyone.clone();
        live.remove(&dead);
        // Nothing caught up yet: the dead backup stays beside each owner.
        settle(&mut config, &live, &BTreeSet::new());
        let kept = config
            .assignments()
            .iter()
            .filter(|a| a.owner.as_ref() != Some(&dead) && a.isr.contains(&dead))
            .count();
        assert!(kept > 0, "node-0 backed up live owners' partitions");
        assert!(
            config.assignments().iter().all(|a| a.isr.len() == 2),
            "never the owner alone"
        );
    }

    /// With fewer live members than copies the ring places only the live
    /// ones; the dead ISR members must stay beside the owner all the same
    /// (found by `eddy-chaos datapath`: the ISR went down to an owner whose
    /// copy was lost, past `min_insync_replicas`).
    #[test]
    fn a_short_ring_does_not_drop_dead_members_down_to_the_owner_alone() {
        let mut config = ClusterConfig::bootstrap(1, 64, 3, &voters(3));
        let everyone = all_live(&config);
        settle(&mut config, &everyone, &copies_of(&everyone));
        assert!(config.assignments().iter().all(|a| a.isr.len() == 3));
        let survivor = MemberId::new("node-2", 1);
        let live = BTreeSet::from([survivor.clone()]);
        settle(&mut config, &live, &copies_of(&live));
        for (p, a) in config.assignments().iter().enumerate() {
            assert_eq!(a.owner.as_ref(), Some(&survivor), "{p}");
            assert!(a.isr.len() >= 2, "{p}: never the owner alone: {:?}", a.isr);
        }
    }

    #[test]
    fn a_draining_member_hands_everything_over_and_stays_in_sync_until_replaced() {
        let mut config = ClusterConfig::bootstrap(1, 64, 2, &voters(3));
        let live = all_live(&config);
        settle(&mut config, &live, &copies_of(&live));
        let leaving = MemberId::new("node-1", 1);
        assert!(config.partitions_held_by(&leaving) > 0);
        config
            .apply(&Command::SetDraining {
                member: leaving.clone(),
                draining: true,
            })
            .unwrap();
        // First its ownerships move to staying ISR members; it stays a
        // backup of them, so no write waits for a substitute.
        let nothing_caught_up = BTreeSet::new();
        for command in plan(
            &config,
            &target_table(&config, &live),
            &live,
            &nothing_caught_up,
        ) {
            assert_eq!(config.apply(&command), Ok(()), "{command:?}");
        }
        assert!(
            config
                .assignments()
                .iter()
                .all(|a| a.owner.as_ref() != Some(&leaving) && a.isr.len() >= 2),
        );
        // Once substitutes caught up it leaves every ISR, never below two.
        settle(&mut config, &live, &copies_of(&live));
        assert_eq!(config.partitions_held_by(&leaving), 0);
        assert!(config.assignments().iter().all(|a| a.isr.len() == 2));
        // Back (`draining: false`), it takes its share again.
        config
            .apply(&Command::SetDraining {
                member: leaving.clone(),
                draining: false,
            })
            .unwrap();
        settle(&mut config, &live, &copies_of(&live));
        assert!(config.partitions_held_by(&leaving) > 0);
    }

    #[test]
    fn a_first_isr_that_died_before_its_first_owner_is_named_again() {
        let mut config = ClusterConfig::bootstrap(1, 8, 1, &voters(3));
        let everyone = all_live(&config);
        // The first ISRs commit, then everyone in them dies before an Elect.
        for command in plan(
            &config,
            &target_table(&config, &everyone),
            &everyone,
            &BTreeSet::new(),
        ) {
            config.apply(&command).unwrap();
        }
        let only: BTreeSet<MemberId> = [MemberId::new("node-2", 1)].into();
        settle(&mut config, &only, &BTreeSet::new());
        for a in config.assignments() {
            assert_eq!(a.owner.as_ref(), Some(&MemberId::new("node-2", 1)), "{a:?}");
        }
    }

    proptest! {
        /// Whatever the live set and caught-up reports, every planned command
        /// is accepted when applied in order, and elections name live ISR
        /// members (or start a never-owned partition).
        #[test]
        fn planned_commands_are_always_valid(
            live_mask in 0u8..16,
            caught_mask in proptest::collection::vec(any::<bool>(), 16),
            rounds in 1usize..5,
        ) {
            let mut config = ClusterConfig::bootstrap(1, 16, 2, &voters(3));
            config.apply(&Command::Join { member: MemberId::new("node-3", 1), info: info() }).unwrap();
            let members: Vec<MemberId> = config.members().map(|m| m.id.clone()).collect();
            let live: BTreeSet<MemberId> = members.iter().enumerate()
                .filter(|(i, _)| live_mask & (1 << i) != 0).map(|(_, m)| m.clone()).collect();
            let caught_up: BTreeSet<(PartitionId, MemberId)> = caught_mask.iter().enumerate()
                .filter(|(_, c)| **c)
                .map(|(p, _)| (PartitionId(p as u32), MemberId::new("node-3", 1)))
                .collect();
            for _ in 0..rounds {
                let before = config.clone();
                for command in plan(&before, &target_table(&before, &live), &live, &caught_up) {
                    if let Command::Elect { partition, owner, .. } = &command {
                        let a = before.assignment(*partition).unwrap();
                        prop_assert!(live.contains(owner));
                        prop_assert!(a.isr.contains(owner) || (a.isr.is_empty() && a.epoch == Epoch(0)));
                    }
                    prop_assert_eq!(config.apply(&command), Ok(()));
                }
            }
        }
    }
}
