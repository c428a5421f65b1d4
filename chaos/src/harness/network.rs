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
    /// Nodes whose storage writes fail (`storage_fail`): not the network,
    /// but the same hook carries it, so it lives beside the bug switch and
    /// survives `heal`.
    fail_storage: BTreeSet<usize>,
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

    /// The links between `node` and each of `with` cut, both ways.
    pub fn cut(&mut self, node: usize, with: &[usize]) {
        for &other in with.iter().filter(|&&o| o != node) {
            self.cut.insert((node, other));
            self.cut.insert((other, node));
        }
    }

    /// The links between `node` and each of `with` work again, both ways.
    pub fn restore(&mut self, node: usize, with: &[usize]) {
        for &other in with {
            self.cut.remove(&(node, other));
            self.cut.remove(&(other, node));
        }
    }

    /// `node` joins the side of `side`: linked to them, cut from the rest.
    pub fn move_to(&mut self, node: usize, side: &[usize], nodes: usize) {
        let (with, without): (Vec<usize>, Vec<usize>) = (1..=nodes)
            .filter(|&o| o != node)
            .partition(|o| side.contains(o));
        self.restore(node, &with);
        self.cut(node, &without);
    }

    /// Makes `node`'s storage writes fail, or work again.
    pub fn fail_storage(&mut self, node: usize, fail: bool) {
        if fail {
            self.fail_storage.insert(node);
        } else {
            self.fail_storage.remove(&node);
        }
    }

    /// Every node's storage works again.
    pub fn heal_storage(&mut self) {
        self.fail_storage.clear();
    }

    /// Whether `node`'s storage writes are made to fail.
    pub fn fails_storage(&self, node: usize) -> bool {
        self.fail_storage.contains(&node)
    }

    /// Loss and delay on every link.
    pub fn degrade(&mut self, loss: f64, delay_ms: u64) {
        self.loss = loss;
        self.delay_ms = delay_ms;
    }

    /// The network works again (the bug switch and storage faults stay).
    pub fn heal(&mut self) {
        self.cut.clear();
        self.loss = 0.0;
        self.delay_ms = 0;
    }

    /// Whether anything is broken.
    pub fn is_faulty(&self) -> bool {
        !self.cut.is_empty()
            || self.loss > 0.0
            || self.delay_ms > 0
            || self.drop_log_entries
            || !self.fail_storage.is_empty()
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
        let mut spec = json!({
            "drop_to": drop_to,
            "drop_from": drop_from,
            "loss": if share.links { self.loss } else { 0.0 },
            "delay_ms": if share.delay { self.delay_ms } else { 0 },
            "drop_log_entries": self.drop_log_entries,
        });
        // Only when on: a node whose hook predates the field refuses
        // unknown fields, and every other scenario must still run on it.
        if self.fails_storage(i) {
            spec["fail_storage"] = json!(true);
        }
        spec
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
    fn a_cut_is_one_link_and_restoring_it_leaves_the_rest() {
        let mut network = Network::default();
        network.isolate(3, 3);
        network.cut(1, &[2]);
        assert_eq!(network.cut_to(1).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(network.cut_from(2).collect::<Vec<_>>(), [1, 3]);
        network.restore(1, &[2]);
        assert_eq!(
            network.cut_to(1).collect::<Vec<_>>(),
            [3],
            "the isolation stays"
        );
        assert_eq!(network.cut_to(2).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_moved_node_reaches_exactly_its_new_side() {
        let mut network = Network::default();
        // {1, 2} | {3}; then node 2 crosses to 3's side.
        network.split(&[1, 2], 3);
        network.move_to(2, &[3], 3);
        assert_eq!(network.cut_to(2).collect::<Vec<_>>(), [1]);
        assert_eq!(network.cut_from(2).collect::<Vec<_>>(), [1]);
        assert_eq!(network.cut_to(3).collect::<Vec<_>>(), [1]);
        assert_eq!(network.cut_to(1).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn storage_faults_reach_only_their_node_and_survive_a_network_heal() {
        let mut network = Network::default();
        network.fail_storage(2, true);
        assert!(network.is_faulty());
        assert_eq!(
            network.hook_spec(2, HookShare::ALL)["fail_storage"],
            json!(true)
        );
        // Nodes without the fault get the spec they always got.
        assert!(
            network
                .hook_spec(1, HookShare::ALL)
                .get("fail_storage")
                .is_none()
        );
        network.heal();
        assert!(network.fails_storage(2));
        network.fail_storage(2, false);
        assert!(!network.is_faulty());
        assert!(
            network
                .hook_spec(2, HookShare::ALL)
                .get("fail_storage")
                .is_none()
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
