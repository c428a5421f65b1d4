//! The commands the controller agrees on, their rejections, and their
//! encoding inside Raft log entries.
//!
//! A command is validated when it is *applied*, not when it is proposed: two
//! proposals may race, and only the committed order decides which one finds
//! the state it expects. A rejected command is still a committed entry (a
//! no-op); every node computes the same [`Rejection`], so the proposer learns
//! it by matching the [`ProposalTag`] it got from `Controller::propose`.
//!
//! Entry layout: `COMMAND_VERSION` byte, then postcard of [`Proposal`]. A
//! decoder refuses any other version instead of guessing (STYLE §10); the
//! Raft log's own checksums are the driver's storage concern.

use eddy_core::{Epoch, PartitionId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::member::{MemberId, MemberInfo, RaftId};

/// Version byte in front of every encoded command entry.
pub const COMMAND_VERSION: u8 = 2;

/// Largest encoded command accepted, in bytes. `SetIsr` of a few members and
/// a `Join` with three addresses take well under 1 KiB; the bound keeps a
/// hostile or corrupted entry from allocating much.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// A change to the cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add `member`; a known name with a higher incarnation replaces the old
    /// incarnation (which lost its data: removed from every ISR and owner).
    Join {
        /// The new member.
        member: MemberId,
        /// Its addresses.
        info: MemberInfo,
    },
    /// Remove `member` (graceful leave, or forget-down of a dead node) from
    /// the members, every ISR and every ownership.
    Remove {
        /// The exact incarnation to remove.
        member: MemberId,
    },
    /// Make `owner` the owner of `partition` at `epoch` (the current epoch
    /// plus one), choosing it from the in-sync replicas.
    Elect {
        /// The partition.
        partition: PartitionId,
        /// The new owner, a member of the partition's ISR.
        owner: MemberId,
        /// The new epoch: the current one plus one.
        epoch: Epoch,
    },
    /// Replace the in-sync replica set of `partition` at its current `epoch`
    /// (shrink before acknowledging without a backup; expand once a new
    /// replica caught up).
    SetIsr {
        /// The partition.
        partition: PartitionId,
        /// The partition's current epoch (a stale owner's request fails).
        epoch: Epoch,
        /// The assignment's `version` this was computed from: rejected at
        /// any other, so a delayed proposal never undoes a later change.
        version: u64,
        /// The new ISR, containing the owner.
        isr: Vec<MemberId>,
    },
    /// Mark `member` leaving gracefully (or back, `draining: false`): the
    /// ring places nothing on a draining member, so the planner moves its
    /// ownerships and copies to the others while it still serves as a
    /// backup; it stops once no partition counts on it. Appended last, so
    /// entries of the earlier variants decode as before.
    SetDraining {
        /// The exact incarnation.
        member: MemberId,
        /// Leaving (`true`) or staying again.
        draining: bool,
    },
}

/// Identifies one proposal, so the proposer can find its outcome among the
/// applied commands: the proposer's Raft id and a sequence number it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalTag {
    /// Raft id of the controller that proposed.
    pub proposer: RaftId,
    /// Per-proposer sequence number (restarts at 0 with the process; with the
    /// index of the entry it stays unambiguous for matching fresh proposals).
    pub seq: u64,
}

/// What a log entry carries: a command and who proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Who proposed.
    pub tag: ProposalTag,
    /// What.
    pub command: Command,
}

