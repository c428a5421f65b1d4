//! The process's file-descriptor allowance, and how much of it the
//! write-ahead logs may keep open.
//!
//! A node with `data_dir` appends to one log per partition copy it holds
//! (about `2P/N` with rf 2). Reopening a log for every write group costs a
//! path lookup and an `open` each (they showed in the storage thread's
//! profile under rf 2), so the writer keeps as many open as the allowance
//! leaves room for, after a reserve for sockets (clients, peers, gossip)
//! and snapshots. The soft limit is raised to the hard one at start, as Go's
//! runtime and most servers do: the soft default (often 1,024) is a
//! compatibility setting for `select`, which nothing here uses.

use rustix::process::{Resource, getrlimit, setrlimit};

/// Descriptors left for everything but open logs.
const RESERVED: u64 = 1_024;
/// Logs kept open even under a tiny allowance (beyond it, reopened).
const MIN_OPEN_LOGS: usize = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit in force afterwards (`None`: unlimited or unknown).
pub fn raise_to_hard() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            // Not fatal: the writer sizes its cache to what is in force.
            limit = getrlimit(Resource::Nofile);
        }
    }
    limit.current
}

/// How many logs the writer keeps open, for `partitions` and a soft limit
/// of `limit` descriptors.
pub fn open_logs_budget(limit: Option<u64>, partitions: u32) -> usize {
    let room = limit.map_or(u64::MAX, |l| l.saturating_sub(RESERVED) / 2);
    usize::try_from(room.min(u64::from(partitions)))
        .unwrap_or(usize::MAX)
        .max(MIN_OPEN_LOGS)
}

/// [`open_logs_budget`] under the limit in force now.
pub fn open_logs_now(partitions: u32) -> usize {
    open_logs_budget(getrlimit(Resource::Nofile).current, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_stays_open_when_the_allowance_has_room() {
        assert_eq!(open_logs_budget(Some(20_000), 1_024), 1_024);
        assert_eq!(open_logs_budget(None, 1_024), 1_024);
    }

    #[test]
    fn a_small_allowance_keeps_half_of_what_the_reserve_leaves() {
        assert_eq!(open_logs_budget(Some(2_048), 4_096), 512);
        // Below the reserve, a floor: reopening is slow, not wrong.
        assert_eq!(open_logs_budget(Some(256), 1_024), MIN_OPEN_LOGS);
    }
}
