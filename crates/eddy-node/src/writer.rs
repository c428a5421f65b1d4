//! The storage writer: one thread owns the files of `data_dir`. Partition
//! workers hand it appends, checkpoints and removals and go on — no worker
//! waits on the disk (STYLE §18). Each request names what to do once it is
//! done, and only then is the write acknowledged (owner) or confirmed
//! (backup): with `data_dir`, nothing is acknowledged that is not in the log.
//!
//! **Group commit.** The thread takes every request queued at once, performs
//! them in order — a partition's appends of the group coalesced into one
//! write — syncs once per group as [`FsyncPolicy`] says (one `syncfs` of the
//! data directory's file system, not one `fsync` per partition log), then
//! completes the whole group. Per-partition order is the queue's order, so a
//! partition's log is written in the order its worker applied.
//!
//! **A failed append breaks its partition's log.** Appending the next batch
//! behind a missing one would leave a gap that replay stops at, losing every
//! later batch although each was acknowledged. So after a failure every
//! append of that partition fails too, until a checkpoint — a snapshot of the
//! copy, which holds everything it applied — succeeds. Workers see broken
//! partitions through [`StorageWriter::is_broken`] and send that checkpoint
//! in place of their next append.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use eddy_core::{PartitionConfig, PartitionId, Registry};
use serde::{Deserialize, Serialize};

use crate::faults::Faults;
use crate::storage::{Reloaded, Storage, StorageError};

/// Requests queued for the writer before a worker's send blocks. A worker
/// only blocks when the disk is this far behind, which is the backpressure
/// we want (the ingress budget then fills and clients get 429).
const QUEUE_DEPTH: usize = 16_384;

/// Requests performed (and synced) as one group at most, so completions of
/// an early request are not held back without end under a steady stream.
const MAX_GROUP: usize = 4_096;

/// What runs when a request is done, on the writer thread: it must only
/// hand the result on (a channel send), never block.
pub type Done = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Runs `done`, if there is one, with `result`.
pub fn complete(done: Option<Done>, result: Result<(), StorageError>) {
    if let Some(done) = done {
        done(result);
    }
}

/// When the write-ahead log is flushed to the device (`fsync` in the
/// configuration). Acknowledged writes survive a process crash in every
/// policy (the page cache has them); this is about a machine crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Never; the OS writes back when it likes. A machine crash can lose the
    /// last acknowledged writes of every replica that crashed with it.
    #[default]
    Never,
    /// Before each group of writes is acknowledged. A machine crash loses
    /// nothing acknowledged; costs a device flush per group.
    Batch,
    /// At most this long after a write; acknowledgements do not wait. A
    /// machine crash loses at most this much of acknowledged writes.
    Interval(Duration),
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Batch => f.write_str("batch"),
            FsyncPolicy::Interval(every) => write!(f, "{}ms", every.as_millis()),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<FsyncPolicy, String> {
        match text {
            "never" => Ok(FsyncPolicy::Never),
            "batch" => Ok(FsyncPolicy::Batch),
            other => other
                .strip_suffix("ms")
                .and_then(|ms| ms.trim().parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!(
                        "`{other}` is not an fsync policy: use \"never\", \"batch\" or an interval such as \"100ms\""
                    )
                }),
        }
    }
}

impl Serialize for FsyncPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

enum Request {
    Append {
        partition: PartitionId,
        entries: Vec<u8>,
        done: Option<Done>,
    },
    Checkpoint {
        partition: PartitionId,
        chunks: Vec<Vec<u8>>,
        done: Option<Done>,
    },
    Remove {
        partition: PartitionId,
    },
    Barrier {
        partition: PartitionId,
        done: Option<Done>,
    },
    Load(Load),
}

/// A load of partition copies, run on the writer thread behind every write
/// queued before it.
pub struct Load {
    /// Which partitions.
    pub wanted: Box<dyn Fn(PartitionId) -> bool + Send>,
    /// The kinds the copies hold.
    pub registry: Arc<Registry>,
    /// Their limits.
    pub config: PartitionConfig,
    /// What receives the copies; dropped unrun if the writer stopped.
    pub done: Box<dyn FnOnce(Reloaded) + Send>,
}

