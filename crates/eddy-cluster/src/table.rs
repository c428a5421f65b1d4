//! The partition table: for every partition its replica set `[owner,
//! backup1, ...]`, a pure function of the live member names.
//!
//! Computed once per membership change (P × rf ring walks, never on the hot
//! path; DESIGN §6) from [`crate::MembershipView::live_nodes`]. Every node that
//! sees the same live set computes the same table, whatever the order or
//! duplicates of its input; [`PartitionTable::fingerprint`] lets nodes (and a
//! pinned test) compare tables cheaply. [`PartitionTable::diff`] says what a
//! membership change moves, so handoff moves only what the ring moved
//! (DESIGN §11, rebalance storms).

use eddy_core::PartitionId;
use xxhash_rust::xxh3::Xxh3;

use crate::identity::NodeId;
use crate::ring::{DEFAULT_VNODES, Ring, partition_point};

/// A node's place in one partition's replica set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// First in the replica set: assigns sequence numbers and acks.
    Owner,
    /// A backup; `rank` 1 is the first to promote when the owner dies.
    Backup {
        /// Position in the replica set, 1-based.
        rank: u8,
    },
}

/// One partition whose replica set differs between two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    /// The partition.
    pub partition: PartitionId,
    /// Its replica set in the old table (owner first).
    pub from: Vec<NodeId>,
    /// Its replica set in the new table (owner first).
    pub to: Vec<NodeId>,
}

impl PartitionMove {
    /// Whether the owner changed (an epoch bump and a handoff or failover),
    /// rather than only backups.
    pub fn owner_changed(&self) -> bool {
        self.from.first() != self.to.first()
    }
}

/// Replica sets of all partitions for one membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    partitions: u32,
    /// Replicas per partition: `min(rf, nodes)` for a ring table; the
    /// largest replica set for one given set by set.
    width: usize,
    nodes: Vec<NodeId>,
    /// Indices into `nodes`, partition-major; partition `p`'s set is
    /// `replicas[starts[p]..starts[p + 1]]`.
    replicas: Vec<u32>,
    starts: Vec<u32>,
    /// Every set has `width` replicas (always so for a ring table).
    uniform: bool,
}

impl PartitionTable {
    /// The table for live `members` (any order, duplicates ignored),
    /// `partitions` shards (at least 1) and replication factor `rf`: each
    /// partition gets `min(rf, distinct members)` distinct nodes, owner first;
    /// `rf` 0 counts as 1. With no members every partition is unowned.
    /// Uses [`DEFAULT_VNODES`].
    pub fn compute(members: &[NodeId], partitions: u32, rf: usize) -> PartitionTable {
        PartitionTable::compute_with_vnodes(members, partitions, rf, DEFAULT_VNODES)
    }

    /// [`PartitionTable::compute`] with a chosen vnode count; every node of a
    /// cluster must use the same one.
    pub fn compute_with_vnodes(
        members: &[NodeId],
        partitions: u32,
        rf: usize,
        vnodes: u32,
    ) -> PartitionTable {
        let partitions = partitions.max(1);
        let ring = Ring::new(members, vnodes);
        let width = rf.max(1).min(ring.nodes().len());
        let mut replicas = Vec::with_capacity(partitions as usize * width);
        let mut set = Vec::with_capacity(width);
        for partition in 0..partitions {
            ring.replicas_at(partition_point(partition, partitions), width, &mut set);
            debug_assert_eq!(set.len(), width, "the ring has `width` distinct nodes");
            replicas.extend_from_slice(&set);
        }
        let starts = (0..=partitions).map(|p| p * width as u32).collect();
        PartitionTable {
            partitions,
            width,
            nodes: ring.nodes().to_vec(),
            replicas,
            starts,
            uniform: true,
        }
    }

