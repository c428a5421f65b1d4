//! The journaling workload: events from the examples' seeded generators,
//! sent by concurrent clients (each owning a disjoint set of keys, so per-key
//! order is send order) with idempotent producer ids, every request retried
//! with the same ids until acknowledged; the journal records when each event
//! was first sent and acknowledged. The model replays each key's events
//! through the behaviour itself to predict its final state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use eddy_core::testing::KeyHarness;
use eddy_core::{Behaviour, Timestamp, Workload};
use eddy_fraud::{Fraud, FraudWorkload};
use eddy_iot::{Iot, IotWorkload};
use eddy_vitals::{Vitals, VitalsWorkload};
use serde::Serialize;

use super::http;
use crate::scenario::WorkloadSpec;

/// One event to send.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Kind name.
    pub kind: &'static str,
    /// Key.
    pub key: String,
    /// The event as JSON.
    pub event: serde_json::Value,
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry {
    /// First send, ms since the run started.
    pub sent_ms: Option<u64>,
    /// Acknowledgement, ms since the run started.
    pub acked_ms: Option<u64>,
}

/// One acknowledged request, for the timeline.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AckSample {
    /// When, ms since start.
    pub at_ms: u64,
    /// From first attempt to acknowledgement.
    pub latency_ms: u64,
    /// Events in it.
    pub events: usize,
}

/// Shared record of a run.
pub struct Journal {
    /// Per planned event.
    pub entries: Mutex<Vec<Entry>>,
    /// Acknowledged requests.
    pub acks: Mutex<Vec<AckSample>>,
    /// Refused attempts: (ms since start, status or 0 for no connection).
    pub errors: Mutex<Vec<(u64, u16)>>,
    /// Requests refused for good (4xx other than 429): harness or node bug.
    pub rejected: Mutex<Vec<String>>,
}

/// Generates `spec.rate × duration` events, kinds interleaved.
pub fn plan(spec: &WorkloadSpec, seed: u64, duration: Duration) -> Vec<Planned> {
    let total = (spec.rate as f64 * duration.as_secs_f64()).ceil() as usize;
    let mut sources: Vec<Box<dyn FnMut() -> Planned>> = Vec::new();
    for (i, kind) in spec.kinds.iter().enumerate() {
        let seed = seed.wrapping_add(i as u64 * 7919);
        match kind.as_str() {
            "account" => sources.push(generator(FraudWorkload::new(seed, spec.keys))),
            "device" => sources.push(generator(IotWorkload::new(seed, spec.keys))),
            "patient" => sources.push(generator(VitalsWorkload::new(seed, spec.keys))),
            _ => {}
        }
    }
    if sources.is_empty() {
        return Vec::new();
    }
    let n = sources.len();
    (0..total).map(|i| (sources[i % n])()).collect()
}

fn generator<W>(mut workload: W) -> Box<dyn FnMut() -> Planned>
where
    W: Workload + 'static,
    <W::Kind as Behaviour>::Event: Serialize,
{
    Box::new(move || {
        let (key, event) = workload.next_event();
        Planned {
            kind: W::Kind::KIND,
            key,
            event: serde_json::to_value(&event).unwrap_or_default(),
        }
    })
}

/// Clients of the run.
pub struct Driver {
    /// Targets: HTTP base URLs of nodes that are up (updated by the faults).
    pub targets: Arc<RwLock<Vec<String>>>,
    /// Set when no new request may start.
    pub stop_sending: Arc<AtomicBool>,
    /// Hard stop: retries end.
    pub give_up: Arc<AtomicBool>,
}

