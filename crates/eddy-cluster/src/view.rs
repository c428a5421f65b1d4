//! The membership view: every known member by name with its status, and a
//! version that increases on every change. Placement reads the live names
//! ([`MembershipView::live_nodes`]) from here.
//!
//! The view is keyed by [`NodeId`] because placement is: one name, one slot on
//! the ring. When two identities share a name (a restart, possibly on another
//! gossip address), the newest generation owns the entry and news about an
//! older generation is ignored, so every node converges on the same entry from
//! the same foca updates in any order. The local node is always in the view as
//! `Up`: foca never reports about itself.

use std::collections::{BTreeMap, VecDeque};

use eddy_core::Timestamp;

use crate::identity::{NodeId, NodeIdentity};

/// How the local node currently sees a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberStatus {
    /// Alive: answered probes or was reported alive.
    Up,
    /// Some member failed to probe it; it is still live (SWIM treats suspects
    /// as alive) until it refutes or `suspect_to_down_after` passes.
    Suspect,
    /// Declared down; it holds no partitions. Its name may come back with a
    /// newer generation.
    Down,
}

impl MemberStatus {
    /// Up or suspect: counts for placement.
    pub fn is_live(self) -> bool {
        matches!(self, MemberStatus::Up | MemberStatus::Suspect)
    }
}

/// One member in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    /// The newest identity known under this name.
    pub identity: NodeIdentity,
    /// Its status.
    pub status: MemberStatus,
    /// When the status last changed, by the time the caller passed in.
    pub since: Timestamp,
}

/// A change the view applied; the membership driver reports these as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Nothing changed (stale or repeated news).
    Nothing,
    /// The entry changed to the given status.
    Changed(MemberStatus),
}

/// All members known to the local node, by name.
#[derive(Debug, Clone)]
pub struct MembershipView {
    local: NodeId,
    members: BTreeMap<NodeId, MemberEntry>,
    /// Names in the order they went down, oldest first, each at most once;
    /// bounds the down entries kept. May hold names that since came back up:
    /// those are skipped on eviction and purged when they pile up.
    down_order: VecDeque<NodeId>,
    down_count: usize,
    /// Entries with status `Up`, kept current so the count is O(1).
    up_count: usize,
    max_down: usize,
    version: u64,
}

impl MembershipView {
    /// A view holding only the local node, `Up`, at version 0. Keeps at most
    /// `max_down` down members (at least 1).
    pub fn new(local: NodeIdentity, now: Timestamp, max_down: usize) -> MembershipView {
        let name = local.name.clone();
        let mut members = BTreeMap::new();
        members.insert(
            name.clone(),
            MemberEntry {
                identity: local,
                status: MemberStatus::Up,
                since: now,
            },
        );
        MembershipView {
            local: name,
            members,
            down_order: VecDeque::new(),
            down_count: 0,
            up_count: 1,
            max_down: max_down.max(1),
            version: 0,
        }
    }

    /// Increases by at least one on every change of any entry.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The local node's name.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The entry for `name`, if known.
    pub fn get(&self, name: &NodeId) -> Option<&MemberEntry> {
        self.members.get(name)
    }

