//! Alert fan-out: every applied alert goes to a bounded broadcast channel that
//! SSE subscribers read. A subscriber that falls more than `alert_buffer`
//! behind loses the oldest alerts and is told how many, instead of the node
//! buffering without bound.

use std::sync::Arc;

use eddy_core::AlertRecord;
use tokio::sync::broadcast;

/// Publishes alerts to any number of subscribers.
#[derive(Clone)]
pub struct AlertHub {
    sender: broadcast::Sender<Arc<AlertRecord>>,
}

impl AlertHub {
    /// A hub keeping `buffer` alerts for slow subscribers.
    pub fn new(buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        AlertHub { sender }
    }

    /// Publishes one alert; without subscribers it is dropped (the partition
    /// log, not this channel, is the record).
    pub fn publish(&self, alert: AlertRecord) {
        metrics::counter!("eddy_alerts_total", "kind" => alert.kind).increment(1);
        let _ = self.sender.send(Arc::new(alert));
    }

    /// A new subscriber, seeing alerts published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlertRecord>> {
        self.sender.subscribe()
    }
}
