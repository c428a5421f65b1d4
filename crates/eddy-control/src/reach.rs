//! The peers an owner cannot ship to, and the substitute backups that
//! keeps a partition at two copies.
//!
//! Under [`crate::MinInsync::Auto`] an owner never acknowledges on its copy
//! alone, so a needed backup that does not answer — dead, paused, or behind
//! a cut link while gossip still finds it through a third node — would
//! stall the partition until it answers again. Instead the owner serves by
//! a ring without that peer: the next member clockwise becomes a ring
//! replica outside the ISR, gets the owner's snapshot, and joins the ISR by
//! the usual expansion; then the silent backup can be shrunk out with two
//! copies left. Only the owner's *serving table* changes: the controller's
//! planner keeps the failure detector's ring, so a one-sided cut moves no
//! ownership, and once the peer answers again it rejoins and the planner
//! drops the substitute (planner rule 5).
//!
//! Sans-io: the node reports answers and their absence with `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy_cluster::NodeId;

use crate::member::MemberId;

/// How long a peer stays unreachable after its last unanswered frame. Long
/// enough that a substitute can catch up (a snapshot per partition), short
/// enough that a healed link is tried again soon.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// Peers that left a needed frame unanswered, until when.
#[derive(Debug, Clone, Default)]
pub struct Unreachable {
    until: BTreeMap<NodeId, Instant>,
}

impl Unreachable {
    /// What a frame to `peer` came to: `answered` (whatever it said) makes
    /// it reachable; silence makes it unreachable only while it is
    /// `needed` (a committed or joining ISR member): a catching-up replica
    /// that is slow costs nothing. Returns whether the set changed.
    pub fn heard(&mut self, peer: &NodeId, answered: bool, needed: bool, now: Instant) -> bool {
        match (answered, needed) {
            (true, _) => self.answered(peer),
            (false, true) => self.unanswered(peer, now),
            (false, false) => false,
        }
    }

    /// A needed backup left a frame unanswered at `now`. Returns whether
    /// the set changed.
    pub fn unanswered(&mut self, peer: &NodeId, now: Instant) -> bool {
        self.until
            .insert(peer.clone(), now + UNREACHABLE_FOR)
            .is_none()
    }

    /// `peer` answered (whatever it said): reachable. Returns whether the
    /// set changed.
    pub fn answered(&mut self, peer: &NodeId) -> bool {
        self.until.remove(peer).is_some()
    }

    /// Forgets peers silent for no longer than [`UNREACHABLE_FOR`] before
    /// `now`, to try them again. Returns whether the set changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.until.len();
        self.until.retain(|_, until| *until > now);
        self.until.len() != before
    }

    /// The peers unreachable now.
    pub fn peers(&self) -> BTreeSet<NodeId> {
        self.until.keys().cloned().collect()
    }
}

