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
/// 4 a controller request; 5 a controller answer; 6 the controller's log
/// file in `data_dir` as on disk; 7 its record bodies ([`crate::pieces`])
/// framed with lengths and checksums.
pub fn control_frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 8 {
        6 => control_log(rest),
        7 => {
            let mut log = Vec::new();
            for body in crate::pieces(rest) {
                let record = frame_around(body);
                let len = u32::try_from(record.len()).expect("pieces are small");
                log.extend_from_slice(&len.to_le_bytes());
                log.extend_from_slice(&record);
            }
            control_log(&log);
        }
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

/// The controller log replays (or is refused) without a panic, and uses
/// no more bytes than it was given.
fn control_log(bytes: &[u8]) {
    if let Ok((_, used)) = eddy_node::control_log::decode(std::path::Path::new("log"), bytes) {
        assert!(used <= bytes.len());
    }
}

/// A message that decodes re-encodes to one that decodes the same.
fn raft_message(bytes: &[u8]) {
    if let Ok(message) = decode_message(bytes) {
        let again = encode_message(&message).expect("a decoded message encodes");
        assert_eq!(decode_message(&again).ok(), Some(message));
    }
}
