//! The backup side of replication: `Partition::apply_replicated` keeps a
//! replica equal to its owner, skips resends, asks for a snapshot on a gap and
//! fences a deposed owner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use eddy_core::{Epoch, Partition, PartitionConfig, Replicated, Seq};

fn owner_with(events: u32) -> (Partition, Vec<Vec<u8>>) {
    let mut owner = partition(PartitionConfig::default());
    owner.set_epoch(Epoch(3));
    let mut shipped = Vec::new();
    for i in 0..events {
        let out = submit(
            &mut owner,
            1_000 + u64::from(i),
            cmd(&format!("k{}", i % 4), Cmd::Add(i)),
        );
        shipped.push(out.log.as_bytes().to_vec());
    }
    (owner, shipped)
}

/// A copy restored from `owner`'s snapshot (in chunks of `chunk` bytes):
/// what a backup installs.
fn restored_from(owner: &Partition, chunk: usize) -> Partition {
    let chunks = owner.snapshot_chunks(chunk).expect("snapshot");
    Partition::restore(
        registry(),
        PartitionConfig::default(),
        chunks.iter().map(Vec::as_slice),
    )
    .expect("restores")
}

#[test]
fn a_backup_fed_every_batch_equals_its_owner_and_skips_resends() {
    let (owner, shipped) = owner_with(20);
    let mut backup = partition(PartitionConfig::default());
    for batch in &shipped {
        assert!(matches!(
            backup.apply_replicated(Epoch(3), batch),
            Replicated::Applied { .. }
        ));
    }
    // A resend of everything (a reconnect) changes nothing.
    for batch in &shipped {
        assert_eq!(
            backup.apply_replicated(Epoch(3), batch),
            Replicated::Applied { through: Seq(20) }
        );
    }
    assert_eq!(
        backup.apply_replicated(Epoch(3), &[]),
        Replicated::Applied { through: Seq(20) }
    );
    assert_eq!(backup.dump().expect("dump"), owner.dump().expect("dump"));
    assert_eq!(backup.epoch(), Epoch(3));
}

#[test]
fn a_gap_asks_for_a_snapshot_and_applies_nothing_past_it() {
    let (owner, shipped) = owner_with(5);
    let mut backup = partition(PartitionConfig::default());
    backup.apply_replicated(Epoch(3), &shipped[0]);
    assert_eq!(
        backup.apply_replicated(Epoch(3), &shipped[2]),
        Replicated::NeedSnapshot { have: Seq(1) }
    );
    assert_eq!(backup.last_seq(), Seq(1));
    // The snapshot brings it up to date; later entries follow on.
    let mut restored = restored_from(&owner, 256);
    assert_eq!(
        restored.apply_replicated(Epoch(3), &shipped[4]),
        Replicated::Applied { through: Seq(5) }
    );
    assert_eq!(restored.dump().expect("dump"), owner.dump().expect("dump"));
}

#[test]
fn a_deposed_owner_is_fenced_and_a_promoted_one_continues_the_log() {
    let (_, shipped) = owner_with(4);
    let mut backup = partition(PartitionConfig::default());
    for batch in &shipped[..3] {
        backup.apply_replicated(Epoch(3), batch);
    }
    // The backup is promoted: next epoch, continuing from its position.
    backup.set_epoch(Epoch(4));
    let mut new_backup = restored_from(&backup, 1024);
    let out = submit(&mut backup, 5_000, cmd("k9", Cmd::Add(1)));
    assert_eq!(
        new_backup.apply_replicated(Epoch(4), out.log.as_bytes()),
        Replicated::Applied { through: Seq(4) }
    );
    // The old owner's entry 4 (epoch 3) arrives late: refused whole.
    assert_eq!(
        new_backup.apply_replicated(Epoch(3), &shipped[3]),
        Replicated::Stale { current: Epoch(4) }
    );
    assert_eq!(
        new_backup.dump().expect("dump"),
        backup.dump().expect("dump")
    );
    // A stale entry smuggled under a current epoch is refused by its stamp.
    let mut fresh = partition(PartitionConfig::default());
    fresh.set_epoch(Epoch(4));
    assert_eq!(
        fresh.apply_replicated(Epoch(4), &shipped[0]),
        Replicated::Stale { current: Epoch(4) }
    );
}

