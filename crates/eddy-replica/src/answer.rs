//! The owner's side of replication: what a backup's answer says about the
//! entries it was shipped.

use eddy_core::{Epoch, Replicated, Seq};

/// What a backup's answer to entries shipped through position `required`
/// means for the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// It holds this owner's log through `through` (at least `required`).
    Confirmed {
        /// How far.
        through: Seq,
    },
    /// It lacks entries before those shipped (a gap, a frame lost on a
    /// dropped connection, a copy of another log): it does not count, and
    /// gets a snapshot next.
    Behind,
    /// It serves a newer owner, at this epoch: the sender is deposed.
    Deposed(Epoch),
    /// Its committed configuration shows only this epoch, older than the
    /// sender's: it does not count yet, and gets a snapshot next.
    EpochUnknown(Epoch),
}

/// Reads `answer` to entries shipped through `required`.
pub fn confirmation(answer: Replicated, required: Seq) -> Confirmation {
    match answer {
        Replicated::Applied { through } if through >= required => {
            Confirmation::Confirmed { through }
        }
        Replicated::Applied { .. } | Replicated::NeedSnapshot { .. } => Confirmation::Behind,
        Replicated::Stale { current } => Confirmation::Deposed(current),
        Replicated::EpochUnknown { known } => Confirmation::EpochUnknown(known),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_position_at_or_past_the_shipped_one_confirms() {
        let required = Seq(5);
        assert_eq!(
            confirmation(Replicated::Applied { through: Seq(6) }, required),
            Confirmation::Confirmed { through: Seq(6) }
        );
        assert_eq!(
            confirmation(Replicated::Applied { through: Seq(4) }, required),
            Confirmation::Behind,
            "a lost frame leaves the copy short of what was shipped"
        );
        assert_eq!(
            confirmation(Replicated::NeedSnapshot { have: Seq(9) }, required),
            Confirmation::Behind
        );
        assert_eq!(
            confirmation(Replicated::Stale { current: Epoch(3) }, required),
            Confirmation::Deposed(Epoch(3))
        );
        assert_eq!(
            confirmation(Replicated::EpochUnknown { known: Epoch(1) }, required),
            Confirmation::EpochUnknown(Epoch(1))
        );
    }
}
