//! Messages of the peer link: the one TCP connection between two nodes
//! (DESIGN §6). Frames are those of `eddy_core::wire` (length, version,
//! postcard body, xxh3), so the version check, size limit and checksum are
//! shared with the client protocol; only the bodies differ.
//!
//! A link opens with [`PeerRequest::Hello`]; the acceptor answers
//! [`PeerResponse::Welcome`] or [`PeerResponse::Refused`] (another `P` or
//! protocol version — see [`check_hello`]) and closes. After that requests
//! are pipelined and every answer repeats its `request_id`.

use compact_str::CompactString;
use eddy_core::Replicated;
use eddy_core::wire::WireEvent;
use serde::{Deserialize, Serialize};

use crate::identity::{ClusterParams, Incompatible, NodeId};

/// What a node asks a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// First frame of a link: who is calling, with which cluster parameters.
    Hello {
        /// The caller's name.
        from: NodeId,
        /// The caller's `P` and protocol version.
        params: ClusterParams,
    },
    /// Apply these events, all of partitions the receiver owns according to
    /// the sender's table. Events the receiver does not own are answered as
    /// [`ForwardOutcome::not_owner`], never forwarded again (no loops).
    Forward {
        /// Echoed in the answer.
        request_id: u64,
        /// The events, in the order the client sent them.
        events: Vec<WireEvent>,
    },
    /// Entries of several partitions the sender owns, one part per
    /// partition; answered by `Replicated` with one outcome per part, in order.
    Replicate {
        /// Echoed in the answer.
        request_id: u64,
        /// The parts.
        parts: Vec<ReplicaPart>,
    },
    /// One chunk of a snapshot of `partition`, which the receiver holds as
    /// a backup once the last chunk is in. Answered by `Replicated`.
    Snapshot {
        /// Echoed in the answer.
        request_id: u64,
        /// The partition.
        partition: u32,
        /// The sender's epoch.
        epoch: u64,
        /// A chunk of `eddy_core::snapshot`, in order.
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// Read a key's state from its owner.
    GetState {
        /// Echoed in the answer.
        request_id: u64,
        /// Kind name.
        kind: CompactString,
        /// Key.
        key: CompactString,
    },
    /// A message for the receiver's cluster controller (eddy-control): a
    /// Raft frame, a status question, a join request or a pushed committed
    /// configuration. Opaque here (this crate does not know the
    /// controller); answered by `Controlled`. Served beside the data path,
    /// never queued behind a partition worker.
    Control {
        /// Echoed in the answer.
        request_id: u64,
        /// The controller message, encoded by the node.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// [`PeerRequest::Forward`] built from a borrowed batch, so the sender keeps
/// its events (to re-route those the receiver does not own) without cloning.
/// Encodes to the bytes of the owned request (pinned by a test).
#[derive(Debug, Serialize)]
pub enum PeerRequestRef<'a> {
    /// Mirrors [`PeerRequest::Hello`] (variant order must match).
    Hello {
        /// The caller's name.
        from: &'a NodeId,
        /// The caller's parameters.
        params: ClusterParams,
    },
    /// Mirrors [`PeerRequest::Forward`].
    Forward {
        /// Echoed in the answer.
        request_id: u64,
        /// The events.
        events: &'a [WireEvent],
    },
    /// Mirrors [`PeerRequest::Replicate`].
    Replicate {
        /// Echoed in the answer.
        request_id: u64,
        /// The parts.
        parts: &'a [ReplicaPartRef<'a>],
    },
    /// Mirrors [`PeerRequest::Snapshot`].
    Snapshot {
        /// Echoed in the answer.
        request_id: u64,
        /// The partition.
        partition: u32,
        /// See [`PeerRequest::Snapshot`].
        epoch: u64,
        /// The chunk.
        #[serde(with = "serde_bytes")]
        chunk: &'a [u8],
        /// Whether this is the last chunk.
        last: bool,
    },
}

/// What a peer answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// The link is accepted.
    Welcome {
        /// The acceptor's name.
        node: NodeId,
    },
    /// The link is refused; the acceptor closes it after this frame.
    Refused {
        /// Why, for the caller's log.
        reason: String,
    },
    /// Outcome of a [`PeerRequest::Forward`].
    Forwarded {
        /// The request's id.
        request_id: u64,
        /// Per-event outcomes.
        outcome: ForwardOutcome,
    },
    /// Answer of a [`PeerRequest::GetState`].
    State {
        /// The request's id.
        request_id: u64,
        /// The state as JSON; `None` if the key has none.
        state_json: Option<String>,
        /// Owner epoch (the fencing epoch) of the owner's copy.
        epoch: u64,
    },
    /// Outcome of `Replicate` (one per part) or `Snapshot` (one).
    Replicated {
        /// The request's id.
        request_id: u64,
        /// What the replica did.
        outcomes: Vec<Replicated>,
    },
    /// Answer of a [`PeerRequest::Control`] (empty for a one-way Raft frame).
    Controlled {
        /// The request's id.
        request_id: u64,
        /// The controller's answer, encoded by the node.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// The request was not carried out at all.
    Failed {
        /// The request's id.
        request_id: u64,
        /// Why.
        failure: PeerFailure,
    },
}

