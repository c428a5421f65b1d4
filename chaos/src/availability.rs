//! Availability as the clients saw it: per partition, the longest time it
//! had writes outstanding and acknowledged none. Derived from the
//! workload's journal after the run: for each event's first send, the wait
//! until the next acknowledgement of any event of the same partition (its
//! own included); an event never followed by one waits until the run's end.
//! The longest such wait starts at a first unacknowledged send, so this is
//! the longest interval "a first unacknowledged send → the next
//! acknowledgement" of issue 14.
//!
//! A request carries events of many partitions and is acknowledged as a
//! whole, and each client sends one request at a time; so a partition that
//! cannot acknowledge holds up events of healthy partitions in the same
//! request too, and those can show waits as long. The bound a scenario sets
//! (`max_unavailable_s`) is on the longest, which the stuck partition has.

use std::collections::BTreeMap;

use serde::Serialize;

/// One event of the journal, as the computation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The partition its key maps to.
    pub partition: u32,
    /// First send, ms since the run started (`None`: never sent).
    pub sent_ms: Option<u64>,
    /// Acknowledgement, ms since the run started.
    pub acked_ms: Option<u64>,
}

/// The longest time one partition could not acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Outage {
    /// The partition.
    pub partition: u32,
    /// How long, ms.
    pub longest_ms: u64,
    /// When it began (the first unacknowledged send), s since start.
    pub from_s: f64,
    /// Whether it lasted to the run's end (no acknowledgement came).
    pub to_end: bool,
}

/// The longest outage of any partition in `samples`, `end_ms` being the
/// end of the run; `None` if nothing was sent. Of equal outages the first
/// in the journal is named.
pub fn longest_outage(samples: &[Sample], end_ms: u64) -> Option<Outage> {
    // Per partition: the sorted acknowledgement times, then every send.
    let mut acks: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for s in samples {
        if let Some(at) = s.acked_ms {
            acks.entry(s.partition).or_default().push(at);
        }
    }
    for times in acks.values_mut() {
        times.sort_unstable();
    }
    let mut worst: Option<Outage> = None;
    for s in samples {
        let Some(sent) = s.sent_ms else {
            continue;
        };
        let times = acks.get(&s.partition).map(Vec::as_slice).unwrap_or(&[]);
        let next = times.get(times.partition_point(|&a| a < sent)).copied();
        let (until, to_end) = match next {
            Some(at) => (at, false),
            None => (end_ms.max(sent), true),
        };
        let outage = Outage {
            partition: s.partition,
            longest_ms: until - sent,
            from_s: sent as f64 / 1000.0,
            to_end,
        };
        let better = worst.is_none_or(|w| outage.longest_ms > w.longest_ms);
        if better {
            worst = Some(outage);
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(partition: u32, sent_ms: u64, acked_ms: Option<u64>) -> Sample {
        Sample {
            partition,
            sent_ms: Some(sent_ms),
            acked_ms,
        }
    }

    #[test]
    fn the_gap_runs_from_the_first_unacknowledged_send_to_the_next_ack() {
        // Partition 7: fine until 1,000 ms; then writes at 1,000, 1,500 and
        // 2,000 ms wait until one is acknowledged at 6,000 ms (the others
        // later still). Partition 3 acknowledges throughout.
        let journal = [
            sample(7, 0, Some(20)),
            sample(3, 0, Some(15)),
            sample(7, 900, Some(950)),
            sample(7, 1_000, Some(6_000)),
            sample(7, 1_500, Some(6_500)),
            sample(3, 1_500, Some(1_510)),
            sample(7, 2_000, Some(7_000)),
            sample(3, 4_000, Some(4_020)),
        ];
        let worst = longest_outage(&journal, 10_000).unwrap();
        assert_eq!(
            worst,
            Outage {
                partition: 7,
                longest_ms: 5_000,
                from_s: 1.0,
                to_end: false
            }
        );
    }

    #[test]
    fn another_event_acknowledged_meanwhile_ends_the_gap() {
        // One slow event (retried for 4 s) while its partition acknowledged
        // others every 100 ms: the partition was available.
        let mut journal = vec![sample(1, 0, Some(4_000))];
        journal.extend((1..40).map(|i| sample(1, i * 100, Some(i * 100 + 5))));
        let worst = longest_outage(&journal, 5_000).unwrap();
        assert_eq!(worst.partition, 1);
        // Sent at 0, the next acknowledgement (of the event sent at 100)
        // at 105: not the slow event's own 4 s.
        assert_eq!(worst.longest_ms, 105, "{worst:?}");
    }

    #[test]
    fn a_partition_that_never_acknowledges_again_is_out_until_the_end() {
        let journal = [
            sample(2, 100, Some(120)),
            sample(5, 300, Some(310)),
            sample(5, 2_000, None),
            sample(5, 2_500, None),
            Sample {
                partition: 9,
                sent_ms: None,
                acked_ms: None,
            },
        ];
        let worst = longest_outage(&journal, 9_000).unwrap();
        assert_eq!(
            worst,
            Outage {
                partition: 5,
                longest_ms: 7_000,
                from_s: 2.0,
                to_end: true
            }
        );
        assert_eq!(longest_outage(&journal[4..], 9_000), None, "nothing sent");
    }
}
