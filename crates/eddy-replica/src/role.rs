//! The role a node plays for a partition, and how the partition table
//! changes it.

use std::time::{Duration, Instant};

use eddy_cluster::{NodeId, PartitionTable};
use eddy_core::PartitionId;

/// How long a copy the table no longer gives us is kept before it is
/// dropped (a member that left the ring briefly need not be resent it).
pub const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// What this node does with a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes, logs, replicates to the backups.
    Owner,
    /// Applies what the owner ships.
    Backup,
    /// The table says we own it; we wait for the ownership task to take it
    /// at the committed epoch. Writes are refused (re-routed).
    Incoming,
    /// The table gives it to others; kept until `until`.
    Retiring {
        /// When the copy is dropped.
        until: Instant,
    },
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
