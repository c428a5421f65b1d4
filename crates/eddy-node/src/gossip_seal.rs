//! Sealed gossip (docs/SECURITY.md): every SWIM datagram is encrypted and
//! authenticated with a cluster key, so a process without the key can
//! neither join the membership nor forge or read it.
//!
//! A sealed datagram is `key id (1) | nonce (12) | ciphertext + tag (16)`,
//! ChaCha20-Poly1305 from ring (already built for rustls), the key id bound
//! in as associated data. Nonces are random (ring's `SystemRandom`): 96
//! bits make a repeat negligible at gossip rates (a few hundred datagrams a
//! second for years). Rotation: the key file lists the current key first and
//! may list the previous one after it; datagrams are sealed with the first
//! and opened with either, so a cluster rolls to a new key in two restarts
//! per node (see docs/SECURITY.md, "Rotating the gossip key").
//!
//! The seal adds [`SEAL_OVERHEAD`] (29) bytes: foca's 1400-byte datagrams
//! become 1429, still inside a 1500-byte Ethernet MTU with IP and UDP
//! headers.
//!
//! The key id is derived from the key (the first byte of its SHA-256), so
//! nodes agree on it without configuring it; a datagram whose id matches no
//! key is refused at once, and two keys sharing an id are both tried.

use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

/// Bytes a sealed datagram adds to the payload: key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + 16;

/// Most keys a key file may list: the current one and the previous one.
pub const MAX_KEYS: usize = 2;

/// Bytes of a gossip key.
pub const KEY_BYTES: usize = 32;

/// The gossip key file could not be used; the node does not start.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("gossip_key_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a key, or the file lists none or too many. The
    /// message never contains key material.
    #[error("gossip_key_file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A datagram could not be opened. It is dropped and counted as bad.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than the seal itself: not sealed gossip.
    #[error("datagram of {0} bytes is too short to be sealed gossip")]
    TooShort(usize),
    /// No key this node holds has the datagram's key id.
    #[error(
        "sealed with an unknown gossip key (id {0}); is gossip_key_file the same on every node?"
    )]
    UnknownKey(u8),
    /// The tag did not verify: a wrong key, or bytes changed on the way.
    #[error("does not open with the gossip key (wrong key, or tampered)")]
    Rejected,
}

/// Sealing could not draw a random nonce (the OS random source failed).
#[derive(Debug, Error)]
#[error("no random nonce for a gossip datagram")]
pub struct SealError;

struct GossipKey {
    id: u8,
    key: LessSafeKey,
}

/// The cluster's gossip keys: the first seals, every one opens.
pub struct GossipSeal {
    keys: Vec<GossipKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for GossipSeal {
    /// Key ids only: key material never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("GossipSeal").field("key_ids", &ids).finish()
    }
}

impl GossipSeal {
    /// Keys from raw bytes, current first. `keys` holds 1 to [`MAX_KEYS`].
    pub fn new(keys: &[[u8; KEY_BYTES]]) -> Result<GossipSeal, String> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(format!(
                "lists {} keys; list the current key, and the previous one during a rotation (1 or 2)",
                keys.len()
            ));
        }
        let keys = keys
            .iter()
            .map(|bytes| {
                let id = ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()[0];
                UnboundKey::new(&CHACHA20_POLY1305, bytes)
                    .map(|key| GossipKey {
                        id,
                        key: LessSafeKey::new(key),
                    })
                    .map_err(|_| "a key of the wrong length".to_owned())
            })
            .collect::<Result<_, _>>()?;
        Ok(GossipSeal {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// Reads a key file: one key a line (64 hex digits or base64 of 32
    /// bytes), the current key first; `#` comments and blank lines skipped.
    pub fn from_file(path: &Path) -> Result<GossipSeal, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |reason: String| KeyFileError::Invalid {
            path: shown.clone(),
            reason,
        };
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = parse_key(line).ok_or_else(|| {
                invalid(format!(
                    "line {} is not a key: 64 hex digits or the base64 of 32 bytes (`eddy cert gossip-key` writes one)",
                    index + 1
                ))
            })?;
            keys.push(key);
        }
        GossipSeal::new(&keys).map_err(invalid)
    }

    /// Seals `payload` with the current key.
    pub fn seal(&self, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        // The constructor refuses an empty key list.
        let current = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(payload.len() + SEAL_OVERHEAD);
        out.push(current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(payload);
        let mut body = out.split_off(1 + NONCE_LEN);
        current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([current.id]),
                &mut body,
            )
            .map_err(|_| SealError)?;
        out.append(&mut body);
        Ok(out)
    }

    /// Opens a sealed datagram in place, returning the payload.
    pub fn open<'a>(&self, datagram: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        if datagram.len() < SEAL_OVERHEAD {
            return Err(OpenError::TooShort(datagram.len()));
        }
        let id = datagram[0];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&datagram[1..1 + NONCE_LEN]);
        let sealed = &mut datagram[1 + NONCE_LEN..];
        let mut candidates = self.keys.iter().filter(|k| k.id == id).peekable();
        if candidates.peek().is_none() {
            return Err(OpenError::UnknownKey(id));
        }
        for key in candidates {
            // A failed open may have garbled the buffer; try the next key
            // on a copy so both see the bytes as received.
            let mut attempt = sealed.to_vec();
            if let Ok(plain) = key.key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([id]),
                &mut attempt,
            ) {
                let len = plain.len();
                sealed[..len].copy_from_slice(&attempt[..len]);
                return Ok(&sealed[..len]);
            }
        }
        Err(OpenError::Rejected)
    }
}

