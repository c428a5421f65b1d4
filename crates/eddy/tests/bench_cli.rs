//! `eddy bench` runs end to end against a node it starts itself, prints its
//! figures and exits cleanly. (The figures are not asserted:
//! timings belong in benchmarks, not tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn bench_prints_throughput_and_latency_lines() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "bench", "--events", "4000", "--keys", "200", "--batch", "200",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