#[test]
fn garbage_entries_ask_for_a_snapshot_instead_of_panicking() {
    let mut backup = partition(PartitionConfig::default());
    for bytes in [
        &[0xffu8; 3][..],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9],
        b"not postcard at all",
    ] {
        assert!(matches!(
            backup.apply_replicated(Epoch(1), bytes),
            Replicated::NeedSnapshot { .. } | Replicated::Stale { .. }
        ));
    }
}

#[test]
fn a_copy_only_claims_an_epoch_whose_entries_it_applied() {
    let (_, shipped) = owner_with(3);
    let mut promoted = partition(PartitionConfig::default());
    for batch in &shipped[..2] {
        promoted.apply_replicated(Epoch(3), batch);
    }
    promoted.set_epoch(Epoch(4));
    let next = submit(&mut promoted, 9_000, cmd("k1", Cmd::Add(5)));
    // A lagging copy (position 1, epoch 3) gets the new owner's entry 3: a
    // gap. It must not start calling itself epoch 4.
    let mut lagging = partition(PartitionConfig::default());
    lagging.apply_replicated(Epoch(3), &shipped[0]);
    assert_eq!(
        lagging.apply_replicated(Epoch(4), next.log.as_bytes()),
        Replicated::NeedSnapshot { have: Seq(1) }
    );
    assert_eq!(lagging.epoch(), Epoch(3));
    // A barrier of a newer owner neither raises it nor confirms its
    // position: it follows the owner of 3, not the log of 4.
    assert_eq!(
        lagging.apply_replicated(Epoch(4), &[]),
        Replicated::NeedSnapshot { have: Seq(1) }
    );
    assert_eq!(lagging.epoch(), Epoch(3));
}

/// The deposed owner's copy holds an entry it wrote while cut off (never
/// acknowledged); its successor, promoted from a backup without it, writes
/// other entries at that position and the next. Neither the entry at the
/// copy's position (not a resend to skip) nor the next one (it fits, but
/// continuing would confirm a log the successor never wrote and drop its
/// acknowledged entry — the chaos `split-brain` loss: the old owner then
/// joined the ISR, was elected, and the entry was gone) is applied.
#[test]
fn a_deposed_owners_tail_is_replaced_not_skipped_or_continued() {
    let (_, shipped) = owner_with(3);
    let mut deposed = partition(PartitionConfig::default());
    for batch in &shipped {
        deposed.apply_replicated(Epoch(3), batch);
    }
    let mut successor = partition(PartitionConfig::default());
    for batch in &shipped[..2] {
        successor.apply_replicated(Epoch(3), batch);
    }
    successor.set_epoch(Epoch(4));
    let acknowledged = submit(&mut successor, 9_000, cmd("k1", Cmd::Add(5)));
    let next = submit(&mut successor, 9_001, cmd("k2", Cmd::Add(6)));
    assert_eq!(
        deposed.apply_replicated(Epoch(4), acknowledged.log.as_bytes()),
        Replicated::NeedSnapshot { have: Seq(3) }
    );
    assert_eq!(
        deposed.apply_replicated(Epoch(4), next.log.as_bytes()),
        Replicated::NeedSnapshot { have: Seq(3) }
    );
    assert_eq!(
        deposed.apply_replicated(Epoch(4), &[]),
        Replicated::NeedSnapshot { have: Seq(3) }
    );
    assert_eq!((deposed.epoch(), deposed.last_seq()), (Epoch(3), Seq(3)));
    // The successor's snapshot makes it a follower of epoch 4.
    let mut follower = restored_from(&successor, 1 << 16);
    let after = submit(&mut successor, 9_002, cmd("k3", Cmd::Add(7)));
    assert_eq!(
        follower.apply_replicated(Epoch(4), after.log.as_bytes()),
        Replicated::Applied { through: Seq(5) }
    );
    assert_eq!(
        follower.dump().expect("dump"),
        successor.dump().expect("dump")
    );
}

