//! Test fixtures shared by the examples, the runtime and the simulator.
//!
//! [`KeyHarness`] drives one key of one behaviour with the same rules the
//! partition applies (timer replacement, time-ordered firing, `stop()`), without
//! a partition around it, so a behaviour's rules can be unit-tested in a few lines.

use std::collections::BTreeMap;

use crate::behaviour::{Behaviour, Ctx, TimerOp};
use crate::time::Timestamp;

/// One key of behaviour `B`, driven by hand.
pub struct KeyHarness<B: Behaviour> {
    key: String,
    state: B::State,
    /// tag → due time; the pending timers of the key.
    timers: BTreeMap<u64, Timestamp>,
    timer_ops: Vec<TimerOp>,
}

impl<B: Behaviour> KeyHarness<B> {
    /// A key that has seen nothing yet (`State::default()`).
    pub fn new(key: &str) -> Self {
        KeyHarness {
            key: key.to_owned(),
            state: B::State::default(),
            timers: BTreeMap::new(),
            timer_ops: Vec::new(),
        }
    }

    /// Delivers `event` at time `now` and returns the alerts it emitted. Timers due
    /// at or before `now` are *not* fired first; call [`advance`](Self::advance).
    pub fn event(&mut self, now: Timestamp, event: B::Event) -> Vec<B::Alert> {
        let mut alerts = Vec::new();
        let mut ctx = Ctx::<B>::new(&self.key, now, &mut alerts, &mut self.timer_ops);
        B::on_event(&mut self.state, event, &mut ctx);
        let stopped = ctx.is_stopped();
        self.settle(stopped);
        alerts
    }

    /// Fires, in time order (ties by tag), every timer due at or before `now`,
    /// each with `ctx.now()` equal to `now` as a lagging owner would, and returns
    /// all alerts. Timers a handler sets that are already due fire too.
    pub fn advance(&mut self, now: Timestamp) -> Vec<B::Alert> {
        let mut alerts = Vec::new();
        while let Some((tag, _)) = self.next_due(now) {
            self.timers.remove(&tag);
            let mut ctx = Ctx::<B>::new(&self.key, now, &mut alerts, &mut self.timer_ops);
            B::on_timer(&mut self.state, tag, &mut ctx);
            let stopped = ctx.is_stopped();
            self.settle(stopped);
        }
        alerts
    }

    /// The key's current state.
    pub fn state(&self) -> &B::State {
        &self.state
    }

    /// Pending timers as `(tag, due)`, by tag.
    pub fn timers(&self) -> Vec<(u64, Timestamp)> {
        self.timers.iter().map(|(tag, at)| (*tag, *at)).collect()
    }

    fn next_due(&self, now: Timestamp) -> Option<(u64, Timestamp)> {
        self.timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .min_by_key(|(tag, at)| (**at, **tag))
            .map(|(tag, at)| (*tag, *at))
    }

    fn settle(&mut self, stopped: bool) {
        for op in self.timer_ops.drain(..) {
            match op {
                TimerOp::Set { tag, at } => {
                    self.timers.insert(tag, at);
                }
                TimerOp::Cancel { tag } => {
                    self.timers.remove(&tag);
                }
            }
        }
        if stopped {
            self.state = B::State::default();
            self.timers.clear();
        }
    }
}
