//! The HTTP API (DESIGN §7): events in, state and alerts out, health and
//! metrics. Every refusal is a JSON body `{"error": …}` naming the offending
//! item (`index`) and `field` where there is one, and changes nothing.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eddy_cluster::MemberStatus;
use eddy_core::{PartitionId, ProducerRef, Registry};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};

use crate::ingress::{Ingress, IngressError, IngressEvent};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// Where events go.
    pub ingress: Ingress,
    /// `max_batch_events` from the config.
    pub max_batch_events: usize,
    /// Turns true when the node stops; ends alert streams.
    pub shutdown: watch::Receiver<bool>,
    /// Rung by `POST /v1/admin/leave`: the node leaves like on SIGTERM.
    pub leave: Arc<tokio::sync::Notify>,
    /// Injected faults; set by `POST /v1/admin/faults`, which exists only
    /// when the binary installed the hook (`NodeBuilder::fault_hook`).
    pub faults: Arc<crate::faults::Faults>,
    /// Per-second throughput samples behind `GET /v1/stats/history`.
    pub history: Arc<std::sync::Mutex<crate::history::History>>,
    /// The controller driver, when the config names voters.
    pub control: crate::control::ControlHandle,
    /// The API tokens; `None` serves anyone (see [`crate::http_auth`]).
    pub tokens: Option<Arc<crate::auth::TokenStore>>,
    /// `insecure = true` in the config: shown by `/v1/cluster` and the
    /// dashboard.
    pub insecure: bool,
}

/// The router with every route and the body limit; `fault_hook` adds
/// `POST /v1/admin/faults` (chaos binaries only, `NodeBuilder::fault_hook`).
pub fn router(state: AppState, max_body_bytes: usize, fault_hook: bool) -> Router {
    let tokens = state.tokens.clone();
    let router = Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/actors/{kind}/{key}", get(get_actor))
        .route("/", get(crate::dashboard::page))
        .route("/v1/alerts", get(get_alerts))
        .route("/v1/alerts/recent", get(get_recent_alerts))
        .route("/v1/stats/history", get(get_history))
        .route("/v1/cluster", get(get_cluster))
        .route("/v1/partitions", get(get_partitions))
        .route("/v1/admin/leave", post(post_leave))
        .route("/v1/admin/forget-down", post(post_forget_down))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let router = if fault_hook {
        router.route("/v1/admin/faults", post(post_faults))
    } else {
        router
    };
    router
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Every request's token is checked against the role its route
        // needs; inside the origin guard, so a refused read still carries
        // the CORS header and the dashboard can show why.
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            crate::http_auth::guard,
        ))
        // Any origin may read (the dashboard reads every member); writes
        // from another origin and admin actions not declared JSON are
        // refused before any handler runs.
        .layer(axum::middleware::from_fn(crate::origin::guard))
        .with_state(state)
}

/// A refusal: status and JSON body `{"error": …, "index"?, "field"?}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status (4xx: the request's fault).
    pub status: StatusCode,
    /// The JSON body, naming the item and field where one is at fault.
    pub body: serde_json::Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn api_error(status: StatusCode, body: serde_json::Value) -> ApiError {
    ApiError { status, body }
}

/// A JSON error response.
fn error(status: StatusCode, body: serde_json::Value) -> Response {
    api_error(status, body).into_response()
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

fn ingress_error(err: &IngressError) -> Response {
    match err {
        IngressError::Overloaded { retry_after_ms } => with_retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": err.to_string()}),
            ),
            retry_after_ms.div_ceil(1000),
        ),
        IngressError::NotReady => with_retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": err.to_string()}),
            ),
            1,
        ),
        IngressError::Unavailable(_) => with_retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": err.to_string()}),
            ),
            1,
        ),
    }
}

/// One event as clients send it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow, default)]
    producer: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
}

