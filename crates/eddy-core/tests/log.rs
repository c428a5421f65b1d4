//! The in-memory partition log.

// Test and bench code: a failed expectation should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use eddy_core::{Entry, LogError, PartitionConfig, PartitionLog, Seq};

fn entries(n: usize) -> Vec<Entry> {
    let mut p = partition(PartitionConfig::default());
    (0..n)
        .flat_map(|i| {
            logged(&submit(
                &mut p,
                i as u64,
                cmd(&format!("k{}", i % 5), Cmd::Add(1)),
            ))
        })
        .collect()
}

#[test]
fn appends_reads_and_truncates() {
    let all = entries(100);
    let mut log = PartitionLog::new(Seq(0), 1 << 20);
    for entry in &all {
        log.append(&entry.view()).expect("fits");
    }
    assert_eq!((log.len(), log.last_seq()), (100, Seq(100)));
    let tail: Vec<Entry> = log
        .entries_after(Seq(90))
        .collect::<Result<_, _>>()
        .expect("decodes");
    assert_eq!(tail, all[90..]);
    log.truncate_through(Seq(60));
    assert_eq!((log.base_seq(), log.len()), (Seq(60), 40));
    let rest: Vec<Entry> = log
        .entries_after(Seq(0))
        .collect::<Result<_, _>>()
        .expect("decodes");
    assert_eq!(rest, all[60..], "entries before the base are gone");
    log.truncate_through(Seq(100));
    assert!(log.is_empty());
    assert_eq!(log.bytes(), 0);
}

#[test]
fn refuses_gaps() {
    let all = entries(3);
    let mut log = PartitionLog::new(Seq(0), 1 << 20);
    assert_eq!(
        log.append(&all[1].view()),
        Err(LogError::Gap {
            expected: Seq(1),
            got: Seq(2)
        })
    );
}

#[test]
fn full_log_refuses_and_stays_intact() {
    let all = entries(50);
    let mut log = PartitionLog::new(Seq(0), 300);
    let mut appended = 0;
    for entry in &all {
        match log.append(&entry.view()) {
            Ok(()) => appended += 1,
            Err(err) => {
                assert!(matches!(err, LogError::Full { .. }));
                break;
            }
        }
    }
    assert!(appended > 0 && appended < 50);
    assert!(log.bytes() <= 300);
    let held: Vec<Entry> = log
        .entries_after(Seq(0))
        .collect::<Result<_, _>>()
        .expect("decodes");
    assert_eq!(held, all[..appended]);
    // After truncation there is room again.
    log.truncate_through(log.last_seq());
    log.append(&all[appended].view())
        .expect("room after truncation");
}
