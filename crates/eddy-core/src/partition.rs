//! A partition: one shard of the key space, holding many keys as virtual actors,
//! their timers and the producers' high-water marks. Sans-io: every call takes
//! the time as an argument and returns its effects in [`Outputs`].
//!
//! Two ways in:
//! - the owner calls [`Partition::submit`] (and [`Partition::tick`]), which
//!   stamps an [`Entry`] with `(epoch, seq, ts)`, applies it and hands it out for
//!   the log and the backups;
//! - a backup or a recovering owner calls [`Partition::apply`] with entries in
//!   log order, reaching the same state and the same alerts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::entry::{EntryView, EventRef, InputView};
use crate::error::{ApplyError, CodecError};
use crate::id::{Epoch, KindId, PartitionId, Seq};
use crate::log::EntryBatch;
use crate::registry::Registry;
use crate::store::{Effects, KeyStore, RunPolicy, StoreInput};
use crate::time::Timestamp;
use crate::timers::Timers;

/// Limits and policies of one partition. Every bound here is enforced; what
/// happens at the bound is documented per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionConfig {
    /// A key untouched this long is passivated to its encoded form. Lower saves
    /// memory, higher saves decode work for keys with gaps between events.
    pub idle_timeout_ms: u64,
    /// Most active keys; beyond it the least recently activated are passivated
    /// at the next tick even if not idle (bounds memory, DESIGN §11).
    pub max_active_keys: usize,
    /// Most timer firings one tick logs, so a backlog of overdue timers after a
    /// restart catches up at a bounded rate instead of all at once.
    pub max_timer_fires_per_tick: usize,
    /// Most pending timers per key; further `set_timer` calls with new tags are
    /// refused and counted in [`PartitionStats::timers_refused`].
    pub max_timers_per_key: usize,
    /// Most idempotent producers tracked; events from further producers are
    /// rejected with [`ApplyError::TooManyProducers`].
    pub max_producers: usize,
    /// Longest key accepted, in bytes.
    pub max_key_bytes: usize,
    /// Run handlers under `catch_unwind` and restore the key on panic. Costs an
    /// encode of an active key's state per event.
    pub isolate_panics: bool,
    /// Seed of the key maps' hasher. The shell passes a random value so clients
    /// cannot force collisions; nothing depends on it for determinism.
    pub hash_seed: u64,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            idle_timeout_ms: 60_000,
            max_active_keys: 100_000,
            max_timer_fires_per_tick: 1_000,
            max_timers_per_key: 64,
            max_producers: 10_000,
            max_key_bytes: 256,
            isolate_panics: true,
            hash_seed: 0,
        }
    }
}

/// An alert emitted by an applied entry. `(partition, seq)` identifies it, so
/// consumers can drop duplicates after a failover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    /// The partition of the key.
    pub partition: PartitionId,
    /// The entry that emitted it.
    pub seq: Seq,
    /// The entry's time.
    pub ts: Timestamp,
    /// The key's kind.
    pub kind: &'static str,
    /// The key.
    pub key: String,
    /// The alert rendered as JSON.
    pub alert: serde_json::Value,
    /// The event that raised it, if it carried a producer id (none for a
    /// timer's alert): lets a consumer tie an alert to its input, e.g. the
    /// transaction that looked like fraud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<AlertCause>,
}

/// The `(producer, seq)` of the event behind an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertCause {
    /// The producer id.
    pub producer: String,
    /// Its sequence number for the event.
    pub seq: u64,
}

/// Effects of calls into a partition; the caller drains them after each call.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Entries the owner logged, encoded, in order: append to the log, send to
    /// backups. Encoded once here so neither needs to encode again.
    pub log: EntryBatch,
    /// Alerts to publish once their entries are acknowledged.
    pub alerts: Vec<AlertRecord>,
}

impl Outputs {
    /// Forgets everything, keeping the buffers for reuse.
    pub fn clear(&mut self) {
        self.log.clear();
        self.alerts.clear();
    }
}

/// Result of submitting an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Logged and applied at this position.
    Applied(Seq),
    /// The producer's seq is at or below its high-water mark: a retry of an event
    /// already applied. Nothing changed.
    Duplicate,
}

