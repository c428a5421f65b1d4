//! `tally`: the simulator's behaviour. Each event carries a unique id and the
//! key's state is the list of ids applied, so the checker sees exactly which
//! events a key holds: a missing acknowledged id is a loss, an id twice is a
//! duplicate, an id never sent is corruption.

use eddy_core::{Behaviour, Ctx};
use serde::{Deserialize, Serialize};

/// The behaviour; kind `tally`.
pub struct Tally;

/// One event: its globally unique id.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Mark {
    /// Unique per run.
    pub id: u32,
}

/// Ids applied to the key, in log order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Marks {
    /// Applied ids.
    pub ids: Vec<u32>,
}

impl Behaviour for Tally {
    const KIND: &'static str = "tally";
    type Event = Mark;
    type State = Marks;
    type Alert = ();

    fn on_event(state: &mut Marks, event: Mark, _ctx: &mut Ctx<'_, Self>) {
        state.ids.push(event.id);
    }
}