/// 64 hex digits or base64 (standard alphabet, padded or not) of 32 bytes.
fn parse_key(text: &str) -> Option<[u8; KEY_BYTES]> {
    let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..KEY_BYTES)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        base64_decode(text)?
    };
    bytes.try_into().ok()
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// A fresh random key as 64 hex digits (`eddy cert gossip-key`).
pub fn generate_key_hex() -> Result<String, SealError> {
    let mut key = [0u8; KEY_BYTES];
    SystemRandom::new().fill(&mut key).map_err(|_| SealError)?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: [u8; KEY_BYTES] = [7; KEY_BYTES];
    const NEW: [u8; KEY_BYTES] = [9; KEY_BYTES];

    fn seal(keys: &[[u8; KEY_BYTES]]) -> GossipSeal {
        GossipSeal::new(keys).expect("valid keys")
    }

    #[test]
    fn a_sealed_datagram_opens_to_its_payload() {
        let keys = seal(&[NEW]);
        let mut datagram = keys.seal(b"swim ping").expect("sealed");
        assert_eq!(datagram.len(), 9 + SEAL_OVERHEAD);
        assert!(!datagram.windows(9).any(|w| w == b"swim ping"), "encrypted");
        assert_eq!(keys.open(&mut datagram), Ok(&b"swim ping"[..]));
    }

    #[test]
    fn a_tampered_datagram_is_refused() {
        let keys = seal(&[NEW]);
        let clean = keys.seal(b"member up: node-4").expect("sealed");
        for at in 1..clean.len() {
            let mut tampered = clean.clone();
            tampered[at] ^= 0x01;
            assert_eq!(
                keys.open(&mut tampered),
                Err(OpenError::Rejected),
                "a bit flipped at byte {at} must not open"
            );
        }
        let mut id_changed = clean.clone();
        id_changed[0] ^= 0x01;
        assert!(keys.open(&mut id_changed).is_err());
        assert_eq!(
            keys.open(&mut clean[..10].to_vec()),
            Err(OpenError::TooShort(10))
        );
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let mut datagram = seal(&[OLD]).seal(b"join").expect("sealed");
        let other = seal(&[NEW]);
        assert!(other.open(&mut datagram).is_err(), "another key's datagram");
        // A plaintext foca datagram (no seal) is refused too.
        let mut plain = vec![0u8; 64];
        assert!(other.open(&mut plain).is_err());
    }

    #[test]
    fn during_rotation_the_old_key_still_opens_and_the_new_one_seals() {
        let rotating = seal(&[NEW, OLD]);
        let old_only = seal(&[OLD]);
        let mut from_old = old_only
            .seal(b"from a node not yet rotated")
            .expect("sealed");
        assert_eq!(
            rotating.open(&mut from_old),
            Ok(&b"from a node not yet rotated"[..])
        );
        let mut from_rotating = rotating.seal(b"sealed with the new key").expect("sealed");
        assert!(
            old_only.open(&mut from_rotating).is_err(),
            "the first key seals: a node with only the old key cannot open it"
        );
        let new_only = seal(&[NEW]);
        let mut again = rotating.seal(b"x").expect("sealed");
        assert_eq!(new_only.open(&mut again), Ok(&b"x"[..]));
    }

    #[test]
    fn key_files_take_hex_or_base64_and_refuse_anything_else() {
        let dir = std::env::temp_dir().join(format!("eddy-gossip-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let hex: String = NEW.iter().map(|b| format!("{b:02x}")).collect();
        // base64 of [7; 32]
        let b64 = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let path = dir.join("keys");
        std::fs::write(&path, format!("# current\n{hex}\n\n{b64}\n")).expect("write");
        let keys = GossipSeal::from_file(&path).expect("two keys");
        let mut datagram = seal(&[OLD]).seal(b"old").expect("sealed");
        assert_eq!(keys.open(&mut datagram), Ok(&b"old"[..]), "base64 key read");
        let mut datagram = keys.seal(b"new").expect("sealed");
        assert_eq!(
            seal(&[NEW]).open(&mut datagram),
            Ok(&b"new"[..]),
            "hex first"
        );

        std::fs::write(&path, "not a key\n").expect("write");
        let err = GossipSeal::from_file(&path)
            .expect_err("garbage")
            .to_string();
        assert!(err.contains("line 1 is not a key"), "{err}");
        std::fs::write(&path, format!("{hex}\n{hex}\n{hex}\n")).expect("write");
        assert!(GossipSeal::from_file(&path).is_err(), "three keys");
        std::fs::write(&path, "# nothing\n").expect("write");
        assert!(GossipSeal::from_file(&path).is_err(), "no key");
        let short = &hex[..62];
        std::fs::write(&path, format!("{short}\n")).expect("write");
        let err = GossipSeal::from_file(&path).expect_err("short").to_string();
        assert!(
            !err.contains(short),
            "key material never in a message: {err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn generated_keys_read_back() {
        let hex = generate_key_hex().expect("random");
        assert_eq!(parse_key(&hex).map(|k| k.len()), Some(KEY_BYTES));
    }
}
