//! The owner's side of the in-sync replica set: which backups a write must
//! reach before it is acknowledged, when the owner must shrink the ISR
//! through the controller first, and when a backup may enter it.
//!
//! The safety rule (Kafka's, with our names): **every member of the
//! committed ISR holds every acknowledged write**, because a new owner is
//! elected only from the ISR. So the owner
//! - acknowledges a write only once every member of the committed ISR
//!   confirmed it, or once a committed `SetIsr` removed those that did not;
//! - adds a backup only after that backup confirmed everything acknowledged
//!   so far, and from the moment it considers adding it, waits for it on
//!   every write (a *candidate*); a candidate that fails is simply dropped,
//!   but once proposed it can only leave through a committed change at a
//!   later version (the proposal names its version, so a delayed one is
//!   rejected, `Rejection::WrongVersion`).
//!
//! Sans-io: the node feeds committed assignments and each write's
//! confirmations, and proposes the commands this returns. One per partition
//! owned; it lives as long as one ownership (one epoch).

use std::collections::{BTreeMap, BTreeSet};

use eddy_core::{Epoch, PartitionId, Seq};

use crate::command::Command;
use crate::member::MemberId;
use crate::state::Assignment;

/// Where a backup outside the committed ISR stands with this owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joining {
    /// Waited for on every write since the owner had acknowledged through
    /// `since`; proposed once it confirms a write at or after `since`.
    Candidate { since: Seq },
    /// Its expansion was proposed from version `at`.
    Proposed { at: u64 },
}

/// What to do with a write whose required confirmations are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every required backup confirmed: acknowledge.
    Ack,
    /// These required backups did not confirm: propose `shrink`, wait until
    /// a later version of the assignment is committed, then decide again.
    Shrink {
        /// The `SetIsr` to propose.
        shrink: Command,
        /// The backups it drops.
        dropped: Vec<MemberId>,
    },
    /// This node no longer owns the partition at this epoch: not acknowledged.
    Deposed,
    /// Fewer in-sync copies than `min_insync` would hold the write (the
    /// committed ISR is that small, or only a shrink below it would let it
    /// stand): not acknowledged.
    TooFew {
        /// Members of the committed ISR (owner included).
        in_sync: usize,
        /// The minimum asked for.
        min_insync: usize,
    },
}

/// The owner's ISR bookkeeping for one partition at one epoch.
#[derive(Debug, Clone)]
pub struct OwnerIsr {
    partition: PartitionId,
    me: MemberId,
    epoch: Epoch,
    version: u64,
    committed: Vec<MemberId>,
    joining: BTreeMap<MemberId, Joining>,
    /// Highest position acknowledged at this epoch.
    acked: Seq,
    deposed: bool,
    /// A write stands only on at least this many in-sync copies.
    min_insync: usize,
}

impl OwnerIsr {
    /// Bookkeeping for `me`, owner of `partition` by `assignment`.
    pub fn new(partition: PartitionId, me: MemberId, assignment: &Assignment) -> OwnerIsr {
        OwnerIsr::with_min_insync(partition, me, assignment, 1)
    }

    /// Like [`OwnerIsr::new`], acknowledging a write only while at least
    /// `min_insync` copies (the owner's included) are in sync: with 2, a
    /// write never rests on one copy, at the price of refusing writes while
    /// a partition's ISR is down to its owner (Kafka's
    /// `min.insync.replicas`).
    pub fn with_min_insync(
        partition: PartitionId,
        me: MemberId,
        assignment: &Assignment,
        min_insync: usize,
    ) -> OwnerIsr {
        let mut isr = OwnerIsr {
            partition,
            me,
            epoch: assignment.epoch,
            version: assignment.version,
            committed: assignment.isr.clone(),
            joining: BTreeMap::new(),
            acked: Seq(0),
            deposed: false,
            min_insync: min_insync.max(1),
        };
        isr.observe(assignment);
        isr
    }

    /// The epoch this bookkeeping belongs to.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// A newly committed assignment of the partition.
    pub fn observe(&mut self, assignment: &Assignment) {
        if assignment.epoch != self.epoch || assignment.owner.as_ref() != Some(&self.me) {
            self.deposed = true;
            return;
        }
        if assignment.version <= self.version {
            // Nothing newer (every write calls this with the node's view).
            return;
        }
        self.version = assignment.version;
        self.committed = assignment.isr.clone();
        let committed = &self.committed;
        let version = self.version;
        self.joining.retain(|member, joining| match joining {
            _ if committed.contains(member) => false,
            // A later version is committed without it: the proposal can
            // never apply any more.
            Joining::Proposed { at } => *at >= version,
            Joining::Candidate { .. } => true,
        });
    }

