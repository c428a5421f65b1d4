//! The network as the scenario wants it: which directed links are cut, and
//! loss/delay everywhere. Each change is pushed to every running node's
//! fault hook as that node's view (what it cannot send to, what it does not
//! hear), and again to a node that restarts.

use std::collections::BTreeSet;

use serde_json::json;

use super::cluster::{Cluster, ClusterError};

/// Cut links and degradation.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// (from, to), 1-based: traffic from → to is dropped.
    cut: BTreeSet<(usize, usize)>,
    loss: f64,
    delay_ms: u64,
    /// The injected replication bug (checker test).
    pub drop_log_entries: bool,
}

impl Network {
    /// `node` cut off from everyone, both ways.
    pub fn isolate(&mut self, node: usize, nodes: usize) {
        for other in (1..=nodes).filter(|&o| o != node) {
            self.cut.insert((node, other));
            self.cut.insert((other, node));
        }
    }

    /// `node` hears nobody; what it sends still arrives.
    pub fn deafen(&mut self, node: usize, nodes: usize) {
        for other in (1..=nodes).filter(|&o| o != node) {
            self.cut.insert((other, node));
        }
    }

    /// `side` and the rest cannot reach each other.
    pub fn split(&mut self, side: &[usize], nodes: usize) {
        for a in side {
            for b in (1..=nodes).filter(|b| !side.contains(b)) {
                self.cut.insert((*a, b));
                self.cut.insert((b, *a));
            }
        }
    }

    /// Loss and delay on every link.
    pub fn degrade(&mut self, loss: f64, delay_ms: u64) {
        self.loss = loss;
        self.delay_ms = delay_ms;
    }

    /// Everything works again.
    pub fn heal(&mut self) {
        let bug = self.drop_log_entries;
        *self = Network::default();
        self.drop_log_entries = bug;
    }

    /// Whether anything is broken.
    pub fn is_faulty(&self) -> bool {
        !self.cut.is_empty() || self.loss > 0.0 || self.delay_ms > 0 || self.drop_log_entries
    }

    /// Pushes node `i`'s view to it.
    pub fn apply_to(&self, cluster: &Cluster, i: usize) -> Result<(), ClusterError> {
        let name = |n: &usize| format!("node-{n}");
        let drop_to: Vec<String> = self
            .cut
            .iter()
            .filter(|(a, _)| *a == i)
            .map(|(_, b)| name(b))
            .collect();
        let drop_from: Vec<String> = self
            .cut
            .iter()
            .filter(|(_, b)| *b == i)
            .map(|(a, _)| name(a))
            .collect();
        cluster.set_faults(
            i,
            &json!({
                "drop_to": drop_to,
                "drop_from": drop_from,
                "loss": self.loss,
                "delay_ms": self.delay_ms,
                "drop_log_entries": self.drop_log_entries,
            }),
        )
    }

    /// Pushes every node's view.
    pub fn apply(&self, cluster: &Cluster) -> Result<(), ClusterError> {
        for i in 1..=cluster.len() {
            self.apply_to(cluster, i)?;
        }
        Ok(())
    }
}
