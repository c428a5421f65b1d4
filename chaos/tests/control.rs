//! The Raft controller's seed campaign (`eddy-chaos control`): the seeds CI
//! runs pass, each injected controller bug is caught within a bounded number
//! of seeds, and a failing seed's printed command reproduces its report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod campaign;

use campaign::{eddy_chaos, first_failure};
use eddy_chaos::control::{self, ControlBug, ControlOptions};

/// Fails listing every failing seed with the command that reproduces it.
#[test]
fn two_hundred_controller_seeds_pass() {
    let mut failed = Vec::new();
    let (mut committed, mut fives) = (0, 0);
    let mut totals = eddy_control::testing::SwarmReport::default();
    for seed in 0..200 {
        let options = ControlOptions::new(seed);
        let report = control::run(&options);
        committed += report.committed;
        totals.wiped += report.wiped;
        totals.rewiped += report.rewiped;
        totals.late_joins += report.late_joins;
        totals.one_way_cuts += report.one_way_cuts;
        totals.probes += report.probes;
        totals.minority_removes += report.minority_removes;
        totals.majority_removes += report.majority_removes;
        fives += usize::from(report.voters == 5);
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
    assert!(committed > 2_000, "only {committed} entries committed");
    // Every fault class the controller meets in the node occurred.
    let t = &totals;
    assert!(t.wiped > 20, "only {} voters wiped", t.wiped);
    assert!(t.rewiped > 10, "only {} non-voters wiped", t.rewiped);
    assert!(t.late_joins > 20, "only {} late joins", t.late_joins);
    assert!(t.one_way_cuts > 50, "only {} one-way cuts", t.one_way_cuts);
    assert!(t.probes > 100, "only {} minority probes", t.probes);
    assert!(
        // Refused (no leader known on the minority side) or reusing a tag
        // from before a restart, the rest are not checked: about a quarter.
        t.minority_removes > 50,
        "{} minority Removes",
        t.minority_removes
    );
    assert!(
        t.majority_removes > 50,
        "{} majority Removes",
        t.majority_removes
    );
    assert!(
        (40..160).contains(&fives),
        "{fives} of 200 seeds had 5 voters"
    );
}

/// `--voters` fixes the cluster size without changing the verdict.
#[test]
fn fixed_voter_counts_pass_too() {
    for voters in [3, 5] {
        for seed in 0..30 {
            let options = ControlOptions {
                voters: Some(voters),
                ..ControlOptions::new(seed)
            };
            let report = control::run(&options);
            assert_eq!(report.voters, voters);
            assert!(report.passed(), "{}", options.reproduce());
        }
    }
}

/// Each bug class is caught by the check written for it, within 50 seeds.
#[test]
fn each_injected_bug_is_caught() {
    for (bug, finding) in [
        // State machine safety: two nodes applied different entries at an
        // index, or hold different configurations at one.
        (
            ControlBug::ApplyBeforeCommit,
            ["where another applied", "holds another configuration"],
        ),
        // Persist-then-send: a promise left before it was durable.
        (ControlBug::PersistLate, ["before persisting", "durable"]),
    ] {
        let caught = (0..50).find(|&seed| {
            let report = control::run(&ControlOptions {
                bug: Some(bug),
                ..ControlOptions::new(seed)
            });
            report
                .violations
                .iter()
                .any(|v| finding.iter().any(|f| v.contains(f)))
        });
        assert!(caught.is_some(), "{} not caught in 50 seeds", bug.name());
    }
}

/// The campaign prints a failing seed's reproduction command; running it
/// prints that seed's report as JSON, the same as the library's, with the
/// violations the campaign printed.
#[test]
fn a_failing_seed_prints_a_command_that_reproduces_it() {
    let (out, ok) = eddy_chaos(&[
        "control",
        "--seeds",
        "20",
        "--first",
        "7",
        "--voters",
        "5",
        "--bug",
        "apply-before-commit",
    ]);
    assert!(!ok, "the bug went unnoticed in 20 seeds:\n{out}");
    let (failed, args) = first_failure(&out);
    let seed: u64 = args[2].parse().unwrap();
    assert_eq!(
        args,
        [
            "control",
            "--seed",
            &seed.to_string(),
            "--voters",
            "5",
            "--bug",
            "apply-before-commit"
        ]
    );
    let (json, ok) = eddy_chaos(&args);
    assert!(!ok, "the reproduced seed failed again");
    let expected = control::run(&ControlOptions {
        seed,
        voters: Some(5),
        bug: Some(ControlBug::ApplyBeforeCommit),
    });
    assert_eq!(
        json.trim(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
    let printed = format!("seed {seed} FAILED: {}", expected.violations.join("; "));
    assert_eq!(failed, printed);
}

#[test]
fn bug_names_round_trip() {
    for bug in ControlBug::ALL {
        assert_eq!(bug.name().parse::<ControlBug>(), Ok(bug));
    }
    assert!("apply-uncommitted".parse::<ControlBug>().is_err());
}
