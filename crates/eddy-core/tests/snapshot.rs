//! Snapshot format: round trip, bounded chunks, and every kind of damage
//! detected with a typed error.

// Test and bench code: a failed expectation should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use eddy_core::{
    Partition, PartitionConfig, ProducerRef, Registry, SNAPSHOT_VERSION, SnapshotError,
    SnapshotReader, Timestamp,
};

fn busy_partition(keys: usize) -> Partition {
    let mut p = partition(PartitionConfig {
        idle_timeout_ms: 50,
        ..PartitionConfig::default()
    });
    for i in 0..keys {
        let key = format!("key-{i}");
        let mut input = cmd(&key, Cmd::Add(i as u32));
        input.producer = Some(ProducerRef {
            producer: format!("p{}", i % 3),
            seq: i as u64 + 1,
        });
        submit(&mut p, i as u64, input);
        if i % 7 == 0 {
            submit(
                &mut p,
                i as u64,
                cmd(
                    &key,
                    Cmd::SetTimer {
                        delay_ms: 1_000,
                        tag: i as u64,
                    },
                ),
            );
        }
        submit(&mut p, i as u64, other(&key, 2));
    }
    // Half the keys passive, half active: both forms must round-trip.
    p.passivate_idle(Timestamp(keys as u64 / 2 + 50));
    p
}

fn restore(chunks: &[Vec<u8>]) -> Result<Partition, SnapshotError> {
    Partition::restore(
        registry(),
        PartitionConfig::default(),
        chunks.iter().map(Vec::as_slice),
    )
}

#[test]
fn round_trip_preserves_keys_timers_producers_and_position() {
    let p = busy_partition(500);
    assert!(p.stats().keys_active > 0 && p.stats().keys_passive > 0);
    let chunks = p.snapshot_chunks(4096).expect("encodes");
    let restored = restore(&chunks).expect("restores");
    assert_eq!(restored.dump(), p.dump());
    assert_eq!(restored.epoch(), p.epoch());
    assert_eq!(restored.last_ts(), p.last_ts());
    assert_eq!(restored.id(), p.id());
    assert_eq!(
        restored.stats().keys_active,
        0,
        "restored keys stay passive"
    );
}

#[test]
fn restored_partition_continues_identically() {
    let mut original = busy_partition(50);
    let mut restored = restore(&original.snapshot_chunks(1024).expect("encodes")).expect("ok");
    for p in [&mut original, &mut restored] {
        submit(p, 2_000, cmd("key-3", Cmd::Add(9)));
        let mut out = eddy_core::Outputs::default();
        p.tick(Timestamp(5_000), &mut out);
    }
    assert_eq!(original.dump(), restored.dump());
}

#[test]
fn chunks_are_bounded() {
    let p = busy_partition(2_000);
    let chunks = p.snapshot_chunks(1024).expect("encodes");
    assert!(chunks.len() > 10);
    // Body bound plus framing; a single record here is far below 1 KiB.
    assert!(
        chunks.iter().all(|c| c.len() <= 1024 + 14 + 8),
        "chunk over bound"
    );
}

#[test]
fn empty_partition_round_trips() {
    let p = partition(PartitionConfig::default());
    let chunks = p.snapshot_chunks(1024).expect("encodes");
    assert_eq!(chunks.len(), 1);
    assert_eq!(restore(&chunks).expect("ok").dump(), p.dump());
}

#[test]
fn any_flipped_byte_is_detected() {
    let chunks = busy_partition(20).snapshot_chunks(256).expect("encodes");
    let chunk = 1.min(chunks.len() - 1);
    for position in 0..chunks[chunk].len() {
        let mut damaged = chunks.clone();
        damaged[chunk][position] ^= 0x20;
        assert!(
            restore(&damaged).is_err(),
            "flip at byte {position} of chunk {chunk} went unnoticed"
        );
    }
}

