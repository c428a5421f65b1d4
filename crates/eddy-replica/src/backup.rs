//! The replica's side of replication: what a copy does with an owner's
//! entries and snapshot chunks, and what it answers.
//!
//! The caller has fenced the message ([`crate::fence`]) and runs it once
//! the committed configuration shows its epoch; what is decided here is
//! whether the copy can follow the sender's log, and what the answer is.
//! An answer that confirms anything is sent only once what it confirms is
//! in the node's log (with `data_dir`): the caller writes first.

use eddy_core::{Epoch, Replicated, Seq, SnapshotReader};

use crate::role::Role;
use crate::slot::Slot;
use crate::stream::Received;

/// What an owner's `Replicate` did to a copy.
#[derive(Debug, PartialEq, Eq)]
pub struct Replication {
    /// The answer, once [`Replication::grew`]'s entries (or, if nothing
    /// grew, what the copy already holds) are in the log.
    pub answer: Replicated,
    /// The copy applied new entries: the message's entries go to the log;
    /// otherwise a resend or an empty check confirms what the copy holds,
    /// which must be in the log too (a barrier behind earlier writes).
    pub grew: bool,
    /// This node was serving the partition and a newer owner deposed it.
    pub stood_down: bool,
}

/// What a snapshot chunk came to.
#[derive(Debug)]
pub enum Installed {
    /// Taken; more chunks to come.
    More,
    /// Not a chunk of the stream in progress: refused.
    Foreign,
    /// The stream is damaged or incomplete and was dropped (why).
    Broken(String),
    /// The copy claims another epoch than its sender: refused. An owner
    /// sends its own copy, of its own epoch. A copy claiming more would
    /// raise the fence past what the configuration (which vouched for the
    /// sender's epoch) shows; one claiming less would make this copy a
    /// follower of a log its sender does not write.
    WrongEpoch {
        /// The epoch the copy claims.
        claimed: Epoch,
    },
    /// This node serves a newer ownership than the sender knows of.
    Stale {
        /// Its epoch.
        current: Epoch,
    },
    /// An older snapshot of the log this copy follows, arriving late (on a
    /// connection the owner gave up for a new one, read after the newer
    /// frames): one log per epoch, so the longer copy holds it. Not
    /// installed — that would drop entries this copy confirmed — and
    /// answered once what the copy holds is in the log.
    Held {
        /// The copy's position.
        through: Seq,
    },
    /// Installed: answered once written to the log as the snapshot.
    Written {
        /// The installed copy's position.
        through: Seq,
        /// The epoch this node was serving at, if the installed copy
        /// replaced a serving one (an ownership change the logs of a lost
        /// write must show).
        replaced: Option<Epoch>,
    },
}

impl Installed {
    /// The answer to the sender (sent once the log holds what it confirms).
    pub fn answer(&self) -> Replicated {
        match self {
            Installed::More => Replicated::Applied { through: Seq(0) },
            Installed::Foreign | Installed::Broken(_) | Installed::WrongEpoch { .. } => {
                Replicated::NeedSnapshot { have: Seq(0) }
            }
            Installed::Stale { current } => Replicated::Stale { current: *current },
            Installed::Held { through } | Installed::Written { through, .. } => {
                Replicated::Applied { through: *through }
            }
        }
    }
}

impl Slot {
    /// Applies an owner's entries at its `epoch` (already fenced). A
    /// serving owner is deposed by a newer epoch (`ours`: whether the table
    /// still names this node, asked only then) and then follows like any
    /// copy; entries of an older or equal epoch than the one it serves are
    /// `Stale`.
    pub fn replicate(
        &mut self,
        epoch: Epoch,
        entries: &[u8],
        ours: impl FnOnce() -> bool,
    ) -> Replication {
        let Some(copy) = self.partition.as_ref() else {
            return Replication {
                answer: Replicated::NeedSnapshot { have: Seq(0) },
                grew: false,
                stood_down: false,
            };
        };
        let (held, before) = (copy.epoch(), copy.last_seq());
        let mut stood_down = false;
        if self.role == Role::Owner {
            if epoch <= held {
                return Replication {
                    answer: Replicated::Stale { current: held },
                    grew: false,
                    stood_down: false,
                };
            }
            stood_down = self.deposed(epoch, ours());
        }
        let Some(copy) = self.partition.as_mut() else {
            // Checked above; standing down keeps the copy.
            return Replication {
                answer: Replicated::NeedSnapshot { have: Seq(0) },
                grew: false,
                stood_down,
            };
        };
        let answer = copy.apply_replicated(epoch, entries);
        Replication {
            grew: copy.last_seq() > before,
            answer,
            stood_down,
        }
    }

