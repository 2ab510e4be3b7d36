//! What a consumer of Envoy configuration implements, and the check that refuses the rest.
//!
//! Envoy's API is vast; silently ignoring a field someone set is how configuration lies. A
//! [`Support`] lists, per message type, the fields the consumer reads, and the extension types
//! (`@type` of `typed_config`) it accepts. Anything else set to a non-default value is an error
//! naming the field.

use std::collections::{HashMap, HashSet};

use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value};

use crate::descriptors;

/// A message type's fields that are read.
#[derive(Clone, Copy, Debug)]
pub enum Fields {
    /// These fields (proto names); nested messages are checked in turn.
    Only(&'static [&'static str]),
    /// The whole message and everything under it (informational data such as `Node`).
    Opaque,
}

/// A field or extension the consumer does not implement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {what} is not supported by {consumer}")]
pub struct SupportError {
    /// Where, `static_resources.clusters[0].health_checks`.
    pub path: String,
    /// What, `field "health_checks" of envoy.config.cluster.v3.Cluster`.
    pub what: String,
    /// Who refuses it, `bosun proxy`.
    pub consumer: &'static str,
}

/// The fields and extensions a consumer implements.
#[derive(Clone, Debug)]
pub struct Support {
    consumer: &'static str,
    messages: HashMap<&'static str, Fields>,
    extensions: HashSet<&'static str>,
}

impl Support {
    /// A support table: `messages` maps full message names to their read fields, `extensions`
    /// lists the full message names accepted inside `Any`.
    pub fn new(
        consumer: &'static str,
        messages: &[(&'static str, Fields)],
        extensions: &[&'static str],
    ) -> Self {
        Support {
            consumer,
            messages: messages.iter().copied().collect(),
            extensions: extensions.iter().copied().collect(),
        }
    }

    /// Whether `full_name` may appear inside an `Any`.
    pub fn accepts_extension(&self, full_name: &str) -> bool {
        self.extensions.contains(full_name)
    }

    /// Checks every set field of `message` (at `path`) and below.
    pub fn check(&self, message: &DynamicMessage, path: &str) -> Result<(), SupportError> {
        let desc = message.descriptor();
        let name = desc.full_name();
        if name.starts_with("google.protobuf.") && name != "google.protobuf.Any" {
            return Ok(());
        }
        if name == "google.protobuf.Any" {
            return self.check_any(message, path);
        }
        let fields = match self.messages.get(name) {
            Some(Fields::Opaque) => return Ok(()),
            Some(Fields::Only(fields)) => *fields,
            None => {
                return Err(self.error(path, format!("message {name}")));
            }
        };
        for (field, value) in message.fields() {
            let field_path = join(path, field.name());
            if !fields.contains(&field.name()) {
                return Err(
                    self.error(&field_path, format!("field \"{}\" of {name}", field.name()))
                );
            }
            self.check_value(value, &field_path)?;
        }
        Ok(())
    }

    fn check_value(&self, value: &Value, path: &str) -> Result<(), SupportError> {
        match value {
            Value::Message(inner) => self.check(inner, path),
            Value::List(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| self.check_value(item, &format!("{path}[{i}]"))),
            Value::Map(entries) => entries.iter().try_for_each(|(key, item)| {
                let key = match key {
                    MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                self.check_value(item, &format!("{path}[{key}]"))
            }),
            _ => Ok(()),
        }
    }

    fn check_any(&self, any: &DynamicMessage, path: &str) -> Result<(), SupportError> {
        let type_url = match any.get_field_by_name("type_url").as_deref() {
            Some(Value::String(url)) => url.clone(),
            _ => String::new(),
        };
        let full_name = type_url
            .rsplit_once('/')
            .map_or(type_url.as_str(), |(_, n)| n);
        if !self.extensions.contains(full_name) {
            return Err(self.error(path, format!("extension {type_url}")));
        }
        let Some(desc) = descriptors::message(full_name) else {
            return Err(self.error(path, format!("extension {type_url} (unknown type)")));
        };
        let bytes = match any.get_field_by_name("value").as_deref() {
            Some(Value::Bytes(bytes)) => bytes.clone(),
            _ => Default::default(),
        };
        let payload = DynamicMessage::decode(desc, bytes).map_err(|e| SupportError {
            path: path.to_owned(),
            what: format!("undecodable {type_url} ({e})"),
            consumer: self.consumer,
        })?;
        self.check(&payload, path)
    }

    fn error(&self, path: &str, what: String) -> SupportError {
        SupportError {
            path: if path.is_empty() {
                "(root)".to_owned()
            } else {
                path.to_owned()
            },
            what,
            consumer: self.consumer,
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}
