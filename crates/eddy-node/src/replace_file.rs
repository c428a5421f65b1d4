//! Replacing a small file of `data_dir` (the incarnation, the compacted Raft
//! log) so that a crash at any point leaves either the
//! old or the new content, and the new one is on the device when this
//! returns: written aside, synced, renamed over, the directory synced.

use std::io::Write;
use std::path::{Path, PathBuf};

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> (PathBuf, std::io::Error) + '_ {
    move |err| (path.to_path_buf(), err)
}

/// Replaces `path` with `bytes`. On failure, the file the failing step
/// touched and why.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    let mut file = std::fs::File::create(&aside).map_err(at(&aside))?;
    file.write_all(bytes).map_err(at(&aside))?;
    file.sync_all().map_err(at(&aside))?;
    std::fs::rename(&aside, path).map_err(at(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(at(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_new_content_replaces_the_old_and_nothing_is_left_aside() {
        let dir = std::env::temp_dir().join(format!("eddy-replace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        replace_file(&path, b"old").unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let missing = dir.join("no-such-dir").join("file");
        let (failed, _) = replace_file(&missing, b"x").unwrap_err();
        assert_eq!(failed, dir.join("no-such-dir").join("file.tmp"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