/// Splits a body into its items: a JSON array, one object, or NDJSON (any
/// whitespace-separated sequence of objects).
fn split_items(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items = if first == Some(&b'[') {
        serde_json::from_slice::<Vec<&RawValue>>(body).map_err(|err| {
            api_error(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("malformed JSON: {err}")}),
            )
        })?
    } else {
        let mut items = Vec::new();
        for (index, item) in serde_json::Deserializer::from_slice(body)
            .into_iter::<&RawValue>()
            .enumerate()
        {
            items.push(item.map_err(|err| {
                api_error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("malformed JSON: {err}"), "index": index}),
                )
            })?);
        }
        items
    };
    Ok(items)
}

/// Decodes the body of `POST /v1/events` (a JSON array, one object, or
/// NDJSON) into events for the ingress, with the kinds of `registry`: the
/// count is checked against `max_batch_events` before any item is decoded,
/// every item is validated, and the first bad one refuses the whole body.
/// Public so the fuzz target drives exactly what the route runs.
pub fn decode_events(
    registry: &Registry,
    body: &[u8],
    max_batch_events: usize,
) -> Result<Vec<IngressEvent>, ApiError> {
    let items = split_items(body)?;
    if items.is_empty() {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "no events in body"}),
        ));
    }
    if items.len() > max_batch_events {
        return Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("{} events in one request; the limit is {max_batch_events}", items.len())}),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| validate(registry, index, raw))
        .collect()
}

/// Validates one item into an event for the ingress.
fn validate(registry: &Registry, index: usize, raw: &RawValue) -> Result<IngressEvent, ApiError> {
    let bad = |field: Option<&str>, message: String| {
        let mut body = json!({"error": message, "index": index});
        if let Some(field) = field {
            body["field"] = json!(field);
        }
        api_error(StatusCode::BAD_REQUEST, body)
    };
    let item: Item<'_> =
        serde_json::from_str(raw.get()).map_err(|err| bad(None, err.to_string()))?;
    let kind = registry.kind_id(&item.kind).ok_or_else(|| {
        let known: Vec<&str> = registry.kinds().map(|(_, name)| name).collect();
        bad(
            Some("kind"),
            format!(
                "unknown kind `{}` (this node hosts: {})",
                item.kind,
                known.join(", ")
            ),
        )
    })?;
    eddy_core::check_key(&item.key).map_err(|err| bad(Some(err.field()), err.to_string()))?;
    if let Some(seq) = item.seq {
        eddy_core::check_seq(seq).map_err(|err| bad(Some(err.field()), err.to_string()))?;
    }
    let payload = registry
        .event_from_json(kind, item.event.get())
        .map_err(|err| bad(Some("event"), err.to_string()))?;
    let producer = match (item.producer, item.seq) {
        (Some(producer), Some(seq)) => Some(ProducerRef {
            producer: producer.into_owned(),
            seq,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(bad(Some("seq"), "`producer` needs `seq`".into())),
        (None, Some(_)) => return Err(bad(Some("producer"), "`seq` needs `producer`".into())),
    };
    Ok(IngressEvent {
        kind,
        key: item.key.as_ref().into(),
        payload,
        producer,
    })
}

async fn post_events(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(rejection.status(), json!({"error": rejection.body_text()}));
        }
    };
    let batch = match decode_events(app.ingress.registry(), &body, app.max_batch_events) {
        Ok(batch) => batch,
        Err(refusal) => return refusal.into_response(),
    };
    match app.ingress.submit(batch).await {
        Ok(reply) if reply.rejected.is_empty() => (
            StatusCode::OK,
            Json(json!({"accepted": reply.accepted, "duplicates": reply.duplicates})),
        )
            .into_response(),
        Ok(reply) => {
            let rejected: Vec<_> = reply
                .rejected
                .iter()
                .map(|r| json!({"index": r.index, "error": r.error.to_string()}))
                .collect();
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"accepted": reply.accepted, "duplicates": reply.duplicates, "rejected": rejected}),
            )
        }
        Err(err) => ingress_error(&err),
    }
}

