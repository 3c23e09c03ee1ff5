//! A `serde::Deserializer` over the positioned YAML tree.
//!
//! Deserializing straight from [`Node`]s (instead of via a generic value)
//! means every error knows the exact node it is about: the error leaves the
//! node's deserializer and is stamped with that node's position and key
//! path on the way out. serde's own messages (``unknown variant `stict` ``)
//! are rewritten into operator text (`expected "strict" or "permissive",
//! found "stict"`) by implementing `serde::de::Error`'s constructors.
//!
//! Typing follows the YAML 1.2 core schema for plain scalars, with one
//! deliberate kindness: a string field accepts any scalar as its text, so
//! `broker_password: 1234` is the password "1234" rather than a type error.

use std::cell::RefCell;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::de_error::{DeError, choices_text, unknown_key_message};
use super::error::ConfigError;
use super::node::{Entry, Node, NodeValue, Scalar, join_key};
use super::scalar::{Plain, is_null, parse_bool, parse_float, parse_int, resolve_plain};

/// Deserializes `node` (found at key path `path`) into `T`, with every
/// error found: all unknown keys of every struct, plus the first type error
/// (serde cannot go on after one). Unknown keys are skipped, so the value
/// can still be `Some` next to errors, and later checks can run on it.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> (Option<T>, Vec<ConfigError>) {
    from_node_warn(node, path, &mut Vec::new())
}

/// [`from_node`], adding a warning to `warnings` for every SAM key amesh
/// ignores (see `sam.rs`).
pub fn from_node_warn<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    warnings: &mut Vec<ConfigError>,
) -> (Option<T>, Vec<ConfigError>) {
    let sink = Sink::default();
    let result = T::deserialize(NodeDe {
        node,
        path: path.to_owned(),
        unknown_keys: &sink,
    });
    warnings.append(&mut sink.warnings.into_inner());
    let mut errors = sink.errors.into_inner();
    match result {
        Ok(value) => (Some(value), errors),
        Err(e) => {
            errors.extend(e.locate(node, path).into_config_error());
            (None, errors)
        }
    }
}

/// Problems found on the way that do not stop typing: unknown keys and
/// empty required values (errors), ignored SAM keys (warnings).
#[derive(Default)]
struct Sink {
    errors: RefCell<Vec<ConfigError>>,
    warnings: RefCell<Vec<ConfigError>>,
}

