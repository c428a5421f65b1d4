//! Throughput history: a bounded ring of per-second samples of this process's
//! event and alert counters, served on `GET /v1/stats/history` so the
//! dashboard's chart is full the moment it opens (not only from what the
//! browser saw since).
//!
//! Two parts. [`Totals`] are process-wide counters (relaxed atomics, bumped
//! where the matching Prometheus counters are, once per batch or alert: no
//! allocation, no lock on the event path). [`History`] is sans-io: a small
//! task in `node.rs` reads the totals once a second and hands them to
//! [`History::observe`] with the time; the ring stores the differences. Like
//! `/metrics`, the totals are per process: several nodes embedded in one
//! process would share them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Samples kept: ten minutes at one a second.
pub const HISTORY_SAMPLES: usize = 600;

/// How often the node samples its totals.
pub const SAMPLE_INTERVAL_MS: u64 = 1_000;

/// Monotonic process-wide counters behind the history (the same events as
/// `eddy_events_received_total`, `eddy_events_applied_total` and
/// `eddy_alerts_total`).
#[derive(Debug, Default)]
pub struct Totals {
    received: AtomicU64,
    applied: AtomicU64,
    alerts: AtomicU64,
}

/// The process's totals.
pub static TOTALS: Totals = Totals {
    received: AtomicU64::new(0),
    applied: AtomicU64::new(0),
    alerts: AtomicU64::new(0),
};

impl Totals {
    /// Counts `n` events accepted by ingress.
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` events applied as owner.
    pub fn add_applied(&self, n: u64) {
        self.applied.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one alert published.
    pub fn add_alert(&self) {
        self.alerts.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now. Each is read on its own (relaxed): a sample may
    /// count a batch's events in one second and its alerts in the next,
    /// which a per-second chart does not show.
    pub fn read(&self) -> Counts {
        Counts {
            received: self.received.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            alerts: self.alerts.load(Ordering::Relaxed),
        }
    }
}

/// A reading of the totals, or the difference of two readings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Events accepted by ingress.
    pub received: u64,
    /// Events applied as owner.
    pub applied: u64,
    /// Alerts published.
    pub alerts: u64,
}

impl Counts {
    /// `self - earlier`, field by field; zero where a counter went back
    /// (it never does in one process, but a reading must not wrap).
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            received: self.received.saturating_sub(earlier.received),
            applied: self.applied.saturating_sub(earlier.applied),
            alerts: self.alerts.saturating_sub(earlier.alerts),
        }
    }
}

/// What happened in one interval ending at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// End of the interval, wall-clock milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Length of the interval (about [`SAMPLE_INTERVAL_MS`]; longer if the
    /// sampling task was late), never zero.
    pub span_ms: u64,
    /// Counts within the interval.
    pub counts: Counts,
}

/// A sample as the API serves it: rates per second, so a late sample does
/// not look like a spike and a client need not divide.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateSample {
    /// End of the interval, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Length of the interval in milliseconds.
    pub span_ms: u64,
    /// Events accepted per second.
    pub received_per_s: f64,
    /// Events applied per second.
    pub applied_per_s: f64,
    /// Alerts published per second.
    pub alerts_per_s: f64,
}

impl From<&Sample> for RateSample {
    fn from(s: &Sample) -> Self {
        // Lossy above 2^53 events in one second only.
        let per_s = |n: u64| n as f64 * 1_000.0 / s.span_ms as f64;
        RateSample {
            at_ms: s.at_ms,
            span_ms: s.span_ms,
            received_per_s: per_s(s.counts.received),
            applied_per_s: per_s(s.counts.applied),
            alerts_per_s: per_s(s.counts.alerts),
        }
    }
}

/// The ring: the last `capacity` samples, oldest first. Allocates once.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    samples: VecDeque<Sample>,
    /// The previous reading and its time: the start of the next interval.
    last: Option<(u64, Counts)>,
}

impl History {
    /// An empty ring keeping `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        History {
            capacity,
            samples: VecDeque::with_capacity(capacity),
            last: None,
        }
    }

    /// Records a reading of the totals taken at `now_ms`. The first reading
    /// only starts the first interval; a reading not later than the previous
    /// one (the wall clock stepped back) restarts it without a sample.
    pub fn observe(&mut self, now_ms: u64, totals: Counts) {
        if let Some((then_ms, earlier)) = self.last
            && now_ms > then_ms
        {
            if self.samples.len() == self.capacity {
                self.samples.pop_front();
            }
            self.samples.push_back(Sample {
                at_ms: now_ms,
                span_ms: now_ms - then_ms,
                counts: totals.since(earlier),
            });
            debug_assert!(self.samples.len() <= self.capacity);
        }
        self.last = Some((now_ms, totals));
    }

    /// The samples ending after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> impl Iterator<Item = &Sample> {
        // Samples are in time order unless the clock stepped back; a scan of
        // at most `capacity` entries keeps this right either way.
        self.samples.iter().filter(move |s| s.at_ms > since_ms)
    }

    /// How many samples the ring holds.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the ring holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The most samples it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The shell around [`History`]: reads [`TOTALS`] every