    /// A table given set by set (owner first), as the committed cluster
    /// configuration assigns them: sets may differ in size and be empty (a
    /// partition without an owner). `sets` beyond `partitions` are ignored,
    /// missing ones are empty, and a name repeated within a set counts once.
    pub fn from_sets(partitions: u32, sets: &[Vec<NodeId>]) -> PartitionTable {
        let partitions = partitions.max(1);
        let mut nodes: Vec<NodeId> = sets.iter().flatten().cloned().collect();
        nodes.sort();
        nodes.dedup();
        let mut replicas = Vec::new();
        let mut starts = Vec::with_capacity(partitions as usize + 1);
        let mut width = 0;
        starts.push(0);
        for p in 0..partitions as usize {
            let begin = replicas.len();
            for name in sets.get(p).into_iter().flatten() {
                // `nodes` holds every name of `sets`.
                let index = nodes.binary_search(name).unwrap_or_default() as u32;
                if !replicas[begin..].contains(&index) {
                    replicas.push(index);
                }
            }
            width = width.max(replicas.len() - begin);
            starts.push(replicas.len() as u32);
        }
        let uniform = starts.windows(2).all(|w| (w[1] - w[0]) as usize == width);
        PartitionTable {
            partitions,
            width,
            nodes,
            replicas,
            starts,
            uniform,
        }
    }

    /// Number of partitions `P`.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Replicas per partition, `min(rf, nodes)`.
    pub fn replication(&self) -> usize {
        self.width
    }

    /// The nodes placed, sorted by name.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The owner of `partition`, if any node is live and the partition exists.
    pub fn owner(&self, partition: PartitionId) -> Option<&NodeId> {
        self.replica_indices(partition)
            .first()
            .map(|&i| &self.nodes[i as usize])
    }

    /// The replica set of `partition`, owner first; empty if no node is live
    /// or the partition does not exist.
    pub fn replicas(&self, partition: PartitionId) -> impl Iterator<Item = &NodeId> {
        self.replica_indices(partition)
            .iter()
            .map(|&i| &self.nodes[i as usize])
    }

    /// Every partition `node` holds and its role there, by partition.
    pub fn partitions_of(&self, node: &NodeId) -> Vec<(PartitionId, Role)> {
        let Ok(index) = self.nodes.binary_search(node) else {
            return Vec::new();
        };
        let mut held = Vec::new();
        for partition in 0..self.partitions {
            let set = self.replica_indices(PartitionId(partition));
            if let Some(rank) = set.iter().position(|&i| i as usize == index) {
                let role = match rank {
                    0 => Role::Owner,
                    // Ranks are below `width` ≤ nodes; saturate past 255.
                    r => Role::Backup {
                        rank: u8::try_from(r).unwrap_or(u8::MAX),
                    },
                };
                held.push((PartitionId(partition), role));
            }
        }
        held
    }

    /// Partitions owned by each node, in [`PartitionTable::nodes`] order.
    pub fn owned_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for partition in (0..self.partitions).map(PartitionId) {
            if let Some(&owner) = self.replica_indices(partition).first() {
                counts[owner as usize] += 1;
            }
        }
        counts
    }

    /// The partitions whose replica set differs from `old` to `new`, in
    /// partition order. Partitions missing from one table (a different `P`,
    /// which a cluster never has) count as having no replicas there.
    pub fn diff(old: &PartitionTable, new: &PartitionTable) -> Vec<PartitionMove> {
        let count = old.partitions.max(new.partitions);
        let mut moves = Vec::new();
        for partition in (0..count).map(PartitionId) {
            let from: Vec<NodeId> = old.replicas(partition).cloned().collect();
            let to: Vec<NodeId> = new.replicas(partition).cloned().collect();
            if from != to {
                moves.push(PartitionMove {
                    partition,
                    from,
                    to,
                });
            }
        }
        moves
    }

    /// xxh3 over a canonical encoding of the whole table (P, width, every
    /// replica set by name). Equal tables have equal fingerprints on every
    /// platform and version; nodes can compare placements cheaply.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = Xxh3::new();
        hasher.update(&self.partitions.to_le_bytes());
        hasher.update(&(self.width as u64).to_le_bytes());
        for &index in &self.replicas {
            let name = self.nodes[index as usize].as_str().as_bytes();
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name);
        }
        if !self.uniform {
            for start in &self.starts {
                hasher.update(&start.to_le_bytes());
            }
        }
        hasher.digest()
    }

    fn replica_indices(&self, partition: PartitionId) -> &[u32] {
        if partition.0 >= self.partitions {
            return &[];
        }
        let p = partition.0 as usize;
        &self.replicas[self.starts[p] as usize..self.starts[p + 1] as usize]
    }
}
