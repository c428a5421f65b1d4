//! A country code stored inline: two or three ASCII letters, no allocation.
//!
//! In JSON and postcard it is a plain string (`"DE"`), so the event shape stays
//! what clients expect while the decoded event never touches the heap.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 3166 alpha-2 or alpha-3 code, upper-cased.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Country([u8; 3]);

impl Country {
    /// Parses `code`: 2 or 3 ASCII letters, any case.
    pub fn parse(code: &str) -> Option<Country> {
        let bytes = code.as_bytes();
        if !(2..=3).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let mut out = [0u8; 3];
        for (slot, byte) in out.iter_mut().zip(bytes) {
            *slot = byte.to_ascii_uppercase();
        }
        Some(Country(out))
    }

    /// The code as text; empty for the default (unknown) country.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(3);
        // Only ASCII letters are ever stored (see `parse`), so this is UTF-8.
        std::str::from_utf8(&self.0[..len]).unwrap_or("")
    }

    /// Whether this is the default, "no country seen yet".
    pub fn is_unknown(&self) -> bool {
        self.0[0] == 0
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountryVisitor;
        impl Visitor<'_> for CountryVisitor {
            type Value = Country;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a country code of 2 or 3 letters, or an empty string")
            }
            fn visit_str<E: de::Error>(self, code: &str) -> Result<Country, E> {
                if code.is_empty() {
                    return Ok(Country::default());
                }
                Country::parse(code)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(code), &self))
            }
        }
        deserializer.deserialize_str(CountryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            Country::parse("de").map(|c| c.to_string()),
            Some("DE".into())
        );
        assert_eq!(
            Country::parse("USA").map(|c| c.to_string()),
            Some("USA".into())
        );
        assert_eq!(Country::parse("D"), None);
        assert_eq!(Country::parse("DEUT"), None);
        assert_eq!(Country::parse("D1"), None);
    }

    #[test]
    fn json_and_postcard_are_a_plain_string() {
        let de = Country::parse("DE").expect("valid");
        assert_eq!(serde_json::to_string(&de).expect("json"), "\"DE\"");
        let bytes = postcard::to_stdvec(&de).expect("postcard");
        assert_eq!(bytes, vec![2, b'D', b'E']);
        assert_eq!(
            postcard::from_bytes::<Country>(&bytes).expect("decodes"),
            de
        );
        assert!(serde_json::from_str::<Country>("\"12\"").is_err());
    }
}
