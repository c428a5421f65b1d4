//! `http_events`: the body of `POST /v1/events` (JSON array, one object or
//! NDJSON) as the route decodes it (`eddy_node::http::decode_events`).

/// The node's default `max_batch_events`.
const MAX_BATCH_EVENTS: usize = 10_000;

/// The whole input is a body. What is accepted is a batch within the limit
/// whose every payload decodes as its kind's event.
pub fn http_events(data: &[u8]) {
    let registry = crate::registry();
    if let Ok(events) = eddy_node::http::decode_events(&registry, data, MAX_BATCH_EVENTS) {
        assert!((1..=MAX_BATCH_EVENTS).contains(&events.len()));
        for event in events {
            assert!(eddy_core::check_key(&event.key).is_ok());
            assert!(
                registry.check_event(event.kind, &event.payload).is_ok(),
                "an accepted event's payload does not decode"
            );
        }
    }
}