async fn get_actor(
    State(app): State<AppState>,
    Path((kind_name, key)): Path<(String, String)>,
) -> Response {
    let Some(kind) = app.ingress.registry().kind_id(&kind_name) else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("unknown kind `{kind_name}`"), "field": "kind"}),
        );
    };
    match app.ingress.actor_state(kind, &key).await {
        Ok(actor) => match actor.state {
            Some(state) => Json(json!({
                "kind": kind_name,
                "key": key,
                "partition": actor.partition.0,
                "owner": actor.owner,
                "replicas": actor.replicas,
                "owner_epoch": actor.owner_epoch.0,
                "state": state,
            }))
            .into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                json!({"error": format!("{kind_name}/{key} has no state"), "partition": actor.partition.0, "owner": actor.owner}),
            ),
        },
        Err(err) => ingress_error(&err),
    }
}

/// Filter of `GET /v1/alerts`.
#[derive(Deserialize)]
struct AlertFilter {
    kind: Option<String>,
    key: Option<String>,
    /// Send up to this many of the latest kept alerts that pass the filter
    /// (at most [`crate::alerts::RECENT`]) before the live ones; 0 (the
    /// default) sends live alerts only.
    #[serde(default)]
    replay: usize,
}

impl AlertFilter {
    fn wants(&self, alert: &eddy_core::AlertRecord) -> bool {
        self.kind.as_deref().is_none_or(|k| k == alert.kind)
            && self.key.as_deref().is_none_or(|k| k == alert.key)
    }
}