/// What a backup did with entries its owner shipped
/// ([`Partition::apply_replicated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Replicated {
    /// Every entry is applied (or was already); the replica holds the log
    /// through this position.
    Applied {
        /// Last position held.
        through: Seq,
    },
    /// The entries do not follow the replica's last position (a gap: entries
    /// lost in transit, or the replica is new or diverged); nothing after
    /// `have` was applied. The owner sends a snapshot.
    NeedSnapshot {
        /// Last position held.
        have: Seq,
    },
    /// The sender's epoch is below the highest this replica has seen: it is a
    /// deposed owner. Nothing was applied (fencing, DESIGN §6).
    Stale {
        /// Highest epoch seen.
        current: Epoch,
    },
    /// The sender's epoch is newer than any the replica's committed
    /// configuration shows, and the configuration did not catch up in time:
    /// nothing was applied. Only the configuration makes an epoch known, so
    /// no peer message can raise a fence on its word alone.
    EpochUnknown {
        /// The partition's epoch in the replica's configuration.
        known: Epoch,
    },
}

/// Counters describing a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionStats {
    /// Keys holding decoded state.
    pub keys_active: usize,
    /// Keys held encoded.
    pub keys_passive: usize,
    /// Timers waiting to fire.
    pub timers_pending: usize,
    /// `set_timer` calls refused by `max_timers_per_key`.
    pub timers_refused: u64,
    /// Position of the last applied entry.
    pub last_seq: Seq,
    /// Highest epoch seen.
    pub epoch: Epoch,
}

/// A complete, order-independent description of a partition's logical state,
/// for comparing replicas and checking determinism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDump {
    /// Last applied position.
    pub last_seq: Seq,
    /// (kind, key) → encoded state.
    pub keys: BTreeMap<(String, String), Vec<u8>>,
    /// Pending timers as (kind, key, tag, due) in firing order.
    pub timers: Vec<(String, String, u64, Timestamp)>,
    /// Producer high-water marks.
    pub producers: BTreeMap<String, u64>,
}

/// One shard of keys.
pub struct Partition {
    pub(crate) registry: Arc<Registry>,
    pub(crate) id: PartitionId,
    pub(crate) config: PartitionConfig,
    pub(crate) epoch: Epoch,
    /// Epoch of the last applied entry. Unlike `epoch` a promotion does not
    /// raise it, so comparing copies by (last_epoch, last_seq) never prefers
    /// a short copy that was merely promoted.
    pub(crate) last_epoch: Epoch,
    pub(crate) last_seq: Seq,
    pub(crate) last_ts: Timestamp,
    pub(crate) stores: Vec<Box<dyn KeyStore>>,
    pub(crate) timers: Timers,
    pub(crate) producers: HashMap<String, u64>,
    effects: Effects,
}

impl Partition {
    /// An empty partition hosting every kind of `registry`.
    pub fn new(registry: Arc<Registry>, id: PartitionId, config: PartitionConfig) -> Self {
        let stores = registry
            .kinds()
            .filter_map(|(kind, _)| registry.new_store(kind, config.hash_seed))
            .collect();
        let timers = Timers::new(registry.len());
        Partition {
            registry,
            id,
            config,
            epoch: Epoch::default(),
            last_epoch: Epoch::default(),
            last_seq: Seq::default(),
            last_ts: Timestamp::default(),
            stores,
            timers,
            producers: HashMap::new(),
            effects: Effects::default(),
        }
    }

    /// This partition's id.
    pub fn id(&self) -> PartitionId {
        self.id
    }

    /// The registry the partition was built with.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Highest epoch seen.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Raises the epoch (on promotion). An epoch is never lowered: a lower value
    /// is ignored and `false` returned.
    pub fn set_epoch(&mut self, epoch: Epoch) -> bool {
        if epoch < self.epoch {
            return false;
        }
        self.epoch = epoch;
        true
    }

    /// Epoch of the last applied entry: with [`Partition::last_seq`], how
    /// far this copy's log goes (a promotion raises [`Partition::epoch`],
    /// not this).
    pub fn last_epoch(&self) -> Epoch {
        self.last_epoch
    }

    /// Position of the last applied entry.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Time of the last applied entry.
    pub fn last_ts(&self) -> Timestamp {
        self.last_ts
    }

