//! [`ClusterConfig`]: the replicated state machine — committed members and,
//! per partition, the owner, its epoch and its in-sync replica set.
//!
//! Pure and deterministic: every controller applies the same committed
//! commands in the same order and reaches the same value. Its snapshot (for
//! Raft log compaction) is a version byte plus postcard of the whole value.
//!
//! Invariants, asserted after every apply in debug builds and checked by
//! [`ClusterConfig::check_invariants`]: an owner is in its ISR; every ISR
//! member is a committed member (so no removed or replaced incarnation);
//! no ISR repeats a member; epochs never decrease and each epoch has at most
//! one owner (an epoch only rises through `Elect`, which sets the owner).

use std::collections::{BTreeMap, BTreeSet};

use eddy_cluster::NodeId;
use eddy_core::{Epoch, PartitionId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::{Command, Rejection};
use crate::member::{Member, MemberId, MemberInfo, RaftId};

/// Version byte in front of an encoded [`ClusterConfig`] (Raft snapshots).
pub const CONFIG_VERSION: u8 = 3;

/// The previous snapshot version, without draining members: still decoded
/// (a voter's Raft log written by the previous release restores).
const CONFIG_VERSION_UNDRAINED: u8 = 2;

/// Most members a configuration holds; a `Join` beyond is rejected. Far above
/// the cluster sizes measured (docs/CLUSTER_SCALE.md) while keeping a
/// snapshot and a placement computation bounded.
pub const MAX_MEMBERS: usize = 4096;

/// Most partitions a configuration holds (the ring and the table are sized
/// by it).
pub const MAX_PARTITIONS: u32 = 1 << 16;

/// Who owns a partition and which members hold an in-sync copy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assignment {
    /// The owner at `epoch`; `None` before the first election, and after the
    /// owner was removed until a new one is elected from the ISR.
    pub owner: Option<MemberId>,
    /// Rises by one with every election; 0 before the first.
    pub epoch: Epoch,
    /// Members holding every acknowledged write of the partition, owner
    /// included. Empty only before the first election, or once every holder
    /// was removed (then the partition is offline).
    pub isr: Vec<MemberId>,
    /// Rises with every change of `owner`, `epoch` or `isr`. A `SetIsr`
    /// names the version it was computed from and is rejected at any
    /// other, so an owner that proposed an expansion knows, once a later
    /// version is committed, that the stale proposal can never apply.
    pub version: u64,
}

impl Assignment {
    /// Whether the ISR is still the partition's first one, set before any
    /// owner (`SetIsr` at epoch 0), changed since by elections only: every
    /// command that changes an assignment raises `version` by one, an
    /// election raises `epoch` by one too, so one change more than the
    /// elections is that first `SetIsr`. A member without a copy in such an
    /// ISR has confirmed nothing, so nothing was acknowledged.
    pub fn is_first_isr(&self) -> bool {
        !self.isr.is_empty() && self.version == self.epoch.0.saturating_add(1)
    }
}

/// The committed cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    cluster_id: u64,
    replication: u8,
    members: BTreeMap<NodeId, Member>,
    assignments: Vec<Assignment>,
    /// Members leaving gracefully: out of the ring placement, so their
    /// copies are re-placed on the others before they stop, while they
    /// stay live and in sync meanwhile (`Command::SetDraining`).
    draining: BTreeSet<MemberId>,
}

/// [`ClusterConfig`] as [`CONFIG_VERSION_UNDRAINED`] encoded it.
#[derive(Deserialize)]
struct UndrainedConfig {
    cluster_id: u64,
    replication: u8,
    members: BTreeMap<NodeId, Member>,
    assignments: Vec<Assignment>,
}