/// A WAL replays over its own copy whatever epochs its records carry.
#[test]
fn a_copy_replays_its_own_log_across_epochs() {
    let (_, shipped) = owner_with(2);
    let mut promoted = partition(PartitionConfig::default());
    let mut log = Vec::new();
    for batch in &shipped {
        promoted.apply_replicated(Epoch(3), batch);
        log.push(batch.clone());
    }
    promoted.set_epoch(Epoch(4));
    log.push(
        submit(&mut promoted, 9_000, cmd("k1", Cmd::Add(5)))
            .log
            .as_bytes()
            .to_vec(),
    );
    let mut replayed = partition(PartitionConfig::default());
    for record in &log {
        assert!(matches!(
            replayed.replay_logged(record),
            Replicated::Applied { .. }
        ));
    }
    assert_eq!(
        (replayed.last_epoch(), replayed.last_seq()),
        (Epoch(4), Seq(3))
    );
    assert_eq!(
        replayed.dump().expect("dump"),
        promoted.dump().expect("dump")
    );
}

/// Owners of successive epochs, each promoted from a prefix of an earlier
/// owner's log (the copy it held), and the entries of each.
struct Owners {
    copies: Vec<Partition>,
    logs: Vec<Vec<Vec<u8>>>,
    now: u64,
}

impl Owners {
    fn new() -> Owners {
        let mut first = partition(PartitionConfig::default());
        first.set_epoch(Epoch(1));
        Owners {
            copies: vec![first],
            logs: vec![Vec::new()],
            now: 1_000,
        }
    }

    fn write(&mut self, owner: usize) {
        self.now += 1;
        let out = submit(&mut self.copies[owner], self.now, cmd("k", Cmd::Add(1)));
        self.logs[owner].push(out.log.as_bytes().to_vec());
    }

