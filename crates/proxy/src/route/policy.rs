//! The resilience parts of a route, compiled: retry policy, hash policy, mirror policies and
//! stream-duration limits.

use std::sync::Arc;
use std::time::Duration;

use bosun_xds::pb::envoy::config::route::v3 as pb;
use http::{HeaderMap, HeaderName};
use regex::Regex;

use super::{ClusterResolver, HeaderMatcher, RequestView, substitution};
use crate::config::{self, ConfigError};
use crate::support;
use crate::upstream::ClusterSlot;
use crate::upstream::xxhash::{xxh64, xxh64_chain};

/// Conditions that make a request be retried (`retry_on`, `x-envoy-retry-on`,
/// `x-envoy-retry-grpc-on`), as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`.
    pub const FIVE_XX: u32 = 1;
    /// `gateway-error`.
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// `connect-failure`.
    pub const CONNECT_FAILURE: u32 = 1 << 2;
    /// `retriable-4xx`.
    pub const RETRIABLE_4XX: u32 = 1 << 3;
    /// `refused-stream`.
    pub const REFUSED_STREAM: u32 = 1 << 4;
    /// `retriable-status-codes`.
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 5;
    /// `reset`.
    pub const RESET: u32 = 1 << 6;
    /// `retriable-headers`.
    pub const RETRIABLE_HEADERS: u32 = 1 << 7;
    /// `envoy-ratelimited`.
    pub const ENVOY_RATE_LIMITED: u32 = 1 << 8;
    /// `reset-before-request`.
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 9;
    /// `http3-post-connect-failure` (HTTP/3 is not spoken; accepted and never true).
    pub const HTTP3_POST_CONNECT_FAILURE: u32 = 1 << 10;
    /// gRPC `cancelled`.
    pub const GRPC_CANCELLED: u32 = 1 << 16;
    /// gRPC `deadline-exceeded`.
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 17;
    /// gRPC `resource-exhausted`.
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 18;
    /// gRPC `unavailable`.
    pub const GRPC_UNAVAILABLE: u32 = 1 << 19;
    /// gRPC `internal`.
    pub const GRPC_INTERNAL: u32 = 1 << 20;

    /// Whether any of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    /// Parses a comma-separated list. Envoy ignores names it does not know; so do we.
    pub fn parse(text: &str) -> RetryOn {
        let mut bits = 0;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            bits |= match token {
                "5xx" => Self::FIVE_XX,
                "gateway-error" => Self::GATEWAY_ERROR,
                "connect-failure" => Self::CONNECT_FAILURE,
                "retriable-4xx" => Self::RETRIABLE_4XX,
                "refused-stream" => Self::REFUSED_STREAM,
                "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
                "reset" => Self::RESET,
                "retriable-headers" => Self::RETRIABLE_HEADERS,
                "envoy-ratelimited" => Self::ENVOY_RATE_LIMITED,
                "reset-before-request" => Self::RESET_BEFORE_REQUEST,
                "http3-post-connect-failure" => Self::HTTP3_POST_CONNECT_FAILURE,
                "cancelled" => Self::GRPC_CANCELLED,
                "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
                "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
                "unavailable" => Self::GRPC_UNAVAILABLE,
                "internal" => Self::GRPC_INTERNAL,
                other => {
                    tracing::debug!(
                        retry_on = other,
                        "unknown retry_on value ignored, as Envoy does"
                    );
                    0
                }
            };
        }
        RetryOn(bits)
    }
}

/// A compiled `RetryPolicy`.
#[derive(Debug)]
pub struct RetryPolicy {
    /// When to retry.
    pub retry_on: RetryOn,
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `per_try_timeout`.
    pub per_try_timeout: Option<Duration>,
    /// `per_try_idle_timeout`.
    pub per_try_idle_timeout: Option<Duration>,
    /// Back-off base interval (default 25 ms).
    pub base_interval: Duration,
    /// Back-off maximum interval (default 10 × base).
    pub max_interval: Duration,
    /// `retriable_status_codes`.
    pub retriable_status_codes: Vec<u16>,
    retriable_headers: Vec<HeaderMatcher>,
    retriable_request_headers: Vec<HeaderMatcher>,
    /// `retry_host_predicate` `previous_hosts`: retries avoid endpoints already tried.
    pub avoid_previous_hosts: bool,
    /// `host_selection_retry_max_attempts`.
    pub host_selection_attempts: u32,
}

