//! The kinds a node hosts, type-erased so one partition can hold many kinds.
//!
//! A [`Registry`] is built once at start-up from the user's [`Behaviour`] types
//! and shared (`Arc`) by every partition. It is the only place where a kind's
//! name meets its Rust types: JSON and binary payloads are checked here, and each
//! partition asks it for a typed key store per kind.

use std::marker::PhantomData;

use serde::Serialize;

use crate::behaviour::Behaviour;
use crate::error::{CodecError, RegistryError};
use crate::id::KindId;
use crate::store::{KeyStore, TypedStore};

/// Encodes a typed event into `buf` (cleared first) as the binary payload the
/// partition log carries. Clients with Rust types use this; JSON goes through
/// [`Registry::event_from_json`]. Fails only if the event's `Serialize` impl does.
pub fn encode_event<B: Behaviour>(event: &B::Event, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    buf.clear();
    encode_into(event, buf).map_err(|err| CodecError::Binary {
        kind: B::KIND,
        what: "event",
        message: err.to_string(),
    })
}

/// Appends the postcard encoding of `value` to `buf`. On error (only a `Serialize`
/// impl that itself fails can cause one) `buf` is left as it was.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    let start = buf.len();
    postcard::to_io(value, &mut *buf)
        .map(drop)
        .inspect_err(|_| {
            buf.truncate(start);
        })
}

/// What a registry needs to know about one kind, without its types.
pub(crate) trait ErasedKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn event_from_json(&self, json: &str) -> Result<Vec<u8>, CodecError>;
    fn check_event(&self, payload: &[u8]) -> Result<(), CodecError>;
    fn new_store(&self, hash_seed: u64) -> Box<dyn KeyStore>;
}

struct Kind<B>(PhantomData<fn() -> B>);

impl<B: Behaviour> ErasedKind for Kind<B> {
    fn name(&self) -> &'static str {
        B::KIND
    }

    fn event_from_json(&self, json: &str) -> Result<Vec<u8>, CodecError> {
        let event: B::Event = serde_json::from_str(json).map_err(|err| CodecError::Json {
            kind: B::KIND,
            message: err.to_string(),
        })?;
        let mut buf = Vec::new();
        encode_event::<B>(&event, &mut buf)?;
        Ok(buf)
    }

    fn check_event(&self, payload: &[u8]) -> Result<(), CodecError> {
        decode_exact::<B::Event>(B::KIND, "event", payload).map(drop)
    }

    fn new_store(&self, hash_seed: u64) -> Box<dyn KeyStore> {
        Box::new(TypedStore::<B>::new(hash_seed))
    }
}

/// Decodes `bytes` as exactly one `T`: trailing bytes are an error, because a
/// payload with extra bytes was not produced by our encoder.
pub(crate) fn decode_exact<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let binary = |message: String| CodecError::Binary {
        kind,
        what,
        message,
    };
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(binary(format!("{} trailing bytes", rest.len()))),
        Err(err) => Err(binary(err.to_string())),
    }
}

/// Most kinds a registry can hold; [`KindId`] is a `u16`.
pub const MAX_KINDS: usize = u16::MAX as usize;

/// The set of kinds a node hosts.
pub struct Registry {
    kinds: Vec<Box<dyn ErasedKind>>,
}

/// Collects kinds for a [`Registry`].
#[derive(Default)]
pub struct RegistryBuilder {
    kinds: Vec<Box<dyn ErasedKind>>,
}

impl RegistryBuilder {
    /// Adds behaviour `B` under its `KIND` name.
    pub fn kind<B: Behaviour>(mut self) -> Self {
        self.kinds.push(Box::new(Kind::<B>(PhantomData)));
        self
    }

    /// Checks names are valid and unique and freezes the set.
    pub fn build(self) -> Result<Registry, RegistryError> {
        if self.kinds.len() > MAX_KINDS {
            return Err(RegistryError::TooManyKinds { max: MAX_KINDS });
        }
        for (index, kind) in self.kinds.iter().enumerate() {
            let name = kind.name();
            if name.is_empty() || name.contains('\0') {
                return Err(RegistryError::InvalidKindName(name));
            }
            if self.kinds[..index].iter().any(|k| k.name() == name) {
                return Err(RegistryError::DuplicateKind(name));
            }
        }
        Ok(Registry { kinds: self.kinds })
    }
}

impl Registry {
    /// Starts a registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The id of kind `name`, if hosted.
    pub fn kind_id(&self, name: &str) -> Option<KindId> {
        self.kinds
            .iter()
            .position(|k| k.name() == name)
            // build() caps the count at u16::MAX, so the index fits.
            .map(|index| KindId(index as u16))
    }

    /// The name of kind `id`, or `None` for an id from another registry.
    pub fn kind_name(&self, id: KindId) -> Option<&'static str> {
        self.kinds.get(usize::from(id.0)).map(|k| k.name())
    }

    /// All hosted kinds in registration order.
    pub fn kinds(&self) -> impl Iterator<Item = (KindId, &'static str)> + '_ {
        self.kinds
            .iter()
            .enumerate()
            .map(|(index, k)| (KindId(index as u16), k.name()))
    }

    /// A fingerprint of the hosted kinds' names in registration order: nodes
    /// that share partitions must agree on it (entries name kinds by index).
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for (_, name) in self.kinds() {
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
        }
        hasher.digest()
    }

    /// Number of kinds.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Whether no kind is registered.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Parses a JSON event of kind `kind` and returns its binary payload. The
    /// error names the field serde objected to.
    pub fn event_from_json(&self, kind: KindId, json: &str) -> Result<Vec<u8>, CodecError> {
        self.erased(kind)?.event_from_json(json)
    }

    /// Checks that `payload` is exactly one event of kind `kind`.
    pub fn check_event(&self, kind: KindId, payload: &[u8]) -> Result<(), CodecError> {
        self.erased(kind)?.check_event(payload)
    }

    pub(crate) fn new_store(&self, kind: KindId, hash_seed: u64) -> Option<Box<dyn KeyStore>> {
        self.kinds
            .get(usize::from(kind.0))
            .map(|k| k.new_store(hash_seed))
    }

    fn erased(&self, kind: KindId) -> Result<&dyn ErasedKind, CodecError> {
        self.kinds
            .get(usize::from(kind.0))
            .map(|k| k.as_ref())
            .ok_or(CodecError::Json {
                kind: "?",
                message: format!("unknown kind id {}", kind.0),
            })
    }
}
