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
    let chunks = owner.snapshot_chunks(256).expect("snapshot");
    let mut restored = Partition::restore(
        registry(),
        PartitionConfig::default(),
        chunks.iter().map(Vec::as_slice),
    )
    .expect("restores");
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
    let mut new_backup = Partition::restore(
        registry(),
        PartitionConfig::default(),
        backup
            .snapshot_chunks(1024)
            .expect("snapshot")
            .iter()
            .map(Vec::as_slice),
    )
    .expect("restores");
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
    // A barrier of a newer owner does not raise it either.
    assert_eq!(
        lagging.apply_replicated(Epoch(4), &[]),
        Replicated::Applied { through: Seq(1) }
    );
    assert_eq!(lagging.epoch(), Epoch(3));
}

#[test]
fn a_tail_from_a_deposed_owner_is_replaced_not_skipped() {
    let (_, shipped) = owner_with(3);
    // `ahead` holds entries 1..=3 of epoch 3; the new owner only had 1..=2.
    let mut ahead = partition(PartitionConfig::default());
    for batch in &shipped {
        ahead.apply_replicated(Epoch(3), batch);
    }
    let mut promoted = partition(PartitionConfig::default());
    for batch in &shipped[..2] {
        promoted.apply_replicated(Epoch(3), batch);
    }
    promoted.set_epoch(Epoch(4));
    let next = submit(&mut promoted, 9_000, cmd("k1", Cmd::Add(5)));
    // The new entry 3 is not the one `ahead` holds: a snapshot, not a skip.
    assert_eq!(
        ahead.apply_replicated(Epoch(4), next.log.as_bytes()),
        Replicated::NeedSnapshot { have: Seq(3) }
    );
}

#[test]
fn a_promotion_raises_the_epoch_but_not_the_last_entry_epoch() {
    let (mut owner, shipped) = owner_with(5);
    assert_eq!(owner.last_epoch(), Epoch(3));
    // Promoted without writing: it fences at 9, but its log still ends at
    // epoch 3, so nothing mistakes it for a longer log.
    owner.set_epoch(Epoch(9));
    assert_eq!((owner.epoch(), owner.last_epoch()), (Epoch(9), Epoch(3)));
    let chunks = owner.snapshot_chunks(1 << 16).unwrap();
    let restored = Partition::restore(
        owner.registry().clone(),
        PartitionConfig::default(),
        chunks.iter().map(Vec::as_slice),
    )
    .unwrap();
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