/// Partitions whose log is broken (see the module doc), readable by the
/// workers without asking the writer.
struct Broken(Box<[AtomicBool]>);

impl Broken {
    fn get(&self, partition: PartitionId) -> bool {
        self.0
            .get(partition.0 as usize)
            .is_some_and(|b| b.load(Ordering::Acquire))
    }

    fn set(&self, partition: PartitionId, broken: bool) {
        if let Some(flag) = self.0.get(partition.0 as usize) {
            flag.store(broken, Ordering::Release);
        }
    }
}

/// The handle workers use; cheap to clone.
#[derive(Clone)]
pub struct StorageWriter {
    queue: SyncSender<Request>,
    broken: Arc<Broken>,
}

impl StorageWriter {
    /// Starts the writer thread over `storage` for partitions `0..partitions`.
    /// It stops when every handle is dropped.
    pub fn start(
        storage: Storage,
        fsync: FsyncPolicy,
        partitions: u32,
        faults: Arc<Faults>,
    ) -> std::io::Result<StorageWriter> {
        let (queue, requests) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
        let broken = Arc::new(Broken(
            (0..partitions).map(|_| AtomicBool::new(false)).collect(),
        ));
        let thread = Thread {
            storage,
            fsync,
            faults,
            broken: broken.clone(),
            open: HashMap::new(),
            max_open: crate::fd_limit::open_logs_now(partitions),
            unsynced: false,
            synced_at: Instant::now(),
        };
        std::thread::Builder::new()
            .name("eddy-storage".into())
            .spawn(move || thread.run(requests))?;
        Ok(StorageWriter { queue, broken })
    }

    /// Whether `partition`'s log is broken: its next write must be a
    /// checkpoint, not an append.
    pub fn is_broken(&self, partition: PartitionId) -> bool {
        self.broken.get(partition)
    }

    /// Appends a batch of entries (back-to-back) to the partition's log.
    pub fn append(&self, partition: PartitionId, entries: Vec<u8>, done: Option<Done>) {
        self.send(Request::Append {
            partition,
            entries,
            done,
        });
    }

    /// Replaces the partition's snapshot with `chunks` and empties its log.
    pub fn checkpoint(&self, partition: PartitionId, chunks: Vec<Vec<u8>>, done: Option<Done>) {
        self.send(Request::Checkpoint {
            partition,
            chunks,
            done,
        });
    }

    /// Completes once every write of `partition` queued before it is done,
    /// with an error if the log is broken by then: how a duplicate (which
    /// writes nothing) learns that the original it repeats is in the log.
    pub fn barrier(&self, partition: PartitionId, done: Option<Done>) {
        self.send(Request::Barrier { partition, done });
    }

    /// Forgets the partition's files (its copy was dropped).
    pub fn remove(&self, partition: PartitionId) {
        self.send(Request::Remove { partition });
    }

    /// Loads the copies on disk once every write queued before is in its
    /// file: how a restarted partition worker gets back what the failed
    /// one logged, including writes still queued when it failed.
    pub fn load(&self, load: Load) {
        self.send(Request::Load(load));
    }

    fn send(&self, request: Request) {
        let request = match self.queue.try_send(request) {
            Ok(()) => return,
            Err(TrySendError::Full(request)) => {
                metrics::counter!("eddy_storage_queue_full_total").increment(1);
                match self.queue.send(request) {
                    Ok(()) => return,
                    Err(err) => err.0,
                }
            }
            Err(TrySendError::Disconnected(request)) => request,
        };
        // The thread is gone (it only stops when its queue closes, or by a
        // panic): fail loudly rather than acknowledge.
        let (partition, done) = match request {
            Request::Append {
                partition, done, ..
            }
            | Request::Checkpoint {
                partition, done, ..
            }
            | Request::Barrier { partition, done } => (partition, done),
            Request::Remove { .. } | Request::Load(_) => return,
        };
        complete(done, Err(StorageError::Stopped { partition }));
    }
}

