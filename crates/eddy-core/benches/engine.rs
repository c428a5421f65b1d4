//! Engine benchmarks: prints numbers, asserts nothing (STYLE §12).
//!
//! `cargo bench -p eddy-core` measures, on one core:
//! 1. apply throughput of the fraud behaviour over 1M distinct keys, as a ratio
//!    to a trivial baseline behaviour run over the same keys in this process;
//! 2. heap bytes per key for 1M active and 1M passive fraud keys (a counting
//!    allocator), and the passive overhead beyond the encoded state;
//! 3. snapshot encode and restore throughput in MB/s.
//!
//! `EDDY_BENCH_KEYS` and `EDDY_BENCH_EVENTS` shrink the run (CI smoke-tests it).

// Test and bench code: a failed expectation should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap::Cap;
use eddy_core::{
    Behaviour, Ctx, DEFAULT_CHUNK_BYTES, EventInput, Outputs, Partition, PartitionConfig,
    PartitionId, Registry, Timestamp, Workload, encode_event, partition_of,
};
use eddy_fraud::{Fraud, FraudWorkload};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const PARTITIONS: u32 = 1024;

/// The baseline: the cheapest behaviour possible, so the ratio shows what the
/// fraud rules cost on top of the engine.
struct Tally;

#[derive(Serialize, Deserialize)]
struct Bump;

impl Behaviour for Tally {
    const KIND: &'static str = "account";
    type Event = Bump;
    type State = u64;
    type Alert = ();

