//! `snapshot_chunks`: partition snapshots as a peer streams them
//! (`eddy_core::SnapshotReader`) and as `data_dir` keeps them
//! (`eddy_node::storage::read_snapshot`).

use std::path::Path;

use eddy_core::{DEFAULT_CHUNK_BYTES, Partition, PartitionConfig, SnapshotReader};
use xxhash_rust::xxh3::xxh3_64;

/// Mode byte, then: 0 a `snapshot` file as on disk (length-prefixed
/// chunks); 1 chunk bodies ([`crate::pieces`]) the target wraps in chunks
/// with correct headers and checksums.
pub fn snapshot_chunks(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let registry = crate::registry();
    let config = PartitionConfig::default();
    let restored = if mode % 2 == 0 {
        eddy_node::storage::read_snapshot(Path::new("snapshot"), rest, &registry, &config).ok()
    } else {
        let mut reader = SnapshotReader::new(registry, config);
        let pushed = crate::pieces(rest)
            .iter()
            .enumerate()
            .try_for_each(|(index, body)| reader.push(&chunk(index, body)));
        pushed.ok().and_then(|()| reader.finish().ok())
    };
    if let Some(partition) = restored {
        same_after_round_trip(&partition);
    }
}

/// Chunk `index` around `body`: magic, version, index, length, body, xxh3.
pub fn chunk(index: usize, body: &[u8]) -> Vec<u8> {
    let mut out = b"EDSN".to_vec();
    out.extend_from_slice(&eddy_core::SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(body);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A restored copy snapshots and restores to the same copy.
pub(crate) fn same_after_round_trip(partition: &Partition) {
    let chunks = partition
        .snapshot_chunks(DEFAULT_CHUNK_BYTES)
        .expect("a restored copy snapshots");
    let again = Partition::restore(
        crate::registry(),
        PartitionConfig::default(),
        chunks.iter().map(Vec::as_slice),
    )
    .expect("its own snapshot restores");
    assert_eq!(again.id(), partition.id());
    assert_eq!(again.epoch(), partition.epoch());
    assert_eq!(again.last_seq(), partition.last_seq());
    let (a, b) = (again.stats(), partition.stats());
    // Restored keys are passive, replayed ones active: compare the totals.
    assert_eq!(
        a.keys_active + a.keys_passive,
        b.keys_active + b.keys_passive
    );
    assert_eq!(a.timers_pending, b.timers_pending);
}
