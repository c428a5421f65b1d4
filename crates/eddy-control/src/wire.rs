//! Our own encoding of Raft's messages and persisted records.
//!
//! raft-rs speaks protobuf (rust-protobuf 2.28), whose parser recurses
//! without bound on crafted unknown fields (RUSTSEC-2024-0437, no fix in
//! 2.x). So no byte from the network or the disk reaches that parser: Raft's
//! types are converted to the plain records below and written as postcard
//! (bounded, no recursion on our types), framed like the rest of eddy
//! (STYLE §10): a version byte, the postcard body, and an xxh3-64 checksum of
//! both. A frame that fails any check is a typed [`WireError`]; nothing is
//! stepped.
//!
//! Only `EntryNormal` entries exist: this version never proposes a Raft
//! configuration change (voters are fixed at bootstrap), so a frame carrying
//! any other entry type is refused rather than half understood.

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

/// Version byte in front of every frame this module writes.
pub const WIRE_VERSION: u8 = 1;

/// Largest frame accepted, in bytes. Raft's `max_size_per_msg` keeps
/// appends far smaller; a snapshot of the configuration is the largest
/// message (members and assignments: about 100 bytes per partition at
/// rf 3, so 65 536 partitions fit).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// A frame could not be read; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than a version byte and a checksum.
    #[error("frame of {0} bytes is truncated")]
    Truncated(usize),
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// Unknown version byte.
    #[error("frame version {0} is not {WIRE_VERSION}")]
    Version(u8),
    /// The checksum does not match the bytes.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The body is not the expected record.
    #[error("frame body: {0}")]
    Body(String),
    /// A Raft message type that never travels between nodes, or unknown.
    #[error("message type {0} is not accepted from the network")]
    MessageType(i32),
    /// An entry type this version does not use (configuration changes).
    #[error("entry type {0} is not used by this version")]
    EntryType(i32),
}

/// Raft's hard state: term, vote and commit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardStateRecord {
    /// Current term.
    pub term: u64,
    /// Raft id voted for in `term` (0: none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

/// The Raft group's voter configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfStateRecord {
    /// Voting Raft ids.
    pub voters: Vec<u64>,
    /// Non-voting Raft ids receiving the log.
    pub learners: Vec<u64>,
    /// Voters of the outgoing half of a joint configuration.
    pub voters_outgoing: Vec<u64>,
    /// Learners to be added when the joint configuration is left.
    pub learners_next: Vec<u64>,
    /// Whether a joint configuration is left automatically.
    pub auto_leave: bool,
}

/// A snapshot: the state machine ([`crate::ClusterConfig`] bytes) as of
/// `index`, which was written in `term`, with the voter configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Last log index the snapshot includes.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Voter configuration at `index`.
    pub conf: ConfStateRecord,
    /// `ClusterConfig::encode` at `index`.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A log entry (always a normal entry: empty for a leader's no-op, else an
/// encoded [`crate::command::Proposal`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Term it was proposed in.
    pub term: u64,
    /// Log index.
    pub index: u64,
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Raft's per-entry context (unused by eddy, kept for fidelity).
    #[serde(with = "serde_bytes")]
    pub context: Vec<u8>,
}

/// A Raft message between two controllers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MessageRecord {
    msg_type: i32,
    to: u64,
    from: u64,
    term: u64,
    log_term: u64,
    index: u64,
    entries: Vec<EntryRecord>,
    commit: u64,
    commit_term: u64,
    snapshot: Option<SnapshotRecord>,
    request_snapshot: u64,
    reject: bool,
    reject_hint: u64,
    #[serde(with = "serde_bytes")]
    context: Vec<u8>,
    priority: i64,
}

/// The message types that travel between controllers. The others are
/// refused from the network: hup, beat, unreachable, snapshot status and
/// check quorum are local to a node, and this version never sends leader
/// transfers or read-index requests (raft-rs indexes into a read-index
/// request's entries unchecked, so accepting one would be a way to panic).
const REMOTE_TYPES: [MessageType; 10] = [
    MessageType::MsgPropose,
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
];

impl From<&HardState> for HardStateRecord {
    fn from(hs: &HardState) -> Self {
        HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        }
    }
}

impl HardStateRecord {
    /// Raft's type.
    pub fn to_raft(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
            ..HardState::default()
        }
    }
}

