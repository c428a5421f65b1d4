//! The data path's seed campaign (`eddy-chaos datapath`): the seeds CI runs
//! pass and exercise every fault they claim, each injected bug is caught,
//! a seed runs the same every time, and a failing seed's printed command
//! reproduces it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod campaign;

use campaign::{eddy_chaos, first_failure};
use eddy_chaos::datapath::{self, DataPathBug, DataPathOptions, DataPathReport};

/// Fails listing every failing seed with the command that reproduces it.
#[test]
fn two_hundred_data_path_seeds_pass() {
    let mut failed = Vec::new();
    let mut totals = DataPathReport::default();
    let mut rf3_insync2 = 0;
    for seed in 0..200 {
        let options = DataPathOptions::new(seed);
        let report = datapath::run(options);
        totals.add(&report);
        rf3_insync2 += usize::from(report.replication == 3 && report.min_insync == 2);
        if !report.passed() {
            failed.push(format!(
                "{}\n  reproduce: {}",
                report.violations.join("; "),
                options.reproduce()
            ));
        }
    }
    assert!(failed.is_empty(), "failing seeds:\n{}", failed.join("\n"));
    // The campaign exercised what it claims to.
    let t = &totals;
    assert!(
        t.acknowledged > 10_000,
        "only {} acknowledged",
        t.acknowledged
    );
    assert!(t.elections > 1_000, "only {} elections", t.elections);
    assert!(t.takeovers > 1_000, "only {} takeovers", t.takeovers);
    assert!(t.snapshots > 2_000, "only {} snapshots", t.snapshots);
    assert!(t.crashes > 1_000, "only {} crashes", t.crashes);
    assert!(t.wipes > 300, "only {} wipes", t.wipes);
    assert!(
        t.worker_failures > 500,
        "only {} worker failures",
        t.worker_failures
    );
    assert!(t.isolations > 1_000, "only {} isolations", t.isolations);
    assert!(t.link_cuts > 1_000, "only {} link cuts", t.link_cuts);
    assert!(t.resets > 1_000, "only {} resets", t.resets);
    // A never-written partition left offline (no in-sync copy to start
    // from) is allowed, but must stay a rare end.
    assert!(
        t.offline_unwritten <= 6,
        "{} seeds ended offline",
        t.offline_unwritten
    );
    assert!(
        rf3_insync2 > 20,
        "{rf3_insync2} seeds with rf 3, min_insync 2"
    );
}

/// Each bug is caught by the check written for it: a new owner without an
/// acknowledged value.
#[test]
fn each_injected_data_path_bug_is_caught() {
    for bug in DataPathBug::ALL {
        let caught = (0..100).find(|&seed| {
            let report = datapath::run(DataPathOptions {
                bug: Some(bug),
                ..DataPathOptions::new(seed)
            });
            report
                .violations
                .iter()
                .any(|v| v.contains("without acknowledged value") || v.contains(" lost"))
        });
        assert!(caught.is_some(), "{} not caught in 100 seeds", bug.name());
    }
}

#[test]
fn a_seed_runs_the_same_every_time() {
    for seed in [3, 17] {
        let once = serde_json::to_string(&datapath::run(DataPathOptions::new(seed))).unwrap();
        let again = serde_json::to_string(&datapath::run(DataPathOptions::new(seed))).unwrap();
        assert_eq!(once, again);
    }
}

/// The campaign prints a failing seed's reproduction command; running it
/// prints that seed's report as JSON with the violations the campaign
/// printed.
#[test]
fn a_failing_data_path_seed_prints_a_command_that_reproduces_it() {
    let (out, ok) = eddy_chaos(&["datapath", "--seeds", "10", "--bug", "ack-without-backups"]);
    assert!(!ok, "the bug went unnoticed in 10 seeds:\n{out}");
    let (failed, args) = first_failure(&out);
    let (json, ok) = eddy_chaos(&args);
    assert!(!ok, "the reproduced seed passed");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = report["violations"][0].as_str().unwrap();
    assert!(failed.contains(first), "{failed}\nvs\n{first}");
}
