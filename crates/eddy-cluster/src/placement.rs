//! The partition table a node acts on, with an epoch per partition.
//!
//! [`Placement`] holds the table and epochs the committed cluster
//! configuration decided (eddy-control), and a version that rises with
//! every change, so readers can tell a new table from the one they hold.

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

    /// Adopts a table and epochs decided elsewhere (the committed cluster
    /// configuration); returns every partition whose replica set changed.
    /// Epochs are taken as given: the controller only ever raises them.
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
    fn an_assigned_table_and_epochs_bump_the_version_only_when_they_change() {
        let mut placement = Placement::new(&names(&["a"]), 64, 2);
        assert_eq!(placement.version(), 1);
        let table = PartitionTable::compute(&names(&["a", "b"]), 64, 2);
        let epochs: Vec<u64> = (0..64).map(|p| 1 + p % 3).collect();
        let moves = placement.assign(table.clone(), epochs.clone());
        assert_eq!(placement.version(), 2);
        assert!(!moves.is_empty());
        assert_eq!(placement.epoch(PartitionId(5)), Epoch(3));
        assert!(placement.assign(table, epochs).is_empty());
        assert_eq!(placement.version(), 2, "the same table and epochs");
        assert_eq!(placement.epoch(PartitionId(64)), Epoch(0));
    }
}
