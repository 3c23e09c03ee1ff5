//! The error type of the node deserializer, and the operator-facing text
//! that replaces serde's messages (``unknown variant `stict`, expected
//! `strict` or `permissive` `` becomes `expected "strict" or "permissive",
//! found "stict"`).

use std::fmt;

use serde::de::{self, Expected, Unexpected};

use super::error::{ConfigError, Pos};
use super::node::{Node, join_key};

/// A deserialization error; `at` is filled by the innermost node it leaves.
#[derive(Debug)]
pub struct DeError {
    message: String,
    at: Option<(Pos, String)>,
    /// About a node whose problem was already reported while building the
    /// tree (missing variable, unreadable include): dropped, not shown twice.
    reported: bool,
}

impl DeError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            at: None,
            reported: false,
        }
    }

    /// Stamps the error with `node`'s position unless a deeper node did.
    pub(super) fn locate(mut self, node: &Node, path: &str) -> Self {
        if self.at.is_none() {
            self.at = Some((node.pos.clone(), path.to_owned()));
            self.reported = node.reported;
            // serde's own "unknown key" (from a tagged enum, which buffers
            // its input) knows no position: point at the key itself.
            if let Some(entry) = self
                .message
                .strip_prefix("unknown key \"")
                .and_then(|rest| rest.split_once("\";"))
                .and_then(|(key, _)| node.get(key))
            {
                self.at = Some((entry.key.pos.clone(), join_key(path, &entry.key.text)));
            }
            if let Some(note) = node.unset_note() {
                self.message = format!("{}; {note}", self.message);
            }
        }
        self
    }

    pub(super) fn locate_key(mut self, pos: &Pos, path: &str) -> Self {
        if self.at.is_none() {
            self.at = Some((pos.clone(), path.to_owned()));
        }
        self
    }

    pub(super) fn into_config_error(self) -> Option<ConfigError> {
        if self.reported {
            return None;
        }
        let (pos, path) = self.at?;
        Some(ConfigError::at(&pos, path, self.message))
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::new(format!(
            "expected {}, found {}",
            expected_text(exp),
            unexpected_text(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Self::new(format!(
            "expected {}, found {len} items",
            expected_text(exp)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(unknown_variant_message(variant, expected))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(unknown_key_message(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(format!("missing required key {field:?}"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(format!(
            "key {field:?} is set twice (under its name and an alias)"
        ))
    }
}

/// `expected "strict" or "permissive", found "stict"`.
pub fn unknown_variant_message(variant: &str, expected: &[&str]) -> String {
    match choices_text(expected) {
        Some(choices) => format!("expected {choices}, found {variant:?}"),
        None => format!("unknown value {variant:?}"),
    }
}

/// `"a"`, `"a" or "b"`, `one of "a", "b", "c"`; `None` when there is no choice.
pub(super) fn choices_text(expected: &[&str]) -> Option<String> {
    let choices: Vec<String> = distinct_choices(expected)
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    match choices.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [a, b] => Some(format!("{a} or {b}")),
        many => Some(format!("one of {}", many.join(", "))),
    }
}

/// `unknown key "verificaton_mode"; expected one of: enabled, ...`, with a
/// suggestion at the end when one known key is a near miss.
pub fn unknown_key_message(key: &str, expected: &[&str]) -> String {
    if expected.is_empty() {
        return format!("unknown key {key:?}; this block takes no keys");
    }
    let mut message = format!(
        "unknown key {key:?}; expected one of: {}",
        expected.join(", ")
    );
    let best = expected
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .min_by_key(|(distance, _)| *distance);
    if let Some((distance, candidate)) = best
        && distance <= (key.len() / 3).max(1)
    {
        message.push_str(&format!("; did you mean {candidate:?}?"));
    }
    message
}

/// serde lists aliases with the names (`Warn`, `warn`, `WARN`...); operators
/// need each choice once, lower case where the config accepts it.
fn distinct_choices<'a>(expected: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    for &choice in expected {
        match out.iter_mut().find(|c| c.eq_ignore_ascii_case(choice)) {
            Some(existing) if !choice.chars().any(char::is_uppercase) => *existing = choice,
            Some(_) => {}
            None => out.push(choice),
        }
    }
    out
}

/// Edit distance counting a swap of neighbours as one edit (optimal
/// string alignment), for "did you mean" on unknown keys: `nmae` is one
/// edit from `name`.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// serde's names for what a visitor wanted, in config words.
fn expected_text(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    let friendly = match text.as_str() {
        "a boolean" => "a boolean (true or false)",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "path string" => "a path",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" => "an integer",
        "f32" | "f64" => "a number",
        t if t.starts_with("struct ") || t.starts_with("internally tagged enum") => "a mapping",
        _ => return text,
    };
    friendly.to_owned()
}

fn unexpected_text(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Str(s) => format!("{s:?}"),
        Unexpected::Bool(b) => b.to_string(),
        Unexpected::Unsigned(n) => n.to_string(),
        Unexpected::Signed(n) => n.to_string(),
        Unexpected::Float(f) => f.to_string(),
        Unexpected::Unit | Unexpected::Option => "an empty value".to_owned(),
        Unexpected::Map => "a mapping".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("verificaton_mode", "verification_mode"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn choices_read_as_a_sentence() {
        assert_eq!(unknown_variant_message("x", &[]), "unknown value \"x\"");
        assert_eq!(
            unknown_variant_message("x", &["a"]),
            "expected \"a\", found \"x\""
        );
        assert_eq!(
            unknown_variant_message("x", &["A", "a", "b", "c"]),
            "expected one of \"a\", \"b\", \"c\", found \"x\""
        );
    }

    #[test]
    fn unknown_key_suggests_only_near_misses() {
        assert_eq!(
            unknown_key_message("colour", &["color", "size"]),
            "unknown key \"colour\"; expected one of: color, size; did you mean \"color\"?"
        );
        assert_eq!(
            unknown_key_message("weight", &["color", "size"]),
            "unknown key \"weight\"; expected one of: color, size"
        );
        assert_eq!(
            unknown_key_message("x", &[]),
            "unknown key \"x\"; this block takes no keys"
        );
    }
}
