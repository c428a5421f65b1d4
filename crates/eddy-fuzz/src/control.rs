//! `control_frame`: the controller's bytes from the network — Raft
//! messages (`eddy_control::wire`), proposals and cluster-config snapshots
//! in Raft entries, and the node's controller requests and answers
//! (`eddy_node::control_msg`).

use eddy_control::wire::{WIRE_VERSION, decode_message, encode_message};
use eddy_control::{ClusterConfig, Proposal};
use eddy_node::control_msg::{self, ControlRequest, ControlResponse};
use xxhash_rust::xxh3::xxh3_64;

/// Mode byte, then: 0 a raw Raft message frame; 1 a Raft message body,
/// framed with version and checksum; 2 a proposal; 3 a cluster config;
/// 4 a controller request; 5 a controller answer.
pub fn control_frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => raft_message(rest),
        1 => raft_message(&frame_around(rest)),
        2 => {
            if let Ok(proposal) = Proposal::decode(rest) {
                assert_eq!(Proposal::decode(&proposal.encode()).ok(), Some(proposal));
            }
        }
        3 => {
            if let Ok(config) = ClusterConfig::decode(rest) {
                let again = ClusterConfig::decode(&config.encode());
                assert_eq!(again.ok(), Some(config));
            }
        }
        4 => {
            if let Ok(request) = control_msg::decode::<ControlRequest>(rest) {
                let again = control_msg::decode(&control_msg::encode(&request));
                assert_eq!(again.ok(), Some(request));
            }
        }
        _ => {
            if let Ok(response) = control_msg::decode::<ControlResponse>(rest) {
                let again = control_msg::decode(&control_msg::encode(&response));
                assert_eq!(again.ok(), Some(response));
            }
        }
    }
}

/// A controller frame around `body`: version byte, body, xxh3 of both.
pub fn frame_around(body: &[u8]) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    out.extend_from_slice(body);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A message that decodes re-encodes to one that decodes the same.
fn raft_message(bytes: &[u8]) {
    if let Ok(message) = decode_message(bytes) {
        let again = encode_message(&message).expect("a decoded message encodes");
        assert_eq!(decode_message(&again).ok(), Some(message));
    }
}
