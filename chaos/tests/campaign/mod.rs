//! What the seed-campaign tests share: running `eddy-chaos`, and reading
//! the command a failing seed printed.

use std::process::Command;

/// Runs `eddy-chaos` with `args`, returning its stdout and whether it
/// exited successfully.
pub fn eddy_chaos<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (String, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy-chaos"))
        .args(args)
        .output()
        .expect("eddy-chaos runs");
    (
        String::from_utf8(output.stdout).expect("UTF-8 output"),
        output.status.success(),
    )
}

/// The first `seed … FAILED: …` line of a campaign's output, and the
/// arguments of the `reproduce: eddy-chaos …` command printed under it.
pub fn first_failure(out: &str) -> (String, Vec<String>) {
    let mut lines = out.lines();
    let failed = lines
        .find(|l| l.contains(" FAILED: "))
        .expect("a failing seed");
    let command = lines.next().expect("its command").trim();
    let args = command
        .strip_prefix("reproduce: eddy-chaos ")
        .expect("a reproduce line")
        .split(' ')
        .map(str::to_owned)
        .collect();
    (failed.to_owned(), args)
}
