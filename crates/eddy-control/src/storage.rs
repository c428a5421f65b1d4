//! Raft's storage: the in-memory log the `RawNode` reads, and the
//! persistence effects the driver makes durable.
//!
//! The controller keeps the whole (compacted) log in memory in [`LogStore`];
//! every change to it is also emitted as a [`Persist`] effect. The driver
//! writes those in order (to files, in the node) *before* it sends the
//! messages of the same input — raft-rs requires that a vote or an appended
//! entry is durable before anyone hears of it. [`PersistedState`] is what a
//! driver keeps (and what [`crate::Controller::restore`] restarts from);
//! [`PersistedState::apply`] is the one definition of how effects change it,
//! used by the test network and available to the node.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use serde::{Deserialize, Serialize};

use crate::wire::{EntryRecord, HardStateRecord, SnapshotRecord};

/// One change to persist, in the order emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Persist {
    /// Replace the hard state (term, vote, commit).
    HardState(HardStateRecord),
    /// Append entries; entries already stored at or after the first one's
    /// index are replaced (a new leader overwrote an uncommitted suffix).
    Entries(Vec<EntryRecord>),
    /// A snapshot received from the leader: it replaces the snapshot and the
    /// whole log.
    InstallSnapshot(SnapshotRecord),
    /// Log compaction: replace the snapshot, drop entries up to its index,
    /// keep the later ones.
    Compact(SnapshotRecord),
}

/// Everything a voter persists: enough to restart as the same voter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersistedState {
    /// Term, vote, commit.
    pub hard_state: HardStateRecord,
    /// The latest snapshot (index 0 at bootstrap).
    pub snapshot: SnapshotRecord,
    /// Entries after the snapshot, contiguous.
    pub entries: Vec<EntryRecord>,
}

impl PersistedState {
    /// Whether there is any Raft state (a bootstrapped or joined voter).
    pub fn is_empty(&self) -> bool {
        self.snapshot.conf.voters.is_empty() && self.entries.is_empty()
    }

    /// Applies one effect, exactly as [`LogStore`] applied it.
    pub fn apply(&mut self, persist: &Persist) {
        match persist {
            Persist::HardState(hs) => self.hard_state = *hs,
            Persist::Entries(entries) => {
                if let Some(first) = entries.first() {
                    self.entries.retain(|e| e.index < first.index);
                    self.entries.extend_from_slice(entries);
                }
            }
            Persist::InstallSnapshot(snapshot) => {
                self.entries.clear();
                self.snapshot = snapshot.clone();
            }
            Persist::Compact(snapshot) => {
                self.entries.retain(|e| e.index > snapshot.index);
                self.snapshot = snapshot.clone();
            }
        }
    }
}

/// The log a `RawNode` reads: snapshot, entries after it, hard state.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Entries `snapshot.index + 1 ..`, contiguous.
    entries: Vec<Entry>,
}

impl LogStore {
    /// The store of what was persisted.
    pub fn from_persisted(state: &PersistedState) -> LogStore {
        LogStore {
            hard_state: state.hard_state.to_raft(),
            conf_state: state.snapshot.conf.to_raft(),
            snapshot: state.snapshot.to_raft(),
            entries: state.entries.iter().map(EntryRecord::to_raft).collect(),
        }
    }

    /// Index of the snapshot (everything up to it is compacted).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// Replaces the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Appends `entries`, replacing any stored suffix from the first one's
    /// index. raft-rs only appends at or before `last_index + 1`.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        debug_assert!(
            first.index > self.snapshot_index(),
            "append below the snapshot"
        );
        debug_assert!(first.index <= self.last() + 1, "gap in the log");
        self.entries.retain(|e| e.index < first.index);
        self.entries.extend_from_slice(entries);
    }

    /// Installs a snapshot from the leader: it replaces the log.
    pub fn install(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Compacts the log up to `index` (applied, hence stored) into a snapshot
    /// carrying `data`; returns it, or `None` if `index` is not in the log.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Option<Snapshot> {
        let term = self.entries.iter().find(|e| e.index == index)?.term;
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        self.entries.retain(|e| e.index > index);
        self.snapshot = snapshot.clone();
        Some(snapshot)
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.snapshot_index() + 1;
        // low > snapshot index and high <= last + 1 bound both into the Vec.
        let lo = usize::try_from(low - offset).unwrap_or(usize::MAX);
        let hi = usize::try_from(high - offset).unwrap_or(usize::MAX);
        let mut entries = self
            .entries
            .get(lo..hi)
            .ok_or(raft::Error::Store(StorageError::Unavailable))?
            .to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if index == meta.index {
            return Ok(meta.term);
        }
        if index < meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let offset = meta.index + 1;
        usize::try_from(index - offset)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> EntryRecord {
        EntryRecord {
            term,
            index,
            data: vec![index as u8],
            context: vec![],
        }
    }

    fn raft_entries(list: &[EntryRecord]) -> Vec<Entry> {
        list.iter().map(EntryRecord::to_raft).collect()
    }

    /// The store and the persisted copy change the same way under the same
    /// sequence of appends, overwrites and compaction.
    #[test]
    fn store_and_persisted_state_agree() {
        let mut persisted = PersistedState::default();
        let mut store = LogStore::from_persisted(&persisted);
        let steps = [
            vec![entry(1, 1), entry(2, 1), entry(3, 1)],
            vec![entry(3, 2), entry(4, 2)],
            vec![entry(5, 2)],
        ];
        for step in &steps {
            store.append(&raft_entries(step));
            persisted.apply(&Persist::Entries(step.clone()));
        }
        assert_eq!(store.last_index().unwrap(), 5);
        assert_eq!(store.term(3).unwrap(), 2, "overwritten by term 2");
        let snapshot = store.compact(3, vec![9]).unwrap();
        persisted.apply(&Persist::Compact(SnapshotRecord::from(&snapshot)));
        let reloaded = LogStore::from_persisted(&persisted);
        for s in [&store, &reloaded] {
            assert_eq!(s.first_index().unwrap(), 4);
            assert_eq!(s.last_index().unwrap(), 5);
            assert_eq!(s.term(3).unwrap(), 2);
            assert_eq!(
                s.entries(4, 6, None, GetEntriesContext::empty(false))
                    .unwrap(),
                raft_entries(&[entry(4, 2), entry(5, 2)])
            );
            assert!(matches!(
                s.term(2),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
            assert!(matches!(
                s.entries(4, 9, None, GetEntriesContext::empty(false)),
                Err(raft::Error::Store(StorageError::Unavailable))
            ));
        }
    }
}
