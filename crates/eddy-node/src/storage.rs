//! `data_dir`: each partition copy this node holds, on disk, so a whole
//! cluster can restart (DESIGN §6).
//!
//! Per partition `p` a directory `p0042/` with
//! - `snapshot`: the copy at some point, as `eddy_core` snapshot chunks each
//!   prefixed by its length (the chunks carry their own checksums); written
//!   to `snapshot.tmp` and renamed, so a crash leaves the old or the new one;
//! - `wal`: every batch of entries the copy applied since, as records
//!   `length u32 | xxh3_64 u64 | entries`, appended before the batch is
//!   acknowledged (owner) or confirmed (backup), by the storage writer
//!   thread ([`crate::writer`]).
//!
//! Loading replays the WAL over the snapshot, each entry fenced by its own epoch
//! (`Partition::replay_logged`). A torn last record (a crash mid-write) is
//! reported and the copy loaded up to it; a damaged snapshot is reported and
//! the copy skipped — never loaded silently; either way the node leaves that
//! partition's ISR before it serves the copy (`crate::ownership`). Whether writes are flushed to the device is the `fsync`
//! policy ([`crate::writer::FsyncPolicy`]); by default they survive a
//! process kill (the page cache does), not a machine crash.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_core::{Partition, PartitionConfig, PartitionId, Registry, Replicated, SnapshotReader};
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

/// Compact a partition's WAL into a snapshot beyond this size.
pub const COMPACT_AFTER_BYTES: u64 = 8 * 1024 * 1024;

/// A storage operation failed; carries the file or partition.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An earlier write of the partition's log failed; appends fail until a
    /// snapshot of the copy is written (nothing was written).
    #[error("partition {}: the write-ahead log is broken since an earlier write failed; waiting for a snapshot", partition.0)]
    Broken {
        /// The partition.
        partition: PartitionId,
    },
    /// The storage writer has stopped (nothing was written).
    #[error("partition {}: the storage writer has stopped", partition.0)]
    Stopped {
        /// The partition.
        partition: PartitionId,
    },
    /// Written but not synced to the device under `fsync = "batch"`.
    #[error("partition {}: cannot sync the write-ahead log: {reason}", partition.0)]
    Unsynced {
        /// The partition.
        partition: PartitionId,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is damaged.
    #[error("{path}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The data directory of this node.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

/// The copies a load found, and those it could not load (a partition
/// directory, or the data directory itself).
pub type Reloaded = (Vec<Loaded>, Vec<(Option<PartitionId>, StorageError)>);

/// The partitions of a load that cannot be vouched for — not loaded
/// (damaged), or loaded only up to a damaged or torn log record — each
/// reported once (a log line, `eddy_storage_damaged_total`).
pub fn untrusted_after_load(reloaded: &Reloaded) -> std::collections::BTreeSet<PartitionId> {
    let (loaded, damaged) = reloaded;
    for (partition, err) in damaged {
        metrics::counter!("eddy_storage_damaged_total").increment(1);
        tracing::error!(partition = partition.map(|p| p.0), %err, "a partition copy on disk is damaged and was not loaded; it comes back from its replicas");
    }
    for copy in loaded {
        if let Some(err) = &copy.warning {
            metrics::counter!("eddy_storage_damaged_total").increment(1);
            tracing::warn!(partition = copy.partition.0, %err, "loaded a copy up to a damaged or torn log record");
        }
    }
    damaged
        .iter()
        .filter_map(|(p, _)| *p)
        .chain(
            loaded
                .iter()
                .filter(|c| c.warning.is_some())
                .map(|c| c.partition),
        )
        .collect()
}

/// A copy loaded at start, with what the load had to say about it.
pub struct Loaded {
    /// The partition.
    pub partition: PartitionId,
    /// The copy.
    pub copy: Partition,
    /// WAL bytes on disk (for compaction).
    pub wal_bytes: u64,
    /// A problem reported while loading (a torn WAL tail).
    pub warning: Option<StorageError>,
}

impl Storage {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Storage {
            dir: dir.to_owned(),
        })
    }

    fn partition_dir(&self, partition: PartitionId) -> PathBuf {
        self.dir.join(format!("p{:04}", partition.0))
    }

    /// The partition's write-ahead log file.
    pub fn wal_path(&self, partition: PartitionId) -> PathBuf {
        self.partition_dir(partition).join("wal")
    }

    /// Opens (creating) the partition's write-ahead log for appending.
    pub fn open_wal(&self, partition: PartitionId) -> Result<File, StorageError> {
        let dir = self.partition_dir(partition);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = self.wal_path(partition);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))
    }

    /// Flushes everything written under the directory to the device. On
    /// Linux one `syncfs` of its file system: a group touches hundreds of
    /// partition logs, and an `fsync` each would be a device flush each.
    pub fn sync_all(&self) -> Result<(), StorageError> {
        let dir = File::open(&self.dir).map_err(io(&self.dir))?;
        #[cfg(target_os = "linux")]
        {
            rustix::fs::syncfs(&dir).map_err(|errno| StorageError::Io {
                path: self.dir.clone(),
                source: errno.into(),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
                let wal = entry.path().join("wal");
                match File::open(&wal) {
                    Ok(file) => file.sync_data().map_err(io(&wal))?,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(StorageError::Io { path: wal, source }),
                }
            }
            dir.sync_all().map_err(io(&self.dir))
        }
    }

    /// A batch of entries (back-to-back) framed as one log record:
    /// `length u32 | xxh3_64 u64 | entries`.
    pub fn wal_record(entries: &[u8]) -> Result<Vec<u8>, StorageError> {
        let len = u32::try_from(entries.len()).map_err(|_| StorageError::Damaged {
            path: PathBuf::from("wal"),
            reason: format!("a batch of {} bytes does not fit a record", entries.len()),
        })?;
        let mut record = Vec::with_capacity(12 + entries.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&xxh3_64(entries).to_le_bytes());
        record.extend_from_slice(entries);
        Ok(record)
    }

    /// Replaces the partition's snapshot with `chunks` and empties its WAL;
    /// with `sync`, the snapshot is on the device before the WAL goes.
    pub fn write_snapshot(
        &self,
        partition: PartitionId,
        chunks: &[Vec<u8>],
        sync: bool,
    ) -> Result<(), StorageError> {
        let dir = self.partition_dir(partition);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join("snapshot.tmp");
        let mut bytes = Vec::with_capacity(chunks.iter().map(|c| c.len() + 4).sum());
        for chunk in chunks {
            let len = u32::try_from(chunk.len()).map_err(|_| StorageError::Damaged {
                path: tmp.clone(),
                reason: "snapshot chunk over 4 GiB".into(),
            })?;
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(chunk);
        }
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        if sync {
            file.sync_all().map_err(io(&tmp))?;
        }
        let path = dir.join("snapshot");
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if sync {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&dir))?;
        }
        let wal = dir.join("wal");
        match fs::remove_file(&wal) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StorageError::Io { path: wal, source }),
        }
    }

    /// Forgets the partition (its copy was dropped).
    pub fn remove(&self, partition: PartitionId) -> Result<(), StorageError> {
        let dir = self.partition_dir(partition);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StorageError::Io { path: dir, source }),
        }
    }

    /// Loads every partition copy on disk that `wanted` names. Copies that
    /// cannot be loaded are returned as errors (reported by the caller),
    /// not skipped silently.
    pub fn load_all(
        &self,
        wanted: impl Fn(PartitionId) -> bool,
        registry: &Arc<Registry>,
        config: &PartitionConfig,
    ) -> Reloaded {
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(source) => {
                errors.push((
                    None,
                    StorageError::Io {
                        path: self.dir.clone(),
                        source,
                    },
                ));
                return (loaded, errors);
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix('p')) else {
                continue;
            };
            let Ok(partition) = number.parse::<u32>().map(PartitionId) else {
                continue;
            };
            if !wanted(partition) {
                continue;
            }
            match self.load(partition, registry, config) {
                Ok(copy) => loaded.push(copy),
                Err(err) => errors.push((Some(partition), err)),
            }
        }
        (loaded, errors)
    }

    fn load(
        &self,
        partition: PartitionId,
        registry: &Arc<Registry>,
        config: &PartitionConfig,
    ) -> Result<Loaded, StorageError> {
        let dir = self.partition_dir(partition);
        let snapshot = dir.join("snapshot");
        let mut copy = match fs::read(&snapshot) {
            Ok(bytes) => read_snapshot(&snapshot, &bytes, registry, config)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Partition::new(registry.clone(), partition, config.clone())
            }
            Err(source) => {
                return Err(StorageError::Io {
                    path: snapshot,
                    source,
                });
            }
        };
        if copy.id() != partition {
            return Err(StorageError::Damaged {
                path: snapshot,
                reason: format!("holds partition {}", copy.id().0),
            });
        }
        let wal = dir.join("wal");
        let mut bytes = Vec::new();
        match File::open(&wal) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes).map_err(io(&wal))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StorageError::Io { path: wal, source }),
        }
        let warning = replay(&wal, &bytes, &mut copy);
        // An empty copy is a copy too: an ISR member that held a partition
        // before its first write is elected from it after a restart.
        Ok(Loaded {
            partition,
            copy,
            wal_bytes: bytes.len() as u64,
            warning,
        })
    }
}

