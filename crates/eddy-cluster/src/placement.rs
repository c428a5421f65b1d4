//! The partition table a node acts on, with an epoch per partition.
//!
//! [`PartitionTable`] is a pure function of the live members; [`Placement`]
//! adds history: every time a partition's owner changes its epoch rises by
//! one (DESIGN §6), so entries and answers can say which ownership they
//! belong to. Epochs here are what this node has observed; issue 6's fencing
//! makes the owner's epoch authoritative through replication.

use eddy_core::{Epoch, PartitionId};

use crate::identity::NodeId;
use crate::table::{PartitionMove, PartitionTable};

/// The current table, its per-partition epochs and a version that rises on
/// every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    table: PartitionTable,
    epochs: Vec<u64>,
    rf: usize,
    version: u64,
}

impl Placement {
    /// The placement of `members` at version 1, every partition at epoch 1.
    pub fn new(members: &[NodeId], partitions: u32, rf: usize) -> Placement {
        let table = PartitionTable::compute(members, partitions, rf);
        Placement {
            epochs: vec![1; table.partitions() as usize],
            table,
            rf,
            version: 1,
        }
    }

    /// Recomputes the table for `members`. Partitions whose owner changed get
    /// the next epoch; returns every partition whose replica set changed.
    pub fn update(&mut self, members: &[NodeId]) -> Vec<PartitionMove> {
        let table = PartitionTable::compute(members, self.table.partitions(), self.rf);
        let moves = PartitionTable::diff(&self.table, &table);
        for moved in moves.iter().filter(|m| m.owner_changed()) {
            if let Some(epoch) = self.epochs.get_mut(moved.partition.0 as usize) {
                *epoch += 1;
            }
        }
        if !moves.is_empty() || table.nodes() != self.table.nodes() {
            self.version += 1;
        }
        self.table = table;
        moves
    }

    /// Adopts a table and epochs decided elsewhere (the committed cluster
    /// configuration) instead of the ring over live members; returns every
    /// partition whose replica set changed. Epochs are taken as given:
    /// the controller only ever raises them.
    pub fn assign(&mut self, table: PartitionTable, epochs: Vec<u64>) -> Vec<PartitionMove> {
        let moves = PartitionTable::diff(&self.table, &table);
        if !moves.is_empty() || table.nodes() != self.table.nodes() || epochs != self.epochs {
            self.version += 1;
        }
        self.table = table;
        self.epochs = epochs;
        moves
    }

    /// The table.
    pub fn table(&self) -> &PartitionTable {
        &self.table
    }

    /// The epoch of `partition` (0 for a partition outside the table).
    pub fn epoch(&self, partition: PartitionId) -> Epoch {
        Epoch(self.epochs.get(partition.0 as usize).copied().unwrap_or(0))
    }

    /// Rises with every change of the table.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Replication factor asked for (the table holds fewer replicas while
    /// there are fewer live nodes).
    pub fn rf(&self) -> usize {
        self.rf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<NodeId> {
        list.iter().map(|n| NodeId::new(n)).collect()
    }

    #[test]
    fn owner_changes_bump_epochs_and_nothing_else_does() {
        let mut placement = Placement::new(&names(&["a", "b", "c"]), 64, 2);
        assert_eq!(placement.version(), 1);
        assert!(placement.update(&names(&["a", "b", "c"])).is_empty());
        assert_eq!(placement.version(), 1, "same members, same version");

        let before = placement.table().clone();
        let moves = placement.update(&names(&["a", "b"]));
        assert_eq!(placement.version(), 2);
        for p in (0..64).map(PartitionId) {
            let owner_moved = before.owner(p) != placement.table().owner(p);
            assert_eq!(placement.epoch(p), Epoch(if owner_moved { 2 } else { 1 }));
            assert_eq!(
                moves.iter().any(|m| m.partition == p),
                before.replicas(p).ne(placement.table().replicas(p))
            );
        }
        assert!(
            moves.iter().any(PartitionMove::owner_changed),
            "c owned some partitions"
        );
        assert_eq!(placement.epoch(PartitionId(64)), Epoch(0));
    }
}