    fn on_event(state: &mut u64, _event: Bump, _ctx: &mut Ctx<'_, Self>) {
        *state += 1;
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn partitions<B: Behaviour>(config: &PartitionConfig) -> Vec<Partition> {
    let registry = Arc::new(Registry::builder().kind::<B>().build().expect("one kind"));
    (0..PARTITIONS)
        .map(|p| Partition::new(registry.clone(), PartitionId(p), config.clone()))
        .collect()
}

/// Pre-encoded inputs with their partition, so the timed loop is apply only.
fn fraud_inputs(keys: u64, events: usize) -> Vec<(u32, EventInput)> {
    let mut workload = FraudWorkload::new(42, keys);
    let mut payload = Vec::new();
    (0..events)
        .map(|_| {
            let (key, event) = workload.next_event();
            encode_event::<Fraud>(&event, &mut payload).expect("encodes");
            let partition = partition_of(Fraud::KIND, &key, PARTITIONS).0;
            let input = EventInput {
                kind: eddy_core::KindId(0),
                key,
                payload: payload.clone(),
                producer: None,
            };
            (partition, input)
        })
        .collect()
}

/// Applies `inputs` in the given order, 1 ms of logical time per 1000 events.
fn apply_all(parts: &mut [Partition], inputs: &[(u32, EventInput)]) -> (usize, Duration) {
    let mut out = Outputs::default();
    let start = Instant::now();
    for (index, (partition, input)) in inputs.iter().enumerate() {
        let now = Timestamp(1_700_000_000_000 + index as u64 / 1000);
        let part = &mut parts[*partition as usize];
        black_box(part.submit(now, input.as_ref(), &mut out).expect("applies"));
        // The node hands entries to the log per batch; here the batch is 1024.
        if out.log.len() >= 1024 {
            out.clear();
        }
    }
    (inputs.len(), start.elapsed())
}

/// The same events grouped by partition within batches of `batch`, which is
/// what a node's partition worker sees: it applies each batch's events of one
/// partition together.
fn grouped(inputs: &[(u32, EventInput)], batch: usize) -> Vec<(u32, EventInput)> {
    inputs
        .chunks(batch)
        .flat_map(|chunk| {
            let mut chunk = chunk.to_vec();
            chunk.sort_by_key(|(partition, _)| *partition);
            chunk
        })
        .collect()
}

/// One event per key first, so the timed runs measure steady state, not the
/// one-off cost of creating a million keys.
fn warm(parts: &mut [Partition], inputs: &[(u32, EventInput)]) {
    let mut out = Outputs::default();
    let mut seen = std::collections::HashSet::new();
    for (partition, input) in inputs {
        if seen.insert(input.key.as_str()) {
            parts[*partition as usize]
                .submit(Timestamp(1_600_000_000_000), input.as_ref(), &mut out)
                .expect("applies");
            out.clear();
        }
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn snapshot_encode(label: &str, parts: &[Partition]) {
    let mut bytes = 0usize;
    let start = Instant::now();
    for part in parts {
        part.write_snapshot::<()>(DEFAULT_CHUNK_BYTES, &mut |chunk| {
            bytes += black_box(chunk).len();
            Ok(())
        })
        .expect("encodes");
    }
    let elapsed = start.elapsed();
    println!(
        "snapshot encode ({label:<12})            {:>7.0} MB/s  ({:.1} MB)",
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6
    );
}

fn main() {
    let keys = env_usize("EDDY_BENCH_KEYS", 1_000_000) as u64;
    let events = env_usize("EDDY_BENCH_EVENTS", 5_000_000);
    println!(
        "eddy-core engine bench: {keys} keys, {events} events, {PARTITIONS} partitions, one core"
    );

    // 1. Throughput, baseline first.
    let inputs = fraud_inputs(keys, events);
    let mut bump = Vec::new();
    encode_event::<Tally>(&Bump, &mut bump).expect("encodes");
    let baseline_inputs: Vec<(u32, EventInput)> = inputs
        .iter()
        .map(|(p, input)| {
            let mut input = input.clone();
            input.payload = bump.clone();
            (*p, input)
        })
        .collect();
    let no_isolation = PartitionConfig {
        isolate_panics: false,
        ..PartitionConfig::default()
    };
    let mut base_parts = partitions::<Tally>(&no_isolation);
    warm(&mut base_parts, &baseline_inputs);
    let (n, t) = apply_all(&mut base_parts, &baseline_inputs);
    let baseline = rate(n, t);
    drop(base_parts);
    println!(
        "apply  baseline (trivial behaviour)      {:>7.2} M events/s",
        baseline / 1e6
    );

    let mut parts = partitions::<Fraud>(&no_isolation);
    warm(&mut parts, &inputs);
    let (n, t) = apply_all(&mut parts, &inputs);
    let fraud = rate(n, t);
    println!(
        "apply  fraud, panic isolation off        {:>7.2} M events/s  ({:.2}x baseline, {:.0} ns/event)",
        fraud / 1e6,
        fraud / baseline,
        1e9 / fraud
    );
    drop(parts);
    let mut parts = partitions::<Fraud>(&PartitionConfig::default());
    warm(&mut parts, &inputs);
    let (n, t) = apply_all(&mut parts, &inputs);
    let isolated = rate(n, t);
    println!(
        "apply  fraud, panic isolation on (default){:>7.2} M events/s  ({:.2}x baseline)",
        isolated / 1e6,
        isolated / baseline
    );
    let batched = grouped(&inputs, 65_536);
    let (n, t) = apply_all(&mut parts, &batched);
    let by_partition = rate(n, t);
    println!(
        "apply  fraud, 64K batches by partition    {:>7.2} M events/s  ({:.2}x baseline)",
        by_partition / 1e6,
        by_partition / baseline
    );
    let hot = fraud_inputs(1_000, events / 2);
    let (n, t) = apply_all(&mut parts, &hot);
    let hot_rate = rate(n, t);
    println!(
        "apply  fraud, 1000 hot keys (in cache)    {:>7.2} M events/s  ({:.2}x baseline)",
        hot_rate / 1e6,
        hot_rate / baseline
    );
    let active_parts = parts;

    // 2. Memory per key: exactly one event per key, so every key exists once.
    let one_each: Vec<(u32, EventInput)> = {
        let mut workload = FraudWorkload::new(7, keys);
        let mut payload = Vec::new();
        (0..keys)
            .map(|k| {
                let (_, event) = workload.next_event();
                let key = format!("acct-{k}");
                encode_event::<Fraud>(&event, &mut payload).expect("encodes");
                let partition = partition_of(Fraud::KIND, &key, PARTITIONS).0;
                (
                    partition,
                    EventInput {
                        kind: eddy_core::KindId(0),
                        key,
                        payload: payload.clone(),
                        producer: None,
                    },
                )
            })
            .collect()
    };
    let config = PartitionConfig {
        max_active_keys: usize::MAX,
        ..PartitionConfig::default()
    };
    let before = ALLOCATOR.allocated();
    let mut parts = partitions::<Fraud>(&config);
    let empty = ALLOCATOR.allocated();
    let mut out = Outputs::default();
    for (partition, input) in &one_each {
        parts[*partition as usize]
            .submit(Timestamp(1_700_000_000_000), input.as_ref(), &mut out)
            .expect("applies");
        out.clear();
    }
    let active = ALLOCATOR.allocated();
    for part in &mut parts {
        part.passivate_idle(Timestamp(u64::MAX / 2));
    }
    let passive = ALLOCATOR.allocated();
    // Inputs were allocated before `before` and are freed only after the last
    // reading, so they do not distort the per-key figures.
    drop(one_each);
    let encoded: usize = parts
        .iter()
        .map(|p| {
            p.dump()
                .expect("encodes")
                .keys
                .values()
                .map(Vec::len)
                .sum::<usize>()
        })
        .sum();
    let per_key = |bytes: usize| bytes as f64 / keys as f64;
    println!(
        "memory empty partitions                  {:>7.1} MiB",
        (empty - before) as f64 / (1 << 20) as f64
    );
    println!(
        "memory active key                        {:>7.1} B/key",
        per_key(active - empty)
    );
    println!(
        "memory passive key                       {:>7.1} B/key",
        per_key(passive - empty)
    );
    println!(
        "memory encoded state (avg)               {:>7.1} B/key",
        per_key(encoded)
    );
    println!(
        "memory passive overhead beyond state     {:>7.1} B/key  (target <= 150)",
        per_key(passive - empty) - per_key(encoded)
    );

    // 3. Snapshots, of passive keys (the common case) and of active keys.
    snapshot_encode("passive keys", &parts);
    drop(parts);
    snapshot_encode("active keys", &active_parts);
    let parts = active_parts;
    let mut restored_bytes = 0usize;
    let mut restore_time = Duration::ZERO;
    let registry = parts[0].registry().clone();
    for part in &parts {
        let chunks = part.snapshot_chunks(DEFAULT_CHUNK_BYTES).expect("encodes");
        restored_bytes += chunks.iter().map(Vec::len).sum::<usize>();
        let start = Instant::now();
        let restored = Partition::restore(
            registry.clone(),
            PartitionConfig::default(),
            chunks.iter().map(Vec::as_slice),
        )
        .expect("restores");
        restore_time += start.elapsed();
        black_box(restored);
    }
    println!(
        "snapshot restore                         {:>7.0} MB/s",
        restored_bytes as f64 / 1e6 / restore_time.as_secs_f64()
    );
}