    /// Owner path: logs `input` at the next position and applies it.
    ///
    /// The entry's time is `now`, or the last entry's time if that is later, so
    /// log time never runs backwards even across owners with skewed clocks.
    pub fn submit(
        &mut self,
        now: Timestamp,
        input: EventRef<'_>,
        out: &mut Outputs,
    ) -> Result<Submitted, ApplyError> {
        if let Some(producer) = &input.producer
            && self.is_duplicate(producer.producer, producer.seq)
        {
            return Ok(Submitted::Duplicate);
        }
        let entry = EntryView {
            epoch: self.epoch,
            seq: self.last_seq.next(),
            ts: now.max(self.last_ts),
            input: InputView::Event(input),
        };
        self.apply_entry(&entry, &mut out.alerts)?;
        out.log.push(&entry);
        Ok(Submitted::Applied(entry.seq))
    }

    /// Owner path, called periodically: logs and applies firings of timers due at
    /// `now` (at most `max_timer_fires_per_tick`), then passivates idle keys.
    /// Returns how many timers fired.
    pub fn tick(&mut self, now: Timestamp, out: &mut Outputs) -> usize {
        let mut fired = 0;
        while fired < self.config.max_timer_fires_per_tick {
            let Some(due) = self.timers.next_due(now) else {
                break;
            };
            // The key is copied out because applying the entry removes the timer
            // it is borrowed from; one small allocation per firing, not per event.
            let (kind, key, tag) = (due.kind, due.key.clone(), due.tag);
            let entry = EntryView {
                epoch: self.epoch,
                seq: self.last_seq.next(),
                ts: now.max(self.last_ts),
                input: InputView::Timer {
                    kind,
                    key: &key,
                    tag,
                },
            };
            match self.apply_entry(&entry, &mut out.alerts) {
                Ok(()) => out.log.push(&entry),
                Err(_) => {
                    // The handler panicked (or the key's state no longer decodes):
                    // drop the timer so one poisoned timer cannot stall all others.
                    // The entry was not logged, so replicas never see it.
                    self.timers.remove(kind, &key, tag);
                }
            }
            fired += 1;
        }
        self.passivate_idle(now);
        fired
    }

    /// Passivates keys idle for `idle_timeout_ms` and any beyond
    /// `max_active_keys`. Not a state change: replicas may call it freely.
    pub fn passivate_idle(&mut self, now: Timestamp) -> usize {
        let per_kind_max = self.config.max_active_keys / self.stores.len().max(1);
        self.stores
            .iter_mut()
            .map(|store| store.passivate(now, self.config.idle_timeout_ms, per_kind_max))
            .sum()
    }

    /// Replica / replay path: applies the next entry of the log.
    ///
    /// Rejects entries from an epoch below the highest seen (a stale owner) and
    /// entries that are not exactly the next position; nothing changes then.
    pub fn apply(&mut self, entry: &EntryView<'_>, out: &mut Outputs) -> Result<(), ApplyError> {
        self.apply_entry(entry, &mut out.alerts)
    }

    /// [`apply`](Self::apply) for an entry as encoded in an [`EntryBatch`] or on
    /// the wire. Returns the entry's seq.
    pub fn apply_encoded(&mut self, bytes: &[u8], out: &mut Outputs) -> Result<Seq, ApplyError> {
        let entry: EntryView<'_> =
            postcard::from_bytes(bytes).map_err(|err| ApplyError::Malformed(err.to_string()))?;
        self.apply_entry(&entry, &mut out.alerts)?;
        Ok(entry.seq)
    }

    /// Backup path: applies entries shipped by the owner of `epoch`, encoded
    /// back-to-back ([`crate::EntryBatch::as_bytes`]; empty is a barrier that
    /// only reports the position). Entries at or below the last position are
    /// resends and skipped, so shipping is idempotent. Alerts the entries
    /// raise are dropped: only the owner publishes. Entries before a failure
    /// stay applied, and the answer says how far the replica got.
    ///
    /// A copy continues only the log of the owner it follows: the one of
    /// its own epoch, learnt from that owner's snapshot (or its entries
    /// after one). A newer owner's entries or barrier ask for a snapshot
    /// instead, even when the position fits: this copy's tail may hold a
    /// deposed owner's unacknowledged writes at positions where the newer
    /// owner's log has others (Raft's log-matching check, which
    /// `prevLogTerm` makes; here the new owner's snapshot does).
    pub fn apply_replicated(&mut self, epoch: Epoch, entries: &[u8]) -> Replicated {
        if epoch < self.epoch {
            return Replicated::Stale {
                current: self.epoch,
            };
        }
        if epoch > self.epoch && self.last_seq > Seq(0) {
            return Replicated::NeedSnapshot {
                have: self.last_seq,
            };
        }
        self.apply_entries(epoch, entries)
    }

