//! The incarnation of this node's data (eddy-control's `MemberId`).
//!
//! With a `data_dir` it is chosen once, when the file `incarnation` is first
//! written there, and read back at every later start: a restarted node is
//! the same member. Without one (or after the directory was wiped) every
//! start is a new incarnation, because the node lost every copy and vote it
//! held. Incarnations are wall-clock milliseconds so they rise across lives
//! of a name: a `Join` replaces a member only by a higher incarnation.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// File name inside `data_dir`.
pub const FILE: &str = "incarnation";

/// The incarnation file could not be read or written.
#[derive(Debug, Error)]
pub enum IncarnationError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A voter's incarnation was found without its Raft log: the votes it
    /// cast are gone, and voting again could elect two leaders in one term.
    #[error(
        "{log}: missing, but this voter's incarnation exists; restore the Raft log, or delete data_dir to rejoin as a new member"
    )]
    RaftLogMissing {
        /// Where the log should be.
        log: PathBuf,
    },
    /// The file does not hold one decimal number (damaged): refused rather
    /// than silently becoming a new member.
    #[error(
        "{path}: not an incarnation number ({text:?}); restore it, or delete data_dir to rejoin as a new member"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What it holds (truncated).
        text: String,
    },
}

/// A fresh incarnation: now in wall-clock milliseconds (at least 1).
pub fn fresh() -> u64 {
    crate::worker::now().0.max(1)
}

/// The incarnation kept in `dir`, created (atomically: temporary file,
/// fsync, rename, fsync of the directory) if there is none yet.
pub fn load_or_create(dir: &Path) -> Result<u64, IncarnationError> {
    let path = dir.join(FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IncarnationError::Io { path, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| IncarnationError::Damaged {
                    path: path.clone(),
                    text: text.chars().take(40).collect(),
                });
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IncarnationError::Io { path, source }),
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let incarnation = fresh();
    crate::replace_file::replace_file(&path, format!("{incarnation}\n").as_bytes())
        .map_err(|(path, source)| IncarnationError::Io { path, source })?;
    Ok(incarnation)
}

/// [`load_or_create`] for a voter, whose incarnation holds only together
/// with its Raft log at `raft_log` (the log carries the votes this
/// incarnation cast). A new incarnation's log is created first, so an
/// incarnation found without its log lost it, and is refused.
pub fn load_or_create_voter(dir: &Path, raft_log: &Path) -> Result<u64, IncarnationError> {
    if dir.join(FILE).exists() {
        if !raft_log.exists() {
            return Err(IncarnationError::RaftLogMissing {
                log: raft_log.to_path_buf(),
            });
        }
    } else if !raft_log.exists() {
        if let Some(parent) = raft_log.parent() {
            std::fs::create_dir_all(parent).map_err(|source| IncarnationError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        crate::replace_file::replace_file(raft_log, b"")
            .map_err(|(path, source)| IncarnationError::Io { path, source })?;
    }
    load_or_create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eddy-inc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn kept_across_starts_and_new_after_a_wipe() {
        let dir = scratch("kept");
        let first = load_or_create(&dir).unwrap();
        assert_eq!(
            load_or_create(&dir).unwrap(),
            first,
            "same data, same member"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = load_or_create(&dir).unwrap();
        assert!(
            second > first,
            "a wiped directory is a new, higher incarnation"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_voter_incarnation_without_its_raft_log_is_refused() {
        let dir = scratch("voter");
        let log = dir.join("raft").join("controller.log");
        let first = load_or_create_voter(&dir, &log).unwrap();
        assert!(
            log.exists(),
            "a new voter incarnation creates its log first"
        );
        assert_eq!(load_or_create_voter(&dir, &log).unwrap(), first);
        std::fs::write(&log, b"votes").unwrap();
        assert_eq!(
            load_or_create_voter(&dir, &log).unwrap(),
            first,
            "an existing log is kept as it is"
        );
        assert_eq!(std::fs::read(&log).unwrap(), b"votes");
        std::fs::remove_file(&log).unwrap();
        assert!(matches!(
            load_or_create_voter(&dir, &log),
            Err(IncarnationError::RaftLogMissing { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE), "x17").unwrap();
        assert!(matches!(
            load_or_create(&dir),
            Err(IncarnationError::Damaged { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