/// [`SAMPLE_INTERVAL_MS`] with the wall clock until `shutdown` turns true.
pub async fn sample(
    history: std::sync::Arc<std::sync::Mutex<History>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(SAMPLE_INTERVAL_MS));
    // After a stall, one sample spanning it, not a burst of catch-up ticks.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let now_ms = crate::worker::now().0;
        // A poisoned lock means a panic mid-`observe`, which leaves the ring
        // valid (push and pop are each complete); keep sampling.
        history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(now_ms, TOTALS.read());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(applied: u64) -> Counts {
        Counts {
            received: applied * 2,
            applied,
            alerts: applied / 10,
        }
    }

    #[test]
    fn first_reading_starts_the_interval_and_records_nothing() {
        let mut h = History::new(4);
        h.observe(1_000, counts(500));
        assert!(h.is_empty());
        h.observe(2_000, counts(800));
        let all: Vec<_> = h.since(0).copied().collect();
        assert_eq!(
            all,
            vec![Sample {
                at_ms: 2_000,
                span_ms: 1_000,
                counts: Counts {
                    received: 600,
                    applied: 300,
                    alerts: 30,
                },
            }]
        );
    }

    #[test]
    fn ring_is_bounded_keeps_the_newest_in_order_when_it_wraps() {
        let mut h = History::new(3);
        for second in 0..=10u64 {
            h.observe(second * 1_000, counts(second * 100));
            assert!(h.len() <= 3, "ring grew to {}", h.len());
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.capacity(), 3);
        let ends: Vec<u64> = h.since(0).map(|s| s.at_ms).collect();
        assert_eq!(
            ends,
            vec![8_000, 9_000, 10_000],
            "oldest first, newest kept"
        );
        assert!(h.since(0).all(|s| s.counts.applied == 100));
    }

    #[test]
    fn since_returns_only_later_samples() {
        let mut h = History::new(10);
        for second in 0..6u64 {
            h.observe(second * 1_000, counts(second));
        }
        let ends: Vec<u64> = h.since(3_000).map(|s| s.at_ms).collect();
        assert_eq!(ends, vec![4_000, 5_000]);
        assert_eq!(h.since(5_000).count(), 0);
    }

    #[test]
    fn rates_are_per_second_of_the_real_span_and_keep_fractions() {
        let mut h = History::new(4);
        h.observe(10_000, counts(0));
        // A late tick: 3 events over 2 s is 1.5/s, not 3/s and not 0.
        h.observe(12_000, counts(3));
        let rate = RateSample::from(h.since(0).next().expect("one sample"));
        assert_eq!(rate.span_ms, 2_000);
        assert_eq!(rate.applied_per_s, 1.5);
        assert_eq!(rate.received_per_s, 3.0);
        assert_eq!(rate.alerts_per_s, 0.0);
    }

    #[test]
    fn clock_stepping_back_restarts_the_interval_without_a_sample() {
        let mut h = History::new(4);
        h.observe(5_000, counts(10));
        h.observe(4_000, counts(20));
        assert!(h.is_empty());
        h.observe(5_000, counts(25));
        let s = h.since(0).next().expect("one sample");
        assert_eq!((s.span_ms, s.counts.applied), (1_000, 5));
    }

    #[test]
    fn totals_count_what_is_added() {
        let totals = Totals::default();
        totals.add_received(7);
        totals.add_applied(5);
        totals.add_alert();
        totals.add_alert();
        assert_eq!(
            totals.read(),
            Counts {
                received: 7,
                applied: 5,
                alerts: 2,
            }
        );
    }
}
