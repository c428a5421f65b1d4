//! Which well-formed Raft frames a controller refuses before raft-rs sees
//! them: those no honest peer sends and on which raft-rs would panic.
//!
//! raft-rs asserts (`fatal!`) that its peers follow the protocol. A frame
//! that passed our checksum can still come from a buggy or hostile peer, and
//! a panic would take the node down; so [`check`] refuses, with a reason:
//! - a heartbeat whose commit index lies beyond our log (`commit_to`);
//! - a forwarded proposal without entries ("stepped empty MsgProp") or with
//!   a term (the follower forwarding it again trips a send assertion);
//! - an append after index N > 0 claiming `log_term` 0 (raft-rs reads terms
//!   beyond its log as 0, would match, and then commit beyond its log);
//! - append entries that do not follow the index contiguously with
//!   non-decreasing terms up to the message's term (a "conflict with a
//!   committed entry");
//! - a snapshot whose voter configuration cannot be restored (empty, joint,
//!   repeating or zero ids: this version makes no configuration changes), or
//!   whose data is not a configuration (checked before Raft adopts it, so
//!   the state machine can never fall behind the log).
//!
//! Leader transfers and read-index requests are refused earlier, at decode
//! ([`crate::wire`]). The list comes from a proptest that steps arbitrary
//! frames into a leader and a follower (below); it narrows the trust raft-rs
//! places in peers but cannot prove it away: peer links stay authenticated.

use raft::eraftpb::{Message, MessageType};

use crate::controller::ControlError;
use crate::state::ClusterConfig;

/// `Ok` if `message` may be stepped into a Raft node whose log ends at
/// `last_index`.
pub fn check(message: &Message, last_index: u64) -> Result<(), ControlError> {
    let implausible = |what| Err(ControlError::Implausible(what));
    match message.get_msg_type() {
        MessageType::MsgHeartbeat if message.commit > last_index => {
            return implausible("heartbeat commits beyond the log");
        }
        MessageType::MsgPropose if message.get_entries().is_empty() => {
            return implausible("proposal without entries");
        }
        MessageType::MsgPropose if message.term != 0 => {
            return implausible("forwarded proposal with a term");
        }
        MessageType::MsgAppend if message.index > 0 && message.log_term == 0 => {
            return implausible("append after an entry of term 0");
        }
        _ => {}
    }
    if message.get_msg_type() != MessageType::MsgPropose {
        let mut previous = (message.index, message.log_term);
        for entry in message.get_entries() {
            let contiguous = entry.index == previous.0.saturating_add(1);
            let ordered =
                entry.term >= previous.1 && (message.term == 0 || entry.term <= message.term);
            if !contiguous || !ordered {
                return implausible("append entries out of order");
            }
            previous = (entry.index, entry.term);
        }
    }
    if let Some(snapshot) = message.snapshot.as_ref() {
        let conf = snapshot.get_metadata().get_conf_state();
        let mut ids: Vec<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
        ids.sort_unstable();
        let repeats = ids.windows(2).any(|w| w[0] == w[1]);
        if conf.voters.is_empty()
            || repeats
            || !conf.voters_outgoing.is_empty()
            || !conf.learners_next.is_empty()
            || ids.contains(&raft::INVALID_ID)
        {
            return implausible("snapshot configuration");
        }
        ClusterConfig::decode(&snapshot.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use raft::eraftpb::{Message, MessageType};

    use crate::testing::{NetConfig, TestNet};
    use crate::wire::encode_message;

    fn arb_type() -> impl Strategy<Value = MessageType> {
        prop_oneof![
            Just(MessageType::MsgPropose),
            Just(MessageType::MsgAppend),
            Just(MessageType::MsgAppendResponse),
            Just(MessageType::MsgRequestVote),
            Just(MessageType::MsgRequestVoteResponse),
            Just(MessageType::MsgSnapshot),
            Just(MessageType::MsgHeartbeat),
            Just(MessageType::MsgHeartbeatResponse),
            Just(MessageType::MsgRequestPreVote),
            Just(MessageType::MsgRequestPreVoteResponse),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Well-formed frames with arbitrary field values, from a real peer
        /// id, stepped into a leader and a follower with a log: refused or
        /// stepped, never a panic.
        #[test]
        fn arbitrary_frames_from_a_peer_never_panic(
            msg_type in arb_type(),
            term in 0u64..8,
            index in 0u64..40,
            log_term in 0u64..8,
            commit in 0u64..40,
            reject in any::<bool>(),
            reject_hint in 0u64..40,
            entries in proptest::collection::vec((0u64..8, 0u64..40), 0..4),
            target_leader in any::<bool>(),
        ) {
            let mut net = TestNet::new(4, NetConfig { voters: 3, ..NetConfig::default() });
            for _ in 0..60 {
                net.tick();
            }
            let leader = net.leader().unwrap();
            for p in 0..4u32 {
                net.propose(leader, crate::Command::Elect {
                    partition: eddy_core::PartitionId(p),
                    owner: net.nodes()[leader].member.clone(),
                    epoch: eddy_core::Epoch(1),
                });
                net.tick();
            }
            net.run(10);
            let target = if target_leader { leader } else { (leader + 1) % 3 };
            let from = net.nodes()[(target + 1) % 3].member.raft_id().0;
            let mut message = Message::default();
            message.set_msg_type(msg_type);
            message.to = net.nodes()[target].member.raft_id().0;
            message.from = from;
            message.term = term;
            message.index = index;
            message.log_term = log_term;
            message.commit = commit;
            message.reject = reject;
            message.reject_hint = reject_hint;
            message.set_entries(
                entries
                    .iter()
                    .map(|&(term, index)| crate::wire::EntryRecord { term, index, data: vec![], context: vec![] }.to_raft())
                    .collect(),
            );
            let bytes = encode_message(&message).unwrap();
            let controller = net.nodes_mut()[target].controller.as_mut().unwrap();
            let _ = controller.step(&bytes);
        }
    }
}
