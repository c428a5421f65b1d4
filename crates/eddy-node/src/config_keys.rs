//! The names of the configuration keys, for errors that say the fix: every
//! key [`NodeConfig`](crate::NodeConfig) accepts, the known key nearest to a
//! typo ("did you mean `replication_factor`?"), and the line of a file a key
//! was written on.
//!
//! The names come from serde's own list of the struct's fields, not from
//! serializing the defaults: TOML leaves out a field whose default is `None`
//! (`data_dir`), which once made `EDDY_DATA_DIR` look unknown and silently
//! ignored.

use serde::de::{self, Deserialize, Visitor};

/// Every key of `T`, as serde names them.
pub fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = FieldProbe(&[]);
    // The probe fails every deserialization on purpose; it only records the
    // field list the derived impl hands to `deserialize_struct`.
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// A deserializer that records the field names of the struct asked for.
struct FieldProbe(&'static [&'static str]);

impl<'de> de::Deserializer<'de> for &mut FieldProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only field names are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("only field names are probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Levenshtein distance: single-character insertions, deletions and
/// substitutions turning `a` into `b`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The known key nearest to `typo`, if it is near enough to be what was
/// meant: a third of the key's length in edits (at least one, at most three),
/// so `tikc_ms` finds `tick_ms` but `bin` finds nothing.
pub fn nearest<'k>(typo: &str, known: &[&'k str]) -> Option<&'k str> {
    let typo = typo.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|key| (edit_distance(&typo, key), *key))
        .filter(|(distance, key)| *distance <= (key.len() / 3).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// The 1-based line of `text` on which top-level `key` is set (`key = …`)
/// or opened as a table (`[key]`).
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let unquoted = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            let quoted = line
                .strip_prefix(&format!("\"{key}\""))
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            let table = line.strip_prefix('[').is_some_and(|rest| {
                rest.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(']'))
            });
            unquoted || quoted || table
        })
        .map(|index| index + 1)
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("replicaton_factor", "replication_factor"), 1);
        assert_eq!(edit_distance("tikc_ms", "tick_ms"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn nearest_suggests_close_keys_only() {
        let known = ["replication_factor", "tick_ms", "name", "data_dir"];
        assert_eq!(
            nearest("replicaton_factor", &known),
            Some("replication_factor")
        );
        assert_eq!(
            nearest("replication-factor", &known),
            Some("replication_factor")
        );
        assert_eq!(nearest("tikc_ms", &known), Some("tick_ms"));
        assert_eq!(nearest("DATA_DIR", &known), Some("data_dir"));
        assert_eq!(nearest("bin", &known), None);
        assert_eq!(nearest("bench_keys", &known), None);
    }

    #[test]
    fn fields_include_optional_ones() {
        let fields = fields_of::<crate::NodeConfig>();
        assert!(fields.contains(&"data_dir"), "{fields:?}");
        assert!(fields.contains(&"replication_factor"), "{fields:?}");
    }

    #[test]
    fn lines_of_keys_and_offsets() {
        let text = "# a comment naming tick_ms = 1\nname = \"a\"\n  tick_ms=5\n[seeds]\n";
        assert_eq!(line_of(text, "tick_ms"), Some(3));
        assert_eq!(line_of(text, "name"), Some(2));
        assert_eq!(line_of(text, "seeds"), Some(4));
        assert_eq!(line_of(text, "partitions"), None);
        assert_eq!(line_at(text, 0), 1);
        assert_eq!(line_at(text, text.find("tick_ms=5").unwrap_or(0)), 3);
    }
}
