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

#[test]
fn dashboard_in_a_headless_browser_shows_members_partitions_alerts_and_a_key() {
    let nodes = start_cluster(3, &[]);
    let refs: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_agreement(&refs, |owners| owners.len() == 3);
    let (status, body, _) = post_json(&nodes[0].url("/v1/events"), &hot_readings(12));
    assert_eq!(status, 200, "{body}");

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
    let cells = dom.matches("title=\"partition ").count();
    assert_eq!(cells, 1024, "a cell per partition in the map");
    assert!(
        dom.contains("&quot;key&quot;: &quot;dev-3&quot;") || dom.contains(r#""key": "dev-3""#),
        "the key lookup shows dev-3's state:\n{dom}"
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
    let (status, body, _) = post_json(&nodes[0].url("/v1/events"), &hot_readings(50));
    assert_eq!(status, 200, "{body}");
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
