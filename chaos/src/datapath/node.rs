//! One simulated node: its slot of the partition (the real
//! `eddy_replica::Slot`), its log on "disk", its view of the committed
//! configuration, and — while it owns the partition — the real
//! `eddy_control::OwnerIsr`.

use std::sync::Arc;

use eddy_cluster::{NodeId, NodeIdentity};
use eddy_control::{MemberId, OwnerIsr, Unreachable};
use eddy_core::{Epoch, Partition, PartitionId, Registry, Replicated, SnapshotReader};
use eddy_replica::{Parked, Role, Slot};

use super::net::Frame;

/// Snapshot chunk size: small, so streams span several frames.
pub const CHUNK_BYTES: usize = 96;

/// What survives a crash: the last snapshot and the entries logged since,
/// as the node's storage writer keeps them.
#[derive(Default)]
pub struct Disk {
    snapshot: Option<Vec<Vec<u8>>>,
    log: Vec<Vec<u8>>,
}

/// One node of the simulation.
pub struct SimNode {
    /// Its place in the world.
    pub index: usize,
    /// Its name.
    pub name: NodeId,
    /// The incarnation of its data (new when wiped).
    pub incarnation: u64,
    /// New at every process start (a restarted backup is resent a snapshot).
    pub generation: u64,
    /// Running.
    pub up: bool,
    /// What it holds of the partition.
    pub slot: Option<Slot>,
    /// Its log.
    pub disk: Disk,
    /// The committed configuration it has seen (an index into the world's
    /// history).
    pub view: usize,
    /// While serving: the ISR bookkeeping of its ownership.
    pub isr: Option<OwnerIsr>,
    /// Replication messages whose epoch its view does not show yet.
    pub parked: Parked<Frame>,
    /// Its copy may miss what it confirmed (lost with a failed worker):
    /// neither served nor passed off as empty until an owner's snapshot
    /// replaced it.
    pub untrusted: bool,
    /// The epoch at which this process found the partition committed to
    /// it at start: it takes it only at a newer one.
    pub inherited: Option<Epoch>,
    /// As owner: backups that left a needed frame unanswered (the node's
    /// `IsrAcks` keeps the same, per process).
    pub reach: Unreachable,
}

impl SimNode {
    /// A running node with nothing yet.
    pub fn new(index: usize) -> SimNode {
        SimNode {
            index,
            name: NodeId::new(&format!("n{index}")),
            incarnation: 1,
            generation: 1,
            up: true,
            slot: None,
            disk: Disk::default(),
            view: 0,
            isr: None,
            parked: Parked::default(),
            untrusted: false,
            inherited: None,
            reach: Unreachable::default(),
        }
    }

    /// Its member id (name and incarnation).
    pub fn member(&self) -> MemberId {
        MemberId::new(self.name.clone(), self.incarnation)
    }

    /// Its identity as peers see it.
    pub fn identity(&self) -> NodeIdentity {
        let index = u16::try_from(self.index).unwrap_or(u16::MAX);
        let mut identity = eddy_cluster::testing::identity(self.name.as_str(), index);
        identity.generation = self.generation;
        identity.incarnation = self.incarnation;
        identity
    }

    /// Whether it serves the partition.
    pub fn serving(&self) -> bool {
        self.up && self.slot.as_ref().is_some_and(|s| s.role == Role::Owner)
    }

    /// The copy it holds.
    pub fn copy(&self) -> Option<&Partition> {
        self.slot.as_ref()?.partition.as_ref()
    }

    /// Writes the copy as the snapshot and empties the log.
    pub fn checkpoint(&mut self) -> Result<(), String> {
        let Some(copy) = self.copy() else {
            return Ok(());
        };
        let chunks = copy
            .snapshot_chunks(CHUNK_BYTES)
            .map_err(|err| format!("{}: snapshot did not encode: {err}", self.name))?;
        self.disk.snapshot = Some(chunks);
        self.disk.log.clear();
        Ok(())
    }

    /// Appends entries to the log (none: a barrier, nothing to write).
    pub fn persist(&mut self, entries: &[u8]) {
        if !entries.is_empty() {
            self.disk.log.push(entries.to_vec());
        }
    }

    /// The process dies: everything in memory is gone.
    pub fn crash(&mut self) {
        self.up = false;
        self.reach = Unreachable::default();
        self.fail_worker();
    }

    /// The partition worker fails and is restarted empty (the world
    /// reloads it from the log, with `data_dir`); the process,
    /// its log and its connections live on.
    pub fn fail_worker(&mut self) {
        self.slot = None;
        self.isr = None;
        self.parked = Parked::default();
    }

    /// The data directory is gone too; unless the node keeps its old
    /// identity (a deliberate bug), it comes back a new incarnation.
    pub fn wipe(&mut self, keep_identity: bool) {
        self.disk = Disk::default();
        if !keep_identity {
            self.incarnation += 1;
        }
    }

    /// Starts again from the log.
    pub fn restart(&mut self, registry: &Arc<Registry>, latest: usize) -> Result<(), String> {
        self.up = true;
        self.generation += 1;
        self.view = latest;
        self.load(registry)
    }

    /// Loads the copy from the log (as a backup's, until the configuration
    /// gives it this node), trusted: the log holds everything it confirmed.
    pub fn load(&mut self, registry: &Arc<Registry>) -> Result<(), String> {
        self.untrusted = false;
        self.slot = self.logged(registry)?.map(|copy| {
            let mut slot = Slot::new(Role::Backup);
            slot.partition = Some(copy);
            slot
        });
        Ok(())
    }

    /// The copy its log holds, if any.
    pub fn logged(&self, registry: &Arc<Registry>) -> Result<Option<Partition>, String> {
        let loaded = match &self.disk.snapshot {
            Some(chunks) => Some(
                Partition::restore(
                    registry.clone(),
                    Default::default(),
                    chunks.iter().map(Vec::as_slice),
                )
                .map_err(|err| format!("{}: snapshot did not load: {err}", self.name))?,
            ),
            None if self.disk.log.is_empty() => None,
            None => Some(Partition::new(
                registry.clone(),
                PartitionId(0),
                Default::default(),
            )),
        };
        let Some(mut copy) = loaded else {
            return Ok(None);
        };
        for record in &self.disk.log {
            match copy.replay_logged(record) {
                Replicated::Applied { .. } => {}
                other => {
                    return Err(format!(
                        "{}: its log does not replay over its snapshot: {other:?}",
                        self.name
                    ));
                }
            }
        }
        Ok(Some(copy))
    }

    /// A reader for a snapshot stream to this node.
    pub fn reader(registry: &Arc<Registry>) -> SnapshotReader {
        SnapshotReader::new(registry.clone(), Default::default())
    }
}