#[test]
fn checksum_mismatch_is_reported_as_corruption() {
    let mut chunks = busy_partition(20).snapshot_chunks(256).expect("encodes");
    let middle = chunks[0].len() / 2;
    chunks[0][middle] ^= 1;
    assert_eq!(
        restore(&chunks).err(),
        Some(SnapshotError::Checksum { index: 0 })
    );
}

#[test]
fn truncated_stream_is_rejected() {
    let chunks = busy_partition(100).snapshot_chunks(256).expect("encodes");
    assert!(chunks.len() > 2);
    let err = restore(&chunks[..chunks.len() - 1]).err();
    assert!(
        matches!(err, Some(SnapshotError::Truncated { .. })),
        "{err:?}"
    );
    let mut cut = chunks.clone();
    let last = cut.len() - 1;
    let len = cut[last].len();
    cut[last].truncate(len - 3);
    assert!(restore(&cut).is_err());
}

#[test]
fn reordered_or_repeated_chunks_are_rejected() {
    let chunks = busy_partition(100).snapshot_chunks(256).expect("encodes");
    let mut swapped = chunks.clone();
    swapped.swap(1, 2);
    assert!(matches!(
        restore(&swapped).err(),
        Some(SnapshotError::Sequence {
            expected: 1,
            got: 2
        })
    ));
    let mut repeated = chunks.clone();
    repeated.insert(1, chunks[1].clone());
    assert!(restore(&repeated).is_err());
}

#[test]
fn other_versions_are_refused() {
    let mut chunks = busy_partition(5).snapshot_chunks(256).expect("encodes");
    let version = SNAPSHOT_VERSION + 1;
    chunks[0][4..6].copy_from_slice(&version.to_le_bytes());
    assert!(matches!(
        restore(&chunks).err(),
        Some(SnapshotError::UnsupportedVersion { version: v, .. }) if v == version
    ));
}

#[test]
fn non_snapshot_bytes_are_refused() {
    assert!(matches!(
        restore(&[b"hello world, not a snapshot at all".to_vec()]).err(),
        Some(SnapshotError::BadMagic { index: 0 })
    ));
    assert!(matches!(
        restore(&[vec![]]).err(),
        Some(SnapshotError::BadMagic { .. })
    ));
    assert!(matches!(
        restore(&[]).err(),
        Some(SnapshotError::Truncated { chunks: 0 })
    ));
}

#[test]
fn unknown_kinds_are_refused() {
    let chunks = busy_partition(5).snapshot_chunks(256).expect("encodes");
    let only_other = std::sync::Arc::new(
        Registry::builder()
            .kind::<Other>()
            .build()
            .expect("one kind"),
    );
    let mut reader = SnapshotReader::new(only_other, PartitionConfig::default());
    let err = chunks.iter().try_for_each(|c| reader.push(c)).err();
    assert_eq!(err, Some(SnapshotError::UnknownKind("counter".into())));
}

#[test]
fn kinds_map_by_name_not_position() {
    let p = busy_partition(30);
    let chunks = p.snapshot_chunks(512).expect("encodes");
    let reversed = std::sync::Arc::new(
        Registry::builder()
            .kind::<Other>()
            .kind::<Counter>()
            .build()
            .expect("two kinds"),
    );
    let restored = Partition::restore(
        reversed,
        PartitionConfig::default(),
        chunks.iter().map(Vec::as_slice),
    )
    .expect("restores");
    assert_eq!(restored.dump(), p.dump());
}

#[test]
fn sink_errors_stop_the_writer() {
    let p = busy_partition(200);
    let mut accepted = 0;
    let result = p.write_snapshot(256, &mut |_chunk| {
        accepted += 1;
        if accepted == 3 {
            Err("disk full")
        } else {
            Ok(())
        }
    });
    assert!(matches!(
        result,
        Err(eddy_core::SnapshotWriteError::Sink("disk full"))
    ));
    assert_eq!(accepted, 3);
}
