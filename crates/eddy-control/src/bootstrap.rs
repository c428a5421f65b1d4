//! Whether this node may start a new cluster: [`bootstrap_decision`].
//!
//! Bootstrapping is explicit and happens once. A group is only started when
//! *every* configured voter reports, by name and incarnation, that it holds
//! no Raft state — so a voter that lost its data and restarts beside a
//! running group (whose members report state) can never start a second
//! group; it waits, or joins as a new member. `bootstrap_expect` must equal
//! the number of configured voters (1, 3 or 5): a single-node cluster is the
//! deliberate configuration `voters = [me]`, `bootstrap_expect = 1`, never a
//! fallback when seeds do not answer.

use std::collections::BTreeMap;

use eddy_cluster::NodeId;

use crate::member::MemberId;

/// Voter counts a cluster may be configured with (an even count adds no
/// fault tolerance over the odd one below it).
pub const VOTER_COUNTS: [usize; 3] = [1, 3, 5];

/// What a node reports about its Raft state (in its hello / gossip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftPresence {
    /// The member reporting.
    pub member: MemberId,
    /// `Some(cluster id)` if it holds Raft state of that cluster.
    pub cluster: Option<u64>,
}

/// The outcome of [`bootstrap_decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapDecision {
    /// This node holds Raft state: restart from it (`Controller::restore`).
    Restore,
    /// Every voter reported no state: bootstrap with exactly these voters
    /// (sorted; every voter computes the same list and cluster id).
    Bootstrap {
        /// The voters, sorted by name.
        voters: Vec<MemberId>,
        /// The new cluster's id: xxh3 of the voters' Raft ids in order.
        cluster_id: u64,
    },
    /// A peer holds state of `cluster`: this node is (or became) a new
    /// member and must ask that cluster to commit its `Join`.
    JoinExisting {
        /// The running cluster.
        cluster: u64,
    },
    /// Not every voter has reported yet; ask again later.
    Wait {
        /// Configured voters not heard from.
        missing: Vec<NodeId>,
    },
    /// This node is not a configured voter and no cluster is visible yet:
    /// it never bootstraps; it waits for a cluster to join.
    WaitForCluster,
    /// The configuration cannot bootstrap safely.
    Misconfigured(String),
}