struct Thread {
    storage: Storage,
    fsync: FsyncPolicy,
    faults: Arc<Faults>,
    broken: Arc<Broken>,
    open: HashMap<PartitionId, File>,
    /// Logs kept open between groups (`crate::fd_limit`); beyond it the
    /// handles are all closed and reopened on demand.
    max_open: usize,
    /// Whether anything was written since the last sync
    /// (`FsyncPolicy::Interval`).
    unsynced: bool,
    synced_at: Instant,
}

/// One partition's appends of a group: their records back to back, written
/// with one call, and what to run once they are written.
#[derive(Default)]
struct Pending {
    records: Vec<u8>,
    done: Vec<Option<Done>>,
}

/// What one group has written so far and what it will complete.
#[derive(Default)]
struct Group {
    pending: BTreeMap<PartitionId, Pending>,
    /// Written (or barriers behind written data): completed after the sync.
    written: Vec<(PartitionId, Option<Done>)>,
    /// Completed with their own result.
    finished: Vec<(Option<Done>, Result<(), StorageError>)>,
}

impl Thread {
    fn run(mut self, requests: Receiver<Request>) {
        loop {
            let first = match self.fsync {
                FsyncPolicy::Interval(every) if self.unsynced => {
                    match requests.recv_timeout(every.saturating_sub(self.synced_at.elapsed())) {
                        Ok(request) => request,
                        Err(RecvTimeoutError::Timeout) => {
                            self.sync_interval(true);
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match requests.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.perform(group);
        }
        self.sync_interval(true);
    }

    /// Performs one group in order — each partition's appends coalesced into
    /// one write, flushed before anything else touches that partition —
    /// syncs as the policy says, then completes.
    fn perform(&mut self, requests: Vec<Request>) {
        let mut group = Group::default();
        for request in requests {
            match request {
                Request::Append {
                    partition,
                    entries,
                    done,
                } => {
                    let record = if self.broken.get(partition) {
                        Err(StorageError::Broken { partition })
                    } else {
                        Storage::wal_record(&entries)
                    };
                    match record {
                        Ok(record) => {
                            let pending = group.pending.entry(partition).or_default();
                            pending.records.extend_from_slice(&record);
                            pending.done.push(done);
                        }
                        Err(err) => {
                            self.fail(partition, &err, "cannot write the write-ahead log");
                            group.finished.push((done, Err(err)));
                        }
                    }
                }
                Request::Checkpoint {
                    partition,
                    chunks,
                    done,
                } => {
                    self.flush(partition, &mut group);
                    // The old log is deleted: its handle must not be reused.
                    self.open.remove(&partition);
                    let result = self.injected(partition).and_then(|()| {
                        self.storage.write_snapshot(
                            partition,
                            &chunks,
                            self.fsync != FsyncPolicy::Never,
                        )
                    });
                    match result {
                        Ok(()) => {
                            if self.broken.get(partition) {
                                tracing::info!(
                                    partition = partition.0,
                                    "write-ahead log repaired by a snapshot"
                                );
                            }
                            self.broken.set(partition, false);
                            group.finished.push((done, Ok(())));
                        }
                        Err(err) => {
                            self.fail(partition, &err, "cannot write the snapshot");
                            group.finished.push((done, Err(err)));
                        }
                    }
                }
                Request::Barrier { partition, done } => {
                    self.flush(partition, &mut group);
                    if self.broken.get(partition) {
                        group
                            .finished
                            .push((done, Err(StorageError::Broken { partition })));
                    } else {
                        // Completed with this group's writes, after their sync.
                        group.written.push((partition, done));
                    }
                }
                Request::Load(load) => {
                    let partitions: Vec<PartitionId> = group.pending.keys().copied().collect();
                    for partition in partitions {
                        self.flush(partition, &mut group);
                    }
                    let loaded = self
                        .storage
                        .load_all(&*load.wanted, &load.registry, &load.config);
                    (load.done)(loaded);
                }
                Request::Remove { partition } => {
                    self.flush(partition, &mut group);
                    self.open.remove(&partition);
                    if let Err(err) = self.storage.remove(partition) {
                        tracing::warn!(partition = partition.0, %err, "cannot remove a retired copy's files");
                    }
                    self.broken.set(partition, false);
                }
            }
        }
        let partitions: Vec<PartitionId> = group.pending.keys().copied().collect();
        for partition in partitions {
            self.flush(partition, &mut group);
        }
        let Group {
            written,
            mut finished,
            ..
        } = group;
        match self.fsync {
            FsyncPolicy::Never => {
                finished.extend(written.into_iter().map(|(_, done)| (done, Ok(()))));
            }
            FsyncPolicy::Batch => {
                let synced = if written.is_empty() {
                    Ok(())
                } else {
                    self.sync_all()
                };
                for (partition, done) in written {
                    let result = match &synced {
                        Ok(()) => Ok(()),
                        Err(reason) => {
                            let err = StorageError::Unsynced {
                                partition,
                                reason: reason.clone(),
                            };
                            self.fail(partition, &err, "cannot sync the write-ahead log");
                            Err(err)
                        }
                    };
                    finished.push((done, result));
                }
            }
            FsyncPolicy::Interval(_) => {
                self.unsynced |= !written.is_empty();
                finished.extend(written.into_iter().map(|(_, done)| (done, Ok(()))));
            }
        }
        for (done, result) in finished {
            complete(done, result);
        }
        // After the completions: acknowledgements never wait for it.
        self.sync_interval(false);
        if self.open.len() > self.max_open {
            self.open.clear();
        }
    }

    /// Writes `partition`'s coalesced appends of the group, if any.
    fn flush(&mut self, partition: PartitionId, group: &mut Group) {
        let Some(pending) = group.pending.remove(&partition) else {
            return;
        };
        match self.write(partition, &pending.records) {
            Ok(()) => group
                .written
                .extend(pending.done.into_iter().map(|done| (partition, done))),
            Err(err) => {
                self.fail(partition, &err, "cannot write the write-ahead log");
                let reason = err.to_string();
                for done in pending.done {
                    let err = StorageError::Io {
                        path: self.storage.wal_path(partition),
                        source: std::io::Error::other(reason.clone()),
                    };
                    group.finished.push((done, Err(err)));
                }
            }
        }
    }

    fn write(&mut self, partition: PartitionId, records: &[u8]) -> Result<(), StorageError> {
        self.injected(partition)?;
        let file = match self.open.entry(partition) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(self.storage.open_wal(partition)?)
            }
        };
        // One write call for the group's records: a kill leaves them whole
        // or the last one torn, which loading detects.
        let written = file.write_all(records);
        written.map_err(|source| {
            self.open.remove(&partition);
            StorageError::Io {
                path: self.storage.wal_path(partition),
                source,
            }
        })
    }

    /// Flushes everything written so far to the device: one `syncfs` of the
    /// data directory's file system instead of one `fsync` per partition log
    /// (a group touches hundreds; each fsync is a device flush).
    fn sync_all(&self) -> Result<(), String> {
        self.storage.sync_all().map_err(|err| err.to_string())
    }

    /// Syncs what was written since the last sync once the interval passed
    /// (or now, with `force`).
    fn sync_interval(&mut self, force: bool) {
        let FsyncPolicy::Interval(every) = self.fsync else {
            return;
        };
        if !self.unsynced || (!force && self.synced_at.elapsed() < every) {
            return;
        }
        if let Err(reason) = self.sync_all() {
            // Already acknowledged: all we can do is say so and count.
            metrics::counter!("eddy_storage_write_errors_total").increment(1);
            tracing::error!(reason, "cannot sync the data directory");
        }
        self.unsynced = false;
        self.synced_at = Instant::now();
    }

    fn injected(&self, partition: PartitionId) -> Result<(), StorageError> {
        if self.faults.fails_storage() {
            return Err(StorageError::Io {
                path: self.storage.wal_path(partition),
                source: std::io::Error::other("injected storage fault"),
            });
        }
        Ok(())
    }

    fn fail(&self, partition: PartitionId, err: &StorageError, what: &'static str) {
        metrics::counter!("eddy_storage_write_errors_total").increment(1);
        if !self.broken.get(partition) {
            // Once per break, not once per batch refused behind it.
            tracing::error!(partition = partition.0, %err, "{what}; writes to the partition fail until a snapshot is written");
        }
        self.broken.set(partition, true);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::PathBuf;
    use std::sync::mpsc;

    use super::*;
    use crate::faults::FaultSpec;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eddy-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A writer over a fresh directory, and a way to wait for completions.
    struct Fixture {
        dir: PathBuf,
        storage: Storage,
        writer: StorageWriter,
        faults: Arc<Faults>,
        results: mpsc::Receiver<(u32, Result<(), String>)>,
        answer: mpsc::Sender<(u32, Result<(), String>)>,
    }

    impl Fixture {
        fn new(name: &str, fsync: FsyncPolicy) -> Fixture {
            let dir = scratch(name);
            let storage = Storage::open(&dir).unwrap();
            let faults = Arc::new(Faults::default());
            let writer = StorageWriter::start(storage.clone(), fsync, 8, faults.clone()).unwrap();
            let (answer, results) = mpsc::channel();
            Fixture {
                dir,
                storage,
                writer,
                faults,
                results,
                answer,
            }
        }

        /// A completion that reports `tag` and the outcome.
        fn done(&self, tag: u32) -> Option<Done> {
            let answer = self.answer.clone();
            Some(Box::new(move |result: Result<(), StorageError>| {
                let _ = answer.send((tag, result.map_err(|e| e.to_string())));
            }))
        }

        fn outcome(&self) -> (u32, Result<(), String>) {
            self.results
                .recv_timeout(Duration::from_secs(10))
                .expect("the writer completes every request")
        }

        fn wal(&self, partition: u32) -> Vec<u8> {
            std::fs::read(self.storage.wal_path(PartitionId(partition))).unwrap_or_default()
        }

        fn fail_storage(&self, fail: bool) {
            let spec = FaultSpec {
                fail_storage: fail,
                ..FaultSpec::default()
            };
            self.faults.set(&spec, |_| None);
        }
    }

    fn record(entries: &[u8]) -> Vec<u8> {
        Storage::wal_record(entries).unwrap()
    }

    #[test]
    fn appends_reach_the_log_in_order_before_they_complete() {
        for fsync in [
            FsyncPolicy::Never,
            FsyncPolicy::Batch,
            FsyncPolicy::Interval(Duration::from_millis(5)),
        ] {
            let f = Fixture::new(&format!("order-{fsync}"), fsync);
            for (tag, entries) in [b"first".as_slice(), b"second", b"third"]
                .iter()
                .enumerate()
            {
                f.writer
                    .append(PartitionId(3), entries.to_vec(), f.done(tag as u32));
            }
            for tag in 0..3 {
                assert_eq!(f.outcome(), (tag, Ok(())), "{fsync}");
            }
            let expected = [record(b"first"), record(b"second"), record(b"third")].concat();
            assert_eq!(f.wal(3), expected, "{fsync}");
            let _ = std::fs::remove_dir_all(&f.dir);
        }
    }

    #[test]
    fn a_failed_append_breaks_the_log_until_a_snapshot_repairs_it() {
        let f = Fixture::new("broken", FsyncPolicy::Never);
        let p = PartitionId(5);
        f.writer.append(p, b"one".to_vec(), f.done(1));
        assert_eq!(f.outcome(), (1, Ok(())));

        f.fail_storage(true);
        f.writer.append(p, b"two".to_vec(), f.done(2));
        let (tag, failed) = f.outcome();
        assert_eq!(tag, 2);
        assert!(
            failed.unwrap_err().contains("injected"),
            "the cause is named"
        );
        assert!(f.writer.is_broken(p));
        assert!(!f.writer.is_broken(PartitionId(6)), "only that partition");

        // The disk is back, but appending behind the missing batch would
        // leave a gap replay stops at: refused, and nothing written.
        f.fail_storage(false);
        f.writer.append(p, b"three".to_vec(), f.done(3));
        let (tag, refused) = f.outcome();
        assert_eq!(tag, 3);
        assert!(refused.unwrap_err().contains("broken"));
        assert_eq!(f.wal(5), record(b"one"), "nothing after the failure");

        // A snapshot (which holds everything the copy applied) repairs it.
        f.writer.checkpoint(p, vec![b"chunk".to_vec()], f.done(4));
        assert_eq!(f.outcome(), (4, Ok(())));
        assert!(!f.writer.is_broken(p));
        assert!(f.wal(5).is_empty(), "the snapshot replaced the log");
        f.writer.append(p, b"four".to_vec(), f.done(5));
        assert_eq!(f.outcome(), (5, Ok(())));
        assert_eq!(f.wal(5), record(b"four"));
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[test]
    fn a_failed_snapshot_leaves_the_log_broken() {
        let f = Fixture::new("snapshot-fails", FsyncPolicy::Batch);
        let p = PartitionId(1);
        f.fail_storage(true);
        f.writer.checkpoint(p, vec![b"chunk".to_vec()], f.done(1));
        assert!(f.outcome().1.is_err());
        assert!(f.writer.is_broken(p));
        f.fail_storage(false);
        f.writer.append(p, b"after".to_vec(), f.done(2));
        assert!(f.outcome().1.is_err(), "still waiting for a snapshot");
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[test]
    fn one_group_coalesces_appends_but_keeps_their_order_around_a_snapshot() {
        let dir = scratch("group");
        let storage = Storage::open(&dir).unwrap();
        let broken = Arc::new(Broken((0..4).map(|_| AtomicBool::new(false)).collect()));
        let mut thread = Thread {
            storage: storage.clone(),
            fsync: FsyncPolicy::Batch,
            faults: Arc::new(Faults::default()),
            broken,
            open: HashMap::new(),
            max_open: 4,
            unsynced: false,
            synced_at: Instant::now(),
        };
        let (answer, results) = mpsc::channel();
        let done = |tag: u32| -> Option<Done> {
            let answer = answer.clone();
            Some(Box::new(move |result: Result<(), StorageError>| {
                let _ = answer.send((tag, result.is_ok()));
            }))
        };
        let (p, q) = (PartitionId(1), PartitionId(2));
        let append = |partition, entries: &[u8], done| Request::Append {
            partition,
            entries: entries.to_vec(),
            done,
        };
        thread.perform(vec![
            append(p, b"a", done(1)),
            append(q, b"x", done(2)),
            append(p, b"b", done(3)),
            Request::Checkpoint {
                partition: p,
                chunks: vec![b"snap".to_vec()],
                done: done(4),
            },
            append(p, b"c", done(5)),
            Request::Barrier {
                partition: q,
                done: done(6),
            },
        ]);
        let mut outcomes: Vec<(u32, bool)> = results.try_iter().collect();
        outcomes.sort_unstable();
        assert_eq!(
            outcomes,
            (1..=6).map(|tag| (tag, true)).collect::<Vec<_>>(),
            "every request completed, once"
        );
        // a and b went into the log before the snapshot replaced it; c after.
        let wal = |partition| std::fs::read(storage.wal_path(partition)).unwrap_or_default();
        assert_eq!(wal(p), record(b"c"));
        assert_eq!(wal(q), record(b"x"));
        let snapshot = std::fs::read(dir.join("p0001").join("snapshot")).unwrap();
        assert_eq!(&snapshot[4..], b"snap");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fsync_policies_parse_and_print_back() {
        for text in ["never", "batch", "250ms"] {
            let policy: FsyncPolicy = text.parse().unwrap();
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(
            "100ms".parse::<FsyncPolicy>(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(100)))
        );
        for bad in ["always", "0ms", "ms", "10s", ""] {
            let err = bad.parse::<FsyncPolicy>().unwrap_err();
            assert!(err.contains("\"batch\""), "{bad}: {err}");
        }
    }
}
