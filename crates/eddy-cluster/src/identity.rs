//! Who a node is: its name, addresses, generation and the cluster parameters
//! it was started with, plus the compatibility check every peer must pass.
//!
//! DESIGN §6 measured that foca sends a custom broadcast only
//! `max_transmissions` times, so a node that joins later never hears it. The
//! small, stable metadata (addresses, `P`, protocol version) therefore lives
//! *in* the identity, which foca puts in every message header and every
//! membership update: whoever learns about a member learns its metadata too.
//!
//! The generation makes a restarted node a new member: foca compares
//! identities with the same gossip address and the higher generation wins
//! ([`foca::Identity::win_addr_conflict`]); when the cluster declares us down
//! foca renews the identity with the next generation and rejoins.

use std::fmt;
use std::net::SocketAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the cluster protocol (gossip identity layout and peer frames).
/// Nodes only form a cluster with nodes of the same version: a rolling upgrade
/// across an incompatible change needs a new cluster, and the refusal names
/// both versions.
pub const PROTOCOL_VERSION: u16 = 4;

/// Longest node name accepted, in bytes. Names travel in every gossip header,
/// so they must stay small; 64 bytes fits a hostname plus a suffix.
pub const MAX_NAME_LEN: usize = 64;

/// A node's stable name, the key of placement on the hash ring. It must be
/// unique in the cluster and should survive restarts (a hostname, a pod name),
/// so a restarted node gets its old partitions back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub CompactString);

impl NodeId {
    /// A node id from a name.
    pub fn new(name: &str) -> NodeId {
        NodeId(CompactString::new(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> NodeId {
        NodeId::new(name)
    }
}

/// One incarnation of a node process, as the cluster sees it.
///
/// Field order is part of the wire format (postcard, in every gossip header):
/// `protocol` comes first so a receiver can read a peer's version even when
/// the rest of the layout changed, and refuse it with a precise reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Cluster protocol version the node speaks ([`PROTOCOL_VERSION`]).
    pub protocol: u16,
    /// Partition count `P` the node was configured with; fixed per cluster.
    pub partitions: u32,
    /// Fingerprint of the kinds the node hosts, in registration order
    /// (`Registry::fingerprint`): log entries name kinds by index, so nodes
    /// with different kinds must not share partitions.
    pub kinds: u64,
    /// Stable node name, the placement key ([`NodeId`]).
    pub name: NodeId,
    /// Chosen at process start (e.g. wall-clock milliseconds, by the shell)
    /// and bumped by [`foca::Identity::renew`]; a restarted node is a new member.
    pub generation: u64,
    /// The incarnation of the node's data (eddy-control's `MemberId`): fixed
    /// while its `data_dir` lives, new at every start without one. Carried
    /// here so every peer can map a controller's Raft id to an address.
    pub incarnation: u64,
    /// UDP address of the SWIM gossip socket; foca's member address.
    pub gossip_addr: SocketAddr,
    /// TCP address of the peer link (replication, forwarding, handoff).
    pub peer_addr: SocketAddr,
    /// HTTP address (ingress, admin, metrics).
    pub http_addr: SocketAddr,
    /// TCP address of the binary client protocol (`eddy-client`).
    pub tcp_addr: SocketAddr,
}

impl NodeIdentity {
    /// The identity used to announce to a seed known only by its gossip
    /// address. foca accepts an `Announce` addressed to any identity with the
    /// receiver's address, so the other fields are placeholders; the seed's
    /// real identity arrives in its reply. Never enters a membership view.
    pub fn seed_placeholder(gossip_addr: SocketAddr, params: ClusterParams) -> NodeIdentity {
        NodeIdentity {
            protocol: params.protocol,
            partitions: params.partitions,
            kinds: params.kinds,
            name: NodeId::new(""),
            generation: 0,
            incarnation: 0,
            gossip_addr,
            peer_addr: gossip_addr,
            http_addr: gossip_addr,
            tcp_addr: gossip_addr,
        }
    }

    /// The cluster parameters this identity carries.
    pub fn params(&self) -> ClusterParams {
        ClusterParams {
            partitions: self.partitions,
            protocol: self.protocol,
            kinds: self.kinds,
        }
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.name, self.generation, self.gossip_addr)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// The higher generation wins (the newer process). Ties, which only two
    /// misconfigured processes can produce, are broken by the total order of
    /// the whole identity so that every member picks the same winner.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self) > (adversary.generation, adversary)
    }
}

/// The parameters that must match for two nodes to share a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterParams {
    /// Partition count `P`, fixed at cluster creation (DESIGN §1).
    pub partitions: u32,
    /// Cluster protocol version ([`PROTOCOL_VERSION`]).
    pub protocol: u16,
    /// Fingerprint of the hosted kinds ([`NodeIdentity::kinds`]).
    pub kinds: u64,
}

impl ClusterParams {
    /// Parameters of this build for a cluster of `partitions` shards
    /// hosting kinds of fingerprint 0 (see [`ClusterParams::with_kinds`]).
    pub fn new(partitions: u32) -> ClusterParams {
        ClusterParams {
            partitions,
            protocol: PROTOCOL_VERSION,
            kinds: 0,
        }
    }

    /// The same with the fingerprint of the hosted kinds.
    pub fn with_kinds(self, kinds: u64) -> ClusterParams {
        ClusterParams { kinds, ..self }
    }
}