impl RetryPolicy {
    /// Compiles a retry policy.
    pub fn compile(policy: &pb::RetryPolicy) -> Result<Self, ConfigError> {
        if policy.retry_priority.is_some() {
            return Err(ConfigError::unsupported("retry_policy.retry_priority"));
        }
        let mut avoid_previous_hosts = false;
        for predicate in &policy.retry_host_predicate {
            use pb::retry_policy::retry_host_predicate::ConfigType;
            let known = match &predicate.config_type {
                Some(ConfigType::TypedConfig(any)) => {
                    config::type_name(any) == support::PREVIOUS_HOSTS_PREDICATE
                }
                None => predicate.name == "envoy.retry_host_predicates.previous_hosts",
            };
            if !known {
                return Err(ConfigError::unsupported(format!(
                    "retry host predicate {:?}",
                    predicate.name
                )));
            }
            avoid_previous_hosts = true;
        }
        let base_interval = policy
            .retry_back_off
            .as_ref()
            .and_then(|b| b.base_interval.as_ref())
            .map(config::duration)
            .unwrap_or(Duration::from_millis(25));
        if base_interval < Duration::from_millis(1) {
            return Err(ConfigError::invalid(
                "retry_back_off.base_interval must be at least 1ms",
            ));
        }
        let max_interval = policy
            .retry_back_off
            .as_ref()
            .and_then(|b| b.max_interval.as_ref())
            .map(config::duration)
            .unwrap_or(base_interval * 10);
        if max_interval < base_interval {
            return Err(ConfigError::invalid(
                "retry_back_off.max_interval must be greater than or equal to the base_interval",
            ));
        }
        Ok(RetryPolicy {
            retry_on: RetryOn::parse(&policy.retry_on),
            num_retries: policy.num_retries.map_or(1, |n| n.value),
            per_try_timeout: config::optional_duration(policy.per_try_timeout.as_ref()),
            per_try_idle_timeout: config::optional_duration(policy.per_try_idle_timeout.as_ref()),
            base_interval,
            max_interval,
            retriable_status_codes: policy
                .retriable_status_codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            retriable_headers: policy
                .retriable_headers
                .iter()
                .map(HeaderMatcher::compile)
                .collect::<Result<_, _>>()?,
            retriable_request_headers: policy
                .retriable_request_headers
                .iter()
                .map(HeaderMatcher::compile)
                .collect::<Result<_, _>>()?,
            avoid_previous_hosts,
            host_selection_attempts: u32::try_from(policy.host_selection_retry_max_attempts)
                .unwrap_or(0),
        })
    }

    /// Whether a response with these headers matches `retriable_headers`.
    pub fn retriable_response_headers(&self, headers: &HeaderMap) -> bool {
        self.retriable_headers
            .iter()
            .any(|m| m.matches(&headers_only(headers)))
    }

    /// Whether the request may be retried at all (`retriable_request_headers`).
    pub fn request_is_retriable(&self, request: &RequestView<'_>) -> bool {
        self.retriable_request_headers.is_empty()
            || self
                .retriable_request_headers
                .iter()
                .any(|m| m.matches(request))
    }
}

/// A view of a bare header map for matchers (no pseudo headers).
pub(crate) fn headers_only(headers: &HeaderMap) -> RequestView<'_> {
    RequestView {
        authority: "",
        path_and_query: "",
        method: "",
        scheme: "",
        headers,
        random: 0,
    }
}

/// How a request's hash for consistent hashing is computed (`hash_policy`).
#[derive(Debug)]
enum HashSource {
    Header {
        name: HeaderName,
        rewrite: Option<(Regex, String)>,
    },
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: String,
        attributes: Vec<(String, String)>,
    },
    SourceIp,
    QueryParameter(String),
}

/// One compiled `hash_policy` entry.
#[derive(Debug)]
pub struct HashPolicy {
    source: HashSource,
    terminal: bool,
}

/// What hashing needs to know of a request.
#[derive(Debug)]
pub struct HashInput<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The downstream peer.
    pub remote: std::net::SocketAddr,
    /// The downstream local address.
    pub local: std::net::SocketAddr,
}

