//! `wal_records`: a partition's write-ahead log replayed at start
//! (`eddy_node::storage::replay`); the entries inside are those a backup
//! takes from its owner (`Partition::replay_logged`).

use std::path::Path;

use eddy_core::{Partition, PartitionConfig, PartitionId};
use eddy_node::storage::Storage;

/// Mode byte, then: 0 a `wal` file as on disk; 1 batches of entries
/// ([`crate::pieces`]) the target frames as records with correct checksums.
/// Replayed over an empty copy of partition 3.
pub fn wal_records(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut copy = Partition::new(
        crate::registry(),
        PartitionId(3),
        PartitionConfig::default(),
    );
    let wal = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        crate::pieces(rest)
            .into_iter()
            .flat_map(|entries| Storage::wal_record(entries).expect("small batches fit"))
            .collect()
    };
    let _ = eddy_node::storage::replay(Path::new("wal"), &wal, &mut copy);
    crate::snapshot::same_after_round_trip(&copy);
}