/// Deserializer for one node. Created only where the error it may return
/// is stamped with this node's position (map values, list items, the root).
struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    /// Unknown keys of structs, reported all at once instead of stopping.
    unknown_keys: &'a Sink,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node, path: String) -> NodeDe<'a> {
        NodeDe {
            node,
            path,
            unknown_keys: self.unknown_keys,
        }
    }

    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.value {
            NodeValue::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.node.is_null()
    }

    /// How the node reads in a "found ..." message.
    fn found(&self) -> String {
        match &self.node.value {
            NodeValue::Scalar(s) if s.plain && s.text.is_empty() => "an empty value".to_owned(),
            NodeValue::Scalar(s) => format!("{:?}", s.text),
            NodeValue::Seq(_) => "a list".to_owned(),
            NodeValue::Map(_) => "a mapping".to_owned(),
        }
    }

    /// `expected {what}, found ...`; when the value is quoted but would fit
    /// without quotes, says so, because that is the likely fix.
    fn mismatch(&self, what: &str, fits_unquoted: fn(&str) -> bool) -> DeError {
        let mut message = format!("expected {what}, found {}", self.found());
        if let Some(s) = self.scalar()
            && !s.plain
            && fits_unquoted(&s.text)
        {
            message.push_str(" (a quoted value is a string; write it without quotes)");
        }
        DeError::new(message)
    }

    /// The plain scalar text, or a type error naming `what`.
    fn plain_text(&self, what: &str, fits: fn(&str) -> bool) -> Result<&'a str, DeError> {
        match self.scalar() {
            Some(s) if s.plain => Ok(&s.text),
            _ => Err(self.mismatch(what, fits)),
        }
    }

    fn int_in(&self, min: i128, max: i128) -> Result<i128, DeError> {
        let fits = |t: &str| parse_int(t).is_some();
        let text = self.plain_text("an integer", fits)?;
        match parse_int(text) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(n) => Err(DeError::new(format!(
                "expected an integer between {min} and {max}, found {n}"
            ))),
            None => Err(self.mismatch("an integer", fits)),
        }
    }

    fn float(&self) -> Result<f64, DeError> {
        let fits = |t: &str| parse_float(t).is_some() || parse_int(t).is_some();
        let text = self.plain_text("a number", fits)?;
        #[allow(clippy::cast_precision_loss)] // config numbers are far below 2^52
        let value = parse_float(text).or_else(|| parse_int(text).map(|i| i as f64));
        value.ok_or_else(|| self.mismatch("a number", fits))
    }

    /// Any scalar as its text: string fields take `1234` as "1234".
    fn text(&self) -> Result<&'a str, DeError> {
        match self.scalar() {
            Some(s) if !(s.plain && is_null(&s.text)) => Ok(&s.text),
            _ => Err(self.mismatch("a string", |_| false)),
        }
    }

    fn map_de(&self, entries: Vec<&'a Entry>) -> MapDe<'a> {
        MapDe {
            entries: entries.into_iter(),
            current: None,
            path: self.path.clone(),
            unknown_keys: self.unknown_keys,
        }
    }

    fn seq_de(&self, items: &'a [Node]) -> SeqDe<'a> {
        SeqDe {
            items: items.iter().enumerate(),
            path: self.path.clone(),
            unknown_keys: self.unknown_keys,
        }
    }
}

macro_rules! deserialize_int {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let n = self.int_in(i128::from(<$ty>::MIN), i128::from(<$ty>::MAX))?;
            let n = <$ty>::try_from(n).map_err(|e| DeError::new(e.to_string()))?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    /// Self-describing use (`serde_json::Value`, tagged enums): plain
    /// scalars are typed by the core schema, quoted ones stay strings.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Plain::Null => visitor.visit_unit(),
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::Int(i) => {
                    if let Ok(u) = u64::try_from(i) {
                        visitor.visit_u64(u)
                    } else if let Ok(s) = i64::try_from(i) {
                        visitor.visit_i64(s)
                    } else {
                        visitor.visit_str(&s.text)
                    }
                }
                Plain::Float(f) => visitor.visit_f64(f),
                Plain::Str(text) => visitor.visit_str(text),
            },
            NodeValue::Scalar(s) => visitor.visit_str(&s.text),
            NodeValue::Seq(items) => visitor.visit_seq(self.seq_de(items)),
            NodeValue::Map(entries) => visitor.visit_map(self.map_de(entries.iter().collect())),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let fits = |t: &str| parse_bool(t).is_some();
        let what = "a boolean (true or false)";
        let text = self.plain_text(what, fits)?;
        match parse_bool(text) {
            Some(b) => visitor.visit_bool(b),
            None => Err(self.mismatch(what, fits)),
        }
    }

    deserialize_int! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = self.text()?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(self.mismatch("a single character", |_| false)),
        }
    }

    /// A node whose problem is already reported (missing variable) reads as
    /// "" so typing goes on and finds the app's other errors.
    ///
    /// An unset variable that emptied a string amesh needs is recorded (it
    /// names the variable) and read as "", for the same reason.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.reported {
            return visitor.visit_str("");
        }
        if !self.node.unset_vars.is_empty() && self.is_null() {
            let error = DeError::new("a value is required here").locate(self.node, &self.path);
            self.unknown_keys
                .errors
                .borrow_mut()
                .extend(error.into_config_error());
            return visitor.visit_str("");
        }
        visitor.visit_str(self.text()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.mismatch("an empty value", |_| false))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// A list; an empty value (`tools:` with every item commented out) is
    /// an empty list.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Seq(items) => visitor.visit_seq(self.seq_de(items)),
            _ if self.is_null() => visitor.visit_seq(self.seq_de(&[])),
            _ => Err(self.mismatch("a list", |_| false)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Map(entries) => visitor.visit_map(self.map_de(entries.iter().collect())),
            _ if self.is_null() => visitor.visit_map(self.map_de(Vec::new())),
            _ => Err(self.mismatch("a mapping", |_| false)),
        }
    }

    /// Every config struct denies unknown keys (see `model.rs`), so keys
    /// outside `fields` are recorded here, all of them, and skipped; serde
    /// alone would stop at the first. An empty value is an empty block.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let entries = match &self.node.value {
            NodeValue::Map(entries) => entries.as_slice(),
            _ if self.is_null() => &[],
            _ => return Err(self.mismatch("a mapping", |_| false)),
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            if fields.contains(&entry.key.text.as_str()) {
                known.push(entry);
            } else if super::sam::ignored_key(name, &entry.key.text) {
                self.unknown_keys
                    .warnings
                    .borrow_mut()
                    .push(ConfigError::at(
                        &entry.key.pos,
                        join_key(&self.path, &entry.key.text),
                        super::sam::ignored_message(&entry.key.text),
                    ));
            } else {
                let mut message = unknown_key_message(&entry.key.text, fields);
                if !message.contains("did you mean")
                    && let Some(near) = super::sam::near_ignored_key(name, &entry.key.text)
                {
                    message.push_str(&format!(
                        "; did you mean {near:?} (a Solace Agent Mesh setting amesh ignores)?"
                    ));
                }
                self.unknown_keys.errors.borrow_mut().push(ConfigError::at(
                    &entry.key.pos,
                    join_key(&self.path, &entry.key.text),
                    message,
                ));
            }
        }
        visitor.visit_map(self.map_de(known))
    }

    /// `mode: strict` (unit variant) or `{variant: value}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Scalar(s) if !self.is_null() => visitor.visit_enum(UnitEnum(&s.text)),
            NodeValue::Map(entries) if entries.len() == 1 => {
                let entry = &entries[0];
                let path = join_key(&self.path, &entry.key.text);
                let value = self.child(&entry.value, path);
                visitor.visit_enum(MapEnum { entry, value })
            }
            _ => {
                let choices = choices_text(variants).unwrap_or_else(|| "a value".to_owned());
                Err(DeError::new(format!(
                    "expected {choices}, found {}",
                    self.found()
                )))
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Mapping entries; errors are stamped with the key's or the value's position.
struct MapDe<'a> {
    entries: std::vec::IntoIter<&'a Entry>,
    current: Option<&'a Entry>,
    path: String,
    unknown_keys: &'a Sink,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let key: de::value::StrDeserializer<'_, DeError> =
            entry.key.text.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.locate_key(&entry.key.pos, &join_key(&self.path, &entry.key.text)))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let Some(entry) = self.current.take() else {
            return Err(DeError::new(
                "internal error: value requested before its key",
            ));
        };
        let path = join_key(&self.path, &entry.key.text);
        let de = NodeDe {
            node: &entry.value,
            path: path.clone(),
            unknown_keys: self.unknown_keys,
        };
        seed.deserialize(de)
            .map_err(|e| e.locate(&entry.value, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// List items; errors are stamped with the item's position and `path[i]`.
struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: String,
    unknown_keys: &'a Sink,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.path);
        let de = NodeDe {
            node,
            path: path.clone(),
            unknown_keys: self.unknown_keys,
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.locate(node, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An enum written as a bare scalar: a unit variant.
struct UnitEnum<'a>(&'a str);

impl<'de> EnumAccess<'de> for UnitEnum<'_> {
    type Error = DeError;
    type Variant = UnitOnly;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, UnitOnly), DeError> {
        let de: de::value::StrDeserializer<'_, DeError> = self.0.into_deserializer();
        Ok((seed.deserialize(de)?, UnitOnly))
    }
}

struct UnitOnly;

impl<'de> VariantAccess<'de> for UnitOnly {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> Result<S::Value, DeError> {
        Err(DeError::new(
            "this value needs settings: write it as `name: {...}`",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(DeError::new(
            "this value needs a list: write it as `name: [...]`",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(DeError::new(
            "this value needs settings: write it as `name: {...}`",
        ))
    }
}

/// An enum written as a one-key mapping `{variant: value}`.
struct MapEnum<'a> {
    entry: &'a Entry,
    value: NodeDe<'a>,
}

impl<'de, 'a> EnumAccess<'de> for MapEnum<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, NodeDe<'a>), DeError> {
        let key: de::value::StrDeserializer<'_, DeError> =
            self.entry.key.text.as_str().into_deserializer();
        let variant = seed
            .deserialize(key)
            .map_err(|e| e.locate_key(&self.entry.key.pos, &self.value.path))?;
        Ok((variant, self.value))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        if self.is_null() {
            Ok(())
        } else {
            Err(self
                .mismatch("an empty value", |_| false)
                .locate(self.node, &self.path))
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        seed.deserialize(self).map_err(|e| e.locate(node, &path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        de::Deserializer::deserialize_seq(self, visitor).map_err(|e| e.locate(node, &path))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
            .map_err(|e| e.locate(node, &path))
    }
}

#[cfg(test)]
#[path = "de_tests.rs"]
mod tests;
