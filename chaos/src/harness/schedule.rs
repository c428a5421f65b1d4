//! The fault schedule of a run: each scenario fault at its time, its undo
//! after `for_s`, and at the end of the window everything healed. Process
//! faults go to the [`Cluster`]; network faults change the [`Network`] model,
//! which the [`Backend`] then makes real, whichever backend it is.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::cluster::{Cluster, State};
use super::network::Network;
use super::{RunError, lock, sleep_until};
use crate::report::FaultSpan;
use crate::scenario::{Action, Fault, IN_SYNC_PATIENCE_S, Scenario};

/// What the schedule drives.
pub(super) struct Faults<'a> {
    pub scenario: &'a Scenario,
    pub cluster: &'a Arc<Mutex<Cluster>>,
    pub backend: &'a mut Backend,
    pub network: &'a mut Network,
    /// Soft open-file limits of nodes under `exhaust_fds`, to restore.
    pub fd_limits: std::collections::BTreeMap<usize, u64>,
}

/// A fault's undo, due at a time.
struct Undo {
    at: Duration,
    fault: Fault,
    span: usize,
}

impl Faults<'_> {
    /// Applies the schedule; undoes timed faults when due.
    pub fn inject(
        &mut self,
        targets: &RwLock<Vec<String>>,
        spans: &mut Vec<FaultSpan>,
        started: Instant,
    ) -> Result<(), RunError> {
        let mut undo: Vec<Undo> = Vec::new();
        let mut faults = self.scenario.faults.iter().peekable();
        // Time `when_in_sync` waits added: later faults keep their spacing.
        let mut delayed = Duration::ZERO;
        loop {
            let next_fault = faults
                .peek()
                .map(|f| Duration::from_secs_f64(f.at_s) + delayed);
            let next_undo = undo.iter().map(|u| u.at).min();
            let next = match (next_fault, next_undo) {
                (None, None) => return Ok(()),
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
            };
            sleep_until(started, next);
            let now = started.elapsed();
            if let Some(pos) = undo.iter().position(|u| u.at <= now) {
                let u = undo.remove(pos);
                self.undo(&u.fault)?;
                spans[u.span].end_s = Some(now.as_secs_f64());
            } else if let Some(fault) = faults.next() {
                if fault.when_in_sync {
                    let waited = Instant::now();
                    self.wait_in_sync(started);
                    delayed += waited.elapsed();
                }
                let now = started.elapsed();
                self.apply(fault)?;
                eprintln!(
                    "eddy-chaos: {:>6.1} s  {}",
                    now.as_secs_f64(),
                    describe(fault)
                );
                spans.push(FaultSpan {
                    start_s: now.as_secs_f64(),
                    end_s: None,
                    label: describe(fault),
                });
                if let Some(for_s) = fault.for_s {
                    undo.push(Undo {
                        at: now + Duration::from_secs_f64(for_s),
                        fault: fault.clone(),
                        span: spans.len() - 1,
                    });
                } else if matches!(
                    fault.action,
                    Action::Cont
                        | Action::Restart
                        | Action::Heal
                        | Action::Add
                        | Action::ForgetDown
                ) && let Some(span) = spans.last_mut()
                {
                    span.end_s = Some(now.as_secs_f64());
                }
            }
            if let Ok(mut t) = targets.write() {
                *t = lock(self.cluster).up_urls();
            }
        }
    }

    /// Waits until a running node's `/v1/partitions` shows every partition
    /// with `replication_factor` in-sync copies, or the patience ran out.
    fn wait_in_sync(&self, started: Instant) {
        let copies = self.scenario.replication_factor;
        let deadline = Instant::now() + Duration::from_secs(IN_SYNC_PATIENCE_S);
        let mut short = None;
        while Instant::now() < deadline {
            let urls = lock(self.cluster).up_urls();
            short = urls.iter().find_map(|url| {
                let table = super::http::get_json(&format!("{url}/v1/partitions"))?;
                eddy_node::http::partitions_short_of_copies(&table, copies)
            });
            if short == Some(0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "eddy-chaos: {:>6.1} s  still {} partitions with fewer than {copies} in-sync copies after {IN_SYNC_PATIENCE_S} s; going on",
            started.elapsed().as_secs_f64(),
            short.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        );
    }

    fn apply(&mut self, fault: &Fault) -> Result<(), RunError> {
        let n = self.scenario.nodes;
        let node = fault.node.unwrap_or(1);
        let mut c = lock(self.cluster);
        let network = &mut *self.network;
        match fault.action {
            Action::Kill => c.kill(node),
            Action::Stop => c.pause(node, true),
            Action::Cont => c.pause(node, false),
            Action::Leave => c.leave(node),
            Action::Restart | Action::Add => {
                // Not waiting for it to be ready: nodes restarted together (a
                // whole-cluster restart) must find each other, as they would.
                match fault.action {
                    Action::Add => c.add(node)?,
                    _ if fault.wipe => c.restart_wiped(node)?,
                    _ => c.restart(node)?,
                }
                if network.is_faulty() {
                    // Its hook starts clean: give it the current network as
                    // soon as it answers (not once ready: a node cut off
                    // from a majority never is). The namespace backend's
                    // rules hold from the start anyway.
                    let _ = c.wait_answering(node, Duration::from_secs(30));
                    self.backend.apply_to(network, &c, node)?;
                }
                return Ok(());
            }
            Action::ForgetDown => {
                let answer = c.forget_down(node);
                eprintln!("eddy-chaos:          node-{node} answered forget-down: {answer}");
                return Ok(());
            }
            Action::StorageFail => {
                network.fail_storage(node, true);
                self.backend.apply_to(network, &c, node)?;
                return Ok(());
            }
            Action::WorkerFail => {
                self.backend.fail_workers(network, &c, node)?;
                return Ok(());
            }
            Action::ExhaustFds => {
                match c.limit_fds(node, None) {
                    Some(before) => {
                        self.fd_limits.entry(node).or_insert(before);
                    }
                    None => eprintln!(
                        "eddy-chaos:          exhaust-fds node-{node}: could not set its limit (not running, or no prlimit)"
                    ),
                }
                return Ok(());
            }
            Action::Cut => network.cut(node, &fault.with),
            Action::Move => network.move_to(node, &fault.with, n),
            Action::Isolate => network.isolate(node, n),
            Action::Deafen => network.deafen(node, n),
            Action::Split => {
                let mut side = vec![node];
                side.extend(&fault.with);
                network.split(&side, n);
            }
            Action::Loss => {
                network.degrade(fault.loss.unwrap_or(0.0), fault.delay_ms.unwrap_or(0));
            }
            Action::Heal => network.heal(),
        }
        if fault.action.is_network() {
            self.backend.apply(network, &c)?;
        }
        Ok(())
    }

    /// Undoes `fault` after its `for_s`.
    fn undo(&mut self, fault: &Fault) -> Result<(), RunError> {
        let node = fault.node.unwrap_or(1);
        match fault.action {
            Action::Cut => {
                let c = lock(self.cluster);
                self.network.restore(node, &fault.with);
                self.backend.apply(self.network, &c)
            }
            Action::StorageFail => {
                let c = lock(self.cluster);
                self.network.fail_storage(node, false);
                self.backend.apply_to(self.network, &c, node)
            }
            Action::ExhaustFds => {
                if let Some(before) = self.fd_limits.remove(&node) {
                    lock(self.cluster).limit_fds(node, Some(before));
                }
                Ok(())
            }
            _ => self.apply(&reverse(fault)),
        }
    }

    /// Ends every fault: network healed, storage working, stopped nodes
    /// continued, killed and departed ones restarted (spares never added
    /// stay spares).
    pub fn heal_everything(
        &mut self,
        targets: &RwLock<Vec<String>>,
        spans: &mut [FaultSpan],
        started: Instant,
    ) -> Result<(), RunError> {
        let now = started.elapsed().as_secs_f64();
        for span in spans.iter_mut().filter(|s| s.end_s.is_none()) {
            span.end_s = Some(now);
        }
        let mut c = lock(self.cluster);
        for (node, before) in std::mem::take(&mut self.fd_limits) {
            c.limit_fds(node, Some(before));
        }
        self.network.heal();
        self.network.heal_storage();
        self.backend.apply(self.network, &c)?;
        let mut restarted = Vec::new();
        for i in 1..=c.len() {
            match c.state(i) {
                State::Stopped => c.pause(i, false),
                State::Killed | State::Left => {
                    c.restart(i)?;
                    restarted.push(i);
                }
                State::Up | State::Spare => {}
            }
        }
        for i in restarted {
            c.wait_ready(i, Duration::from_secs(30))?;
            self.backend.apply_to(self.network, &c, i)?;
        }
        if let Ok(mut t) = targets.write() {
            *t = c.up_urls();
        }
        Ok(())
    }
}

