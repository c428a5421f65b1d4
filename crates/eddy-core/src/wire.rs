//! The binary client protocol: length-prefixed, versioned, checksummed
//! postcard frames. Sans-io: [`encode_frame`] writes into a caller's buffer,
//! [`decode_frame`] reads from one and says how many bytes it consumed.
//!
//! ```text
//! length u32 LE (bytes after this field) | version u16 LE | postcard body | xxh3_64 u64 LE
//! ```
//!
//! The length is checked against the receiver's limit before anything is
//! buffered, the version before the body is decoded, and the checksum (over
//! version and body) before the body is trusted. Requests carry a
//! `request_id`; responses repeat it, so a client can pipeline many requests
//! on one connection and match answers as they come.

use compact_str::CompactString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

use crate::entry::ProducerRef;
use crate::registry::encode_into;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Default largest frame a peer may send (after the length field).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
const LENGTH_BYTES: usize = 4;
const VERSION_BYTES: usize = 2;
const CHECKSUM_BYTES: usize = 8;

/// An event as clients send it: the kind by name, the event as the kind's
/// postcard encoding (see [`crate::encode_event`]). Kind and key are inline
/// strings (up to 24 bytes without allocating): decoding a batch costs one
/// allocation per event, for the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// Kind name.
    pub kind: CompactString,
    /// Key.
    pub key: CompactString,
    /// Postcard encoding of the kind's event.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Idempotent producer, if any.
    pub producer: Option<ProducerRef>,
}

/// An event whose payload is JSON text, for the node to encode with the
/// kinds it hosts: what a client sends that does not link the behaviour
/// (`eddy send` to a node serving a kind of one's own). Costs the node a
/// JSON decode per event, which a [`WireEvent`] saves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonEvent {
    /// Kind name.
    pub kind: CompactString,
    /// Key.
    pub key: CompactString,
    /// The kind's event as JSON text.
    pub event_json: String,
    /// Idempotent producer, if any.
    pub producer: Option<ProducerRef>,
}

/// Client → node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Apply a batch; answered by `Ack`, `Rejected` or `Overloaded`.
    Submit {
        /// Echoed in the answer.
        request_id: u64,
        /// The events, applied in order per key.
        events: Vec<WireEvent>,
    },
    /// Read a key's state; answered by `State` or `Rejected`.
    GetState {
        /// Echoed in the answer.
        request_id: u64,
        /// Kind name.
        kind: String,
        /// Key.
        key: String,
    },
    /// Stream alerts on this connection from now on, optionally filtered.
    Subscribe {
        /// Only this kind.
        kind: Option<String>,
        /// Only this key.
        key: Option<String>,
    },
    /// Ask for the partition table, to route batches straight to owners.
    GetTable {
        /// Echoed in the answer.
        request_id: u64,
    },
    /// Like `Submit`, with JSON events the node encodes; answered the same
    /// way. Last, so the variants before it keep their encoding (a node
    /// from before it answers `ProtocolError`).
    SubmitJson {
        /// Echoed in the answer.
        request_id: u64,
        /// The events, applied in order per key.
        events: Vec<JsonEvent>,
    },
    /// Presents an API token for the rest of the connection; answered by
    /// `Welcome` (the token's role) or `ProtocolError` (unknown token, then
    /// the node closes). Sent first by a client given a token; a node
    /// without tokens welcomes any. Appended last so every variant before
    /// it keeps its encoding; a node from before tokens answers
    /// `ProtocolError` (malformed body).
    Hello {
        /// Echoed in the answer.
        request_id: u64,
        /// The secret of an API token (never logged by the node).
        token: String,
    },
}

/// A `Request::Submit` built from a borrowed batch: encodes to exactly the
/// bytes of the owned request (same variant index and fields), so a client
/// can resend a batch without cloning it.
#[derive(Debug, Serialize)]
pub enum SubmitRef<'a> {
    /// Mirrors `Request::Submit`, which must stay the first variant.
    Submit {
        /// Echoed in the answer.
        request_id: u64,
        /// The events.
        events: &'a [WireEvent],
    },
}

/// Stable error codes that cross the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request was malformed or named an unknown kind; nothing applied.
    BadRequest = 1,
    /// The batch exceeds the node's limit; nothing applied.
    TooLarge = 2,
    /// The node is not ready; nothing applied.
    NotReady = 3,
    /// A worker did not answer; the batch may be partly applied.
    Unavailable = 4,
    /// The connection's token lacks the role the request needs (`read`
    /// for reads, `write` for submits); nothing applied. Appended last:
    /// only a client that sent `Hello` can be answered with it.
    Forbidden = 5,
}