    /// A new owner, one epoch past the newest, promoted from the first
    /// `len` entries of `from`'s log.
    fn promote(&mut self, from: usize, len: usize) {
        let prefix: Vec<Vec<u8>> = self.logs[from][..len.min(self.logs[from].len())].to_vec();
        let mut copy = partition(PartitionConfig::default());
        for record in &prefix {
            copy.replay_logged(record);
        }
        copy.set_epoch(Epoch(self.copies.len() as u64 + 1));
        self.copies.push(copy);
        self.logs.push(prefix);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Log matching: whatever owners of whatever epochs ship, in any order,
    /// a copy only ever holds a prefix of the log of the owner whose epoch
    /// it claims, and every `Applied { through }` it answers an owner is a
    /// prefix of that owner's log — what the owner counts as confirmed.
    #[test]
    fn a_copy_holds_a_prefix_of_the_log_it_follows_and_confirms_only_that(
        ops in proptest::collection::vec((0u8..5, 0usize..8, 0usize..12, 0usize..12), 1..60),
    ) {
        let mut owners = Owners::new();
        let mut copy = partition(PartitionConfig::default());
        let mut held: Vec<Vec<u8>> = Vec::new();
        for (op, who, a, b) in ops {
            let k = who % owners.copies.len();
            match op {
                0 => owners.write(k),
                1 if owners.copies.len() < 6 => owners.promote(k, a),
                2 | 1 => {
                    // Ship entries (from, to] of owner k: from the copy's
                    // position (an owner that thinks it is followed) or any.
                    let log = &owners.logs[k];
                    let from = if b % 2 == 0 { (copy.last_seq().0 as usize).min(log.len()) } else { a.min(log.len()) };
                    let to = (from + 1 + b / 2).min(log.len());
                    let bytes: Vec<u8> = log[from..to].concat();
                    let before = copy.last_seq().0 as usize;
                    let answer = copy.apply_replicated(owners.copies[k].epoch(), &bytes);
                    let after = copy.last_seq().0 as usize;
                    for seq in before + 1..=after {
                        held.push(log[seq - 1].clone());
                    }
                    if let Replicated::Applied { through } = answer {
                        let through = through.0 as usize;
                        proptest::prop_assert!(through <= log.len() && held[..through] == log[..through],
                            "confirmed {through} to the owner of {:?}, not its log", owners.copies[k].epoch());
                    }
                }
                3 => {
                    copy = restored_from(&owners.copies[k], 1 << 16);
                    held = owners.logs[k].clone();
                }
                _ => {
                    let answer = copy.apply_replicated(owners.copies[k].epoch(), &[]);
                    if let Replicated::Applied { through } = answer {
                        let through = through.0 as usize;
                        let log = &owners.logs[k];
                        proptest::prop_assert!(through <= log.len() && held[..through] == log[..through]);
                    }
                }
            }
            if copy.last_seq() > Seq(0) {
                let followed = (copy.epoch().0 - 1) as usize;
                let log = &owners.logs[followed];
                proptest::prop_assert!(held.len() <= log.len() && held[..] == log[..held.len()],
                    "the copy claims {:?} but holds another log", copy.epoch());
            }
        }
    }
}

#[test]
fn a_promotion_raises_the_epoch_but_not_the_last_entry_epoch() {
    let (mut owner, shipped) = owner_with(5);
    assert_eq!(owner.last_epoch(), Epoch(3));
    // Promoted without writing: it fences at 9, but its log still ends at
    // epoch 3, so nothing mistakes it for a longer log.
    owner.set_epoch(Epoch(9));
    assert_eq!((owner.epoch(), owner.last_epoch()), (Epoch(9), Epoch(3)));
    let restored = restored_from(&owner, 1 << 16);
    assert_eq!(
        (restored.epoch(), restored.last_epoch()),
        (Epoch(9), Epoch(3))
    );
    // A backup learns the epoch of the entries it applies.
    let mut backup = partition(PartitionConfig::default());
    for batch in &shipped {
        backup.apply_replicated(Epoch(3), batch);
    }
    assert_eq!((backup.last_epoch(), backup.last_seq()), (Epoch(3), Seq(5)));
}

/// An entry stamped above the epoch of the message that carries it (no
/// honest owner sends one) is refused: the copy's epoch, the fence a
/// takeover compares, never rises beyond what the message carried.
#[test]
fn an_entry_stamped_above_its_message_epoch_is_refused() {
    let mut forger = partition(PartitionConfig::default());
    forger.set_epoch(Epoch(u64::MAX));
    let forged = submit(&mut forger, 1_000, cmd("k1", Cmd::Add(1)));
    let mut backup = partition(PartitionConfig::default());
    backup.set_epoch(Epoch(3));
    assert_eq!(
        backup.apply_replicated(Epoch(3), forged.log.as_bytes()),
        Replicated::NeedSnapshot { have: Seq(0) }
    );
    assert_eq!((backup.epoch(), backup.last_seq()), (Epoch(3), Seq(0)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

    /// Whatever a peer ships — any message epoch, entries from owners of any
    /// epochs, in any order, or bytes that are not entries — a copy's epoch
    /// stays at most the highest message epoch it accepted.
    #[test]
    fn no_message_raises_a_copy_above_the_epochs_it_carried(
        messages in proptest::collection::vec(
            (0u64..6, 0usize..4, 0u64..6, proptest::collection::vec(proptest::num::u8::ANY, 0..4)),
            1..24,
        ),
    ) {
        let mut owners: Vec<Partition> = (0..4u64)
            .map(|e| {
                let mut p = partition(PartitionConfig::default());
                p.set_epoch(Epoch(e * 2));
                p
            })
            .collect();
        let mut backup = partition(PartitionConfig::default());
        let mut highest = backup.epoch();
        for (i, (message_epoch, from, noise, garbage)) in messages.into_iter().enumerate() {
            let bytes = if noise == 0 {
                garbage
            } else {
                let out = submit(&mut owners[from], 1_000 + i as u64, cmd("k", Cmd::Add(1)));
                out.log.as_bytes().to_vec()
            };
            let before = backup.epoch();
            let answer = backup.apply_replicated(Epoch(message_epoch), &bytes);
            if message_epoch >= before.0 {
                highest = highest.max(Epoch(message_epoch));
            }
            proptest::prop_assert!(backup.epoch() <= highest, "{answer:?}");
            proptest::prop_assert!(backup.epoch() >= before);
        }
    }
}