    /// Backups a write must be confirmed by (this owner excluded).
    pub fn required(&self) -> BTreeSet<MemberId> {
        self.committed
            .iter()
            .chain(self.joining.keys())
            .filter(|m| **m != self.me)
            .cloned()
            .collect()
    }

    /// Whether `member` must confirm writes.
    pub fn is_required(&self, member: &MemberId) -> bool {
        *member != self.me && (self.committed.contains(member) || self.joining.contains_key(member))
    }

    /// Decides on a write through `position` that `confirmed` (backups
    /// holding it) confirmed. Candidates that did not confirm stop being
    /// candidates; proposed or committed members that did not require a
    /// committed shrink first.
    pub fn decide(&mut self, position: Seq, confirmed: &BTreeSet<MemberId>) -> Decision {
        if self.deposed {
            return Decision::Deposed;
        }
        self.joining.retain(|member, joining| {
            !matches!(joining, Joining::Candidate { .. }) || confirmed.contains(member)
        });
        let missing: Vec<MemberId> = self
            .required()
            .into_iter()
            .filter(|m| !confirmed.contains(m))
            .collect();
        let isr: Vec<MemberId> = self
            .committed
            .iter()
            .filter(|m| !missing.contains(m))
            .cloned()
            .collect();
        if isr.len() < self.min_insync {
            return Decision::TooFew {
                in_sync: self.committed.len(),
                min_insync: self.min_insync,
            };
        }
        if missing.is_empty() {
            self.acked = self.acked.max(position);
            return Decision::Ack;
        }
        Decision::Shrink {
            shrink: Command::SetIsr {
                partition: self.partition,
                epoch: self.epoch,
                version: self.version,
                isr,
            },
            dropped: missing,
        }
    }