impl From<&ConfState> for ConfStateRecord {
    fn from(cs: &ConfState) -> Self {
        ConfStateRecord {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }
}

impl ConfStateRecord {
    /// Raft's type.
    pub fn to_raft(&self) -> ConfState {
        ConfState {
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            voters_outgoing: self.voters_outgoing.clone(),
            learners_next: self.learners_next.clone(),
            auto_leave: self.auto_leave,
            ..ConfState::default()
        }
    }
}

impl From<&Snapshot> for SnapshotRecord {
    fn from(snapshot: &Snapshot) -> Self {
        let meta = snapshot.get_metadata();
        SnapshotRecord {
            index: meta.index,
            term: meta.term,
            conf: ConfStateRecord::from(meta.get_conf_state()),
            data: snapshot.data.to_vec(),
        }
    }
}

impl SnapshotRecord {
    /// Raft's type.
    pub fn to_raft(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            data: self.data.clone().into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = self.index;
        meta.term = self.term;
        meta.set_conf_state(self.conf.to_raft());
        snapshot
    }
}

impl From<&Entry> for EntryRecord {
    fn from(entry: &Entry) -> Self {
        // This crate never proposes configuration changes (module doc), and
        // frames carrying them are refused, so every entry is normal.
        debug_assert_eq!(entry.get_entry_type(), EntryType::EntryNormal);
        EntryRecord {
            term: entry.term,
            index: entry.index,
            data: entry.data.to_vec(),
            context: entry.context.to_vec(),
        }
    }
}

impl EntryRecord {
    /// Raft's type.
    pub fn to_raft(&self) -> Entry {
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryNormal);
        entry.term = self.term;
        entry.index = self.index;
        entry.data = self.data.clone().into();
        entry.context = self.context.clone().into();
        entry
    }
}

/// Checks an entry type for [`EntryRecord`] conversion.
fn check_entry(entry: &Entry) -> Result<(), WireError> {
    match entry.get_entry_type() {
        EntryType::EntryNormal => Ok(()),
        other => Err(WireError::EntryType(other as i32)),
    }
}

/// Frames `record`: version byte, postcard, xxh3-64 of both (little endian).
pub fn frame<T: Serialize>(record: &T) -> Vec<u8> {
    // Serialising these plain records into a Vec cannot fail (postcard fails
    // only on full fixed buffers and sequences of unknown length).
    let mut out = postcard::to_extend(record, vec![WIRE_VERSION]).unwrap_or_default();
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Reads a frame written by [`frame`].
pub fn unframe<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let Some(body_len) = bytes.len().checked_sub(8).filter(|&n| n >= 1) else {
        return Err(WireError::Truncated(bytes.len()));
    };
    let (body, sum) = bytes.split_at(body_len);
    let mut sum_bytes = [0u8; 8];
    sum_bytes.copy_from_slice(sum);
    if body[0] != WIRE_VERSION {
        return Err(WireError::Version(body[0]));
    }
    if xxh3_64(body) != u64::from_le_bytes(sum_bytes) {
        return Err(WireError::Checksum);
    }
    postcard::from_bytes(&body[1..]).map_err(|e| WireError::Body(e.to_string()))
}

/// Encodes a Raft message for the peer link.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, WireError> {
    message.get_entries().iter().try_for_each(check_entry)?;
    let record = MessageRecord {
        msg_type: message.get_msg_type() as i32,
        to: message.to,
        from: message.from,
        term: message.term,
        log_term: message.log_term,
        index: message.index,
        entries: message
            .get_entries()
            .iter()
            .map(EntryRecord::from)
            .collect(),
        commit: message.commit,
        commit_term: message.commit_term,
        snapshot: message
            .snapshot
            .as_ref()
            .map(SnapshotRecord::from)
            .filter(|s| s.index > 0),
        request_snapshot: message.request_snapshot,
        reject: message.reject,
        reject_hint: message.reject_hint,
        context: message.context.to_vec(),
        priority: message.priority,
    };
    Ok(frame(&record))
}

