//! Partition workers: ractor actors, each holding every partition `p` with
//! `p % workers == index` in whatever role this node has for it (owner,
//! backup, incoming, retiring — see [`eddy_replica`]), and a supervisor that
//! restarts a failed worker.
//!
//! One actor per partition would be 1024 actors of ~7.6 KiB that mostly sit
//! idle (DESIGN §5); one per core keeps every core busy with no locks shared
//! between partitions, since a partition is only ever touched by its worker.
//! Time enters here: the worker stamps events with the wall clock and ticks
//! its partitions every `tick_ms`.
//!
//! Replication starts here too, because order matters: after applying a
//! batch the worker queues each touched partition's new entries on the peer
//! link of every backup before it handles its next message, so entries reach
//! a backup in log order. A backup not known to hold the log gets a snapshot
//! first. The answers are awaited by the caller (the ingress), never here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy_cluster::{Held, NodeId, NodeIdentity, ReplicaPartRef};
use eddy_core::{
    AlertRecord, ApplyError, DEFAULT_CHUNK_BYTES, Epoch, EventRef, KindId, Outputs, Partition,
    PartitionConfig, PartitionId, Registry, Replicated, Seq, SnapshotReader, Submitted, Timestamp,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{oneshot, watch};

use crate::alerts::AlertHub;
use crate::cluster::ClusterState;
use crate::ingress::IngressEvent;
use crate::peer::{PeerError, PeerLinks, PeerPending};
use crate::storage::StorageError;
use crate::writer::{Done, StorageWriter, complete};
use eddy_replica::{Admit, Installed, Parked, Placement, Role, Route, Slot, Take};

/// How often an owner checks that its backups still follow it.
pub(crate) const OWNER_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A backup's answer to come for entries shipped by this owner.
pub struct ReplicaAck {
    /// The backup.
    pub backup: NodeId,
    /// Partitions shipped in this request, in the order of its outcomes,
    /// with the position the backup must hold for each.
    pub parts: Vec<(PartitionId, Seq)>,
    /// The request on the wire, or why it could not be sent.
    pub answer: Result<PeerPending, PeerError>,
}

/// One partition in a `Replicate` frame being built: partition, epoch,
/// index of its entries in the batch, position the backup must reach.
type Shipped = (PartitionId, Epoch, usize, Seq);

/// The result of an `Apply`.
#[derive(Default)]
pub struct Applied {
    /// (position in the client's batch, outcome).
    pub outcomes: Vec<(usize, Result<Submitted, ApplyError>)>,
    /// Events of partitions this node does not serve as owner right now (not,
    /// no longer, or not yet): given back untouched, to be re-routed.
    pub returned: Vec<(usize, IngressEvent)>,
    /// Replication answers to await before acknowledging.
    pub acks: Vec<ReplicaAck>,
    /// Alerts to publish once acknowledged.
    pub alerts: Vec<AlertRecord>,
    /// With `data_dir`: each touched partition's log write, to await before
    /// acknowledging (nothing is acknowledged that is not in the log).
    pub durable: Vec<(PartitionId, Durable)>,
    /// Each touched partition and the position its copy reached: every one
    /// is decided by its owner's ISR bookkeeping, whether or not any backup
    /// was shipped to.
    pub written: Vec<(PartitionId, Seq)>,
}

/// The storage writer's answer to come for one write.
pub type Durable = oneshot::Receiver<Result<(), StorageError>>;

/// What a worker is asked to do.
pub enum WorkerMsg {
    /// Apply events (all of partitions of this worker) in order.
    Apply {
        /// (position in the client's batch, partition, event).
        events: Vec<(usize, PartitionId, IngressEvent)>,
        /// Where the result goes.
        reply: RpcReplyPort<Applied>,
    },
    /// Read a key's state (owner only).
    State {
        /// The key's partition.
        partition: PartitionId,
        /// Its kind.
        kind: KindId,
        /// The key.
        key: String,
        /// State as JSON (None: no such key) and the serving copy's owner
        /// epoch, or why it cannot be read here.
        reply: RpcReplyPort<Result<(Option<serde_json::Value>, Epoch), String>>,
    },
    /// Fire due timers, passivate idle keys, drop retired copies, refresh gauges.
    Tick,
    /// The table changed: demote, mark incoming, retire (never promote).
    Placement(Arc<ClusterState>),
    /// Backup side: entries or a snapshot chunk from the owner, run once
    /// the configuration shows its epoch.
    Peer {
        /// The partition.
        partition: PartitionId,
        /// The message.
        write: PeerWrite,
    },
    /// Every copy this worker holds, with its role (for `/v1/partitions`).
    Copies {
        /// (copy, role).
        reply: oneshot::Sender<Vec<(Held, &'static str)>>,
    },
    /// Become the owner of a partition from the local copy (or empty).
    Take {
        /// The partition.
        partition: PartitionId,
        /// The epoch to take (at least).
        epoch: Epoch,
    },
    /// Make sure every current backup holds the log so far: a snapshot to
    /// those in `resync` (they lost track) and to new ones, an empty barrier
    /// to the rest; the answers go to the ISR bookkeeping. Nothing if this
    /// node no longer owns the partition.
    Resync {
        /// The partition.
        partition: PartitionId,
        /// Backups to send a snapshot whatever we believed of them.
        resync: Vec<NodeId>,
    },
    /// Partitions waiting to be taken over (`Incoming`), for the ownership
    /// task's reconciliation.
    Incoming {
        /// Their ids.
        reply: oneshot::Sender<Vec<PartitionId>>,
    },
    /// A backup refused our epoch: another node owns the partition now.
    Deposed {
        /// The partition.
        partition: PartitionId,
        /// The newer owner's epoch.
        by: Epoch,
    },
}

/// Whether the table of `cluster` names this node `partition`'s owner.
fn owner_here(cluster: &watch::Receiver<Arc<ClusterState>>, partition: PartitionId) -> bool {
    let cluster = cluster.borrow();
    cluster
        .placement
        .table()
        .owner(partition)
        .is_some_and(|o| cluster.is_local(o))
}

/// `partition`'s committed assignment, if a configuration is committed.
fn assignment(state: &ClusterState, partition: PartitionId) -> Option<&eddy_control::Assignment> {
    state.committed.as_ref()?.assignment(partition)
}

/// Whether this member is in the partition's committed ISR.
fn in_isr(state: &ClusterState, partition: PartitionId) -> bool {
    assignment(state, partition).is_some_and(|a| a.isr.contains(&state.member_id()))
}

/// Whether this node is in `partition`'s committed ISR and that ISR is
/// still the first one ([`eddy_control::Assignment::is_first_isr`]).
fn in_first_isr(state: &ClusterState, partition: PartitionId) -> bool {
    in_isr(state, partition) && assignment(state, partition).is_some_and(|a| a.is_first_isr())
}

/// Everything a worker needs to start.
#[derive(Clone)]
pub struct WorkerArgs {
    /// Kinds hosted.
    pub registry: Arc<Registry>,
    /// Per-partition limits.
    pub partition_config: PartitionConfig,
    /// Where timer alerts go once replicated.
    pub alerts: AlertHub,
    /// Tick period.
    pub tick: Duration,
    /// This worker's index.
    pub index: usize,
    /// Number of workers.
    pub workers: usize,
    /// The cluster as this node sees it (replica sets).
    pub cluster: watch::Receiver<Arc<ClusterState>>,
    /// Links to backups.
    pub links: PeerLinks,
    /// Whether timer alerts wait for every backup (`acks = all`).
    pub wait_for_backups: bool,
    /// The writer of the data directory, if configured.
    pub storage: Option<StorageWriter>,
    /// Copies loaded from the data directory at start; each worker takes its own.
    pub recovered: Arc<std::sync::Mutex<Vec<crate::storage::Loaded>>>,
    /// Partitions whose copy on disk was damaged or torn at start: not
    /// taken, nor replaced by an empty copy, until an owner's snapshot
    /// replaced them.
    pub damaged: Arc<std::collections::BTreeSet<PartitionId>>,
    /// Whether this worker replaces one that failed (its copies died with
    /// it).
    pub restarted: bool,
    /// Partitions whose copy a failed worker took with it, for the
    /// ownership task to take out of this node's ISRs (as damaged ones).
    pub lost: crate::ownership::LostCopies,
    /// With a controller: the owner-side ISR bookkeeping, fed the answers
    /// of the periodic check so idle partitions' backups join the ISR too.
    pub isr: crate::isr_acks::IsrAcks,
}

/// The running worker of `partition` among the workers `names` (by index,
/// `partition % workers`), if it runs.
pub(crate) fn of_partition(
    names: &[String],
    partition: PartitionId,
) -> Option<ActorRef<WorkerMsg>> {
    let name = names.get(partition.0 as usize % names.len().max(1))?;
    ractor::registry::where_is(name.clone()).map(ActorRef::from)
}

/// The worker actor.
pub struct Worker;

/// A worker's partitions and reusable buffers.
pub struct WorkerState {
    args: WorkerArgs,
    /// Indexed by partition id. A vector, not a map: the lookup is on the
    /// per-event path and P is small.
    slots: Vec<Option<Slot>>,
    /// When the owned partitions' backups were last asked (see `tick`).
    checked_at: Instant,
    out: Outputs,
    /// This worker's partitions of [`WorkerArgs::damaged`] (all of them
    /// after a restart) whose copy no owner's snapshot replaced yet.
    untrusted: std::collections::BTreeSet<PartitionId>,
    /// Replication messages whose epoch the configuration does not show yet.
    parked: Parked<PeerWrite>,
    /// Ownerships this worker found committed to this node when it
    /// reloaded the failed worker's copies: taken again only at a newer
    /// epoch ([`eddy_replica::must_reelect`]), which the ownership task
    /// asks for.
    inherited: BTreeMap<PartitionId, Epoch>,
    /// Injected worker failures already suffered (chaos fault hook).
    failures_seen: u64,
}

/// A replication message from a peer, as the worker runs it.
pub enum PeerWrite {
    /// Entries from the owner.
    Replicate {
        /// The sender's epoch.
        epoch: Epoch,
        /// Entries back-to-back.
        entries: Vec<u8>,
        /// The outcome.
        reply: oneshot::Sender<Replicated>,
    },
    /// One chunk of a snapshot stream (a backup brought up to date).
    Snapshot {
        /// The sender's epoch.
        epoch: Epoch,
        /// The peer connection it came on (node-local; binds a stream's
        /// chunks together).
        link: u64,
        /// The chunk.
        chunk: Vec<u8>,
        /// Whether it is the last.
        last: bool,
        /// The outcome (`Applied { through: 0 }` until the last chunk).
        reply: oneshot::Sender<Replicated>,
    },
}

impl PeerWrite {
    fn epoch(&self) -> Epoch {
        match self {
            PeerWrite::Replicate { epoch, .. } | PeerWrite::Snapshot { epoch, .. } => *epoch,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            PeerWrite::Replicate { entries, .. } => entries.len(),
            PeerWrite::Snapshot { chunk, .. } => chunk.len(),
        }
    }

    /// Answers without running.
    fn answer(self, outcome: Replicated) {
        let (PeerWrite::Replicate { reply, .. } | PeerWrite::Snapshot { reply, .. }) = self;
        let _ = reply.send(outcome);
    }

    /// Answers without running: the configuration does not show the epoch.
    fn refuse(self, known: Epoch) {
        self.answer(Replicated::EpochUnknown { known });
    }
}

/// Wall-clock milliseconds: the one place the node reads time for the core.
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp(ms)
}

impl WorkerState {
    fn slot(&mut self, id: PartitionId) -> &mut Option<Slot> {
        let index = id.0 as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        &mut self.slots[index]
    }

    /// Hands entries a copy applied to the storage writer (with `data_dir`);
    /// `done` runs once they are in the log, or failed to be. A partition
    /// whose log broke gets a checkpoint instead: the copy holds these
    /// entries and everything before them. No entries (only duplicates, or
    /// a resend) is a barrier: what they repeat must be in the log too.
    fn persist(&mut self, partition: PartitionId, entries: &[u8], done: Option<Done>) {
        let Some(storage) = self.args.storage.clone() else {
            complete(done, Ok(()));
            return;
        };
        if storage.is_broken(partition) {
            self.checkpoint(partition, done);
            return;
        }
        if entries.is_empty() {
            storage.barrier(partition, done);
            return;
        }
        if let Some(slot) = self.slot(partition).as_mut() {
            slot.wal_bytes += 12 + entries.len() as u64;
        }
        storage.append(partition, entries.to_vec(), done);
    }

    /// [`Self::persist`] with the answer to await.
    fn persist_awaited(&mut self, partition: PartitionId, entries: &[u8]) -> Durable {
        let (answer, durable) = oneshot::channel();
        self.persist(
            partition,
            entries,
            Some(Box::new(move |result| {
                let _ = answer.send(result);
            })),
        );
        durable
    }

    /// Writes the copy as the partition's snapshot on disk and empties its
    /// log (after an install, when the log grew past the compaction size, or
    /// to repair a broken log); `done` runs once written.
    fn checkpoint(&mut self, partition: PartitionId, done: Option<Done>) {
        let Some(storage) = self.args.storage.clone() else {
            complete(done, Ok(()));
            return;
        };
        let chunks = self
            .slot(partition)
            .as_mut()
            .and_then(|slot| slot.partition.as_mut())
            .map(|copy| chunks_of(copy));
        match chunks {
            Some(Ok(chunks)) => {
                if let Some(slot) = self.slot(partition).as_mut() {
                    slot.wal_bytes = 0;
                }
                storage.checkpoint(partition, chunks, done);
            }
            Some(Err(reason)) => {
                metrics::counter!("eddy_storage_write_errors_total").increment(1);
                tracing::error!(
                    partition = partition.0,
                    reason,
                    "cannot encode the snapshot"
                );
                let damaged = StorageError::Damaged {
                    path: std::path::PathBuf::from(format!("p{:04}", partition.0)),
                    reason,
                };
                complete(done, Err(damaged));
            }
            // No copy, nothing to keep: only possible if it was dropped.
            None => complete(done, Ok(())),
        }
    }

    /// An empty copy of `id`, made only if the decision needs one (most
    /// placements do not, and a copy allocates a store per kind).
    fn fresh_later(&self, id: PartitionId) -> impl FnOnce() -> Partition + use<> {
        let (registry, config) = (
            self.args.registry.clone(),
            self.args.partition_config.clone(),
        );
        move || Partition::new(registry, id, config)
    }

    /// Applies events; returns the outcome and, for every partition touched,
    /// the entries it logged (empty if it only saw duplicates: a barrier).
    fn apply(
        &mut self,
        events: Vec<(usize, PartitionId, IngressEvent)>,
    ) -> (Applied, Vec<(PartitionId, Vec<u8>)>) {
        let now = now();
        let mut applied = Applied {
            outcomes: Vec::with_capacity(events.len()),
            ..Applied::default()
        };
        let mut counts = Counts::default();
        let mut touched: Vec<(PartitionId, Vec<u8>)> = Vec::new();
        let mut out = std::mem::take(&mut self.out);
        for (index, partition, event) in events {
            let Some(owned) = self.slot(partition).as_mut().and_then(|s| s.owned()) else {
                applied.returned.push((index, event));
                continue;
            };
            let input = EventRef {
                kind: event.kind,
                key: &event.key,
                payload: &event.payload,
                producer: event.producer.as_ref().map(|p| eddy_core::ProducerView {
                    producer: &p.producer,
                    seq: p.seq,
                }),
            };
            let outcome = owned.submit(now, input, &mut out);
            counts.record(partition, &outcome);
            applied.outcomes.push((index, outcome));
            let position = match touched.iter().rposition(|(p, _)| *p == partition) {
                Some(position) => position,
                None => {
                    touched.push((partition, Vec::new()));
                    touched.len() - 1
                }
            };
            touched[position].1.extend_from_slice(out.log.as_bytes());
            out.log.clear();
        }
        counts.flush();
        applied.alerts.append(&mut out.alerts);
        self.out = out;
        // The injected bug (chaos tests only) forgets what it wrote, so no
        // ISR decision stands between the lost entries and the client.
        if !self.args.links.faults().drops_log_entries() {
            applied.written = touched
                .iter()
                .map(|(p, _)| (*p, self.copy_of(*p).map_or(Seq(0), Partition::last_seq)))
                .collect();
        }
        // In the log before anyone hears yes (the ingress awaits these).
        if self.args.storage.is_some() {
            for (partition, entries) in &touched {
                let durable = self.persist_awaited(*partition, entries);
                applied.durable.push((*partition, durable));
            }
        }
        (applied, touched)
    }

    /// Queues `entries` of `partition` on every backup's link (a snapshot
    /// first for a backup not known to hold the log).
    async fn ship(&mut self, partition: PartitionId, entries: &[u8]) -> Vec<ReplicaAck> {
        let mut acks = Vec::new();
        self.ship_all(vec![(partition, entries.to_vec())], &mut acks)
            .await;
        acks
    }

    /// Queues each touched partition's new entries for its backups: one
    /// `Replicate` frame per backup carrying every partition it follows, and
    /// a snapshot to a backup not known to hold a partition's log.
    async fn ship_all(&mut self, touched: Vec<(PartitionId, Vec<u8>)>, acks: &mut Vec<ReplicaAck>) {
        if self.args.links.faults().drops_log_entries() {
            // The injected bug (chaos tests only): backups never see these
            // entries and nothing waits for them.
            return;
        }
        let cluster = self.args.cluster.borrow().clone();
        let links = self.args.links.clone();
        let mut frames: Vec<(NodeIdentity, Vec<Shipped>)> = Vec::new();
        for (index, (partition, _)) in touched.iter().enumerate() {
            let partition = *partition;
            let Some(slot) = self.slot(partition).as_mut() else {
                continue;
            };
            let Some((required, epoch)) =
                slot.partition.as_mut().map(|p| (p.last_seq(), p.epoch()))
            else {
                continue;
            };
            for backup in cluster.placement.table().replicas(partition).skip(1) {
                let live = cluster.live_member(backup);
                let route = slot.route(live);
                let Some(peer) = live.filter(|_| route != Route::Unreachable) else {
                    // Not acknowledged until the table drops it (the
                    // ingress retries with a barrier).
                    acks.push(ReplicaAck {
                        backup: backup.clone(),
                        parts: vec![(partition, required)],
                        answer: Err(PeerError::Unreachable {
                            node: backup.clone(),
                            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                            reason: "not live in this node's view".into(),
                        }),
                    });
                    continue;
                };
                if route == Route::Entries {
                    let part = (partition, epoch, index, required);
                    match frames.iter_mut().find(|(id, _)| id.name == peer.name) {
                        Some((_, parts)) => parts.push(part),
                        None => frames.push((peer.clone(), vec![part])),
                    }
                    continue;
                }
                let chunks = slot
                    .partition
                    .as_mut()
                    .map_or(Err("no copy".into()), |p| chunks_of(p));
                let answer = send_snapshot(&links, peer, partition, chunks, epoch).await;
                if answer.is_ok() {
                    slot.snapshot_sent(peer);
                }
                acks.push(ReplicaAck {
                    backup: backup.clone(),
                    parts: vec![(partition, required)],
                    answer,
                });
            }
        }
        if let Some(reason) = cluster.no_quorum_reason() {
            // Shipped as usual (the backups' logs stay gapless), but not
            // confirmed: a node that is no committed member acknowledges
            // nothing.
            for (partition, _) in &touched {
                let required = self.copy_of(*partition).map_or(Seq(0), Partition::last_seq);
                acks.push(ReplicaAck {
                    backup: cluster.local.name.clone(),
                    parts: vec![(*partition, required)],
                    answer: Err(PeerError::NoAnswer {
                        node: cluster.local.name.clone(),
                        reason: reason.clone(),
                    }),
                });
            }
        }
        for (peer, parts) in frames {
            let refs: Vec<ReplicaPartRef<'_>> = parts
                .iter()
                .map(|(partition, epoch, index, _)| ReplicaPartRef {
                    partition: partition.0,
                    epoch: epoch.0,
                    entries: &touched[*index].1,
                })
                .collect();
            let answer = links.replicate(&peer, &refs).await;
            if answer.is_err() {
                // Frames may be lost: those partitions get a snapshot next.
                for (partition, ..) in &parts {
                    if let Some(slot) = self.slot(*partition).as_mut() {
                        slot.lost_track(&peer.name);
                    }
                }
            }
            acks.push(ReplicaAck {
                backup: peer.name.clone(),
                parts: parts
                    .iter()
                    .map(|(partition, _, _, required)| (*partition, *required))
                    .collect(),
                answer,
            });
        }
    }

    /// Applies a new table to the roles, and returns the owned partitions
    /// with a backup that does not follow them yet: a new backup must get
    /// the partition now, not at the next write, or acknowledged writes
    /// would rest on one copy until then.
    fn placement(&mut self, state: &ClusterState) -> Vec<PartitionId> {
        self.apply_roles(state);
        let table = state.placement.table();
        let mut behind = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot.as_mut().filter(|s| s.role == Role::Owner) else {
                continue;
            };
            let partition = PartitionId(index as u32);
            let backups: Vec<&NodeIdentity> = table
                .replicas(partition)
                .skip(1)
                .filter_map(|b| state.live_member(b))
                .collect();
            if slot.keep_followers(&backups) {
                behind.push(partition);
            }
        }
        behind
    }

    fn apply_roles(&mut self, state: &ClusterState) {
        let table = state.placement.table();
        let now = Instant::now();
        let workers = self.args.workers.max(1);
        let index = self.args.index;
        for p in (0..table.partitions()).filter(|p| *p as usize % workers == index) {
            let partition = PartitionId(p);
            let placement = Placement {
                table,
                local: &state.local.name,
                committed: state.placement.epoch(partition),
                in_first_isr: in_first_isr(state, partition),
            };
            let untrusted = self.untrusted.contains(&partition);
            let fresh = self.fresh_later(partition);
            let slot = self.slot(partition);
            let placed =
                eddy_replica::apply_placement(slot, partition, &placement, now, untrusted, fresh);
            if placed.stopped_owning {
                tracing::debug!(partition = p, "no longer the owner");
            }
            if placed.held_empty {
                self.checkpoint(partition, None);
            }
        }
    }

    /// Stops serving a partition someone else owns at a newer epoch. If our
    /// table still names us, it becomes `Incoming`, so the ownership task
    /// takes it again once this node is its committed owner at a newer
    /// epoch.
    fn deposed(&mut self, partition: PartitionId, by: Epoch) {
        let ours = self.ours(partition);
        if let Some(slot) = self.slot(partition).as_mut()
            && slot.deposed(by, ours)
        {
            tracing::warn!(
                partition = partition.0,
                "another node owns the partition at a newer epoch; stopped serving it"
            );
        }
    }

    /// Whether the table names this node `partition`'s owner.
    fn ours(&self, partition: PartitionId) -> bool {
        owner_here(&self.args.cluster, partition)
    }

    /// The copy of `partition` this worker holds.
    fn copy_of(&self, partition: PartitionId) -> Option<&Partition> {
        self.slots
            .get(partition.0 as usize)?
            .as_ref()?
            .partition
            .as_ref()
    }

    /// The copy of `partition` this worker holds, as `/v1/partitions`
    /// reports it.
    fn held(&self, partition: PartitionId) -> Option<Held> {
        let copy = self.copy_of(partition)?;
        Some(Held {
            partition: partition.0,
            epoch: copy.epoch().0,
            last_epoch: copy.last_epoch().0,
            last_seq: copy.last_seq().0,
        })
    }

    fn copies(&self) -> Vec<(Held, &'static str)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(p, slot)| {
                let role = match slot.as_ref()?.role {
                    Role::Owner => "owner",
                    Role::Backup => "backup",
                    Role::Incoming => "incoming",
                    Role::Retiring { .. } => "retiring",
                };
                Some((self.held(PartitionId(u32::try_from(p).ok()?))?, role))
            })
            .collect()
    }

    /// The epoch below which this node refuses anything for `partition`
    /// ([`eddy_replica::fence`]).
    fn fence(&self, partition: PartitionId) -> Epoch {
        let committed = self.args.cluster.borrow().placement.epoch(partition);
        let slot = self
            .slots
            .get(partition.0 as usize)
            .and_then(Option::as_ref);
        eddy_replica::fence(slot, committed)
    }

    /// Runs a peer's replication message once the committed configuration
    /// shows its epoch; until then it waits ([`Parked`]).
    fn offer(&mut self, partition: PartitionId, write: PeerWrite) {
        let known = self.args.cluster.borrow().placement.epoch(partition);
        let (epoch, bytes) = (write.epoch(), write.bytes());
        match self
            .parked
            .admit(partition, epoch, known, bytes, write, Instant::now())
        {
            Admit::Now(write) => self.run_peer_write(partition, write),
            Admit::Held => {
                metrics::counter!("eddy_peer_writes_held_total").increment(1);
            }
            Admit::Refused(write) => {
                metrics::counter!("eddy_peer_writes_refused_total", "reason" => "budget")
                    .increment(1);
                write.refuse(known);
            }
        }
    }

    /// Runs the held messages `cluster` now vouches for.
    fn release_parked(&mut self, cluster: &ClusterState) {
        if self.parked.is_empty() {
            return;
        }
        for (partition, write) in self.parked.release(|p| cluster.placement.epoch(p)) {
            self.run_peer_write(partition, write);
        }
    }

    /// Refuses the held messages the configuration did not vouch for in
    /// time: a forged epoch, or this node's configuration is stuck.
    fn expire_parked(&mut self, now: Instant) {
        let expired = self.parked.expired(now);
        if expired.is_empty() {
            return;
        }
        let cluster = self.args.cluster.borrow().clone();
        metrics::counter!("eddy_peer_writes_refused_total", "reason" => "unknown_epoch")
            .increment(expired.len() as u64);
        for (partition, write) in expired {
            let known = cluster.placement.epoch(partition);
            crate::warn_limited!(
                partition = partition.0,
                epoch = write.epoch().0,
                known = known.0,
                "refused replication at an epoch the committed configuration never showed"
            );
            write.refuse(known);
        }
    }

    fn run_peer_write(&mut self, partition: PartitionId, write: PeerWrite) {
        let fence = self.fence(partition);
        if write.epoch() < fence {
            // A newer owner is known: the sender is deposed.
            metrics::counter!("eddy_peer_writes_refused_total", "reason" => "deposed").increment(1);
            write.answer(Replicated::Stale { current: fence });
            return;
        }
        match write {
            PeerWrite::Replicate {
                epoch,
                entries,
                reply,
            } => self.replicate(partition, epoch, &entries, reply),
            PeerWrite::Snapshot {
                epoch,
                link,
                chunk,
                last,
                reply,
            } => self.snapshot_chunk(partition, (link, epoch), &chunk, last, reply),
        }
    }

    /// Backup side of replication: applies the owner's entries and answers
    /// once they are in the log (with `data_dir`); a write that fails
    /// answers `NeedSnapshot`, so the owner does not count this copy.
    fn replicate(
        &mut self,
        partition: PartitionId,
        epoch: Epoch,
        entries: &[u8],
        reply: oneshot::Sender<Replicated>,
    ) {
        // The table is read only if a serving owner is deposed: this runs
        // for every batch a backup receives.
        let cluster = &self.args.cluster;
        let slot = self
            .slots
            .get_mut(partition.0 as usize)
            .and_then(Option::as_mut);
        let Some(slot) = slot else {
            let _ = reply.send(Replicated::NeedSnapshot { have: Seq(0) });
            return;
        };
        let outcome = slot.replicate(epoch, entries, || owner_here(cluster, partition));
        if outcome.stood_down {
            tracing::warn!(
                partition = partition.0,
                "another node owns the partition at a newer epoch; stopped serving it"
            );
        }
        if !matches!(outcome.answer, Replicated::Applied { .. }) {
            let _ = reply.send(outcome.answer);
            return;
        }
        let written = if outcome.grew { entries } else { &[] };
        self.persist(
            partition,
            written,
            Some(confirm_when_written(outcome.answer, reply)),
        );
    }

    /// Receiving side of a snapshot stream; the last chunk installs the copy
    /// and, with `data_dir`, answers once it is written as the snapshot.
    fn snapshot_chunk(
        &mut self,
        partition: PartitionId,
        stream: (u64, Epoch),
        chunk: &[u8],
        last: bool,
        reply: oneshot::Sender<Replicated>,
    ) {
        metrics::counter!("eddy_snapshot_bytes_received_total").increment(chunk.len() as u64);
        let registry = self.args.registry.clone();
        let config = self.args.partition_config.clone();
        let installed = self
            .slot(partition)
            .get_or_insert_with(|| Slot::new(Role::Backup))
            .install(stream, chunk, last, || {
                SnapshotReader::new(registry, config)
            });
        let answer = installed.answer();
        match installed {
            Installed::Written { replaced, .. } => {
                if let Some(held) = replaced {
                    // Said out loud: a serving copy replaced is an ownership
                    // change the logs of a lost write must show.
                    tracing::warn!(
                        partition = partition.0,
                        epoch = stream.1.0,
                        held = held.0,
                        "a newer owner's copy replaced ours; stopped serving it"
                    );
                }
                // An owner's whole copy replaced a damaged or lost one: the
                // ownership task need not take it out of the ISR any more.
                if self.untrusted.remove(&partition) {
                    self.args.lost.restored(partition);
                }
                self.checkpoint(partition, Some(confirm_when_written(answer, reply)));
            }
            Installed::Held { .. } => {
                // The copy's own entries up to its position may still be on
                // their way to the log: confirmed behind them.
                self.persist(partition, &[], Some(confirm_when_written(answer, reply)));
            }
            Installed::Broken(why) => {
                tracing::warn!(partition = partition.0, why, "snapshot stream dropped");
                let _ = reply.send(answer);
            }
            Installed::WrongEpoch { claimed } => {
                crate::warn_limited!(
                    partition = partition.0,
                    epoch = stream.1.0,
                    claimed = claimed.0,
                    "refused a snapshot whose copy claims another epoch than its sender"
                );
                let _ = reply.send(answer);
            }
            Installed::More | Installed::Foreign | Installed::Stale { .. } => {
                let _ = reply.send(answer);
            }
        }
    }

    /// Becomes the owner; `false` if nothing changed ([`eddy_replica::take`]).
    fn take(&mut self, partition: PartitionId, epoch: Epoch) -> bool {
        // The ownership task read the configuration before this message;
        // the worker may know a newer one by now.
        let committed_here =
            self.args.cluster.borrow().placement.epoch(partition) == epoch && self.ours(partition);
        if eddy_replica::must_reelect(self.inherited.get(&partition).copied(), epoch) {
            tracing::debug!(
                partition = partition.0,
                epoch = epoch.0,
                "not taken: reloaded by a restarted worker, waiting for its re-election"
            );
            return false;
        }
        self.inherited.remove(&partition);
        let untrusted = self.untrusted.contains(&partition);
        let fresh = self.fresh_later(partition);
        let slot = self.slot(partition);
        match eddy_replica::take(slot, epoch, committed_here, untrusted, fresh) {
            Take::Taken { had_copy, seq } => {
                tracing::debug!(
                    partition = partition.0,
                    epoch = epoch.0,
                    seq = seq.0,
                    had_copy,
                    "taking ownership"
                );
                if had_copy {
                    metrics::counter!("eddy_promotions_total").increment(1);
                } else {
                    // On disk before any write: a restarted ISR member must
                    // find the copy it was elected with, even an empty one.
                    self.checkpoint(partition, None);
                }
                true
            }
            Take::Untrusted => {
                crate::warn_limited!(
                    partition = partition.0,
                    epoch = epoch.0,
                    "elected owner of a copy this node cannot vouch for (damaged on disk, or lost with a failed worker); not served until an owner's snapshot replaced it"
                );
                false
            }
            Take::Stale {
                committed_here,
                fence,
            } => {
                metrics::counter!("eddy_stale_takes_refused_total").increment(1);
                tracing::debug!(
                    partition = partition.0,
                    epoch = epoch.0,
                    fence = fence.0,
                    committed_here,
                    "not taken: a newer owner is known"
                );
                false
            }
            Take::NoCopy => {
                metrics::counter!("eddy_takeovers_without_copy_total").increment(1);
                crate::warn_limited!(
                    partition = partition.0,
                    epoch = epoch.0,
                    "elected owner without a local copy; handing the partition to another in-sync member"
                );
                self.untrusted.insert(partition);
                self.args.lost.report([partition]);
                false
            }
        }
    }

    async fn barrier(
        &mut self,
        partition: PartitionId,
        resync: &[NodeId],
    ) -> Option<Vec<ReplicaAck>> {
        let slot = self.slot(partition).as_mut()?;
        slot.owned()?;
        for backup in resync {
            slot.lost_track(backup);
        }
        Some(self.ship(partition, &[]).await)
    }

    /// Reads `acks` nothing waits for in the background, each on its own
    /// (one silent backup does not hold up another's answer): the ISR
    /// bookkeeping notes confirmations and resyncs backups that failed.
    fn settle_in_background(&self, acks: Vec<ReplicaAck>) {
        for ack in acks {
            let isr = self.args.isr.clone();
            let cluster = self.args.cluster.clone();
            tokio::spawn(async move {
                isr.settle(&cluster, ack).await;
            });
        }
    }

    async fn tick(&mut self, myself: &ActorRef<WorkerMsg>) {
        let now_ts = now();
        let now = Instant::now();
        self.expire_parked(now);
        let (mut active, mut passive, mut timers, mut fired) = (0, 0, 0, 0);
        let mut out = std::mem::take(&mut self.out);
        let mut fired_in: Vec<(PartitionId, Vec<u8>)> = Vec::new();
        let mut retired = Vec::new();
        let mut compact = Vec::new();
        // Every second an owner asks its backups, with an empty batch,
        // whether they still follow it: one that follows a newer owner
        // answers `Stale`, so an owner that slept through an election stops
        // serving (and reading) a stale copy even without writes (found by
        // eddy-chaos `pause-past-detection`); the answers also bring idle
        // partitions' backups into the ISR.
        let check = now.duration_since(self.checked_at) >= OWNER_CHECK_EVERY;
        if check {
            self.checked_at = now;
        }
        let cluster = self.args.cluster.borrow().clone();
        let mut checked: Vec<(PartitionId, Vec<u8>)> = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(held) = slot.as_mut() else {
                continue;
            };
            if held.may_drop(now, in_isr(&cluster, PartitionId(index as u32))) {
                // Never while the configuration counts this copy in sync:
                // elected next, this node must find it.
                tracing::debug!(partition = index, "dropped a retired copy");
                *slot = None;
                retired.push(PartitionId(index as u32));
                continue;
            }
            if held.wal_bytes > crate::storage::COMPACT_AFTER_BYTES {
                compact.push(PartitionId(index as u32));
            }
            let serving = held.owned().is_some();
            let Some(partition) = held.partition.as_mut() else {
                continue;
            };
            if serving {
                fired += partition.tick(now_ts, &mut out);
                if !out.log.is_empty() {
                    fired_in.push((partition.id(), out.log.as_bytes().to_vec()));
                    out.log.clear();
                } else if check {
                    checked.push((partition.id(), Vec::new()));
                }
            } else {
                partition.passivate_idle(now_ts);
            }
            let stats = partition.stats();
            active += stats.keys_active;
            passive += stats.keys_passive;
            timers += stats.timers_pending;
        }
        let alerts = std::mem::take(&mut out.alerts);
        self.out = out;
        if let Some(storage) = self.args.storage.clone() {
            for partition in retired {
                storage.remove(partition);
            }
        }
        for partition in compact {
            self.checkpoint(partition, None);
        }
        let mut durable = Vec::new();
        if self.args.storage.is_some() {
            for (partition, entries) in &fired_in {
                durable.push((*partition, self.persist_awaited(*partition, entries)));
            }
        }
        // After persisting: the checks carry no entries.
        fired_in.append(&mut checked);
        if !fired_in.is_empty() || !alerts.is_empty() {
            let mut acks = Vec::new();
            self.ship_all(fired_in, &mut acks).await;
            let myself = myself.clone();
            let hub = self.args.alerts.clone();
            let wait = self.args.wait_for_backups;
            let isr = self.args.isr.clone();
            let cluster = self.args.cluster.clone();
            // Timer alerts, like event alerts, are published once the
            // firing is on every backup (under a controller: every backup
            // the ISR needs), and dropped if it is not (as a failed write's
            // are): its partition may yet be taken over without it, and the
            // new owner fires the timer again.
            tokio::spawn(async move {
                let mut unconfirmed = std::collections::BTreeSet::new();
                for (partition, written) in durable {
                    if !matches!(written.await, Ok(Ok(()))) {
                        unconfirmed.insert(partition);
                    }
                }
                if wait || check {
                    for ack in acks {
                        let (failed, needed) = isr.settle(&cluster, ack).await;
                        for (partition, failure) in failed {
                            if let crate::ingress::AckFailure::Stale(by) = failure {
                                let _ = myself.cast(WorkerMsg::Deposed { partition, by });
                            }
                            tracing::debug!(partition = partition.0, %failure, "a backup did not confirm");
                            let counts = needed.contains(&partition);
                            if wait && counts {
                                unconfirmed.insert(partition);
                            }
                        }
                    }
                }
                for alert in alerts {
                    // Not in this node's log, or (`acks = all`) not on
                    // every backup: the firing may be lost, so is its alert.
                    if unconfirmed.contains(&alert.partition) {
                        metrics::counter!("eddy_alerts_dropped_total").increment(1);
                        continue;
                    }
                    hub.publish(alert);
                }
            });
        }
        let worker = self.args.index.to_string();
        metrics::counter!("eddy_timers_fired_total").increment(fired as u64);
        metrics::gauge!("eddy_keys_active", "worker" => worker.clone()).set(active as f64);
        metrics::gauge!("eddy_keys_passive", "worker" => worker.clone()).set(passive as f64);
        metrics::gauge!("eddy_timers_pending", "worker" => worker).set(timers as f64);
    }
}

