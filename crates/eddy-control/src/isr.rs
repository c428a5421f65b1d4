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

/// How many in-sync copies (the owner's included) a write needs:
/// `min_insync_replicas`, Kafka's `min.insync.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinInsync {
    /// Two wherever the cluster can hold two: `min(2, replication factor,
    /// committed members not draining)`. A write then never rests on one copy, so no
    /// single lost node or disk loses it — even after a backup that was
    /// merely slow was shrunk out — while a deliberate one-node cluster
    /// (or `replication_factor = 1`) still takes writes.
    #[default]
    Auto,
    /// Exactly this many, whatever the cluster's size (1 lets an owner
    /// acknowledge alone).
    Exactly(usize),
}

impl MinInsync {
    /// The copies a write needs in a cluster of `members` committed members
    /// keeping `replication` copies of each partition; at least 1.
    pub fn copies(self, replication: usize, members: usize) -> usize {
        match self {
            MinInsync::Auto => 2.min(replication).min(members).max(1),
            MinInsync::Exactly(copies) => copies.max(1),
        }
    }
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
        /// Of them, those holding the write (the owner and the backups
        /// that confirmed).
        holding: usize,
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
    /// Committed backups this owner finds silent (`crate::reach`): an
    /// expansion leaves them out, as long as `min_insync` copies remain.
    silent: BTreeSet<MemberId>,
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
            silent: BTreeSet::new(),
        };
        isr.observe(assignment);
        isr
    }

    /// From now on a write needs `min_insync` copies (the committed member
    /// count, which [`MinInsync::Auto`] follows, can change under one
    /// ownership).
    pub fn set_min_insync(&mut self, min_insync: usize) {
        self.min_insync = min_insync.max(1);
    }

    /// The backups this owner finds silent now. A substitute's expansion
    /// then drops them in the same commit: proposed as a plain expansion,
    /// the controller's planner (whose ring still places the silent one)
    /// would trim the substitute again before the owner's shrink.
    pub fn set_silent(&mut self, silent: BTreeSet<MemberId>) {
        self.silent = silent;
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

    /// `Some(TooFew)` if the committed ISR itself is below `min_insync`:
    /// no write can stand, so one is refused before it is applied (a
    /// refusal after applying leaves the write on the owner, for a retry
    /// without producer id to apply again).
    pub fn short_of_copies(&self) -> Option<Decision> {
        (!self.deposed && self.committed.len() < self.min_insync).then(|| Decision::TooFew {
            in_sync: self.committed.len(),
            holding: self.committed.len(),
            min_insync: self.min_insync,
        })
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
                holding: isr.len(),
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
                // Dropping members is always safe (this owner holds every
                // acknowledged write); only the copies kept must hold them.
                let mut isr: Vec<MemberId> = self
                    .committed
                    .iter()
                    .filter(|m| **m == self.me || !self.silent.contains(*m))
                    .cloned()
                    .collect();
                if isr.len() + 1 < self.min_insync {
                    isr = self.committed.clone();
                }
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

    /// The expansion of `member` proposed from version `at` was not
    /// committed in time: lost with a leader, or on a connection that
    /// broke. Nothing else would propose it again while the assignment
    /// stays at that version, and under `min_insync_replicas` a partition
    /// short of copies waits for exactly this expansion. So `member` is a
    /// candidate again, from what is acknowledged now, and its next
    /// confirmation proposes it anew. A late commit of the lost proposal
    /// is harmless: the new one names the same version and is rejected.
    pub fn expansion_lost(&mut self, member: &MemberId, at: u64) {
        if let Some(joining) = self.joining.get_mut(member)
            && *joining == (Joining::Proposed { at })
        {
            *joining = Joining::Candidate { since: self.acked };
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
                holding: 1,
                min_insync: 2
            },
            "dropping b would leave one copy"
        );
        // An ISR already down to the owner takes no write at all, and says
        // so before one is applied.
        let mut alone =
            OwnerIsr::with_min_insync(PartitionId(0), id("a"), &assignment(1, 2, &["a"]), 2);
        assert!(alone.short_of_copies().is_some());
        assert!(isr.short_of_copies().is_none());
        assert!(matches!(
            alone.decide(Seq(1), &set(&[])),
            Decision::TooFew { in_sync: 1, .. }
        ));
        // 1 shrinks instead.
        let mut shrinks = OwnerIsr::new(PartitionId(0), id("a"), &a);
        assert!(matches!(
            shrinks.decide(Seq(2), &set(&[])),
            Decision::Shrink { .. }
        ));
    }

    #[test]
    fn auto_asks_two_copies_wherever_the_cluster_can_hold_two() {
        assert_eq!(MinInsync::Auto.copies(2, 3), 2);
        assert_eq!(MinInsync::Auto.copies(3, 5), 2);
        // A deliberate one-node cluster, or one copy per partition.
        assert_eq!(MinInsync::Auto.copies(2, 1), 1);
        assert_eq!(MinInsync::Auto.copies(1, 3), 1);
        assert_eq!(MinInsync::Exactly(1).copies(2, 3), 1);
        assert_eq!(MinInsync::Exactly(2).copies(2, 1), 2);
        // An owner under Auto in a 3-node cluster never shrinks to itself.
        let mut isr = OwnerIsr::with_min_insync(
            PartitionId(0),
            id("a"),
            &assignment(1, 1, &["a", "b"]),
            MinInsync::Auto.copies(2, 3),
        );
        assert!(matches!(
            isr.decide(Seq(1), &set(&[])),
            Decision::TooFew { min_insync: 2, .. }
        ));
        isr.set_min_insync(MinInsync::Auto.copies(2, 1));
        assert!(matches!(
            isr.decide(Seq(1), &set(&[])),
            Decision::Shrink { .. }
        ));
    }

    #[test]
    fn a_substitute_replaces_a_silent_backup_in_one_commit_but_never_below_the_minimum() {
        let a = assignment(1, 1, &["a", "b"]);
        let mut isr = OwnerIsr::with_min_insync(PartitionId(0), id("a"), &a, 2);
        isr.set_silent(set(&["b"]));
        assert_eq!(isr.confirmed(&id("c"), Seq(0)), None, "a candidate first");
        let Some(Command::SetIsr { isr: swapped, .. }) = isr.confirmed(&id("c"), Seq(0)) else {
            panic!("no expansion");
        };
        assert_eq!(swapped, vec![id("a"), id("c")]);
        // With three copies asked for, the silent one stays until a shrink.
        let mut three = OwnerIsr::with_min_insync(PartitionId(0), id("a"), &a, 3);
        three.set_silent(set(&["b"]));
        three.confirmed(&id("c"), Seq(0));
        let Some(Command::SetIsr { isr: grown, .. }) = three.confirmed(&id("c"), Seq(0)) else {
            panic!("no expansion");
        };
        assert_eq!(grown, vec![id("a"), id("b"), id("c")]);
    }

    #[test]
    fn a_lost_expansion_is_proposed_again_at_the_next_confirmation() {
        let a = assignment(1, 1, &["a", "b"]);
        let mut isr = OwnerIsr::with_min_insync(PartitionId(0), id("a"), &a, 2);
        isr.set_silent(set(&["b"]));
        isr.confirmed(&id("c"), Seq(0));
        let first = isr.confirmed(&id("c"), Seq(0));
        assert!(first.is_some(), "proposed");
        // Not committed, and nothing else changed the assignment: without
        // word of the loss it would never be proposed again.
        assert_eq!(isr.confirmed(&id("c"), Seq(0)), None);
        // Word of a loss from another version changes nothing.
        isr.expansion_lost(&id("c"), 7);
        assert_eq!(isr.confirmed(&id("c"), Seq(0)), None);
        isr.expansion_lost(&id("c"), 1);
        assert_eq!(isr.confirmed(&id("c"), Seq(0)), first);
        // Still required meanwhile: writes wait for it.
        assert!(isr.is_required(&id("c")));
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