/// A configuration violates an invariant (a bug in this crate, or a
/// corrupted snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvariantViolation {
    /// The owner of a partition is not in its ISR.
    #[error("partition {0:?}: owner not in the ISR")]
    OwnerOutsideIsr(PartitionId),
    /// An ISR names a member that is not committed.
    #[error("partition {0:?}: ISR member {1} is not a member")]
    IsrNotMember(PartitionId, MemberId),
    /// An ISR repeats a member.
    #[error("partition {0:?}: ISR repeats a member")]
    IsrDuplicate(PartitionId),
    /// A member is stored under another name.
    #[error("member {0} stored under another name")]
    MisfiledMember(MemberId),
    /// A draining member is not a member.
    #[error("draining {0} is not a member")]
    DrainingNotMember(MemberId),
    /// A partition has an owner at epoch 0.
    #[error("partition {0:?}: owner at epoch 0")]
    OwnerAtEpochZero(PartitionId),
}

/// Decoding a configuration snapshot failed; nothing changed.
#[derive(Debug, Error)]
pub enum ConfigDecodeError {
    /// Empty snapshot data.
    #[error("empty configuration snapshot")]
    Empty,
    /// The version byte is not [`CONFIG_VERSION`].
    #[error("configuration version {0} is not {CONFIG_VERSION}")]
    Version(u8),
    /// The body is not a postcard [`ClusterConfig`].
    #[error("configuration body: {0}")]
    Body(postcard::Error),
    /// It decoded but breaks an invariant or a bound.
    #[error("configuration is inconsistent: {0}")]
    Invalid(String),
}

impl ClusterConfig {
    /// The configuration a cluster is bootstrapped with: `voters` are its
    /// members (and the Raft group's voters), `partitions` shards none of
    /// which has an owner yet. `partitions` is clamped to
    /// `1..=MAX_PARTITIONS`, `replication` to at least 1.
    pub fn bootstrap(
        cluster_id: u64,
        partitions: u32,
        replication: u8,
        voters: &[(MemberId, MemberInfo)],
    ) -> ClusterConfig {
        let members = voters
            .iter()
            .map(|(id, info)| {
                let member = Member {
                    id: id.clone(),
                    info: info.clone(),
                    voter: true,
                };
                (id.name.clone(), member)
            })
            .collect();
        ClusterConfig {
            cluster_id,
            replication: replication.max(1),
            members,
            assignments: vec![Assignment::default(); partitions.clamp(1, MAX_PARTITIONS) as usize],
            draining: BTreeSet::new(),
        }
    }

    /// Identifies the cluster (chosen at bootstrap).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Partition count `P`.
    pub fn partitions(&self) -> u32 {
        // assignments.len() <= MAX_PARTITIONS (bootstrap clamps, decode checks).
        u32::try_from(self.assignments.len()).unwrap_or(MAX_PARTITIONS)
    }

    /// Replication factor asked for.
    pub fn replication(&self) -> u8 {
        self.replication
    }

    /// Committed members by name (one incarnation per name).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The committed member named `name`.
    pub fn member_named(&self, name: &NodeId) -> Option<&Member> {
        self.members.get(name)
    }

    /// Whether `id` is leaving gracefully (`Command::SetDraining`).
    pub fn is_draining(&self, id: &MemberId) -> bool {
        self.draining.contains(id)
    }

    /// Committed members not draining: those the ring places copies on.
    pub fn staying_members(&self) -> impl Iterator<Item = &Member> {
        self.members
            .values()
            .filter(|m| !self.draining.contains(&m.id))
    }

    /// Whether `id` (this exact incarnation) is a committed member.
    pub fn is_member(&self, id: &MemberId) -> bool {
        self.members.get(&id.name).is_some_and(|m| &m.id == id)
    }

    /// The member whose Raft id is `raft_id`.
    pub fn member_by_raft_id(&self, raft_id: RaftId) -> Option<&Member> {
        self.members.values().find(|m| m.id.raft_id() == raft_id)
    }

    /// How many partitions count on `member`: it owns them or is in
    /// their ISR. A leaving member waits for this to reach 0 (its copies
    /// re-placed) before it stops.
    pub fn partitions_held_by(&self, member: &MemberId) -> usize {
        self.assignments
            .iter()
            .filter(|a| a.owner.as_ref() == Some(member) || a.isr.contains(member))
            .count()
    }

    /// The assignment of `partition`.
    pub fn assignment(&self, partition: PartitionId) -> Option<&Assignment> {
        self.assignments.get(partition.0 as usize)
    }

