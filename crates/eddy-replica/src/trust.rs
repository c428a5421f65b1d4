//! Copies this node cannot vouch for, and ownerships it must not resume:
//! what the ownership task proposes to the controller about them.
//!
//! A copy is *untrusted* when it may miss acknowledged writes although
//! this node is in the partition's ISR: damaged on disk at start, or lost
//! with a failed partition worker. It is never served nor passed off as
//! empty; its node leaves the ISR, and trusts it again only once an owner's
//! snapshot replaced it.

use std::collections::BTreeSet;

use eddy_control::{Assignment, Command, MemberId};
use eddy_core::{Epoch, PartitionId};

/// Whether a partition worker that replaced a failed one, with no log to
/// reload from, must treat the partition as lost: an owner was ever
/// elected. Whether or not this node is in the partition's ISR now: the
/// failed worker may have confirmed an expansion that commits only after
/// the replacement started, putting a lost copy in the ISR. Before any
/// election every copy is empty, and the failed worker read the same or an
/// older configuration than its replacement, so it confirmed nothing
/// there.
pub fn lost_with_worker(assignment: Option<&Assignment>) -> bool {
    assignment.is_some_and(|a| a.epoch >= Epoch(1))
}

/// What to do about one untrusted copy.
#[derive(Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// This node is out of the ISR: the copy is like any outside one, and
    /// rejoins only after its owner brought it up to date.
    Out,
    /// Propose these, in order: a backup, the ISR without itself; an
    /// owner, the election of another live ISR member at the next epoch,
    /// then the ISR without itself at that epoch — in one go, so the
    /// planner cannot elect it back (it is still in the ISR, and may be
    /// the preferred owner) before it left.
    Propose(Vec<Command>),
    /// This node owns the partition and no other ISR member is live: the
    /// untrusted copy is all there is, and an operator decides.
    Offline,
}

/// What this node (`me`) proposes about its untrusted copy of `partition`,
/// committed as `assignment`, while `live` are the live members.
pub fn give_up(
    partition: PartitionId,
    assignment: &Assignment,
    me: &MemberId,
    live: &BTreeSet<MemberId>,
) -> GiveUp {
    if !assignment.isr.contains(me) {
        return GiveUp::Out;
    }
    let others: Vec<MemberId> = assignment
        .isr
        .iter()
        .filter(|m| *m != me)
        .cloned()
        .collect();
    if assignment.owner.as_ref() != Some(me) {
        return GiveUp::Propose(vec![Command::SetIsr {
            partition,
            epoch: assignment.epoch,
            version: assignment.version,
            isr: others,
        }]);
    }
    let Some(successor) = others.iter().find(|m| live.contains(*m)) else {
        return GiveUp::Offline;
    };
    let epoch = Epoch(assignment.epoch.0 + 1);
    GiveUp::Propose(vec![
        Command::Elect {
            partition,
            owner: successor.clone(),
            epoch,
        },
        // An election raises the version by one.
        Command::SetIsr {
            partition,
            epoch,
            version: assignment.version + 1,
            isr: others,
        },
    ])
}

/// Whether a node that found a partition committed to it when it loaded
/// its copy from its log (`inherited`, the epoch it found; at a process
/// start, or in a replaced partition worker) must be elected again rather
/// than take it at the `committed` epoch: whoever served before may have
/// shipped entries the log never got (a process killed with writes
/// queued, an append that failed), at positions the loaded copy reuses;
/// backups would skip the new ones there as resends. A new epoch makes
/// them replace such a tail.
pub fn must_reelect(inherited: Option<Epoch>, committed: Epoch) -> bool {
    inherited == Some(committed)
}

