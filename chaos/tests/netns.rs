//! The network-namespace backend against real nodes. As root (CI), the
//! faults of `scenarios/netns-smoke.toml` are nftables rules in the nodes'
//! namespaces, and the nodes must both feel them (the isolated node loses
//! the others, the rules count dropped packets) and survive them (the report
//! passes); everything the run created is gone afterwards, also after a
//! SIGTERM. Not as root, the same scenario runs over the node hook, and the
//! test says loudly that the namespace backend went untested.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_chaos::harness::backend::NetworkChoice;
use eddy_chaos::harness::netns::effective_uid;
use eddy_chaos::harness::{self, RunOptions};
use eddy_chaos::report::Report;
use eddy_chaos::scenario::Scenario;

use common::{eddy_binary, out_dir};

fn scenario_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/netns-smoke.toml")
}

fn is_root() -> bool {
    let root = effective_uid() == 0;
    if !root {
        eprintln!(
            "NOT ROOT (uid {}): the network-namespace backend is NOT tested here; \
             running the node-hook backend instead",
            effective_uid()
        );
    }
    root
}

/// Names of this machine's network namespaces and links starting with
/// `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let mut found = Vec::new();
    for text in [netns.stdout, links.stdout] {
        for line in String::from_utf8_lossy(&text).lines() {
            let name = line
                .split_whitespace()
                .map(|w| w.trim_end_matches(':'))
                .find(|w| w.starts_with(prefix));
            found.extend(name.map(|n| n.split('@').next().unwrap_or(n).to_string()));
        }
    }
    found
}

/// `eddyc-X-` of a subnet `10.X.0.0/24`.
fn prefix_of(subnet: &str) -> String {
    let x = subnet.split('.').nth(1).unwrap();
    format!("eddyc-{x}-")
}

/// Whether some membership sample inside `[from_s, to_s]` shows `node`'s
/// isolation: one node (the isolated one) sees only itself while the others
/// still see two, and all three answer the harness.
fn isolation_seen(report: &Report, from_s: f64, to_s: f64) -> bool {
    report
        .members
        .iter()
        .filter(|m| m.t_s >= from_s && m.t_s <= to_s)
        .any(|m| m.min_up == 1 && m.max_up == 2 && m.answering == 3)
}

#[test]
fn faults_made_by_the_network_stack_are_felt_and_survived() {
    let started = Instant::now();
    let scenario = Scenario::load(&scenario_path()).unwrap();
    let root = is_root();
    let out = out_dir("netns-smoke");
    let options = RunOptions {
        binary: eddy_binary(),
        out: out.clone(),
        drop_log_entries: false,
        // As root the namespaces must work (no quiet fallback to the hook).
        network: if root {
            NetworkChoice::Netns
        } else {
            NetworkChoice::Hook
        },
    };
    let report = harness::run(&scenario, &options).unwrap();
    eprintln!(
        "{}network run took {:.1} s",
        report.summary(),
        started.elapsed().as_secs_f64()
    );
    let net = &report.network;
    assert_eq!(net.backend, if root { "netns" } else { "hook" }, "{net:?}");
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.figures.faults, 2, "isolate and loss were injected");

    // Membership before the isolation was whole; during it the isolated
    // node lost the others (with netns the hook had no cut to apply, see
    // `network::tests`, so only the nftables rules can have done this).
    let isolate = &report.faults[0];
    assert!(isolate.label.starts_with("isolate node-2"), "{isolate:?}");
    let before = report.members.iter().filter(|m| m.t_s < isolate.start_s);
    assert!(before.clone().count() > 0);
    assert!(
        before.clone().all(|m| m.min_up == 3),
        "{:?}",
        before.collect::<Vec<_>>()
    );
    let end = isolate.end_s.unwrap();
    assert!(
        isolation_seen(&report, isolate.start_s, end),
        "no sample shows node-2 alone between {:.1} s and {end:.1} s: {:?}",
        isolate.start_s,
        report.members
    );

    if root {
        assert_eq!(net.links_by, "nftables");
        let (cut, lost) = (
            net.dropped_cut_packets.unwrap(),
            net.dropped_loss_packets.unwrap(),
        );
        assert!(cut > 0, "the cut rules dropped nothing: {net:?}");
        assert!(lost > 0, "the loss rule dropped nothing: {net:?}");
        let prefix = prefix_of(net.subnet.as_deref().unwrap());
        assert_eq!(leftovers(&prefix), Vec::<String>::new(), "not cleaned up");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["network"]["backend"], net.backend.as_str());
}

#[test]
fn sigterm_removes_the_namespaces_and_kills_the_nodes() {
    if !is_root() {
        eprintln!("NOT ROOT: no namespaces to clean up; this test checked nothing");
        return;
    }
    let out = out_dir("netns-sigterm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy-chaos"))
        .args(["run", scenario_path().to_str().unwrap()])
        .args(["--network", "netns", "--out", out.to_str().unwrap()])
        .args(["--eddy", eddy_binary().to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // "eddy-chaos: network: netns on 10.X.0.0/24 (bridge eddyc-X-br): …"
    let subnet = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let rest = l.split("netns on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .expect("the run names its subnet");
    let prefix = prefix_of(&subnet);
    // Faults start at 3 s: wait for the first, so nodes run and rules exist.
    lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("isolate node-2"))
        .expect("the isolation started");
    assert!(leftovers(&prefix).len() >= 7, "{:?}", leftovers(&prefix));
    let node_pids = pids_in(&out);
    assert_eq!(node_pids.len(), 3, "three nodes run: {node_pids:?}");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the signal thread exits with 130");
    assert_eq!(leftovers(&prefix), Vec::<String>::new(), "not cleaned up");
    let deadline = Instant::now() + Duration::from_secs(5);
    while node_pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!node_pids.iter().any(|p| alive(*p)), "nodes survived");
}

#[test]
fn sigkill_of_the_harness_kills_the_nodes() {
    // No signal thread runs on SIGKILL: only the kernel's parent-death
    // signal (`setpriv --pdeathsig`) can stop the nodes. As root they run in
    // namespaces (`ip netns exec` between setpriv and the node), the case
    // where an intermediate could die instead of the node.
    let root = is_root();
    let out = out_dir("sigkill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy-chaos"))
        .args(["run", scenario_path().to_str().unwrap()])
        .args(["--network", if root { "netns" } else { "hook" }])
        .args(["--out", out.to_str().unwrap()])
        .args(["--eddy", eddy_binary().to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("isolate node-2"))
        .expect("the isolation started");
    let node_pids = pids_in(&out);
    assert_eq!(node_pids.len(), 3, "three nodes run: {node_pids:?}");
    // The kernel keeps the first 15 bytes of the name (`eddy-chaos-node`).
    let binary = eddy_binary();
    let expected: String = binary
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    for pid in &node_pids {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(name.trim(), expected, "pid {pid} is the node itself");
    }

    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let deadline = Instant::now() + Duration::from_secs(5);
    while node_pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survivors: Vec<u32> = node_pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "nodes survived: {survivors:?}");
    if root {
        // The namespaces stay (nothing ran to delete them); the next run
        // removes what a dead pid left, as this does.
        eddy_chaos::harness::netns::remove_stale();
    }
}

/// Pids of the node processes logging into `out` (from /proc: their
/// stderr is the log file there).
fn pids_in(out: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stderr) = std::fs::read_link(entry.path().join("fd/2")) else {
            continue;
        };
        if stderr.starts_with(out) {
            pids.push(pid);
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    // A zombie is dead too: its status line says so.
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}
