//! The keys of one kind inside one partition: virtual actors, active or passive.
//!
//! An active key holds its decoded `State`; a passive key holds only the encoded
//! bytes, which is all a snapshot needs and a fraction of the memory. A key is
//! activated by the first input that touches it and passivated by the partition
//! when idle or when too many keys are active. Handlers run here, optionally
//! inside `catch_unwind` so one bad event cannot poison a key or the partition.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use compact_str::CompactString;
use foldhash::fast::FixedState;

use crate::behaviour::{Behaviour, Ctx, TimerOp};
use crate::error::{ApplyError, CodecError};
use crate::registry::{decode_exact, encode_into};
use crate::time::Timestamp;

/// What an input asks a key to do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StoreInput<'a> {
    /// An event's binary payload.
    Event(&'a [u8]),
    /// A timer firing with its tag.
    Timer(u64),
}

/// The side effects of one handler call, in a kind-independent form.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub timer_ops: Vec<TimerOp>,
    pub alerts: Vec<serde_json::Value>,
    pub stopped: bool,
}

impl Effects {
    pub fn clear(&mut self) {
        self.timer_ops.clear();
        self.alerts.clear();
        self.stopped = false;
    }
}

/// Receives each key with its encoded state, or why it could not be encoded.
pub(crate) type EncodedVisitor<'v> = dyn FnMut(&str, Result<&[u8], CodecError>) + 'v;

/// Handler policy for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunPolicy {
    /// Catch handler panics and restore the key's previous state.
    pub isolate_panics: bool,
}

/// A kind's keys in one partition, behind a vtable so partitions can hold many kinds.
pub(crate) trait KeyStore: Send {
    fn kind(&self) -> &'static str;
    /// Runs the handler for `input` on `key`; on error nothing changed.
    fn run(
        &mut self,
        key: &str,
        input: StoreInput<'_>,
        now: Timestamp,
        policy: RunPolicy,
        effects: &mut Effects,
    ) -> Result<(), ApplyError>;
    /// Forgets `key` (after `ctx.stop()`).
    fn remove(&mut self, key: &str);
    /// Passivates keys idle for `idle_ms` and, oldest first, any beyond
    /// `max_active`. Returns how many were passivated.
    fn passivate(&mut self, now: Timestamp, idle_ms: u64, max_active: usize) -> usize;
    /// The key's state as JSON, decoding a passive key without activating it.
    fn state_json(&self, key: &str) -> Result<Option<serde_json::Value>, CodecError>;
    /// Calls `visit` with every key and its encoded state (or why it could not
    /// be encoded: a user `Serialize` impl that fails).
    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>);
    /// Inserts a passive key from a snapshot.
    fn insert_passive(&mut self, key: &str, encoded: &[u8]);
    /// (active, passive) key counts.
    fn counts(&self) -> (usize, usize);
}

enum Slot<S> {
    /// Decoded; `last_active` drives idle passivation. Boxed so a passive slot
    /// does not pay for the size of `S`.
    Active {
        state: Box<S>,
        last_active: Timestamp,
    },
    Passive(Box<[u8]>),
}

pub(crate) struct TypedStore<B: Behaviour> {
    keys: HashMap<CompactString, Slot<B::State>, FixedState>,
    /// Keys in activation order with the time they were queued; lets passivation
    /// find idle keys without scanning the whole map. An entry may be stale (the
    /// key was touched since, stopped or passivated); it is checked when popped.
    activation_queue: VecDeque<(Box<str>, Timestamp)>,
    active: usize,
    alerts: Vec<B::Alert>,
    /// The pre-handler copy of an active state, reused across calls so
    /// `clone_from` can keep its heap buffers.
    previous: Option<B::State>,
}

impl<B: Behaviour> TypedStore<B> {
    pub fn new(hash_seed: u64) -> Self {
        TypedStore {
            keys: HashMap::with_hasher(FixedState::with_seed(hash_seed)),
            activation_queue: VecDeque::new(),
            active: 0,
            alerts: Vec::new(),
            previous: None,
        }
    }

    fn decode_state(bytes: &[u8]) -> Result<B::State, CodecError> {
        decode_exact::<B::State>(B::KIND, "state", bytes)
    }