/// Answers a replication request with `outcome` once its write succeeded;
/// a copy whose write failed does not hold the entries durably and says it
/// needs a snapshot (which the owner sends, repairing the log).
fn confirm_when_written(outcome: Replicated, reply: oneshot::Sender<Replicated>) -> Done {
    Box::new(move |written| {
        let answer = match written {
            Ok(()) => outcome,
            Err(_) => Replicated::NeedSnapshot { have: Seq(0) },
        };
        let _ = reply.send(answer);
    })
}

/// The snapshot of `copy` as chunks, taken in one pass before any await
/// (a partition is not `Sync`, and must not change while it is taken).
fn chunks_of(copy: &Partition) -> Result<Vec<Vec<u8>>, String> {
    copy.snapshot_chunks(DEFAULT_CHUNK_BYTES)
        .map_err(|err| format!("snapshot did not encode: {err}"))
}

/// Streams snapshot `chunks` of `partition` to `peer`; the answer to come is
/// the last chunk's.
async fn send_snapshot(
    links: &PeerLinks,
    peer: &NodeIdentity,
    partition: PartitionId,
    chunks: Result<Vec<Vec<u8>>, String>,
    epoch: Epoch,
) -> Result<PeerPending, PeerError> {
    let no_answer = |reason: String| PeerError::NoAnswer {
        node: peer.name.clone(),
        reason,
    };
    let chunks = chunks.map_err(no_answer)?;
    let count = chunks.len();
    let mut last = None;
    for (index, chunk) in chunks.iter().enumerate() {
        let pending = links
            .snapshot_chunk(peer, partition.0, epoch.0, chunk, index + 1 == count)
            .await?;
        last = Some(pending);
    }
    last.ok_or_else(|| no_answer("empty snapshot".into()))
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        myself.send_interval(args.tick, || WorkerMsg::Tick);
        let failures_seen = args.links.faults().worker_failures();
        let mine = |p: &PartitionId| p.0 as usize % args.workers.max(1) == args.index;
        let mut untrusted: std::collections::BTreeSet<PartitionId> =
            args.damaged.iter().filter(|p| mine(p)).copied().collect();
        let mut reloaded = Vec::new();
        let mut inherited = BTreeMap::new();
        if args.restarted {
            let cluster = args.cluster.borrow().clone();
            let me = cluster.member_id();
            let share: Vec<(PartitionId, Option<&eddy_control::Assignment>)> =
                (0..cluster.placement.table().partitions())
                    .map(PartitionId)
                    .filter(mine)
                    .map(|p| (p, assignment(&cluster, p)))
                    .collect();
            match reload(&args).await {
                Some(found) => {
                    // The failed worker's log holds everything it confirmed
                    // or acknowledged: its copies come back as after a
                    // process restart — the damaged ones untrusted, its
                    // ownerships taken again only at a newer epoch.
                    untrusted = crate::storage::untrusted_after_load(&found);
                    let (loaded, _) = found;
                    inherited = share
                        .iter()
                        .filter_map(|(p, a)| {
                            a.filter(|a| a.owner.as_ref() == Some(&me))
                                .map(|a| (*p, a.epoch))
                        })
                        .collect();
                    tracing::info!(
                        worker = args.index,
                        copies = loaded.len(),
                        damaged = untrusted.len(),
                        "restarted partition worker reloaded its copies from data_dir"
                    );
                    reloaded = loaded;
                }
                None => {
                    // Without data_dir the failed worker's copies are gone:
                    // none is served, or replaced by an empty copy, until an
                    // owner's snapshot replaced it.
                    untrusted = share
                        .iter()
                        .filter(|(_, a)| eddy_replica::lost_with_worker(*a))
                        .map(|(p, _)| *p)
                        .collect();
                }
            }
            // This node leaves the ISRs of the untrusted.
            args.lost.report(untrusted.iter().copied());
            args.lost.inherited(inherited.iter().map(|(p, e)| (*p, *e)));
        }
        let mut state = WorkerState {
            args,
            slots: Vec::new(),
            checked_at: Instant::now(),
            out: Outputs::default(),
            untrusted,
            parked: Parked::default(),
            inherited,
            failures_seen,
        };
        let recovered: Vec<crate::storage::Loaded> = match state.args.recovered.lock() {
            Ok(mut all) => {
                let (mine, others) = std::mem::take(&mut *all).into_iter().partition(|l| {
                    l.partition.0 as usize % state.args.workers.max(1) == state.args.index
                });
                *all = others;
                mine
            }
            Err(_) => Vec::new(),
        };
        for loaded in recovered.into_iter().chain(reloaded) {
            // A backup copy until the configuration commits it to us.
            let slot = state
                .slot(loaded.partition)
                .get_or_insert_with(|| Slot::new(Role::Backup));
            slot.partition = Some(loaded.copy);
            slot.wal_bytes = loaded.wal_bytes;
        }
        let cluster = state.args.cluster.borrow().clone();
        state.apply_roles(&cluster);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        message: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Apply { events, reply } => {
                let (mut applied, touched) = state.apply(events);
                state.ship_all(touched, &mut applied.acks).await;
                // The caller may have given up (timeout); nothing to undo then.
                let _ = reply.send(applied);
            }
            WorkerMsg::State {
                partition,
                kind,
                key,
                reply,
            } => {
                let result = match state.slot(partition).as_mut() {
                    Some(slot) => match slot.owned() {
                        Some(p) => p
                            .state_json(kind, &key)
                            .map(|state| (state, p.epoch()))
                            .map_err(|e| e.to_string()),
                        None => Err("this node does not serve the partition right now".into()),
                    },
                    None => Err("this node does not serve the partition right now".into()),
                };
                let _ = reply.send(result);
            }
            WorkerMsg::Tick => {
                if state.args.links.faults().worker_failures() > state.failures_seen {
                    // The chaos hook's worker failure: as a bug in the
                    // worker would, it takes every copy of this worker with
                    // it.
                    return Err("injected worker failure (fault hook)".into());
                }
                state.tick(&myself).await
            }
            WorkerMsg::Placement(cluster) => {
                // Roles first: a held message the new configuration vouches
                // for must meet the roles that configuration gives.
                let behind = state.placement(&cluster);
                state.release_parked(&cluster);
                if !behind.is_empty() {
                    tracing::debug!(partitions = behind.len(), "bringing new backups up to date");
                    let touched = behind.into_iter().map(|p| (p, Vec::new())).collect();
                    let mut acks = Vec::new();
                    state.ship_all(touched, &mut acks).await;
                    // As after a take: a new backup that answers in sync
                    // becomes an ISR candidate now, and one that does not
                    // gets its snapshot now, not at the next check — a
                    // substitute for a silent backup is what a stalled
                    // partition waits for.
                    state.settle_in_background(acks);
                }
            }
            WorkerMsg::Peer { partition, write } => state.offer(partition, write),
            WorkerMsg::Copies { reply } => {
                let _ = reply.send(state.copies());
            }
            WorkerMsg::Take { partition, epoch } => {
                if state.take(partition, epoch) {
                    let acks = state.ship(partition, &[]).await;
                    // The backups' first answers make them ISR candidates
                    // now rather than at the next check.
                    state.settle_in_background(acks);
                }
            }
            WorkerMsg::Resync { partition, resync } => {
                // A snapshot's answer makes its backup an ISR candidate at
                // once (a substitute is what a stalled partition waits for).
                if let Some(acks) = state.barrier(partition, &resync).await {
                    state.settle_in_background(acks);
                }
            }
            WorkerMsg::Deposed { partition, by } => state.deposed(partition, by),
            WorkerMsg::Incoming { reply } => {
                let incoming = state
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, slot)| slot.as_ref().is_some_and(|s| s.role == Role::Incoming))
                    .map(|(p, _)| PartitionId(p as u32))
                    .collect();
                let _ = reply.send(incoming);
            }
        }
        Ok(())
    }
}

