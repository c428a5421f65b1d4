//! Partition workers: ractor actors, each owning every partition `p` with
//! `p % workers == index`, and a supervisor that restarts a failed worker.
//!
//! One actor per partition would be 1024 actors of ~7.6 KiB that mostly sit
//! idle (DESIGN §5); one per core keeps every core busy with no locks shared
//! between partitions, since a partition is only ever touched by its worker.
//! Partitions are created on first use. Time enters here: the worker stamps
//! events with the wall clock and ticks its partitions every `tick_ms`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy_core::{
    ApplyError, Epoch, EventRef, KindId, Outputs, Partition, PartitionConfig, PartitionId,
    Registry, Submitted, Timestamp,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::alerts::AlertHub;
use crate::ingress::IngressEvent;

/// What a worker is asked to do.
pub enum WorkerMsg {
    /// Apply events (all owned by this worker) in order; reply with one
    /// outcome per event.
    Apply {
        /// Events with their partitions.
        events: Vec<(PartitionId, IngressEvent)>,
        /// Where the outcomes go.
        reply: RpcReplyPort<Vec<Result<Submitted, ApplyError>>>,
    },
    /// Read a key's state.
    State {
        /// The key's partition.
        partition: PartitionId,
        /// Its kind.
        kind: KindId,
        /// The key.
        key: String,
        /// State as JSON (None: no such key).
        reply: RpcReplyPort<Result<Option<serde_json::Value>, ApplyError>>,
    },
    /// Drop partitions this node no longer holds.
    Release {
        /// The partitions.
        partitions: Vec<PartitionId>,
    },
    /// Fire due timers, passivate idle keys, refresh gauges.
    Tick,
}

/// Everything a worker needs to start.
#[derive(Clone)]
pub struct WorkerArgs {
    /// Kinds hosted.
    pub registry: Arc<Registry>,
    /// Per-partition limits.
    pub partition_config: PartitionConfig,
    /// Where alerts go.
    pub alerts: AlertHub,
    /// Tick period.
    pub tick: Duration,
    /// This worker's index, for metrics labels.
    pub index: usize,
}

/// The worker actor.
pub struct Worker;

/// A worker's partitions and reusable buffers.
pub struct WorkerState {
    args: WorkerArgs,
    /// Indexed by partition id; `None` until first used. A vector, not a map:
    /// the lookup is on the per-event path and P is small.
    partitions: Vec<Option<Partition>>,
    out: Outputs,
}

/// Wall-clock milliseconds: the one place the node reads time for the core.
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp(ms)
}

impl WorkerState {
    fn partition(&mut self, id: PartitionId) -> &mut Partition {
        let index = id.0 as usize;
        if self.partitions.len() <= index {
            self.partitions.resize_with(index + 1, || None);
        }
        let args = &self.args;
        self.partitions[index].get_or_insert_with(|| {
            let mut partition =
                Partition::new(args.registry.clone(), id, args.partition_config.clone());
            // Single node: this node owns every partition from epoch 1.
            partition.set_epoch(Epoch(1));
            partition
        })
    }

    fn publish(&mut self) {
        for alert in self.out.alerts.drain(..) {
            self.args.alerts.publish(alert);
        }
        // No backups yet: the entries need no shipping, and without a data_dir
        // there is no log to append to (see docs/ARCHITECTURE.md).
        self.out.log.clear();
    }
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
        Ok(WorkerState {
            args,
            partitions: Vec::new(),
            out: Outputs::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<WorkerMsg>,
        message: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Apply { events, reply } => {
                let now = now();
                let mut outcomes = Vec::with_capacity(events.len());
                let mut counts = Counts::default();
                for (partition, event) in &events {
                    let input = EventRef {
                        kind: event.kind,
                        key: &event.key,
                        payload: &event.payload,
                        producer: event.producer.as_ref().map(|p| eddy_core::ProducerView {
                            producer: &p.producer,
                            seq: p.seq,
                        }),
                    };
                    let mut out = std::mem::take(&mut state.out);
                    let outcome = state.partition(*partition).submit(now, input, &mut out);
                    state.out = out;
                    counts.record(&outcome);
                    outcomes.push(outcome);
                }
                counts.flush();
                state.publish();
                // The caller may have given up (timeout); nothing to undo then.
                let _ = reply.send(outcomes);
            }
            WorkerMsg::State {
                partition,
                kind,
                key,
                reply,
            } => {
                let result = match state
                    .partitions
                    .get(partition.0 as usize)
                    .and_then(Option::as_ref)
                {
                    Some(p) => p.state_json(kind, &key),
                    None => Ok(None),
                };
                let _ = reply.send(result);
            }
            WorkerMsg::Release { partitions } => {
                for partition in partitions {
                    if let Some(slot) = state.partitions.get_mut(partition.0 as usize)
                        && slot.take().is_some()
                    {
                        tracing::info!(
                            partition = partition.0,
                            "released a partition this node no longer holds"
                        );
                    }
                }
            }
            WorkerMsg::Tick => {
                let now = now();
                let (mut active, mut passive, mut timers, mut fired) = (0, 0, 0, 0);
                let mut out = std::mem::take(&mut state.out);
                for partition in state.partitions.iter_mut().flatten() {
                    fired += partition.tick(now, &mut out);
                    let stats = partition.stats();
                    active += stats.keys_active;
                    passive += stats.keys_passive;
                    timers += stats.timers_pending;
                }
                state.out = out;
                state.publish();
                let worker = state.args.index.to_string();
                metrics::counter!("eddy_timers_fired_total").increment(fired as u64);
                metrics::gauge!("eddy_keys_active", "worker" => worker.clone()).set(active as f64);
                metrics::gauge!("eddy_keys_passive", "worker" => worker.clone())
                    .set(passive as f64);
                metrics::gauge!("eddy_timers_pending", "worker" => worker).set(timers as f64);
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
    fn record(&mut self, outcome: &Result<Submitted, ApplyError>) {
        match outcome {
            Ok(Submitted::Applied(_)) => self.applied += 1,
            Ok(Submitted::Duplicate) => self.duplicates += 1,
            Err(err) => {
                let reason = match err {
                    ApplyError::HandlerPanicked { kind, key, message } => {
                        metrics::counter!("eddy_handler_panics_total").increment(1);
                        tracing::warn!(
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
        metrics::counter!("eddy_events_duplicate_total").increment(self.duplicates);
    }
}

/// Starts workers and restarts any that fails. Restarting loses the failed
/// worker's partitions (single node, no replicas yet): it is logged as an
/// error and counted, and the node keeps serving the other partitions.
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
                tracing::error!(worker = index, %reason, "partition worker failed; restarting it empty");
                metrics::counter!("eddy_worker_restarts_total").increment(1);
                let worker = WorkerArgs {
                    index,
                    ..state.args.clone()
                };
                Actor::spawn_linked(Some(name), Worker, worker, myself.get_cell()).await?;
            }
        }
        Ok(())
    }
}
