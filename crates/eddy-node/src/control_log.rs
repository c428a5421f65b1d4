//! The controller's Raft state on disk: `data_dir/raft/controller.log`.
//!
//! Records are `length u32 LE | wire::frame(Record)` (the frame carries a
//! version byte and an xxh3-64 of the body). Every batch of
//! `Controller::drain_persist` effects is appended and fsynced before the
//! frames of the same round leave (raft-rs: a vote or an entry must be
//! durable before anyone hears of it). When the controller compacts its log
//! or installs a snapshot, the file is rewritten as one `Full` record
//! (temporary file, fsync, rename, fsync of the directory), so it stays as
//! small as the state.
//!
//! Loading: a record cut short at the end of the file is a write torn by a
//! crash; it was never fsynced, so no peer heard of it, and it is dropped
//! with a warning. A complete record that fails its checksum or does not
//! decode is damage: the node refuses to start rather than vote from a log
//! it cannot trust.

use std::io::Write;
use std::path::{Path, PathBuf};

use eddy_control::wire::{frame, unframe};
use eddy_control::{Persist, PersistedState};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Directory inside `data_dir`.
pub const DIR: &str = "raft";
/// File name inside [`DIR`].
pub const FILE: &str = "controller.log";

/// One record of the file.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    /// The whole persisted state (the first record after a rewrite).
    Full(PersistedState),
    /// One effect, applied with `PersistedState::apply`.
    Step(Persist),
}

/// The log could not be read or written.
#[derive(Debug, Error)]
pub enum ControlLogError {
    /// Reading, writing or syncing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A complete record is damaged; nothing was loaded.
    #[error(
        "{path}: record at byte {offset} is damaged ({reason}); the controller state is not loaded. Restore the file, or delete data_dir to rejoin as a new member"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The open log and the state it holds.
pub struct ControlLog {
    /// The file and its path; `None` for the state of a lone voter without
    /// `data_dir`, which lives as long as the process (and its data).
    file: Option<(PathBuf, std::fs::File)>,
    state: PersistedState,
}

/// What [`ControlLog::open`] found.
pub struct Opened {
    /// The log, ready for appends.
    pub log: ControlLog,
    /// Bytes of a torn last record that were dropped (0: none).
    pub torn_bytes: usize,
}

impl ControlLog {
    /// Where the log of `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DIR).join(FILE)
    }

    /// Opens (or creates) the log in `data_dir` and loads its state.
    pub fn open(data_dir: &Path) -> Result<Opened, ControlLogError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = Self::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(ControlLogError::Io { path, source }),
        };
        let (state, valid) = decode(&path, &bytes)?;
        let torn_bytes = bytes.len() - valid;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if torn_bytes > 0 {
            file.set_len(valid as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        Ok(Opened {
            log: ControlLog {
                file: Some((path, file)),
                state,
            },
            torn_bytes,
        })
    }

    /// A log kept in memory only: for a cluster of one without `data_dir`,
    /// whose partitions are forgotten with it anyway.
    pub fn in_memory() -> ControlLog {
        ControlLog {
            file: None,
            state: PersistedState::default(),
        }
    }

    /// Whether the state survives a restart.
    pub fn is_durable(&self) -> bool {
        self.file.is_some()
    }

    /// The persisted state (what `Controller::restore` starts from).
    pub fn state(&self) -> &PersistedState {
        &self.state
    }

    /// Makes `effects` durable: appended and fsynced, or, if they compact
    /// the log, the file rewritten with the whole state.
    pub fn persist(&mut self, effects: &[Persist]) -> Result<(), ControlLogError> {
        if effects.is_empty() {
            return Ok(());
        }
        for effect in effects {
            self.state.apply(effect);
        }
        let rewrite = effects
            .iter()
            .any(|e| matches!(e, Persist::Compact(_) | Persist::InstallSnapshot(_)));
        let Some((path, file)) = &mut self.file else {
            return Ok(());
        };
        if rewrite {
            let mut out = Vec::new();
            push_record(&mut out, &Record::Full(self.state.clone()));
            crate::replace_file::replace_file(path, &out)
                .map_err(|(path, source)| ControlLogError::Io { path, source })?;
            *file = std::fs::OpenOptions::new()
                .append(true)
                .open(&*path)
                .map_err(io(path))?;
            return Ok(());
        }
        let mut out = Vec::new();
        for effect in effects {
            push_record(&mut out, &Record::Step(effect.clone()));
        }
        file.write_all(&out).map_err(io(path))?;
        file.sync_data().map_err(io(path))
    }
}

fn push_record(out: &mut Vec<u8>, record: &Record) {
    let body = frame(record);
    // A record holds one batch of Raft state, far below 4 GiB (frames are
    // capped at wire::MAX_FRAME_BYTES when read back).
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&body);
}

/// The state in `bytes` (the controller log's contents; `path` names it in
/// errors) and how many bytes of complete records it used. Public for the
/// `control_frame` fuzz target.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<(PersistedState, usize), ControlLogError> {
    let mut state = PersistedState::default();
    let mut at = 0;
    while bytes.len() - at >= 4 {
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[at..at + 4]);
        let len = u32::from_le_bytes(len) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            break; // torn: the record's end was never written
        };
        match unframe::<Record>(body) {
            Ok(Record::Full(full)) => state = full,
            Ok(Record::Step(effect)) => state.apply(&effect),
            Err(err) => {
                return Err(ControlLogError::Damaged {
                    path: path.to_path_buf(),
                    offset: at,
                    reason: err.to_string(),
                });
            }
        }
        at += 4 + len;
    }
    Ok((state, at))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ControlLogError + '_ {
    move |source| ControlLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use eddy_control::wire::HardStateRecord;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eddy-ctllog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn hs(term: u64) -> Persist {
        Persist::HardState(HardStateRecord {
            term,
            vote: 3,
            commit: 0,
        })
    }

    #[test]
    fn effects_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = scratch("torn");
        let mut log = ControlLog::open(&dir).unwrap().log;
        log.persist(&[hs(1)]).unwrap();
        log.persist(&[hs(2)]).unwrap();
        let expected = log.state().clone();
        drop(log);
        let path = dir.join(DIR).join(FILE);
        // A crash mid-append: half a record at the end.
        let mut bytes = std::fs::read(&path).unwrap();
        let mut half = Vec::new();
        push_record(&mut half, &Record::Step(hs(3)));
        bytes.extend_from_slice(&half[..half.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let opened = ControlLog::open(&dir).unwrap();
        assert_eq!(opened.log.state(), &expected);
        assert_eq!(opened.torn_bytes, half.len() / 2);
        assert_eq!(expected.hard_state.term, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_record_is_refused_not_loaded() {
        let dir = scratch("damaged");
        let mut log = ControlLog::open(&dir).unwrap().log;
        log.persist(&[hs(1), hs(2)]).unwrap();
        drop(log);
        let path = dir.join(DIR).join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] ^= 0x40; // inside the first record's body
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            ControlLog::open(&dir),
            Err(ControlLogError::Damaged { offset: 0, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