/// Outcome counts of one batch, flushed to the metrics once per batch so the
/// per-event path does not go through the metrics registry.
#[derive(Default)]
struct Counts {
    applied: u64,
    duplicates: u64,
}

impl Counts {
    fn record(&mut self, partition: PartitionId, outcome: &Result<Submitted, ApplyError>) {
        match outcome {
            Ok(Submitted::Applied(_)) => self.applied += 1,
            Ok(Submitted::Duplicate) => self.duplicates += 1,
            Err(err) => {
                let reason = match err {
                    ApplyError::HandlerPanicked { kind, key, message } => {
                        metrics::counter!("eddy_handler_panics_total").increment(1);
                        tracing::warn!(
                            partition = partition.0,
                            kind,
                            key,
                            message,
                            "handler panicked; event rejected, key kept its state"
                        );
                        "handler_panic"
                    }
                    ApplyError::Codec(_) | ApplyError::Malformed(_) => "schema",
                    ApplyError::KeyTooLong { .. } => "key_too_long",
                    ApplyError::TooManyProducers { .. } => "too_many_producers",
                    _ => "other",
                };
                metrics::counter!("eddy_events_rejected_total", "reason" => reason).increment(1);
            }
        }
    }

    fn flush(&self) {
        metrics::counter!("eddy_events_applied_total").increment(self.applied);
        crate::history::TOTALS.add_applied(self.applied);
        metrics::counter!("eddy_events_duplicate_total").increment(self.duplicates);
    }
}