impl PeerRequest {
    /// The request's id, `None` for the handshake.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            PeerRequest::Forward { request_id, .. }
            | PeerRequest::Replicate { request_id, .. }
            | PeerRequest::Snapshot { request_id, .. }
            | PeerRequest::GetState { request_id, .. }
            | PeerRequest::Control { request_id, .. } => Some(*request_id),
            PeerRequest::Hello { .. } => None,
        }
    }

    /// Checks every partition id and count against the cluster's partition
    /// count `partitions` before anything is sized or looked up by them: a
    /// partition id is an index, and one frame naming `u32::MAX` made a
    /// worker allocate a slot list of that length and abort the node.
    pub fn check_bounds(&self, partitions: u32) -> Result<(), String> {
        let check = |partition: u32| {
            if partition < partitions {
                Ok(())
            } else {
                Err(format!(
                    "partition {partition} out of range (the cluster has {partitions})"
                ))
            }
        };
        match self {
            PeerRequest::Replicate { parts, .. } => {
                if parts.len() > partitions as usize {
                    return Err(format!("{} parts for {partitions} partitions", parts.len()));
                }
                parts.iter().try_for_each(|part| check(part.partition))
            }
            PeerRequest::Snapshot { partition, .. } => check(*partition),
            PeerRequest::Hello { .. }
            | PeerRequest::Forward { .. }
            | PeerRequest::GetState { .. }
            | PeerRequest::Control { .. } => Ok(()),
        }
    }
}

impl PeerResponse {
    /// The request this answers, `None` for the handshake answers.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            PeerResponse::Forwarded { request_id, .. }
            | PeerResponse::Replicated { request_id, .. }
            | PeerResponse::State { request_id, .. }
            | PeerResponse::Controlled { request_id, .. }
            | PeerResponse::Failed { request_id, .. } => Some(*request_id),
            PeerResponse::Welcome { .. } | PeerResponse::Refused { .. } => None,
        }
    }
}

/// Per-event outcome of a forwarded batch; indices are positions in the
/// forwarded batch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ForwardOutcome {
    /// Events applied.
    pub accepted: u32,
    /// Producer retries already applied, skipped.
    pub duplicates: u32,
    /// Events refused while applying, with the reason.
    pub rejected: Vec<(u32, String)>,
    /// Events of partitions the receiver does not own in its table; nothing
    /// was done with them. The sender's table is stale or the receiver's is.
    pub not_owner: Vec<u32>,
}

/// Entries of one partition in a [`PeerRequest::Replicate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaPart {
    /// The partition.
    pub partition: u32,
    /// The sender's epoch for it.
    pub epoch: u64,
    /// Entries encoded back-to-back; empty is a barrier.
    #[serde(with = "serde_bytes")]
    pub entries: Vec<u8>,
}

/// [`ReplicaPart`] over borrowed entries; the same bytes on the wire.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReplicaPartRef<'a> {
    /// The partition.
    pub partition: u32,
    /// The sender's epoch for it.
    pub epoch: u64,
    /// Entries encoded back-to-back; empty is a barrier.
    #[serde(with = "serde_bytes")]
    pub entries: &'a [u8],
}

/// A copy of a partition a node holds (`GET /v1/partitions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The partition.
    pub partition: u32,
    /// Highest epoch the copy has seen (what it fences with).
    pub epoch: u64,
    /// Epoch of its last applied entry: copies are compared by
    /// (`last_epoch`, `last_seq`), since a promotion raises `epoch` alone.
    pub last_epoch: u64,
    /// Its last applied position.
    pub last_seq: u64,
}

/// Why a peer request failed whole; mirrors the ingress errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFailure {
    /// The peer is over its in-flight budget; retry after the delay.
    Overloaded {
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// The peer is starting or stopping.
    NotReady,
    /// The peer could not reach its own partition worker.
    Unavailable(String),
    /// The request was invalid (unknown kind, bad payload).
    BadRequest(String),
}

