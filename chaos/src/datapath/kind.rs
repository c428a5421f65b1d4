//! The one kind the data-path simulation writes: every key keeps the trail
//! of the values it was sent, so the checker sees each acknowledged value
//! exactly once — or missing, or twice.

use std::sync::Arc;

use eddy_core::{Behaviour, Ctx, KindId, Partition, Registry};

/// Keeps every value it is sent, in order.
pub struct Trail;

impl Behaviour for Trail {
    const KIND: &'static str = "trail";
    type Event = u32;
    type State = Vec<u32>;
    type Alert = ();

    fn on_event(state: &mut Vec<u32>, value: u32, _ctx: &mut Ctx<'_, Self>) {
        state.push(value);
    }
}

/// The kind's id in [`registry`].
pub const TRAIL: KindId = KindId(0);

/// Keys the values are spread over.
pub const KEYS: u32 = 3;

/// The key value `v` is sent to.
pub fn key_of(value: u32) -> String {
    format!("k{}", value % KEYS)
}

/// The registry every simulated node hosts.
pub fn registry() -> Result<Arc<Registry>, String> {
    Registry::builder()
        .kind::<Trail>()
        .build()
        .map(Arc::new)
        .map_err(|err| err.to_string())
}

/// Every value a copy holds, with how often (a value is sent to one key
/// only, so a count above one is a write applied twice).
pub fn values(copy: &Partition) -> std::collections::BTreeMap<u32, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for key in 0..KEYS {
        let trail = copy
            .state_json(TRAIL, &format!("k{key}"))
            .ok()
            .flatten()
            .and_then(|state| serde_json::from_value::<Vec<u32>>(state).ok())
            .unwrap_or_default();
        for value in trail {
            *counts.entry(value).or_insert(0) += 1;
        }
    }
    counts
}
