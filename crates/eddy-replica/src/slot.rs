//! What a node holds of one partition: the copy, the role, the fence, and
//! (as owner) which backups follow its log.

use std::time::Instant;

use eddy_cluster::{NodeId, NodeIdentity};
use eddy_core::{Epoch, Partition, SnapshotReader};

use crate::role::Role;
use crate::stream::{Received, Receiving, receive};

/// One partition as held by this node.
pub struct Slot {
    /// The copy; `None` while incoming without one.
    pub partition: Option<Partition>,
    /// The role.
    pub role: Role,
    /// Backups known to hold this owner's log up to the last shipped entry
    /// (they got a snapshot at some point, then every entry), by name and
    /// generation: a restarted backup holds nothing, whatever its name. A
    /// backup not in here is sent a snapshot before anything else.
    pub synced: Vec<(NodeId, u64)>,
    /// A snapshot stream being received.
    pub(crate) receiving: Option<Receiving>,
    /// Bytes in this copy's write-ahead log on disk (with `data_dir`).
    pub wal_bytes: u64,
    /// The newest owner epoch heard of from a peer (a deposing `Replicate`,
    /// or a backup's `Stale` answer) when the copy could not follow it
    /// yet: a copy learns an epoch only from applied entries, and a
    /// configuration that is behind must not make this node serve below it.
    pub seen: Epoch,
}

/// How an owner's next entries reach one backup of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Not live in this node's view: the entries are not on it, so they
    /// are not acknowledged until the table drops it — never with fewer
    /// copies than the table says.
    Unreachable,
    /// It follows this owner's log: the entries.
    Entries,
    /// It does not (new, restarted, or it lost track): the copy's snapshot
    /// first, which the entries are part of.
    Snapshot,
}

/// The epoch below which this node refuses anything for a partition: its
/// slot's fence, or the committed configuration's epoch (a node with no
/// copy, none yet or one lost with a failed worker, has no fence of its
/// own). A message from below it comes from a deposed owner.
pub fn fence(slot: Option<&Slot>, committed: Epoch) -> Epoch {
    slot.map_or(Epoch(0), Slot::fence).max(committed)
}

impl Slot {
    /// An empty slot in `role`.
    pub fn new(role: Role) -> Slot {
        Slot {
            partition: None,
            role,
            synced: Vec::new(),
            receiving: None,
            wal_bytes: 0,
            seen: Epoch(0),
        }
    }

    /// The epoch below which this copy refuses anything: its own, or a
    /// newer one heard of from a deposing owner.
    pub fn fence(&self) -> Epoch {
        self.partition
            .as_ref()
            .map_or(Epoch(0), Partition::epoch)
            .max(self.seen)
    }

    /// Whether this node may start serving at `epoch`, which a committed
    /// configuration gives it. Not below the fence: a node that resumed
    /// from a pause still reads the configuration from before it, which
    /// may name it owner at an epoch another node has owned since; its
    /// copy already follows that owner (at that owner's epoch), and
    /// promoting it would put two owners on one epoch, each writing its
    /// own log at the same positions.
    pub fn may_take(&self, epoch: Epoch) -> bool {
        epoch >= self.fence()
    }

    /// Feeds one chunk of a snapshot stream that came on peer connection
    /// `link` at the sender's `epoch`; a first chunk starts a new stream
    /// with `reader`.
    pub fn receive(
        &mut self,
        stream: (u64, Epoch),
        chunk: &[u8],
        last: bool,
        reader: impl FnOnce() -> SnapshotReader,
    ) -> Received {
        receive(&mut self.receiving, stream, chunk, last, reader)
    }

    /// The partition if this node is its serving owner.
    pub fn owned(&mut self) -> Option<&mut Partition> {
        match self.role {
            Role::Owner => self.partition.as_mut(),
            _ => None,
        }
    }

    /// Whether `backup` (this incarnation) follows this owner's log.
    pub fn follows(&self, backup: &NodeIdentity) -> bool {
        self.synced
            .iter()
            .any(|(name, generation)| *name == backup.name && *generation == backup.generation)
    }

    /// Owner side: how the next entries reach `backup`, a backup of the
    /// table, as this node's view has it (`None`: not live).
    pub fn route(&self, backup: Option<&NodeIdentity>) -> Route {
        match backup {
            None => Route::Unreachable,
            Some(backup) if self.follows(backup) => Route::Entries,
            Some(_) => Route::Snapshot,
        }
    }

    /// Owner side: `backup` took a snapshot of the copy; it follows the
    /// log from here.
    pub fn snapshot_sent(&mut self, backup: &NodeIdentity) {
        if !self.follows(backup) {
            self.synced.push((backup.name.clone(), backup.generation));
        }
    }

    /// Owner side: `backup` may have missed entries (a frame lost with its
    /// connection, an answer saying it is behind, an operator's resync):
    /// it gets a snapshot next.
    pub fn lost_track(&mut self, backup: &NodeId) {
        self.synced.retain(|(name, _)| name != backup);
    }