    /// All entries, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &MemberEntry> {
        self.members.values()
    }

    /// Names of live (up or suspect) members including the local node, sorted:
    /// the input of [`crate::PartitionTable::compute`].
    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, entry)| entry.status.is_live())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Members with status `Up`, including the local node.
    pub fn up_count(&self) -> usize {
        self.up_count
    }

    /// Recounts what the view keeps incrementally and checks its bounds;
    /// O(members), for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        let up = self
            .members
            .values()
            .filter(|e| e.status == MemberStatus::Up)
            .count();
        let down = self
            .members
            .values()
            .filter(|e| e.status == MemberStatus::Down)
            .count();
        if up != self.up_count {
            return Err(format!(
                "up_count {} but {up} entries are up",
                self.up_count
            ));
        }
        if down != self.down_count || down > self.max_down {
            return Err(format!(
                "down_count {} (max {}) but {down} entries are down",
                self.down_count, self.max_down
            ));
        }
        if self.members.get(&self.local).map(|e| e.status) != Some(MemberStatus::Up) {
            return Err("the local node is not up in its own view".to_owned());
        }
        Ok(())
    }

    /// Entries in the view, of any status.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: the local node is always present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `identity` is alive. Replaces an entry of the same name if it is newer
    /// (higher generation; ties by identity order) or the entry is down.
    pub(crate) fn up(&mut self, identity: &NodeIdentity, now: Timestamp) -> Applied {
        self.set(identity, MemberStatus::Up, now)
    }

    /// `identity` is suspected; only an entry holding exactly this identity
    /// and currently up changes.
    pub(crate) fn suspect(&mut self, identity: &NodeIdentity, now: Timestamp) -> Applied {
        match self.members.get(&identity.name) {
            Some(entry) if &entry.identity == identity && entry.status == MemberStatus::Up => {
                self.set(identity, MemberStatus::Suspect, now)
            }
            _ => Applied::Nothing,
        }
    }

    /// `identity` is down; only an entry holding exactly this identity changes.
    pub(crate) fn down(&mut self, identity: &NodeIdentity, now: Timestamp) -> Applied {
        match self.members.get(&identity.name) {
            Some(entry) if &entry.identity == identity && entry.status != MemberStatus::Down => {
                self.set(identity, MemberStatus::Down, now)
            }
            _ => Applied::Nothing,
        }
    }

    /// The local node took a new identity (foca renewed it after the cluster
    /// declared it down).
    pub(crate) fn renew_local(&mut self, identity: &NodeIdentity, now: Timestamp) {
        debug_assert_eq!(identity.name, self.local, "renewal keeps the name");
        if let Some(entry) = self.members.get_mut(&self.local) {
            entry.identity = identity.clone();
            entry.since = now;
            self.version += 1;
        }
    }

    fn set(&mut self, identity: &NodeIdentity, status: MemberStatus, now: Timestamp) -> Applied {
        if identity.name == self.local {
            // foca never reports about us; a peer claiming our name is refused
            // by the membership driver before it gets here.
            return Applied::Nothing;
        }
        let previous = self.members.get(&identity.name).map(|e| e.status);
        match self.members.get_mut(&identity.name) {
            Some(entry) => {
                if entry.identity == *identity {
                    if entry.status == status {
                        return Applied::Nothing;
                    }
                } else {
                    let newer = (identity.generation, identity)
                        > (entry.identity.generation, &entry.identity);
                    if !(newer || entry.status == MemberStatus::Down) {
                        return Applied::Nothing;
                    }
                    entry.identity = identity.clone();
                }
                entry.status = status;
                entry.since = now;
            }
            None => {
                self.members.insert(
                    identity.name.clone(),
                    MemberEntry {
                        identity: identity.clone(),
                        status,
                        since: now,
                    },
                );
            }
        }
        self.version += 1;
        if previous == Some(MemberStatus::Up) {
            self.up_count -= 1;
        }
        if status == MemberStatus::Up {
            self.up_count += 1;
        }
        let was_down = previous == Some(MemberStatus::Down);
        let is_down = status == MemberStatus::Down;
        if was_down && !is_down {
            self.down_count -= 1;
        } else if !was_down && is_down {
            self.down_count += 1;
            // One occurrence per name, at the position of its latest down, so
            // eviction order is down order. O(max_down), and downs are rare.
            self.down_order.retain(|name| name != &identity.name);
            self.down_order.push_back(identity.name.clone());
            self.evict_down();
        }
        Applied::Changed(status)
    }

    /// Forgets the oldest down members beyond `max_down`.
    fn evict_down(&mut self) {
        while self.down_count > self.max_down {
            let Some(name) = self.down_order.pop_front() else {
                debug_assert!(false, "down_count counts names in down_order");
                return;
            };
            if self
                .members
                .get(&name)
                .is_some_and(|e| e.status == MemberStatus::Down)
            {
                self.members.remove(&name);
                self.down_count -= 1;
                self.version += 1;
            }
        }
        // Stale names (came back up) can pile up under flapping; drop them once
        // they outnumber the real down entries, keeping the queue bounded.
        if self.down_order.len() > 2 * self.max_down {
            let members = &self.members;
            self.down_order.retain(|name| {
                members
                    .get(name)
                    .is_some_and(|e| e.status == MemberStatus::Down)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::identity;

    fn t(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    #[test]
    fn changes_bump_the_version_and_repeats_do_not() {
        let mut view = MembershipView::new(identity("local", 1), t(0), 8);
        let b = identity("b", 2);
        assert_eq!(view.version(), 0);
        assert_eq!(view.up(&b, t(1)), Applied::Changed(MemberStatus::Up));
        assert_eq!(view.version(), 1);
        assert_eq!(view.up(&b, t(2)), Applied::Nothing);
        assert_eq!(view.version(), 1);
        assert_eq!(
            view.suspect(&b, t(3)),
            Applied::Changed(MemberStatus::Suspect)
        );
        assert_eq!(
            view.live_nodes(),
            vec![NodeId::new("b"), NodeId::new("local")]
        );
        assert_eq!(view.down(&b, t(4)), Applied::Changed(MemberStatus::Down));
        assert_eq!(view.version(), 3);
        assert_eq!(view.live_nodes(), vec![NodeId::new("local")]);
        assert_eq!(view.get(&b.name).map(|e| e.since), Some(t(4)));
    }

    #[test]
    fn newest_generation_owns_the_name() {
        let mut view = MembershipView::new(identity("local", 1), t(0), 8);
        let old = identity("b", 2);
        let new = NodeIdentity {
            generation: old.generation + 1,
            ..old.clone()
        };
        view.up(&new, t(1));
        // News about the older generation, in any order, changes nothing.
        assert_eq!(view.up(&old, t(2)), Applied::Nothing);
        assert_eq!(view.down(&old, t(3)), Applied::Nothing);
        assert_eq!(view.suspect(&old, t(3)), Applied::Nothing);
        assert_eq!(view.get(&new.name).map(|e| &e.identity), Some(&new));
        // Once the newest is down, a restarted (any) generation may take over.
        view.down(&new, t(4));
        assert_eq!(view.up(&old, t(5)), Applied::Changed(MemberStatus::Up));
    }

    #[test]
    fn down_members_are_bounded_oldest_first() {
        let mut view = MembershipView::new(identity("local", 1), t(0), 2);
        let ids: Vec<_> = (0..5u16)
            .map(|i| identity(&format!("n{i}"), 10 + i))
            .collect();
        for id in &ids {
            view.up(id, t(1));
        }
        for (i, id) in ids.iter().enumerate() {
            view.down(id, t(2 + i as u64));
        }
        let names: Vec<_> = view.iter().map(|e| e.identity.name.to_string()).collect();
        assert_eq!(names, vec!["local", "n3", "n4"]);
        // Flapping does not grow the bookkeeping without bound.
        for round in 0..100 {
            view.up(&ids[4], t(100 + round));
            view.down(&ids[4], t(100 + round));
        }
        assert!(view.down_order.len() <= 2 * 2 + 1);
        assert_eq!(view.down_count, 2);
        assert_eq!(view.check_invariants(), Ok(()));
    }

    #[test]
    fn local_node_is_always_up() {
        let local = identity("local", 1);
        let mut view = MembershipView::new(local.clone(), t(0), 2);
        assert_eq!(view.down(&local, t(1)), Applied::Nothing);
        assert_eq!(view.up_count(), 1);
        assert!(!view.is_empty());
    }
}
