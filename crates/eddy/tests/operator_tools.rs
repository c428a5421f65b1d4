//! The operator's tools against real nodes: the web dashboard in a real
//! headless browser (Debian's `chromium`) and `/metrics` through Prometheus's
//! own linter (`promtool`, Debian's `prometheus`). Both programs are installed
//! by `.ci/run` and the README's test command; `CHROMIUM` / `PROMTOOL` point
//! elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn tool(env: &str, default: &str, package: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    let found = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{path}` not found: install Debian's `{package}` package (the README's test command does) or set {env}"
    );
    path
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=…`), killed after 60 s; returns stdout.
fn chromium(url: &str, mode: &str, profile: &Path) -> String {
    let mut child = Command::new(tool("CHROMIUM", "chromium", "chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1100",
            // The page polls once a second; give it several rounds.
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait on chromium").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("reader thread")
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// Readings that raise `threshold_high` on `devices` devices.
fn hot_readings(devices: usize) -> String {
    (0..devices)
        .map(|i| {
            format!(
                r#"{{"kind":"device","key":"dev-{i}","event":{{"metric":"temp","value":95.0}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Events applied in the history every node serves, summed over the cluster
/// (rates times the sample's span).
fn events_in_history(nodes: &[NodeProcess]) -> f64 {
    nodes
        .iter()
        .map(|node| {
            let (status, body, _) = get(&node.url("/v1/stats/history"));
            assert_eq!(status, 200, "{body}");
            let history = json(&body);
            history["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| {
                    s["applied_per_s"].as_f64().expect("rate")
                        * s["span_ms"].as_f64().expect("span")
                        / 1000.0
                })
                .sum::<f64>()
        })
        .sum()
}

/// The number in `attr="…"` on the element with `id`.
fn attr_of(dom: &str, id: &str, attr: &str) -> f64 {
    let at = dom.find(&format!(r#"id="{id}""#)).expect("element present");
    let tag = &dom[dom[..at].rfind('<').expect("tag start")..];
    let tag = &tag[..tag.find('>').expect("tag end")];
    let start = tag
        .find(&format!(r#"{attr}=""#))
        .unwrap_or_else(|| panic!("{attr} on #{id}: {tag}"))
        + attr.len()
        + 2;
    let value = &tag[start..];
    value[..value.find('"').expect("closing quote")]
        .parse()
        .unwrap_or_else(|_| panic!("{attr} on #{id} is a number: {tag}"))
}

#[test]
fn dashboard_in_a_headless_browser_shows_members_partitions_alerts_and_a_key() {
    let nodes = start_cluster(3, &[]);
    let refs: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_agreement(&refs, |owners| owners.len() == 3);
    let (status, body, _) = post_json(&nodes[0].url("/v1/events"), &hot_readings(12));
    assert_eq!(status, 200, "{body}");
    // The events are in the nodes' per-second history before the page opens
    // (a node samples once a second): the chart must show them at once.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = events_in_history(&nodes);
    while seen < 12.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        seen = events_in_history(&nodes);
    }
    assert!(
        (seen - 12.0).abs() < 0.01,
        "the cluster's history counts the 12 events applied: {seen}"
    );

    let profile = scratch("chromium-profile");
    // The page on node-2 shows alerts raised on every node, and looks up a
    // key named in the address.
    let dom = chromium(&nodes[1].url("/#device/dev-3"), "--dump-dom", &profile);
    assert!(
        dom.contains(r#"data-ready="true""#),
        "page never loaded its data:\n{dom}"
    );
    for n in 1..=3 {
        assert!(
            dom.contains(&format!(r#"data-name="node-{n}" data-status="up""#)),
            "node-{n} is not listed as up:\n{dom}"
        );
    }
    let alert_rows = dom.matches(r#"data-kind="device""#).count();
    assert_eq!(alert_rows, 12, "one row per alert raised:\n{dom}");
    let named_rows = dom.matches(r#"data-alert="threshold_high""#).count();
    assert_eq!(named_rows, 12, "each row names its alert:\n{dom}");
    assert_eq!(
        dom.matches(r#"<span class="alert-name">threshold high</span>"#)
            .count(),
        12,
        "the alert's name is shown as words, not JSON:\n{dom}"
    );

    // The chart: history loaded from every node on open, with both axes.
    let samples = attr_of(&dom, "chart", "data-samples");
    assert!(samples >= 3.0, "history of every member loaded: {samples}");
    let peak = attr_of(&dom, "chart", "data-peak-events");
    assert!(
        peak > 0.0,
        "the events sent before the page opened show: {peak}"
    );
    for axis in ["events", "alerts", "time"] {
        assert!(
            dom.contains(&format!(r#"data-axis="{axis}""#)),
            "the chart has a {axis} axis:\n{dom}"
        );
    }
    assert!(
        dom.contains(">events applied/s<"),
        "the y axis has its unit"
    );
    assert!(
        dom.contains(">time (local clock"),
        "the x axis has its unit"
    );
    assert!(
        !dom.contains(r#"data-samples="0""#),
        "the chart is not empty"
    );
    let cells = dom.matches("title=\"partition ").count();
    assert_eq!(cells, 1024, "a cell per partition in the map");
    let state = &dom[dom.find(r#"<pre id="state""#).expect("lookup output")..];
    let state = &state[..state.find("</pre>").expect("end of lookup output")];
    assert!(
        state.contains("&quot;key&quot;: &quot;dev-3&quot;") || state.contains(r#""key": "dev-3""#),
        "the key lookup shows dev-3's state:\n{state}"
    );

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &nodes[0].url("/"),
        &format!("--screenshot={}", shot.display()),
        &profile,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    assert!(
        png.len() > 10_000,
        "screenshot is not blank ({} bytes)",
        png.len()
    );
    let _ = std::fs::remove_dir_all(&profile);
}

#[test]
fn metrics_of_a_busy_cluster_pass_promtool() {
    let nodes = start_cluster(2, &[]);
    let refs: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_agreement(&refs, |owners| owners.len() == 2);
    // Touch every family: events, alerts, forwarding, replication.
    let (status, body, _) = post_json_retrying(&nodes[0].url("/v1/events"), &hot_readings(50));
    assert_eq!(status, 200, "{body}");
    // Keys over many partitions until both nodes applied events as owners
    // (the second node takes its share over once its copies are in sync).
    let applied = |node: &NodeProcess| {
        get(&node.url("/metrics"))
            .1
            .contains("eddy_events_applied_total")
    };
    for i in 0..2000 {
        if nodes.iter().all(applied) {
            break;
        }
        // (A write caught by a move of its partition is refused with 503,
        // to be retried.)
        let (status, body, _) = post_json(
            &nodes[1].url("/v1/events"),
            &tx(&format!("acct-{i}"), 1.0, "FR"),
        );
        assert!(status == 200 || status == 503, "{status} {body}");
    }
    let (status, body, _) = post_json(&nodes[0].url("/v1/events"), "{not json");
    assert_eq!(status, 400, "{body}");
    for node in &nodes {
        let (status, text, _) = get(&node.url("/metrics"));
        assert_eq!(status, 200);
        assert!(text.contains("eddy_events_applied_total"), "{text}");
        let mut child = Command::new(tool("PROMTOOL", "promtool", "prometheus"))
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool starts");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes())
            .expect("metrics written to promtool");
        let out = child.wait_with_output().expect("promtool finishes");
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dashboard_with_api_tokens_asks_for_one_and_reads_every_member_with_it() {
    const READ: &str = "dashboard-read-secret-0123456789";
    const WRITE: &str = "dashboard-write-secret-012345678";
    let dir = scratch("dashboard-tokens");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("read:dash:{READ}\nwrite:load:{WRITE}\n")).expect("tokens");
    let set = format!("tokens_file=\"{}\"", tokens.display());
    let nodes = start_cluster(2, &[&set]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let with_token = |url: String, token: &str| {
        let mut response = agent
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .call()
            .expect("answers");
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), body)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = with_token(nodes[0].url("/v1/partitions"), READ);
        assert_eq!(status, 200, "{body}");
        let table = json(&body);
        // Both own partitions, and every partition is on both: a write to
        // one with a single copy in sync is refused (min_insync_replicas),
        // and a retried batch without producer ids would alert twice.
        let shared = table["owned"].as_object().is_some_and(|o| o.len() == 2);
        let short = eddy_node::http::partitions_short_of_copies(&table, 2);
        if shared && short == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two nodes never shared the table, each partition in sync on both"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A write caught by a partition changing owner is refused (503) and
    // retried, as its Retry-After asks.
    let (status, body, _) = retrying_503(|| {
        let mut response = agent
            .post(nodes[0].url("/v1/events"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {WRITE}"))
            .send(&hot_readings(12))
            .expect("answers");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
            None,
        )
    });
    assert_eq!(status, 200, "{body}");

    // Without a token the page asks for one and shows no data.
    let profile = scratch("chromium-tokens-none");
    let dom = chromium(&nodes[0].url("/"), "--dump-dom", &profile);
    assert!(
        dom.contains(r#"<form id="auth">"#),
        "the token form is shown:\n{dom}"
    );
    assert!(
        !dom.contains(r#"data-ready="true""#),
        "no data without a token"
    );
    let _ = std::fs::remove_dir_all(&profile);

    // With one (from the address, kept per tab) it reads this node and,
    // across origins, the other member's alerts and history.
    let on_other = json(&with_token(nodes[1].url("/v1/alerts/recent"), READ).1)["alerts"]
        .as_array()
        .map_or(0, Vec::len);
    let profile = scratch("chromium-tokens-read");
    let dom = chromium(
        &nodes[0].url(&format!("/#token={READ}")),
        "--dump-dom",
        &profile,
    );
    assert!(
        dom.contains(r#"data-ready="true""#),
        "page never loaded its data:\n{dom}"
    );
    assert!(
        dom.contains(r#"<form id="auth" hidden="">"#),
        "no token form:\n{dom}"
    );
    assert!(!dom.contains(READ), "the token stays out of the page");
    for n in 1..=2 {
        assert!(
            dom.contains(&format!(r#"data-name="node-{n}" data-status="up""#)),
            "node-{n} is not listed as up:\n{dom}"
        );
    }
    let rows = dom.matches(r#"data-kind="device""#).count();
    assert_eq!(
        rows, 12,
        "every alert shown, {on_other} of them read from the other member:\n{dom}"
    );
    let _ = std::fs::remove_dir_all(&profile);
}
