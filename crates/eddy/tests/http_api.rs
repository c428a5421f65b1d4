//! The HTTP API of a real `eddy node` process: every body form, state reads,
//! alerts over SSE, health, metrics, and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn object_array_and_ndjson_bodies_apply_and_state_reads_back() {
    let node = NodeProcess::start(&[]);
    let url = node.url("/v1/events");
    let (status, body, _) = post_json(&url, &tx("acct-1", 10.0, "DE"));
    assert_eq!(
        (status, json(&body)["accepted"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let array = format!("[{},{}]", tx("acct-1", 11.0, "DE"), tx("acct-2", 5.0, "FR"));
    let (status, body, _) = post_json(&url, &array);
    assert_eq!(
        (status, json(&body)["accepted"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let ndjson = format!(
        "{}\n{}\n",
        tx("acct-1", 12.0, "DE"),
        tx("acct-1", 13.0, "DE")
    );
    let (status, body, _) = post(&url, "application/x-ndjson", &ndjson);
    assert_eq!(
        (status, json(&body)["accepted"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    assert_eq!(events_of(&node, "account", "acct-1"), Some(4));
    assert_eq!(events_of(&node, "account", "acct-2"), Some(1));
    assert_eq!(events_of(&node, "account", "acct-3"), None);

    // acct-7's partition is pinned to 26 (P = 1024) in eddy-core's tests.
    assert_eq!(post_json(&url, &tx("acct-7", 1.0, "DE")).0, 200);
    let (_, body, _) = get(&node.url("/v1/actors/account/acct-7"));
    assert_eq!(json(&body)["partition"], 26);
    let (status, body, _) = get(&node.url("/v1/actors/account/acct-1"));
    assert_eq!(status, 200);
    let actor = json(&body);
    assert_eq!(actor["owner"], "node-1");
    assert!(
        actor["partition"].as_u64().is_some_and(|p| p < 1024),
        "{actor}"
    );
    assert!(actor["owner_epoch"].as_u64().is_some());
    let vitals = r#"{"kind":"patient","key":"pat-1","event":{"resp_rate":18,"spo2":96,"on_oxygen":false,"temp":37.1,"systolic":120,"heart_rate":80,"consciousness":"A"}}"#;
    let iot = r#"{"kind":"device","key":"dev-1","event":{"metric":"temp","value":71.2}}"#;
    assert_eq!(post_json(&url, vitals).0, 200);
    assert_eq!(post_json(&url, iot).0, 200);
    assert_eq!(events_of(&node, "patient", "pat-1"), Some(1));
    assert_eq!(events_of(&node, "device", "dev-1"), Some(1));
}

#[test]
fn producer_retries_change_state_once() {
    let node = NodeProcess::start(&[]);
    let url = node.url("/v1/events");
    let with_producer = |seq: u64| {
        format!(
            r#"{{"kind":"account","key":"acct-9","event":{{"amount":1,"country":"DE"}},"producer":"p1","seq":{seq}}}"#
        )
    };
    assert_eq!(json(&post_json(&url, &with_producer(1)).1)["accepted"], 1);
    let (status, body, _) = post_json(&url, &with_producer(1));
    assert_eq!(status, 200);
    assert_eq!(
        (
            json(&body)["accepted"].as_u64(),
            json(&body)["duplicates"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(json(&post_json(&url, &with_producer(2)).1)["accepted"], 1);
    assert_eq!(events_of(&node, "account", "acct-9"), Some(2));
}

#[test]
fn alerts_stream_over_sse_with_filters() {
    let node = NodeProcess::start(&[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into();
    let response = agent
        .get(&node.url("/v1/alerts?kind=account&key=acct-t"))
        .call()
        .expect("SSE stream opens");
    let mut lines = BufReader::new(response.into_body().into_reader()).lines();
    // Another key's alert must be filtered out; acct-t's travel alert must come.
    post_json(
        &node.url("/v1/events"),
        &format!("{}\n{}", tx("other", 1.0, "DE"), tx("other", 1.0, "US")),
    );
    post_json(
        &node.url("/v1/events"),
        &format!("{}\n{}", tx("acct-t", 1.0, "DE"), tx("acct-t", 1.0, "US")),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut data = None;
    while Instant::now() < deadline {
        let line = lines.next().expect("stream open").expect("reads");
        if let Some(payload) = line.strip_prefix("data:") {
            data = Some(json(payload.trim()));
            break;
        }
    }
    let alert = data.expect("an alert arrived");
    assert_eq!(alert["key"], "acct-t", "{alert}");
    assert_eq!(alert["kind"], "account");
    assert_eq!(alert["alert"]["reason"], "impossible_travel");
    assert!(alert["seq"].as_u64().is_some() && alert["partition"].as_u64().is_some());
}

#[test]
fn health_readiness_and_metrics() {
    let node = NodeProcess::start(&[]);
    assert_eq!(get(&node.url("/healthz")).0, 200);
    assert_eq!(get(&node.url("/readyz")).0, 200);
    post_json(&node.url("/v1/events"), &tx("acct-m", 1.0, "DE"));
    let (status, body, _) = get(&node.url("/metrics"));
    assert_eq!(status, 200);
    for metric in [
        "eddy_events_received_total",
        "eddy_events_applied_total",
        "eddy_ack_latency_seconds",
    ] {
        assert!(body.contains(metric), "{metric} missing from\n{body}");
    }
}

/// Sums `field` (a rate per second) times each sample's span: the count.
fn history_count(history: &serde_json::Value, field: &str) -> f64 {
    history["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s[field].as_f64().expect("rate") * s["span_ms"].as_f64().expect("span") / 1000.0)
        .sum()
}

#[test]
fn throughput_history_counts_every_event_and_alert_in_time_order() {
    let node = NodeProcess::start(&[]);
    // Five accounts paying in DE then in the US: ten events, five
    // impossible_travel alerts.
    let body: Vec<String> = (0..5)
        .flat_map(|i| {
            [
                tx(&format!("acct-h{i}"), 1.0, "DE"),
                tx(&format!("acct-h{i}"), 1.0, "US"),
            ]
        })
        .collect();
    let (status, reply, _) = post_json(&node.url("/v1/events"), &body.join("\n"));
    assert_eq!(status, 200, "{reply}");

    // The node samples once a second; wait (bounded) for the sample after
    // the batch.
    let deadline = Instant::now() + Duration::from_secs(10);
    let history = loop {
        let (status, body, _) = get(&node.url("/v1/stats/history"));
        assert_eq!(status, 200, "{body}");
        let history = json(&body);
        // Received, applied and alerts are read one by one: all three in.
        let complete = history_count(&history, "received_per_s") >= 10.0
            && history_count(&history, "applied_per_s") >= 10.0
            && history_count(&history, "alerts_per_s") >= 5.0;
        if complete || Instant::now() > deadline {
            break history;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(history["interval_ms"], 1000);
    assert_eq!(history["capacity"], 600);
    for (field, expected) in [
        ("received_per_s", 10.0),
        ("applied_per_s", 10.0),
        ("alerts_per_s", 5.0),
    ] {
        let counted = history_count(&history, field);
        assert!(
            (counted - expected).abs() < 1e-6,
            "{field}: history counts {counted}, expected {expected}: {history}"
        );
    }
    let samples = history["samples"].as_array().expect("samples");
    assert!(samples.len() <= 600, "bounded: {}", samples.len());
    let ends: Vec<u64> = samples
        .iter()
        .map(|s| s["at_ms"].as_u64().expect("at_ms"))
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {ends:?}"
    );
    assert!(samples.iter().all(|s| s["span_ms"].as_u64() > Some(0)));

    // `since_ms` returns only what is newer.
    let last = *ends.last().expect("a sample");
    let (_, body, _) = get(&node.url(&format!("/v1/stats/history?since_ms={last}")));
    let newer = json(&body);
    assert!(
        newer["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .all(|s| s["at_ms"].as_u64() > Some(last)),
        "{newer}"
    );
    assert!(
        history_count(&newer, "applied_per_s") < 1e-6,
        "no events after the batch"
    );
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let node = NodeProcess::start(&[]);
    post_json(&node.url("/v1/events"), &tx("acct-s", 1.0, "DE"));
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn bad_config_fails_with_one_clear_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["node", "--set", "tick_ms=soon"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: config:"), "{stderr}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["node", "--config", "/nonexistent/eddy.toml"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/eddy.toml"));
}

/// A page of another origin can read (the dashboard reads every member) but
/// change nothing: a "simple" cross-origin POST (text/plain, no preflight)
/// used to make a node leave.
#[test]
fn a_web_page_of_another_origin_can_read_but_change_nothing() {
    let node = NodeProcess::start(&[]);
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .build(),
    );
    let answer = |response: Result<ureq::http::Response<ureq::Body>, ureq::Error>| {
        let mut response = response.expect("the node answers");
        let allow = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), body, allow)
    };
    let post = |path: &str, content_type: &str, origin: Option<&str>| {
        let mut request = agent
            .post(&node.url(path))
            .header("content-type", content_type);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        answer(request.send("{}"))
    };
    let evil = Some("http://evil.example");
    let (status, body, allow) = post("/v1/admin/leave", "text/plain", evil);
    assert_eq!(status, 403, "{body}");
    assert_eq!(allow, None, "a write never answers cross-origin");
    let (status, body, _) = post("/v1/admin/leave", "application/json", evil);
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = post("/v1/events", "text/plain", evil);
    assert_eq!(status, 403, "{body}");
    // Without an Origin (curl, scripts): admin actions must say JSON.
    let (status, body, _) = post("/v1/admin/forget-down", "text/plain", None);
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("application/json"), "{body}");

    // Still up, and reads answer any origin.
    let (status, _, allow) = answer(
        agent
            .get(&node.url("/v1/cluster"))
            .header("origin", "http://evil.example")
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(allow.as_deref(), Some("*"));
}

/// The fault hook never ships: the `eddy` binary (of this build, and so of
/// any `cargo build --release` at the workspace root, which has no feature
/// or flag that could add it) has no `POST /v1/admin/faults` — not even the
/// replication bug switch that acknowledges without replicating — while
/// the chaos crate's `eddy-chaos-node` serves it and still refuses a spec
/// it does not know.
#[test]
fn only_the_chaos_node_flavour_has_the_fault_hook() {
    let bug = r#"{"drop_log_entries": true}"#;
    let eddy = NodeProcess::start(&[]);
    let (status, body, _) = post_json(&eddy.url("/v1/admin/faults"), bug);
    assert_eq!(status, 404, "eddy must not take injected faults: {body}");
    let (status, body, _) = post_json(&eddy.url("/v1/admin/faults"), "{}");
    assert_eq!(status, 404, "{body}");

    let chaos = NodeProcess::start_with_fault_hook(&[]);
    let url = chaos.url("/v1/admin/faults");
    let (status, body, _) = post_json(&url, bug);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["faults"]["drop_log_entries"], true, "{body}");
    let (status, body, _) = post_json(&url, r#"{"drop_everything": true}"#);
    assert_eq!(status, 400, "an unknown fault is refused: {body}");
    assert_eq!(post_json(&url, "{}").0, 200);
}
