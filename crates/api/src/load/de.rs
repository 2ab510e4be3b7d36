//! A serde `Deserializer` over a [`Node`] tree.
//!
//! Typing a document through this deserializer (rather than straight from the text) is
//! what lets every error carry the field path (`spec.http[0].route[1].destination`) and
//! the line and column of the offending value, and lets unknown fields be refused with a
//! "did you mean" hint for every struct, including the Kubernetes types we do not own.

use std::fmt::{self, Write as _};

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::node::{Key, Location, Node, Value};
use crate::path::{FieldPath, closest_match};

/// How an explicit `null` is read where an optional value is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nulls {
    /// As Kubernetes' built-in types do: `null` is the same as absent.
    AsAbsent,
    /// As Kubernetes does for custom resources (Istio's): `null` is a type error.
    Refused,
}

/// A link in the path from the document root to the node being read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PathLink<'p> {
    Root,
    Field(&'p PathLink<'p>, &'p str),
    Index(&'p PathLink<'p>, usize),
}

impl PathLink<'_> {
    pub(crate) fn to_field_path(self) -> FieldPath {
        let mut segments = Vec::new();
        let mut link = self;
        loop {
            match link {
                PathLink::Root => break,
                PathLink::Field(parent, name) => {
                    segments.push(Segment::Field(name));
                    link = *parent;
                }
                PathLink::Index(parent, index) => {
                    segments.push(Segment::Index(index));
                    link = *parent;
                }
            }
        }
        let mut path = FieldPath::root();
        for segment in segments.into_iter().rev() {
            path = match segment {
                Segment::Field(name) => path.key(name),
                Segment::Index(index) => path.index(index),
            };
        }
        path
    }
}

enum Segment<'p> {
    Field(&'p str),
    Index(usize),
}

/// A problem found while typing a document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeError {
    message: String,
    path: Option<FieldPath>,
    location: Option<Location>,
    /// Set by `missing_field`: the path gets this field appended once it is known.
    missing_field: Option<&'static str>,
}

impl DeError {
    fn new(message: String) -> Self {
        DeError {
            message,
            path: None,
            location: None,
            missing_field: None,
        }
    }

    fn at_node(message: String, node: &Node, path: PathLink<'_>) -> Self {
        DeError {
            message,
            path: Some(path.to_field_path()),
            location: Some(node.location),
            missing_field: None,
        }
    }

    /// Gives the error the path and location of `node` unless a deeper one already did.
    fn attach(mut self, node: &Node, path: PathLink<'_>) -> Self {
        if self.path.is_none() {
            let mut field_path = path.to_field_path();
            if let Some(field) = self.missing_field.take() {
                field_path = field_path.key(field);
            }
            self.path = Some(field_path);
            self.location = Some(node.location);
        }
        self
    }

    /// The human-readable message, without path or location.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The field path of the offending value (`spec.hosts[0]`), if known.
    pub(crate) fn path(&self) -> Option<&FieldPath> {
        self.path.as_ref()
    }

    /// Where the offending value was written, if known.
    pub(crate) fn location(&self) -> Option<Location> {
        self.location
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) if !path.is_root() => write!(f, "{path}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(unsupported_value(variant, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        let mut error = DeError::new("Required value".to_owned());
        error.missing_field = Some(field);
        error
    }
}

/// `Unsupported value: "BLAH": supported values: "A", "B"` (Kubernetes' wording), with a hint.
pub(crate) fn unsupported_value(value: &str, expected: &[&str]) -> String {
    let mut message = format!("Unsupported value: \"{value}\"");
    if !expected.is_empty() {
        message.push_str(": supported values: ");
        for (i, name) in expected.iter().enumerate() {
            if i > 0 {
                message.push_str(", ");
            }
            let _ = write!(message, "\"{name}\"");
        }
    }
    if let Some(hint) = closest_match(value, expected.iter().copied()) {
        let _ = write!(message, " (did you mean \"{hint}\"?)");
    }
    message
}

/// Reads `T` from `node`, the root of a document.
pub(crate) fn from_node<T: de::DeserializeOwned>(node: &Node, nulls: Nulls) -> Result<T, DeError> {
    let root = PathLink::Root;
    T::deserialize(NodeDeserializer {
        node,
        path: &root,
        nulls,
    })
    .map_err(|e| e.attach(node, root))
}

/// A deserializer reading one node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeDeserializer<'de, 'p> {
    node: &'de Node,
    path: &'p PathLink<'p>,
    nulls: Nulls,
}

