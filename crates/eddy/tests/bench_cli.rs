//! `eddy bench` runs end to end against a node it starts itself, prints its
//! figures and exits cleanly. (The figures are not asserted:
//! timings belong in benchmarks, not tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs `eddy bench` with a small workload and `extra` arguments; its
/// stdout, once it exited successfully.
fn bench(extra: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("bench")
        .args(extra)
        .args(["--events", "4000", "--keys", "200", "--batch", "200"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn bench_prints_throughput_and_latency_lines() {
    let stdout = bench(&[]);
    for needle in [
        "peak",
        "at half of peak rate",
        "events/s",
        "p99",
        "ingest→alert latency",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
}

#[test]
fn bench_durability_prints_each_fsync_policy_against_the_baseline() {
    let stdout = bench(&["--durability"]);
    for needle in [
        "no data_dir",
        "fsync = never",
        "fsync = 100ms",
        "fsync = batch",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("× the run without data_dir").count(),
        4,
        "a ratio per run:\n{stdout}"
    );
}
