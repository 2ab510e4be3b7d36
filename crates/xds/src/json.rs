//! Envoy configuration in YAML or JSON (the proto3 JSON mapping, as Envoy reads it) into the
//! typed protobuf messages, with the field path and line of every error.

use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};

use crate::descriptors;
use crate::support::{Support, SupportError};

/// Why configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid YAML/JSON, or does not fit the message's schema.
    #[error("{}{}{message}", location.map(|(l, c)| format!("{l}:{c}: ")).unwrap_or_default(), if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Invalid {
        /// Line and column, when known.
        location: Option<(u64, u64)>,
        /// The field path (`static_resources.clusters[0].connect_timeout`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The message type is not among the compiled descriptors.
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The configuration uses something the consumer does not implement.
    #[error(transparent)]
    Unsupported(#[from] SupportError),
    /// The reflected message could not be turned into the typed one.
    #[error("decoding {type_name}: {source}")]
    Decode {
        /// The message type.
        type_name: String,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
}

fn descriptor(full_name: &str) -> Result<MessageDescriptor, ConfigError> {
    descriptors::message(full_name).ok_or_else(|| ConfigError::UnknownType(full_name.to_owned()))
}

fn options() -> DeserializeOptions {
    DeserializeOptions::new().deny_unknown_fields(true)
}

/// Reads one YAML (or JSON, which is YAML) document as the message `full_name`, checks it
/// against what `support` allows, and decodes it as `M`.
pub fn from_yaml<M: Message + Default>(
    text: &str,
    full_name: &str,
    support: &Support,
) -> Result<M, ConfigError> {
    let desc = descriptor(full_name)?;
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        let de = serde_path_to_error::Deserializer::new(de, &mut track);
        DynamicMessage::deserialize_with_options(desc.clone(), de, &options())
    });
    let dynamic = match result {
        Ok(message) => message,
        Err(error) => {
            let location = error.location().map(|l| (l.line(), l.column()));
            return Err(invalid(
                location,
                track,
                &error.without_snippet().to_string(),
            ));
        }
    };
    finish(dynamic, full_name, support)
}

/// Reads a JSON document as the message `full_name` (see [`from_yaml`]). What a YAML parser
/// would read the same, through the JSON parser alone: a proxy started from a JSON bootstrap
/// (as pilot-agent writes Envoy's) never maps the YAML parser's code.
pub fn from_json_str<M: Message + Default>(
    text: &str,
    full_name: &str,
    support: &Support,
) -> Result<M, ConfigError> {
    let desc = descriptor(full_name)?;
    let mut track = serde_path_to_error::Track::new();
    let mut json = serde_json::Deserializer::from_str(text);
    let de = serde_path_to_error::Deserializer::new(&mut json, &mut track);
    let dynamic = DynamicMessage::deserialize_with_options(desc, de, &options())
        .and_then(|message| json.end().map(|()| message))
        .map_err(|error| {
            let location = (error.line() > 0).then(|| (error.line() as u64, error.column() as u64));
            invalid(location, track, &error.to_string())
        })?;
    finish(dynamic, full_name, support)
}

/// Reads a JSON value as the message `full_name` (see [`from_yaml`]).
pub fn from_json_value<M: Message + Default>(
    value: &serde_json::Value,
    full_name: &str,
    support: &Support,
) -> Result<M, ConfigError> {
    let desc = descriptor(full_name)?;
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    let dynamic = DynamicMessage::deserialize_with_options(desc, de, &options())
        .map_err(|error| invalid(None, track, &error.to_string()))?;
    finish(dynamic, full_name, support)
}

/// Decodes the payload of an `Any` (binary) as `M`, after checking it against `support`.
pub fn decode_any<M: Message + Default>(
    any: &crate::pb::google::protobuf::Any,
    support: &Support,
) -> Result<M, ConfigError> {
    let full_name = any
        .type_url
        .rsplit_once('/')
        .map_or(any.type_url.as_str(), |(_, n)| n);
    let desc = descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(desc, any.value.as_slice()).map_err(|source| {
        ConfigError::Decode {
            type_name: full_name.to_owned(),
            source,
        }
    })?;
    support.check(&dynamic, "")?;
    M::decode(any.value.as_slice()).map_err(|source| ConfigError::Decode {
        type_name: full_name.to_owned(),
        source,
    })
}

/// Checks a binary message (as received over xDS) against `support`, without decoding it twice
/// on the hot path of configuration: used for the resources of a discovery response.
pub fn check_binary(bytes: &[u8], full_name: &str, support: &Support) -> Result<(), ConfigError> {
    let desc = descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(desc, bytes).map_err(|source| ConfigError::Decode {
        type_name: full_name.to_owned(),
        source,
    })?;
    support.check(&dynamic, "")?;
    Ok(())
}

/// A message as JSON in Envoy's shape (proto field names, `@type` on the object), as
/// `/config_dump` shows it.
pub fn to_json<M: Message>(message: &M, full_name: &str) -> Result<serde_json::Value, ConfigError> {
    bytes_to_json(&message.encode_to_vec(), full_name)
}

/// The message an `Any` holds, as JSON in Envoy's shape.
pub fn any_to_json(
    any: &crate::pb::google::protobuf::Any,
) -> Result<serde_json::Value, ConfigError> {
    let full_name = any
        .type_url
        .rsplit_once('/')
        .map_or(any.type_url.as_str(), |(_, name)| name);
    bytes_to_json(&any.value, full_name)
}

fn bytes_to_json(bytes: &[u8], full_name: &str) -> Result<serde_json::Value, ConfigError> {
    let desc = descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(desc, bytes).map_err(|source| ConfigError::Decode {
        type_name: full_name.to_owned(),
        source,
    })?;
    let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    let mut value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| ConfigError::Invalid {
            location: None,
            path: String::new(),
            message: e.to_string(),
        })?;
    if let serde_json::Value::Object(object) = &mut value {
        let mut typed = serde_json::Map::new();
        typed.insert(
            "@type".to_owned(),
            serde_json::Value::String(format!("type.googleapis.com/{full_name}")),
        );
        typed.append(object);
        value = serde_json::Value::Object(typed);
    }
    Ok(value)
}

fn finish<M: Message + Default>(
    dynamic: DynamicMessage,
    full_name: &str,
    support: &Support,
) -> Result<M, ConfigError> {
    support.check(&dynamic, "")?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|source| ConfigError::Decode {
        type_name: full_name.to_owned(),
        source,
    })
}

/// A parse error at `location`, at the field path `track` reached.
fn invalid(
    location: Option<(u64, u64)>,
    track: serde_path_to_error::Track,
    message: &str,
) -> ConfigError {
    ConfigError::Invalid {
        location,
        path: render_path(&track.path()),
        message: first_line(message),
    }
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

/// The first line of a parser message, without the ` at line N, column M` we report apart.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    match line.rfind(" at line ") {
        Some(i) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests;
