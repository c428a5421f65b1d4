//! Roles from the committed configuration: what a new table does to a
//! slot, and when a node may take a partition over.

use std::time::Instant;

use eddy_cluster::{NodeId, PartitionTable};
use eddy_core::{Epoch, Partition, PartitionId, Seq};

use crate::role::{Role, role_after_table};
use crate::slot::Slot;

/// What this node reads about one partition in a new configuration.
pub struct Placement<'a> {
    /// The partition table (placement over the committed members).
    pub table: &'a PartitionTable,
    /// This node.
    pub local: &'a NodeId,
    /// The partition's committed epoch.
    pub committed: Epoch,
    /// This node is in the partition's committed ISR, and that ISR is
    /// still the first one, changed since by elections only
    /// (`eddy_control::Assignment::is_first_isr`).
    pub in_first_isr: bool,
}

/// What a configuration did to a slot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// This node stopped serving the partition.
    pub stopped_owning: bool,
    /// An empty copy was made to be held from the start: it goes to the
    /// log (with `data_dir`) as the partition's snapshot.
    pub held_empty: bool,
}

/// Applies `placement` to `partition`'s slot. The table only demotes or
/// marks `Incoming` ([`role_after_table`]); an owner serving below the
/// committed epoch (re-elected after it was deposed unseen, paused past
/// the failure timeout) becomes `Incoming` too, to take the partition
/// again at that epoch.
///
/// A member of the partition's first ISR with no copy holds an empty one
/// (unless it is `untrusted`: its worker lost what it held, or its copy on
/// disk was damaged), so that elected it finds one: it has been in the ISR
/// since before any owner, every acknowledgement needed its confirmation,
/// and a confirmation needs a copy, on its disk before the confirmation.
/// Only the first ISR: a member that entered later did so by confirming
/// what was acknowledged, and one without a copy then lost it (an
/// expansion committed after a worker failure, a copy retired on a stale
/// view) — it must not pass for empty. The epoch does not matter: this
/// node may never have seen the first owner's configuration (a view that
/// skipped it), and the first owner may have died before taking.
pub fn apply_placement(
    slot: &mut Option<Slot>,
    partition: PartitionId,
    placement: &Placement<'_>,
    now: Instant,
    untrusted: bool,
    fresh: impl FnOnce() -> Partition,
) -> Placed {
    let current = slot.as_ref().map(|s| s.role);
    let mut next = role_after_table(current, placement.table, partition, placement.local, now);
    let serving = slot
        .as_ref()
        .and_then(|s| s.partition.as_ref())
        .map(Partition::epoch);
    if next == Some(Role::Owner) && serving.is_some_and(|e| e < placement.committed) {
        next = Some(Role::Incoming);
    }
    let mut placed = Placed::default();
    match (slot.as_mut(), next) {
        (Some(held), Some(role)) => {
            placed.stopped_owning = held.role == Role::Owner && role != Role::Owner;
            held.role = role;
        }
        (None, Some(role)) => *slot = Some(Slot::new(role)),
        (_, None) => {}
    }
    let holds = slot.as_ref().is_some_and(|s| s.partition.is_some());
    if placement.in_first_isr && next != Some(Role::Owner) && !holds && !untrusted {
        slot.get_or_insert_with(|| Slot::new(Role::Backup))
            .partition = Some(fresh());
        placed.held_empty = true;
    }
    placed
}

/// What asking to take a partition over came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// This node serves it now.
    Taken {
        /// From its own copy (else from an empty one, to be written to the
        /// log before any write).
        had_copy: bool,
        /// The copy's position.
        seq: Seq,
    },
    /// The copy here is one this node cannot vouch for (damaged on disk,
    /// or lost with a failed worker): not served until an owner's snapshot
    /// replaced it.
    Untrusted,
    /// The configuration this node reads now does not give it the
    /// partition at that epoch, or a newer owner is known (the fence).
    Stale {
        /// Whether the configuration gives it this node at that epoch.
        committed_here: bool,
        /// The slot's fence.
        fence: Epoch,
    },
    /// Elected from the ISR (past the first epoch) with no copy here: a
    /// member that lost its copy, or never held it (its view skipped the
    /// first ISR's configurations). The caller treats it as untrusted:
    /// this node hands the partition over ([`crate::give_up`]) and rejoins
    /// the ISR once an owner's snapshot gave it a copy.
    NoCopy,
}

