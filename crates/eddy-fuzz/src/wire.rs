//! `wire_frame`: the binary client protocol (`eddy_core::wire`) and the TCP
//! ingress's checks of the events a frame carries.

use std::fmt::Debug;

use eddy_core::wire::{
    DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION, Request, Response, decode_frame, encode_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use xxhash_rust::xxh3::xxh3_64;

/// Mode byte, then: 0 a byte stream of `Request` frames, 1 of `Response`
/// frames; 2 a `Request` body, 3 a `Response` body, each framed with a
/// correct length, version and checksum.
pub fn wire_frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => stream::<Request>(rest),
        1 => stream::<Response>(rest),
        2 => {
            if let Some(request) = framed::<Request>(rest) {
                check_request(request);
            }
        }
        _ => {
            framed::<Response>(rest);
        }
    }
}

/// A frame around `body` with a correct length, version and checksum.
pub fn frame_around(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(2 + body.len() + 8).expect("fuzz inputs are small");
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(body);
    let sum = xxh3_64(&out[4..]);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Decodes frames off the front of `buf` as a connection does.
pub(crate) fn stream<T>(mut buf: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    while let Ok(Some((message, consumed))) = decode_frame::<T>(buf, DEFAULT_MAX_FRAME_BYTES) {
        assert!(
            (1..=buf.len()).contains(&consumed),
            "consumed {consumed} of {}",
            buf.len()
        );
        round_trip(&message);
        buf = &buf[consumed..];
    }
}

/// Decodes `body` framed correctly; a whole frame is never "incomplete".
pub(crate) fn framed<T>(body: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame = frame_around(body);
    match decode_frame::<T>(&frame, DEFAULT_MAX_FRAME_BYTES) {
        Ok(Some((message, consumed))) => {
            assert_eq!(consumed, frame.len());
            round_trip(&message);
            Some(message)
        }
        Ok(None) => panic!("a complete frame of {} bytes asked for more", frame.len()),
        Err(_) => None,
    }
}

/// What decodes encodes to a frame that decodes to the same message.
fn round_trip<T>(message: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut out = Vec::new();
    encode_frame(message, &mut out).expect("a decoded message encodes");
    let (back, consumed) = decode_frame::<T>(&out, usize::MAX)
        .expect("its encoding decodes")
        .expect("its encoding is complete");
    assert_eq!(consumed, out.len());
    assert_eq!(&back, message);
}

/// The TCP ingress's checks of a decoded request's events (never panic;
/// what passes is an event the registry decodes).
fn check_request(request: Request) {
    let registry = crate::registry();
    match request {
        Request::Submit { events, .. } => {
            if let Ok(events) = eddy_node::ingress::validate_wire(&registry, events) {
                for event in events {
                    assert!(registry.check_event(event.kind, &event.payload).is_ok());
                }
            }
        }
        Request::SubmitJson { events, .. } => {
            for event in events {
                if let Some(kind) = registry.kind_id(&event.kind)
                    && let Ok(payload) = registry.event_from_json(kind, &event.event_json)
                {
                    assert!(
                        registry.check_event(kind, &payload).is_ok(),
                        "JSON the registry encoded does not decode: {}",
                        event.event_json
                    );
                }
            }
        }
        Request::GetState { .. }
        | Request::Subscribe { .. }
        | Request::GetTable { .. }
        | Request::Hello { .. } => {}
    }
}
