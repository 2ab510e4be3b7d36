//! A YAML document as a tree of values that remember where they were written.
//!
//! serde-saphyr parses the text (with its limits against hostile input); we keep the
//! result as a [`Node`] tree so that one document can be inspected (`apiVersion`, `kind`)
//! before it is typed, and so that every field path can be mapped back to a line and
//! column when validation finds a problem long after parsing.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A line and column in a source file, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, from 1; 0 when unknown.
    pub line: u32,
    /// Column, from 1; 0 when unknown.
    pub column: u32,
}

impl Location {
    /// Whether this location points somewhere.
    pub fn is_known(&self) -> bool {
        self.line != 0
    }

    fn from_saphyr(location: &serde_saphyr::Location) -> Self {
        Location {
            line: u32::try_from(location.line()).unwrap_or(u32::MAX),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One value of a YAML document and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub location: Location,
}

/// A mapping key: mapping keys are always text, as in Kubernetes' YAML-to-JSON conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key as text (`80:` and `"80":` are the same key).
    pub text: String,
    /// Where the key was written.
    pub location: Location,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// Text.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in the order written.
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// The name of this value's type, as Kubernetes' schema errors name it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }

    /// The text of a scalar (numbers and booleans as written in canonical form).
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::String(s) => Some(s.clone()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

impl Node {
    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes the mapping entry at `path` (as [`FieldPath`](crate::path::FieldPath) writes
    /// it) under this node; false when there is none or the path ends in a sequence element
    /// (removing one would renumber the others).
    pub fn remove_path(&mut self, path: &str) -> bool {
        let segments = path_segments(path);
        let Some((last, parents)) = segments.split_last() else {
            return false;
        };
        let mut node = self;
        for segment in parents {
            let next = match &mut node.value {
                Value::Map(entries) => entries
                    .iter_mut()
                    .find(|(k, _)| k.text == *segment)
                    .map(|(_, v)| v),
                Value::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => return false,
            }
        }
        match &mut node.value {
            Value::Map(entries) => {
                let before = entries.len();
                entries.retain(|(k, _)| k.text != *last);
                entries.len() != before
            }
            _ => false,
        }
    }

    /// The value under `key` when this node is a mapping and that value is text.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key).map(|n| &n.value) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Converts the tree to JSON (positions are dropped).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            location: Location::from_saphyr(&spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let text = match spanned.value {
            Value::Null => String::new(),
            other => other
                .scalar_text()
                .ok_or_else(|| de::Error::custom("a mapping key must be a scalar"))?,
        };
        Ok(Key {
            text,
            location: Location::from_saphyr(&spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::String(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Key, Node)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        // Duplicate keys are refused by the parser (`DuplicateKeyPolicy::Error`).
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// The keys and indices of a field path: `spec.http[0][end-user]` is `spec`, `http`, `0`,
/// `end-user` (a bracket holds an index or a key that is not an identifier).
fn path_segments(path: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').unwrap_or(inner.len());
            segments.push(&inner[..end]);
            rest = inner.get(end + 1..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segments.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(yaml: &str) -> Node {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn paths_name_fields_elements_and_bracketed_keys() {
        assert_eq!(
            path_segments("spec.http[0].headers[end-user].exact"),
            ["spec", "http", "0", "headers", "end-user", "exact"]
        );
        let mut doc = node(
            "metadata:\n  labels: {app.kubernetes.io/name: x, app: web}\nspec:\n  http:\n  - {name: a, timeout: 1s}\n",
        );
        assert!(doc.remove_path("metadata.labels[app.kubernetes.io/name]"));
        assert!(doc.remove_path("spec.http[0].timeout"));
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"metadata": {"labels": {"app": "web"}}, "spec": {"http": [{"name": "a"}]}})
        );
        // Elements are never removed (the others would be renumbered); absent paths are not.
        assert!(!doc.remove_path("spec.http[0]"));
        assert!(!doc.remove_path("spec.tcp"));
        assert!(!doc.remove_path(""));
    }
}
