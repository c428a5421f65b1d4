//! The majority base, remembered in `data_dir` (`membership.json`).
//!
//! The keep-majority rule counts against the most members a node has seen
//! live at once. A process starts knowing none and would count against
//! itself: a node of a three-node cluster restarted alone after a
//! whole-cluster stop formed a cluster of one once `join_timeout_ms`
//! passed, took every partition over from its own disk copies, and its
//! writes could later win over the other nodes' newer copies (found by
//! eddy-chaos). Remembering the base makes it wait for a majority of it
//! instead. To shrink a cluster for good while nodes are down, call
//! `POST /v1/admin/forget-down` on the survivors. Deleting the file is not
//! the way: it resets the base to one, the hazard above.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// File name inside `data_dir`.
pub const FILE: &str = "membership.json";

/// What is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// The majority base: the most members seen live at once.
    pub stable_members: usize,
    /// Their names, for the operator reading the file.
    pub members: Vec<String>,
}

/// The file could not be read or written.
#[derive(Debug, Error)]
pub enum RememberError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not what this module writes.
    #[error("{path}: not a remembered membership: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
}

/// The remembered membership of the node whose data directory is `dir`.
#[derive(Debug, Clone)]
pub struct MembershipFile {
    path: PathBuf,
}

impl MembershipFile {
    /// The file in `dir`.
    pub fn in_dir(dir: &Path) -> MembershipFile {
        MembershipFile {
            path: dir.join(FILE),
        }
    }

    /// What was remembered; `None` if nothing was (a new node).
    pub fn load(&self) -> Result<Option<Remembered>, RememberError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RememberError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| RememberError::Malformed {
                path: self.path.clone(),
                source,
            })
    }

    /// Remembers `remembered`: written aside, synced and renamed (and the
    /// directory synced), so a crash or power loss leaves the old file or
    /// the new one, never an empty one. On error the old file stays.
    pub fn save(&self, remembered: &Remembered) -> Result<(), RememberError> {
        let io = |source| RememberError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // A struct of a number and strings always serializes; an error here
        // would be serde_json's, reported as such.
        let bytes = serde_json::to_vec_pretty(remembered).map_err(|e| io(e.into()))?;
        crate::replace_file::replace_file(&self.path, &bytes).map_err(|(_, source)| io(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("eddy-remembered-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_saved_membership_loads_back_and_a_new_node_has_none() {
        let dir = dir("roundtrip");
        let file = MembershipFile::in_dir(&dir);
        assert_eq!(file.load().expect("no file is fine"), None);
        let three = Remembered {
            stable_members: 3,
            members: vec!["a".into(), "b".into(), "c".into()],
        };
        file.save(&three).expect("saved");
        assert_eq!(file.load().expect("loads"), Some(three));
        let two = Remembered {
            stable_members: 2,
            members: vec!["a".into(), "b".into()],
        };
        file.save(&two).expect("overwritten");
        assert_eq!(file.load().expect("loads"), Some(two));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = dir("damaged");
        std::fs::write(dir.join(FILE), b"{\"stable_members\": ").expect("written");
        let err = MembershipFile::in_dir(&dir).load().expect_err("damaged");
        assert!(err.to_string().contains(FILE), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
