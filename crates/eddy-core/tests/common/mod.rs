//! A test behaviour exercising every Ctx effect, shared by the integration tests.
#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use eddy_core::{
    Behaviour, Ctx, EventInput, KindId, Outputs, Partition, PartitionConfig, PartitionId, Registry,
    Timestamp, encode_event,
};
use serde::{Deserialize, Serialize};

/// What a test can ask a counter key to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cmd {
    Add(u32),
    SetTimer { delay_ms: u64, tag: u64 },
    CancelTimer(u64),
    Stop,
    Panic,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub events: u64,
    pub sum: u64,
    /// (tag, now) of every firing, so replay differences show up.
    pub fired: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CounterAlert {
    Crossed { sum: u64 },
    Fired { tag: u64, at: u64 },
}

pub struct Counter;

impl Behaviour for Counter {
    const KIND: &'static str = "counter";
    type Event = Cmd;
    type State = CounterState;
    type Alert = CounterAlert;

    fn on_event(state: &mut CounterState, event: Cmd, ctx: &mut Ctx<'_, Self>) {
        state.events += 1;
        match event {
            Cmd::Add(n) => {
                let before = state.sum / 10;
                state.sum += u64::from(n);
                if state.sum / 10 > before {
                    ctx.emit(CounterAlert::Crossed { sum: state.sum });
                }
            }
            Cmd::SetTimer { delay_ms, tag } => ctx.set_timer(ctx.now().plus_ms(delay_ms), tag),
            Cmd::CancelTimer(tag) => ctx.cancel_timer(tag),
            Cmd::Stop => ctx.stop(),
            Cmd::Panic => {
                state.sum += 1_000_000; // must be rolled back
                panic!("boom on purpose");
            }
        }
    }

    fn on_timer(state: &mut CounterState, tag: u64, ctx: &mut Ctx<'_, Self>) {
        state.fired.push((tag, ctx.now().as_millis()));
        if state.fired.len() > 8 {
            state.fired.remove(0);
        }
        ctx.emit(CounterAlert::Fired {
            tag,
            at: ctx.now().as_millis(),
        });
        // Re-arming from a timer exercises timers set during firings.
        if tag.is_multiple_of(3) {
            ctx.set_timer(ctx.now().plus_ms(25), tag + 1);
        }
    }
}

/// A second kind so partitions hold more than one store.
pub struct Other;

impl Behaviour for Other {
    const KIND: &'static str = "other";
    type Event = u32;
    type State = u64;
    type Alert = ();

    fn on_event(state: &mut u64, event: u32, _ctx: &mut Ctx<'_, Self>) {
        *state += u64::from(event);
    }
}

pub fn registry() -> Arc<Registry> {
    Arc::new(
        Registry::builder()
            .kind::<Counter>()
            .kind::<Other>()
            .build()
            .expect("distinct kinds"),
    )
}

pub const COUNTER: KindId = KindId(0);
pub const OTHER: KindId = KindId(1);

pub fn partition(config: PartitionConfig) -> Partition {
    Partition::new(registry(), PartitionId(7), config)
}

pub fn cmd(key: &str, cmd: Cmd) -> EventInput {
    let mut payload = Vec::new();
    encode_event::<Counter>(&cmd, &mut payload).expect("encodes");
    EventInput {
        kind: COUNTER,
        key: key.to_owned(),
        payload,
        producer: None,
    }
}

pub fn other(key: &str, n: u32) -> EventInput {
    let mut payload = Vec::new();
    encode_event::<Other>(&n, &mut payload).expect("encodes");
    EventInput {
        kind: OTHER,
        key: key.to_owned(),
        payload,
        producer: None,
    }
}

pub fn counter_state(p: &Partition, key: &str) -> Option<CounterState> {
    p.state_json(COUNTER, key)
        .expect("state renders")
        .map(|v| serde_json::from_value(v).expect("state shape"))
}

pub fn submit(p: &mut Partition, now: u64, input: EventInput) -> Outputs {
    // Fresh outputs per call so callers can inspect what this one logged.
    let mut out = Outputs::default();
    p.submit(Timestamp(now), input.as_ref(), &mut out)
        .expect("applies");
    out
}

/// Decodes what a call logged.
pub fn logged(out: &Outputs) -> Vec<eddy_core::Entry> {
    out.log.to_entries().expect("entries decode")
}
