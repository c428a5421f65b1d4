//! Identifiers: actors, partitions, epochs and log positions, and the stable
//! partition hash every node and client must agree on.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// Partition count of a new cluster (DESIGN §1). Fixed at cluster creation.
pub const DEFAULT_PARTITIONS: u32 = 1024;

/// One of the `P` fixed shards of the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

/// Per-partition ownership number. Every change of owner raises it; replicas
/// refuse entries from an epoch lower than the highest they have seen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

/// Position of an entry in its partition's log. The first entry is 1; 0 means
/// "nothing applied yet".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Seq(pub u64);

impl Seq {
    /// The position after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

/// Index of a kind in a [`crate::Registry`]. Only meaningful with the registry
/// that issued it; on the wire and in snapshots kinds travel by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KindId(pub u16);

/// The address of one virtual actor: a kind and a key within it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The kind's name, e.g. `account`.
    pub kind: String,
    /// The key within the kind, e.g. `acct-7`.
    pub key: String,
}

impl ActorId {
    /// The partition this actor lives in, for a cluster of `partitions` shards.
    pub fn partition(&self, partitions: u32) -> PartitionId {
        partition_of(&self.kind, &self.key, partitions)
    }
}

/// `xxh3_64(kind ++ 0x00 ++ key) % partitions` (DESIGN §1).
///
/// xxh3 is a named, specified hash: clients and nodes of every version and
/// platform place a key identically. The 0x00 separator keeps `("ab","c")` and
/// `("a","bc")` apart. `partitions` must be at least 1.
pub fn partition_of(kind: &str, key: &str, partitions: u32) -> PartitionId {
    debug_assert!(partitions > 0, "a cluster has at least one partition");
    let mut hasher = Xxh3::new();
    hasher.update(kind.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    let hash = hasher.digest();
    // The remainder is below `partitions`, a u32, so the cast cannot truncate.
    PartitionId((hash % u64::from(partitions.max(1))) as u32)
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_distinguishes_split_points() {
        assert_ne!(
            partition_of("ab", "c", u32::MAX),
            partition_of("a", "bc", u32::MAX)
        );
    }

    /// Pinned against an independent xxh3 implementation (Python `xxhash`): if
    /// this fails, an upgrade changed placement and every cluster would move keys.
    #[test]
    fn partition_hash_is_pinned() {
        assert_eq!(partition_of("account", "acct-7", 1024), PartitionId(26));
        assert_eq!(partition_of("device", "dev-1", 1024), PartitionId(972));
        assert_eq!(partition_of("patient", "pat-42", 1024), PartitionId(451));
        assert_eq!(partition_of("account", "", 1024), PartitionId(972));
        assert_eq!(
            partition_of("account", "acct-7", u32::MAX),
            PartitionId((0x2f6d_b802_93ad_1c1a_u64 % u64::from(u32::MAX)) as u32)
        );
    }

    #[test]
    fn partition_is_below_count() {
        for n in 0..1000 {
            let key = format!("k{n}");
            assert!(partition_of("account", &key, 7).0 < 7);
        }
    }
}