/// Node → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The batch was processed.
    Ack {
        /// The request's id.
        request_id: u64,
        /// Events applied.
        accepted: u32,
        /// Events skipped as producer retries.
        duplicates: u32,
        /// Events refused while applying: (index in batch, reason).
        rejected: Vec<(u32, String)>,
        /// Events this node does not own and forwarded to their owner: the
        /// client's table is stale, a routing client should refresh it.
        misrouted: u32,
    },
    /// The request was refused as a whole.
    Rejected {
        /// The request's id (0 when the frame could not be read).
        request_id: u64,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Human-readable detail naming the event index and field.
        message: String,
    },
    /// The node is full; nothing applied; retry after the delay.
    Overloaded {
        /// The request's id.
        request_id: u64,
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// A key's state.
    State {
        /// The request's id.
        request_id: u64,
        /// State as JSON text, `None` if the key has none.
        state_json: Option<String>,
        /// The key's partition.
        partition: u32,
        /// Owner epoch (the fencing epoch) of the copy that answered.
        epoch: u64,
    },
    /// An alert, after `Subscribe`.
    Alert {
        /// The alert record as JSON text.
        json: String,
    },
    /// The connection is being closed because of what the peer sent.
    ProtocolError {
        /// Why.
        message: String,
    },
    /// The partition table as this node sees it.
    Table {
        /// The request's id.
        request_id: u64,
        /// The table.
        table: RouteTable,
    },
    /// The answer to `Hello`: the token is known; requests of its role
    /// are served on this connection from now on.
    Welcome {
        /// The request's id.
        request_id: u64,
        /// The token's role: `read`, `write` or `admin` (`admin` when the
        /// node has no tokens and serves anyone).
        role: String,
    },
}

/// Where each partition's owner takes client connections: what a routing
/// client needs, and nothing of the cluster's internals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RouteTable {
    /// Rises with every change of the table on the answering node.
    pub version: u64,
    /// Partition count `P`.
    pub partitions: u32,
    /// Nodes: name and binary-protocol address (`host:port`).
    pub nodes: Vec<(CompactString, String)>,
    /// For partition `p`, the index in `nodes` of its owner.
    pub owners: Vec<u32>,
}

/// A frame could not be read. The connection cannot be trusted after any of
/// these: the receiver answers `ProtocolError` if it can, and closes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix exceeds the receiver's limit (or is too short to
    /// hold a version and checksum).
    #[error("frame of {len} bytes is outside the allowed range (max {max})")]
    BadLength {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got} is not supported (this node speaks {supported})")]
    Version {
        /// The peer's version.
        got: u16,
        /// Ours.
        supported: u16,
    },
    /// Checksum mismatch: corruption or not our protocol.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The body did not decode as a message.
    #[error("malformed frame body: {0}")]
    Body(String),
}

/// Appends one frame carrying `message` to `out`.
pub fn encode_frame<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_BYTES]);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    encode_into(message, out).map_err(|err| WireError::Body(err.to_string()))?;
    let checksum = xxh3_64(&out[start + LENGTH_BYTES..]);
    out.extend_from_slice(&checksum.to_le_bytes());
    let len = out.len() - start - LENGTH_BYTES;
    let len32 = u32::try_from(len).map_err(|_| WireError::BadLength {
        len,
        max: u32::MAX as usize,
    })?;
    out[start..start + LENGTH_BYTES].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// Reads one frame from the front of `buf`. `Ok(None)`: more bytes needed
