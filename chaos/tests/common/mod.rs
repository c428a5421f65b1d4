//! Fixtures of the process-harness tests: the `eddy` binary the nodes run
//! and a fresh output directory per test.

use std::path::{Path, PathBuf};

/// The nodes are this crate's `eddy-chaos-node` binary (`eddy node` with
/// the fault hook installed); `EDDY_BIN` points elsewhere.
pub fn eddy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EDDY_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_eddy-chaos-node"))
}

/// An empty directory for the run `name`'s logs and report.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
