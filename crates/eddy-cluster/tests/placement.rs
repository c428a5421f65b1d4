//! Placement laws of the partition table: balance, minimal movement,
//! determinism, distinct replicas, and a pinned table so an upgrade cannot
//! move partitions silently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use eddy_cluster::testing::node_names;
use eddy_cluster::{NodeId, PartitionTable, Role};
use eddy_core::PartitionId;
use proptest::prelude::*;

const P: u32 = 1024;

fn ids(names: &[&str]) -> Vec<NodeId> {
    names.iter().map(|n| NodeId::new(n)).collect()
}

fn owner_moves(old: &PartitionTable, new: &PartitionTable) -> usize {
    PartitionTable::diff(old, new)
        .iter()
        .filter(|m| m.owner_changed())
        .count()
}

#[test]
fn three_nodes_are_balanced_within_15_percent() {
    let table = PartitionTable::compute(&node_names(3), P, 3);
    let counts = table.owned_counts();
    assert_eq!(counts.iter().sum::<usize>(), P as usize);
    let mean = f64::from(P) / 3.0;
    let max = *counts.iter().max().unwrap() as f64;
    assert!(
        max <= 1.15 * mean,
        "owned {counts:?}: max {max} > 1.15 × {mean:.1}"
    );
}

#[test]
fn balance_holds_for_other_name_sets() {
    // Not only the fixture names: hosts named like a real deployment.
    for names in [
        ids(&["eddy-a", "eddy-b", "eddy-c"]),
        ids(&["10.1.0.5", "10.1.0.6", "10.1.0.7"]),
        ids(&["pod-7f9c", "pod-1a2b", "pod-e0e0"]),
    ] {
        let counts = PartitionTable::compute(&names, P, 1).owned_counts();
        let max = *counts.iter().max().unwrap() as f64;
        assert!(max <= 1.15 * f64::from(P) / 3.0, "{names:?}: {counts:?}");
    }
}

#[test]
fn adding_a_fourth_node_moves_about_a_quarter() {
    let three = PartitionTable::compute(&node_names(3), P, 2);
    let four = PartitionTable::compute(&node_names(4), P, 2);
    let moved = owner_moves(&three, &four);
    assert!(
        moved as f64 <= (0.25 + 0.05) * f64::from(P),
        "{moved} of {P} partitions changed owner"
    );
    // Every owner change goes to the new node.
    let newcomer = NodeId::new("node-3");
    for m in PartitionTable::diff(&three, &four) {
        if m.owner_changed() {
            assert_eq!(m.to.first(), Some(&newcomer), "{m:?}");
        }
    }
}

#[test]
fn removing_a_node_moves_only_its_partitions() {
    let four = PartitionTable::compute(&node_names(4), P, 2);
    let leaver = NodeId::new("node-2");
    let rest: Vec<_> = node_names(4).into_iter().filter(|n| n != &leaver).collect();
    let three = PartitionTable::compute(&rest, P, 2);
    for m in PartitionTable::diff(&four, &three) {
        assert!(m.from.contains(&leaver), "{m:?} did not involve the leaver");
    }
    let owned_before = four
        .partitions_of(&leaver)
        .iter()
        .filter(|(_, role)| *role == Role::Owner)
        .count();
    assert_eq!(owner_moves(&four, &three), owned_before);
}

#[test]
fn input_order_and_duplicates_do_not_matter() {
    let sorted = PartitionTable::compute(&ids(&["a", "b", "c", "d"]), P, 3);
    let shuffled = PartitionTable::compute(&ids(&["d", "b", "a", "c", "b", "d"]), P, 3);
    assert_eq!(sorted, shuffled);
    assert_eq!(sorted.fingerprint(), shuffled.fingerprint());
}

#[test]
fn replicas_are_distinct_for_every_partition() {
    let table = PartitionTable::compute(&node_names(5), P, 3);
    assert_eq!(table.replication(), 3);
    for p in 0..P {
        let set: Vec<_> = table.replicas(PartitionId(p)).collect();
        assert_eq!(set.len(), 3);
        assert_eq!(set.iter().collect::<HashSet<_>>().len(), 3, "p{p}: {set:?}");
        assert_eq!(table.owner(PartitionId(p)), Some(set[0]));
    }
}

#[test]
fn rf_above_node_count_uses_every_node_once() {
    let table = PartitionTable::compute(&node_names(2), P, 5);
    assert_eq!(table.replication(), 2);
    for p in 0..P {
        let set: HashSet<_> = table.replicas(PartitionId(p)).collect();
        assert_eq!(set.len(), 2);
    }
    let zero = PartitionTable::compute(&node_names(2), P, 0);
    assert_eq!(zero.replication(), 1, "rf 0 counts as 1");
}

#[test]
fn no_members_means_no_owners() {
    let table = PartitionTable::compute(&[], P, 3);
    assert_eq!(table.owner(PartitionId(0)), None);
    assert_eq!(table.replicas(PartitionId(0)).count(), 0);
    assert!(table.partitions_of(&NodeId::new("a")).is_empty());
    assert_eq!(table.owner(PartitionId(P)), None, "out of range");
}