    /// Replays this copy's own write-ahead log over it, record by record:
    /// the entries continue the copy (it wrote or confirmed them in this
    /// order), so only each entry's own epoch fences it.
    pub fn replay_logged(&mut self, entries: &[u8]) -> Replicated {
        self.apply_entries(Epoch(u64::MAX), entries)
    }

    fn apply_entries(&mut self, epoch: Epoch, entries: &[u8]) -> Replicated {
        // The epoch is learnt from applied entries only: a copy must never
        // claim an epoch whose log it does not hold, or a takeover comparing
        // (epoch, position) could prefer it over a copy with more writes.
        let mut rest = entries;
        let mut alerts = Vec::new();
        while !rest.is_empty() {
            let (entry, tail) = match postcard::take_from_bytes::<EntryView<'_>>(rest) {
                Ok(decoded) => decoded,
                Err(_) => {
                    return Replicated::NeedSnapshot {
                        have: self.last_seq,
                    };
                }
            };
            rest = tail;
            if entry.epoch > epoch {
                // An owner stamps its entries with its own epoch or an older
                // one: a copy never learns an epoch the message does not
                // carry (the caller checked that epoch against the
                // configuration).
                return Replicated::NeedSnapshot {
                    have: self.last_seq,
                };
            }
            if entry.seq <= self.last_seq {
                continue;
            }
            match self.apply_entry(&entry, &mut alerts) {
                Ok(()) => {
                    alerts.clear();
                    self.epoch = self.epoch.max(entry.epoch);
                }
                Err(ApplyError::StaleEpoch { current, .. }) => {
                    return Replicated::Stale { current };
                }
                Err(_) => {
                    return Replicated::NeedSnapshot {
                        have: self.last_seq,
                    };
                }
            }
        }
        Replicated::Applied {
            through: self.last_seq,
        }
    }

    fn is_duplicate(&self, producer: &str, seq: u64) -> bool {
        self.producers.get(producer).is_some_and(|hwm| seq <= *hwm)
    }

    fn apply_entry(
        &mut self,
        entry: &EntryView<'_>,
        alerts: &mut Vec<AlertRecord>,
    ) -> Result<(), ApplyError> {
        if entry.epoch < self.epoch {
            return Err(ApplyError::StaleEpoch {
                current: self.epoch,
                got: entry.epoch,
            });
        }
        let expected = self.last_seq.next();
        if entry.seq != expected {
            return Err(ApplyError::OutOfOrder {
                expected,
                got: entry.seq,
            });
        }
        // Log time never runs backwards: `submit` clamps the owner's clock
        // to the log's. Entries from a peer or from disk are checked, not
        // trusted (a fuzzed WAL record tripped the assertion this was).
        if entry.ts < self.last_ts {
            return Err(ApplyError::TimeBackwards {
                last: self.last_ts,
                got: entry.ts,
            });
        }

        self.effects.clear();
        let policy = RunPolicy {
            isolate_panics: self.config.isolate_panics,
        };
        let (kind, key, cause) = match entry.input {
            InputView::Event(event) => {
                if event.key.len() > self.config.max_key_bytes {
                    return Err(ApplyError::KeyTooLong {
                        len: event.key.len(),
                        limit: self.config.max_key_bytes,
                    });
                }
                let duplicate = match &event.producer {
                    Some(p) if self.is_duplicate(p.producer, p.seq) => true,
                    Some(p)
                        if !self.producers.contains_key(p.producer)
                            && self.producers.len() >= self.config.max_producers =>
                    {
                        return Err(ApplyError::TooManyProducers {
                            limit: self.config.max_producers,
                        });
                    }
                    _ => false,
                };
                // A duplicate that reached the log (only possible if two owners
                // raced, which epochs prevent) still takes its position, as a no-op.
                if !duplicate {
                    let store = store_mut(&mut self.stores, event.kind)?;
                    store.run(
                        event.key,
                        StoreInput::Event(event.payload),
                        entry.ts,
                        policy,
                        &mut self.effects,
                    )?;
                    if let Some(p) = &event.producer {
                        match self.producers.get_mut(p.producer) {
                            Some(hwm) => *hwm = p.seq,
                            None => {
                                self.producers.insert(p.producer.to_owned(), p.seq);
                            }
                        }
                    }
                }
                (event.kind, event.key, event.producer)
            }
            InputView::Timer { kind, key, tag } => {
                // A firing whose timer is gone (cancelled in between on a lagging
                // replica cannot happen — the log orders both — so this guards only
                // against a duplicated entry) is a no-op that keeps its position.
                if let Some(due) = self.timers.remove(kind, key, tag) {
                    let store = store_mut(&mut self.stores, kind)?;
                    if let Err(err) = store.run(
                        key,
                        StoreInput::Timer(tag),
                        entry.ts,
                        policy,
                        &mut self.effects,
                    ) {
                        // Put the timer back: the entry did not apply.
                        self.timers.set(kind, key, tag, due, usize::MAX);
                        return Err(err);
                    }
                }
                (kind, key, None)
            }
        };

        if self.effects.stopped {
            self.timers.clear_key(kind, key);
        } else {
            self.timers.apply(
                kind,
                key,
                &self.effects.timer_ops,
                self.config.max_timers_per_key,
            );
        }
        if !self.effects.alerts.is_empty() {
            let kind_name = self.stores[usize::from(kind.0)].kind();
            for alert in self.effects.alerts.drain(..) {
                alerts.push(AlertRecord {
                    partition: self.id,
                    seq: entry.seq,
                    ts: entry.ts,
                    kind: kind_name,
                    key: key.to_owned(),
                    alert,
                    cause: cause.map(|p| AlertCause {
                        producer: p.producer.to_owned(),
                        seq: p.seq,
                    }),
                });
            }
        }
        self.epoch = self.epoch.max(entry.epoch);
        self.last_epoch = entry.epoch;
        self.last_seq = entry.seq;
        self.last_ts = entry.ts;
        Ok(())
    }

    /// The state of `key` as JSON; `None` if the key has no state.
    pub fn state_json(
        &self,
        kind: KindId,
        key: &str,
    ) -> Result<Option<serde_json::Value>, ApplyError> {
        let store = self
            .stores
            .get(usize::from(kind.0))
            .ok_or(ApplyError::UnknownKind(kind.0))?;
        Ok(store.state_json(key)?)
    }

    /// Counters for metrics and status.
    pub fn stats(&self) -> PartitionStats {
        let (keys_active, keys_passive) = self
            .stores
            .iter()
            .map(|s| s.counts())
            .fold((0, 0), |(a, p), (a2, p2)| (a + a2, p + p2));
        PartitionStats {
            keys_active,
            keys_passive,
            timers_pending: self.timers.len(),
            timers_refused: self.timers.refused,
            last_seq: self.last_seq,
            epoch: self.epoch,
        }
    }

    /// The logical state, independent of which keys are active and of map order.
    /// Fails if a key's state cannot be encoded.
    pub fn dump(&self) -> Result<PartitionDump, CodecError> {
        let mut keys = BTreeMap::new();
        let mut failed = None;
        for store in &self.stores {
            let kind = store.kind();
            store.for_each_encoded(&mut |key, bytes| match bytes {
                Ok(bytes) => {
                    keys.insert((kind.to_owned(), key.to_owned()), bytes.to_vec());
                }
                Err(err) => failed = Some(err),
            });
        }
        if let Some(err) = failed {
            return Err(err);
        }
        let timers = self
            .timers
            .iter()
            .map(|t| {
                let kind = self.stores[usize::from(t.kind.0)].kind().to_owned();
                (kind, t.key.to_string(), t.tag, t.at)
            })
            .collect();
        Ok(PartitionDump {
            last_seq: self.last_seq,
            keys,
            timers,
            producers: self
                .producers
                .iter()
                .map(|(p, s)| (p.clone(), *s))
                .collect(),
        })
    }
}

fn store_mut(
    stores: &mut [Box<dyn KeyStore>],
    kind: KindId,
) -> Result<&mut Box<dyn KeyStore>, ApplyError> {
    stores
        .get_mut(usize::from(kind.0))
        .ok_or(ApplyError::UnknownKind(kind.0))
}
