//! Fixtures of the process-harness tests: the `eddy` binary the nodes run
//! and a fresh output directory per test.

use std::path::{Path, PathBuf};

/// The nodes are the workspace's `eddy` binary (built with the fault hook
/// by any workspace build, see Cargo.toml); `EDDY_BIN` points elsewhere.
pub fn eddy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EDDY_BIN") {
        return PathBuf::from(path);
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_eddy-chaos"))
        .parent()
        .expect("bin dir")
        .join("eddy");
    assert!(
        sibling.exists(),
        "{} is not built: run the workspace tests (cargo nextest run --workspace) or `cargo build -p eddy --features fault-injection`, or set EDDY_BIN",
        sibling.display()
    );
    sibling
}

/// An empty directory for the run `name`'s logs and report.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