    fn encode_state(state: &B::State) -> Result<Box<[u8]>, CodecError> {
        let mut buf = Vec::new();
        encode_into(state, &mut buf).map_err(state_encode_error::<B>)?;
        Ok(buf.into_boxed_slice())
    }
}

/// How to put a key back if its handler panics.
enum Backup {
    /// The key did not exist: remove it.
    Absent,
    /// The key was passive: these are its bytes.
    Passive(Box<[u8]>),
    /// The key was active: its state was cloned into `previous`.
    Previous,
    /// Panics are not isolated.
    None,
}

impl<B: Behaviour> KeyStore for TypedStore<B> {
    fn kind(&self) -> &'static str {
        B::KIND
    }

    fn run(
        &mut self,
        key: &str,
        input: StoreInput<'_>,
        now: Timestamp,
        policy: RunPolicy,
        effects: &mut Effects,
    ) -> Result<(), ApplyError> {
        // Decode before touching the key so a bad payload changes nothing.
        let event = match input {
            StoreInput::Event(payload) => {
                Some(decode_exact::<B::Event>(B::KIND, "event", payload)?)
            }
            StoreInput::Timer(_) => None,
        };

        let backup;
        let state: &mut B::State = match self.keys.get_mut(key) {
            Some(slot) => {
                if let Slot::Passive(bytes) = slot {
                    let decoded = Self::decode_state(bytes)?;
                    let old = std::mem::replace(
                        slot,
                        Slot::Active {
                            state: Box::new(decoded),
                            last_active: now,
                        },
                    );
                    backup = match old {
                        Slot::Passive(bytes) if policy.isolate_panics => Backup::Passive(bytes),
                        _ => Backup::None,
                    };
                    self.active += 1;
                    self.activation_queue.push_back((key.into(), now));
                } else {
                    backup = if policy.isolate_panics {
                        Backup::Previous
                    } else {
                        Backup::None
                    };
                }
                match slot {
                    Slot::Active { state, last_active } => {
                        *last_active = now;
                        if let Backup::Previous = backup {
                            match &mut self.previous {
                                Some(previous) => previous.clone_from(state),
                                None => self.previous = Some((**state).clone()),
                            }
                        }
                        state
                    }
                    // The branch above turned any passive slot into an active one.
                    Slot::Passive(_) => unreachable!("slot was activated above"),
                }
            }
            None => {
                backup = if policy.isolate_panics {
                    Backup::Absent
                } else {
                    Backup::None
                };
                self.active += 1;
                self.activation_queue.push_back((key.into(), now));
                let slot = self.keys.entry(key.into()).or_insert(Slot::Active {
                    state: Box::default(),
                    last_active: now,
                });
                match slot {
                    Slot::Active { state, .. } => state,
                    // Just inserted as active.
                    Slot::Passive(_) => unreachable!("slot was inserted active"),
                }
            }
        };

        self.alerts.clear();
        let stopped;
        let outcome = {
            let mut ctx = Ctx::<B>::new(key, now, &mut self.alerts, &mut effects.timer_ops);
            let call = |state: &mut B::State, ctx: &mut Ctx<'_, B>| match (event, input) {
                (Some(event), _) => B::on_event(state, event, ctx),
                (None, StoreInput::Timer(tag)) => B::on_timer(state, tag, ctx),
                (None, StoreInput::Event(_)) => {}
            };
            let result = if policy.isolate_panics {
                catch_unwind(AssertUnwindSafe(|| call(state, &mut ctx)))
            } else {
                call(state, &mut ctx);
                Ok(())
            };
            stopped = ctx.is_stopped();
            result
        };

        if let Err(payload) = outcome {
            effects.timer_ops.clear();
            self.alerts.clear();
            let message = panic_message(payload.as_ref());
            match backup {
                Backup::Absent => self.remove(key),
                Backup::Passive(bytes) => {
                    if let Some(slot) = self.keys.get_mut(key) {
                        *slot = Slot::Passive(bytes);
                        self.active -= 1;
                    }
                }
                Backup::Previous => {
                    if let (Some(previous), Some(Slot::Active { state, .. })) =
                        (self.previous.take(), self.keys.get_mut(key))
                    {
                        **state = previous;
                    }
                }
                Backup::None => {}
            }
            return Err(ApplyError::HandlerPanicked {
                kind: B::KIND,
                key: key.to_owned(),
                message,
            });
        }

        for alert in self.alerts.drain(..) {
            let rendered = serde_json::to_value(&alert).unwrap_or_else(|err| {
                serde_json::json!({ "error": format!("alert not representable as JSON: {err}") })
            });
            effects.alerts.push(rendered);
        }
        if stopped {
            effects.stopped = true;
            self.remove(key);
        }
        Ok(())
    }

    fn remove(&mut self, key: &str) {
        if let Some(Slot::Active { .. }) = self.keys.remove(key) {
            self.active -= 1;
        }
    }

    fn passivate(&mut self, now: Timestamp, idle_ms: u64, max_active: usize) -> usize {
        let mut passivated = 0;
        // Each iteration pops one queue entry, so the loop ends; re-queued entries
        // carry a later time and stop the scan once they reach the front.
        let mut budget = self.activation_queue.len();
        while budget > 0 {
            budget -= 1;
            let Some((key, queued_at)) = self.activation_queue.front() else {
                break;
            };
            let over_limit = self.active > max_active;
            let Some(slot) = self.keys.get_mut(&**key) else {
                self.activation_queue.pop_front();
                continue;
            };
            let Slot::Active { state, last_active } = slot else {
                self.activation_queue.pop_front();
                continue;
            };
            let idle = now.millis_since(*last_active) >= idle_ms;
            if idle || over_limit {
                let Ok(encoded) = Self::encode_state(state) else {
                    // Stays active; the snapshot writer reports the broken state.
                    self.activation_queue.pop_front();
                    continue;
                };
                *slot = Slot::Passive(encoded);
                self.active -= 1;
                passivated += 1;
                self.activation_queue.pop_front();
            } else if *last_active > *queued_at {
                let touched = *last_active;
                if let Some((key, _)) = self.activation_queue.pop_front() {
                    self.activation_queue.push_back((key, touched));
                }
            } else {
                break;
            }
        }
        // The queue's high-water capacity would otherwise stay allocated for good
        // after a burst of activations: give back memory once it is mostly empty.
        if self.activation_queue.capacity() > 64
            && self.activation_queue.len() < self.activation_queue.capacity() / 4
        {
            self.activation_queue
                .shrink_to(self.activation_queue.len() * 2);
        }
        passivated
    }

    fn state_json(&self, key: &str) -> Result<Option<serde_json::Value>, CodecError> {
        let render = |state: &B::State| {
            serde_json::to_value(state).map_err(|err| CodecError::Json {
                kind: B::KIND,
                message: err.to_string(),
            })
        };
        match self.keys.get(key) {
            None => Ok(None),
            Some(Slot::Active { state, .. }) => render(state).map(Some),
            Some(Slot::Passive(bytes)) => render(&Self::decode_state(bytes)?).map(Some),
        }
    }

    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) {
        let mut buf = Vec::new();
        for (key, slot) in &self.keys {
            match slot {
                Slot::Active { state, .. } => {
                    buf.clear();
                    match encode_into(&**state, &mut buf) {
                        Ok(()) => visit(key, Ok(&buf)),
                        Err(err) => visit(key, Err(state_encode_error::<B>(err))),
                    }
                }
                Slot::Passive(bytes) => visit(key, Ok(bytes)),
            }
        }
    }

    fn insert_passive(&mut self, key: &str, encoded: &[u8]) {
        if let Some(Slot::Active { .. }) =
            self.keys.insert(key.into(), Slot::Passive(encoded.into()))
        {
            self.active -= 1;
        }
    }

    fn counts(&self) -> (usize, usize) {
        (self.active, self.keys.len() - self.active)
    }
}

fn state_encode_error<B: Behaviour>(err: postcard::Error) -> CodecError {
    CodecError::Binary {
        kind: B::KIND,
        what: "state",
        message: err.to_string(),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