    /// Owner side, on a new table: forgets followers that are no longer
    /// `backups`, and says whether any of `backups` does not follow yet (it
    /// must get the partition now, not at the next write, or acknowledged
    /// writes would rest on fewer copies until then).
    pub fn keep_followers(&mut self, backups: &[&NodeIdentity]) -> bool {
        self.synced.retain(|(name, generation)| {
            backups
                .iter()
                .any(|b| b.name == *name && b.generation == *generation)
        });
        backups.iter().any(|b| !self.follows(b))
    }

    /// Becomes the owner at `epoch` (at least), with no backup synced yet.
    pub fn promote(&mut self, partition: Partition, epoch: Epoch) {
        let mut partition = partition;
        partition.set_epoch(epoch);
        self.partition = Some(partition);
        self.role = Role::Owner;
        self.synced.clear();
    }

    /// Stops serving (if this node does), and says whether it did: the
    /// slot becomes `Incoming` if the table names this node owner (`ours`:
    /// the ownership task takes it again once the committed configuration
    /// gives it at a newer epoch), else `Backup`.
    pub fn stand_down(&mut self, ours: bool) -> bool {
        if self.role != Role::Owner {
            return false;
        }
        self.role = if ours { Role::Incoming } else { Role::Backup };
        true
    }

    /// Another node owns the partition at `by`, newer than this node knew:
    /// remembered as the fence, and this node stops serving.
    pub fn deposed(&mut self, by: Epoch, ours: bool) -> bool {
        self.seen = self.seen.max(by);
        self.stand_down(ours)
    }

    /// Whether a retired copy may be dropped at `now`: never while the
    /// committed configuration counts it in sync (`in_isr`), since elected
    /// next this node must find it.
    pub fn may_drop(&self, now: Instant, in_isr: bool) -> bool {
        matches!(self.role, Role::Retiring { until } if now >= until) && !in_isr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::copy_at;

    #[test]
    fn a_stale_configuration_never_promotes_below_the_copys_epoch() {
        // Resumed from a pause, the node's configuration still names it
        // owner at epoch 1, but its copy already follows the owner of 2.
        let mut slot = Slot::new(Role::Incoming);
        slot.partition = Some(copy_at(2));
        assert!(!slot.may_take(Epoch(1)));
        assert!(slot.may_take(Epoch(2)), "the epoch the copy was elected at");
        assert!(slot.may_take(Epoch(3)));
    }

    #[test]
    fn a_backup_gets_a_snapshot_until_it_follows_and_again_once_it_lost_track() {
        let mut owner = Slot::new(Role::Owner);
        owner.partition = Some(copy_at(1));
        let backup = eddy_cluster::testing::identity("b", 2);
        assert_eq!(owner.route(None), Route::Unreachable);
        assert_eq!(owner.route(Some(&backup)), Route::Snapshot);
        owner.snapshot_sent(&backup);
        owner.snapshot_sent(&backup);
        assert_eq!(owner.synced.len(), 1);
        assert_eq!(owner.route(Some(&backup)), Route::Entries);
        // Restarted: a new generation holds nothing, whatever its name.
        let mut restarted = backup.clone();
        restarted.generation += 1;
        assert_eq!(owner.route(Some(&restarted)), Route::Snapshot);
        owner.lost_track(&backup.name);
        assert_eq!(owner.route(Some(&backup)), Route::Snapshot);
    }

    #[test]
    fn an_epoch_heard_from_a_deposing_owner_fences_takes_too() {
        // Deposed by a `Replicate` of epoch 4 its copy could not apply:
        // the copy still says 1.
        let mut slot = Slot::new(Role::Owner);
        slot.partition = Some(copy_at(1));
        assert!(slot.deposed(Epoch(4), true));
        assert_eq!(slot.role, Role::Incoming, "the table still names us");
        assert_eq!(slot.fence(), Epoch(4));
        assert!(!slot.may_take(Epoch(1)));
        assert!(!slot.may_take(Epoch(3)));
        assert!(slot.may_take(Epoch(5)));
        // Without a copy, only the heard epoch counts.
        let mut empty = Slot::new(Role::Incoming);
        assert!(empty.may_take(Epoch(1)));
        assert!(!empty.deposed(Epoch(2), false), "it was not serving");
        assert!(!empty.may_take(Epoch(1)));
    }

    #[test]
    fn the_committed_epoch_fences_a_node_without_a_copy() {
        assert_eq!(fence(None, Epoch(3)), Epoch(3));
        let mut slot = Slot::new(Role::Backup);
        slot.partition = Some(copy_at(5));
        assert_eq!(fence(Some(&slot), Epoch(3)), Epoch(5));
        assert_eq!(fence(Some(&slot), Epoch(6)), Epoch(6));
    }

    #[test]
    fn a_retired_copy_is_kept_while_it_counts_in_sync() {
        let now = Instant::now();
        let mut slot = Slot::new(Role::Retiring { until: now });
        assert!(!slot.may_drop(now, true));
        assert!(slot.may_drop(now, false));
        slot.role = Role::Backup;
        assert!(!slot.may_drop(now, false), "only a retired copy");
    }
}
