//! Alert fan-out: every applied alert goes to a bounded broadcast channel that
//! SSE subscribers read. A subscriber that falls more than `alert_buffer`
//! behind loses the oldest alerts and is told how many, instead of the node
//! buffering without bound. The last [`RECENT`] alerts are also kept, so a
//! dashboard opened now, or a subscriber asking for a replay
//! (`GET /v1/alerts?replay=N`), sees what happened a moment ago.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use eddy_core::AlertRecord;
use tokio::sync::broadcast;

/// Alerts kept for `GET /v1/alerts/recent`.
pub const RECENT: usize = 100;

/// Publishes alerts to any number of subscribers.
#[derive(Clone)]
pub struct AlertHub {
    sender: broadcast::Sender<Arc<AlertRecord>>,
    recent: Arc<Mutex<VecDeque<Arc<AlertRecord>>>>,
}

impl AlertHub {
    /// A hub keeping `buffer` alerts for slow subscribers.
    pub fn new(buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        AlertHub {
            sender,
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(RECENT))),
        }
    }

    /// Publishes one alert; without subscribers it is dropped (the partition
    /// log, not this channel, is the record).
    pub fn publish(&self, alert: AlertRecord) {
        metrics::counter!("eddy_alerts_total", "kind" => alert.kind).increment(1);
        crate::history::TOTALS.add_alert();
        let alert = Arc::new(alert);
        // A poisoned lock only means a panic while pushing; the deque is
        // still a valid list of alerts, so keep using it.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Arc::clone(&alert));
        // Sent under the lock, so `subscribe_with_recent` gives every alert
        // exactly once: in its snapshot or on its channel. A broadcast send
        // does not block.
        let _ = self.sender.send(alert);
        drop(recent);
    }

    /// A new subscriber, seeing alerts published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlertRecord>> {
        self.sender.subscribe()
    }

    /// A new subscriber and the alerts kept from before it (oldest first):
    /// each alert is in exactly one of the two, so a replay followed by the
    /// live stream neither misses nor repeats one.
    pub fn subscribe_with_recent(
        &self,
    ) -> (broadcast::Receiver<Arc<AlertRecord>>, Vec<Arc<AlertRecord>>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        (self.sender.subscribe(), recent.iter().cloned().collect())
    }

    /// Up to `limit` of the latest alerts, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<AlertRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let skip = recent.len().saturating_sub(limit);
        recent.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::{PartitionId, Seq, Timestamp};

    fn alert(n: u64) -> AlertRecord {
        AlertRecord {
            partition: PartitionId(1),
            seq: Seq(n),
            ts: Timestamp(n),
            kind: "device",
            key: format!("d{n}"),
            alert: serde_json::json!({"n": n}),
            cause: None,
        }
    }

    #[test]
    fn a_subscriber_gets_each_alert_once_from_the_snapshot_or_the_channel() {
        let hub = AlertHub::new(1024);
        for n in 0..5 {
            hub.publish(alert(n));
        }
        let (mut live, kept) = hub.subscribe_with_recent();
        for n in 5..8 {
            hub.publish(alert(n));
        }
        let mut seen: Vec<u64> = kept.iter().map(|a| a.seq.0).collect();
        while let Ok(alert) = live.try_recv() {
            seen.push(alert.seq.0);
        }
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn recent_keeps_the_latest_in_order() {
        let hub = AlertHub::new(4);
        for n in 0..(RECENT as u64 + 10) {
            hub.publish(alert(n));
        }
        let all = hub.recent(usize::MAX);
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].key, "d10");
        let last: Vec<_> = hub.recent(2).iter().map(|a| a.key.clone()).collect();
        assert_eq!(last, ["d108", "d109"]);
    }
}
