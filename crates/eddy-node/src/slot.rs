//! What a node holds of one partition and in which role.
//!
//! The role a worker gives a partition follows the partition table with one
//! rule that makes ownership safe: a node never *becomes* owner by reading
//! the table. The table only demotes (owner → backup or retiring) or marks a
//! partition `Incoming`; promotion happens when the ownership task
//! ([`crate::ownership`]) has found the most caught-up copy in the cluster
//! and either took it over locally or had it handed over (DESIGN §6).

use std::time::{Duration, Instant};

use eddy_cluster::{NodeId, PartitionTable};
use eddy_core::{Partition, PartitionId, SnapshotReader};

/// How long a copy the table no longer gives us is kept: a new owner may
/// still pull it (it may be the most caught-up copy), then it is dropped.
pub const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// What this node does with a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes, logs, replicates to the backups.
    Owner,
    /// Applies what the owner ships.
    Backup,
    /// The table says we own it; we wait for the ownership task to promote
    /// our copy or to receive the handoff. Writes are refused (re-routed).
    Incoming,
    /// The table gives it to others; kept until `until` in case a new owner
    /// pulls it.
    Retiring {
        /// When the copy is dropped.
        until: Instant,
    },
}

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
    pub receiving: Option<SnapshotReader>,
    /// Bytes in this copy's write-ahead log on disk (with `data_dir`).
    pub wal_bytes: u64,
    /// The node's count of regained quorums when it became owner
    /// ([`crate::cluster::ClusterState::quorum_regained`]). An owner from
    /// before the node was last cut off serves nothing: the majority may
    /// have taken the partition over meanwhile, and backups outside its
    /// promises (new or restarted nodes) would still confirm its writes. It
    /// is taken over again (survey, best copy) once the node regathered.
    pub taken_at: u64,
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
            taken_at: 0,
        }
    }

    /// The partition if this node is its serving owner: the owner, taken
    /// over since the node last regained its quorum (`regained`).
    pub fn owned(&mut self, regained: u64) -> Option<&mut Partition> {
        match self.role {
            Role::Owner if self.taken_at == regained => self.partition.as_mut(),
            _ => None,
        }
    }

    /// An owner from before the node last regained its quorum.
    pub fn stale_owner(&self, regained: u64) -> bool {
        self.role == Role::Owner && self.taken_at != regained
    }

    /// Whether `backup` (this incarnation) follows this owner's log.
    pub fn follows(&self, backup: &eddy_cluster::NodeIdentity) -> bool {
        self.synced
            .iter()
            .any(|(name, generation)| *name == backup.name && *generation == backup.generation)
    }

    /// Becomes the owner at `epoch` (at least), with no backup synced yet,
    /// `regained` being the node's count of regained quorums now.
    pub fn promote(&mut self, partition: Partition, epoch: eddy_core::Epoch, regained: u64) {
        let mut partition = partition;
        partition.set_epoch(epoch);
        self.partition = Some(partition);
        self.role = Role::Owner;
        self.synced.clear();
        self.taken_at = regained;
    }
}

/// The role the table gives `local` for `partition`, applied to a slot:
/// returns the slot's new role, or `None` if no slot is needed.
pub fn role_after_table(
    current: Option<Role>,
    table: &PartitionTable,
    partition: PartitionId,
    local: &NodeId,
    now: Instant,
) -> Option<Role> {
    let rank = table.replicas(partition).position(|n| n == local);
    match (rank, current) {
        // Owner by the table: keep serving if we already do, else wait for
        // the ownership task.
        (Some(0), Some(Role::Owner)) => Some(Role::Owner),
        (Some(0), _) => Some(Role::Incoming),
        (Some(_), None) => None,
        (Some(_), Some(_)) => Some(Role::Backup),
        (None, None) => None,
        (None, Some(Role::Retiring { until })) => Some(Role::Retiring { until }),
        (None, Some(_)) => Some(Role::Retiring {
            until: now + RETIRE_AFTER,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(nodes: &[&str]) -> PartitionTable {
        let names: Vec<NodeId> = nodes.iter().map(|n| NodeId::new(n)).collect();
        PartitionTable::compute(&names, 64, 2)
    }

    #[test]
    fn an_owner_from_before_a_regained_quorum_serves_nothing() {
        let registry = std::sync::Arc::new(
            eddy_core::Registry::builder()
                .build()
                .expect("an empty registry builds"),
        );
        let copy = || {
            Partition::new(
                registry.clone(),
                PartitionId(1),
                eddy_core::PartitionConfig::default(),
            )
        };
        let mut slot = Slot::new(Role::Incoming);
        slot.promote(copy(), eddy_core::Epoch(3), 0);
        assert!(slot.owned(0).is_some());
        assert!(!slot.stale_owner(0));
        // The node lost its quorum and regained it: count 1.
        assert!(slot.owned(1).is_none(), "no writes, reads or timers");
        assert!(slot.stale_owner(1));
        // Taken over again after regathering.
        slot.promote(copy(), eddy_core::Epoch(4), 1);
        assert!(slot.owned(1).is_some());
        assert!(!slot.stale_owner(1));
        slot.role = Role::Backup;
        assert!(!slot.stale_owner(1), "only owners go stale");
    }

    #[test]
    fn the_table_demotes_but_never_promotes() {
        let t = table(&["a", "b", "c"]);
        let now = Instant::now();
        let a = NodeId::new("a");
        for p in (0..64).map(PartitionId) {
            let rank = t.replicas(p).position(|n| *n == a);
            for current in [
                None,
                Some(Role::Owner),
                Some(Role::Backup),
                Some(Role::Incoming),
            ] {
                let next = role_after_table(current, &t, p, &a, now);
                if next == Some(Role::Owner) {
                    assert_eq!(current, Some(Role::Owner), "only an owner stays owner");
                    assert_eq!(rank, Some(0));
                }
                match rank {
                    Some(0) if current != Some(Role::Owner) => {
                        assert_eq!(next, Some(Role::Incoming));
                    }
                    Some(0) => {}
                    Some(_) => assert_eq!(next, current.map(|_| Role::Backup)),
                    None => assert_eq!(
                        next.is_some(),
                        current.is_some(),
                        "a held copy retires, none is created"
                    ),
                }
            }
        }
    }
}
