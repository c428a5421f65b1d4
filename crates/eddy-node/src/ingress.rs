//! The ingress handle: how HTTP, the binary protocol and peer links hand
//! events to partition workers, here or on the owner node.
//!
//! A batch is split by owner (the current partition table): events of local
//! partitions are split by worker, keeping each key's events in order, and
//! sent to every worker involved at once; events owned elsewhere are forwarded
//! over the peer link, one batch per owner, concurrently. Each worker has a
//! fixed budget of in-flight events (ractor mailboxes are unbounded, so the
//! bound lives here): a batch that does not fit is refused with
//! [`IngressError::Overloaded`], which HTTP turns into 429 + `Retry-After`.
//! The reply comes once every event is applied — the acknowledgement
//! (replication joins it in a later issue).
//!
//! A forwarded batch is applied only where the receiver owns the partition;
//! the rest comes back as `not_owner` and the origin re-routes it after a
//! short wait (tables converge within the settle delay), a bounded number of
//! times. Nothing is ever forwarded twice, so two disagreeing tables cannot
//! make a loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_cluster::{ClusterParams, Held, MemberStatus, NodeId, NodeIdentity, PeerFailure};
use eddy_core::wire::WireEvent;
use eddy_core::{
    ApplyError, Epoch, KindId, PartitionId, ProducerRef, Registry, Replicated, Seq, Submitted,
    partition_of,
};
use eddy_replica::Confirmation;
use futures_util::future::{join, join_all};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::alerts::AlertHub;
use crate::cluster::ClusterState;
use crate::isr_acks::{IsrAcks, Outcome};
use crate::peer::{PeerError, PeerLinks};
use crate::worker::{PeerWrite, ReplicaAck, WorkerMsg};

/// How long a worker may take to answer before the request fails.
const WORKER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What an overloaded client is told to wait.
const OVERLOAD_RETRY_AFTER_MS: u64 = 200;
/// Routing rounds for events a peer says it does not own.
const MAX_ROUTE_ATTEMPTS: usize = 30;
/// Rounds an owner that gossip calls live may be unreachable while its
/// link looks cut (a failed connect within [`CUT_OFF_WITHIN`], or a silent
/// link) before the batch is refused: a broken link between this node and
/// the owner does not heal with the table (nothing moves), so the client
/// had better try another node now than after every round. A link still
/// being opened the first time (a cluster just formed) does not count.
const UNREACHABLE_ROUNDS: usize = 5;
/// See [`UNREACHABLE_ROUNDS`].
const CUT_OFF_WITHIN: Duration = Duration::from_secs(5);
/// How long a backup's answer is waited for before the owner re-checks the
/// replica set (a paused backup must not hold writes for the full call
/// timeout; the table drops it within the failure-detection time).
const REPLICA_PATIENCE: Duration = Duration::from_secs(2);
/// Wait between routing rounds: about the settle delay, so tables converge.
/// Short, because the first round after a failover is what a client waits for.
const ROUTE_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A validated event on its way to its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressEvent {
    /// Kind, as numbered by this node's registry.
    pub kind: KindId,
    /// The key (inline up to 24 bytes).
    pub key: compact_str::CompactString,
    /// Postcard encoding of the kind's event.
    pub payload: Vec<u8>,
    /// Idempotent producer, if any.
    pub producer: Option<ProducerRef>,
}

/// One event of a batch that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position in the batch.
    pub index: usize,
    /// Why.
    pub error: ApplyError,
}

/// The acknowledgement of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchReply {
    /// Events applied.
    pub accepted: u32,
    /// Events skipped as producer retries already applied.
    pub duplicates: u32,
    /// Events refused while applying (handler panic, limits); the rest of the
    /// batch was applied.
    pub rejected: Vec<Rejected>,
    /// Events forwarded to another owner (a routing client's table is stale).
    pub misrouted: u32,
    /// Only for forwarded batches: positions of events whose partition this
    /// node does not own; nothing was done with them.
    pub not_owner: Vec<usize>,
}