/// Alerts as Server-Sent Events: the replayed ones (`?replay=N`), then live
/// ones as they are published; none twice, none missed in between.
async fn get_alerts(
    State(app): State<AppState>,
    Query(filter): Query<AlertFilter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (receiver, kept) = app.ingress.subscribe_alerts_with_recent();
    let mut replay: std::collections::VecDeque<_> =
        kept.into_iter().filter(|a| filter.wants(a)).collect();
    let keep = filter.replay.min(crate::alerts::RECENT);
    replay.drain(..replay.len().saturating_sub(keep));
    let stream = futures_util::stream::unfold(
        (receiver, app.shutdown.clone(), filter, replay),
        |(mut receiver, mut shutdown, filter, mut replay)| async move {
            loop {
                let next = match replay.pop_front() {
                    Some(alert) => Ok(alert),
                    None => tokio::select! {
                        next = receiver.recv() => next,
                        _ = shutdown.wait_for(|stopping| *stopping) => return None,
                    },
                };
                let event = match next {
                    Ok(alert) => {
                        if !filter.wants(&alert) {
                            continue;
                        }
                        Event::default()
                            .event("alert")
                            .json_data(&*alert)
                            .unwrap_or_else(|err| {
                                Event::default().event("error").data(err.to_string())
                            })
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Event::default().event("lagged").data(missed.to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, shutdown, filter, replay)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Query of `GET /v1/alerts/recent`.
#[derive(Deserialize)]
struct RecentQuery {
    limit: Option<usize>,
}

/// The latest alerts this node published (up to [`crate::alerts::RECENT`]),
/// oldest first.
async fn get_recent_alerts(
    State(app): State<AppState>,
    Query(query): Query<RecentQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(crate::alerts::RECENT);
    let alerts = app.ingress.recent_alerts(limit);
    let alerts: Vec<&eddy_core::AlertRecord> = alerts.iter().map(|a| &**a).collect();
    Json(json!({
        "node": app.ingress.cluster().local.name.as_str(),
        "alerts": alerts,
    }))
    .into_response()
}

/// Query of `GET /v1/stats/history`.
#[derive(Deserialize)]
struct HistoryQuery {
    /// Only samples ending after this time (ms since the Unix epoch): lets
    /// a client that has the history append what is new.
    since_ms: Option<u64>,
}

/// This process's throughput, one sample a second for the last ten minutes,
/// oldest first, as rates per second.
async fn get_history(State(app): State<AppState>, Query(query): Query<HistoryQuery>) -> Response {
    let samples: Vec<crate::history::RateSample> = {
        // Poisoned only by a panic mid-`observe`, which leaves the ring
        // valid; serve it.
        let history = app.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .since(query.since_ms.unwrap_or(0))
            .map(crate::history::RateSample::from)
            .collect()
    };
    Json(json!({
        "node": app.ingress.cluster().local.name.as_str(),
        "interval_ms": crate::history::SAMPLE_INTERVAL_MS,
        "capacity": crate::history::HISTORY_SAMPLES,
        "samples": samples,
    }))
    .into_response()
}

/// Graceful leave: the node announces it leaves, the others take its
/// partitions over from their backups while it finishes open requests, then
/// it exits (as on SIGTERM).
async fn post_leave(State(app): State<AppState>) -> Response {
    app.leave.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({"leaving": app.ingress.cluster().local.name.as_str()})),
    )
        .into_response()
}

/// The operator says the members this node sees down are gone for good:
/// `Remove` of each is proposed to the controller, which only a majority of
/// its voters can commit (503 otherwise, saying so; voters themselves are
/// never removed). Their partitions' copies are then placed on the others.
async fn post_forget_down(State(app): State<AppState>) -> Response {
    let cluster = app.ingress.cluster();
    let down: Vec<eddy_control::MemberId> = cluster
        .members
        .iter()
        .filter(|m| m.status == MemberStatus::Down)
        .map(|m| eddy_control::MemberId::new(m.identity.name.clone(), m.identity.incarnation))
        .collect();
    let proposed: Vec<String> = down.iter().map(ToString::to_string).collect();
    let outcome = if down.is_empty() {
        Ok(Vec::new())
    } else {
        app.control
            .remove(down, std::time::Duration::from_secs(3))
            .await
    };
    let (status, controller) = match outcome {
        Ok(removed) => (
            StatusCode::OK,
            json!({
                "proposed": proposed,
                "committed": true,
                "outcomes": removed
                    .into_iter()
                    .map(|(member, rejected)| json!({"member": member, "rejected": rejected}))
                    .collect::<Vec<_>>(),
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "proposed": proposed,
                "committed": false,
                "error": reason,
            }),
        ),
    };
    let body = json!({
        "live_when_asked": cluster.live_count(),
        "quorum": app.ingress.cluster().has_quorum(),
        "controller": controller,
    });
    (status, Json(body)).into_response()
}

/// Injects network faults (chaos testing): `{"drop_to": [names],
/// "drop_from": [names], "loss": 0-1, "delay_ms": n, "drop_log_entries":
/// bool, "fail_storage": bool}`; `{}` heals. Routed only when the binary
/// installed the hook.
async fn post_faults(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(err) => return error(err.status(), json!({"error": err.body_text()})),
    };
    let spec: crate::faults::FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("bad fault spec: {err}")}),
            );
        }
    };
    let cluster = app.ingress.cluster();
    app.faults.set(&spec, |name| {
        cluster
            .members
            .iter()
            .find(|m| &m.identity.name == name)
            .map(|m| m.identity.gossip_addr)
    });
    tracing::warn!(?spec, "injected network faults changed");
    Json(json!({"faults": spec})).into_response()
}

/// Members as this node sees them.
async fn get_cluster(State(app): State<AppState>) -> Response {
    let cluster = app.ingress.cluster();
    let members: Vec<_> = cluster
        .members
        .iter()
        .map(|m| {
            let id = &m.identity;
            json!({
                "name": id.name.as_str(),
                "status": match m.status {
                    MemberStatus::Up => "up",
                    MemberStatus::Suspect => "suspect",
                    MemberStatus::Down => "down",
                },
                "generation": id.generation,
                "gossip_addr": id.gossip_addr.to_string(),
                "peer_addr": id.peer_addr.to_string(),
                "http_addr": id.http_addr.to_string(),
                "tcp_addr": id.tcp_addr.to_string(),
                "local": cluster.is_local(&id.name),
            })
        })
        .collect();
    Json(json!({
        "node": cluster.local.name.as_str(),
        "local_view_version": cluster.view_version,
        "quorum": cluster.has_quorum(),
        "kinds": app.ingress.registry().kinds().map(|(_, name)| name).collect::<Vec<_>>(),
        "members": members,
        "controller": app.control.view(),
        "insecure": app.insecure,
        "tokens": app.tokens.is_some(),
    }))
    .into_response()
}