/// Why an applied command changed nothing. Every node computes the same one.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum Rejection {
    /// The entry could not be decoded (not written by this version).
    #[error("entry is not a command of version {COMMAND_VERSION}")]
    Malformed,
    /// `Join` of an incarnation that is already the member.
    #[error("{0} is already a member")]
    AlreadyMember(MemberId),
    /// `Join` of an incarnation older than the known one of that name.
    #[error("{joining} is older than the member {current}")]
    StaleIncarnation {
        /// The refused incarnation.
        joining: MemberId,
        /// The current incarnation of that name.
        current: MemberId,
    },
    /// `Join` whose Raft id equals another member's.
    #[error("{joining} has the Raft id of member {existing}")]
    RaftIdCollision {
        /// The refused member.
        joining: MemberId,
        /// The member that has the id.
        existing: MemberId,
    },
    /// `Join` beyond [`crate::state::MAX_MEMBERS`].
    #[error("the cluster already has {0} members")]
    TooManyMembers(usize),
    /// The command names a member that is not (or no longer) committed.
    #[error("{0} is not a member")]
    UnknownMember(MemberId),
    /// `Remove` of a Raft voter: that needs a Raft configuration change,
    /// which this version does not make.
    #[error("{0} is a Raft voter; voters are not removed by this version")]
    IsVoter(MemberId),
    /// The partition is outside `0..P`.
    #[error("partition {0:?} does not exist")]
    UnknownPartition(PartitionId),
    /// `Elect` with an epoch other than current + 1, or `SetIsr` with an
    /// epoch other than the current one.
    #[error("epoch {given:?} does not follow the current epoch {current:?}")]
    WrongEpoch {
        /// The epoch in the command.
        given: Epoch,
        /// The partition's epoch when the command was applied.
        current: Epoch,
    },
    /// `SetIsr` computed from another version of the assignment.
    #[error("ISR change computed from version {given}, the assignment is at {current}")]
    WrongVersion {
        /// The version in the command.
        given: u64,
        /// The assignment's version when the command was applied.
        current: u64,
    },
    /// `Elect` of a member outside the partition's ISR.
    #[error("{0} is not in the partition's in-sync replica set")]
    NotInIsr(MemberId),
    /// `Elect` of a partition that held data and lost every in-sync replica:
    /// it stays offline rather than being silently emptied.
    #[error("partition {0:?} has no in-sync replica left (offline)")]
    Offline(PartitionId),
    /// `SetIsr` on a partition without an owner.
    #[error("partition {0:?} has no owner")]
    NoOwner(PartitionId),
    /// `SetIsr` whose set lacks the owner or repeats a member.
    #[error("the ISR must contain the owner {owner} once and no member twice")]
    BadIsr {
        /// The partition's owner.
        owner: MemberId,
    },
}

/// Decoding a command entry failed; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandDecodeError {
    /// Empty entry (Raft's own no-op entries are empty and never decoded).
    #[error("empty command entry")]
    Empty,
    /// The entry exceeds [`MAX_COMMAND_BYTES`].
    #[error("command entry of {0} bytes exceeds {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    /// The version byte is not [`COMMAND_VERSION`].
    #[error("command version {0} is not {COMMAND_VERSION}")]
    Version(u8),
    /// The body is not a postcard [`Proposal`].
    #[error("command body: {0}")]
    Body(postcard::Error),
}

impl Proposal {
    /// The entry bytes: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain enums, integers, strings and addresses into a Vec
        // cannot fail: postcard errors only on a full fixed buffer or on
        // types with unknown length, neither of which occurs here.
        postcard::to_extend(self, vec![COMMAND_VERSION]).unwrap_or_default()
    }

    /// Decodes entry bytes written by [`Proposal::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Proposal, CommandDecodeError> {
        let (&version, body) = bytes.split_first().ok_or(CommandDecodeError::Empty)?;
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(CommandDecodeError::TooLarge(bytes.len()));
        }
        if version != COMMAND_VERSION {
            return Err(CommandDecodeError::Version(version));
        }
        postcard::from_bytes(body).map_err(CommandDecodeError::Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> Proposal {
        Proposal {
            tag: ProposalTag {
                proposer: RaftId(9),
                seq: 4,
            },
            command: Command::SetIsr {
                partition: PartitionId(3),
                epoch: Epoch(2),
                version: 5,
                isr: vec![MemberId::new("a", 1), MemberId::new("b", 7)],
            },
        }
    }

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let bytes = proposal().encode();
        assert_eq!(bytes[0], COMMAND_VERSION);
        assert_eq!(Proposal::decode(&bytes), Ok(proposal()));
        let mut other = bytes.clone();
        other[0] = COMMAND_VERSION + 1;
        assert_eq!(
            Proposal::decode(&other),
            Err(CommandDecodeError::Version(COMMAND_VERSION + 1))
        );
        assert_eq!(Proposal::decode(&[]), Err(CommandDecodeError::Empty));
        assert!(matches!(
            Proposal::decode(&bytes[..bytes.len() - 1]),
            Err(CommandDecodeError::Body(_))
        ));
        let huge = vec![COMMAND_VERSION; MAX_COMMAND_BYTES + 1];
        assert_eq!(
            Proposal::decode(&huge),
            Err(CommandDecodeError::TooLarge(MAX_COMMAND_BYTES + 1))
        );
    }
}
