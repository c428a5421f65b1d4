//! The determinism contract (DESIGN §2): for any input sequence and any snapshot
//! point, restore(snapshot) + replay(log tail) reaches the same state and emits
//! the same alerts as the uninterrupted run; a replica applying the log from
//! the start agrees too, however differently it passivates.

// Test and bench code: a failed expectation should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use eddy_core::{
    AlertRecord, Entry, Outputs, Partition, PartitionConfig, ProducerRef, Seq, Timestamp,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Counter { key: u8, cmd: Cmd },
    Other { key: u8, n: u32 },
    Produced { key: u8, producer: u8, seq: u8 },
    Tick,
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => (0u32..20).prop_map(Cmd::Add),
        3 => (0u64..200, 0u64..6).prop_map(|(delay_ms, tag)| Cmd::SetTimer { delay_ms, tag }),
        1 => (0u64..6).prop_map(Cmd::CancelTimer),
        1 => Just(Cmd::Stop),
        1 => Just(Cmd::Panic),
    ]
}

fn op_strategy() -> impl Strategy<Value = (u64, Op)> {
    let op = prop_oneof![
        8 => (0u8..8, cmd_strategy()).prop_map(|(key, cmd)| Op::Counter { key, cmd }),
        2 => (0u8..8, 0u32..100).prop_map(|(key, n)| Op::Other { key, n }),
        2 => (0u8..8, 0u8..3, 1u8..30).prop_map(|(key, producer, seq)| Op::Produced { key, producer, seq }),
        3 => Just(Op::Tick),
    ];
    (0u64..40, op)
}

struct Run {
    log: Vec<Entry>,
    alerts: Vec<AlertRecord>,
    snapshot: Vec<Vec<u8>>,
    snapshot_seq: Seq,
    owner: Partition,
}

fn owner_config() -> PartitionConfig {
    PartitionConfig {
        idle_timeout_ms: 30,
        max_timer_fires_per_tick: 3,
        ..PartitionConfig::default()
    }
}

/// Runs `ops` on an owner, snapshotting after op `snapshot_at` (chunked small to
/// exercise multi-chunk streams).
fn run_owner(ops: &[(u64, Op)], snapshot_at: usize) -> Run {
    let mut owner = partition(owner_config());
    let mut out = Outputs::default();
    let mut now = 0;
    let mut snapshot = None;
    if snapshot_at == 0 {
        snapshot = Some((
            owner.snapshot_chunks(128).expect("encodes"),
            owner.last_seq(),
        ));
    }
    for (index, (dt, op)) in ops.iter().enumerate() {
        now += dt;
        let at = Timestamp(now);
        let key = |k: &u8| format!("k{k}");
        let result = match op {
            Op::Counter { key: k, cmd: c } => owner
                .submit(at, cmd(&key(k), c.clone()).as_ref(), &mut out)
                .map(drop),
            Op::Other { key: k, n } => owner
                .submit(at, other(&key(k), *n).as_ref(), &mut out)
                .map(drop),
            Op::Produced {
                key: k,
                producer,
                seq,
            } => {
                let mut input = cmd(&key(k), Cmd::Add(1));
                input.producer = Some(ProducerRef {
                    producer: format!("p{producer}"),
                    seq: u64::from(*seq),
                });
                owner.submit(at, input.as_ref(), &mut out).map(drop)
            }
            Op::Tick => {
                owner.tick(at, &mut out);
                Ok(())
            }
        };
        if let Err(err) = result {
            assert!(
                matches!(
                    op,
                    Op::Counter {
                        cmd: Cmd::Panic,
                        ..
                    }
                ),
                "unexpected {err}"
            );
        }
        if index + 1 == snapshot_at {
            snapshot = Some((
                owner.snapshot_chunks(128).expect("encodes"),
                owner.last_seq(),
            ));
        }
    }
    let (snapshot, snapshot_seq) = snapshot.expect("snapshot point within the run");
    Run {
        log: logged(&out),
        alerts: out.alerts,
        snapshot,
        snapshot_seq,
        owner,
    }
}

fn replay(
    partition: &mut Partition,
    entries: &[Entry],
    passivate_every: usize,
) -> Vec<AlertRecord> {
    let mut out = Outputs::default();
    for (index, entry) in entries.iter().enumerate() {
        partition
            .apply(&entry.view(), &mut out)
            .expect("log entries apply on replicas");
        if passivate_every > 0 && index % passivate_every == 0 {
            partition.passivate_idle(entry.ts);
        }
    }
    out.alerts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_log_tail_equals_uninterrupted_run(
        ops in prop::collection::vec(op_strategy(), 1..120),
        snapshot_fraction in 0.0f64..=1.0,
        passivate_every in 0usize..5,
    ) {
        let snapshot_at = ((ops.len() as f64) * snapshot_fraction) as usize;
        let run = run_owner(&ops, snapshot_at);

        let mut restored = Partition::restore(
            registry(),
            PartitionConfig { idle_timeout_ms: 7, ..PartitionConfig::default() },
            run.snapshot.iter().map(Vec::as_slice),
        ).expect("snapshot restores");
        prop_assert_eq!(restored.last_seq(), run.snapshot_seq);
        let tail: Vec<Entry> = run.log.iter().filter(|e| e.seq > run.snapshot_seq).cloned().collect();
        let replayed_alerts = replay(&mut restored, &tail, passivate_every);

        prop_assert_eq!(restored.dump().expect("encodes"), run.owner.dump().expect("encodes"));
        let expected: Vec<&AlertRecord> = run.alerts.iter().filter(|a| a.seq > run.snapshot_seq).collect();
        prop_assert_eq!(replayed_alerts.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn replica_applying_the_whole_log_agrees_with_the_owner(
        ops in prop::collection::vec(op_strategy(), 1..120),
        passivate_every in 0usize..5,
    ) {
        let run = run_owner(&ops, 0);
        // The replica gets entries as bytes, as they travel from the owner.
        let mut replica = partition(PartitionConfig { idle_timeout_ms: 1, ..PartitionConfig::default() });
        let mut out = Outputs::default();
        for (index, entry) in run.log.iter().enumerate() {
            let bytes = postcard::to_stdvec(entry).expect("encodes");
            prop_assert_eq!(replica.apply_encoded(&bytes, &mut out), Ok(entry.seq));
            if passivate_every > 0 && index % passivate_every == 0 {
                replica.passivate_idle(entry.ts);
            }
        }
        prop_assert_eq!(replica.dump().expect("encodes"), run.owner.dump().expect("encodes"));
        prop_assert_eq!(out.alerts, run.alerts);
    }

    #[test]
    fn snapshot_reader_never_panics_on_garbage(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
    ) {
        let _ = Partition::restore(registry(), PartitionConfig::default(), chunks.iter().map(Vec::as_slice));
    }

    #[test]
    fn damaged_snapshots_are_rejected_not_loaded(
        ops in prop::collection::vec(op_strategy(), 1..60),
        chunk_pick in any::<prop::sample::Index>(),
        byte_pick in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let run = run_owner(&ops, ops.len());
        let mut chunks = run.snapshot.clone();
        let chunk = chunk_pick.index(chunks.len());
        let byte = byte_pick.index(chunks[chunk].len());
        chunks[chunk][byte] ^= flip;
        let restored = Partition::restore(registry(), PartitionConfig::default(), chunks.iter().map(Vec::as_slice));
        prop_assert!(restored.is_err());
    }
}
