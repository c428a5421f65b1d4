//! What a node holds of one partition and in which role.
//!
//! The role a worker gives a partition follows the partition table with one
//! rule that makes ownership safe: a node never *becomes* owner by reading
//! the table. The table only demotes (owner → backup or retiring) or marks a
//! partition `Incoming`; promotion happens when the ownership task
//! ([`crate::ownership`]) takes a partition the committed configuration
//! gives this node, at the committed epoch (docs/PROTOCOL.md).

use std::time::{Duration, Instant};

use eddy_cluster::{NodeId, PartitionTable};
use eddy_core::{Epoch, Partition, PartitionId, SnapshotReader};

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

/// A snapshot stream being received: its chunks come on one peer
/// connection at one epoch. Chunks of another stream (a deposed owner's, or
/// an older one of the same owner still arriving on a connection it gave
/// up) never mix into it: only their first chunk starts a stream of their own.
pub struct Receiving {
    /// The peer connection the stream's first chunk came on.
    link: u64,
    /// The sender's epoch.
    epoch: Epoch,
    reader: SnapshotReader,
}

/// What one chunk of a snapshot stream did ([`Slot::receive`]).
pub enum Received {
    /// Taken; more chunks to come.
    More,
    /// The stream is complete: the copy it carries (not installed yet).
    Complete(Box<Partition>),
    /// Not a chunk of the stream in progress (another connection or
    /// epoch, or no stream started): refused, the stream untouched.
    Foreign,
    /// The chunk or the stream is damaged or incomplete: the stream is
    /// dropped.
    Broken(String),
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
    pub receiving: Option<Receiving>,
    /// Bytes in this copy's write-ahead log on disk (with `data_dir`).
    pub wal_bytes: u64,
    /// The newest owner epoch heard of from a peer (a deposing `Replicate`,
    /// or a backup's `Stale` answer) when the copy could not follow it
    /// yet: a copy learns an epoch only
    /// from applied entries, and a configuration that is behind must not
    /// make this node serve below it.
    pub seen: Epoch,
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
        (link, epoch): (u64, Epoch),
        chunk: &[u8],
        last: bool,
        reader: impl FnOnce() -> SnapshotReader,
    ) -> Received {
        if eddy_core::chunk_index(chunk) == Some(0) {
            self.receiving = Some(Receiving {
                link,
                epoch,
                reader: reader(),
            });
        }
        let Some(stream) = self
            .receiving
            .as_mut()
            .filter(|s| s.link == link && s.epoch == epoch)
        else {
            return Received::Foreign;
        };
        if let Err(err) = stream.reader.push(chunk) {
            self.receiving = None;
            return Received::Broken(format!("bad snapshot chunk: {err}"));
        }
        if !last {
            return Received::More;
        }
        match self.receiving.take().map(|s| s.reader.finish()) {
            Some(Ok(restored)) => Received::Complete(Box::new(restored)),
            Some(Err(err)) => Received::Broken(format!("incomplete snapshot stream: {err}")),
            None => Received::Foreign,
        }
    }

    /// The partition if this node is its serving owner.
    pub fn owned(&mut self) -> Option<&mut Partition> {
        match self.role {
            Role::Owner => self.partition.as_mut(),
            _ => None,
        }
    }

    /// Whether `backup` (this incarnation) follows this owner's log.
    pub fn follows(&self, backup: &eddy_cluster::NodeIdentity) -> bool {
        self.synced
            .iter()
            .any(|(name, generation)| *name == backup.name && *generation == backup.generation)
    }

    /// Becomes the owner at `epoch` (at least), with no backup synced yet.
    pub fn promote(&mut self, partition: Partition, epoch: Epoch) {
        let mut partition = partition;
        partition.set_epoch(epoch);
        self.partition = Some(partition);
        self.role = Role::Owner;
        self.synced.clear();
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

    fn copy_at(epoch: u64) -> Partition {
        let registry = std::sync::Arc::new(eddy_core::Registry::builder().build().unwrap());
        let mut copy = Partition::new(registry, PartitionId(7), Default::default());
        copy.set_epoch(Epoch(epoch));
        copy
    }

    /// A snapshot of `copy` cut into one chunk per record (header,
    /// lineage, end).
    fn chunks(copy: &Partition) -> Vec<Vec<u8>> {
        let chunks = copy.snapshot_chunks(1).unwrap();
        assert!(chunks.len() >= 3, "several chunks");
        chunks
    }

    fn feed(slot: &mut Slot, stream: (u64, Epoch), chunks: &[Vec<u8>], at: usize) -> Received {
        let reader = || {
            let registry = std::sync::Arc::new(eddy_core::Registry::builder().build().unwrap());
            SnapshotReader::new(registry, Default::default())
        };
        slot.receive(stream, &chunks[at], at + 1 == chunks.len(), reader)
    }

    #[test]
    fn chunks_of_another_connection_or_epoch_never_mix_into_a_stream() {
        let ours = chunks(&copy_at(3));
        let other = chunks(&copy_at(2));
        let mut slot = Slot::new(Role::Backup);
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &ours, 0),
            Received::More
        ));
        // The rest of an older stream, on a connection its owner gave up,
        // and a chunk at another epoch on the stream's own connection.
        assert!(matches!(
            feed(&mut slot, (7, Epoch(3)), &ours, 1),
            Received::Foreign
        ));
        assert!(matches!(
            feed(&mut slot, (1, Epoch(2)), &other, 1),
            Received::Foreign
        ));
        for at in 1..ours.len() - 1 {
            assert!(matches!(
                feed(&mut slot, (1, Epoch(3)), &ours, at),
                Received::More
            ));
        }
        match feed(&mut slot, (1, Epoch(3)), &ours, ours.len() - 1) {
            Received::Complete(copy) => assert_eq!(copy.epoch(), Epoch(3)),
            _ => panic!("the stream completes"),
        }
    }

    #[test]
    fn a_new_first_chunk_starts_over_and_the_old_streams_rest_is_refused() {
        let first = chunks(&copy_at(3));
        let second = chunks(&copy_at(4));
        let mut slot = Slot::new(Role::Backup);
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &first, 0),
            Received::More
        ));
        assert!(matches!(
            feed(&mut slot, (2, Epoch(4)), &second, 0),
            Received::More
        ));
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &first, 1),
            Received::Foreign
        ));
        for at in 1..second.len() - 1 {
            assert!(matches!(
                feed(&mut slot, (2, Epoch(4)), &second, at),
                Received::More
            ));
        }
        assert!(matches!(
            feed(&mut slot, (2, Epoch(4)), &second, second.len() - 1),
            Received::Complete(_)
        ));
        // Nothing in progress: a stray chunk is refused, not started.
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &first, 2),
            Received::Foreign
        ));
    }

    #[test]
    fn a_chunk_out_of_order_breaks_the_stream() {
        let ours = chunks(&copy_at(3));
        let mut slot = Slot::new(Role::Backup);
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &ours, 0),
            Received::More
        ));
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &ours, 2),
            Received::Broken(_)
        ));
        assert!(matches!(
            feed(&mut slot, (1, Epoch(3)), &ours, 1),
            Received::Foreign
        ));
    }

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
    fn an_epoch_heard_from_a_deposing_owner_fences_takes_too() {
        // Deposed by a `Replicate` of epoch 4 its copy could not apply:
        // the copy still says 1.
        let mut slot = Slot::new(Role::Incoming);
        slot.partition = Some(copy_at(1));
        slot.seen = Epoch(4);
        assert_eq!(slot.fence(), Epoch(4));
        assert!(!slot.may_take(Epoch(1)));
        assert!(!slot.may_take(Epoch(3)));
        assert!(slot.may_take(Epoch(5)));
        // Without a copy, only the heard epoch counts.
        let mut empty = Slot::new(Role::Incoming);
        assert!(empty.may_take(Epoch(1)));
        empty.seen = Epoch(2);
        assert!(!empty.may_take(Epoch(1)));
    }

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
