//! The positioned YAML tree the config loader works on: every node and
//! every key knows the file, line and column it was written at, so any
//! error (type, unknown key, semantic check) can point at it.

use super::error::Pos;
use super::scalar::is_null;

/// One YAML node with the position where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
    /// An error about this node was already recorded (a missing variable, an
    /// unreadable include). Later errors about it would only be noise.
    pub reported: bool,
    /// Variables of this scalar that were unset and had no default, so
    /// they read as "" (SAM's reading). Named by any error about the node.
    pub unset_vars: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in source order, merge keys already applied.
    Map(Vec<Entry>),
}

/// Scalar text after `${VAR}` substitution.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Written without quotes or block style (and without `!!str`), so it is
    /// typed by the core schema: `8000` is a number, `true` a bool.
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Key,
    pub value: Node,
}

/// A mapping key. Keys are always scalars in configs; their text is never
/// substituted (a key named by the environment would defeat validation).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub pos: Pos,
}

impl Node {
    pub(super) fn new(pos: Pos, value: NodeValue) -> Self {
        Self {
            pos,
            value,
            reported: false,
            unset_vars: Vec::new(),
        }
    }

    /// Placeholder for a value whose error is already recorded.
    pub(super) fn reported_null(pos: Pos) -> Self {
        Self {
            pos,
            value: NodeValue::Scalar(Scalar {
                text: String::new(),
                plain: true,
            }),
            reported: true,
            unset_vars: Vec::new(),
        }
    }

    /// Why the value is empty, when unset variables made it so: appended to
    /// errors about this node, because the message alone ("expected a
    /// string, found an empty value") would hide the cause.
    pub fn unset_note(&self) -> Option<String> {
        let names = &self.unset_vars;
        match names.as_slice() {
            [] => None,
            [one] => Some(format!(
                "environment variable {one} is not set and \"${{{one}}}\" has no default, so it reads as empty (write \"${{{one}, default}}\" to give one)"
            )),
            many => Some(format!(
                "environment variables {} are not set and have no default, so they read as empty",
                many.join(", ")
            )),
        }
    }

    /// `key:` with nothing after it, `~` or `null`, unquoted.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, NodeValue::Scalar(s) if s.plain && is_null(&s.text))
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The entry for `key` when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key.text == key)
    }

    /// Whether this subtree holds a node whose problem was already reported.
    pub fn has_reported(&self) -> bool {
        self.reported
            || match &self.value {
                NodeValue::Scalar(_) => false,
                NodeValue::Seq(items) => items.iter().any(Node::has_reported),
                NodeValue::Map(entries) => entries.iter().any(|e| e.value.has_reported()),
            }
    }

    /// Number of nodes in this subtree (for the expansion budget).
    pub(super) fn count(&self) -> usize {
        1 + match &self.value {
            NodeValue::Scalar(_) => 0,
            NodeValue::Seq(items) => items.iter().map(Node::count).sum(),
            NodeValue::Map(entries) => entries.iter().map(|e| e.value.count()).sum(),
        }
    }
}

/// Appends `key` to a dotted key path.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
