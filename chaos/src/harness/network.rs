//! The network as the scenario wants it: which directed links are cut, and
//! loss/delay everywhere. A backend ([`super::backend`]) makes it so after
//! each change: through every running node's fault hook as that node's view
//! (what it cannot send to, what it does not hear), or with nftables in the
//! nodes' namespaces ([`super::nft`]).

use std::collections::BTreeSet;

use serde_json::json;

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

    /// Peers node `i` cannot reach.
    pub fn cut_to(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.cut
            .iter()
            .filter(move |(a, _)| *a == i)
            .map(|(_, b)| *b)
    }

    /// Peers node `i` does not hear.
    pub fn cut_from(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.cut
            .iter()
            .filter(move |(_, b)| *b == i)
            .map(|(a, _)| *a)
    }

    /// Probability (0–1) that a message between nodes is lost.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Delay added between nodes, ms.
    pub fn delay_ms(&self) -> u64 {
        self.delay_ms
    }

    /// Node `i`'s view as its fault hook takes it (`POST /v1/admin/faults`),
    /// holding only the parts `share` gives to the hook: the namespace
    /// backend leaves cuts and loss (and delay, with netem) to the kernel.
    pub fn hook_spec(&self, i: usize, share: HookShare) -> serde_json::Value {
        let names = |nodes: &mut dyn Iterator<Item = usize>| -> Vec<String> {
            nodes.map(|n| format!("node-{n}")).collect()
        };
        let (drop_to, drop_from) = if share.links {
            (names(&mut self.cut_to(i)), names(&mut self.cut_from(i)))
        } else {
            (Vec::new(), Vec::new())
        };
        json!({
            "drop_to": drop_to,
            "drop_from": drop_from,
            "loss": if share.links { self.loss } else { 0.0 },
            "delay_ms": if share.delay { self.delay_ms } else { 0 },
            "drop_log_entries": self.drop_log_entries,
        })
    }
}

/// Which faults a backend leaves to the nodes' hook. `drop_log_entries`
/// (a bug inside the node, not a network fault) always goes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookShare {
    /// Cut links and loss.
    pub links: bool,
    /// Delay.
    pub delay: bool,
}

impl HookShare {
    /// Everything: the hook backend.
    pub const ALL: HookShare = HookShare {
        links: true,
        delay: true,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_gets_only_its_share() {
        let mut network = Network {
            drop_log_entries: true,
            ..Network::default()
        };
        network.isolate(2, 3);
        network.degrade(0.1, 20);
        let all = network.hook_spec(2, HookShare::ALL);
        assert_eq!(all["drop_to"], json!(["node-1", "node-3"]));
        assert_eq!(all["drop_from"], json!(["node-1", "node-3"]));
        assert_eq!(all["loss"], json!(0.1));
        assert_eq!(all["delay_ms"], json!(20));
        // The namespace backend without netem: nftables cuts and loses, the
        // hook only delays and carries the bug switch.
        let netns = network.hook_spec(
            2,
            HookShare {
                links: false,
                delay: true,
            },
        );
        assert_eq!(
            netns,
            json!({"drop_to": [], "drop_from": [], "loss": 0.0, "delay_ms": 20, "drop_log_entries": true})
        );
    }

    #[test]
    fn deafness_is_one_way() {
        let mut network = Network::default();
        network.deafen(1, 3);
        assert_eq!(network.cut_from(1).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(network.cut_to(1).count(), 0);
        assert_eq!(network.cut_to(2).collect::<Vec<_>>(), [1]);
    }
}
