//! Entries of the partition log: every change of state is one, events and timer
//! firings alike, stamped by the owner with `(epoch, seq, ts)`.
//!
//! Applying the same entries to the same snapshot gives the same states and the
//! same alerts on every replica; that is the contract failover rests on.
//!
//! Each type comes twice: owned ([`Entry`], [`EventInput`]) for callers that keep
//! entries, and borrowed ([`EntryView`], [`EventRef`]) for the hot path, which
//! applies and encodes entries without allocating. Both encode to the same
//! postcard bytes (a test pins that), so either decodes what the other wrote.

use serde::{Deserialize, Serialize};

use crate::id::{Epoch, KindId, Seq};
use crate::time::Timestamp;

/// An idempotent producer's identity and the sequence number of this event.
/// The owner applies each `(producer, seq)` at most once per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerRef {
    /// Stable id the client chose (e.g. a UUID per process).
    pub producer: String,
    /// Increases by at least one per event the producer sends to a partition.
    pub seq: u64,
}

/// An event as it enters the owner: kind, key, binary payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInput {
    /// Kind as numbered by the node's registry.
    pub kind: KindId,
    /// The key.
    pub key: String,
    /// Postcard encoding of the kind's `Event` (see [`crate::encode_event`]).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Set when the client wants exactly-once across retries.
    pub producer: Option<ProducerRef>,
}

impl EventInput {
    /// A borrowed view for [`crate::Partition::submit`].
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            kind: self.kind,
            key: &self.key,
            payload: &self.payload,
            producer: self.producer.as_ref().map(|p| ProducerView {
                producer: &p.producer,
                seq: p.seq,
            }),
        }
    }
}

/// What an entry does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Deliver an event to a key.
    Event(EventInput),
    /// Fire a key's timer.
    Timer {
        /// The key's kind.
        kind: KindId,
        /// The key.
        key: String,
        /// The tag the handler gave the timer.
        tag: u64,
    },
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Owner epoch that wrote the entry.
    pub epoch: Epoch,
    /// Position in the partition's log.
    pub seq: Seq,
    /// The owner's time for the entry; handlers see it as `ctx.now()`.
    pub ts: Timestamp,
    /// The change.
    pub input: Input,
}

impl Entry {
    /// A borrowed view for [`crate::Partition::apply`].
    pub fn view(&self) -> EntryView<'_> {
        EntryView {
            epoch: self.epoch,
            seq: self.seq,
            ts: self.ts,
            input: match &self.input {
                Input::Event(event) => InputView::Event(event.as_ref()),
                Input::Timer { kind, key, tag } => InputView::Timer {
                    kind: *kind,
                    key,
                    tag: *tag,
                },
            },
        }
    }
}

/// Borrowed [`ProducerRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerView<'a> {
    /// The producer id.
    pub producer: &'a str,
    /// Its sequence number for this event.
    pub seq: u64,
}

/// Borrowed [`EventInput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef<'a> {
    /// Kind as numbered by the node's registry.
    pub kind: KindId,
    /// The key.
    pub key: &'a str,
    /// Postcard encoding of the kind's `Event`.
    #[serde(with = "serde_bytes")]
    pub payload: &'a [u8],
    /// Idempotent producer, if any.
    #[serde(borrow)]
    pub producer: Option<ProducerView<'a>>,
}

/// Borrowed [`Input`]; variant order matches so the encodings agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputView<'a> {
    /// Deliver an event to a key.
    Event(#[serde(borrow)] EventRef<'a>),
    /// Fire a key's timer.
    Timer {
        /// The key's kind.
        kind: KindId,
        /// The key.
        key: &'a str,
        /// The timer's tag.
        tag: u64,
    },
}

/// Borrowed [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView<'a> {
    /// Owner epoch that wrote the entry.
    pub epoch: Epoch,
    /// Position in the partition's log.
    pub seq: Seq,
    /// The owner's time for the entry.
    pub ts: Timestamp,
    /// The change.
    #[serde(borrow)]
    pub input: InputView<'a>,
}

impl EntryView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Entry {
        Entry {
            epoch: self.epoch,
            seq: self.seq,
            ts: self.ts,
            input: match self.input {
                InputView::Event(event) => Input::Event(EventInput {
                    kind: event.kind,
                    key: event.key.to_owned(),
                    payload: event.payload.to_vec(),
                    producer: event.producer.map(|p| ProducerRef {
                        producer: p.producer.to_owned(),
                        seq: p.seq,
                    }),
                }),
                InputView::Timer { kind, key, tag } => Input::Timer {
                    kind,
                    key: key.to_owned(),
                    tag,
                },
            },
        }
    }
}

// KindId travels inside entries between nodes of one cluster, which register
// the same kinds in the same order (checked at join).
impl Serialize for KindId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KindId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(KindId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_borrowed_entries_encode_identically() {
        let entries = [
            Entry {
                epoch: Epoch(3),
                seq: Seq(9),
                ts: Timestamp(1_700_000_000_000),
                input: Input::Event(EventInput {
                    kind: KindId(2),
                    key: "acct-7".into(),
                    payload: (0..=255).collect(),
                    producer: Some(ProducerRef {
                        producer: "p1".into(),
                        seq: 42,
                    }),
                }),
            },
            Entry {
                epoch: Epoch(1),
                seq: Seq(1),
                ts: Timestamp(5),
                input: Input::Timer {
                    kind: KindId(0),
                    key: "dev-1".into(),
                    tag: 7,
                },
            },
        ];
        for entry in entries {
            let owned = postcard::to_stdvec(&entry).expect("encodes");
            let borrowed = postcard::to_stdvec(&entry.view()).expect("encodes");
            assert_eq!(owned, borrowed);
            let view: EntryView<'_> = postcard::from_bytes(&owned).expect("decodes");
            assert_eq!(view.to_owned(), entry);
        }
    }
}
