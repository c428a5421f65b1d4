//! `eddy demo`, the README's main command, end to end: a real 3-node cluster,
//! a node killed, and a summary that must report nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn demo_kills_a_node_and_reports_no_loss() {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["demo", "--seconds", "6", "--batch", "150"])
        .output()
        .expect("eddy demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let value = |label: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| {
                l[l.find(label).unwrap() + label.len()..]
                    .split_whitespace()
                    .next()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"))
    };
    let acked = value("acknowledged");
    assert!(acked > 0, "{stdout}");
    assert_eq!(value("events sent"), acked);
    assert_eq!(value("applied (read back)"), acked);
    assert_eq!(value("lost"), 0);
    assert_eq!(value("applied twice"), 0);
    assert!(stdout.contains("SIGKILL node-2"), "{stdout}");
    assert!(
        stdout.contains("writes acknowledged again after"),
        "{stdout}"
    );
    assert!(stdout.contains("alerts: account"), "{stdout}");
    assert!(stdout.contains("nodes stopped"), "{stdout}");
    // Piped, progress is whole lines, not `\r` redraws that a file shows as
    // one long line.
    assert!(!stderr.contains('\r'), "{stderr:?}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("events acknowledged") && !l.ends_with(' ')),
        "{stderr}"
    );
}