/// Whether a link from a node with `theirs` may be accepted by a node with
/// `ours`: same protocol version and partition count.
pub fn check_hello(ours: ClusterParams, theirs: ClusterParams) -> Result<(), Incompatible> {
    if theirs.protocol != ours.protocol {
        return Err(Incompatible::Protocol {
            theirs: theirs.protocol,
            ours: ours.protocol,
        });
    }
    if theirs.partitions != ours.partitions {
        return Err(Incompatible::Partitions {
            theirs: theirs.partitions,
            ours: ours.partitions,
        });
    }
    if theirs.kinds != ours.kinds {
        return Err(Incompatible::Kinds {
            theirs: theirs.kinds,
            ours: ours.kinds,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use eddy_core::wire::{decode_frame, encode_frame};

    use super::*;

    #[test]
    fn partition_ids_and_counts_are_checked_against_p() {
        let part = |partition| ReplicaPart {
            partition,
            epoch: 1,
            entries: Vec::new(),
        };
        let replicate = |parts| PeerRequest::Replicate {
            request_id: 1,
            parts,
        };
        assert_eq!(replicate(vec![part(7)]).check_bounds(8), Ok(()));
        assert!(replicate(vec![part(7), part(8)]).check_bounds(8).is_err());
        let snapshot = |partition| PeerRequest::Snapshot {
            request_id: 1,
            partition,
            epoch: 1,
            chunk: Vec::new(),
            last: true,
        };
        assert!(snapshot(3).check_bounds(4).is_ok());
        assert!(snapshot(4).check_bounds(4).is_err());
        assert!(snapshot(u32::MAX).check_bounds(4).is_err());
        let message = snapshot(9).check_bounds(4).unwrap_err();
        assert!(
            message.contains("partition 9") && message.contains("4"),
            "{message}"
        );
    }

    #[test]
    fn a_peer_hosting_other_kinds_is_refused() {
        let ours = ClusterParams::new(1024).with_kinds(7);
        assert_eq!(check_hello(ours, ours), Ok(()));
        assert_eq!(
            check_hello(ours, ClusterParams::new(1024).with_kinds(8)),
            Err(Incompatible::Kinds { theirs: 8, ours: 7 })
        );
    }

    #[test]
    fn hello_checks_protocol_and_partitions() {
        let ours = ClusterParams::new(1024);
        assert_eq!(check_hello(ours, ours), Ok(()));
        assert!(matches!(
            check_hello(ours, ClusterParams::new(512)),
            Err(Incompatible::Partitions {
                theirs: 512,
                ours: 1024
            })
        ));
        let future = ClusterParams {
            protocol: ours.protocol + 1,
            ..ours
        };
        assert!(matches!(
            check_hello(ours, future),
            Err(Incompatible::Protocol { .. })
        ));
    }

    #[test]
    fn messages_round_trip_in_frames() {
        let request = PeerRequest::Forward {
            request_id: 9,
            events: vec![WireEvent {
                kind: "account".into(),
                key: "acct-7".into(),
                payload: vec![1, 2],
                producer: None,
            }],
        };
        let mut frame = Vec::new();
        encode_frame(&request, &mut frame).expect("encodes");
        let decoded = decode_frame::<PeerRequest>(&frame, 1024).expect("valid");
        assert_eq!(decoded, Some((request.clone(), frame.len())));
        let PeerRequest::Forward { events, .. } = &request else {
            unreachable!("built as Forward")
        };
        let mut borrowed = Vec::new();
        encode_frame(
            &PeerRequestRef::Forward {
                request_id: 9,
                events,
            },
            &mut borrowed,
        )
        .expect("encodes");
        assert_eq!(borrowed, frame, "borrowed and owned Forward are one format");
        let owned = |request: &PeerRequest| {
            let mut frame = Vec::new();
            encode_frame(request, &mut frame).expect("encodes");
            frame
        };
        let borrowed = |request: &PeerRequestRef<'_>| {
            let mut frame = Vec::new();
            encode_frame(request, &mut frame).expect("encodes");
            frame
        };
        assert_eq!(
            owned(&PeerRequest::Replicate {
                request_id: 1,
                parts: vec![ReplicaPart {
                    partition: 2,
                    epoch: 3,
                    entries: vec![4, 5]
                }]
            }),
            borrowed(&PeerRequestRef::Replicate {
                request_id: 1,
                parts: &[ReplicaPartRef {
                    partition: 2,
                    epoch: 3,
                    entries: &[4, 5]
                }]
            })
        );
        assert_eq!(
            owned(&PeerRequest::Snapshot {
                request_id: 1,
                partition: 2,
                epoch: 3,
                chunk: vec![6],
                last: false
            }),
            borrowed(&PeerRequestRef::Snapshot {
                request_id: 1,
                partition: 2,
                epoch: 3,
                chunk: &[6],
                last: false
            })
        );
        // A client frame is not a peer frame: the body does not decode.
        let response = PeerResponse::Failed {
            request_id: 3,
            failure: PeerFailure::NotReady,
        };
        assert_eq!(response.request_id(), Some(3));
    }
}
