//! Acknowledging under a controller: a write stands once every member of
//! its partition's committed in-sync replica set confirmed it, or once the
//! controller committed an ISR without those that did not
//! (`eddy_control::OwnerIsr` decides; this drives it).
//!
//! Backups the owner does not need (ring replicas outside the ISR, catching
//! up) are not waited for: their answers are read in the background, and a
//! backup that confirmed everything acknowledged becomes a candidate and
//! then joins the ISR on this owner's proposal. A backup that is needed and
//! does not confirm — dead, cut off, or a link that broke — costs one
//! commit (`SetIsr`, proposed through the controller), never a wait for the
//! failure detector: a single broken link does not stall a partition.
//! Under `min_insync_replicas`' default two copies that commit waits for a
//! substitute: a needed backup that leaves frames unanswered is reported
//! unreachable (`eddy_control::Unreachable`), the cluster driver serves by a
//! ring without it, and the member standing in joins the ISR first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_control::{Command, Decision, MemberId, MinInsync, OwnerIsr, Unreachable};
use eddy_core::{Epoch, PartitionId, Seq};
use futures_util::future::join_all;

use eddy_cluster::NodeId;

use crate::cluster::ClusterState;
use crate::control::ControlHandle;
use crate::ingress::{AckFailure, IngressError, settle_ack};
use crate::worker::{ReplicaAck, WorkerMsg};

/// How long an owner waits for its ISR change to be committed before the
/// write fails (503, retried by the client): an election takes about 2 s.
const COMMIT_WAIT: Duration = Duration::from_secs(4);
/// How long an expansion proposed through this node's own voter may take
/// before it is proposed through every voter.
const EXPAND_HERE: Duration = Duration::from_secs(1);
/// ISR changes one write may wait for (another change can commit between
/// the owner's view and its proposal; then it proposes again).
const MAX_PROPOSALS: u32 = 3;
/// A backup that keeps failing is resynced (a snapshot) at most this often
/// per partition: a snapshot encodes the whole partition.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// The owner-side ISR bookkeeping of every partition this node owns.
#[derive(Clone)]
pub struct IsrAcks {
    trackers: Arc<Mutex<HashMap<PartitionId, OwnerIsr>>>,
    control: ControlHandle,
    /// Partition workers by index (`p % workers`), to resync a backup.
    workers: Arc<Vec<String>>,
    resynced: Arc<Mutex<HashMap<(PartitionId, NodeId), Instant>>>,
    /// `min_insync_replicas`.
    min_insync: MinInsync,
    /// Needed backups that leave frames unanswered, published to the
    /// cluster driver as they change.
    reach: Arc<Mutex<Unreachable>>,
    unreachable: Arc<tokio::sync::watch::Sender<BTreeSet<NodeId>>>,
}

/// What happened to one partition of a write.
pub enum Outcome {
    /// Acknowledge.
    Ack,
    /// A backup serves a newer owner, or the committed owner changed: the
    /// partition and the newer epoch.
    Deposed(PartitionId, Epoch),
    /// Not acknowledged, and why.
    Failed(IngressError),
}

impl IsrAcks {
    /// Bookkeeping that proposes through `control` and publishes the
    /// backups it finds unreachable on `unreachable`.
    pub fn new(
        control: ControlHandle,
        workers: Vec<String>,
        min_insync: MinInsync,
        unreachable: tokio::sync::watch::Sender<BTreeSet<NodeId>>,
    ) -> IsrAcks {
        IsrAcks {
            trackers: Arc::new(Mutex::new(HashMap::new())),
            control,
            workers: Arc::new(workers),
            resynced: Arc::new(Mutex::new(HashMap::new())),
            min_insync,
            reach: Arc::new(Mutex::new(Unreachable::default())),
            unreachable: Arc::new(unreachable),
        }
    }

    /// Records whether `backup` answered a frame of `parts` partitions
    /// (`failed` those it did not confirm): silent on every one while
    /// `needed`, it is unreachable; any answer makes it reachable again.
    fn heard(
        &self,
        backup: &NodeId,
        parts: usize,
        failed: &[(PartitionId, AckFailure)],
        needed: bool,
    ) {
        if parts == 0 {
            return;
        }
        let silent = failed.len() == parts
            && failed
                .iter()
                .all(|(_, f)| matches!(f, AckFailure::Unanswered(_)));
        let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        let changed = reach.heard(backup, !silent, needed, Instant::now());
        if changed {
            self.publish_unreachable(&reach);
        }
    }

