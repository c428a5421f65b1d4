//! Snapshots: a partition's whole logical state as a stream of bounded,
//! versioned, checksummed chunks.
//!
//! Chunk layout (all integers little-endian):
//!
//! ```text
//! magic "EDSN" | version u16 | index u32 | body_len u32 | body | xxh3_64 u64
//! ```
//!
//! The checksum covers every byte before it. The bodies, concatenated, are a
//! sequence of postcard `Record`s: one `Header`, then producers, keys and timers
//! in any order, then one `End` with counts. A record never spans chunks, so each
//! chunk is checked and decoded on its own and neither side ever holds more than
//! one chunk (plus the partition itself). Restored keys stay passive: restore
//! copies bytes, decoding happens lazily on first use.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{CodecError, SnapshotError};
use crate::id::{Epoch, KindId, PartitionId, Seq};
use crate::partition::{Partition, PartitionConfig};
use crate::registry::{Registry, encode_into};
use crate::time::Timestamp;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"EDSN";
const HEADER_LEN: usize = 4 + 2 + 4 + 4;
const TRAILER_LEN: usize = 8;
/// Default body size of a chunk: large enough to amortise framing, small enough
/// to interleave with live traffic on a peer link.
pub const DEFAULT_CHUNK_BYTES: usize = 256 * 1024;

/// One record of the snapshot stream; `kinds` names the kinds so a reader
/// maps them to its own registry, and `kind` fields index into that list.
#[derive(Serialize, Deserialize)]
enum Record<'a> {
    Header {
        partition: u32,
        epoch: u64,
        last_seq: u64,
        last_ts: u64,
        #[serde(borrow)]
        kinds: Vec<&'a str>,
    },
    Producer {
        producer: &'a str,
        seq: u64,
    },
    Key {
        kind: u16,
        key: &'a str,
        #[serde(with = "serde_bytes")]
        state: &'a [u8],
    },
    Timer {
        kind: u16,
        key: &'a str,
        tag: u64,
        at: u64,
    },
    End {
        keys: u64,
        timers: u64,
        producers: u64,
    },
    /// Epoch of the last entry the copy holds (after the header; a stream
    /// without it is from before it existed: the header's epoch stands in).
    Lineage {
        last_epoch: u64,
    },
}

/// Writing a snapshot stopped; what was already handed to the sink is an
/// incomplete stream that a reader rejects as truncated.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotWriteError<E> {
    /// The sink refused a chunk.
    #[error("snapshot sink failed: {0}")]
    Sink(E),
    /// A key's state could not be encoded (its `Serialize` impl failed).
    #[error("key `{key}` cannot be snapshotted: {source}")]
    Encode {
        /// The key.
        key: String,
        /// The encoder's complaint.
        source: CodecError,
    },
}

/// Cuts records into chunks and hands each finished chunk to the sink.
struct ChunkWriter<'s, E> {
    chunk: Vec<u8>,
    record: Vec<u8>,
    index: u32,
    max_body: usize,
    sink: &'s mut dyn FnMut(&[u8]) -> Result<(), E>,
}

impl<E> ChunkWriter<'_, E> {
    fn push(&mut self, record: &Record<'_>) -> Result<(), SnapshotWriteError<E>> {
        self.record.clear();
        // Records hold only integers, strings and byte strings, which postcard
        // always encodes; a failure would be a postcard bug, reported not hidden.
        encode_into(record, &mut self.record).map_err(|err| SnapshotWriteError::Encode {
            key: String::new(),
            source: CodecError::Binary {
                kind: "snapshot",
                what: "record",
                message: err.to_string(),
            },
        })?;
        let body = self.chunk.len() - HEADER_LEN;
        if body > 0 && body + self.record.len() > self.max_body {
            self.flush()?;
        }
        self.chunk.extend_from_slice(&self.record);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotWriteError<E>> {
        let body_len = self.chunk.len() - HEADER_LEN;
        self.chunk[0..4].copy_from_slice(MAGIC);
        self.chunk[4..6].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        self.chunk[6..10].copy_from_slice(&self.index.to_le_bytes());
        // A body is bounded by max_body plus one record, far below 4 GiB.
        self.chunk[10..14].copy_from_slice(&(body_len as u32).to_le_bytes());
        let checksum = xxh3_64(&self.chunk);
        self.chunk.extend_from_slice(&checksum.to_le_bytes());
        (self.sink)(&self.chunk).map_err(SnapshotWriteError::Sink)?;
        self.chunk.clear();
        self.chunk.resize(HEADER_LEN, 0);
        self.index += 1;
        Ok(())
    }
}