/// Why a peer cannot join our cluster. The receiving node ignores the peer
/// (its datagrams are dropped, it never enters the view); nothing else changes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Incompatible {
    /// The peer speaks another cluster protocol version.
    #[error("protocol version {theirs} differs from ours ({ours})")]
    Protocol {
        /// The peer's version.
        theirs: u16,
        /// Our version.
        ours: u16,
    },
    /// The peer was configured with another partition count `P`; keys would
    /// map to different partitions on the two nodes.
    #[error("partition count {theirs} differs from ours ({ours})")]
    Partitions {
        /// The peer's `P`.
        theirs: u32,
        /// Our `P`.
        ours: u32,
    },
    /// The peer hosts other kinds (or the same in another order): entries
    /// name kinds by index, so it would misread ours.
    #[error(
        "hosted kinds differ from ours (fingerprint {theirs:016x}, ours {ours:016x}): every node must register the same kinds in the same order"
    )]
    Kinds {
        /// The peer's fingerprint.
        theirs: u64,
        /// Ours.
        ours: u64,
    },
    /// The peer claims the local node's name from another gossip address: two
    /// processes configured with one name would fight over one ring slot.
    #[error("node name `{0}` is ours")]
    DuplicateName(NodeId),
    /// The peer's name is empty or longer than [`MAX_NAME_LEN`] bytes.
    #[error("node name of {len} bytes is not within 1..={MAX_NAME_LEN}")]
    BadName {
        /// Length of the offending name in bytes.
        len: usize,
    },
}

impl Incompatible {
    /// The reason to tell the remote. Like [`Display`](std::fmt::Display)
    /// but without our kinds fingerprint: a node that may not join has no
    /// business learning the one value it would need to forge a compatible
    /// Hello. Log the full error locally.
    pub fn remote_reason(&self) -> String {
        match self {
            Incompatible::Kinds { .. } => "hosted kinds differ from ours: every node must register the same kinds in the same order".into(),
            other => other.to_string(),
        }
    }
}

/// Checks that `peer` may share a cluster with a node of parameters `ours`.
/// Pure; symmetric for the parameter checks, so two nodes always agree on
/// whether they are compatible.
pub fn check_compatible(ours: ClusterParams, peer: &NodeIdentity) -> Result<(), Incompatible> {
    crate::peer::check_hello(ours, peer.params())?;
    let len = peer.name.as_str().len();
    if len == 0 || len > MAX_NAME_LEN {
        return Err(Incompatible::BadName { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    #[test]
    fn the_remote_reason_does_not_disclose_our_kinds_fingerprint() {
        let err = Incompatible::Kinds {
            theirs: 0x1111_2222_3333_4444,
            ours: 0xabcd_ef01_2345_6789,
        };
        assert!(
            err.to_string().contains("abcdef0123456789"),
            "the local log keeps it"
        );
        let remote = err.remote_reason();
        assert!(remote.contains("hosted kinds differ"), "{remote}");
        assert!(!remote.contains("abcdef0123456789"), "{remote}");
        assert!(!remote.contains("1111222233334444"), "{remote}");
    }

    use super::*;
    use crate::testing::identity;

    #[test]
    fn renew_bumps_generation_and_keeps_the_rest() {
        let id = identity("a", 1);
        let renewed = id.renew();
        assert_eq!(
            renewed,
            Some(NodeIdentity {
                generation: id.generation + 1,
                ..id.clone()
            })
        );
    }

    #[test]
    fn higher_generation_wins_address_conflict() {
        let old = identity("a", 1);
        let new = NodeIdentity {
            generation: 7,
            ..old.clone()
        };
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        // Antisymmetric even when generations tie.
        let twin = NodeIdentity {
            name: NodeId::new("b"),
            ..old.clone()
        };
        assert_ne!(
            old.win_addr_conflict(&twin),
            twin.win_addr_conflict(&old),
            "exactly one of two tied identities wins"
        );
    }

    #[test]
    fn compatibility_names_the_reason() {
        let ours = ClusterParams::new(1024);
        assert_eq!(check_compatible(ours, &identity("a", 1)), Ok(()));

        let other_p = NodeIdentity {
            partitions: 512,
            ..identity("b", 2)
        };
        let err = check_compatible(ours, &other_p);
        assert_eq!(
            err,
            Err(Incompatible::Partitions {
                theirs: 512,
                ours: 1024
            })
        );
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("partition count 512 differs from ours (1024)".to_owned())
        );

        let other_protocol = NodeIdentity {
            protocol: PROTOCOL_VERSION + 1,
            ..identity("c", 3)
        };
        assert!(matches!(
            check_compatible(ours, &other_protocol),
            Err(Incompatible::Protocol { .. })
        ));

        let placeholder = NodeIdentity::seed_placeholder(identity("d", 4).gossip_addr, ours);
        assert_eq!(
            check_compatible(ours, &placeholder),
            Err(Incompatible::BadName { len: 0 })
        );
        let long = NodeIdentity {
            name: NodeId::new(&"x".repeat(MAX_NAME_LEN + 1)),
            ..identity("e", 5)
        };
        assert!(check_compatible(ours, &long).is_err());
    }

    #[test]
    fn protocol_is_the_first_byte_on_the_wire() {
        // `Membership` relies on this to refuse a peer whose layout changed.
        let id = identity("a", 1);
        let bytes = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bytes.first(), Some(&(PROTOCOL_VERSION as u8)));
    }
}