    /// `member`, a backup of the placement, confirmed this ownership's log
    /// through `through`. Returns the expansion to propose once it holds
    /// everything acknowledged since it became a candidate.
    pub fn confirmed(&mut self, member: &MemberId, through: Seq) -> Option<Command> {
        if self.deposed || *member == self.me || self.committed.contains(member) {
            return None;
        }
        match self.joining.get(member).copied() {
            None => {
                // From now on every write waits for it; what was acknowledged
                // before must reach it before it may be proposed.
                self.joining
                    .insert(member.clone(), Joining::Candidate { since: self.acked });
                None
            }
            Some(Joining::Candidate { since }) if through >= since && through >= self.acked => {
                self.joining
                    .insert(member.clone(), Joining::Proposed { at: self.version });
                let mut isr = self.committed.clone();
                isr.push(member.clone());
                Some(Command::SetIsr {
                    partition: self.partition,
                    epoch: self.epoch,
                    version: self.version,
                    isr,
                })
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(name: &str) -> MemberId {
        MemberId::new(name, 1)
    }

    fn assignment(epoch: u64, version: u64, isr: &[&str]) -> Assignment {
        Assignment {
            owner: Some(id("a")),
            epoch: Epoch(epoch),
            isr: isr.iter().map(|n| id(n)).collect(),
            version,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<MemberId> {
        names.iter().map(|n| id(n)).collect()
    }

    #[test]
    fn a_write_waits_for_every_committed_isr_member() {
        let mut isr = OwnerIsr::new(PartitionId(3), id("a"), &assignment(2, 4, &["a", "b", "c"]));
        assert_eq!(isr.required(), set(&["b", "c"]));
        assert_eq!(isr.decide(Seq(5), &set(&["b", "c"])), Decision::Ack);
        let Decision::Shrink { shrink, dropped } = isr.decide(Seq(6), &set(&["b"])) else {
            panic!("a missing ISR member must be shrunk away first");
        };
        assert_eq!(dropped, vec![id("c")]);
        assert_eq!(
            shrink,
            Command::SetIsr {
                partition: PartitionId(3),
                epoch: Epoch(2),
                version: 4,
                isr: vec![id("a"), id("b")],
            }
        );
        // Committed: now the write stands without c.
        isr.observe(&assignment(2, 5, &["a", "b"]));
        assert_eq!(isr.decide(Seq(6), &set(&["b"])), Decision::Ack);
    }

    #[test]
    fn a_minimum_of_in_sync_copies_refuses_rather_than_shrink_below_it() {
        let a = assignment(1, 1, &["a", "b"]);
        let mut isr = OwnerIsr::with_min_insync(PartitionId(0), id("a"), &a, 2);
        assert_eq!(isr.decide(Seq(1), &set(&["b"])), Decision::Ack);
        assert_eq!(
            isr.decide(Seq(2), &set(&[])),
            Decision::TooFew {
                in_sync: 2,
                min_insync: 2
            },
            "dropping b would leave one copy"
        );
        // An ISR already down to the owner takes no write at all.
        let mut alone =
            OwnerIsr::with_min_insync(PartitionId(0), id("a"), &assignment(1, 2, &["a"]), 2);
        assert!(matches!(
            alone.decide(Seq(1), &set(&[])),
            Decision::TooFew { in_sync: 1, .. }
        ));
        // The default, 1, shrinks instead.
        let mut shrinks = OwnerIsr::new(PartitionId(0), id("a"), &a);
        assert!(matches!(
            shrinks.decide(Seq(2), &set(&[])),
            Decision::Shrink { .. }
        ));
    }

    #[test]
    fn a_newer_epoch_or_owner_deposes() {
        let mut isr = OwnerIsr::new(PartitionId(0), id("a"), &assignment(2, 4, &["a", "b"]));
        isr.observe(&assignment(3, 5, &["a", "b"]));
        assert_eq!(isr.decide(Seq(1), &set(&["b"])), Decision::Deposed);
        assert_eq!(isr.confirmed(&id("c"), Seq(9)), None);
    }

    #[test]
    fn a_backup_enters_only_after_confirming_everything_acknowledged() {
        let mut isr = OwnerIsr::new(PartitionId(0), id("a"), &assignment(1, 1, &["a"]));
        assert_eq!(isr.decide(Seq(10), &set(&[])), Decision::Ack);
        // c confirms an old position: it becomes a candidate, not a member.
        assert_eq!(isr.confirmed(&id("c"), Seq(4)), None);
        assert!(isr.is_required(&id("c")), "a candidate is waited for");
        assert_eq!(
            isr.confirmed(&id("c"), Seq(9)),
            None,
            "behind what was acknowledged"
        );
        let expand = isr.confirmed(&id("c"), Seq(10)).unwrap();
        assert_eq!(
            expand,
            Command::SetIsr {
                partition: PartitionId(0),
                epoch: Epoch(1),
                version: 1,
                isr: vec![id("a"), id("c")],
            }
        );
        // Proposed, not committed: a write c misses needs a committed shrink.
        assert!(matches!(
            isr.decide(Seq(11), &set(&[])),
            Decision::Shrink { .. }
        ));
    }

    #[test]
    fn a_candidate_that_fails_is_dropped_without_a_commit() {
        let mut isr = OwnerIsr::new(PartitionId(0), id("a"), &assignment(1, 1, &["a"]));
        isr.confirmed(&id("c"), Seq(0));
        assert_eq!(isr.decide(Seq(3), &set(&[])), Decision::Ack);
        assert!(!isr.is_required(&id("c")));
    }

    #[test]
    fn a_proposal_overtaken_by_a_later_version_stops_being_waited_for() {
        let mut isr = OwnerIsr::new(PartitionId(0), id("a"), &assignment(1, 1, &["a", "b"]));
        isr.confirmed(&id("c"), Seq(0));
        assert!(isr.confirmed(&id("c"), Seq(0)).is_some());
        // Version 2 committed without c (say, b dropped): the proposal from
        // version 1 can never apply.
        isr.observe(&assignment(1, 2, &["a"]));
        assert!(!isr.is_required(&id("c")));
        assert_eq!(isr.decide(Seq(1), &set(&[])), Decision::Ack);
        // Committed with c instead: c is an ordinary ISR member.
        let mut isr = OwnerIsr::new(PartitionId(0), id("a"), &assignment(1, 1, &["a"]));
        isr.confirmed(&id("c"), Seq(0));
        isr.confirmed(&id("c"), Seq(0));
        isr.observe(&assignment(1, 2, &["a", "c"]));
        assert_eq!(isr.required(), set(&["c"]));
    }
}