/// (never more than `max_frame_bytes` + 4 in all, which the caller may use to
/// size its buffer). `Ok(Some((message, consumed)))`: drop `consumed` bytes.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(T, usize)>, WireError> {
    let Some(prefix) = buf.get(..LENGTH_BYTES) else {
        return Ok(None);
    };
    let mut length = [0u8; LENGTH_BYTES];
    length.copy_from_slice(prefix);
    let len = u32::from_le_bytes(length) as usize;
    if len > max_frame_bytes || len < VERSION_BYTES + CHECKSUM_BYTES {
        return Err(WireError::BadLength {
            len,
            max: max_frame_bytes,
        });
    }
    // The version is checked as soon as it arrives, so a peer of another
    // version is told so even if its frame never completes.
    if let Some(version) = buf.get(LENGTH_BYTES..LENGTH_BYTES + VERSION_BYTES) {
        let version = u16::from_le_bytes([version[0], version[1]]);
        if version != PROTOCOL_VERSION {
            return Err(WireError::Version {
                got: version,
                supported: PROTOCOL_VERSION,
            });
        }
    }
    let Some(frame) = buf.get(LENGTH_BYTES..LENGTH_BYTES + len) else {
        return Ok(None);
    };
    let (checked, trailer) = frame.split_at(len - CHECKSUM_BYTES);
    let mut sum = [0u8; CHECKSUM_BYTES];
    sum.copy_from_slice(trailer);
    if xxh3_64(checked) != u64::from_le_bytes(sum) {
        return Err(WireError::Checksum);
    }
    match postcard::take_from_bytes::<T>(&checked[VERSION_BYTES..]) {
        Ok((message, [])) => Ok(Some((message, LENGTH_BYTES + len))),
        Ok((_, rest)) => Err(WireError::Body(format!("{} trailing bytes", rest.len()))),
        Err(err) => Err(WireError::Body(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit() -> Request {
        Request::Submit {
            request_id: 7,
            events: vec![WireEvent {
                kind: "account".into(),
                key: "acct-1".into(),
                payload: vec![1, 2, 3],
                producer: Some(ProducerRef {
                    producer: "p".into(),
                    seq: 9,
                }),
            }],
        }
    }

    fn frame(message: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(message, &mut out).expect("encodes");
        out
    }

    #[test]
    fn round_trip_and_partial_input() {
        let bytes = frame(&submit());
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_frame::<Request>(&bytes[..cut], 1024),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode_frame::<Request>(&bytes, 1024),
            Ok(Some((submit(), bytes.len())))
        );
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let (_, used) = decode_frame::<Request>(&two, 1024)
            .expect("ok")
            .expect("frame");
        assert_eq!(
            decode_frame::<Request>(&two[used..], 1024),
            Ok(Some((submit(), used)))
        );
    }

    #[test]
    fn borrowed_submit_encodes_like_the_owned_request() {
        let Request::Submit { events, .. } = submit() else {
            unreachable!("submit() builds a Submit")
        };
        let mut borrowed = Vec::new();
        encode_frame(
            &SubmitRef::Submit {
                request_id: 7,
                events: &events,
            },
            &mut borrowed,
        )
        .expect("encodes");
        assert_eq!(borrowed, frame(&submit()));
    }

    #[test]
    fn variants_from_before_tokens_keep_their_encoding() {
        // Hello, Welcome and Forbidden are appended: an old peer's frames
        // still decode, and the old variants' first byte is unchanged.
        let mut body = Vec::new();
        encode_into(&submit(), &mut body).expect("encodes");
        assert_eq!(body[0], 0, "Submit is variant 0");
        let hello = Request::Hello {
            request_id: 1,
            token: "s".into(),
        };
        let mut body = Vec::new();
        encode_into(&hello, &mut body).expect("encodes");
        assert_eq!(body[0], 5, "Hello is appended after SubmitJson");
        let bytes = frame(&hello);
        assert_eq!(
            decode_frame::<Request>(&bytes, 1024),
            Ok(Some((hello, bytes.len())))
        );
        let mut body = Vec::new();
        encode_into(&ErrorCode::Unavailable, &mut body).expect("encodes");
        assert_eq!(body, [3]);
    }

    #[test]
    fn a_node_from_before_tokens_names_a_hello_as_a_malformed_body() {
        // What such a node decodes into: five variants, none of them Hello.
        // eddy-client matches this message to say "the node does not
        // support API tokens".
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        enum BeforeTokens {
            Submit,
            GetState,
            Subscribe,
            GetTable,
            SubmitJson,
        }
        let hello = frame(&Request::Hello {
            request_id: 1,
            token: "s".into(),
        });
        let err = decode_frame::<BeforeTokens>(&hello, 1024).expect_err("unknown variant");
        assert!(err.to_string().starts_with("malformed frame body"), "{err}");
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut bytes = frame(&submit());
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_frame::<Request>(&bytes[..4], 1024),
            Err(WireError::BadLength { .. })
        ));
    }

    #[test]
    fn other_versions_are_named() {
        let mut bytes = frame(&submit());
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            decode_frame::<Request>(&bytes[..6], 1024),
            Err(WireError::Version {
                got: 2,
                supported: 1
            })
        );
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = frame(&submit());
        for index in 6..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x01;
            assert!(
                decode_frame::<Request>(&damaged, 1024).is_err(),
                "flip at {index}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u64;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_frame::<Request>(&bytes, 1024);
        }
        assert!(decode_frame::<Request>(b"GET / HTTP/1.1\r\n\r\n", 1024).is_err());
    }
}