    fn publish_unreachable(&self, reach: &Unreachable) {
        let peers = reach.peers();
        tracing::debug!(peers = ?peers, "backups unreachable from this owner");
        self.unreachable.send_replace(peers);
    }

    /// Tries unreachable backups again once their hold ended, until
    /// `shutdown`.
    pub async fn expire_unreachable(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
            if reach.expire(Instant::now()) {
                self.publish_unreachable(&reach);
            }
        }
    }

    /// A backup answered without confirming: its partition's worker sends
    /// it a snapshot next, without waiting for it. Not for silence: a
    /// backup that lost frames says so in its next answer (`Behind`), and
    /// snapshots to a peer behind a cut link would only be encoded in vain,
    /// once a second for every partition.
    fn resync(&self, partition: PartitionId, backup: &NodeId, failure: &AckFailure) {
        if matches!(failure, AckFailure::Unanswered(_) | AckFailure::Stale(_)) {
            return;
        }
        {
            let now = Instant::now();
            let mut resynced = self.resynced.lock().unwrap_or_else(|p| p.into_inner());
            resynced.retain(|_, at| now.duration_since(*at) < RESYNC_EVERY);
            if resynced.contains_key(&(partition, backup.clone())) {
                return;
            }
            resynced.insert((partition, backup.clone()), now);
        }
        if let Some(worker) = crate::worker::of_partition(&self.workers, partition) {
            let _ = worker.cast(WorkerMsg::Resync {
                partition,
                resync: vec![backup.clone()],
            });
        }
    }

    /// Runs `f` on `partition`'s tracker, brought up to the committed
    /// assignment of `cluster`; `None` if this node is not its committed
    /// owner.
    fn with<T>(
        &self,
        cluster: &ClusterState,
        partition: PartitionId,
        f: impl FnOnce(&mut OwnerIsr) -> T,
    ) -> Option<T> {
        let config = cluster.committed.as_ref()?;
        let assignment = config.assignment(partition)?;
        let me = cluster.member_id();
        if assignment.owner.as_ref() != Some(&me) {
            return None;
        }
        // A poisoned lock means a panic mid-update elsewhere: the map is
        // still consistent (each update is one assignment), so go on.
        let mut trackers = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        let min_insync = self.min_insync.copies(
            usize::from(config.replication()),
            config.staying_members().count(),
        );
        let fresh = || OwnerIsr::with_min_insync(partition, me.clone(), assignment, min_insync);
        let tracker = trackers.entry(partition).or_insert_with(fresh);
        if tracker.epoch() != assignment.epoch {
            *tracker = fresh();
        }
        tracker.set_min_insync(min_insync);
        tracker.observe(assignment);
        let unreachable = self.unreachable.borrow();
        let silent = assignment
            .isr
            .iter()
            .filter(|m| unreachable.contains(&m.name))
            .cloned()
            .collect();
        tracker.set_silent(silent);
        Some(f(tracker))
    }

    fn member(cluster: &ClusterState, name: &eddy_cluster::NodeId) -> Option<MemberId> {
        let config = cluster.committed.as_ref()?;
        config.member_named(name).map(|m| m.id.clone())
    }

    /// A backup confirmed `partition` through `through`: proposes its
    /// entry into the ISR when due.
    fn note(
        &self,
        cluster: &ClusterState,
        partition: PartitionId,
        member: &MemberId,
        through: Seq,
    ) {
        let expand = self
            .with(cluster, partition, |t| t.confirmed(member, through))
            .flatten();
        if let Some(command) = expand {
            metrics::counter!("eddy_isr_expansions_proposed_total").increment(1);
            self.propose_in_background(partition, member.clone(), command);
        }
    }

    /// Proposes `command` without waiting; its committed outcome updates
    /// the partition's tracker as soon as a voter reports it. Here first;
    /// if that does not commit soon, through every live voter, as a shrink
    /// is: a substitute still joins when this owner's link to the leader is
    /// the one cut (write-path rule 7), without every expansion of a
    /// re-placement costing a proposal per voter.
    fn propose_in_background(&self, partition: PartitionId, member: MemberId, command: Command) {
        let this = self.clone();
        let Command::SetIsr { version, .. } = command else {
            return;
        };
        tokio::spawn(async move {
            let mut committed = this
                .control
                .propose_isr(command.clone(), EXPAND_HERE, false)
                .await;
            if committed.is_none() {
                committed = this.control.propose_isr(command, COMMIT_WAIT, true).await;
            }
            match committed {
                Some(assignment) => this.adopt(partition, &assignment),
                None => this.expansion_lost(partition, &member, version),
            }
        });
    }

    /// An expansion proposed from `version` did not commit: `member` is
    /// proposed again at its next confirmation (`OwnerIsr::expansion_lost`).
    fn expansion_lost(&self, partition: PartitionId, member: &MemberId, version: u64) {
        metrics::counter!("eddy_isr_expansions_lost_total").increment(1);
        let mut trackers = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tracker) = trackers.get_mut(&partition) {
            tracker.expansion_lost(member, version);
        }
    }

    /// A committed assignment a voter reported, possibly ahead of this
    /// node's own view of the configuration (it may be cut off from the
    /// leader, which is when this matters).
    fn adopt(&self, partition: PartitionId, assignment: &eddy_control::Assignment) {
        let mut trackers = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tracker) = trackers.get_mut(&partition) {
            tracker.observe(assignment);
        }
    }

    /// Answers not waited for (backups outside the ISR, the owner's
    /// periodic check): confirmations move backups toward the ISR; a
    /// backup that failed gets a snapshot. Returns the partitions whose
    /// needed backup failed. No shrink is proposed here: one slow answer
    /// is no reason to drop a replica (a busy disk at start made every
    /// node shrink every ISR); the next write that needs it decides.
    pub fn settled(
        &self,
        cluster: &ClusterState,
        backup: &NodeId,
        parts: &[(PartitionId, Seq)],
        failed: &[(PartitionId, AckFailure)],
    ) -> Vec<PartitionId> {
        let Some(member) = Self::member(cluster, backup) else {
            return Vec::new();
        };
        let mut needed = Vec::new();
        let is_needed = |partition: PartitionId| {
            self.with(cluster, partition, |t| t.is_required(&member))
                .unwrap_or(false)
        };
        let any_needed = failed.iter().any(|(p, _)| is_needed(*p));
        self.heard(backup, parts.len(), failed, any_needed);
        for &(partition, through) in parts {
            let Some((_, failure)) = failed.iter().find(|(p, _)| *p == partition) else {
                self.note(cluster, partition, &member, through);
                continue;
            };
            self.resync(partition, backup, failure);
            if is_needed(partition) {
                needed.push(partition);
            }
        }
        needed
    }

    /// Waits for an answer no acknowledgement waits for and records it
    /// ([`Self::settled`]); returns the partitions it did not confirm and
    /// those of them whose ISR needs that backup.
    pub async fn settle(
        &self,
        cluster: &watch_cluster::Receiver,
        ack: ReplicaAck,
    ) -> (Vec<(PartitionId, AckFailure)>, Vec<PartitionId>) {
        let (backup, parts) = (ack.backup.clone(), ack.parts.clone());
        let failed = settle_ack(ack).await;
        let state = cluster.borrow().clone();
        let needed = self.settled(&state, &backup, &parts, &failed);
        (failed, needed)
    }

    /// A refusal for a batch touching `partitions` if the committed ISR of
    /// one this node owns is below `min_insync_replicas`: no write to it
    /// can stand, so none is applied (`OwnerIsr::short_of_copies`).
    pub fn refuse_short(
        &self,
        cluster: &ClusterState,
        partitions: impl IntoIterator<Item = PartitionId>,
    ) -> Option<IngressError> {
        partitions.into_iter().find_map(|partition| {
            match self.with(cluster, partition, |t| t.short_of_copies()).flatten() {
                Some(Decision::TooFew {
                    in_sync,
                    min_insync,
                    ..
                }) => {
                    metrics::counter!("eddy_writes_refused_short_total").increment(1);
                    Some(IngressError::Unavailable(format!(
                        "partition {}: {in_sync} in-sync copies, fewer than min_insync_replicas = {min_insync}; nothing applied (retry: another copy is being brought in sync)",
                        partition.0
                    )))
                }
                _ => None,
            }
        })
    }

    /// Waits for the answers the write needs and decides each partition it
    /// `written` (with the position its copy reached): every one, shipped
    /// to a backup or not — one with no backup in the table still needs
    /// this node to be its committed owner and its ISR to hold
    /// `min_insync_replicas` copies.
    pub async fn confirm(
        &self,
        cluster: watch_cluster::Receiver,
        written: &[(PartitionId, Seq)],
        acks: Vec<ReplicaAck>,
    ) -> Vec<Outcome> {
        let state = cluster.borrow().clone();
        let mut positions: BTreeMap<PartitionId, Seq> = written.iter().copied().collect();
        let mut needed = Vec::new();
        for ack in acks {
            for (partition, through) in &ack.parts {
                let at = positions.entry(*partition).or_default();
                *at = (*at).max(*through);
            }
            let Some(member) = Self::member(&state, &ack.backup) else {
                continue;
            };
            let required = ack.parts.iter().any(|(p, _)| {
                self.with(&state, *p, |t| t.is_required(&member))
                    .unwrap_or(false)
            });
            if required {
                needed.push((member, ack));
            } else {
                let (this, cluster) = (self.clone(), cluster.clone());
                tokio::spawn(async move { this.settle(&cluster, ack).await });
            }
        }
        let answers = join_all(needed.into_iter().map(|(member, ack)| async move {
            let (parts, backup) = (ack.parts.clone(), ack.backup.clone());
            (member, backup, parts, settle_ack(ack).await)
        }))
        .await;
        let mut confirmed: BTreeMap<PartitionId, BTreeSet<MemberId>> = BTreeMap::new();
        let mut outcomes = Vec::new();
        for (member, backup, parts, failed) in answers {
            self.heard(&backup, parts.len(), &failed, true);
            if let Some((partition, failure)) = failed.first() {
                tracing::debug!(%backup, partition = partition.0, failed = failed.len(), %failure, "a needed backup did not confirm");
            }
            for (partition, failure) in &failed {
                match failure {
                    AckFailure::Stale(by) => outcomes.push(Outcome::Deposed(*partition, *by)),
                    failure => self.resync(*partition, &backup, failure),
                }
            }
            for (partition, through) in parts {
                if !failed.iter().any(|(p, _)| *p == partition) {
                    self.note(&state, partition, &member, through);
                    confirmed
                        .entry(partition)
                        .or_default()
                        .insert(member.clone());
                }
            }
        }
        if !outcomes.is_empty() {
            return outcomes;
        }
        let decisions = positions.into_iter().map(|(partition, position)| {
            let confirmed = confirmed.remove(&partition).unwrap_or_default();
            self.decide(cluster.clone(), partition, position, confirmed)
        });
        join_all(decisions).await
    }

    /// Decides one partition, shrinking its ISR through the controller
    /// when a needed backup did not confirm.
    async fn decide(
        &self,
        cluster: watch_cluster::Receiver,
        partition: PartitionId,
        position: Seq,
        confirmed: BTreeSet<MemberId>,
    ) -> Outcome {
        let mut proposed = 0;
        loop {
            let state = cluster.borrow().clone();
            let decision = self.with(&state, partition, |t| t.decide(position, &confirmed));
            let (shrink, dropped) = match decision {
                None | Some(Decision::Deposed) => {
                    return Outcome::Deposed(partition, state.placement.epoch(partition));
                }
                Some(Decision::Ack) => return Outcome::Ack,
                Some(Decision::TooFew {
                    in_sync,
                    holding,
                    min_insync,
                }) => {
                    return Outcome::Failed(IngressError::Unavailable(format!(
                        "partition {}: {holding} of its {in_sync} in-sync copies hold the write, fewer than min_insync_replicas = {min_insync}; not acknowledged (retry: another copy is being brought in sync)",
                        partition.0
                    )));
                }
                Some(Decision::Shrink { shrink, dropped }) => (shrink, dropped),
            };
            if proposed == MAX_PROPOSALS {
                return Outcome::Failed(IngressError::Unavailable(format!(
                    "partition {}: backups {} did not confirm and the controller did not commit an ISR without them",
                    partition.0,
                    names(&dropped)
                )));
            }
            tracing::debug!(partition = partition.0, dropped = %names(&dropped), "shrinking the ISR before acknowledging");
            metrics::counter!("eddy_isr_shrinks_proposed_total").increment(1);
            proposed += 1;
            match self.control.propose_isr(shrink, COMMIT_WAIT, true).await {
                Some(assignment) => self.adopt(partition, &assignment),
                None => {
                    return Outcome::Failed(IngressError::Unavailable(format!(
                        "partition {}: backups {} did not confirm, and no ISR without them was committed within {COMMIT_WAIT:?} (is a majority of the controller's voters reachable?)",
                        partition.0,
                        names(&dropped)
                    )));
                }
            }
        }
    }
}

fn names(members: &[MemberId]) -> String {
    members
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cluster watch, named for this module's signatures.
mod watch_cluster {
    /// Receiver of the published cluster state.
    pub type Receiver = tokio::sync::watch::Receiver<std::sync::Arc<crate::cluster::ClusterState>>;
}
