//! What every ingress (HTTP, binary protocol) checks on the identifiers of an
//! event before it is accepted: the key is printable text, and a producer's
//! sequence number leaves room for the next one.
//!
//! The checks live here, in the core, so that every ingress refuses the same
//! inputs with the same words; each ingress maps [`AdmissionError`] to its own
//! answer (a 400 naming the field, a `BadRequest` wire code).

use thiserror::Error;

/// The largest producer sequence number accepted. `u64::MAX` is refused: the
/// partition remembers the highest seq per producer and treats every seq at
/// or below it as a duplicate, so after `u64::MAX` nothing the producer could
/// ever send would be applied again — it would be acknowledged as a duplicate
/// forever, silently.
pub const MAX_PRODUCER_SEQ: u64 = u64::MAX - 1;

/// An event identifier was refused at the door. Nothing was applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AdmissionError {
    /// The key is empty, or only whitespace.
    #[error("key must not be empty or only whitespace")]
    BlankKey,
    /// The key contains a control character (C0, DEL, C1 — which includes
    /// the escape that starts terminal sequences). Keys reach logs, the
    /// dashboard and terminals; a control character there can rewrite what
    /// an operator sees.
    #[error("key must not contain control characters (found U+{code:04X} at byte {at})")]
    ControlInKey {
        /// The offending character's code point.
        code: u32,
        /// Its byte offset in the key.
        at: usize,
    },
    /// The producer's seq is `u64::MAX`: see [`MAX_PRODUCER_SEQ`].
    #[error(
        "seq {seq} is above the largest accepted ({MAX_PRODUCER_SEQ}): no later seq would exist"
    )]
    SeqTooLarge {
        /// The offered seq.
        seq: u64,
    },
}

impl AdmissionError {
    /// The request field the error is about (`key` or `seq`), for answers
    /// that name the field.
    pub fn field(&self) -> &'static str {
        match self {
            AdmissionError::BlankKey | AdmissionError::ControlInKey { .. } => "key",
            AdmissionError::SeqTooLarge { .. } => "seq",
        }
    }
}

/// Checks that `key` is printable text: not empty after trimming whitespace,
/// no control characters. Length is checked by the partition
/// (`PartitionConfig::max_key_bytes`).
pub fn check_key(key: &str) -> Result<(), AdmissionError> {
    if key.trim().is_empty() {
        return Err(AdmissionError::BlankKey);
    }
    match key.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(AdmissionError::ControlInKey {
            code: u32::from(c),
            at,
        }),
        None => Ok(()),
    }
}

/// Checks that a producer's `seq` leaves room for a next one.
pub fn check_seq(seq: u64) -> Result<(), AdmissionError> {
    if seq > MAX_PRODUCER_SEQ {
        return Err(AdmissionError::SeqTooLarge { seq });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_pass() {
        for key in ["acct-7", "a", "ключ", "a b", " padded ", "emoji-🦀"] {
            assert_eq!(check_key(key), Ok(()), "{key:?}");
        }
    }

    #[test]
    fn blank_keys_are_refused() {
        for key in ["", " ", "\t", " \u{3000} ", "\u{2003}"] {
            assert_eq!(check_key(key), Err(AdmissionError::BlankKey), "{key:?}");
        }
    }

    #[test]
    fn control_characters_and_terminal_escapes_are_refused() {
        let cases = [
            ("a\nb", 0x0a, 1),
            ("\u{1b}[2Jacct", 0x1b, 0),
            ("acct\u{7f}", 0x7f, 4),
            ("é\u{9b}31m", 0x9b, 2),
            ("a\0", 0, 1),
        ];
        for (key, code, at) in cases {
            let err = check_key(key).unwrap_err();
            assert_eq!(err, AdmissionError::ControlInKey { code, at }, "{key:?}");
            assert_eq!(err.field(), "key");
        }
    }

    #[test]
    fn the_last_seq_is_refused_and_the_one_before_accepted() {
        assert_eq!(check_seq(0), Ok(()));
        assert_eq!(check_seq(MAX_PRODUCER_SEQ), Ok(()));
        let err = check_seq(u64::MAX).unwrap_err();
        assert_eq!(err, AdmissionError::SeqTooLarge { seq: u64::MAX });
        assert_eq!(err.field(), "seq");
    }
}
