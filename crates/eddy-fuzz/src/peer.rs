//! `peer_message`: the peer link's messages (`eddy_cluster::peer`), framed
//! like the client protocol, and the bounds every request is checked
//! against before anything is sized by it.

use eddy_cluster::{PeerRequest, PeerResponse};

use crate::wire::{framed, stream};

/// Partition counts a request's bounds are checked against.
const PARTITIONS: [u32; 3] = [1, 64, 1024];

/// Mode byte, then: 0 a byte stream of `PeerRequest` frames, 1 of
/// `PeerResponse` frames; 2 a `PeerRequest` body, 3 a `PeerResponse` body,
/// framed correctly.
pub fn peer_message(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => stream::<PeerRequest>(rest),
        1 => stream::<PeerResponse>(rest),
        2 => {
            if let Some(request) = framed::<PeerRequest>(rest) {
                for partitions in PARTITIONS {
                    check_bounds(&request, partitions);
                }
            }
        }
        _ => {
            framed::<PeerResponse>(rest);
        }
    }
}

/// `check_bounds` never panics, and what it lets through names only
/// partitions below the count.
fn check_bounds(request: &PeerRequest, partitions: u32) {
    if request.check_bounds(partitions).is_err() {
        return;
    }
    match request {
        PeerRequest::Replicate { parts, .. } => {
            assert!(parts.len() <= partitions as usize);
            assert!(parts.iter().all(|part| part.partition < partitions));
        }
        PeerRequest::Snapshot { partition, .. } => {
            assert!(*partition < partitions);
        }
        PeerRequest::Hello { .. }
        | PeerRequest::Forward { .. }
        | PeerRequest::GetState { .. }
        | PeerRequest::Control { .. } => {}
    }
}
