//! The in-memory partition log: entries since the last snapshot, encoded
//! back-to-back in one buffer.
//!
//! The owner appends every entry it logs; a promoted backup replays the tail
//! after its snapshot; the log is truncated once a snapshot covers a prefix.
//! Encoding into one reused buffer avoids an allocation per entry, and the byte
//! bound makes "the log is full, take a snapshot" an explicit, tested event.

use std::collections::VecDeque;

use thiserror::Error;

use crate::entry::{Entry, EntryView};
use crate::id::Seq;
use crate::registry::encode_into;

/// A log operation was refused; the log is unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LogError {
    /// Appending would exceed `max_bytes`: take a snapshot and truncate.
    #[error("partition log full ({bytes} of {max_bytes} bytes)")]
    Full {
        /// Bytes held.
        bytes: usize,
        /// The bound.
        max_bytes: usize,
    },
    /// The entry is not the next position.
    #[error("log expects seq {expected:?}, got {got:?}")]
    Gap {
        /// Next position.
        expected: Seq,
        /// Offered position.
        got: Seq,
    },
    /// Stored bytes did not decode (memory corruption or a bug).
    #[error("log entry {seq:?} does not decode: {message}")]
    Corrupt {
        /// Position of the entry.
        seq: Seq,
        /// postcard's description.
        message: String,
    },
}

/// Entries encoded back-to-back: what one call into a partition logged, ready
/// to append to the log and to send to backups without encoding again.
#[derive(Debug, Default, Clone)]
pub struct EntryBatch {
    bytes: Vec<u8>,
    /// End offset of each entry in `bytes`.
    ends: Vec<usize>,
}

impl EntryBatch {
    /// Appends an entry.
    pub fn push(&mut self, entry: &EntryView<'_>) {
        // Invariant: an entry holds only integers, strings and byte strings, and
        // postcard encodes those into a Vec without any failure path.
        #[allow(clippy::expect_used)]
        encode_into(entry, &mut self.bytes).expect("entries always encode");
        self.ends.push(self.bytes.len());
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets the entries, keeping the buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Total encoded size.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// All entries back-to-back: what a backup receives and hands to
    /// [`crate::Partition::apply_replicated`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each entry's encoding, in order (what [`crate::Partition::apply_encoded`] takes).
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// Decodes every entry into owned form (tests, tools).
    pub fn to_entries(&self) -> Result<Vec<Entry>, postcard::Error> {
        self.iter().map(postcard::from_bytes::<Entry>).collect()
    }
}

/// Entries `(base, last]` of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    data: Vec<u8>,
    /// Start offset in `data` of each held entry, oldest first.
    starts: VecDeque<usize>,
    /// Bytes at the front of `data` that belong to truncated entries.
    dead: usize,
    /// Seq of the entry before the first held one.
    base: Seq,
    max_bytes: usize,
}

impl PartitionLog {
    /// An empty log whose next entry is `after.next()`, holding at most
    /// `max_bytes` of encoded entries.
    pub fn new(after: Seq, max_bytes: usize) -> Self {
        PartitionLog {
            data: Vec::new(),
            starts: VecDeque::new(),
            dead: 0,
            base: after,
            max_bytes,
        }
    }

    /// Position of the newest entry (the base if empty).
    pub fn last_seq(&self) -> Seq {
        Seq(self.base.0 + self.starts.len() as u64)
    }

    /// Position before the oldest held entry.
    pub fn base_seq(&self) -> Seq {
        self.base
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() - self.dead
    }

    /// Appends the next entry.
    pub fn append(&mut self, entry: &EntryView<'_>) -> Result<(), LogError> {
        let expected = self.last_seq().next();
        if entry.seq != expected {
            return Err(LogError::Gap {
                expected,
                got: entry.seq,
            });
        }
        let start = self.data.len();
        encode_into(entry, &mut self.data).map_err(|err| LogError::Corrupt {
            seq: entry.seq,
            message: err.to_string(),
        })?;
        if self.bytes() > self.max_bytes {
            let bytes = self.bytes();
            self.data.truncate(start);
            return Err(LogError::Full {
                bytes,
                max_bytes: self.max_bytes,
            });
        }
        self.starts.push_back(start);
        Ok(())
    }

    /// Drops entries up to and including `seq` (a snapshot now covers them).
    pub fn truncate_through(&mut self, seq: Seq) {
        while self.base < seq {
            let Some(_) = self.starts.pop_front() else {
                break;
            };
            self.base = self.base.next();
            self.dead = self.starts.front().copied().unwrap_or(self.data.len());
        }
        if self.starts.is_empty() {
            self.data.clear();
            self.dead = 0;
        } else if self.dead > self.data.len() / 2 {
            // Compact once at least half the buffer is dead: amortised O(1) per entry.
            self.data.drain(..self.dead);
            let shift = self.dead;
            self.starts.iter_mut().for_each(|s| *s -= shift);
            self.dead = 0;
        }
    }

    /// Decodes the entries after `seq`, oldest first. Entries at or before the
    /// base are gone: callers needing them must use a snapshot.
    pub fn entries_after(&self, seq: Seq) -> impl Iterator<Item = Result<Entry, LogError>> + '_ {
        let skip = seq.0.saturating_sub(self.base.0) as usize;
        (skip..self.starts.len()).map(move |index| {
            let start = self.starts[index];
            let end = self
                .starts
                .get(index + 1)
                .copied()
                .unwrap_or(self.data.len());
            let entry_seq = Seq(self.base.0 + index as u64 + 1);
            postcard::from_bytes::<Entry>(&self.data[start..end]).map_err(|err| LogError::Corrupt {
                seq: entry_seq,
                message: err.to_string(),
            })
        })
    }
}