/// In a `GET /v1/partitions` answer, how many partitions have fewer than
/// `copies` members in their `in_sync` set (`None`: not such an answer).
/// What an operator, a bench or a chaos schedule waits on between two
/// restarts.
pub fn partitions_short_of_copies(table: &serde_json::Value, copies: usize) -> Option<usize> {
    let partitions = table["partitions"].as_array()?;
    Some(
        partitions
            .iter()
            .filter(|p| p["in_sync"].as_array().map_or(0, Vec::len) < copies)
            .count(),
    )
}

/// The partition table with epochs, and how many partitions each node owns.
async fn get_partitions(State(app): State<AppState>) -> Response {
    let cluster = app.ingress.cluster();
    let placement = &cluster.placement;
    let table = placement.table();
    let partitions: Vec<_> = (0..table.partitions())
        .map(PartitionId)
        .map(|p| {
            let replicas: Vec<&str> = table.replicas(p).map(|n| n.as_str()).collect();
            // The committed in-sync set: the copies a write waits for, and
            // the only ones a new owner is elected from.
            let in_sync: Vec<&str> = cluster
                .committed
                .as_ref()
                .and_then(|c| c.assignment(p))
                .map(|a| a.isr.iter().map(|m| m.name.as_str()).collect())
                .unwrap_or_default();
            json!({
                "partition": p.0,
                "owner": replicas.first(),
                "replicas": replicas,
                "in_sync": in_sync,
                "local_table_epoch": placement.epoch(p).0,
            })
        })
        .collect();
    // Owners only: a dead member can stay in in-sync sets (never below
    // two copies) without owning anything.
    let owned: serde_json::Map<String, serde_json::Value> = table
        .nodes()
        .iter()
        .zip(table.owned_counts())
        .filter(|(_, count)| *count > 0)
        .map(|(node, count)| (node.to_string(), json!(count)))
        .collect();
    // The copies this node holds: their owner epoch is the one that fences,
    // the number `GET /v1/actors` shows (the `local_` numbers above are this
    // node's own bookkeeping; docs/ARCHITECTURE.md, "Epochs and versions").
    let mut copies: Vec<_> = app
        .ingress
        .copies()
        .await
        .into_iter()
        .map(|(held, role)| {
            json!({
                "partition": held.partition,
                "role": role,
                "owner_epoch": held.epoch,
                "last_entry_epoch": held.last_epoch,
                "last_seq": held.last_seq,
            })
        })
        .collect();
    copies.sort_by_key(|c| c["partition"].as_u64());
    Json(json!({
        "node": cluster.local.name.as_str(),
        "local_table_version": placement.version(),
        "copies": copies,
        "fingerprint": format!("{:016x}", table.fingerprint()),
        "partition_count": table.partitions(),
        "replication_factor": placement.rf(),
        "owned": owned,
        "partitions": partitions,
    }))
    .into_response()
}

async fn readyz(State(app): State<AppState>) -> Response {
    if app.ingress.is_ready() {
        "ready".into_response()
    } else {
        with_retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "not ready", "reason": app.ingress.cluster().no_quorum_reason()}),
            ),
            1,
        )
    }
}

async fn metrics() -> Response {
    match crate::metrics::handle() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_IMPLEMENTED,
            json!({"error": "another metrics recorder is installed in this process"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_short_of_copies_counts_small_in_sync_sets() {
        let table = json!({"partitions": [
            {"partition": 0, "in_sync": ["a", "b"]},
            {"partition": 1, "in_sync": ["a"]},
            {"partition": 2, "in_sync": []},
        ]});
        assert_eq!(partitions_short_of_copies(&table, 2), Some(2));
        assert_eq!(partitions_short_of_copies(&table, 1), Some(1));
        assert_eq!(partitions_short_of_copies(&json!({"error": "x"}), 2), None);
    }
}