impl Partition {
    /// Streams a snapshot of this partition to `sink`, one chunk at a time, each
    /// with a body of at most `max_chunk_bytes` (or one record, if a single
    /// state is larger). Stops at the first error.
    pub fn write_snapshot<E>(
        &self,
        max_chunk_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), SnapshotWriteError<E>> {
        let mut chunk = Vec::with_capacity(HEADER_LEN + max_chunk_bytes + TRAILER_LEN);
        chunk.resize(HEADER_LEN, 0);
        let mut writer = ChunkWriter {
            chunk,
            record: Vec::new(),
            index: 0,
            max_body: max_chunk_bytes.max(1),
            sink,
        };
        let kinds: Vec<&str> = self.stores.iter().map(|s| s.kind()).collect();
        writer.push(&Record::Header {
            partition: self.id.0,
            epoch: self.epoch.0,
            last_seq: self.last_seq.0,
            last_ts: self.last_ts.0,
            kinds,
        })?;
        writer.push(&Record::Lineage {
            last_epoch: self.last_epoch.0,
        })?;
        let mut producers = 0u64;
        for (producer, seq) in &self.producers {
            writer.push(&Record::Producer {
                producer,
                seq: *seq,
            })?;
            producers += 1;
        }
        let mut keys = 0u64;
        let mut failed = None;
        for (index, store) in self.stores.iter().enumerate() {
            // Kind indices are below the registry's u16 bound.
            let kind = index as u16;
            store.for_each_encoded(&mut |key, state| {
                if failed.is_some() {
                    return;
                }
                let state = match state {
                    Ok(state) => state,
                    Err(source) => {
                        failed = Some(SnapshotWriteError::Encode {
                            key: key.to_owned(),
                            source,
                        });
                        return;
                    }
                };
                keys += 1;
                let record = Record::Key { kind, key, state };
                if let Err(err) = writer.push(&record) {
                    failed = Some(err);
                }
            });
            if let Some(err) = failed.take() {
                return Err(err);
            }
        }
        let mut timers = 0u64;
        for timer in self.timers.iter() {
            writer.push(&Record::Timer {
                kind: timer.kind.0,
                key: &timer.key,
                tag: timer.tag,
                at: timer.at.0,
            })?;
            timers += 1;
        }
        writer.push(&Record::End {
            keys,
            timers,
            producers,
        })?;
        writer.flush()
    }

    /// The snapshot as a list of chunks; convenient for tests and small partitions.
    pub fn snapshot_chunks(
        &self,
        max_chunk_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, SnapshotWriteError<std::convert::Infallible>> {
        let mut chunks = Vec::new();
        self.write_snapshot(max_chunk_bytes, &mut |chunk| {
            chunks.push(chunk.to_vec());
            Ok(())
        })?;
        Ok(chunks)
    }

    /// Rebuilds a partition from a complete chunk stream.
    pub fn restore<'c>(
        registry: Arc<Registry>,
        config: PartitionConfig,
        chunks: impl IntoIterator<Item = &'c [u8]>,
    ) -> Result<Partition, SnapshotError> {
        let mut reader = SnapshotReader::new(registry, config);
        for chunk in chunks {
            reader.push(chunk)?;
        }
        reader.finish()
    }
}