/// Decodes a Raft message from the peer link. Refuses local message types
/// and zero ids; the caller checks the recipient and the snapshot's data.
pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    let record: MessageRecord = unframe(bytes)?;
    let msg_type = REMOTE_TYPES
        .iter()
        .copied()
        .find(|t| *t as i32 == record.msg_type)
        .ok_or(WireError::MessageType(record.msg_type))?;
    if record.from == 0 || record.to == 0 {
        return Err(WireError::Body("Raft id 0".to_owned()));
    }
    let mut message = Message::default();
    message.set_msg_type(msg_type);
    message.to = record.to;
    message.from = record.from;
    message.term = record.term;
    message.log_term = record.log_term;
    message.index = record.index;
    message.set_entries(record.entries.iter().map(EntryRecord::to_raft).collect());
    message.commit = record.commit;
    message.commit_term = record.commit_term;
    if let Some(snapshot) = &record.snapshot {
        // The encoder leaves out a snapshot of index 0 (none); one on the
        // wire is not from us. Found by fuzzing: it decoded into a message
        // that does not encode back to itself.
        if snapshot.index == 0 {
            return Err(WireError::Body("snapshot of index 0".to_owned()));
        }
        message.set_snapshot(snapshot.to_raft());
    }
    message.request_snapshot = record.request_snapshot;
    message.reject = record.reject;
    message.reject_hint = record.reject_hint;
    message.context = record.context.into();
    message.priority = record.priority;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append() -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.term = 3;
        m.index = 7;
        m.log_term = 2;
        m.commit = 6;
        m.set_entries(
            vec![
                EntryRecord {
                    term: 3,
                    index: 8,
                    data: vec![1, 2, 3],
                    context: vec![],
                }
                .to_raft(),
            ]
            .into(),
        );
        m
    }

    #[test]
    fn messages_round_trip() {
        let m = append();
        let back = decode_message(&encode_message(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        let mut snap = Message::default();
        snap.set_msg_type(MessageType::MsgSnapshot);
        snap.to = 2;
        snap.from = 1;
        snap.set_snapshot(
            SnapshotRecord {
                index: 9,
                term: 2,
                conf: ConfStateRecord {
                    voters: vec![1, 2, 3],
                    ..ConfStateRecord::default()
                },
                data: vec![1, 9],
            }
            .to_raft(),
        );
        assert_eq!(
            decode_message(&encode_message(&snap).unwrap()).unwrap(),
            snap
        );
    }

    #[test]
    fn damaged_frames_are_typed_errors() {
        let bytes = encode_message(&append()).unwrap();
        assert_eq!(decode_message(&[]), Err(WireError::Truncated(0)));
        assert_eq!(decode_message(&bytes[..5]), Err(WireError::Truncated(5)));
        let mut flipped = bytes.clone();
        flipped[3] ^= 0x40;
        assert_eq!(decode_message(&flipped), Err(WireError::Checksum));
        let mut version = bytes.clone();
        version[0] = 9;
        assert_eq!(decode_message(&version), Err(WireError::Version(9)));
        let huge = vec![WIRE_VERSION; MAX_FRAME_BYTES + 1];
        assert_eq!(
            decode_message(&huge),
            Err(WireError::TooLarge(MAX_FRAME_BYTES + 1))
        );
    }

    /// Found by the `control_frame` fuzz target: a snapshot record of
    /// index 0, which the encoder never writes, decoded into a message that
    /// did not encode back to itself. It is refused.
    #[test]
    fn a_snapshot_of_index_zero_is_refused() {
        let mut record: MessageRecord = unframe(&encode_message(&append()).unwrap()).unwrap();
        record.snapshot = Some(SnapshotRecord {
            index: 0,
            term: 1,
            conf: ConfStateRecord::default(),
            data: vec![1],
        });
        assert_eq!(
            decode_message(&frame(&record)),
            Err(WireError::Body("snapshot of index 0".to_owned()))
        );
    }

    #[test]
    fn local_types_and_conf_changes_are_refused() {
        let mut hup = append();
        hup.set_msg_type(MessageType::MsgHup);
        assert_eq!(
            decode_message(&encode_message(&hup).unwrap()),
            Err(WireError::MessageType(MessageType::MsgHup as i32))
        );
        let mut cc = append();
        cc.mut_entries()[0].set_entry_type(EntryType::EntryConfChangeV2);
        assert_eq!(
            encode_message(&cc),
            Err(WireError::EntryType(EntryType::EntryConfChangeV2 as i32))
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let bytes = encode_message(&append()).unwrap();
        // Every truncation and every single-byte corruption is an error or a
        // message, never a panic.
        for len in 0..bytes.len() {
            let _ = decode_message(&bytes[..len]);
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(decode_message(&damaged).is_err(), "byte {at} bit {bit}");
            }
        }
    }
}
