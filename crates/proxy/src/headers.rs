//! Header additions and removals configured on routes, virtual hosts and route configurations.

use bosun_xds::pb::envoy::config::core::v3::{HeaderValueOption, header_value_option};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::ConfigError;
use crate::format::{FormatContext, Template};

/// How a header is added (Envoy's `HeaderAppendAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAction {
    /// Append to existing values, or add.
    AppendIfExistsOrAdd,
    /// Add only when absent.
    AddIfAbsent,
    /// Replace existing values, or add.
    OverwriteIfExistsOrAdd,
    /// Replace only when present.
    OverwriteIfExists,
}

#[derive(Clone, Debug)]
enum Value {
    Literal(HeaderValue),
    Template(Template),
}

#[derive(Clone, Debug)]
struct Addition {
    name: HeaderName,
    value: Value,
    action: AppendAction,
    keep_empty: bool,
}

/// Headers to add and remove, compiled.
#[derive(Clone, Debug, Default)]
pub struct HeaderMutations {
    additions: Vec<Addition>,
    removals: Vec<HeaderName>,
}

impl HeaderMutations {
    /// Compiles Envoy's `*_headers_to_add` and `*_headers_to_remove`.
    pub fn compile(add: &[HeaderValueOption], remove: &[String]) -> Result<Self, ConfigError> {
        let mut additions = Vec::with_capacity(add.len());
        for option in add {
            let Some(header) = &option.header else {
                return Err(ConfigError::invalid("header value option without header"));
            };
            let name = HeaderName::from_bytes(header.key.as_bytes()).map_err(|_| {
                ConfigError::invalid(format!("invalid header name {:?}", header.key))
            })?;
            let raw = if header.raw_value.is_empty() {
                header.value.as_bytes()
            } else {
                header.raw_value.as_slice()
            };
            let text = String::from_utf8_lossy(raw);
            let template = Template::parse(&text)
                .map_err(|e| ConfigError::invalid(format!("header {:?}: {e}", header.key)))?;
            let value = match template.as_literal() {
                Some(literal) => Value::Literal(HeaderValue::from_str(literal).map_err(|_| {
                    ConfigError::invalid(format!("invalid value for header {:?}", header.key))
                })?),
                None => Value::Template(template),
            };
            let action = match option.append.as_ref().map(|b| b.value) {
                Some(true) => AppendAction::AppendIfExistsOrAdd,
                Some(false) => AppendAction::OverwriteIfExistsOrAdd,
                None => {
                    match header_value_option::HeaderAppendAction::try_from(option.append_action)
                        .unwrap_or(header_value_option::HeaderAppendAction::AppendIfExistsOrAdd)
                    {
                        header_value_option::HeaderAppendAction::AppendIfExistsOrAdd => {
                            AppendAction::AppendIfExistsOrAdd
                        }
                        header_value_option::HeaderAppendAction::AddIfAbsent => {
                            AppendAction::AddIfAbsent
                        }
                        header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd => {
                            AppendAction::OverwriteIfExistsOrAdd
                        }
                        header_value_option::HeaderAppendAction::OverwriteIfExists => {
                            AppendAction::OverwriteIfExists
                        }
                    }
                }
            };
            additions.push(Addition {
                name,
                value,
                action,
                keep_empty: option.keep_empty_value,
            });
        }
        let removals = remove
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ConfigError::invalid(format!("invalid header name {name:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(HeaderMutations {
            additions,
            removals,
        })
    }

    /// Whether a value is computed per request (`%…%` commands).
    pub fn is_templated(&self) -> bool {
        self.additions
            .iter()
            .any(|a| matches!(a.value, Value::Template(_)))
    }

    /// Whether this changes nothing.
    pub fn is_empty(&self) -> bool {
        self.additions.is_empty() && self.removals.is_empty()
    }

    /// Applies the removals, then the additions, to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap, ctx: &FormatContext<'_>) {
        for name in &self.removals {
            headers.remove(name);
        }
        for addition in &self.additions {
            let value = match &addition.value {
                Value::Literal(v) => v.clone(),
                Value::Template(t) => match HeaderValue::from_str(&t.render(ctx)) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            if value.is_empty() && !addition.keep_empty {
                continue;
            }
            let present = headers.contains_key(&addition.name);
            match addition.action {
                AppendAction::AppendIfExistsOrAdd => {
                    headers.append(addition.name.clone(), value);
                }
                AppendAction::AddIfAbsent if !present => {
                    headers.insert(addition.name.clone(), value);
                }
                AppendAction::OverwriteIfExistsOrAdd => {
                    headers.insert(addition.name.clone(), value);
                }
                AppendAction::OverwriteIfExists if present => {
                    headers.insert(addition.name.clone(), value);
                }
                AppendAction::AddIfAbsent | AppendAction::OverwriteIfExists => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bosun_xds::pb::envoy::config::core::v3::HeaderValue as PbHeaderValue;

    use super::*;

    fn option(key: &str, value: &str, action: i32) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(PbHeaderValue {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            append_action: action,
            ..Default::default()
        }
    }

    #[test]
    fn append_actions_behave_as_envoys() {
        let mutations = HeaderMutations::compile(
            &[
                option("x-append", "b", 0),
                option("x-absent", "new", 1),
                option("x-present", "new", 1),
                option("x-overwrite", "new", 2),
                option("x-only-if", "new", 3),
            ],
            &["x-remove".to_owned()],
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-append", HeaderValue::from_static("a"));
        headers.insert("x-present", HeaderValue::from_static("old"));
        headers.insert("x-overwrite", HeaderValue::from_static("old"));
        headers.insert("x-remove", HeaderValue::from_static("gone"));
        mutations.apply(&mut headers, &FormatContext::default());
        let all = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("x-append"), ["a", "b"]);
        assert_eq!(all("x-absent"), ["new"]);
        assert_eq!(all("x-present"), ["old"]);
        assert_eq!(all("x-overwrite"), ["new"]);
        assert!(all("x-only-if").is_empty());
        assert!(all("x-remove").is_empty());
    }

    #[test]
    fn values_may_use_format_commands() {
        let mutations = HeaderMutations::compile(
            &[option(
                "x-client",
                "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                0,
            )],
            &[],
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        let ctx = FormatContext {
            downstream_remote_address: Some("10.0.0.1:5000".parse().unwrap()),
            ..Default::default()
        };
        mutations.apply(&mut headers, &ctx);
        assert_eq!(headers["x-client"], "10.0.0.1");
    }
}