/// The election [`must_reelect`] asks for: this node at the next epoch.
pub fn reelection(partition: PartitionId, assignment: &Assignment, me: &MemberId) -> Command {
    Command::Elect {
        partition,
        owner: me.clone(),
        epoch: Epoch(assignment.epoch.0 + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_cluster::NodeId;

    fn member(name: &str) -> MemberId {
        MemberId::new(NodeId::new(name), 1)
    }

    fn assignment(owner: &str, epoch: u64, isr: &[&str]) -> Assignment {
        Assignment {
            owner: Some(member(owner)),
            epoch: Epoch(epoch),
            isr: isr.iter().map(|n| member(n)).collect(),
            version: epoch + 3,
        }
    }

    const P: PartitionId = PartitionId(7);

    #[test]
    fn a_failed_worker_lost_its_copies_once_an_owner_was_elected() {
        assert!(lost_with_worker(Some(&assignment("b", 1, &["b", "a"]))));
        // Not in the ISR now: an expansion it confirmed may commit later.
        assert!(lost_with_worker(Some(&assignment("b", 3, &["b", "c"]))));
        let unelected = Assignment {
            isr: vec![member("a"), member("b")],
            version: 1,
            ..Assignment::default()
        };
        assert!(!lost_with_worker(Some(&unelected)));
        assert!(!lost_with_worker(None));
    }

    #[test]
    fn a_backup_leaves_the_isr_and_an_owner_hands_over_to_a_live_member() {
        let a = member("a");
        let live = BTreeSet::from([member("a"), member("c")]);
        let backup = assignment("b", 2, &["b", "a", "c"]);
        assert_eq!(
            give_up(P, &backup, &a, &live),
            GiveUp::Propose(vec![Command::SetIsr {
                partition: P,
                epoch: Epoch(2),
                version: 5,
                isr: vec![member("b"), member("c")],
            }])
        );
        let owner = assignment("a", 2, &["a", "b", "c"]);
        let GiveUp::Propose(commands) = give_up(P, &owner, &a, &live) else {
            panic!("an owner with a live ISR member hands over");
        };
        assert_eq!(
            commands[0],
            Command::Elect {
                partition: P,
                owner: member("c"),
                epoch: Epoch(3),
            },
            "b is in the ISR but not live"
        );
        // Both apply, in order, to the configuration they were made from.
        let mut config = eddy_control::ClusterConfig::bootstrap(
            1,
            8,
            3,
            &["a", "b", "c"].map(|n| (member(n), eddy_control::testing::fixture_info(0))),
        );
        for command in [
            Command::SetIsr {
                partition: P,
                epoch: Epoch(0),
                version: 0,
                isr: vec![member("a"), member("b"), member("c")],
            },
            Command::Elect {
                partition: P,
                owner: a.clone(),
                epoch: Epoch(1),
            },
        ] {
            assert_eq!(config.apply(&command), Ok(()));
        }
        let committed = config.assignment(P).cloned().unwrap_or_default();
        let GiveUp::Propose(commands) = give_up(P, &committed, &a, &live) else {
            panic!("an owner with a live ISR member hands over");
        };
        for command in &commands {
            assert_eq!(config.apply(command), Ok(()));
        }
        let after = config.assignment(P).cloned().unwrap_or_default();
        assert_eq!(after.owner, Some(member("c")));
        assert!(!after.isr.contains(&a));
        let alone = assignment("a", 2, &["a", "b"]);
        assert_eq!(give_up(P, &alone, &a, &live), GiveUp::Offline);
        let out = assignment("b", 2, &["b", "c"]);
        assert_eq!(give_up(P, &out, &a, &live), GiveUp::Out);
    }

    #[test]
    fn an_inherited_ownership_is_taken_only_at_a_newer_epoch() {
        let a = member("a");
        let found = assignment("a", 4, &["a", "b"]);
        assert!(must_reelect(Some(Epoch(4)), found.epoch));
        assert_eq!(
            reelection(P, &found, &a),
            Command::Elect {
                partition: P,
                owner: a.clone(),
                epoch: Epoch(5)
            }
        );
        let reelected = assignment("a", 5, &["a", "b"]);
        assert!(!must_reelect(Some(Epoch(4)), reelected.epoch));
        assert!(!must_reelect(None, found.epoch));
    }
}