impl HashPolicy {
    /// Compiles a route's hash policies.
    pub fn compile_all(
        policies: &[pb::route_action::HashPolicy],
    ) -> Result<Vec<HashPolicy>, ConfigError> {
        use pb::route_action::hash_policy::PolicySpecifier;
        policies
            .iter()
            .map(|policy| {
                let source = match &policy.policy_specifier {
                    Some(PolicySpecifier::Header(header)) => HashSource::Header {
                        name: HeaderName::from_bytes(header.header_name.as_bytes()).map_err(
                            |_| {
                                ConfigError::invalid(format!(
                                    "hash_policy: invalid header name {:?}",
                                    header.header_name
                                ))
                            },
                        )?,
                        rewrite: header
                            .regex_rewrite
                            .as_ref()
                            .map(substitution)
                            .transpose()?,
                    },
                    Some(PolicySpecifier::Cookie(cookie)) => HashSource::Cookie {
                        name: cookie.name.clone(),
                        ttl: cookie.ttl.as_ref().map(config::duration),
                        path: cookie.path.clone(),
                        attributes: cookie
                            .attributes
                            .iter()
                            .map(|a| (a.name.clone(), a.value.clone()))
                            .collect(),
                    },
                    Some(PolicySpecifier::ConnectionProperties(p)) if p.source_ip => {
                        HashSource::SourceIp
                    }
                    Some(PolicySpecifier::QueryParameter(q)) => {
                        HashSource::QueryParameter(q.name.clone())
                    }
                    Some(PolicySpecifier::ConnectionProperties(_)) | None => {
                        return Err(ConfigError::invalid("hash_policy without a source"));
                    }
                    Some(PolicySpecifier::FilterState(_)) => {
                        return Err(ConfigError::unsupported("hash_policy filter_state"));
                    }
                };
                Ok(HashPolicy {
                    source,
                    terminal: policy.terminal,
                })
            })
            .collect()
    }

    fn evaluate(&self, input: &HashInput<'_>, cookies: &mut Vec<String>) -> Option<u64> {
        match &self.source {
            HashSource::Header { name, rewrite } => {
                let mut values: Vec<String> = input
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                if values.is_empty() {
                    return None;
                }
                if let Some((regex, replacement)) = rewrite {
                    for value in &mut values {
                        *value = regex.replace_all(value, replacement.as_str()).into_owned();
                    }
                }
                // The same hash whatever the order of repeated headers.
                values.sort();
                Some(xxh64_chain(values.iter().map(String::as_bytes)))
            }
            HashSource::Cookie {
                name,
                ttl,
                path,
                attributes,
            } => {
                if let Some(value) = cookie_value(input.headers, name) {
                    return Some(xxh64(value.as_bytes(), 0));
                }
                let ttl = (*ttl)?;
                // Envoy's generated value: the hash of the connection's two addresses, so that
                // racing requests on one connection get the same cookie.
                let seed = format!("{}{}", input.remote, input.local);
                let value = format!("{:016x}", xxh64(seed.as_bytes(), 0));
                let mut header = format!("{name}=\"{value}\"");
                if !ttl.is_zero() {
                    header.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                }
                if !path.is_empty() {
                    header.push_str(&format!("; Path={path}"));
                }
                for (attribute, attribute_value) in attributes {
                    if attribute_value.is_empty() {
                        header.push_str(&format!("; {attribute}"));
                    } else {
                        header.push_str(&format!("; {attribute}={attribute_value}"));
                    }
                }
                header.push_str("; HttpOnly");
                cookies.push(header);
                Some(xxh64(value.as_bytes(), 0))
            }
            HashSource::SourceIp => Some(xxh64(input.remote.ip().to_string().as_bytes(), 0)),
            HashSource::QueryParameter(name) => {
                let query = input.query?;
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| xxh64(value.as_bytes(), 0))
            }
        }
    }
}

