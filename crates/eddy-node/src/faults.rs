//! Faults injected into this node on purpose: network faults for the chaos
//! harness when it cannot use network namespaces (not root), and failing
//! storage writes. The checks sit where
//! traffic leaves and enters: gossip datagrams, peer links (outgoing calls
//! and incoming requests). Only reachable through `POST /v1/admin/faults`,
//! which a node serves only when its binary installed the hook
//! (`NodeBuilder::fault_hook`: `eddy-chaos-node` does, `eddy` never does);
//! without it nothing can turn a fault on, and each check is one relaxed
//! atomic load.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eddy_cluster::NodeId;
use serde::{Deserialize, Serialize};

/// What to break, as the harness asks for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Peers this node cannot reach: its gossip to them and its peer calls
    /// to them are dropped.
    #[serde(default)]
    pub drop_to: Vec<String>,
    /// Peers this node does not hear: their gossip and peer requests are
    /// dropped.
    #[serde(default)]
    pub drop_from: Vec<String>,
    /// Probability (0–1) that any gossip datagram or peer call is lost.
    #[serde(default)]
    pub loss: f64,
    /// Delay added to every peer call, in ms.
    #[serde(default)]
    pub delay_ms: u64,
    /// A deliberate bug, to prove the chaos checkers catch one: owners stop
    /// shipping log entries to their backups and acknowledge anyway.
    #[serde(default)]
    pub drop_log_entries: bool,
    /// Every write to `data_dir` fails, as with a full disk or no file
    /// descriptors left (the storage writer's error path).
    #[serde(default)]
    pub fail_storage: bool,
    /// Once, when set: every partition worker fails at its next tick and
    /// the supervisor restarts it empty (not a standing fault; the spec
    /// that carries it is otherwise applied as usual).
    #[serde(default)]
    pub fail_workers: bool,
}

struct Active {
    drop_to: HashSet<NodeId>,
    drop_from: HashSet<NodeId>,
    drop_to_addr: HashSet<SocketAddr>,
    drop_from_addr: HashSet<SocketAddr>,
    /// Loss in parts per 2^32.
    loss: u64,
    delay: Duration,
    drop_log_entries: bool,
    fail_storage: bool,
}

/// The node's fault switchboard; all off by default.
#[derive(Default)]
pub struct Faults {
    on: AtomicBool,
    state: RwLock<Option<Active>>,
    draws: AtomicU64,
    /// How many times `fail_workers` was asked for.
    worker_failures: AtomicU64,
}

impl Faults {
    /// Replaces the faults; `gossip_of` resolves a peer's name to its gossip
    /// address (datagrams carry addresses, not names). An empty spec heals.
    pub fn set(&self, spec: &FaultSpec, gossip_of: impl Fn(&NodeId) -> Option<SocketAddr>) {
        let names = |list: &[String]| list.iter().map(|n| NodeId::new(n)).collect::<HashSet<_>>();
        let drop_to = names(&spec.drop_to);
        let drop_from = names(&spec.drop_from);
        let active = Active {
            drop_to_addr: drop_to.iter().filter_map(&gossip_of).collect(),
            drop_from_addr: drop_from.iter().filter_map(&gossip_of).collect(),
            drop_to,
            drop_from,
            loss: (spec.loss.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64,
            delay: Duration::from_millis(spec.delay_ms),
            drop_log_entries: spec.drop_log_entries,
            fail_storage: spec.fail_storage,
        };
        let any = active.drop_log_entries
            || active.fail_storage
            || !active.drop_to.is_empty()
            || !active.drop_from.is_empty()
            || active.loss > 0
            || !active.delay.is_zero();
        if let Ok(mut state) = self.state.write() {
            *state = any.then_some(active);
        }
        self.on.store(any, Ordering::Release);
        if spec.fail_workers {
            self.worker_failures.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// How many worker failures were asked for so far: a worker that
    /// started after the last one asked for keeps running.
    pub fn worker_failures(&self) -> u64 {
        self.worker_failures.load(Ordering::Acquire)
    }

    fn check(&self, f: impl FnOnce(&Active) -> bool) -> bool {
        if !self.on.load(Ordering::Relaxed) {
            return true;
        }
        let Ok(state) = self.state.read() else {
            return true;
        };
        let Some(active) = state.as_ref() else {
            return true;
        };
        f(active) && !self.lost(active.loss)
    }

    fn lost(&self, loss: u64) -> bool {
        if loss == 0 {
            return false;
        }
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        (xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes()) >> 32) < loss
    }

    /// Whether a gossip datagram to `to` may leave.
    pub fn gossip_out(&self, to: SocketAddr) -> bool {
        self.check(|a| !a.drop_to_addr.contains(&to))
    }

    /// Whether a gossip datagram from `from` is handled.
    pub fn gossip_in(&self, from: SocketAddr) -> bool {
        self.check(|a| !a.drop_from_addr.contains(&from))
    }

    /// Whether a peer call to `to` may be made.
    pub fn peer_out(&self, to: &NodeId) -> bool {
        self.check(|a| !a.drop_to.contains(to))
    }

    /// Whether a peer request from `from` is served.
    pub fn peer_in(&self, from: &NodeId) -> bool {
        self.check(|a| !a.drop_from.contains(from))
    }

    /// Whether the injected replication bug is on.
    pub fn drops_log_entries(&self) -> bool {
        self.switch(|a| a.drop_log_entries)
    }

    /// Whether writes to `data_dir` are made to fail.
    pub fn fails_storage(&self) -> bool {
        self.switch(|a| a.fail_storage)
    }

    /// Whether a switch of the active faults is on (no loss draw).
    fn switch(&self, on: impl FnOnce(&Active) -> bool) -> bool {
        self.on.load(Ordering::Relaxed)
            && self
                .state
                .read()
                .ok()
                .is_some_and(|s| s.as_ref().is_some_and(on))
    }

    /// Delay to add to a peer call.
    pub fn delay(&self) -> Duration {
        if !self.on.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        self.state
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|a| a.delay))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn off_by_default_and_healed_by_an_empty_spec() {
        let faults = Faults::default();
        assert!(faults.gossip_out(addr(1)) && faults.peer_in(&NodeId::new("a")));
        let spec = FaultSpec {
            drop_to: vec!["b".into()],
            drop_from: vec!["c".into()],
            ..FaultSpec::default()
        };
        let gossip = |n: &NodeId| match n.as_str() {
            "b" => Some(addr(2)),
            "c" => Some(addr(3)),
            _ => None,
        };
        faults.set(&spec, gossip);
        assert!(!faults.gossip_out(addr(2)) && faults.gossip_out(addr(3)));
        assert!(!faults.gossip_in(addr(3)) && faults.gossip_in(addr(2)));
        assert!(!faults.peer_out(&NodeId::new("b")) && faults.peer_out(&NodeId::new("c")));
        assert!(!faults.peer_in(&NodeId::new("c")) && faults.peer_in(&NodeId::new("b")));
        faults.set(&FaultSpec::default(), gossip);
        assert!(faults.gossip_out(addr(2)) && faults.peer_in(&NodeId::new("c")));
    }

    #[test]
    fn loss_drops_about_its_share() {
        let faults = Faults::default();
        let spec = FaultSpec {
            loss: 0.25,
            ..FaultSpec::default()
        };
        faults.set(&spec, |_| None);
        let passed = (0..10_000).filter(|_| faults.gossip_out(addr(9))).count();
        assert!((7_000..8_000).contains(&passed), "{passed} of 10000 passed");
    }
}