/// Takes `slot`'s partition over at `epoch`, which the ownership task read
/// in the committed configuration; `committed_here` is whether the
/// configuration this node reads *now* still gives it the partition at
/// that epoch.
///
/// Only a partition's first owner (epoch 1) starts from an empty copy:
/// nothing was written before it. Every later owner was elected from the
/// ISR, whose copies hold every acknowledged write, so it takes nothing
/// without one — a first-ISR member's empty copy is one
/// ([`apply_placement`]).
pub fn take(
    slot: &mut Option<Slot>,
    epoch: Epoch,
    committed_here: bool,
    untrusted: bool,
    fresh: impl FnOnce() -> Partition,
) -> Take {
    if untrusted {
        return Take::Untrusted;
    }
    if !committed_here || !slot.as_ref().is_none_or(|s| s.may_take(epoch)) {
        return Take::Stale {
            committed_here,
            fence: slot.as_ref().map_or(Epoch(0), Slot::fence),
        };
    }
    let held = slot.get_or_insert_with(|| Slot::new(Role::Incoming));
    let had_copy = held.partition.is_some();
    if epoch > Epoch(1) && !had_copy {
        return Take::NoCopy;
    }
    let copy = held.partition.take().unwrap_or_else(fresh);
    let seq = copy.last_seq();
    held.promote(copy, epoch);
    Take::Taken { had_copy, seq }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{copy_at, with_entries};

    fn table(nodes: &[&str]) -> PartitionTable {
        let names: Vec<NodeId> = nodes.iter().map(|n| NodeId::new(n)).collect();
        PartitionTable::compute(&names, 64, 2)
    }

    /// A partition `local` owns, and one it backs up, in `t`.
    fn ranks(t: &PartitionTable, local: &NodeId) -> (PartitionId, PartitionId) {
        let of = |rank: usize| {
            (0..64)
                .map(PartitionId)
                .find(|p| t.replicas(*p).position(|n| n == local) == Some(rank))
        };
        match (of(0), of(1)) {
            (Some(owned), Some(backed)) => (owned, backed),
            _ => panic!("64 partitions over 3 nodes give each both roles"),
        }
    }

    #[test]
    fn an_owner_serving_below_the_committed_epoch_takes_it_again() {
        let t = table(&["a", "b", "c"]);
        let a = NodeId::new("a");
        let (owned, _) = ranks(&t, &a);
        let mut slot = Some(Slot::new(Role::Owner));
        if let Some(s) = slot.as_mut() {
            s.partition = Some(copy_at(2));
        }
        let placement = |committed| Placement {
            table: &t,
            local: &a,
            committed: Epoch(committed),
            in_first_isr: false,
        };
        let now = Instant::now();
        let placed = apply_placement(&mut slot, owned, &placement(2), now, false, || copy_at(0));
        assert_eq!(placed, Placed::default());
        assert_eq!(slot.as_ref().map(|s| s.role), Some(Role::Owner));
        let placed = apply_placement(&mut slot, owned, &placement(4), now, false, || copy_at(0));
        assert!(placed.stopped_owning);
        assert_eq!(slot.as_ref().map(|s| s.role), Some(Role::Incoming));
    }

    #[test]
    fn a_first_isr_member_without_a_copy_holds_an_empty_one_at_any_epoch_unless_untrusted() {
        let t = table(&["a", "b", "c"]);
        let a = NodeId::new("a");
        let (_, backed) = ranks(&t, &a);
        // Epoch 3: this node's view skipped the first owners' epochs.
        let placement = Placement {
            table: &t,
            local: &a,
            committed: Epoch(3),
            in_first_isr: true,
        };
        let now = Instant::now();
        let mut slot = None;
        let placed = apply_placement(&mut slot, backed, &placement, now, false, || copy_at(0));
        assert!(placed.held_empty);
        assert!(slot.as_ref().is_some_and(|s| s.partition.is_some()));
        let mut lost = None;
        let placed = apply_placement(&mut lost, backed, &placement, now, true, || copy_at(0));
        assert!(!placed.held_empty, "a failed worker's share is not faked");
        assert!(lost.is_none());
        // A copy already held is kept as it is.
        let mut held = Some(Slot::new(Role::Backup));
        if let Some(s) = held.as_mut() {
            s.partition = Some(with_entries(1, 2));
        }
        let placed = apply_placement(&mut held, backed, &placement, now, false, || copy_at(0));
        assert!(!placed.held_empty);
        assert_eq!(
            held.and_then(|s| s.partition).map(|p| p.last_seq()),
            Some(Seq(2))
        );
    }

    #[test]
    fn a_take_needs_the_committed_epoch_a_copy_and_trust() {
        let mut none = None;
        assert_eq!(
            take(&mut none, Epoch(2), true, false, || copy_at(0)),
            Take::NoCopy
        );
        assert_eq!(
            take(&mut None, Epoch(2), true, true, || copy_at(0)),
            Take::Untrusted
        );
        let mut slot = Some(Slot::new(Role::Backup));
        if let Some(s) = slot.as_mut() {
            s.partition = Some(with_entries(3, 4));
        }
        assert_eq!(
            take(&mut slot, Epoch(4), false, false, || copy_at(0)),
            Take::Stale {
                committed_here: false,
                fence: Epoch(3)
            }
        );
        assert_eq!(
            take(&mut slot, Epoch(2), true, false, || copy_at(0)),
            Take::Stale {
                committed_here: true,
                fence: Epoch(3)
            },
            "never below the copy's epoch"
        );
        assert_eq!(
            take(&mut slot, Epoch(4), true, false, || copy_at(0)),
            Take::Taken {
                had_copy: true,
                seq: Seq(4)
            }
        );
        let taken = slot.as_ref().and_then(|s| s.partition.as_ref());
        assert_eq!(taken.map(Partition::epoch), Some(Epoch(4)));
        // A partition's first owner starts from an empty copy.
        let mut first = None;
        assert_eq!(
            take(&mut first, Epoch(1), true, false, || copy_at(0)),
            Take::Taken {
                had_copy: false,
                seq: Seq(0)
            }
        );
        assert_eq!(first.map(|s| s.role), Some(Role::Owner));
    }
}