impl<'de> NodeDeserializer<'de, '_> {
    fn type_error(&self, expected: &str) -> DeError {
        DeError::at_node(
            format!(
                "must be of type {expected}: \"{}\"",
                self.node.value.type_name()
            ),
            self.node,
            *self.path,
        )
    }

    fn finish<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|e| e.attach(self.node, *self.path))
    }

    fn integer(&self) -> Result<i128, DeError> {
        match &self.node.value {
            Value::Int(i) => Ok(i128::from(*i)),
            // Protobuf's JSON mapping allows 64-bit integers to be written as strings.
            Value::String(s) => s.trim().parse::<i128>().map_err(|_| {
                DeError::at_node(
                    format!("type conversion error from string \"{s}\" to integer"),
                    self.node,
                    *self.path,
                )
            }),
            _ => Err(self.type_error("integer")),
        }
    }

    fn visit_integer<V: Visitor<'de>>(&self, visitor: V) -> Result<V::Value, DeError> {
        let value = self.integer()?;
        let result = match i64::try_from(value) {
            Ok(v) => visitor.visit_i64(v),
            Err(_) => visitor.visit_i128(value),
        };
        self.finish(result)
    }
}

impl<'de> Deserializer<'de> for NodeDeserializer<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(NodeSeqAccess::new(self, items)),
            Value::Map(entries) => visitor.visit_map(NodeMapAccess::new(self, entries)),
        };
        self.finish(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Bool(b) => self.finish(visitor.visit_bool(*b)),
            _ => Err(self.type_error("boolean")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_integer(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = match &self.node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => return Err(self.type_error("number")),
        };
        self.finish(visitor.visit_f64(value))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => self.finish(visitor.visit_borrowed_str(s)),
            // In a flow sequence, YAML 1.2 reads `[001:db8::]` as the one-pair mapping
            // `{"001:db8:": null}`; the YAML 1.1 reader Kubernetes uses reads the string
            // `001:db8::`. Istio users write IPv6 addresses this way, so read it as they mean it.
            Value::Map(entries) => match entries.as_slice() {
                [(key, value)] if value.value == Value::Null && key.text.ends_with(':') => {
                    self.finish(visitor.visit_string(format!("{}:", key.text)))
                }
                _ => Err(self.type_error("string")),
            },
            _ => Err(self.type_error("string")),
        }
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
        match (&self.node.value, self.nulls) {
            (Value::Null, Nulls::AsAbsent) => self.finish(visitor.visit_none()),
            // With `Nulls::Refused` the inner type reports `must be of type …: "null"`.
            _ => self.finish(visitor.visit_some(self)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => self.finish(visitor.visit_unit()),
            _ => Err(self.type_error("null")),
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
        self.finish(visitor.visit_newtype_struct(self))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => self.finish(visitor.visit_seq(NodeSeqAccess::new(self, items))),
            _ => Err(self.type_error("array")),
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
            Value::Map(entries) => {
                self.finish(visitor.visit_map(NodeMapAccess::new(self, entries)))
            }
            _ => Err(self.type_error("object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Value::Map(entries) = &self.node.value else {
            return Err(self.type_error("object"));
        };
        if let Some((key, _)) = entries
            .iter()
            .find(|(key, _)| !fields.contains(&key.text.as_str()))
        {
            return Err(unknown_field(key, fields, *self.path));
        }
        self.finish(visitor.visit_map(NodeMapAccess::new(self, entries)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(_) => self.finish(visitor.visit_enum(self)),
            Value::Map(entries) if entries.len() == 1 => self.finish(visitor.visit_enum(self)),
            Value::Map(entries) => Err(DeError::at_node(
                format!(
                    "exactly one field must be set, found {}",
                    if entries.is_empty() {
                        "none".to_owned()
                    } else {
                        entries
                            .iter()
                            .map(|(k, _)| format!("\"{}\"", k.text))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                self.node,
                *self.path,
            )),
            _ => Err(self.type_error("string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

fn unknown_field(key: &Key, fields: &[&str], parent: PathLink<'_>) -> DeError {
    let mut message = format!("unknown field \"{}\"", key.text);
    if let Some(hint) = closest_match(&key.text, fields.iter().copied()) {
        let _ = write!(message, ", did you mean \"{hint}\"?");
    }
    DeError {
        message,
        path: Some(parent.to_field_path().key(&key.text)),
        location: Some(key.location),
        missing_field: None,
    }
}

impl<'de, 'p> EnumAccess<'de> for NodeDeserializer<'de, 'p> {
    type Error = DeError;
    type Variant = NodeVariant<'de, 'p>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), DeError> {
        match &self.node.value {
            Value::String(s) => {
                let de: de::value::BorrowedStrDeserializer<'de, DeError> =
                    de::value::BorrowedStrDeserializer::new(s);
                let variant = seed.deserialize(de)?;
                Ok((
                    variant,
                    NodeVariant {
                        outer: self,
                        content: None,
                    },
                ))
            }
            Value::Map(entries) => match entries.first() {
                Some((key, value)) => {
                    let de: de::value::BorrowedStrDeserializer<'de, DeError> =
                        de::value::BorrowedStrDeserializer::new(&key.text);
                    let variant = seed.deserialize(de).map_err(|e| DeError {
                        location: Some(key.location),
                        ..e
                    })?;
                    Ok((
                        variant,
                        NodeVariant {
                            outer: self,
                            content: Some((key, value)),
                        },
                    ))
                }
                None => Err(self.type_error("object with one field")),
            },
            _ => Err(self.type_error("string")),
        }
    }
}

/// The content of an enum variant: nothing for `VARIANT`, a value for `{variant: value}`.
#[derive(Debug)]
pub(crate) struct NodeVariant<'de, 'p> {
    outer: NodeDeserializer<'de, 'p>,
    content: Option<(&'de Key, &'de Node)>,
}

impl<'de> NodeVariant<'de, '_> {
    fn with_content<T>(
        self,
        read: impl for<'q> FnOnce(NodeDeserializer<'de, 'q>) -> Result<T, DeError>,
    ) -> Result<T, DeError> {
        let Some((key, value)) = self.content else {
            return Err(self.outer.type_error("object"));
        };
        let link = PathLink::Field(self.outer.path, &key.text);
        read(NodeDeserializer {
            node: value,
            path: &link,
            nulls: self.outer.nulls,
        })
        .map_err(|e| e.attach(value, link))
    }
}

impl<'de> VariantAccess<'de> for NodeVariant<'de, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some((_, value)) if value.value == Value::Null => Ok(()),
            Some(_) => self.with_content(|de| de.deserialize_unit(de::IgnoredAny).map(|_| ())),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        self.with_content(|de| seed.deserialize(de))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.with_content(|de| de.deserialize_seq(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.with_content(|de| de.deserialize_struct("", fields, visitor))
    }
}

struct NodeSeqAccess<'de, 'p> {
    parent: NodeDeserializer<'de, 'p>,
    items: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
}

impl<'de, 'p> NodeSeqAccess<'de, 'p> {
    fn new(parent: NodeDeserializer<'de, 'p>, items: &'de [Node]) -> Self {
        NodeSeqAccess {
            parent,
            items: items.iter().enumerate(),
        }
    }
}

impl<'de> SeqAccess<'de> for NodeSeqAccess<'de, '_> {
    type Error = DeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let link = PathLink::Index(self.parent.path, index);
        seed.deserialize(NodeDeserializer {
            node,
            path: &link,
            nulls: self.parent.nulls,
        })
        .map(Some)
        .map_err(|e| e.attach(node, link))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct NodeMapAccess<'de, 'p> {
    parent: NodeDeserializer<'de, 'p>,
    entries: std::slice::Iter<'de, (Key, Node)>,
    current: Option<&'de (Key, Node)>,
}

impl<'de, 'p> NodeMapAccess<'de, 'p> {
    fn new(parent: NodeDeserializer<'de, 'p>, entries: &'de [(Key, Node)]) -> Self {
        NodeMapAccess {
            parent,
            entries: entries.iter(),
            current: None,
        }
    }
}

impl<'de> MapAccess<'de> for NodeMapAccess<'de, '_> {
    type Error = DeError;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let (key, _) = entry;
        let link = PathLink::Field(self.parent.path, &key.text);
        seed.deserialize(KeyDeserializer { key })
            .map(Some)
            .map_err(|e| DeError {
                path: e.path.clone().or_else(|| Some(link.to_field_path())),
                location: e.location.or(Some(key.location)),
                ..e
            })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let Some((key, node)) = self.current.take() else {
            return Err(DeError::new("value requested before key".to_owned()));
        };
        let link = PathLink::Field(self.parent.path, &key.text);
        seed.deserialize(NodeDeserializer {
            node,
            path: &link,
            nulls: self.parent.nulls,
        })
        .map_err(|e| e.attach(node, link))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Reads a mapping key: text, or a number when the map is keyed by numbers (ports).
struct KeyDeserializer<'de> {
    key: &'de Key,
}

impl KeyDeserializer<'_> {
    fn integer(&self) -> Result<i128, DeError> {
        self.key.text.parse::<i128>().map_err(|_| {
            DeError::new(format!(
                "type conversion error from string \"{}\" to integer",
                self.key.text
            ))
        })
    }
}

macro_rules! key_integer {
    ($($method:ident => $visit:ident as $ty:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let value = self.integer()?;
                let narrowed = <$ty>::try_from(value).map_err(|_| {
                    DeError::new(format!("integer {value} is out of range"))
                })?;
                visitor.$visit(narrowed)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for KeyDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(&self.key.text)
    }

    key_integer! {
        deserialize_i8 => visit_i8 as i8,
        deserialize_i16 => visit_i16 as i16,
        deserialize_i32 => visit_i32 as i32,
        deserialize_i64 => visit_i64 as i64,
        deserialize_u8 => visit_u8 as u8,
        deserialize_u16 => visit_u16 as u16,
        deserialize_u32 => visit_u32 as u32,
        deserialize_u64 => visit_u64 as u64,
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let de: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(&self.key.text);
        visitor.visit_enum(de)
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}