/// Envoy's `HashPolicyImpl::generateHash`: each policy that yields a hash is mixed in (the
/// previous value rotated left by one), stopping after a terminal policy that produced one.
/// `Set-Cookie` values for generated cookies are appended to `cookies`.
pub fn request_hash(
    policies: &[HashPolicy],
    input: &HashInput<'_>,
    cookies: &mut Vec<String>,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for policy in policies {
        if let Some(new) = policy.evaluate(input, cookies) {
            let old = hash.map_or(0, |h| h.rotate_left(1));
            hash = Some(old ^ new);
        }
        if policy.terminal && hash.is_some() {
            break;
        }
    }
    hash
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    for header in headers.get_all(http::header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// A compiled `RequestMirrorPolicy`.
#[derive(Debug)]
pub struct MirrorPolicy {
    /// Where copies go.
    pub target: MirrorTarget,
    /// The share mirrored, as (numerator, denominator); `None` is all.
    pub fraction: Option<(u32, u32)>,
    /// Whether `-shadow` is appended to the host.
    pub append_shadow: bool,
    /// A host to send instead (`host_rewrite_literal`).
    pub host_rewrite: Option<String>,
}

/// The mirror's cluster.
#[derive(Debug)]
pub enum MirrorTarget {
    /// A named cluster.
    Cluster(Arc<ClusterSlot>),
    /// The cluster named in a request header.
    Header(HeaderName),
}

impl MirrorPolicy {
    /// Compiles a route's mirror policies.
    pub fn compile_all(
        policies: &[pb::route_action::RequestMirrorPolicy],
        clusters: &dyn ClusterResolver,
    ) -> Result<Vec<MirrorPolicy>, ConfigError> {
        policies
            .iter()
            .map(|policy| {
                // `trace_sampled` (Istio sets it) only matters with tracing, which bosun proxy
                // does not do: mirrored requests carry no trace either way.
                if !policy.request_headers_mutations.is_empty() {
                    return Err(ConfigError::unsupported(
                        "request_mirror_policies request_headers_mutations",
                    ));
                }
                let target = match (policy.cluster.is_empty(), policy.cluster_header.is_empty()) {
                    (false, true) => MirrorTarget::Cluster(clusters.cluster_slot(&policy.cluster)),
                    (true, false) => MirrorTarget::Header(
                        HeaderName::from_bytes(policy.cluster_header.as_bytes()).map_err(|_| {
                            ConfigError::invalid(format!(
                                "invalid mirror cluster_header {:?}",
                                policy.cluster_header
                            ))
                        })?,
                    ),
                    _ => {
                        return Err(ConfigError::invalid(
                            "a mirror policy needs exactly one of cluster and cluster_header",
                        ));
                    }
                };
                let fraction = policy
                    .runtime_fraction
                    .as_ref()
                    .and_then(|f| f.default_value.as_ref())
                    .map(fraction);
                Ok(MirrorPolicy {
                    target,
                    fraction,
                    append_shadow: !policy.disable_shadow_host_suffix_append,
                    host_rewrite: Some(policy.host_rewrite_literal.clone())
                        .filter(|h| !h.is_empty()),
                })
            })
            .collect()
    }

    /// Whether this request is mirrored.
    pub fn sampled(&self) -> bool {
        match self.fraction {
            None => true,
            Some((numerator, denominator)) => fastrand::u32(..denominator) < numerator,
        }
    }
}

/// A `FractionalPercent` as (numerator, denominator), the numerator capped.
pub fn fraction(p: &bosun_xds::pb::envoy::r#type::v3::FractionalPercent) -> (u32, u32) {
    let denominator = match p.denominator {
        1 => 10_000,
        2 => 1_000_000,
        _ => 100,
    };
    (p.numerator.min(denominator), denominator)
}

/// `-shadow` appended to the host part of an authority (before any port), as Envoy does.
pub fn shadow_authority(authority: &str) -> String {
    let host = super::strip_port(authority);
    if host.len() == authority.len() {
        format!("{authority}-shadow")
    } else {
        format!("{host}-shadow{}", &authority[host.len()..])
    }
}

/// Route-level stream limits (`max_stream_duration`), which also switch the route to Envoy's
/// "new timeouts": the route `timeout` no longer applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamDuration {
    /// `max_stream_duration` (`Some(ZERO)`: explicitly none).
    pub max: Option<Duration>,
    /// `grpc_timeout_header_max` (`Some(ZERO)`: the header is used uncapped).
    pub grpc_header_max: Option<Duration>,
    /// `grpc_timeout_header_offset`.
    pub grpc_header_offset: Option<Duration>,
}

impl StreamDuration {
    /// Compiles a route's `max_stream_duration`.
    pub fn compile(d: &pb::route_action::MaxStreamDuration) -> Self {
        StreamDuration {
            max: d.max_stream_duration.as_ref().map(config::duration),
            grpc_header_max: d.grpc_timeout_header_max.as_ref().map(config::duration),
            grpc_header_offset: d.grpc_timeout_header_offset.as_ref().map(config::duration),
        }
    }
}

/// Parses a `grpc-timeout` header (`<digits><unit>`, unit one of H M S m u n).
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value, as Envoy does (milliseconds, or a coarser
/// unit when the number would not fit eight digits).
pub fn format_grpc_timeout(d: Duration) -> String {
    let mut value = d.as_millis() as u64;
    let mut unit = 'm';
    for (next, factor) in [('S', 1000), ('M', 60), ('H', 60)] {
        if value < 100_000_000 {
            break;
        }
        value = value.div_ceil(factor);
        unit = next;
    }
    format!("{value}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_parses_every_condition_and_ignores_unknown_ones() {
        let on = RetryOn::parse("5xx, connect-failure,unavailable,nonsense");
        assert!(on.has(RetryOn::FIVE_XX));
        assert!(on.has(RetryOn::CONNECT_FAILURE));
        assert!(on.has(RetryOn::GRPC_UNAVAILABLE));
        assert!(!on.has(RetryOn::RESET));
    }

    #[test]
    fn shadow_host_goes_before_the_port() {
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("example.com"), "example.com-shadow");
        assert_eq!(shadow_authority("[::1]:80"), "[::1]-shadow:80");
    }

    #[test]
    fn grpc_timeouts_parse_and_format() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_timeout(&headers), Some(Duration::from_millis(250)));
        headers.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(grpc_timeout(&headers), Some(Duration::from_secs(2)));
        headers.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&headers), None);
        assert_eq!(format_grpc_timeout(Duration::from_millis(1500)), "1500m");
    }

    #[test]
    fn hash_policies_combine_and_stop_at_terminal_ones() {
        let policies = HashPolicy::compile_all(&[
            pb::route_action::HashPolicy {
                terminal: true,
                policy_specifier: Some(pb::route_action::hash_policy::PolicySpecifier::Header(
                    pb::route_action::hash_policy::Header {
                        header_name: "x-user".into(),
                        regex_rewrite: None,
                    },
                )),
            },
            pb::route_action::HashPolicy {
                terminal: false,
                policy_specifier: Some(
                    pb::route_action::hash_policy::PolicySpecifier::QueryParameter(
                        pb::route_action::hash_policy::QueryParameter { name: "q".into() },
                    ),
                ),
            },
        ])
        .unwrap();
        let remote = "10.0.0.1:1234".parse().unwrap();
        let local = "10.0.0.2:80".parse().unwrap();
        let mut cookies = Vec::new();
        let headers = HeaderMap::new();
        let input = HashInput {
            headers: &headers,
            query: Some("q=abc"),
            remote,
            local,
        };
        // Only the query parameter: its hash alone.
        assert_eq!(
            request_hash(&policies, &input, &mut cookies),
            Some(xxh64(b"abc", 0))
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "jason".parse().unwrap());
        let input = HashInput {
            headers: &headers,
            query: Some("q=abc"),
            remote,
            local,
        };
        // The header is terminal: the query is not mixed in.
        assert_eq!(
            request_hash(&policies, &input, &mut cookies),
            Some(xxh64(b"jason", 0))
        );
        assert!(cookies.is_empty());
    }

    #[test]
    fn missing_cookies_with_a_ttl_are_generated() {
        let policies = HashPolicy::compile_all(&[pb::route_action::HashPolicy {
            terminal: false,
            policy_specifier: Some(pb::route_action::hash_policy::PolicySpecifier::Cookie(
                pb::route_action::hash_policy::Cookie {
                    name: "session".into(),
                    ttl: Some(bosun_xds::pb::google::protobuf::Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                    path: "/".into(),
                    attributes: Vec::new(),
                },
            )),
        }])
        .unwrap();
        let headers = HeaderMap::new();
        let remote = "10.0.0.1:1234".parse().unwrap();
        let local = "10.0.0.2:80".parse().unwrap();
        let input = HashInput {
            headers: &headers,
            query: None,
            remote,
            local,
        };
        let mut cookies = Vec::new();
        let generated = request_hash(&policies, &input, &mut cookies);
        assert_eq!(cookies.len(), 1);
        assert!(cookies[0].starts_with("session=\""));
        assert!(cookies[0].ends_with("\"; Max-Age=60; Path=/; HttpOnly"));
        // Sending the cookie back hashes to the same value.
        let value = cookies[0].split('"').nth(1).unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("other=1; session={value}").parse().unwrap(),
        );
        let input = HashInput {
            headers: &headers,
            query: None,
            remote,
            local,
        };
        let mut again = Vec::new();
        assert_eq!(request_hash(&policies, &input, &mut again), generated);
        assert!(again.is_empty());
    }
}
