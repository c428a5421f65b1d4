//! The user-facing contract: a [`Behaviour`] per kind and the [`Ctx`] its handlers
//! receive.
//!
//! Handlers are deterministic functions of `(state, input, ctx.now())`. Everything
//! they may do to the outside world — emit alerts, set or cancel timers, stop the
//! key — goes through [`Ctx`], which only records the request. The partition (or
//! the [`crate::testing::KeyHarness`]) applies the requests after the handler
//! returns, which is what lets a replica replay the log and reach the same state.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::time::Timestamp;

/// One actor type ("kind"), e.g. `account` or `device`.
///
/// Each key of the kind is a virtual actor whose state is `State`. Events and
/// state cross the wire and snapshots as postcard, so their serde shape must not
/// depend on the data (no `skip_serializing_if`): postcard is not self-describing.
pub trait Behaviour: Sized + Send + 'static {
    /// The kind's name as clients address it (`"account"`). Must be unique per node.
    const KIND: &'static str;
    /// What clients send to a key.
    type Event: Serialize + DeserializeOwned + Send;
    /// A key's state. `Default` is the state of a key that has never seen an event.
    /// `Clone` lets the runtime keep the previous state while a handler runs, so a
    /// panicking handler leaves the key as it was (`clone_from` reuses buffers).
    type State: Default + Clone + Serialize + DeserializeOwned + Send;
    /// What the key emits, published once its input is acknowledged.
    type Alert: Serialize + Send;

    /// Applies one event to the key's state.
    fn on_event(state: &mut Self::State, event: Self::Event, ctx: &mut Ctx<'_, Self>);

    /// A timer set with [`Ctx::set_timer`] has come due. `ctx.now()` is the firing
    /// time the owner logged, which is at or after the requested time.
    fn on_timer(state: &mut Self::State, tag: u64, ctx: &mut Ctx<'_, Self>) {
        let _ = (state, tag, ctx);
    }
}

/// A request a handler made of its key's timers, applied after the handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOp {
    /// Fire `tag` at `at`, replacing any pending timer with the same tag.
    Set {
        /// The caller's label for the timer; unique per key.
        tag: u64,
        /// When the timer is due.
        at: Timestamp,
    },
    /// Forget the pending timer `tag`, if any.
    Cancel {
        /// The label given to [`Ctx::set_timer`].
        tag: u64,
    },
}

/// What a handler may see and do besides its state.
///
/// Built by the runtime for each handler call; all effects are recorded and applied
/// after the handler returns.
pub struct Ctx<'a, B: Behaviour> {
    key: &'a str,
    now: Timestamp,
    alerts: &'a mut Vec<B::Alert>,
    timer_ops: &'a mut Vec<TimerOp>,
    stopped: bool,
}

impl<'a, B: Behaviour> Ctx<'a, B> {
    /// Builds a context. The buffers are the caller's so they can be reused across
    /// calls; the handler only appends to them.
    pub fn new(
        key: &'a str,
        now: Timestamp,
        alerts: &'a mut Vec<B::Alert>,
        timer_ops: &'a mut Vec<TimerOp>,
    ) -> Self {
        Ctx {
            key,
            now,
            alerts,
            timer_ops,
            stopped: false,
        }
    }

    /// The key this call is for.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The time the owner assigned to this input; the same on every replay.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Emits an alert. It is published only once the input is acknowledged.
    pub fn emit(&mut self, alert: B::Alert) {
        self.alerts.push(alert);
    }

    /// Asks for [`Behaviour::on_timer`] with `tag` at `at` (or as soon as possible if
    /// `at` has passed). Setting a tag that is pending moves it.
    pub fn set_timer(&mut self, at: Timestamp, tag: u64) {
        self.timer_ops.push(TimerOp::Set { tag, at });
    }

    /// Cancels the pending timer `tag`; a no-op if none is pending.
    pub fn cancel_timer(&mut self, tag: u64) {
        self.timer_ops.push(TimerOp::Cancel { tag });
    }

    /// Drops the key's state and timers once this handler returns. The next event
    /// to the key starts from `State::default()`.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether the handler asked to [`stop`](Self::stop) the key.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}