#[test]
fn partitions_of_lists_roles_consistently() {
    let table = PartitionTable::compute(&node_names(3), P, 2);
    let mut owners = 0;
    let mut backups = 0;
    for node in table.nodes() {
        for (p, role) in table.partitions_of(node) {
            let set: Vec<_> = table.replicas(p).collect();
            match role {
                Role::Owner => {
                    owners += 1;
                    assert_eq!(set[0], node);
                }
                Role::Backup { rank } => {
                    backups += 1;
                    assert_eq!(set[usize::from(rank)], node);
                }
            }
        }
    }
    assert_eq!(owners, P as usize);
    assert_eq!(backups, P as usize);
}

/// If this fails, placement changed: an upgrade would move partitions on every
/// running cluster. Change the pin only together with a migration plan.
#[test]
fn placement_is_pinned() {
    let table = PartitionTable::compute(&node_names(3), P, 2);
    assert_eq!(table.owned_counts(), PINNED_OWNED);
    let owners: Vec<_> = (0..4)
        .map(|p| table.owner(PartitionId(p)).unwrap().to_string())
        .collect();
    assert_eq!(owners, PINNED_FIRST_OWNERS);
    assert_eq!(table.fingerprint(), PINNED_FINGERPRINT);
}

// Computed by an independent re-implementation of the placement in Python
// (package `xxhash`): vnode points `xxh3_64(name ++ 0x00 ++ u32le(i))` for 512
// vnodes, sorted by (point, name); partition p at ⌊p·2⁶⁴/P⌋; walk clockwise for
// distinct nodes; fingerprint = xxh3_64 of u32le(P) ++ u64le(width) ++ for each
// replica u64le(len(name)) ++ name.
const PINNED_OWNED: [usize; 3] = [323, 320, 381];
const PINNED_FIRST_OWNERS: [&str; 4] = ["node-1", "node-0", "node-2", "node-2"];
const PINNED_FINGERPRINT: u64 = 11_583_469_527_979_536_113;

fn member_set() -> impl Strategy<Value = Vec<NodeId>> {
    prop::collection::vec("[a-z]{1,8}", 1..12)
        .prop_map(|names| names.iter().map(|n| NodeId::new(n)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Distinct replicas, `min(rf, N)` of them, for any member set.
    #[test]
    fn replicas_distinct_for_any_members(members in member_set(), rf in 1usize..5) {
        let table = PartitionTable::compute_with_vnodes(&members, 256, rf, 64);
        let distinct: HashSet<_> = members.iter().collect();
        prop_assert_eq!(table.replication(), rf.min(distinct.len()));
        for p in 0..256 {
            let set: Vec<_> = table.replicas(PartitionId(p)).collect();
            prop_assert_eq!(set.iter().collect::<HashSet<_>>().len(), set.len());
            prop_assert_eq!(set.len(), table.replication());
        }
    }

    /// Adding a node only inserts it into replica sets: with it filtered out,
    /// each new set is a prefix of the old one (the mirror image of removing
    /// it), and owner changes are exactly the partitions it now owns.
    #[test]
    fn membership_changes_move_minimally(
        members in member_set(),
        newcomer in "[A-Z]{1,8}",
        rf in 1usize..4,
    ) {
        let newcomer = NodeId::new(&newcomer);
        let mut grown = members.clone();
        grown.push(newcomer.clone());
        let before = PartitionTable::compute_with_vnodes(&members, 256, rf, 64);
        let after = PartitionTable::compute_with_vnodes(&grown, 256, rf, 64);
        for p in (0..256).map(PartitionId) {
            let old: Vec<_> = before.replicas(p).collect();
            let new: Vec<_> = after.replicas(p).filter(|n| *n != &newcomer).collect();
            // Read backwards this is the removal law: the newcomer leaving
            // `grown` leaves every other replica in place and in order.
            prop_assert!(old.starts_with(&new), "join: {:?} → {:?}", old, new);
        }
        let moved = owner_moves(&before, &after);
        let owned_by_newcomer = after.partitions_of(&newcomer)
            .iter().filter(|(_, r)| *r == Role::Owner).count();
        prop_assert_eq!(moved, owned_by_newcomer);
    }
}

#[test]
fn a_table_given_set_by_set_keeps_each_set_and_its_order() {
    let n = |s: &str| NodeId::new(s);
    let sets = vec![
        vec![n("b"), n("a"), n("c")],
        vec![],
        vec![n("c"), n("c"), n("a")],
    ];
    let table = PartitionTable::from_sets(4, &sets);
    let set = |p: u32| -> Vec<NodeId> { table.replicas(PartitionId(p)).cloned().collect() };
    assert_eq!(set(0), vec![n("b"), n("a"), n("c")]);
    assert_eq!(set(1), Vec::<NodeId>::new(), "no owner: no replicas");
    assert_eq!(set(2), vec![n("c"), n("a")], "a repeated name counts once");
    assert_eq!(set(3), Vec::<NodeId>::new(), "a missing set is empty");
    assert_eq!(table.owner(PartitionId(2)), Some(&n("c")));
    assert_eq!(table.owned_counts(), vec![0, 1, 1]);
    assert_eq!(table.nodes(), &[n("a"), n("b"), n("c")]);
    let other = PartitionTable::from_sets(4, &[vec![n("b"), n("a")], vec![n("c")]]);
    assert_ne!(table.fingerprint(), other.fingerprint());
}