/// The members a node's serving ring is computed over: `live` (the failure
/// detector's) without the peers it finds `unreachable`, never without
/// itself (`me`).
pub fn serving_members(
    live: &BTreeSet<MemberId>,
    unreachable: &BTreeSet<NodeId>,
    me: &NodeId,
) -> BTreeSet<MemberId> {
    live.iter()
        .filter(|m| m.name == *me || !unreachable.contains(&m.name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;

    use super::*;
    use crate::command::Command;
    use crate::member::MemberInfo;
    use crate::planner::{plan, serving_table, target_table_with_vnodes};
    use crate::state::ClusterConfig;
    use eddy_core::{Epoch, PartitionId};

    fn name(n: &str) -> NodeId {
        NodeId::new(n)
    }

    fn three_voters() -> ClusterConfig {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let info = MemberInfo {
            peer_addr: addr,
            http_addr: addr,
            tcp_addr: addr,
        };
        let voters: Vec<(MemberId, MemberInfo)> = (0..3)
            .map(|i| (MemberId::new(&*format!("node-{i}"), 1), info.clone()))
            .collect();
        ClusterConfig::bootstrap(1, 64, 2, &voters)
    }

    #[test]
    fn a_silent_peer_is_unreachable_until_it_answers_or_the_hold_ends() {
        let mut reach = Unreachable::default();
        let t0 = Instant::now();
        assert!(reach.unanswered(&name("b"), t0));
        assert!(!reach.unanswered(&name("b"), t0 + Duration::from_secs(1)));
        assert_eq!(reach.peers(), BTreeSet::from([name("b")]));
        // Held from the last unanswered frame on.
        assert!(!reach.expire(t0 + UNREACHABLE_FOR));
        assert!(reach.expire(t0 + UNREACHABLE_FOR + Duration::from_secs(1)));
        assert!(reach.peers().is_empty());
        reach.unanswered(&name("b"), t0);
        assert!(reach.answered(&name("b")));
        // Only a needed backup's silence counts.
        assert!(!reach.heard(&name("c"), false, false, t0));
        assert!(reach.heard(&name("c"), false, true, t0));
        assert!(reach.heard(&name("c"), true, false, t0));
        assert!(!reach.answered(&name("b")));
        assert!(reach.peers().is_empty());
    }

    #[test]
    fn the_serving_ring_without_an_unreachable_backup_names_a_substitute() {
        let config = three_voters();
        let live: BTreeSet<MemberId> = config.members().map(|m| m.id.clone()).collect();
        let ring = target_table_with_vnodes(&config, &live, 16);
        let me = config.members().next().unwrap().id.name.clone();
        // A partition this node owns by the ring, and its ring backup.
        let (partition, backup) = (0..config.partitions())
            .map(PartitionId)
            .find_map(|p| {
                let set: Vec<&NodeId> = ring.replicas(p).collect();
                (*set[0] == me).then(|| (p, set[1].clone()))
            })
            .unwrap();
        let unreachable = BTreeSet::from([backup.clone(), me.clone()]);
        let serving = serving_members(&live, &unreachable, &me);
        assert!(serving.iter().any(|m| m.name == me), "never without itself");
        let substitute = target_table_with_vnodes(&config, &serving, 16);
        let set: Vec<&NodeId> = substitute.replicas(partition).collect();
        assert_eq!(set.len(), 2, "still two copies: {set:?}");
        assert_eq!(*set[0], me);
        assert_ne!(*set[1], backup, "another member stands in");
    }

    #[test]
    fn the_planner_keeps_a_substitute_until_the_silent_backup_is_back_in_sync() {
        let mut config = three_voters();
        let live: BTreeSet<MemberId> = config.members().map(|m| m.id.clone()).collect();
        let ring = target_table_with_vnodes(&config, &live, 16);
        let id = |n: &NodeId| config.member_named(n).unwrap().id.clone();
        let p = PartitionId(0);
        let set: Vec<NodeId> = ring.replicas(p).cloned().collect();
        let (owner, backup) = (id(&set[0]), id(&set[1]));
        let substitute = live
            .iter()
            .find(|m| **m != owner && **m != backup)
            .unwrap()
            .clone();
        let setisr = |config: &ClusterConfig, isr: Vec<MemberId>| Command::SetIsr {
            partition: p,
            epoch: config.assignment(p).unwrap().epoch,
            version: config.assignment(p).unwrap().version,
            isr,
        };
        config
            .apply(&setisr(&config, vec![owner.clone(), backup.clone()]))
            .unwrap();
        config
            .apply(&Command::Elect {
                partition: p,
                owner: owner.clone(),
                epoch: Epoch(1),
            })
            .unwrap();
        // The owner's serving table without the silent backup ships to
        // the substitute, which joins; then the backup is shrunk out.
        let serving = serving_members(&live, &BTreeSet::from([backup.name.clone()]), &owner.name);
        let table = serving_table(&config, &target_table_with_vnodes(&config, &serving, 16));
        assert!(table.replicas(p).any(|n| *n == substitute.name));
        let joined = vec![owner.clone(), backup.clone(), substitute.clone()];
        config.apply(&setisr(&config, joined)).unwrap();
        let shrunk = vec![owner.clone(), substitute.clone()];
        config.apply(&setisr(&config, shrunk.clone())).unwrap();
        // The planner (the failure detector's ring: every member live)
        // leaves it so while the backup is out of the ISR...
        let commands = plan(&config, &ring, &live, &BTreeSet::new());
        assert!(commands.iter().all(|c| !matches!(c, Command::SetIsr { partition, .. } | Command::Elect { partition, .. } if *partition == p)), "{commands:?}");
        // ...and drops the substitute once the backup is back in sync.
        let back = BTreeSet::from([(p, backup.clone())]);
        let rejoin = plan(&config, &ring, &live, &back);
        let rejoined = rejoin
            .iter()
            .find(|c| matches!(c, Command::SetIsr { partition, .. } if *partition == p))
            .unwrap();
        config.apply(rejoined).unwrap();
        let drop = plan(&config, &ring, &live, &back);
        let dropped = drop
            .iter()
            .find(|c| matches!(c, Command::SetIsr { partition, .. } if *partition == p))
            .unwrap();
        config.apply(dropped).unwrap();
        assert_eq!(config.assignment(p).unwrap().isr, vec![owner, backup]);
    }
}