impl Driver {
    /// Runs `clients` client threads over `events` at `rate` events/s until
    /// every event was sent, or `stop_sending`; each request is retried until
    /// acknowledged or `give_up`.
    pub fn run(
        &self,
        events: Arc<Vec<Planned>>,
        journal: Arc<Journal>,
        spec: &WorkloadSpec,
        started: Instant,
    ) -> Vec<std::thread::JoinHandle<()>> {
        let clients = spec.clients;
        let per_client_rate = (spec.rate as f64 / clients as f64).max(1.0);
        (0..clients)
            .map(|c| {
                // A key belongs to one client: per-key order is send order.
                let mine: Vec<usize> = (0..events.len())
                    .filter(|&i| {
                        let e = &events[i];
                        (xxhash_rust::xxh3::xxh3_64(format!("{}/{}", e.kind, e.key).as_bytes())
                            % clients as u64) as usize
                            == c
                    })
                    .collect();
                let events = events.clone();
                let journal = journal.clone();
                let targets = self.targets.clone();
                let stop = self.stop_sending.clone();
                let give_up = self.give_up.clone();
                let batch = spec.batch;
                std::thread::spawn(move || {
                    client(
                        c,
                        &mine,
                        &events,
                        &journal,
                        &targets,
                        (&stop, &give_up),
                        batch,
                        per_client_rate,
                        started,
                    );
                })
            })
            .collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn client(
    c: usize,
    mine: &[usize],
    events: &[Planned],
    journal: &Journal,
    targets: &RwLock<Vec<String>>,
    (stop, give_up): (&AtomicBool, &AtomicBool),
    batch: usize,
    rate: f64,
    started: Instant,
) {
    let producer = format!("{}{c}", super::alerts::PRODUCER_PREFIX);
    let mut next_target = c;
    let mut sent = 0usize;
    for chunk in mine.chunks(batch) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Pace: the chunk may start once the rate allows it.
        let due = Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        sent += chunk.len();
        let body: String = chunk
            .iter()
            .map(|&i| {
                let e = &events[i];
                serde_json::json!({
                    "kind": e.kind,
                    "key": e.key,
                    "event": e.event,
                    "producer": producer,
                    // Seqs rise with the index: a retry reuses them, so the
                    // owner applies each event at most once.
                    "seq": i as u64 + 1,
                })
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let first = started.elapsed();
        if let Ok(mut entries) = journal.entries.lock() {
            for &i in chunk {
                entries[i].sent_ms = Some(first.as_millis() as u64);
            }
        }
        let mut backoff = Duration::from_millis(20);
        loop {
            if give_up.load(Ordering::Relaxed) {
                return;
            }
            let target = {
                let targets = targets.read().map(|t| t.clone()).unwrap_or_default();
                if targets.is_empty() {
                    None
                } else {
                    next_target += 1;
                    Some(targets[next_target % targets.len()].clone())
                }
            };
            let outcome = match &target {
                Some(base) => http::post(&format!("{base}/v1/events"), &body),
                None => Err("no node is up".into()),
            };
            let now = started.elapsed();
            match outcome {
                Ok((200, _)) => {
                    let at_ms = now.as_millis() as u64;
                    if let Ok(mut entries) = journal.entries.lock() {
                        for &i in chunk {
                            entries[i].acked_ms = Some(at_ms);
                        }
                    }
                    if let Ok(mut acks) = journal.acks.lock() {
                        acks.push(AckSample {
                            at_ms,
                            latency_ms: (now - first).as_millis() as u64,
                            events: chunk.len(),
                        });
                    }
                    break;
                }
                Ok((status @ (400 | 404 | 413 | 422), body)) => {
                    if let Ok(mut rejected) = journal.rejected.lock() {
                        rejected.push(format!("{status}: {body}"));
                    }
                    break;
                }
                Ok((status, _)) => record_error(journal, now, status),
                Err(_) => record_error(journal, now, 0),
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

fn record_error(journal: &Journal, at: Duration, status: u16) {
    if let Ok(mut errors) = journal.errors.lock() {
        errors.push((at.as_millis() as u64, status));
    }
}

/// The final state of a key predicted by replaying `events` (in order)
/// through its behaviour, restricted to the fields that do not depend on
/// the owner's clock (burst windows, timestamps and timer firings do).
pub fn model(kind: &str, key: &str, events: &[&serde_json::Value]) -> Option<serde_json::Value> {
    fn replay<B: Behaviour>(key: &str, events: &[&serde_json::Value]) -> Option<serde_json::Value>
    where
        B::State: Serialize,
    {
        let mut harness = KeyHarness::<B>::new(key);
        for (i, event) in events.iter().enumerate() {
            let event: B::Event = serde_json::from_value((*event).clone()).ok()?;
            harness.event(Timestamp(i as u64), event);
        }
        serde_json::to_value(harness.state()).ok()
    }
    let state = match kind {
        "account" => replay::<Fraud>(key, events),
        "device" => replay::<Iot>(key, events),
        "patient" => replay::<Vitals>(key, events),
        _ => None,
    }?;
    Some(clock_free(kind, state))
}

/// `state` without the fields that depend on time.
pub fn clock_free(kind: &str, mut state: serde_json::Value) -> serde_json::Value {
    let drop: &[&str] = match kind {
        "account" => &["recent", "recent_next", "in_burst", "last_ts"],
        "device" => &["last_seen", "silences"],
        _ => &[],
    };
    if let Some(map) = state.as_object_mut() {
        for field in drop {
            map.remove(*field);
        }
    }
    state
}
