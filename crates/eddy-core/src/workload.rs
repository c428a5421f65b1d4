//! Seeded workload generators: the contract each example's generator fulfils so
//! `demo`, `bench` and the chaos harness can drive any kind the same way.

use crate::behaviour::Behaviour;

/// A deterministic stream of events for one kind: the same seed gives the same
/// sequence on every platform.
pub trait Workload {
    /// The kind the events are for.
    type Kind: Behaviour;

    /// The next `(key, event)` of the stream.
    fn next_event(&mut self) -> (String, <Self::Kind as Behaviour>::Event);
}