fn reverse(fault: &Fault) -> Fault {
    let action = match fault.action {
        Action::Kill | Action::Leave => Action::Restart,
        Action::Stop => Action::Cont,
        _ => Action::Heal,
    };
    Fault {
        action,
        for_s: None,
        wipe: false,
        when_in_sync: false,
        ..fault.clone()
    }
}

fn describe(fault: &Fault) -> String {
    let node = fault.node.map(|n| format!(" node-{n}")).unwrap_or_default();
    let with = if fault.with.is_empty() {
        String::new()
    } else {
        format!(" with {:?}", fault.with)
    };
    let degrade = match (fault.loss, fault.delay_ms) {
        (None, None) => String::new(),
        (loss, delay) => format!(
            " loss {:.0}% delay {} ms",
            loss.unwrap_or(0.0) * 100.0,
            delay.unwrap_or(0)
        ),
    };
    let dur = fault
        .for_s
        .map(|s| format!(" for {s} s"))
        .unwrap_or_default();
    let wipe = if fault.wipe { " wiped" } else { "" };
    let wipe = if fault.when_in_sync {
        format!("{wipe} (once every partition was in sync)")
    } else {
        wipe.to_string()
    };
    let action = match fault.action {
        Action::ForgetDown => "forget-down".to_string(),
        Action::StorageFail => "storage-fail".to_string(),
        Action::ExhaustFds => "exhaust-fds".to_string(),
        Action::WorkerFail => "worker-fail".to_string(),
        other => format!("{other:?}").to_lowercase(),
    };
    format!("{action}{node}{wipe}{with}{degrade}{dur}")
}