/// The copies of `args`' worker on disk, loaded once every write queued
/// before is in its file; `None` without `data_dir`, or if the data
/// directory could not be read.
async fn reload(args: &WorkerArgs) -> Option<crate::storage::Reloaded> {
    let storage = args.storage.as_ref()?;
    let (tx, rx) = oneshot::channel();
    let (workers, index) = (args.workers.max(1), args.index);
    storage.load(crate::writer::Load {
        wanted: Box::new(move |p| p.0 as usize % workers == index),
        registry: args.registry.clone(),
        config: args.partition_config.clone(),
        done: Box::new(move |loaded| {
            let _ = tx.send(loaded);
        }),
    });
    let (loaded, damaged) = rx.await.ok()?;
    if let Some((_, err)) = damaged.iter().find(|(p, _)| p.is_none()) {
        tracing::error!(%err, "a restarted partition worker cannot read data_dir; its copies are treated as lost");
        return None;
    }
    Some((loaded, damaged))
}

/// Starts workers and restarts any that fails. A restarted worker reloads
/// its copies from `data_dir`; without one it holds nothing and its
/// partitions are untrusted, as damaged copies are at start
/// (docs/PROTOCOL.md, election rule 3).
pub struct Supervisor;

/// The supervisor's view: how to start worker `i` again.
pub struct SupervisorState {
    args: WorkerArgs,
    names: Vec<String>,
}

/// Arguments of the supervisor.
pub struct SupervisorArgs {
    /// Template for every worker (index is overwritten).
    pub worker: WorkerArgs,
    /// Registered names, one per worker.
    pub names: Vec<String>,
}

impl Actor for Supervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        for (index, name) in args.names.iter().enumerate() {
            let worker = WorkerArgs {
                index,
                ..args.worker.clone()
            };
            Actor::spawn_linked(Some(name.clone()), Worker, worker, myself.get_cell()).await?;
        }
        Ok(SupervisorState {
            args: args.worker,
            names: args.names,
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, reason) = event {
            let name = cell.get_name().unwrap_or_default();
            if let Some(index) = state.names.iter().position(|n| *n == name) {
                tracing::error!(worker = index, %reason, "partition worker failed; restarting it");
                metrics::counter!("eddy_worker_restarts_total").increment(1);
                let worker = WorkerArgs {
                    index,
                    restarted: true,
                    ..state.args.clone()
                };
                Actor::spawn_linked(Some(name), Worker, worker, myself.get_cell()).await?;
            }
        }
        Ok(())
    }
}