/// The batch was not processed at all.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IngressError {
    /// A worker has no room; nothing was applied. Retry after the delay.
    #[error("overloaded; retry after {retry_after_ms} ms")]
    Overloaded {
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// The node is starting or stopping; nothing was applied.
    #[error("node not ready")]
    NotReady,
    /// A worker did not answer (restarting or stuck). Some events may have been
    /// applied: retry with producer ids to stay exactly-once.
    #[error("partition worker unavailable: {0}")]
    Unavailable(String),
}

/// A key's state as read from its partition.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorState {
    /// The key's partition.
    pub partition: PartitionId,
    /// The owner epoch of the copy that answered: the partition's fencing
    /// epoch (docs/PROTOCOL.md), the same number `GET /v1/partitions` shows
    /// as a copy's `owner_epoch`.
    pub owner_epoch: Epoch,
    /// State as JSON, `None` if the key has none.
    pub state: Option<serde_json::Value>,
    /// Name of the node that answered as owner.
    pub owner: String,
    /// The partition's replica set in the table, owner first.
    pub replicas: Vec<String>,
}

struct Inner {
    registry: Arc<Registry>,
    partitions: u32,
    worker_names: Vec<String>,
    budgets: Vec<Arc<Semaphore>>,
    /// Each budget's size.
    max_inflight_events: usize,
    alerts: AlertHub,
    ready: AtomicBool,
    cluster: watch::Receiver<Arc<ClusterState>>,
    peers: PeerLinks,
    wait_for_backups: bool,
    isr: IsrAcks,
    /// When an owner last shipped entries (or its periodic check) here.
    shipped_here: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What an ingress is built from.
pub(crate) struct IngressParts {
    pub registry: Arc<Registry>,
    pub partitions: u32,
    pub worker_names: Vec<String>,
    pub max_inflight_events: usize,
    pub alerts: AlertHub,
    pub cluster: watch::Receiver<Arc<ClusterState>>,
    pub peers: PeerLinks,
    /// `acks = all`.
    pub wait_for_backups: bool,
    /// With a controller: acknowledgements by the committed ISR.
    pub isr: IsrAcks,
}

/// Cloneable handle to the node's workers.
#[derive(Clone)]
pub struct Ingress {
    inner: Arc<Inner>,
}

impl Ingress {
    pub(crate) fn new(parts: IngressParts) -> Self {
        let IngressParts {
            registry,
            partitions,
            worker_names,
            max_inflight_events,
            alerts,
            cluster,
            peers,
            wait_for_backups,
            isr,
        } = parts;
        let budgets = worker_names
            .iter()
            .map(|_| Arc::new(Semaphore::new(max_inflight_events)))
            .collect();
        Ingress {
            inner: Arc::new(Inner {
                registry,
                partitions,
                worker_names,
                budgets,
                max_inflight_events,
                alerts,
                ready: AtomicBool::new(false),
                cluster,
                peers,
                wait_for_backups,
                isr,
                shipped_here: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The kinds this node hosts.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Partition count.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// The cluster as this node sees it now.
    pub fn cluster(&self) -> Arc<ClusterState> {
        self.inner.cluster.borrow().clone()
    }

    /// A receiver of cluster changes.
    pub fn watch_cluster(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.inner.cluster.clone()
    }

    /// `P` and protocol version, checked in every peer handshake.
    pub fn cluster_params(&self) -> ClusterParams {
        ClusterParams::new(self.inner.partitions).with_kinds(self.inner.registry.fingerprint())
    }

    /// Turns binary-protocol events into ingress events: known kind, printable
    /// key (`eddy_core::check_key`), producer seq below `u64::MAX`, payload that decodes as the kind's event. The error names the
    /// event's position and field.
    pub fn validate_wire(&self, events: Vec<WireEvent>) -> Result<Vec<IngressEvent>, String> {
        validate_wire(&self.inner.registry, events)
    }

    fn ingress_to_wire(&self, event: IngressEvent) -> WireEvent {
        WireEvent {
            kind: self
                .inner
                .registry
                .kind_name(event.kind)
                .unwrap_or_default()
                .into(),
            key: event.key,
            payload: event.payload,
            producer: event.producer,
        }
    }

    fn wire_to_ingress(&self, event: WireEvent) -> Option<IngressEvent> {
        Some(IngressEvent {
            kind: self.inner.registry.kind_id(&event.kind)?,
            key: event.key,
            payload: event.payload,
            producer: event.producer,
        })
    }

    /// A subscriber to every alert published from now on.
    pub fn subscribe_alerts(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<eddy_core::AlertRecord>> {
        self.inner.alerts.subscribe()
    }

    /// A subscriber to alerts from now on, and the alerts kept from before
    /// (oldest first); no alert is in both.
    pub fn subscribe_alerts_with_recent(
        &self,
    ) -> (
        tokio::sync::broadcast::Receiver<Arc<eddy_core::AlertRecord>>,
        Vec<Arc<eddy_core::AlertRecord>>,
    ) {
        self.inner.alerts.subscribe_with_recent()
    }

    /// Up to `limit` of the latest alerts this node published, oldest first.
    pub fn recent_alerts(&self, limit: usize) -> Vec<Arc<eddy_core::AlertRecord>> {
        self.inner.alerts.recent(limit)
    }

    /// Whether the node takes traffic.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Whether no write is being applied or confirmed on this node's
    /// partitions (every budget whole: a batch holds its share until its
    /// backups answered).
    pub(crate) fn is_idle(&self) -> bool {
        self.inner
            .budgets
            .iter()
            .all(|budget| budget.available_permits() >= self.inner.max_inflight_events)
    }

    /// Whether an owner shipped to this node as its backup within `within`.
    pub(crate) fn shipped_here_within(&self, within: std::time::Duration) -> bool {
        let shipped = self.inner.shipped_here.lock().map(|at| *at);
        shipped
            .unwrap_or_else(|p| *p.into_inner())
            .is_some_and(|at| at.elapsed() < within)
    }

    /// Records that an owner shipped a frame (entries, its periodic check
    /// or a snapshot chunk) to this node as its backup.
    pub(crate) fn note_shipped_here(&self) {
        let mut shipped = self
            .inner
            .shipped_here
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *shipped = Some(std::time::Instant::now());
    }

    fn partition(&self, kind: KindId, key: &str) -> PartitionId {
        let name = self.inner.registry.kind_name(kind).unwrap_or("");
        partition_of(name, key, self.inner.partitions)
    }

    fn worker_of(&self, partition: PartitionId) -> usize {
        partition.0 as usize % self.inner.worker_names.len()
    }

    fn worker(&self, index: usize) -> Result<ActorRef<WorkerMsg>, IngressError> {
        let name = &self.inner.worker_names[index];
        ractor::registry::where_is(name.clone())
            .map(ActorRef::from)
            .ok_or_else(|| IngressError::Unavailable(format!("{name} is not running")))
    }

    /// Applies a batch on the owners of its partitions; resolves when every
    /// event is applied or refused. With several owners involved a failure
    /// can leave part of the batch applied: retry with producer ids to stay
    /// exactly-once.
    pub async fn submit(&self, batch: Vec<IngressEvent>) -> Result<BatchReply, IngressError> {
        self.route(batch, false).await
    }

    /// Applies a batch a peer forwarded: only events of partitions this node
    /// owns; the others come back in [`BatchReply::not_owner`].
    pub async fn submit_forwarded(
        &self,
        batch: Vec<IngressEvent>,
    ) -> Result<BatchReply, IngressError> {
        self.route(batch, true).await
    }

    async fn route(
        &self,
        batch: Vec<IngressEvent>,
        forwarded: bool,
    ) -> Result<BatchReply, IngressError> {
        if !self.is_ready() {
            return Err(IngressError::NotReady);
        }
        let cluster = self.cluster();
        if let Some(reason) = cluster.no_quorum_reason() {
            metrics::counter!("eddy_no_quorum_refusals_total").increment(1);
            return Err(IngressError::Unavailable(format!(
                "{reason}: writes are refused until it has one"
            )));
        }
        let started = Instant::now();
        let mut reply = BatchReply::default();
        let mut pending: Vec<(usize, IngressEvent)> = batch.into_iter().enumerate().collect();
        let mut unreachable: HashMap<NodeId, usize> = HashMap::new();
        for attempt in 0..MAX_ROUTE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(ROUTE_RETRY_DELAY).await;
            }
            let state = self.cluster();
            let mut local = Vec::new();
            let mut remote: Vec<(NodeIdentity, Vec<usize>, Vec<WireEvent>)> = Vec::new();
            let mut deferred = Vec::new();
            for (index, event) in pending.drain(..) {
                let partition = self.partition(event.kind, &event.key);
                let owner = match state.placement.table().owner(partition) {
                    Some(owner) if !state.is_local(owner) => owner,
                    _ => {
                        local.push((index, partition, event));
                        continue;
                    }
                };
                if forwarded {
                    reply.not_owner.push(index);
                    continue;
                }
                let Some(member) = state.members.iter().find(|m| &m.identity.name == owner) else {
                    return Err(IngressError::Unavailable(format!(
                        "owner {owner} of partition {} is unknown",
                        partition.0
                    )));
                };
                if member.status == MemberStatus::Down {
                    // Its partitions move within the settle delay.
                    deferred.push((index, event));
                    continue;
                }
                let group = match remote.iter().position(|(id, ..)| id.name == *owner) {
                    Some(position) => &mut remote[position],
                    None => {
                        remote.push((member.identity.clone(), Vec::new(), Vec::new()));
                        let last = remote.len() - 1;
                        &mut remote[last]
                    }
                };
                group.1.push(index);
                group.2.push(self.ingress_to_wire(event));
            }
            pending.append(&mut deferred);
            let forwards = remote.iter().map(|(peer, _, events)| async move {
                (events.len(), self.inner.peers.forward(peer, events).await)
            });
            let (local_reply, outcomes) = join(self.apply_local(local), join_all(forwards)).await;
            let (local_reply, returned) = local_reply?;
            if forwarded {
                reply
                    .not_owner
                    .extend(returned.into_iter().map(|(index, _)| index));
            } else {
                pending.extend(returned);
            }
            reply.accepted += local_reply.accepted;
            reply.duplicates += local_reply.duplicates;
            reply.rejected.extend(local_reply.rejected);
            for ((peer, positions, events), (count, outcome)) in remote.into_iter().zip(outcomes) {
                let outcome = match outcome {
                    Ok(outcome) => {
                        unreachable.remove(&peer.name);
                        outcome
                    }
                    // Nothing was applied there (no connection, or the peer
                    // is stopping): route again once the table moved on.
                    Err(err) if err.nothing_applied() => {
                        let rounds = unreachable.entry(peer.name.clone()).or_default();
                        if self.inner.peers.looks_cut_off(&peer.name, CUT_OFF_WITHIN) {
                            *rounds += 1;
                        }
                        if *rounds >= UNREACHABLE_ROUNDS {
                            return Err(IngressError::Unavailable(format!(
                                "{count} events: their owner {} is live but unreachable from this node ({err}); retry, another node may reach it",
                                peer.name
                            )));
                        }
                        tracing::debug!(%err, "re-routing a batch its owner did not take");
                        pending.extend(positions.into_iter().zip(events).filter_map(
                            |(index, event)| Some((index, self.wire_to_ingress(event)?)),
                        ));
                        continue;
                    }
                    Err(err) => return Err(forward_error(err)),
                };
                reply.misrouted += u32::try_from(count).unwrap_or(u32::MAX);
                reply.accepted += outcome.accepted;
                reply.duplicates += outcome.duplicates;
                for (at, error) in outcome.rejected {
                    if let Some(&index) = positions.get(at as usize) {
                        reply.rejected.push(Rejected {
                            index,
                            error: ApplyError::Malformed(error),
                        });
                    }
                }
                let mut events: Vec<Option<WireEvent>> = events.into_iter().map(Some).collect();
                for at in outcome.not_owner {
                    let at = at as usize;
                    let event = events.get_mut(at).and_then(Option::take);
                    if let (Some(&index), Some(event)) = (positions.get(at), event)
                        && let Some(event) = self.wire_to_ingress(event)
                    {
                        pending.push((index, event));
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            metrics::counter!("eddy_route_retries_total").increment(1);
        }
        if !pending.is_empty() {
            return Err(IngressError::Unavailable(format!(
                "{} events: owners disagree about their partitions (membership changing); retry",
                pending.len()
            )));
        }
        reply.rejected.sort_by_key(|r| r.index);
        reply.not_owner.sort_unstable();
        metrics::histogram!("eddy_ack_latency_seconds").record(started.elapsed().as_secs_f64());
        Ok(reply)
    }

    /// Applies events of local partitions; `index` is the event's position in
    /// the client's batch, used in rejections.
    async fn apply_local(
        &self,
        batch: Vec<(usize, PartitionId, IngressEvent)>,
    ) -> Result<(BatchReply, Vec<(usize, IngressEvent)>), IngressError> {
        if batch.is_empty() {
            return Ok((BatchReply::default(), Vec::new()));
        }
        if self.inner.wait_for_backups
            && let Some(refusal) = self
                .inner
                .isr
                .refuse_short(&self.cluster(), batch.iter().map(|(_, p, _)| *p))
        {
            return Err(refusal);
        }
        let workers = self.inner.worker_names.len();
        let mut groups: Vec<Vec<(usize, PartitionId, IngressEvent)>> = vec![Vec::new(); workers];
        for (index, partition, event) in batch {
            groups[self.worker_of(partition)].push((index, partition, event));
        }
        // Reserve room in every involved worker first, so a batch is either
        // queued whole or refused whole. Held until the backups answered, so
        // the bound covers events waiting for replication too.
        let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
        for (worker, group) in groups.iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let wanted = u32::try_from(group.len()).unwrap_or(u32::MAX);
            match self.inner.budgets[worker]
                .clone()
                .try_acquire_many_owned(wanted)
            {
                Ok(permit) => permits.push(permit),
                Err(_) => {
                    metrics::counter!("eddy_overload_rejections_total").increment(1);
                    return Err(IngressError::Overloaded {
                        retry_after_ms: OVERLOAD_RETRY_AFTER_MS,
                    });
                }
            }
        }
        let total: usize = groups.iter().map(Vec::len).sum();
        metrics::counter!("eddy_events_received_total").increment(total as u64);
        crate::history::TOTALS.add_received(total as u64);

        let calls = groups
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(worker, events)| async move {
                let actor = self.worker(worker)?;
                let sent = actor
                    .call(
                        |reply| WorkerMsg::Apply { events, reply },
                        Some(WORKER_CALL_TIMEOUT),
                    )
                    .await;
                match sent {
                    Ok(CallResult::Success(applied)) => Ok(applied),
                    Ok(CallResult::Timeout) => Err(IngressError::Unavailable(format!(
                        "worker {worker} did not answer within {WORKER_CALL_TIMEOUT:?}"
                    ))),
                    Ok(CallResult::SenderError) | Err(_) => Err(IngressError::Unavailable(
                        format!("worker {worker} stopped"),
                    )),
                }
            });
        let results = join_all(calls).await;

        let mut reply = BatchReply::default();
        let mut returned = Vec::new();
        let mut acks = Vec::new();
        let mut alerts = Vec::new();
        let mut durable = Vec::new();
        let mut written = Vec::new();
        for result in results {
            let mut applied = result?;
            for (index, outcome) in applied.outcomes {
                match outcome {
                    Ok(Submitted::Applied(_)) => reply.accepted += 1,
                    Ok(Submitted::Duplicate) => reply.duplicates += 1,
                    Err(error) => reply.rejected.push(Rejected { index, error }),
                }
            }
            returned.append(&mut applied.returned);
            acks.append(&mut applied.acks);
            alerts.append(&mut applied.alerts);
            durable.append(&mut applied.durable);
            written.append(&mut applied.written);
        }
        // With `data_dir`, in this node's log first: a write the log does not
        // hold is not acknowledged, whatever the backups say (a whole-cluster
        // restart would replay up to the gap and lose what follows).
        for (partition, written) in durable {
            let failure = match written.await {
                Ok(Ok(())) => continue,
                Ok(Err(err)) => err.to_string(),
                Err(_) => "the storage writer dropped the write".to_string(),
            };
            return Err(IngressError::Unavailable(format!(
                "partition {} not written to the write-ahead log, not acknowledged: {failure}",
                partition.0
            )));
        }
        if self.inner.wait_for_backups {
            let started = Instant::now();
            let outcomes = self
                .inner
                .isr
                .confirm(self.watch_cluster(), &written, acks)
                .await;
            metrics::histogram!("eddy_replication_latency_seconds")
                .record(started.elapsed().as_secs_f64());
            for outcome in outcomes {
                match outcome {
                    Outcome::Ack => {}
                    Outcome::Deposed(partition, by) => return Err(self.deposed(partition, by)),
                    Outcome::Failed(err) => return Err(err),
                }
            }
        }
        drop(permits);
        for alert in alerts {
            self.inner.alerts.publish(alert);
        }
        Ok((reply, returned))
    }

    fn deposed(&self, partition: PartitionId, by: Epoch) -> IngressError {
        if let Ok(worker) = self.worker(self.worker_of(partition)) {
            let _ = worker.cast(WorkerMsg::Deposed { partition, by });
        }
        IngressError::Unavailable(format!(
            "partition {} has a newer owner; retry",
            partition.0
        ))
    }

    fn worker_of_partition(&self, partition: PartitionId) -> Option<ActorRef<WorkerMsg>> {
        crate::worker::of_partition(&self.inner.worker_names, partition)
    }

    /// Hands shipped entries to the partition's worker now, so messages of
    /// one link keep their arrival order; the outcome comes on the receiver
    /// (dropped if the worker is gone).
    pub(crate) fn replicate_now(
        &self,
        partition: PartitionId,
        epoch: Epoch,
        entries: Vec<u8>,
    ) -> oneshot::Receiver<Replicated> {
        let (reply, answer) = oneshot::channel();
        if let Some(worker) = self.worker_of_partition(partition) {
            let write = PeerWrite::Replicate {
                epoch,
                entries,
                reply,
            };
            let _ = worker.cast(WorkerMsg::Peer { partition, write });
        }
        answer
    }

    /// [`replicate_now`](Self::replicate_now) for a snapshot chunk.
    pub(crate) fn snapshot_now(
        &self,
        partition: PartitionId,
        (link, epoch): (u64, Epoch),
        chunk: Vec<u8>,
        last: bool,
    ) -> oneshot::Receiver<Replicated> {
        let (reply, answer) = oneshot::channel();
        if let Some(worker) = self.worker_of_partition(partition) {
            let write = PeerWrite::Snapshot {
                epoch,
                link,
                chunk,
                last,
                reply,
            };
            let _ = worker.cast(WorkerMsg::Peer { partition, write });
        }
        answer
    }

    /// Every copy this node holds, with its role.
    pub async fn copies(&self) -> Vec<(Held, &'static str)> {
        self.ask_workers(|_, reply| Some(WorkerMsg::Copies { reply }))
            .await
            .0
    }

    /// Sends each worker the message `ask` builds around a reply channel
    /// (`None`: that worker is not asked) and gathers the answers, and
    /// whether every worker asked answered (one not running, or dropping
    /// the reply, answers nothing).
    async fn ask_workers<T>(
        &self,
        mut ask: impl FnMut(usize, oneshot::Sender<Vec<T>>) -> Option<WorkerMsg>,
    ) -> (Vec<T>, bool) {
        let mut answers = Vec::new();
        let mut complete = true;
        for worker in 0..self.inner.worker_names.len() {
            let (reply, answer) = oneshot::channel();
            let Some(message) = ask(worker, reply) else {
                continue;
            };
            if self
                .worker(worker)
                .is_ok_and(|actor| actor.cast(message).is_ok())
            {
                answers.push(answer);
            } else {
                complete = false;
            }
        }
        let mut gathered = Vec::new();
        for answer in join_all(answers).await {
            match answer {
                Ok(mut part) => gathered.append(&mut part),
                Err(_) => complete = false,
            }
        }
        (gathered, complete)
    }

    /// Makes this node the owner of `partition` at the committed `epoch`,
    /// elected from the ISR: from its own copy, which holds every
    /// acknowledged write. Only a partition's first ownership (epoch 1)
    /// may start empty; an ISR member without a copy (a worker restarted
    /// empty) takes nothing and says so.
    pub(crate) fn take_committed(&self, partition: PartitionId, epoch: Epoch) {
        if let Some(worker) = self.worker_of_partition(partition) {
            let _ = worker.cast(WorkerMsg::Take { partition, epoch });
        }
    }

    /// Partitions the table gives this node that no worker serves yet.
    pub(crate) async fn incoming(&self) -> Vec<PartitionId> {
        self.ask_workers(|_, reply| Some(WorkerMsg::Incoming { reply }))
            .await
            .0
    }

    /// Tells every worker the table changed.
    pub(crate) fn placement_changed(&self, state: &Arc<ClusterState>) {
        for worker in 0..self.inner.worker_names.len() {
            if let Ok(actor) = self.worker(worker) {
                let _ = actor.cast(WorkerMsg::Placement(state.clone()));
            }
        }
    }

    /// Reads the state of `key` of `kind` from its owner, here or remote.
    pub async fn actor_state(&self, kind: KindId, key: &str) -> Result<ActorState, IngressError> {
        let state = self.cluster();
        let partition = self.partition(kind, key);
        let table = state.placement.table();
        let replicas: Vec<String> = table.replicas(partition).map(|n| n.to_string()).collect();
        let owner = match table.owner(partition) {
            Some(owner) if !state.is_local(owner) => owner,
            _ => return self.local_state(kind, key).await,
        };
        let Some(peer) = state.live_member(owner) else {
            return Err(IngressError::Unavailable(format!(
                "owner {owner} of partition {} is down; partitions are moving",
                partition.0
            )));
        };
        let kind_name = self.inner.registry.kind_name(kind).unwrap_or_default();
        let (json, epoch) = self
            .inner
            .peers
            .get_state(peer, kind_name, key)
            .await
            .map_err(forward_error)?;
        let state =
            match json {
                Some(text) => Some(serde_json::from_str(&text).map_err(|err| {
                    IngressError::Unavailable(format!("owner sent bad JSON: {err}"))
                })?),
                None => None,
            };
        Ok(ActorState {
            partition,
            owner_epoch: Epoch(epoch),
            state,
            owner: owner.to_string(),
            replicas,
        })
    }

    /// Reads the state of `key` of `kind` from this node's partition.
    pub async fn local_state(&self, kind: KindId, key: &str) -> Result<ActorState, IngressError> {
        let cluster = self.cluster();
        let partition = self.partition(kind, key);
        let actor = self.worker(self.worker_of(partition))?;
        let key = key.to_owned();
        let answer = actor
            .call(
                |reply| WorkerMsg::State {
                    partition,
                    kind,
                    key,
                    reply,
                },
                Some(WORKER_CALL_TIMEOUT),
            )
            .await;
        match answer {
            Ok(CallResult::Success(Ok((state, owner_epoch)))) => Ok(ActorState {
                partition,
                owner_epoch,
                state,
                owner: cluster.local.name.to_string(),
                replicas: cluster
                    .placement
                    .table()
                    .replicas(partition)
                    .map(|n| n.to_string())
                    .collect(),
            }),
            Ok(CallResult::Success(Err(err))) => Err(IngressError::Unavailable(err.to_string())),
            _ => Err(IngressError::Unavailable("worker did not answer".into())),
        }
    }
}

fn forward_error(err: PeerError) -> IngressError {
    match err {
        PeerError::Failed {
            failure: PeerFailure::Overloaded { retry_after_ms },
            ..
        } => IngressError::Overloaded { retry_after_ms },
        other => IngressError::Unavailable(other.to_string()),
    }
}

/// Why a backup did not confirm entries.
#[derive(Debug)]
pub enum AckFailure {
    /// It lacks entries before these (gap): it needs a snapshot.
    Behind,
    /// It serves a newer owner, of this epoch: this node is deposed.
    Stale(Epoch),
    /// No answer: the link broke, or nothing came back in time. The peer
    /// may be unreachable from here (`eddy_control::Unreachable`).
    Unanswered(String),
    /// An answer that refused the entries.
    Failed(String),
}

impl std::fmt::Display for AckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckFailure::Behind => f.write_str("it is behind and needs a snapshot"),
            AckFailure::Stale(by) => write!(f, "it serves a newer owner (epoch {})", by.0),
            AckFailure::Unanswered(reason) | AckFailure::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Waits for a backup's answer and checks it holds each shipped
/// partition's log far enough; returns the partitions it did not confirm.
pub async fn settle_ack(ack: ReplicaAck) -> Vec<(PartitionId, AckFailure)> {
    let ReplicaAck { parts, answer, .. } = ack;
    let all_failed =
        |parts: &[(PartitionId, Seq)], reason: String| -> Vec<(PartitionId, AckFailure)> {
            parts
                .iter()
                .map(|(partition, _)| (*partition, AckFailure::Unanswered(reason.clone())))
                .collect()
        };
    let pending = match answer {
        Ok(pending) => pending,
        Err(err) => return all_failed(&parts, err.to_string()),
    };
    let link = pending.link();
    let outcomes = match tokio::time::timeout(REPLICA_PATIENCE, pending.outcomes()).await {
        Ok(Ok(outcomes)) if outcomes.len() == parts.len() => outcomes,
        Ok(Ok(outcomes)) => {
            let reason = format!("{} outcomes for {} parts", outcomes.len(), parts.len());
            return all_failed(&parts, reason);
        }
        Ok(Err(err)) => return all_failed(&parts, err.to_string()),
        Err(_) => {
            // Silent this long: the connection is given up so the next
            // frame opens a new one (`eddy_client::Link`).
            link.abandon_if_silent(crate::peer::SILENT_LINK);
            return all_failed(&parts, format!("no answer within {REPLICA_PATIENCE:?}"));
        }
    };
    parts
        .iter()
        .zip(outcomes)
        .filter_map(|(&(partition, required), outcome)| {
            let failure = match eddy_replica::confirmation(outcome, required) {
                Confirmation::Confirmed { .. } => return None,
                Confirmation::Behind => AckFailure::Behind,
                Confirmation::Deposed(by) => AckFailure::Stale(by),
                Confirmation::EpochUnknown(known) => AckFailure::Failed(format!(
                    "its committed configuration shows epoch {} only",
                    known.0
                )),
            };
            Some((partition, failure))
        })
        .collect()
}

/// [`Ingress::validate_wire`] with the kinds of `registry`: what the TCP
/// ingress checks of every event of a batch before anything is applied
/// (public for the wire-frame fuzz target).
pub fn validate_wire(
    registry: &Registry,
    events: Vec<WireEvent>,
) -> Result<Vec<IngressEvent>, String> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let kind = registry
                .kind_id(&event.kind)
                .ok_or_else(|| format!("event {index}: kind: unknown kind `{}`", event.kind))?;
            let admitted = eddy_core::check_key(&event.key).and_then(|()| match &event.producer {
                Some(producer) => eddy_core::check_seq(producer.seq),
                None => Ok(()),
            });
            if let Err(err) = admitted {
                return Err(format!("event {index}: {}: {err}", err.field()));
            }
            registry
                .check_event(kind, &event.payload)
                .map_err(|err| format!("event {index}: event: {err}"))?;
            Ok(IngressEvent {
                kind,
                key: event.key,
                payload: event.payload,
                producer: event.producer,
            })
        })
        .collect()
}
