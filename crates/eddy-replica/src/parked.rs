//! Replication messages that name an epoch this node's committed
//! configuration does not show yet, held until it does.
//!
//! Only the committed configuration makes an epoch known (as a Kafka
//! follower learns leader epochs from the controller, never from a peer). A
//! new owner's first `Replicate` or snapshot can reach a backup a moment
//! before the commit that elected it does; it waits here, in arrival order
//! per partition, and runs once the configuration caught up. A message the
//! configuration does not vouch for within [`MAX_WAIT`] — a forged epoch,
//! or a node whose configuration is stuck — is answered
//! `EpochUnknown` without touching the copy: no peer can raise a fence on
//! its word alone. Sans-io: the caller passes the time and the epochs.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use eddy_core::{Epoch, PartitionId};

/// How long a message waits for the configuration. Below the owner's
/// patience (2 s), so it hears the refusal rather than a silent link.
pub const MAX_WAIT: Duration = Duration::from_millis(1_500);
/// Messages one worker holds at most.
const MAX_MESSAGES: usize = 4_096;
/// Bytes (entries, chunks) one worker holds at most.
const MAX_BYTES: usize = 64 << 20;

/// What became of a message offered to [`Parked::admit`].
pub enum Admit<M> {
    /// Its epoch is known and nothing of its partition waits: run it now.
    Now(M),
    /// Held until the configuration shows its epoch.
    Held,
    /// Held messages fill the budget: refuse it now.
    Refused(M),
}

struct Waiting<M> {
    epoch: Epoch,
    since: Instant,
    bytes: usize,
    message: M,
}

/// The held messages of one worker, per partition in arrival order.
pub struct Parked<M> {
    held: BTreeMap<PartitionId, VecDeque<Waiting<M>>>,
    messages: usize,
    bytes: usize,
}

impl<M> Default for Parked<M> {
    fn default() -> Self {
        Parked {
            held: BTreeMap::new(),
            messages: 0,
            bytes: 0,
        }
    }
}

impl<M> Parked<M> {
    /// Offers a message of `partition` at `epoch` (`bytes` long) while the
    /// configuration shows `known`. A message behind held ones waits too,
    /// whatever its epoch: a partition's messages run in arrival order.
    pub fn admit(
        &mut self,
        partition: PartitionId,
        epoch: Epoch,
        known: Epoch,
        bytes: usize,
        message: M,
        now: Instant,
    ) -> Admit<M> {
        if epoch <= known && !self.held.contains_key(&partition) {
            return Admit::Now(message);
        }
        if self.messages >= MAX_MESSAGES || self.bytes.saturating_add(bytes) > MAX_BYTES {
            return Admit::Refused(message);
        }
        self.messages += 1;
        self.bytes += bytes;
        self.held.entry(partition).or_default().push_back(Waiting {
            epoch,
            since: now,
            bytes,
            message,
        });
        Admit::Held
    }

    /// The held messages whose epoch `known` now shows, and those queued
    /// behind them up to the first it does not, in order.
    pub fn release(&mut self, known: impl Fn(PartitionId) -> Epoch) -> Vec<(PartitionId, M)> {
        self.take_while(|partition, waiting| waiting.epoch <= known(partition))
    }

    /// The held messages that waited [`MAX_WAIT`] or more, and those queued
    /// behind them: the caller refuses them.
    pub fn expired(&mut self, now: Instant) -> Vec<(PartitionId, M)> {
        let mut expired = Vec::new();
        let partitions: Vec<PartitionId> = self
            .held
            .iter()
            .filter(|(_, queue)| {
                queue
                    .front()
                    .is_some_and(|w| now.saturating_duration_since(w.since) >= MAX_WAIT)
            })
            .map(|(p, _)| *p)
            .collect();
        for partition in partitions {
            for waiting in self.held.remove(&partition).unwrap_or_default() {
                self.forget(&waiting);
                expired.push((partition, waiting.message));
            }
        }
        expired
    }