/// The index a chunk claims in its header (unverified), so a receiver can
/// tell the first chunk of a new stream; `None` if it has no header.
pub fn chunk_index(chunk: &[u8]) -> Option<u32> {
    let bytes = chunk.get(6..10)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Incremental snapshot decoder: feed chunks in order with [`push`](Self::push),
/// then [`finish`](Self::finish). Any error leaves nothing restored.
pub struct SnapshotReader {
    registry: Arc<Registry>,
    config: PartitionConfig,
    partition: Option<Partition>,
    /// Snapshot kind index → this registry's kind.
    kind_map: Vec<KindId>,
    next_index: u32,
    ended: bool,
    keys: u64,
    timers: u64,
    producers: u64,
}

impl SnapshotReader {
    /// A reader that restores into a partition hosting `registry`'s kinds.
    pub fn new(registry: Arc<Registry>, config: PartitionConfig) -> Self {
        SnapshotReader {
            registry,
            config,
            partition: None,
            kind_map: Vec::new(),
            next_index: 0,
            ended: false,
            keys: 0,
            timers: 0,
            producers: 0,
        }
    }

    /// Checks and applies the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        let index = self.next_index;
        if chunk.len() < HEADER_LEN + TRAILER_LEN || &chunk[0..4] != MAGIC {
            return Err(SnapshotError::BadMagic { index });
        }
        let version = u16::from_le_bytes([chunk[4], chunk[5]]);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                index,
                version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let (checked, trailer) = chunk.split_at(chunk.len() - TRAILER_LEN);
        let mut expected_sum = [0u8; 8];
        expected_sum.copy_from_slice(trailer);
        if xxh3_64(checked) != u64::from_le_bytes(expected_sum) {
            return Err(SnapshotError::Checksum { index });
        }
        let got_index = u32::from_le_bytes([chunk[6], chunk[7], chunk[8], chunk[9]]);
        if got_index != index {
            return Err(SnapshotError::Sequence {
                expected: index,
                got: got_index,
            });
        }
        let body_len = u32::from_le_bytes([chunk[10], chunk[11], chunk[12], chunk[13]]) as usize;
        if HEADER_LEN + body_len + TRAILER_LEN != chunk.len() {
            return Err(SnapshotError::Length {
                index,
                expected: HEADER_LEN + body_len + TRAILER_LEN,
                got: chunk.len(),
            });
        }
        let mut body = &checked[HEADER_LEN..];
        while !body.is_empty() {
            let (record, rest) = postcard::take_from_bytes::<Record<'_>>(body).map_err(|err| {
                SnapshotError::Record {
                    index,
                    message: err.to_string(),
                }
            })?;
            self.apply(record)?;
            body = rest;
        }
        self.next_index += 1;
        Ok(())
    }

    fn apply(&mut self, record: Record<'_>) -> Result<(), SnapshotError> {
        if self.ended {
            return Err(SnapshotError::Structure("record after end".into()));
        }
        if let Record::Header {
            partition,
            epoch,
            last_seq,
            last_ts,
            kinds,
        } = record
        {
            if self.partition.is_some() {
                return Err(SnapshotError::Structure("second header".into()));
            }
            self.kind_map = kinds
                .iter()
                .map(|name| {
                    self.registry
                        .kind_id(name)
                        .ok_or_else(|| SnapshotError::UnknownKind((*name).to_owned()))
                })
                .collect::<Result<_, _>>()?;
            let mut restored = Partition::new(
                self.registry.clone(),
                PartitionId(partition),
                self.config.clone(),
            );
            restored.epoch = Epoch(epoch);
            restored.last_epoch = Epoch(epoch);
            restored.last_seq = Seq(last_seq);
            restored.last_ts = Timestamp(last_ts);
            self.partition = Some(restored);
            return Ok(());
        }
        let kind_map = &self.kind_map;
        let map_kind = |kind: u16| {
            kind_map
                .get(usize::from(kind))
                .copied()
                .ok_or_else(|| SnapshotError::Structure(format!("kind index {kind} not in header")))
        };
        let Some(partition) = self.partition.as_mut() else {
            return Err(SnapshotError::Structure(
                "first record is not a header".into(),
            ));
        };
        match record {
            Record::Header { .. } => {}
            Record::Lineage { last_epoch } => {
                if Epoch(last_epoch) > partition.epoch {
                    return Err(SnapshotError::Structure(format!(
                        "last entry epoch {last_epoch} above the copy's epoch {}",
                        partition.epoch.0
                    )));
                }
                partition.last_epoch = Epoch(last_epoch);
            }
            Record::Producer { producer, seq } => {
                partition.producers.insert(producer.to_owned(), seq);
                self.producers += 1;
            }
            Record::Key { kind, key, state } => {
                let kind = map_kind(kind)?;
                partition.stores[usize::from(kind.0)].insert_passive(key, state);
                self.keys += 1;
            }
            Record::Timer { kind, key, tag, at } => {
                let kind = map_kind(kind)?;
                partition
                    .timers
                    .set(kind, key, tag, Timestamp(at), usize::MAX);
                self.timers += 1;
            }
            Record::End {
                keys,
                timers,
                producers,
            } => {
                if (keys, timers, producers) != (self.keys, self.timers, self.producers) {
                    return Err(SnapshotError::Structure(format!(
                        "end record counts {keys}/{timers}/{producers} keys/timers/producers, \
                         stream held {}/{}/{}",
                        self.keys, self.timers, self.producers
                    )));
                }
                self.ended = true;
            }
        }
        Ok(())
    }

    /// The restored partition, if the stream was complete.
    pub fn finish(self) -> Result<Partition, SnapshotError> {
        match self.partition {
            Some(partition) if self.ended => Ok(partition),
            _ => Err(SnapshotError::Truncated {
                chunks: self.next_index,
            }),
        }
    }
}
