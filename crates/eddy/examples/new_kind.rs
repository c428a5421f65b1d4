//! A node binary hosting one kind of your own, as `eddy new <name>` writes
//! it (in eddy this file is `crates/eddy/examples/new_kind.rs`, built, linted
//! and tested with the workspace; `eddy new` only puts your name in for the
//! kind name). The walk-through: eddy's docs/WRITING_BEHAVIOURS.md.
//!
//! Run it: `cargo run -- --http-addr 127.0.0.1:8080` (the flags, config
//! file and `EDDY_*` variables of `eddy node`), then
//! `curl -s localhost:8080/v1/events -d '{"kind":"new_kind","key":"k-1","event":{"value":120}}'`.
#![forbid(unsafe_code)]

use eddy_core::{Behaviour, Ctx};
use serde::{Deserialize, Serialize};

/// The kind. Rename it, and its events, state and alerts, as you like.
pub struct NewKind;

/// What one event carries (JSON over HTTP: `{"value": 120}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Reading {
    /// The measured value.
    pub value: f64,
}

/// What each key remembers between events.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    /// Events seen.
    pub events: u64,
    /// Whether the last value was over [`LIMIT`].
    pub over: bool,
}

/// Values above this raise an alert (once, until the value comes back).
pub const LIMIT: f64 = 100.0;

/// What the kind emits.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Alert {
    /// The value went over [`LIMIT`].
    OverLimit {
        /// The value.
        value: f64,
    },
}

impl Behaviour for NewKind {
    const KIND: &'static str = "new_kind";
    type Event = Reading;
    type State = State;
    type Alert = Alert;

    // Deterministic: only the state, the event and ctx.now() — replicas
    // replay the same log and must reach the same state.
    fn on_event(state: &mut State, event: Reading, ctx: &mut Ctx<'_, Self>) {
        state.events += 1;
        let over = event.value > LIMIT;
        if over && !state.over {
            ctx.emit(Alert::OverLimit { value: event.value });
        }
        state.over = over;
    }
}

fn main() -> std::process::ExitCode {
    eddy_node::Node::builder().kind::<NewKind>().run()
}

#[cfg(test)]
mod tests {
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;

    use super::*;

    #[test]
    fn alerts_once_when_the_value_goes_over_the_limit() {
        let mut key = KeyHarness::<NewKind>::new("k-1");
        assert!(key.event(Timestamp(1), Reading { value: 50.0 }).is_empty());
        assert_eq!(
            key.event(Timestamp(2), Reading { value: 120.0 }),
            [Alert::OverLimit { value: 120.0 }]
        );
        assert!(key.event(Timestamp(3), Reading { value: 130.0 }).is_empty());
        assert_eq!(key.state().events, 3);
    }
}