    /// Messages held now.
    pub fn len(&self) -> usize {
        self.messages
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    fn take_while(
        &mut self,
        ready: impl Fn(PartitionId, &Waiting<M>) -> bool,
    ) -> Vec<(PartitionId, M)> {
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        let mut freed = (0, 0);
        for (partition, queue) in &mut self.held {
            while queue.front().is_some_and(|w| ready(*partition, w)) {
                if let Some(waiting) = queue.pop_front() {
                    freed = (freed.0 + 1, freed.1 + waiting.bytes);
                    out.push((*partition, waiting.message));
                }
            }
            if queue.is_empty() {
                emptied.push(*partition);
            }
        }
        for partition in emptied {
            self.held.remove(&partition);
        }
        self.messages -= freed.0;
        self.bytes -= freed.1;
        out
    }

    fn forget(&mut self, waiting: &Waiting<M>) {
        self.messages -= 1;
        self.bytes -= waiting.bytes;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const P: PartitionId = PartitionId(3);
    const Q: PartitionId = PartitionId(4);

    fn ids(out: Vec<(PartitionId, u32)>) -> Vec<u32> {
        out.into_iter().map(|(_, m)| m).collect()
    }

    #[test]
    fn a_known_epoch_runs_now_and_a_newer_one_waits_for_the_configuration() {
        let now = Instant::now();
        let mut parked = Parked::default();
        assert!(matches!(
            parked.admit(P, Epoch(2), Epoch(2), 10, 1u32, now),
            Admit::Now(1)
        ));
        assert!(matches!(
            parked.admit(P, Epoch(3), Epoch(2), 10, 2, now),
            Admit::Held
        ));
        // Behind a held message, even a known epoch waits: order per partition.
        assert!(matches!(
            parked.admit(P, Epoch(2), Epoch(2), 10, 3, now),
            Admit::Held
        ));
        // Another partition is not held up.
        assert!(matches!(
            parked.admit(Q, Epoch(1), Epoch(1), 10, 4, now),
            Admit::Now(4)
        ));
        assert!(parked.release(|_| Epoch(2)).is_empty());
        assert_eq!(ids(parked.release(|_| Epoch(3))), vec![2, 3]);
        assert!(parked.is_empty());
        assert!(matches!(
            parked.admit(P, Epoch(3), Epoch(3), 10, 5, now),
            Admit::Now(5)
        ));
    }

    #[test]
    fn release_stops_at_the_first_epoch_still_unknown() {
        let now = Instant::now();
        let mut parked = Parked::default();
        for (epoch, id) in [(3, 1u32), (3, 2), (5, 3), (3, 4)] {
            assert!(matches!(
                parked.admit(P, Epoch(epoch), Epoch(2), 1, id, now),
                Admit::Held
            ));
        }
        assert_eq!(ids(parked.release(|_| Epoch(4))), vec![1, 2]);
        assert_eq!(parked.len(), 2);
        assert_eq!(ids(parked.release(|_| Epoch(5))), vec![3, 4]);
    }

    #[test]
    fn a_forged_epoch_is_refused_after_the_wait_with_everything_behind_it() {
        let start = Instant::now();
        let mut parked = Parked::default();
        assert!(matches!(
            parked.admit(P, Epoch(u64::MAX), Epoch(2), 1, 1u32, start),
            Admit::Held
        ));
        assert!(matches!(
            parked.admit(P, Epoch(2), Epoch(2), 1, 2, start + MAX_WAIT / 2),
            Admit::Held
        ));
        assert!(matches!(
            parked.admit(Q, Epoch(9), Epoch(2), 1, 3, start + MAX_WAIT / 2),
            Admit::Held
        ));
        assert!(parked.expired(start + MAX_WAIT / 2).is_empty());
        assert_eq!(ids(parked.expired(start + MAX_WAIT)), vec![1, 2]);
        assert_eq!(parked.len(), 1);
        // The configuration never vouches for the forged epoch: nothing
        // of P waits any more, and P's next message runs.
        assert!(matches!(
            parked.admit(P, Epoch(2), Epoch(2), 1, 4, start + MAX_WAIT),
            Admit::Now(4)
        ));
    }

    #[test]
    fn the_budget_refuses_once_full_and_frees_on_release() {
        let now = Instant::now();
        let mut parked = Parked::default();
        assert!(matches!(
            parked.admit(P, Epoch(3), Epoch(2), MAX_BYTES, 1u32, now),
            Admit::Held
        ));
        assert!(matches!(
            parked.admit(Q, Epoch(3), Epoch(2), 1, 2, now),
            Admit::Refused(2)
        ));
        assert_eq!(ids(parked.release(|_| Epoch(3))), vec![1]);
        for id in 0..MAX_MESSAGES as u32 {
            assert!(matches!(
                parked.admit(Q, Epoch(3), Epoch(2), 0, id, now),
                Admit::Held
            ));
        }
        assert!(matches!(
            parked.admit(Q, Epoch(3), Epoch(2), 0, 0, now),
            Admit::Refused(0)
        ));
    }
}