    /// Feeds one chunk of an owner's snapshot stream (already fenced),
    /// which came on peer connection `link` at the owner's `epoch`; the
    /// last chunk of a whole stream installs the copy, unless it would
    /// step back.
    pub fn install(
        &mut self,
        (link, epoch): (u64, Epoch),
        chunk: &[u8],
        last: bool,
        reader: impl FnOnce() -> SnapshotReader,
    ) -> Installed {
        let restored = match self.receive((link, epoch), chunk, last, reader) {
            Received::Complete(restored) => *restored,
            Received::More => return Installed::More,
            Received::Foreign => return Installed::Foreign,
            Received::Broken(why) => return Installed::Broken(why),
        };
        if restored.epoch() != epoch {
            return Installed::WrongEpoch {
                claimed: restored.epoch(),
            };
        }
        let held = self.partition.as_ref().map_or(Epoch(0), |p| p.epoch());
        let held_seq = self.partition.as_ref().map_or(Seq(0), |p| p.last_seq());
        if self.role == Role::Owner && held >= epoch {
            return Installed::Stale { current: held };
        }
        let through = restored.last_seq();
        if restored.epoch() == held && through < held_seq {
            return Installed::Held { through: held_seq };
        }
        let replaced = (self.role == Role::Owner).then(|| {
            self.role = Role::Backup;
            held
        });
        self.partition = Some(restored);
        Installed::Written { through, replaced }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{append, chunks, copy_at, owner, reader, with_entries};

    fn install_all(slot: &mut Slot, link: u64, epoch: Epoch, chunks: &[Vec<u8>]) -> Installed {
        let mut last = Installed::More;
        for (at, chunk) in chunks.iter().enumerate() {
            last = slot.install((link, epoch), chunk, at + 1 == chunks.len(), reader);
        }
        last
    }

    #[test]
    fn entries_of_a_newer_owner_wait_for_its_snapshot() {
        // The copy follows epoch 1 through s3; the owner of epoch 2 wrote
        // its own log.
        let mut slot = Slot::new(Role::Backup);
        slot.partition = Some(with_entries(1, 3));
        let (mut newer, batches) = owner(2, 4);
        let outcome = slot.replicate(Epoch(2), &batches[3], || false);
        assert_eq!(outcome.answer, Replicated::NeedSnapshot { have: Seq(3) });
        assert!(!outcome.grew);
        let installed = install_all(&mut slot, 1, Epoch(2), &chunks(&newer));
        assert!(matches!(
            installed,
            Installed::Written {
                through: Seq(4),
                replaced: None
            }
        ));
        // Now a follower of epoch 2: its entries apply.
        let outcome = slot.replicate(Epoch(2), &append(&mut newer, 2), || false);
        assert_eq!(outcome.answer, Replicated::Applied { through: Seq(6) });
        assert!(outcome.grew);
        let resend = slot.replicate(Epoch(2), &batches[3], || false);
        assert_eq!(resend.answer, Replicated::Applied { through: Seq(6) });
        assert!(!resend.grew, "a resend is a barrier");
    }

    #[test]
    fn a_serving_owner_refuses_its_own_epoch_and_stands_down_for_a_newer_one() {
        let mut slot = Slot::new(Role::Owner);
        slot.partition = Some(with_entries(2, 2));
        let same = slot.replicate(Epoch(2), &[], || true);
        assert_eq!(same.answer, Replicated::Stale { current: Epoch(2) });
        assert_eq!(slot.role, Role::Owner);
        let newer = slot.replicate(Epoch(3), &[], || true);
        assert!(newer.stood_down);
        assert_eq!(slot.role, Role::Incoming);
        assert_eq!(slot.fence(), Epoch(3));
        assert_eq!(newer.answer, Replicated::NeedSnapshot { have: Seq(2) });
    }

    #[test]
    fn a_late_snapshot_of_the_same_log_never_shortens_the_copy() {
        let mut slot = Slot::new(Role::Backup);
        slot.partition = Some(with_entries(2, 5));
        let older = with_entries(2, 3);
        let installed = install_all(&mut slot, 9, Epoch(2), &chunks(&older));
        assert!(matches!(installed, Installed::Held { through: Seq(5) }));
        assert_eq!(installed.answer(), Replicated::Applied { through: Seq(5) });
        assert_eq!(slot.partition.as_ref().map(|p| p.last_seq()), Some(Seq(5)));
    }

    #[test]
    fn a_snapshot_claiming_another_epoch_than_its_sender_is_refused() {
        let mut slot = Slot::new(Role::Backup);
        let installed = install_all(&mut slot, 1, Epoch(3), &chunks(&copy_at(4)));
        assert!(matches!(
            installed,
            Installed::WrongEpoch { claimed: Epoch(4) }
        ));
        assert!(slot.partition.is_none());
    }

    #[test]
    fn an_owner_replaced_by_a_newer_owners_snapshot_says_so() {
        let mut slot = Slot::new(Role::Owner);
        slot.partition = Some(with_entries(2, 2));
        let stale = install_all(&mut slot, 1, Epoch(2), &chunks(&with_entries(2, 1)));
        assert!(matches!(stale, Installed::Stale { current: Epoch(2) }));
        let newer = install_all(&mut slot, 1, Epoch(3), &chunks(&with_entries(3, 1)));
        assert!(matches!(
            newer,
            Installed::Written {
                through: Seq(1),
                replaced: Some(Epoch(2))
            }
        ));
        assert_eq!(slot.role, Role::Backup);
    }
}