    /// All assignments, partition `p` at index `p`.
    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }

    /// Applies `command`, or leaves the configuration unchanged and says why.
    pub fn apply(&mut self, command: &Command) -> Result<(), Rejection> {
        let result = match command {
            Command::Join { member, info } => self.join(member, info),
            Command::Remove { member } => self.remove(member),
            Command::Elect {
                partition,
                owner,
                epoch,
            } => self.elect(*partition, owner, *epoch),
            Command::SetIsr {
                partition,
                epoch,
                version,
                isr,
            } => self.set_isr(*partition, *epoch, *version, isr),
            Command::SetDraining { member, draining } => self.set_draining(member, *draining),
        };
        // Per partition command only its partition is checked: the full
        // check costs a member lookup per ISR entry of every partition, and
        // a churning cluster applies thousands of these commands.
        debug_assert_eq!(
            match command {
                Command::Elect { partition, .. } | Command::SetIsr { partition, .. } => {
                    self.check_partition(*partition)
                }
                _ => self.check_invariants(),
            },
            Ok(()),
            "after {command:?}"
        );
        result
    }

    fn join(&mut self, joining: &MemberId, info: &MemberInfo) -> Result<(), Rejection> {
        if let Some(existing) = self
            .members
            .values()
            .find(|m| m.id.name != joining.name && m.id.raft_id() == joining.raft_id())
        {
            return Err(Rejection::RaftIdCollision {
                joining: joining.clone(),
                existing: existing.id.clone(),
            });
        }
        match self.members.get(&joining.name) {
            Some(current) if current.id == *joining => {
                return Err(Rejection::AlreadyMember(joining.clone()));
            }
            Some(current) if current.id.incarnation > joining.incarnation => {
                return Err(Rejection::StaleIncarnation {
                    joining: joining.clone(),
                    current: current.id.clone(),
                });
            }
            Some(current) => {
                // A higher incarnation: the old one lost its data, so it holds
                // no copy and owns nothing any more.
                let old = current.id.clone();
                self.forget_copies(&old);
            }
            None if self.members.len() >= MAX_MEMBERS => {
                return Err(Rejection::TooManyMembers(self.members.len()));
            }
            None => {}
        }
        self.members.insert(
            joining.name.clone(),
            Member {
                id: joining.clone(),
                info: info.clone(),
                // A new incarnation never votes as its old self; making it a
                // voter takes a Raft configuration change.
                voter: false,
            },
        );
        Ok(())
    }

    fn set_draining(&mut self, member: &MemberId, draining: bool) -> Result<(), Rejection> {
        if !self.is_member(member) {
            return Err(Rejection::UnknownMember(member.clone()));
        }
        if draining {
            self.draining.insert(member.clone());
        } else {
            self.draining.remove(member);
        }
        Ok(())
    }

    fn remove(&mut self, member: &MemberId) -> Result<(), Rejection> {
        match self.members.get(&member.name) {
            Some(current) if current.id == *member => {
                if current.voter {
                    return Err(Rejection::IsVoter(member.clone()));
                }
            }
            _ => return Err(Rejection::UnknownMember(member.clone())),
        }
        self.forget_copies(member);
        self.members.remove(&member.name);
        Ok(())
    }

    /// Drops `member` from every ISR and ownership. Epochs stay: the next
    /// owner is elected at epoch + 1 from what is left of the ISR, and a
    /// partition whose ISR became empty stays ownerless (offline) instead of
    /// restarting empty elsewhere (Kafka's unclean leader election, off).
    fn forget_copies(&mut self, member: &MemberId) {
        self.draining.remove(member);
        for assignment in &mut self.assignments {
            let before = (assignment.isr.len(), assignment.owner.is_some());
            assignment.isr.retain(|m| m != member);
            if assignment.owner.as_ref() == Some(member) {
                assignment.owner = None;
            }
            if before != (assignment.isr.len(), assignment.owner.is_some()) {
                assignment.version += 1;
            }
        }
    }

    fn elect(
        &mut self,
        partition: PartitionId,
        owner: &MemberId,
        epoch: Epoch,
    ) -> Result<(), Rejection> {
        let is_member = self.is_member(owner);
        let assignment = self
            .assignments
            .get_mut(partition.0 as usize)
            .ok_or(Rejection::UnknownPartition(partition))?;
        if epoch.0 != assignment.epoch.0.saturating_add(1) {
            return Err(Rejection::WrongEpoch {
                given: epoch,
                current: assignment.epoch,
            });
        }
        if !is_member {
            return Err(Rejection::UnknownMember(owner.clone()));
        }
        if assignment.isr.is_empty() {
            if assignment.epoch != Epoch(0) {
                return Err(Rejection::Offline(partition));
            }
            // Never held data: any member may start it empty.
            assignment.isr.push(owner.clone());
        } else if !assignment.isr.contains(owner) {
            return Err(Rejection::NotInIsr(owner.clone()));
        }
        debug_assert!(epoch > assignment.epoch, "epochs only rise");
        assignment.owner = Some(owner.clone());
        assignment.epoch = epoch;
        assignment.version += 1;
        Ok(())
    }

    fn set_isr(
        &mut self,
        partition: PartitionId,
        epoch: Epoch,
        version: u64,
        isr: &[MemberId],
    ) -> Result<(), Rejection> {
        let unknown = isr.iter().find(|m| !self.is_member(m)).cloned();
        let assignment = self
            .assignments
            .get_mut(partition.0 as usize)
            .ok_or(Rejection::UnknownPartition(partition))?;
        if epoch != assignment.epoch {
            return Err(Rejection::WrongEpoch {
                given: epoch,
                current: assignment.epoch,
            });
        }
        if let Some(unknown) = unknown {
            return Err(Rejection::UnknownMember(unknown));
        }
        let repeats = isr.iter().enumerate().any(|(i, m)| isr[..i].contains(m));
        match assignment.owner.clone() {
            Some(owner) if repeats || !isr.contains(&owner) => {
                return Err(Rejection::BadIsr { owner });
            }
            Some(_) => {}
            // A partition that never held data may name its ISR before its
            // first owner: every copy of nothing is complete, and the
            // first owner is then elected from it with its backups already
            // in sync.
            None if assignment.epoch == Epoch(0) && !repeats && !isr.is_empty() => {}
            None => return Err(Rejection::NoOwner(partition)),
        }
        if version != assignment.version {
            return Err(Rejection::WrongVersion {
                given: version,
                current: assignment.version,
            });
        }
        assignment.isr = isr.to_vec();
        assignment.version += 1;
        Ok(())
    }

    /// Checks every invariant of the module doc that a single value can show
    /// (epoch monotonicity is a property of histories; tests check it).
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        for (name, member) in &self.members {
            if &member.id.name != name {
                return Err(InvariantViolation::MisfiledMember(member.id.clone()));
            }
        }
        if let Some(stranger) = self.draining.iter().find(|m| !self.is_member(m)) {
            return Err(InvariantViolation::DrainingNotMember(stranger.clone()));
        }
        (0..self.assignments.len()).try_for_each(|index| {
            self.check_partition(PartitionId(u32::try_from(index).unwrap_or(u32::MAX)))
        })
    }

    /// The invariants of one partition's assignment: its ISR holds
    /// distinct members, its owner is in it at an epoch above 0.
    fn check_partition(&self, partition: PartitionId) -> Result<(), InvariantViolation> {
        let Some(assignment) = self.assignment(partition) else {
            return Ok(());
        };
        for (i, member) in assignment.isr.iter().enumerate() {
            if !self.is_member(member) {
                return Err(InvariantViolation::IsrNotMember(partition, member.clone()));
            }
            if assignment.isr[..i].contains(member) {
                return Err(InvariantViolation::IsrDuplicate(partition));
            }
        }
        if let Some(owner) = &assignment.owner {
            if !assignment.isr.contains(owner) {
                return Err(InvariantViolation::OwnerOutsideIsr(partition));
            }
            if assignment.epoch == Epoch(0) {
                return Err(InvariantViolation::OwnerAtEpochZero(partition));
            }
        }
        Ok(())
    }

    /// The snapshot bytes: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising maps, vectors, strings and integers into a Vec cannot
        // fail (postcard errors only on full fixed buffers and unsized seqs).
        postcard::to_extend(self, vec![CONFIG_VERSION]).unwrap_or_default()
    }

    /// Decodes and validates snapshot bytes (they may come from the network).
    pub fn decode(bytes: &[u8]) -> Result<ClusterConfig, ConfigDecodeError> {
        let (&version, body) = bytes.split_first().ok_or(ConfigDecodeError::Empty)?;
        let config: ClusterConfig = match version {
            CONFIG_VERSION => postcard::from_bytes(body).map_err(ConfigDecodeError::Body)?,
            CONFIG_VERSION_UNDRAINED => {
                let old: UndrainedConfig =
                    postcard::from_bytes(body).map_err(ConfigDecodeError::Body)?;
                ClusterConfig {
                    cluster_id: old.cluster_id,
                    replication: old.replication,
                    members: old.members,
                    assignments: old.assignments,
                    draining: BTreeSet::new(),
                }
            }
            other => return Err(ConfigDecodeError::Version(other)),
        };
        if config.assignments.is_empty()
            || config.assignments.len() > MAX_PARTITIONS as usize
            || config.members.len() > MAX_MEMBERS
        {
            return Err(ConfigDecodeError::Invalid(format!(
                "{} partitions, {} members",
                config.assignments.len(),
                config.members.len()
            )));
        }
        config
            .check_invariants()
            .map_err(|e| ConfigDecodeError::Invalid(e.to_string()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;

    fn info(port: u16) -> MemberInfo {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        MemberInfo {
            peer_addr: addr,
            http_addr: addr,
            tcp_addr: addr,
        }
    }

    fn id(name: &str, incarnation: u64) -> MemberId {
        MemberId::new(name, incarnation)
    }

    /// Voters v0..v2 (incarnation 1), 4 partitions, rf 2.
    fn config() -> ClusterConfig {
        let voters: Vec<_> = (0..3u16)
            .map(|i| (id(&format!("v{i}"), 1), info(7000 + i)))
            .collect();
        ClusterConfig::bootstrap(42, 4, 2, &voters)
    }

    #[test]
    fn the_first_isr_lasts_through_elections_and_ends_with_any_other_change() {
        let mut c = config();
        let p = PartitionId(0);
        let first = |c: &ClusterConfig| c.assignment(p).is_some_and(Assignment::is_first_isr);
        assert!(!first(&c), "no ISR yet");
        let (a, b) = (id("v0", 1), id("v1", 1));
        let set = |c: &mut ClusterConfig, isr: Vec<MemberId>| {
            let (epoch, version) = c.assignment(p).map(|x| (x.epoch, x.version)).unwrap();
            c.apply(&Command::SetIsr {
                partition: p,
                epoch,
                version,
                isr,
            })
        };
        set(&mut c, vec![a.clone(), b.clone()]).unwrap();
        assert!(first(&c));
        elect(&mut c, 0, &a, 1).unwrap();
        elect(&mut c, 0, &b, 2).unwrap();
        assert!(first(&c), "elections keep it the first");
        set(&mut c, vec![b.clone()]).unwrap();
        assert!(!first(&c), "a shrink ends it");
        set(&mut c, vec![b.clone(), a.clone()]).unwrap();
        assert!(!first(&c), "nor does an expansion bring it back");
    }

    fn join(config: &mut ClusterConfig, name: &str, incarnation: u64) -> Result<(), Rejection> {
        config.apply(&Command::Join {
            member: id(name, incarnation),
            info: info(9000),
        })
    }

    fn elect(
        config: &mut ClusterConfig,
        p: u32,
        owner: &MemberId,
        epoch: u64,
    ) -> Result<(), Rejection> {
        config.apply(&Command::Elect {
            partition: PartitionId(p),
            owner: owner.clone(),
            epoch: Epoch(epoch),
        })
    }

    fn set_isr(
        config: &mut ClusterConfig,
        p: u32,
        epoch: u64,
        isr: &[MemberId],
    ) -> Result<(), Rejection> {
        let version = config.assignment(PartitionId(p)).map_or(0, |a| a.version);
        config.apply(&Command::SetIsr {
            partition: PartitionId(p),
            epoch: Epoch(epoch),
            version,
            isr: isr.to_vec(),
        })
    }

    #[test]
    fn bootstrap_makes_voters_members_and_partitions_unowned() {
        let config = config();
        assert_eq!(config.partitions(), 4);
        assert_eq!(config.members().count(), 3);
        assert!(config.members().all(|m| m.voter));
        assert!(
            config
                .assignments()
                .iter()
                .all(|a| a.owner.is_none() && a.epoch == Epoch(0))
        );
        assert_eq!(config.check_invariants(), Ok(()));
    }

    #[test]
    fn join_adds_and_replaces_only_a_higher_incarnation() {
        let mut config = config();
        assert_eq!(join(&mut config, "n", 5), Ok(()));
        assert!(
            !config
                .member_named(&NodeId::new("n"))
                .is_some_and(|m| m.voter)
        );
        assert_eq!(
            join(&mut config, "n", 5),
            Err(Rejection::AlreadyMember(id("n", 5)))
        );
        assert_eq!(
            join(&mut config, "n", 4),
            Err(Rejection::StaleIncarnation {
                joining: id("n", 4),
                current: id("n", 5)
            })
        );
        // n#5 owns partition 0 with v0 in sync.
        elect(&mut config, 0, &id("n", 5), 1).unwrap();
        set_isr(&mut config, 0, 1, &[id("n", 5), id("v0", 1)]).unwrap();
        // n lost its data: n#6 replaces it, and holds nothing.
        assert_eq!(join(&mut config, "n", 6), Ok(()));
        assert!(config.is_member(&id("n", 6)));
        assert!(!config.is_member(&id("n", 5)));
        let a = config.assignment(PartitionId(0)).unwrap();
        assert_eq!(a.owner, None);
        assert_eq!(a.isr, vec![id("v0", 1)]);
        assert_eq!(
            a.epoch,
            Epoch(1),
            "removal does not bump; the next Elect does"
        );
    }

    #[test]
    fn a_wiped_voter_rejoins_as_a_non_voter() {
        let mut config = config();
        assert_eq!(join(&mut config, "v1", 2), Ok(()));
        let member = config.member_named(&NodeId::new("v1")).unwrap();
        assert_eq!(member.id, id("v1", 2));
        assert!(!member.voter);
    }

    #[test]
    fn remove_forgets_copies_refuses_voters_and_unknown_incarnations() {
        let mut config = config();
        join(&mut config, "n", 1).unwrap();
        elect(&mut config, 1, &id("n", 1), 1).unwrap();
        set_isr(&mut config, 1, 1, &[id("n", 1), id("v2", 1)]).unwrap();
        let remove = |m: MemberId| Command::Remove { member: m };
        assert_eq!(
            config.apply(&remove(id("n", 2))),
            Err(Rejection::UnknownMember(id("n", 2)))
        );
        assert_eq!(
            config.apply(&remove(id("v0", 1))),
            Err(Rejection::IsVoter(id("v0", 1)))
        );
        assert_eq!(config.apply(&remove(id("n", 1))), Ok(()));
        assert!(config.member_named(&NodeId::new("n")).is_none());
        let a = config.assignment(PartitionId(1)).unwrap();
        assert_eq!((a.owner.clone(), a.isr.clone()), (None, vec![id("v2", 1)]));
    }

    #[test]
    fn elect_needs_the_next_epoch_and_an_isr_member() {
        let mut config = config();
        let v0 = id("v0", 1);
        let v1 = id("v1", 1);
        assert_eq!(
            elect(&mut config, 0, &v0, 2),
            Err(Rejection::WrongEpoch {
                given: Epoch(2),
                current: Epoch(0)
            })
        );
        assert_eq!(
            elect(&mut config, 9, &v0, 1),
            Err(Rejection::UnknownPartition(PartitionId(9)))
        );
        assert_eq!(
            elect(&mut config, 0, &id("x", 1), 1),
            Err(Rejection::UnknownMember(id("x", 1)))
        );
        // A fresh partition may start on anyone; its ISR becomes the owner.
        assert_eq!(elect(&mut config, 0, &v0, 1), Ok(()));
        assert_eq!(
            config.assignment(PartitionId(0)).unwrap().isr,
            vec![v0.clone()]
        );
        // Later only from the ISR.
        assert_eq!(
            elect(&mut config, 0, &v1, 2),
            Err(Rejection::NotInIsr(v1.clone()))
        );
        set_isr(&mut config, 0, 1, &[v0.clone(), v1.clone()]).unwrap();
        assert_eq!(elect(&mut config, 0, &v1, 2), Ok(()));
        let a = config.assignment(PartitionId(0)).unwrap();
        assert_eq!((a.owner.as_ref(), a.epoch), (Some(&v1), Epoch(2)));
    }

    #[test]
    fn a_partition_whose_isr_emptied_stays_offline() {
        let mut config = config();
        join(&mut config, "n", 1).unwrap();
        elect(&mut config, 2, &id("n", 1), 1).unwrap();
        config
            .apply(&Command::Remove { member: id("n", 1) })
            .unwrap();
        assert_eq!(
            elect(&mut config, 2, &id("v0", 1), 2),
            Err(Rejection::Offline(PartitionId(2)))
        );
        let a = config.assignment(PartitionId(2)).unwrap();
        assert_eq!(
            (a.owner.as_ref(), a.epoch, a.isr.len()),
            (None, Epoch(1), 0)
        );
    }

    #[test]
    fn set_isr_needs_the_current_epoch_the_owner_and_members() {
        let mut config = config();
        let (v0, v1) = (id("v0", 1), id("v1", 1));
        assert_eq!(
            set_isr(&mut config, 0, 0, &[]),
            Err(Rejection::NoOwner(PartitionId(0))),
            "a never-owned partition may name its ISR, not an empty one"
        );
        assert_eq!(
            set_isr(&mut config, 0, 0, &[v0.clone(), v1.clone()]),
            Ok(()),
            "before its first owner: its backups in sync from the start"
        );
        assert_eq!(
            elect(&mut config, 0, &id("v2", 1), 1),
            Err(Rejection::NotInIsr(id("v2", 1)))
        );
        elect(&mut config, 0, &v0, 1).unwrap();
        assert_eq!(
            set_isr(&mut config, 0, 0, std::slice::from_ref(&v0)),
            Err(Rejection::WrongEpoch {
                given: Epoch(0),
                current: Epoch(1)
            })
        );
        assert_eq!(
            set_isr(&mut config, 0, 1, std::slice::from_ref(&v1)),
            Err(Rejection::BadIsr { owner: v0.clone() })
        );
        assert_eq!(
            set_isr(&mut config, 0, 1, &[v0.clone(), v0.clone()]),
            Err(Rejection::BadIsr { owner: v0.clone() })
        );
        assert_eq!(
            set_isr(&mut config, 0, 1, &[v0.clone(), id("x", 1)]),
            Err(Rejection::UnknownMember(id("x", 1)))
        );
        assert_eq!(
            set_isr(&mut config, 0, 1, &[v1.clone(), v0.clone()]),
            Ok(())
        );
    }

    #[test]
    fn rejected_commands_change_nothing() {
        let mut config = config();
        let before = config.clone();
        assert!(elect(&mut config, 0, &id("v0", 1), 3).is_err());
        assert!(join(&mut config, "v0", 1).is_err());
        assert_eq!(config, before);
    }

    #[test]
    fn snapshot_round_trips_and_refuses_garbage() {
        let mut config = config();
        elect(&mut config, 3, &id("v2", 1), 1).unwrap();
        let bytes = config.encode();
        assert_eq!(ClusterConfig::decode(&bytes).unwrap(), config);
        assert!(matches!(
            ClusterConfig::decode(&[]),
            Err(ConfigDecodeError::Empty)
        ));
        assert!(matches!(
            ClusterConfig::decode(&[7, 1, 2]),
            Err(ConfigDecodeError::Version(7))
        ));
        assert!(matches!(
            ClusterConfig::decode(&bytes[..bytes.len() / 2]),
            Err(ConfigDecodeError::Body(_))
        ));
    }

    #[test]
    fn draining_is_kept_in_snapshots_and_a_snapshot_from_before_it_still_decodes() {
        let mut config = config();
        let leaving = drain(&id("v1", 1));
        assert_eq!(config.apply(&leaving), Ok(()));
        assert!(config.is_draining(&id("v1", 1)));
        assert_eq!(config.staying_members().count(), 2);
        assert_eq!(
            config.apply(&drain(&id("v9", 1))),
            Err(Rejection::UnknownMember(id("v9", 1)))
        );
        assert_eq!(ClusterConfig::decode(&config.encode()).unwrap(), config);
        // The previous version's layout: the same fields, none for draining.
        #[derive(Serialize)]
        struct Undrained<'a> {
            cluster_id: u64,
            replication: u8,
            members: &'a BTreeMap<NodeId, Member>,
            assignments: &'a [Assignment],
        }
        let old = Undrained {
            cluster_id: config.cluster_id,
            replication: config.replication,
            members: &config.members,
            assignments: &config.assignments,
        };
        let bytes = postcard::to_extend(&old, vec![CONFIG_VERSION_UNDRAINED]).unwrap();
        let decoded = ClusterConfig::decode(&bytes).unwrap();
        assert!(!decoded.is_draining(&id("v1", 1)));
        assert_eq!(decoded.members, config.members);
        // A new incarnation of a draining member is not draining.
        join(&mut config, "v1", 2).unwrap();
        assert_eq!(config.staying_members().count(), 3);
    }

    fn drain(member: &MemberId) -> Command {
        Command::SetDraining {
            member: member.clone(),
            draining: true,
        }
    }

    fn arb_member() -> impl Strategy<Value = MemberId> {
        (0..6u8, 1..4u64).prop_map(|(n, inc)| id(&format!("m{n}"), inc))
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            arb_member().prop_map(|member| Command::Join {
                member,
                info: info(1)
            }),
            arb_member().prop_map(|member| Command::Remove { member }),
            (0..5u32, arb_member(), 0..5u64).prop_map(|(p, owner, e)| Command::Elect {
                partition: PartitionId(p),
                owner,
                epoch: Epoch(e),
            }),
            (
                0..5u32,
                0..5u64,
                0..6u64,
                proptest::collection::vec(arb_member(), 0..4)
            )
                .prop_map(|(p, e, v, isr)| Command::SetIsr {
                    partition: PartitionId(p),
                    epoch: Epoch(e),
                    version: v,
                    isr
                }),
        ]
    }

    proptest! {
        /// Any command sequence keeps the invariants, never lowers an epoch,
        /// never gives one (partition, epoch) two owners, rejections change
        /// nothing, and the snapshot of every state decodes to that state.
        #[test]
        fn invariants_hold_for_any_command_sequence(
            commands in proptest::collection::vec(arb_command(), 0..80)
        ) {
            let mut config = ClusterConfig::bootstrap(1, 4, 2, &[(id("m0", 1), info(1))]);
            let mut owners: BTreeMap<(u32, u64), MemberId> = BTreeMap::new();
            for command in &commands {
                let before = config.clone();
                let outcome = config.apply(command);
                prop_assert_eq!(config.check_invariants(), Ok(()));
                if outcome.is_err() {
                    prop_assert_eq!(&config, &before);
                }
                for (p, (old, new)) in before.assignments().iter().zip(config.assignments()).enumerate() {
                    prop_assert!(new.epoch >= old.epoch);
                    if let Some(owner) = &new.owner {
                        let first = owners.entry((p as u32, new.epoch.0)).or_insert_with(|| owner.clone());
                        prop_assert_eq!(&*first, owner);
                    }
                }
                prop_assert_eq!(ClusterConfig::decode(&config.encode()).unwrap(), config.clone());
            }
        }
    }
}
