//! Bad input to a real node: each case gets the right status and a JSON error
//! naming the problem, and none changes any state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Posts `body` and checks the status, that the error names `needle`, and
/// that acct-1 still has exactly one event.
fn refused(node: &NodeProcess, content_type: &str, body: &str, status: u16, needle: &str) {
    let (got, reply, _) = post(&node.url("/v1/events"), content_type, body);
    assert_eq!(got, status, "{reply}");
    assert!(reply.contains(needle), "`{needle}` not in {reply}");
    assert!(json(&reply)["error"].is_string(), "{reply}");
    assert_eq!(
        events_of(node, "account", "acct-1"),
        Some(1),
        "state changed by {body}"
    );
}

#[test]
fn malformed_unknown_and_mismatched_events_are_400_and_change_nothing() {
    let node = NodeProcess::start(&[]);
    assert_eq!(
        post_json(&node.url("/v1/events"), &tx("acct-1", 1.0, "DE")).0,
        200
    );
    let good = tx("acct-1", 1.0, "DE");
    let json_type = "application/json";
    refused(
        &node,
        json_type,
        "{\"kind\": \"account\",",
        400,
        "malformed JSON",
    );
    refused(&node, json_type, "not json at all", 400, "malformed JSON");
    refused(&node, json_type, "", 400, "no events");
    refused(&node, json_type, "[]", 400, "no events");
    refused(
        &node,
        json_type,
        r#"{"kind":"acount","key":"acct-1","event":{}}"#,
        400,
        "\"field\":\"kind\"",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"acct-1","event":{"amount":"lots","country":"DE"}}"#,
        400,
        "\"field\":\"event\"",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"acct-1","event":{"amount":1,"country":"Germany"}}"#,
        400,
        "\"field\":\"event\"",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"acct-1","event":{"country":"DE"}}"#,
        400,
        "amount",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"acct-1"}"#,
        400,
        "event",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"acct-1","event":{"amount":1,"country":"DE"},"colour":"red"}"#,
        400,
        "colour",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"acct-1","event":{"amount":1,"country":"DE"},"producer":"p"}"#,
        400,
        "\"field\":\"seq\"",
    );
    refused(
        &node,
        json_type,
        r#"{"kind":"account","key":"","event":{"amount":1,"country":"DE"}}"#,
        400,
        "\"field\":\"key\"",
    );
    // One bad item in a batch refuses the whole batch and names its index.
    let batch = format!("[{good}, {good}, {{\"kind\":\"nope\",\"key\":\"k\",\"event\":1}}]");
    refused(&node, json_type, &batch, 400, "\"index\":2");
    let ndjson = format!("{good}\n{{broken\n");
    refused(&node, "application/x-ndjson", &ndjson, 400, "\"index\":1");
    // Unknown kind on reads too.
    let (status, body, _) = get(&node.url("/v1/actors/nope/k"));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn oversized_bodies_and_batches_are_413_and_change_nothing() {
    let node = NodeProcess::start(&["max_body_bytes=2000", "max_batch_events=3"]);
    assert_eq!(
        post_json(&node.url("/v1/events"), &tx("acct-1", 1.0, "DE")).0,
        200
    );
    let four: Vec<String> = (0..4).map(|_| tx("acct-1", 1.0, "DE")).collect();
    refused(
        &node,
        "application/json",
        &format!("[{}]", four.join(",")),
        413,
        "limit is 3",
    );
    let big = format!(
        r#"{{"kind":"account","key":"acct-1","event":{{"amount":1,"country":"DE","merchant":"{}"}}}}"#,
        "m".repeat(5000)
    );
    let (status, body, _) = post_json(&node.url("/v1/events"), &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(events_of(&node, "account", "acct-1"), Some(1));
}

#[test]
fn overload_is_429_with_retry_after_and_applies_nothing() {
    // One worker with room for two events: a batch of three cannot fit.
    let node = NodeProcess::start(&["workers=1", "max_inflight_events=2"]);
    let batch = format!("[{0},{0},{0}]", tx("acct-1", 1.0, "DE"));
    let (status, body, retry_after) = post_json(&node.url("/v1/events"), &batch);
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(events_of(&node, "account", "acct-1"), None);
    // Within the budget the node serves normally.
    assert_eq!(
        post_json(&node.url("/v1/events"), &tx("acct-1", 1.0, "DE")).0,
        200
    );
    assert_eq!(events_of(&node, "account", "acct-1"), Some(1));
}

/// A flood from many concurrent clients gets 200s and 429s, never unbounded
/// memory: the node stays under 256 MiB resident throughout (it starts near
/// 10 MiB; each in-flight event costs well under a KiB).
#[test]
fn bounded_flood_keeps_memory_bounded() {
    let node = NodeProcess::start(&["workers=1", "max_inflight_events=5000"]);
    let url = node.url("/v1/events");
    let batch: Vec<String> = (0..500)
        .map(|i| tx(&format!("acct-{}", i % 100), 1.0, "DE"))
        .collect();
    let body = format!("[{}]", batch.join(","));
    let (ok, overloaded) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let (mut ok, mut overloaded) = (0u64, 0u64);
                    for _ in 0..25 {
                        match post_json(&url, &body).0 {
                            200 => ok += 1,
                            429 => overloaded += 1,
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    (ok, overloaded)
                })
            })
            .collect();
        let mut peak = 0;
        while clients.iter().any(|c| !c.is_finished()) {
            peak = peak.max(node.rss_kib());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(peak < 256 * 1024, "resident memory peaked at {peak} KiB");
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert_eq!(ok + overloaded, 16 * 25);
    assert!(ok > 0);
    // Exactly the acknowledged batches were applied.
    let applied: u64 = (0..100)
        .map(|i| events_of(&node, "account", &format!("acct-{i}")).unwrap_or(0))
        .sum();
    assert_eq!(applied, ok * 500);
}

/// Blank keys, keys with control characters or terminal escapes, and a
/// producer seq of `u64::MAX` are 400s naming the field; nothing changes.
#[test]
fn blank_and_control_keys_and_the_last_seq_are_400_naming_the_field() {
    let node = NodeProcess::start(&[]);
    assert_eq!(
        post_json(&node.url("/v1/events"), &tx("acct-1", 1.0, "DE")).0,
        200
    );
    let event = r#""event":{"amount":1,"country":"DE","merchant":"m-1"}"#;
    for key in [
        "",
        "   ",
        "\\t",
        "\\u001b[2J",
        "acct\\u0007",
        "a\\nb",
        "\\u009b31m",
    ] {
        refused(
            &node,
            "application/json",
            &format!(r#"{{"kind":"account","key":"{key}",{event}}}"#),
            400,
            "\"field\":\"key\"",
        );
    }
    refused(
        &node,
        "application/json",
        &format!(
            r#"{{"kind":"account","key":"acct-1","producer":"p","seq":{},{event}}}"#,
            u64::MAX
        ),
        400,
        "\"field\":\"seq\"",
    );
    let below = format!(
        r#"{{"kind":"account","key":"acct-2","producer":"p","seq":{},{event}}}"#,
        u64::MAX - 1
    );
    assert_eq!(post_json(&node.url("/v1/events"), &below).0, 200);
}
