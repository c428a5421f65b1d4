//! The process harness against real `eddy node` processes: the CI scenario
//! passes, and the checker catches a node whose owners stop replicating.
//!
//! The nodes are this crate's `eddy-chaos-node` binary (`eddy node` with
//! the fault hook installed); `EDDY_BIN` points elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use eddy_chaos::harness::backend::NetworkChoice;
use eddy_chaos::harness::{self, RunOptions};
use eddy_chaos::scenario::Scenario;

use common::{eddy_binary, out_dir};

#[test]
fn the_ci_scenario_passes_and_writes_its_report() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let scenario = Scenario::load(&path).unwrap();
    let out = out_dir("smoke");
    let options = RunOptions {
        binary: eddy_binary(),
        out: out.clone(),
        drop_log_entries: false,
        // What `eddy-chaos run` does by default: namespaces as root (CI).
        network: NetworkChoice::Auto,
    };
    let report = harness::run(&scenario, &options).unwrap();
    assert!(report.passed(), "{}", report.summary());
    let f = &report.figures;
    assert_eq!(f.lost, 0);
    assert_eq!(f.duplicated, 0);
    assert_eq!(f.faults, 3, "kill, stop and isolate were injected");
    assert!(f.acked > 10_000, "the workload ran: {}", f.acked);
    assert!(f.acked <= f.applied && f.applied <= f.sent, "{f:?}");
    assert!(f.takeovers > 0, "partitions changed hands");
    // Every node's alert stream was read and each alert's event checked.
    assert!(f.alerts.seen > 100, "alerts collected: {:?}", f.alerts);
    assert!(f.alerts.violations.is_empty(), "{:?}", f.alerts);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "pass");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("kill node-1"),
        "timeline with faults"
    );
}

/// Owners that acknowledge without shipping anything: node-1 dies with
/// writes only it held (it comes back only after the window, when the
/// new owners have dropped it from their ISRs), so the checker must find
/// them lost.
#[test]
fn a_node_that_stops_replicating_is_caught() {
    let text = r#"
name = "injected-bug"
nodes = 3
duration_s = 14
[workload]
kinds = ["account"]
keys = 200
rate = 600
[[faults]]
at_s = 7
action = "kill"
node = 1
"#;
    let out = out_dir("bug");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("bug.toml");
    std::fs::write(&path, text).unwrap();
    let scenario = Scenario::load(&path).unwrap();
    let options = RunOptions {
        binary: eddy_binary(),
        out,
        drop_log_entries: true,
        // The bug switch goes through the hook with either backend; this
        // test is about the checker, so it stays on loopback.
        network: NetworkChoice::Hook,
    };
    let report = harness::run(&scenario, &options).unwrap();
    assert!(
        !report.passed(),
        "the checker missed the bug:\n{}",
        report.summary()
    );
    assert!(report.figures.lost > 0, "{}", report.summary());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("acknowledged events lost")),
        "{:?}",
        report.violations
    );
}

#[test]
fn a_broken_scenario_is_refused_before_anything_starts() {
    let out = out_dir("broken");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("broken.toml");
    std::fs::write(&path, "name = \"x\"\nnodes = 3\nduration_s = 5\n[workload]\nkinds = [\"cart\"]\nkeys = 1\nrate = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_eddy-chaos"))
        .args(["run", path.to_str().unwrap(), "--eddy", "/nonexistent/eddy"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown kind `cart`"), "{stderr}");
}

#[test]
fn a_rerun_starts_from_fresh_data_directories() {
    let text = r#"
name = "rerun"
nodes = 3
duration_s = 5
data_dir = true
[workload]
kinds = ["account"]
keys = 50
rate = 200
"#;
    let out = out_dir("rerun");
    let stale = out.join("data-1").join("p0001");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("snapshot"), b"left by an earlier run").unwrap();
    std::fs::write(out.join("node-1.log"), "STALE LOG LINE\n").unwrap();
    let path = out.join("rerun.toml");
    std::fs::write(&path, text).unwrap();
    let scenario = Scenario::load(&path).unwrap();
    let options = RunOptions {
        binary: eddy_binary(),
        out: out.clone(),
        drop_log_entries: false,
        network: NetworkChoice::Hook,
    };
    let report = harness::run(&scenario, &options).unwrap();
    assert!(report.passed(), "{}", report.summary());
    let log = std::fs::read_to_string(out.join("node-1.log")).unwrap();
    assert!(
        !log.contains("STALE LOG LINE"),
        "the old log was appended to"
    );
    assert!(
        !log.contains("damaged"),
        "the old copy was loaded:\n{}",
        log.lines()
            .filter(|l| l.contains("damaged"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_ne!(
        std::fs::read(stale.join("snapshot")).ok().as_deref(),
        Some(b"left by an earlier run".as_slice())
    );
}
