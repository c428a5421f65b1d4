//! Who a committed member is: a node name plus the incarnation of its data.
//!
//! A node that loses its `data_dir` (or runs without one) lost every copy and
//! every vote it held, so it must not come back as its old self: it is a new
//! [`MemberId`] with a new incarnation, and its Raft id — derived from both —
//! differs from the old one. A wiped voter therefore can never vote (or be
//! counted) as the voter it was; only a committed change can make the new
//! incarnation a member (`Join`), and the old one stays in the Raft voter set
//! as an unreachable id until a committed configuration change removes it.

use std::fmt;
use std::net::SocketAddr;

use eddy_cluster::NodeId;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// One incarnation of a node's data.
///
/// The shell chooses `incarnation` when it creates the node's `data_dir`
/// (and persists it there), or at every start of a node without one; it
/// should rise across incarnations (e.g. wall-clock milliseconds at
/// creation), because a `Join` only replaces a known name's incarnation with
/// a higher one — a stale process that wakes up cannot evict its successor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// The stable node name, the key of placement on the ring.
    pub name: NodeId,
    /// Which life of that name's data this is.
    pub incarnation: u64,
}

impl MemberId {
    /// The member `name` in its `incarnation`.
    pub fn new(name: impl Into<NodeId>, incarnation: u64) -> MemberId {
        MemberId {
            name: name.into(),
            incarnation,
        }
    }

    /// The Raft id of this member: `xxh3_64(name ++ 0x00 ++ incarnation LE)`,
    /// with 0 (Raft's "no node") mapped to 1. Collisions between members are
    /// refused when a `Join` is applied, so within one configuration the id
    /// names one member.
    pub fn raft_id(&self) -> RaftId {
        let mut hasher = Xxh3::new();
        hasher.update(self.name.as_str().as_bytes());
        hasher.update(&[0]);
        hasher.update(&self.incarnation.to_le_bytes());
        RaftId(hasher.digest().max(1))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

/// A Raft node id (never 0), derived by [`MemberId::raft_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RaftId(pub u64);

impl fmt::Display for RaftId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where a member can be reached; committed with its `Join` so every node
/// can address it without waiting for gossip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberInfo {
    /// TCP address of the peer link (replication, handoff, Raft messages).
    pub peer_addr: SocketAddr,
    /// HTTP address (ingress, admin).
    pub http_addr: SocketAddr,
    /// TCP address of the binary client protocol.
    pub tcp_addr: SocketAddr,
}

/// A committed member: its id, addresses and whether it votes in the Raft
/// group (voters are fixed when the cluster is bootstrapped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Name and incarnation.
    pub id: MemberId,
    /// Addresses.
    pub info: MemberInfo,
    /// Whether this incarnation is one of the Raft group's voters.
    pub voter: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_id_depends_on_name_and_incarnation_and_is_nonzero() {
        let a1 = MemberId::new("a", 1).raft_id();
        let a2 = MemberId::new("a", 2).raft_id();
        let b1 = MemberId::new("b", 1).raft_id();
        assert_ne!(a1, a2, "a wiped node must get another Raft id");
        assert_ne!(a1, b1);
        assert_eq!(a1, MemberId::new("a", 1).raft_id(), "stable");
        for incarnation in 0..10_000 {
            assert_ne!(MemberId::new("n", incarnation).raft_id().0, 0);
        }
    }

    /// The derivation is part of the persisted format (Raft logs name voters
    /// by it): pin it against the xxh3 of the documented byte layout.
    #[test]
    fn raft_id_layout_is_pinned() {
        let mut bytes = b"node-1\0".to_vec();
        bytes.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(
            MemberId::new("node-1", 7).raft_id().0,
            xxhash_rust::xxh3::xxh3_64(&bytes).max(1)
        );
    }
}