/// Decides what a starting node does about Raft.
///
/// `mine` is this node's own report, `observed` what peers reported (any
/// order, duplicates by name keep the last), `voters` the configured voter
/// names, `bootstrap_expect` the configured expected voter count (`None`:
/// the safe default, the number of configured voters).
pub fn bootstrap_decision(
    mine: &RaftPresence,
    observed: &[RaftPresence],
    voters: &[NodeId],
    bootstrap_expect: Option<usize>,
) -> BootstrapDecision {
    if mine.cluster.is_some() {
        return BootstrapDecision::Restore;
    }
    if let Some(cluster) = observed.iter().find_map(|p| p.cluster) {
        return BootstrapDecision::JoinExisting { cluster };
    }
    let mut names = voters.to_vec();
    names.sort();
    names.dedup();
    if !VOTER_COUNTS.contains(&names.len()) {
        return BootstrapDecision::Misconfigured(format!(
            "{} distinct voters configured; use 1, 3 or 5",
            names.len()
        ));
    }
    let expect = bootstrap_expect.unwrap_or(names.len());
    if expect != names.len() {
        return BootstrapDecision::Misconfigured(format!(
            "bootstrap_expect {expect} differs from the {} configured voters",
            names.len()
        ));
    }
    if !names.contains(&mine.member.name) {
        return BootstrapDecision::WaitForCluster;
    }
    let mut heard: BTreeMap<&NodeId, &MemberId> = BTreeMap::new();
    heard.insert(&mine.member.name, &mine.member);
    for presence in observed {
        if presence.member.name != mine.member.name {
            heard.insert(&presence.member.name, &presence.member);
        }
    }
    let missing: Vec<NodeId> = names
        .iter()
        .filter(|n| !heard.contains_key(n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return BootstrapDecision::Wait { missing };
    }
    let voters: Vec<MemberId> = names
        .iter()
        .filter_map(|n| heard.get(n).map(|m| (*m).clone()))
        .collect();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for voter in &voters {
        hasher.update(&voter.raft_id().0.to_le_bytes());
    }
    BootstrapDecision::Bootstrap {
        voters,
        cluster_id: hasher.digest(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(name: &str, incarnation: u64) -> RaftPresence {
        RaftPresence {
            member: MemberId::new(name, incarnation),
            cluster: None,
        }
    }

    fn holding(name: &str, incarnation: u64, cluster: u64) -> RaftPresence {
        RaftPresence {
            member: MemberId::new(name, incarnation),
            cluster: Some(cluster),
        }
    }

    fn names(list: &[&str]) -> Vec<NodeId> {
        list.iter().map(|n| NodeId::new(n)).collect()
    }

    #[test]
    fn all_voters_empty_bootstrap_the_same_group() {
        let voters = names(&["c", "a", "b"]);
        let reports = [empty("a", 1), empty("b", 2), empty("c", 3)];
        let decisions: Vec<_> = reports
            .iter()
            .map(|me| bootstrap_decision(me, &reports, &voters, None))
            .collect();
        let BootstrapDecision::Bootstrap { voters: chosen, .. } = &decisions[0] else {
            panic!("{:?}", decisions[0]);
        };
        assert_eq!(
            chosen,
            &vec![
                MemberId::new("a", 1),
                MemberId::new("b", 2),
                MemberId::new("c", 3)
            ]
        );
        assert!(
            decisions.iter().all(|d| d == &decisions[0]),
            "same voters, same cluster id"
        );
    }

    #[test]
    fn a_voter_waits_for_every_voter() {
        let voters = names(&["a", "b", "c"]);
        assert_eq!(
            bootstrap_decision(&empty("a", 1), &[empty("b", 1)], &voters, None),
            BootstrapDecision::Wait {
                missing: names(&["c"])
            }
        );
    }

    #[test]
    fn a_wiped_voter_never_bootstraps_beside_a_running_group() {
        let voters = names(&["a", "b", "c"]);
        // b lost its data; a and c hold cluster 7.
        let wiped = empty("b", 9);
        assert_eq!(
            bootstrap_decision(
                &wiped,
                &[holding("a", 1, 7), holding("c", 1, 7)],
                &voters,
                None
            ),
            BootstrapDecision::JoinExisting { cluster: 7 }
        );
        // Hearing only one of them is enough to know a group exists.
        assert_eq!(
            bootstrap_decision(&wiped, &[holding("c", 1, 7)], &voters, None),
            BootstrapDecision::JoinExisting { cluster: 7 }
        );
        // Hearing none of them, it waits instead of starting alone.
        assert_eq!(
            bootstrap_decision(&wiped, &[], &voters, None),
            BootstrapDecision::Wait {
                missing: names(&["a", "c"])
            }
        );
    }

    #[test]
    fn a_node_with_state_restores_and_non_voters_never_bootstrap() {
        let voters = names(&["a", "b", "c"]);
        assert_eq!(
            bootstrap_decision(&holding("a", 1, 7), &[], &voters, None),
            BootstrapDecision::Restore
        );
        let all_empty = [empty("a", 1), empty("b", 1), empty("c", 1)];
        assert_eq!(
            bootstrap_decision(&empty("d", 1), &all_empty, &voters, None),
            BootstrapDecision::WaitForCluster
        );
    }

    #[test]
    fn one_voter_is_a_deliberate_configuration() {
        let me = empty("solo", 4);
        assert!(matches!(
            bootstrap_decision(&me, &[], &names(&["solo"]), Some(1)),
            BootstrapDecision::Bootstrap { .. }
        ));
        // Three voters configured but bootstrap_expect 1: refused, never a
        // single-node cluster by accident.
        assert!(matches!(
            bootstrap_decision(&me, &[], &names(&["solo", "b", "c"]), Some(1)),
            BootstrapDecision::Misconfigured(_)
        ));
        assert!(matches!(
            bootstrap_decision(&me, &[], &names(&["solo", "b"]), None),
            BootstrapDecision::Misconfigured(_)
        ));
    }
}
