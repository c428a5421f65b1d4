//! A partition's pending timers: due-time order for firing, per-key index for
//! replacing and cancelling.
//!
//! Timers are key state (DESIGN §2): they are in snapshots, survive passivation
//! (a due timer reactivates its key) and are dropped by `stop()`. Firing order is
//! total — `(due, kind, key, tag)` — so every replica fires in the same order.

use std::collections::{BTreeSet, HashMap};

use crate::behaviour::TimerOp;
use crate::id::KindId;
use crate::time::Timestamp;

/// A timer that came due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DueTimer {
    pub at: Timestamp,
    pub kind: KindId,
    pub key: Box<str>,
    pub tag: u64,
}

/// Pending (tag, due) pairs of one key; few per key, so a Vec beats a map.
type KeyTimers = Vec<(u64, Timestamp)>;

#[derive(Default)]
pub(crate) struct Timers {
    due: BTreeSet<DueTimer>,
    /// kind → key → pending (tag, due) of that key.
    by_key: Vec<HashMap<Box<str>, KeyTimers>>,
    /// Set requests refused because the key had `max_per_key` timers already.
    pub refused: u64,
}

impl Timers {
    pub fn new(kinds: usize) -> Self {
        Timers {
            due: BTreeSet::new(),
            by_key: (0..kinds).map(|_| HashMap::new()).collect(),
            refused: 0,
        }
    }

    /// Applies a handler's timer requests for one key.
    pub fn apply(&mut self, kind: KindId, key: &str, ops: &[TimerOp], max_per_key: usize) {
        for op in ops {
            match *op {
                TimerOp::Set { tag, at } => self.set(kind, key, tag, at, max_per_key),
                TimerOp::Cancel { tag } => {
                    self.remove(kind, key, tag);
                }
            }
        }
    }

    /// Inserts or moves timer `tag` of a key.
    pub fn set(&mut self, kind: KindId, key: &str, tag: u64, at: Timestamp, max_per_key: usize) {
        let Some(keys) = self.by_key.get_mut(usize::from(kind.0)) else {
            return;
        };
        let pending = keys.entry(key.into()).or_default();
        if let Some(existing) = pending.iter_mut().find(|(t, _)| *t == tag) {
            let old = DueTimer {
                at: existing.1,
                kind,
                key: key.into(),
                tag,
            };
            self.due.remove(&old);
            existing.1 = at;
        } else if pending.len() >= max_per_key {
            self.refused += 1;
            return;
        } else {
            pending.push((tag, at));
        }
        self.due.insert(DueTimer {
            at,
            kind,
            key: key.into(),
            tag,
        });
    }

    /// Removes timer `tag` of a key; returns its due time if it was pending.
    pub fn remove(&mut self, kind: KindId, key: &str, tag: u64) -> Option<Timestamp> {
        let keys = self.by_key.get_mut(usize::from(kind.0))?;
        let pending = keys.get_mut(key)?;
        let index = pending.iter().position(|(t, _)| *t == tag)?;
        let (_, at) = pending.swap_remove(index);
        if pending.is_empty() {
            keys.remove(key);
        }
        self.due.remove(&DueTimer {
            at,
            kind,
            key: key.into(),
            tag,
        });
        Some(at)
    }

    /// Drops every timer of a key.
    pub fn clear_key(&mut self, kind: KindId, key: &str) {
        let Some(keys) = self.by_key.get_mut(usize::from(kind.0)) else {
            return;
        };
        if let Some(pending) = keys.remove(key) {
            for (tag, at) in pending {
                self.due.remove(&DueTimer {
                    at,
                    kind,
                    key: key.into(),
                    tag,
                });
            }
        }
    }

    /// The earliest timer due at or before `now`, without removing it.
    pub fn next_due(&self, now: Timestamp) -> Option<&DueTimer> {
        self.due.first().filter(|timer| timer.at <= now)
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// All pending timers in firing order.
    pub fn iter(&self) -> impl Iterator<Item = &DueTimer> {
        self.due.iter()
    }
}
