//! The ingress handle: how HTTP (and later the binary protocol and peer links)
//! hand events to partition workers.
//!
//! A batch is split by worker, keeping each key's events in order, and sent to
//! every worker involved at once. Each worker has a fixed budget of in-flight
//! events (ractor mailboxes are unbounded, so the bound lives here): a batch
//! that does not fit is refused whole with [`IngressError::Overloaded`], which
//! HTTP turns into 429 + `Retry-After`. The reply comes once every event is
//! applied — the acknowledgement (replication joins it in a later issue).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_core::{
    ApplyError, Epoch, KindId, PartitionId, ProducerRef, Registry, Submitted, partition_of,
};
use futures_util::future::join_all;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::alerts::AlertHub;
use crate::worker::WorkerMsg;

/// How long a worker may take to answer before the request fails.
const WORKER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What an overloaded client is told to wait.
const OVERLOAD_RETRY_AFTER_MS: u64 = 200;

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
    /// The partition's epoch.
    pub epoch: Epoch,
    /// State as JSON, `None` if the key has none.
    pub state: Option<serde_json::Value>,
}

struct Inner {
    registry: Arc<Registry>,
    partitions: u32,
    worker_names: Vec<String>,
    budgets: Vec<Arc<Semaphore>>,
    alerts: AlertHub,
    ready: AtomicBool,
}

/// Cloneable handle to the node's workers.
#[derive(Clone)]
pub struct Ingress {
    inner: Arc<Inner>,
}

impl Ingress {
    pub(crate) fn new(
        registry: Arc<Registry>,
        partitions: u32,
        worker_names: Vec<String>,
        max_inflight_events: usize,
        alerts: AlertHub,
    ) -> Self {
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
                alerts,
                ready: AtomicBool::new(false),
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

    /// A subscriber to every alert published from now on.
    pub fn subscribe_alerts(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<eddy_core::AlertRecord>> {
        self.inner.alerts.subscribe()
    }

    /// Whether the node takes traffic.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
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

    /// Applies a batch; resolves when every event is applied or refused.
    pub async fn submit(&self, batch: Vec<IngressEvent>) -> Result<BatchReply, IngressError> {
        if !self.is_ready() {
            return Err(IngressError::NotReady);
        }
        let started = Instant::now();
        let workers = self.inner.worker_names.len();
        let mut groups: Vec<Vec<(PartitionId, IngressEvent)>> = vec![Vec::new(); workers];
        let mut positions: Vec<Vec<usize>> = vec![Vec::new(); workers];
        for (index, event) in batch.into_iter().enumerate() {
            let partition = self.partition(event.kind, &event.key);
            let worker = self.worker_of(partition);
            groups[worker].push((partition, event));
            positions[worker].push(index);
        }

        // Reserve room in every involved worker first, so a batch is either
        // queued whole or refused whole.
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
                    Ok(CallResult::Success(outcomes)) => Ok((worker, outcomes)),
                    Ok(CallResult::Timeout) => Err(IngressError::Unavailable(format!(
                        "worker {worker} did not answer within {WORKER_CALL_TIMEOUT:?}"
                    ))),
                    Ok(CallResult::SenderError) | Err(_) => Err(IngressError::Unavailable(
                        format!("worker {worker} stopped"),
                    )),
                }
            });
        let results = join_all(calls).await;
        drop(permits);

        let mut reply = BatchReply::default();
        for result in results {
            let (worker, outcomes) = result?;
            for (position, outcome) in positions[worker].iter().zip(outcomes) {
                match outcome {
                    Ok(Submitted::Applied(_)) => reply.accepted += 1,
                    Ok(Submitted::Duplicate) => reply.duplicates += 1,
                    Err(error) => reply.rejected.push(Rejected {
                        index: *position,
                        error,
                    }),
                }
            }
        }
        reply.rejected.sort_by_key(|r| r.index);
        metrics::histogram!("eddy_ack_latency_seconds").record(started.elapsed().as_secs_f64());
        Ok(reply)
    }

    /// Reads the state of `key` of `kind`.
    pub async fn actor_state(&self, kind: KindId, key: &str) -> Result<ActorState, IngressError> {
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
            Ok(CallResult::Success(Ok((state, epoch)))) => Ok(ActorState {
                partition,
                epoch,
                state,
            }),
            Ok(CallResult::Success(Err(err))) => Err(IngressError::Unavailable(err.to_string())),
            _ => Err(IngressError::Unavailable("worker did not answer".into())),
        }
    }
}