/// Decodes a `snapshot` file's bytes (`path` names it in errors): chunks
/// each prefixed by its length, checked and restored by
/// [`SnapshotReader`]; anything damaged or incomplete is an error.
pub fn read_snapshot(
    path: &Path,
    mut bytes: &[u8],
    registry: &Arc<Registry>,
    config: &PartitionConfig,
) -> Result<Partition, StorageError> {
    let damaged = |reason: String| StorageError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let mut reader = SnapshotReader::new(registry.clone(), config.clone());
    while !bytes.is_empty() {
        let Some(len) = bytes.get(..4) else {
            return Err(damaged("truncated chunk length".into()));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(chunk) = bytes.get(4..4 + len) else {
            return Err(damaged("truncated chunk".into()));
        };
        reader.push(chunk).map_err(|err| damaged(err.to_string()))?;
        bytes = &bytes[4 + len..];
    }
    reader.finish().map_err(|err| damaged(err.to_string()))
}

/// Applies the WAL's records (`path` names it in reports) to `copy` in
/// order; stops at the first damaged or torn one and says so.
pub fn replay(path: &Path, mut bytes: &[u8], copy: &mut Partition) -> Option<StorageError> {
    let mut offset = 0usize;
    while !bytes.is_empty() {
        let damaged = |reason: String| {
            Some(StorageError::Damaged {
                path: path.to_owned(),
                reason: format!(
                    "{reason} at byte {offset}; {} bytes not replayed",
                    bytes.len()
                ),
            })
        };
        let Some(header) = bytes.get(..12) else {
            return damaged("torn record header".into());
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&header[4..12]);
        let Some(entries) = bytes.get(12..12 + len) else {
            return damaged("torn record".into());
        };
        if xxh3_64(entries) != u64::from_le_bytes(sum) {
            return damaged("checksum mismatch".into());
        }
        match copy.replay_logged(entries) {
            Replicated::Applied { .. } => {}
            other => return damaged(format!("entries do not follow the copy ({other:?})")),
        }
        bytes = &bytes[12 + len..];
        offset += 12 + len;
    }
    None
}
