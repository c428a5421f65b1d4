//! What nodes say to each other's cluster controller, inside
//! `PeerRequest::Control` / `PeerResponse::Controlled` (opaque bytes to
//! eddy-cluster, which does not know the controller): postcard behind a
//! version byte, refused whole if it does not decode.

use eddy_cluster::NodeId;
use eddy_control::{Command, Member, MemberId, MemberInfo};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version byte in front of every controller message.
pub const CONTROL_MSG_VERSION: u8 = 1;

/// A request to a peer's controller driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// A Raft frame (`eddy_control::wire`), one-way: answered `Ack` at once.
    Raft(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Who are you and what Raft state do you hold? (bootstrap, join)
    Status,
    /// Commit this member (a non-voter, a wiped node). Proposed by the
    /// receiving voter; Raft forwards it to the leader.
    Join {
        /// The member asking.
        member: MemberId,
        /// Its addresses.
        info: MemberInfo,
    },
    /// The committed configuration, pushed by the leader to members that do
    /// not receive the Raft log (every node that is not a voter).
    Config {
        /// `ClusterConfig::encode`.
        #[serde(with = "serde_bytes")]
        config: Vec<u8>,
        /// The leader's name.
        leader: NodeId,
        /// The leader's term.
        term: u64,
        /// The log index the configuration is applied up to.
        index: u64,
    },
    /// Propose this `SetIsr` (an owner's ISR change; an owner that is not a
    /// voter asks a voter, and Raft forwards it to the leader). Added last:
    /// the other variants keep their encoding.
    Propose(Command),
    /// Propose each of these owner changes (`Elect`s of a restarted node
    /// asking to serve at a new epoch), answered `Ack` at once: the
    /// proposer learns the outcome from the configuration. Added last.
    ProposeMany(Vec<Command>),
}

/// An answer of a peer's controller driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Taken (a Raft frame, a pushed configuration, a proposed join).
    Ack,
    /// Answer of `Status`.
    Status(StatusReport),
    /// Not done, and why.
    Refused(String),
    /// Answer of `Propose`: the partition's assignment once a version after
    /// the one the command named is committed (added last, as above).
    Assignment {
        /// The partition.
        partition: eddy_core::PartitionId,
        /// Its committed assignment.
        assignment: eddy_control::Assignment,
    },
}

/// A node's report of itself and its Raft state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The reporting member.
    pub member: MemberId,
    /// `Some(cluster id)` if it runs a Raft replica of that cluster.
    pub cluster: Option<u64>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The Raft voters of its configuration, with their addresses: a voter
    /// that finds itself here without state lost the race to persist the
    /// bootstrap and bootstraps the identical configuration from this list.
    pub voters: Vec<Member>,
}

/// A controller message did not decode; nothing was done with it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlMsgError {
    /// Empty body.
    #[error("empty controller message")]
    Empty,
    /// Another version.
    #[error("controller message version {0} is not {CONTROL_MSG_VERSION}")]
    Version(u8),
    /// Not postcard of the expected type.
    #[error("controller message body: {0}")]
    Body(String),
}

/// Encodes `message` behind the version byte.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Plain enums, integers, strings and byte vectors serialise into a Vec
    // without error (postcard fails only on fixed buffers).
    postcard::to_extend(message, vec![CONTROL_MSG_VERSION]).unwrap_or_default()
}

/// Decodes bytes written by [`encode`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ControlMsgError> {
    let (&version, body) = bytes.split_first().ok_or(ControlMsgError::Empty)?;
    if version != CONTROL_MSG_VERSION {
        return Err(ControlMsgError::Version(version));
    }
    postcard::from_bytes(body).map_err(|e| ControlMsgError::Body(e.to_string()))
}

/// The answer of a node that runs no controller (its config names no voters).
pub fn not_running() -> Vec<u8> {
    encode(&ControlResponse::Refused(
        "this node runs no controller (no voters configured)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let request = ControlRequest::Join {
            member: MemberId::new("n", 3),
            info: MemberInfo {
                peer_addr: "127.0.0.1:1".parse().unwrap(),
                http_addr: "127.0.0.1:2".parse().unwrap(),
                tcp_addr: "127.0.0.1:3".parse().unwrap(),
            },
        };
        let bytes = encode(&request);
        assert_eq!(decode::<ControlRequest>(&bytes), Ok(request));
        assert_eq!(decode::<ControlRequest>(&[]), Err(ControlMsgError::Empty));
        assert_eq!(
            decode::<ControlRequest>(&[9, 0]),
            Err(ControlMsgError::Version(9))
        );
        assert!(matches!(
            decode::<ControlRequest>(&[CONTROL_MSG_VERSION, 0xff, 0xff]),
            Err(ControlMsgError::Body(_))
        ));
    }
}
