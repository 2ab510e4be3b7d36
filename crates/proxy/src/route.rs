//! Route tables compiled from Envoy's `RouteConfiguration`: virtual hosts chosen by domain,
//! routes matched in order, and what each route does. Matchers (regexes included) are compiled
//! once here; matching a request allocates nothing but the decoded query.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bosun_xds::pb::envoy::config::route::v3 as pb;
use bosun_xds::pb::envoy::r#type::matcher::v3 as matcher_pb;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use regex::Regex;

use crate::config::{self, ConfigError};
use crate::headers::HeaderMutations;
use crate::http::fault::FaultSettings;
use crate::support;
use crate::upstream::ClusterSlot;
use crate::upstream::circuit::Priority;

pub mod policy;

use policy::{HashPolicy, MirrorPolicy, RetryPolicy, StreamDuration};

/// Finds the slot of a cluster by name, creating an empty one for clusters not (yet) known.
pub trait ClusterResolver {
    /// The slot of cluster `name`.
    fn cluster_slot(&self, name: &str) -> Arc<ClusterSlot>;

    /// Whether cluster `name` exists now (for `validate_clusters`).
    fn cluster_exists(&self, name: &str) -> bool {
        self.cluster_slot(name).load().is_some()
    }
}

/// A named place where a route table lives (RDS); listeners hold slots.
#[derive(Debug)]
pub struct RouteSlot {
    name: Arc<str>,
    current: ArcSwapOption<RouteTable>,
}

impl RouteSlot {
    /// An empty slot for the route configuration `name`.
    pub fn new(name: &str) -> Self {
        RouteSlot {
            name: Arc::from(name),
            current: ArcSwapOption::empty(),
        }
    }

    /// The route configuration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The active table, if any.
    pub fn load(&self) -> Option<Arc<RouteTable>> {
        self.current.load_full()
    }

    /// Makes `table` the active one.
    pub fn store(&self, table: Option<Arc<RouteTable>>) {
        self.current.store(table);
    }
}

/// A compiled route configuration.
#[derive(Debug)]
pub struct RouteTable {
    /// Its name.
    pub name: String,
    /// The configuration, as received.
    pub config: pb::RouteConfiguration,
    virtual_hosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    suffixes: Vec<(String, usize)>,
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
    ignore_port: bool,
    /// Route-configuration-level header changes.
    pub request_headers: HeaderMutations,
    /// Route-configuration-level header changes.
    pub response_headers: HeaderMutations,
    /// Whether more specific header changes win (`most_specific_header_mutations_wins`).
    pub most_specific_wins: bool,
    /// Per-filter overrides (`typed_per_filter_config`).
    pub per_filter: PerFilter,
}

/// A per-route override of an HTTP filter's configuration.
#[derive(Clone, Debug)]
pub enum FilterOverride {
    /// Fault injection settings.
    Fault(Arc<FaultSettings>),
    /// The filter is disabled here.
    Disabled,
}

/// `typed_per_filter_config`, compiled: overrides by filter name.
#[derive(Debug, Default)]
pub struct PerFilter(Vec<(String, FilterOverride)>);

impl PerFilter {
    /// Compiles a `typed_per_filter_config` map.
    pub fn compile(
        map: &HashMap<String, bosun_xds::pb::google::protobuf::Any>,
    ) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        for (name, any) in map {
            let entry = Self::compile_one(name, any)?;
            if let Some(entry) = entry {
                entries.push((name.clone(), entry));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PerFilter(entries))
    }

    fn compile_one(
        name: &str,
        any: &bosun_xds::pb::google::protobuf::Any,
    ) -> Result<Option<FilterOverride>, ConfigError> {
        match config::type_name(any) {
            support::HTTP_FAULT => {
                let fault: bosun_xds::pb::envoy::extensions::filters::http::fault::v3::HttpFault =
                    config::typed_config(Some(any), name)?.unwrap_or_default();
                Ok(Some(FilterOverride::Fault(Arc::new(
                    FaultSettings::compile(&fault)
                        .map_err(|e| e.context(format!("typed_per_filter_config {name}")))?,
                ))))
            }
            support::FILTER_CONFIG => {
                let wrapper: pb::FilterConfig =
                    config::typed_config(Some(any), name)?.unwrap_or_default();
                if wrapper.disabled {
                    return Ok(Some(FilterOverride::Disabled));
                }
                match &wrapper.config {
                    Some(inner) => Self::compile_one(name, inner),
                    None => Ok(None),
                }
            }
            other => Err(ConfigError::unsupported(format!(
                "typed_per_filter_config {name} of type {other}"
            ))),
        }
    }

    /// The override of filter `name`, if any.
    pub fn get(&self, name: &str) -> Option<&FilterOverride> {
        if self.0.is_empty() {
            return None;
        }
        self.0.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }

    /// Whether there is no override at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Header matchers that must all match (fault filter `headers`), compiled.
#[derive(Debug, Default)]
pub struct HeaderMatchers(Vec<HeaderMatcher>);

impl HeaderMatchers {
    /// Compiles a list of `HeaderMatcher`s.
    pub fn compile(list: &[pb::HeaderMatcher]) -> Result<Self, ConfigError> {
        Ok(HeaderMatchers(
            list.iter()
                .map(HeaderMatcher::compile)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Whether every matcher matches `headers` (true when there are none).
    pub fn all_match(&self, headers: &HeaderMap) -> bool {
        let view = policy::headers_only(headers);
        self.0.iter().all(|m| m.matches(&view))
    }
}

/// A compiled virtual host.
#[derive(Debug)]
pub struct VirtualHost {
    /// Its name.
    pub name: String,
    routes: Vec<Route>,
    /// Virtual-host-level header changes.
    pub request_headers: HeaderMutations,
    /// Virtual-host-level header changes.
    pub response_headers: HeaderMutations,
    /// `include_request_attempt_count`: `x-envoy-attempt-count` goes upstream.
    pub attempt_count_upstream: bool,
    /// `include_attempt_count_in_response`: `x-envoy-attempt-count` comes back.
    pub attempt_count_downstream: bool,
    /// Per-filter overrides (`typed_per_filter_config`).
    pub per_filter: PerFilter,
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Its name.
    pub name: String,
    matcher: RouteMatcher,
    /// What to do.
    pub action: Action,
    /// Route-level header changes.
    pub request_headers: HeaderMutations,
    /// Route-level header changes.
    pub response_headers: HeaderMutations,
    /// Per-filter overrides (`typed_per_filter_config`).
    pub per_filter: PerFilter,
}

/// What a route does with a request.
#[derive(Debug)]
pub enum Action {
    /// Forward it upstream.
    Forward(Box<Forward>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly.
    Direct {
        /// Status.
        status: StatusCode,
        /// Body.
        body: Bytes,
    },
}

/// Which cluster a forwarded request goes to.
#[derive(Debug)]
pub enum ClusterTarget {
    /// One cluster.
    Single(Arc<ClusterSlot>),
    /// Several, chosen at random by weight.
    Weighted {
        /// Clusters with their weights and header changes.
        clusters: Vec<WeightedCluster>,
        /// Sum of the weights (or the configured total).
        total: u64,
    },
    /// The cluster named in a request header.
    Header(HeaderName),
}

/// One cluster of a weighted split.
#[derive(Debug)]
pub struct WeightedCluster {
    /// The cluster.
    pub slot: Arc<ClusterSlot>,
    /// Its weight.
    pub weight: u64,
    /// Header changes when chosen.
    pub request_headers: HeaderMutations,
    /// Header changes when chosen.
    pub response_headers: HeaderMutations,
    /// Per-filter overrides when chosen.
    pub per_filter: PerFilter,
}

/// How the `Host` of a forwarded request is rewritten.
#[derive(Debug)]
pub enum HostRewrite {
    /// To this value.
    Literal(HeaderValue),
    /// To the chosen endpoint's host name (DNS clusters).
    Auto,
}

/// A forwarding action.
#[derive(Debug)]
pub struct Forward {
    /// Where to.
    pub target: ClusterTarget,
    /// Status when the cluster does not exist.
    pub cluster_not_found: StatusCode,
    /// Replacement of the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// Regex rewrite of the path.
    pub regex_rewrite: Option<(Regex, String)>,
    /// Host rewrite.
    pub host_rewrite: Option<HostRewrite>,
    /// Route timeout (`None`: disabled).
    pub timeout: Option<Duration>,
    /// The stream idle timeout on this route, replacing the connection manager's when set
    /// (`Some(None)`: off).
    pub idle_timeout: Option<Option<Duration>>,
    /// Upgrades allowed or refused on this route (overriding the connection manager).
    pub upgrades: Vec<(String, bool)>,
    /// Retries (the route's policy, else the virtual host's).
    pub retry: Option<Arc<RetryPolicy>>,
    /// How the request's hash for consistent hashing is computed.
    pub hash_policy: Vec<HashPolicy>,
    /// Where copies of the request go.
    pub mirrors: Vec<MirrorPolicy>,
    /// Routing priority (circuit breakers).
    pub priority: Priority,
    /// `max_stream_duration`; when set, the route `timeout` is not used (Envoy's new timeouts).
    pub stream_duration: Option<StreamDuration>,
    /// `max_grpc_timeout`: gRPC requests take their timeout from `grpc-timeout`, capped.
    pub max_grpc_timeout: Option<Duration>,
    /// `grpc_timeout_offset`.
    pub grpc_timeout_offset: Option<Duration>,
    /// How much of a request body is kept for retries and mirrors.
    pub buffer_limit: usize,
}

/// Envoy's default per-connection buffer limit, which bounds replayable request bodies.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// A redirect action.
#[derive(Debug)]
pub struct Redirect {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
    prefix_rewrite: Option<String>,
    regex_rewrite: Option<(Regex, String)>,
    strip_query: bool,
    /// The status.
    pub status: StatusCode,
}

#[derive(Debug)]
enum PathMatch {
    Prefix(String),
    Exact(String),
    SeparatedPrefix(String),
    Regex(Regex),
}

#[derive(Debug)]
struct RouteMatcher {
    path: PathMatch,
    case_sensitive: bool,
    headers: Vec<HeaderMatcher>,
    query: Vec<QueryMatcher>,
    fraction: Option<(u32, u32)>,
    grpc: bool,
}

#[derive(Debug)]
enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug)]
struct StringMatcher {
    kind: StringMatch,
    ignore_case: bool,
}

impl StringMatcher {
    fn compile(m: &matcher_pb::StringMatcher) -> Result<Self, ConfigError> {
        use matcher_pb::string_matcher::MatchPattern;
        let lower = |s: &str| {
            if m.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        let kind = match &m.match_pattern {
            Some(MatchPattern::Exact(s)) => StringMatch::Exact(lower(s)),
            Some(MatchPattern::Prefix(s)) => StringMatch::Prefix(lower(s)),
            Some(MatchPattern::Suffix(s)) => StringMatch::Suffix(lower(s)),
            Some(MatchPattern::Contains(s)) => StringMatch::Contains(lower(s)),
            Some(MatchPattern::SafeRegex(r)) => StringMatch::Regex(full_regex(&r.regex)?),
            Some(MatchPattern::Custom(_)) => {
                return Err(ConfigError::unsupported("custom string matchers"));
            }
            None => StringMatch::Exact(String::new()),
        };
        Ok(StringMatcher {
            kind,
            ignore_case: m.ignore_case,
        })
    }

    fn matches(&self, value: &str) -> bool {
        let lowered;
        let value = if self.ignore_case && !matches!(self.kind, StringMatch::Regex(_)) {
            lowered = value.to_ascii_lowercase();
            lowered.as_str()
        } else {
            value
        };
        match &self.kind {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
            StringMatch::Contains(s) => value.contains(s.as_str()),
            StringMatch::Regex(r) => r.is_match(value),
        }
    }
}

#[derive(Debug)]
enum HeaderMatch {
    Value(String),
    Regex(Regex),
    Range(i64, i64),
    Present(bool),
    Prefix(String),
    Suffix(String),
    Contains(String),
    String(StringMatcher),
}

#[derive(Debug)]
struct HeaderMatcher {
    name: HeaderName,
    /// `:authority`, `:method`, … match request parts rather than headers.
    pseudo: Option<Pseudo>,
    kind: HeaderMatch,
    invert: bool,
    treat_missing_as_empty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pseudo {
    Method,
    Path,
    Authority,
    Scheme,
}

#[derive(Debug)]
struct QueryMatcher {
    name: String,
    value: Option<StringMatcher>,
}

/// What routing looks at in a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// `:authority` or `Host`.
    pub authority: &'a str,
    /// The path with its query.
    pub path_and_query: &'a str,
    /// The method.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// A random value for `runtime_fraction`.
    pub random: u64,
}

impl RequestView<'_> {
    fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query, |(p, _)| p)
    }

    fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }
}

/// A compiled regex matching whole strings, as RE2's `FullMatch`.
fn full_regex(pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConfigError::invalid(format!("invalid regex {pattern:?}: {e}")))
}

fn regex_matcher(m: &matcher_pb::RegexMatcher) -> Result<Regex, ConfigError> {
    full_regex(&m.regex)
}

fn substitution(m: &matcher_pb::RegexMatchAndSubstitute) -> Result<(Regex, String), ConfigError> {
    let pattern = m
        .pattern
        .as_ref()
        .ok_or_else(|| ConfigError::invalid("regex_rewrite without pattern"))?;
    let regex = Regex::new(&pattern.regex)
        .map_err(|e| ConfigError::invalid(format!("invalid regex {:?}: {e}", pattern.regex)))?;
    // RE2 writes groups as \1; the regex crate as ${1}.
    let mut replacement = String::new();
    let mut chars = m.substitution.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let d = *d;
                    chars.next();
                    replacement.push_str(&format!("${{{d}}}"));
                }
                Some('\\') => {
                    chars.next();
                    replacement.push('\\');
                }
                _ => replacement.push('\\'),
            },
            '$' => replacement.push_str("$$"),
            other => replacement.push(other),
        }
    }
    Ok((regex, replacement))
}

fn header_mutations(
    add: &[bosun_xds::pb::envoy::config::core::v3::HeaderValueOption],
    remove: &[String],
) -> Result<HeaderMutations, ConfigError> {
    HeaderMutations::compile(add, remove)
}

impl RouteTable {
    /// Compiles a route configuration; cluster names are resolved to slots through `clusters`.
    /// `inline` says whether it is defined in a listener (not RDS): Envoy then validates the
    /// clusters it names unless `validate_clusters` says otherwise.
    pub fn compile(
        config: pb::RouteConfiguration,
        clusters: &dyn ClusterResolver,
        inline: bool,
    ) -> Result<RouteTable, ConfigError> {
        let validate = config
            .validate_clusters
            .as_ref()
            .map_or(inline, |v| v.value);
        if validate {
            for name in referenced_clusters(&config) {
                if !clusters.cluster_exists(&name) {
                    return Err(ConfigError::invalid(format!(
                        "route: unknown cluster '{name}'"
                    )));
                }
            }
        }
        let mut table = RouteTable {
            name: config.name.clone(),
            virtual_hosts: Vec::new(),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            ignore_port: config.ignore_port_in_host_matching,
            request_headers: header_mutations(
                &config.request_headers_to_add,
                &config.request_headers_to_remove,
            )?,
            response_headers: header_mutations(
                &config.response_headers_to_add,
                &config.response_headers_to_remove,
            )?,
            most_specific_wins: config.most_specific_header_mutations_wins,
            per_filter: PerFilter::compile(&config.typed_per_filter_config)
                .map_err(|e| e.context("route configuration"))?,
            config: pb::RouteConfiguration::default(),
        };
        for (index, vhost) in config.virtual_hosts.iter().enumerate() {
            let compiled = VirtualHost::compile(vhost, clusters)
                .map_err(|e| e.context(format!("virtual host {:?}", vhost.name)))?;
            for domain in &vhost.domains {
                let domain = domain.to_ascii_lowercase();
                let duplicate = if domain == "*" {
                    table.any.replace(index).is_some()
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    let dup = table.suffixes.iter().any(|(s, _)| s == suffix);
                    table.suffixes.push((suffix.to_owned(), index));
                    dup
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    let dup = table.prefixes.iter().any(|(p, _)| p == prefix);
                    table.prefixes.push((prefix.to_owned(), index));
                    dup
                } else {
                    table.exact.insert(domain.clone(), index).is_some()
                };
                if duplicate {
                    return Err(ConfigError::invalid(format!(
                        "only unique values for domains are permitted: duplicate domain {domain:?}"
                    )));
                }
            }
            table.virtual_hosts.push(compiled);
        }
        // Longest wildcard first, as Envoy searches.
        table
            .suffixes
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        table
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        table.config = config;
        Ok(table)
    }

    /// The virtual host for `authority`.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let lowered;
        let mut host = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = authority.to_ascii_lowercase();
            lowered.as_str()
        } else {
            authority
        };
        if self.ignore_port {
            host = strip_port(host);
        }
        let index = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(suffix, _)| {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    })
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| {
                        host.len() > prefix.len() && host.starts_with(prefix.as_str())
                    })
                    .map(|(_, i)| *i)
            })
            .or(self.any)?;
        self.virtual_hosts.get(index)
    }

    /// The virtual host and route for a request.
    pub fn route(&self, request: &RequestView<'_>) -> Option<(&VirtualHost, &Route)> {
        let vhost = self.virtual_host(request.authority)?;
        let route = vhost.routes.iter().find(|r| r.matcher.matches(request))?;
        Some((vhost, route))
    }
}

/// The clusters a route configuration names.
fn referenced_clusters(config: &pb::RouteConfiguration) -> Vec<String> {
    use pb::route_action::ClusterSpecifier;
    let mut names = Vec::new();
    for vhost in &config.virtual_hosts {
        for route in &vhost.routes {
            if let Some(pb::route::Action::Route(action)) = &route.action {
                match &action.cluster_specifier {
                    Some(ClusterSpecifier::Cluster(name)) => names.push(name.clone()),
                    Some(ClusterSpecifier::WeightedClusters(weighted)) => {
                        names.extend(weighted.clusters.iter().map(|c| c.name.clone()));
                    }
                    _ => {}
                }
            }
        }
    }
    names
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .rsplit_once("]:")
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

impl VirtualHost {
    fn compile(
        vhost: &pb::VirtualHost,
        clusters: &dyn ClusterResolver,
    ) -> Result<Self, ConfigError> {
        if vhost.domains.is_empty() {
            return Err(ConfigError::invalid(
                "a virtual host needs at least one domain",
            ));
        }
        let retry = vhost
            .retry_policy
            .as_ref()
            .map(|p| RetryPolicy::compile(p).map(Arc::new))
            .transpose()
            .map_err(|e| e.context("retry_policy"))?;
        let buffer_limit = vhost
            .request_body_buffer_limit
            .map(|v| v.value as usize)
            .or(vhost
                .per_request_buffer_limit_bytes
                .map(|v| v.value as usize));
        let routes = vhost
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Route::compile(r, clusters, retry.as_ref(), buffer_limit)
                    .map_err(|e| e.context(format!("route {i} ({:?})", r.name)))
            })
            .collect::<Result<_, _>>()?;
        Ok(VirtualHost {
            name: vhost.name.clone(),
            routes,
            request_headers: header_mutations(
                &vhost.request_headers_to_add,
                &vhost.request_headers_to_remove,
            )?,
            response_headers: header_mutations(
                &vhost.response_headers_to_add,
                &vhost.response_headers_to_remove,
            )?,
            attempt_count_upstream: vhost.include_request_attempt_count,
            attempt_count_downstream: vhost.include_attempt_count_in_response,
            per_filter: PerFilter::compile(&vhost.typed_per_filter_config)?,
        })
    }
}

impl Route {
    fn compile(
        route: &pb::Route,
        clusters: &dyn ClusterResolver,
        vhost_retry: Option<&Arc<RetryPolicy>>,
        vhost_buffer_limit: Option<usize>,
    ) -> Result<Self, ConfigError> {
        let buffer_limit = route
            .request_body_buffer_limit
            .map(|v| v.value as usize)
            .or(route
                .per_request_buffer_limit_bytes
                .map(|v| v.value as usize))
            .or(vhost_buffer_limit)
            .unwrap_or(DEFAULT_BUFFER_LIMIT);
        let matcher = RouteMatcher::compile(
            route
                .r#match
                .as_ref()
                .ok_or_else(|| ConfigError::invalid("route without match"))?,
        )?;
        let action =
            match &route.action {
                Some(pb::route::Action::Route(action)) => Action::Forward(Box::new(
                    Forward::compile(action, clusters, vhost_retry, buffer_limit)?,
                )),
                Some(pb::route::Action::Redirect(redirect)) => {
                    Action::Redirect(Redirect::compile(redirect)?)
                }
                Some(pb::route::Action::DirectResponse(direct)) => Action::Direct {
                    status: StatusCode::from_u16(u16::try_from(direct.status).unwrap_or(0))
                        .ok()
                        .filter(|s| (200..600).contains(&s.as_u16()))
                        .ok_or_else(|| {
                            ConfigError::invalid(format!(
                                "invalid direct response status {}",
                                direct.status
                            ))
                        })?,
                    body: direct
                        .body
                        .as_ref()
                        .map(config::data_source)
                        .transpose()?
                        .unwrap_or_default(),
                },
                Some(_) => {
                    return Err(ConfigError::unsupported(
                        "route action other than route, redirect or direct_response",
                    ));
                }
                None => return Err(ConfigError::invalid("route without action")),
            };
        Ok(Route {
            name: route.name.clone(),
            matcher,
            action,
            request_headers: header_mutations(
                &route.request_headers_to_add,
                &route.request_headers_to_remove,
            )?,
            response_headers: header_mutations(
                &route.response_headers_to_add,
                &route.response_headers_to_remove,
            )?,
            per_filter: PerFilter::compile(&route.typed_per_filter_config)?,
        })
    }

    /// The matched prefix, for prefix rewrites.
    pub fn prefix(&self) -> Option<&str> {
        match &self.matcher.path {
            PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => Some(p),
            PathMatch::Exact(p) => Some(p),
            PathMatch::Regex(_) => None,
        }
    }

    /// Whether prefix matching ignores case (rewrites then ignore it too).
    pub fn case_insensitive(&self) -> bool {
        !self.matcher.case_sensitive
    }
}

impl RouteMatcher {
    fn compile(m: &pb::RouteMatch) -> Result<Self, ConfigError> {
        use pb::route_match::PathSpecifier;
        let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
        let norm = |s: &str| {
            if case_sensitive {
                s.to_owned()
            } else {
                s.to_ascii_lowercase()
            }
        };
        let path = match &m.path_specifier {
            Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(norm(p)),
            Some(PathSpecifier::Path(p)) => PathMatch::Exact(norm(p)),
            Some(PathSpecifier::SafeRegex(r)) => PathMatch::Regex(regex_matcher(r)?),
            Some(PathSpecifier::PathSeparatedPrefix(p)) => {
                if p.contains('?') || p.contains('#') || (p.len() > 1 && p.ends_with('/')) {
                    return Err(ConfigError::invalid(format!(
                        "invalid path_separated_prefix {p:?}"
                    )));
                }
                PathMatch::SeparatedPrefix(norm(p))
            }
            Some(_) => {
                return Err(ConfigError::unsupported(
                    "path matchers other than prefix, path, safe_regex and path_separated_prefix",
                ));
            }
            None => return Err(ConfigError::invalid("route match without a path specifier")),
        };
        let headers = m
            .headers
            .iter()
            .map(HeaderMatcher::compile)
            .collect::<Result<_, _>>()?;
        let query = m
            .query_parameters
            .iter()
            .map(|q| {
                use pb::query_parameter_matcher::QueryParameterMatchSpecifier;
                let value = match &q.query_parameter_match_specifier {
                    Some(QueryParameterMatchSpecifier::StringMatch(s)) => {
                        Some(StringMatcher::compile(s)?)
                    }
                    Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => None,
                };
                Ok(QueryMatcher {
                    name: q.name.clone(),
                    value,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let fraction = m
            .runtime_fraction
            .as_ref()
            .and_then(|f| f.default_value.as_ref())
            .map(|p| {
                let denominator = match p.denominator {
                    1 => 10_000,
                    2 => 1_000_000,
                    _ => 100,
                };
                (p.numerator.min(denominator), denominator)
            });
        Ok(RouteMatcher {
            path,
            case_sensitive,
            headers,
            query,
            fraction,
            grpc: m.grpc.is_some(),
        })
    }

    fn matches(&self, request: &RequestView<'_>) -> bool {
        let raw_path = request.path();
        let lowered;
        let path = if self.case_sensitive || matches!(self.path, PathMatch::Regex(_)) {
            raw_path
        } else {
            lowered = raw_path.to_ascii_lowercase();
            lowered.as_str()
        };
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::SeparatedPrefix(p) => {
                path.starts_with(p.as_str())
                    && (path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/'
                        || p.ends_with('/'))
            }
            PathMatch::Regex(r) => r.is_match(raw_path),
        };
        if !path_ok {
            return false;
        }
        if self.grpc
            && !request
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/grpc"))
        {
            return false;
        }
        if !self.headers.iter().all(|h| h.matches(request)) {
            return false;
        }
        if !self.query.is_empty() {
            let params = parse_query(request.query().unwrap_or(""));
            let all =
                self.query
                    .iter()
                    .all(|q| match params.iter().find(|(name, _)| *name == q.name) {
                        None => false,
                        Some((_, value)) => q.value.as_ref().is_none_or(|m| m.matches(value)),
                    });
            if !all {
                return false;
            }
        }
        if let Some((numerator, denominator)) = self.fraction {
            if request.random % u64::from(denominator) >= u64::from(numerator) {
                return false;
            }
        }
        true
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl HeaderMatcher {
    fn compile(m: &pb::HeaderMatcher) -> Result<Self, ConfigError> {
        use pb::header_matcher::HeaderMatchSpecifier;
        let pseudo = match m.name.as_str() {
            ":method" => Some(Pseudo::Method),
            ":path" => Some(Pseudo::Path),
            ":authority" | "host" => Some(Pseudo::Authority),
            ":scheme" => Some(Pseudo::Scheme),
            _ => None,
        };
        let name = if pseudo.is_some() {
            HeaderName::from_static("x-bosun-pseudo")
        } else {
            HeaderName::from_bytes(m.name.as_bytes())
                .map_err(|_| ConfigError::invalid(format!("invalid header name {:?}", m.name)))?
        };
        let kind = match &m.header_match_specifier {
            Some(HeaderMatchSpecifier::ExactMatch(v)) => HeaderMatch::Value(v.clone()),
            Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => HeaderMatch::Regex(regex_matcher(r)?),
            Some(HeaderMatchSpecifier::RangeMatch(r)) => HeaderMatch::Range(r.start, r.end),
            Some(HeaderMatchSpecifier::PresentMatch(p)) => HeaderMatch::Present(*p),
            Some(HeaderMatchSpecifier::PrefixMatch(p)) => HeaderMatch::Prefix(p.clone()),
            Some(HeaderMatchSpecifier::SuffixMatch(s)) => HeaderMatch::Suffix(s.clone()),
            Some(HeaderMatchSpecifier::ContainsMatch(c)) => HeaderMatch::Contains(c.clone()),
            Some(HeaderMatchSpecifier::StringMatch(s)) => {
                HeaderMatch::String(StringMatcher::compile(s)?)
            }
            None => HeaderMatch::Value(String::new()),
        };
        Ok(HeaderMatcher {
            name,
            pseudo,
            kind,
            invert: m.invert_match,
            treat_missing_as_empty: m.treat_missing_header_as_empty,
        })
    }

    /// Envoy's header matching: several values are joined with `,`; see below for a missing
    /// header.
    fn matches(&self, request: &RequestView<'_>) -> bool {
        let joined;
        let value: Option<&str> = match self.pseudo {
            Some(Pseudo::Method) => Some(request.method),
            Some(Pseudo::Path) => Some(request.path_and_query),
            Some(Pseudo::Authority) => Some(request.authority),
            Some(Pseudo::Scheme) => Some(request.scheme),
            None => {
                let mut values = request.headers.get_all(&self.name).iter();
                match values.next() {
                    None => None,
                    Some(first) => {
                        let rest: Vec<&[u8]> = values.map(HeaderValue::as_bytes).collect();
                        if rest.is_empty() {
                            joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
                        } else {
                            let mut all = String::from_utf8_lossy(first.as_bytes()).into_owned();
                            for v in rest {
                                all.push(',');
                                all.push_str(&String::from_utf8_lossy(v));
                            }
                            joined = all;
                        }
                        Some(joined.as_str())
                    }
                }
            }
        };
        let value = match value {
            Some(v) => v,
            None if self.treat_missing_as_empty => "",
            // A missing header only satisfies a presence matcher (Envoy 1.40): `present_match:
            // false`, or `present_match: true` inverted. Value matchers fail, inverted or not.
            None => {
                return match self.kind {
                    HeaderMatch::Present(present) => present == self.invert,
                    _ => false,
                };
            }
        };
        let matched = match &self.kind {
            HeaderMatch::Value(v) => v.is_empty() || value == v,
            HeaderMatch::Regex(r) => r.is_match(value),
            HeaderMatch::Range(start, end) => {
                value.parse::<i64>().is_ok_and(|n| n >= *start && n < *end)
            }
            HeaderMatch::Present(p) => *p,
            HeaderMatch::Prefix(p) => value.starts_with(p.as_str()),
            HeaderMatch::Suffix(s) => value.ends_with(s.as_str()),
            HeaderMatch::Contains(c) => value.contains(c.as_str()),
            HeaderMatch::String(s) => s.matches(value),
        };
        matched != self.invert
    }
}

impl Forward {
    fn compile(
        action: &pb::RouteAction,
        clusters: &dyn ClusterResolver,
        vhost_retry: Option<&Arc<RetryPolicy>>,
        buffer_limit: usize,
    ) -> Result<Self, ConfigError> {
        use pb::route_action::{ClusterSpecifier, HostRewriteSpecifier};
        let target = match &action.cluster_specifier {
            Some(ClusterSpecifier::Cluster(name)) => {
                ClusterTarget::Single(clusters.cluster_slot(name))
            }
            Some(ClusterSpecifier::ClusterHeader(name)) => {
                ClusterTarget::Header(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::invalid(format!("invalid cluster_header {name:?}"))
                })?)
            }
            Some(ClusterSpecifier::WeightedClusters(weighted)) => {
                let clusters = weighted
                    .clusters
                    .iter()
                    .map(|c| {
                        if c.name.is_empty() {
                            return Err(ConfigError::unsupported(
                                "weighted cluster without name (cluster_header)",
                            ));
                        }
                        Ok(WeightedCluster {
                            slot: clusters.cluster_slot(&c.name),
                            weight: u64::from(c.weight.as_ref().map_or(0, |w| w.value)),
                            request_headers: header_mutations(
                                &c.request_headers_to_add,
                                &c.request_headers_to_remove,
                            )?,
                            response_headers: header_mutations(
                                &c.response_headers_to_add,
                                &c.response_headers_to_remove,
                            )?,
                            per_filter: PerFilter::compile(&c.typed_per_filter_config)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let sum: u64 = clusters.iter().map(|c| c.weight).sum();
                let total = weighted
                    .total_weight
                    .as_ref()
                    .map_or(sum, |w| u64::from(w.value));
                if total == 0 {
                    return Err(ConfigError::invalid(
                        "weighted_clusters: sum of weights must be greater than 0",
                    ));
                }
                if weighted.total_weight.is_some() && sum != total {
                    return Err(ConfigError::invalid(format!(
                        "weighted_clusters: sum of weights {sum} does not equal total_weight {total}"
                    )));
                }
                ClusterTarget::Weighted { clusters, total }
            }
            Some(_) => return Err(ConfigError::unsupported("cluster_specifier_plugin")),
            None => return Err(ConfigError::invalid("route action without a cluster")),
        };
        let host_rewrite = match &action.host_rewrite_specifier {
            None => None,
            Some(HostRewriteSpecifier::HostRewriteLiteral(host)) => {
                Some(HostRewrite::Literal(HeaderValue::from_str(host).map_err(
                    |_| ConfigError::invalid(format!("invalid host_rewrite_literal {host:?}")),
                )?))
            }
            Some(HostRewriteSpecifier::AutoHostRewrite(v)) if v.value => Some(HostRewrite::Auto),
            Some(HostRewriteSpecifier::AutoHostRewrite(_)) => None,
            Some(_) => {
                return Err(ConfigError::unsupported(
                    "host rewrite other than host_rewrite_literal or auto_host_rewrite",
                ));
            }
        };
        let cluster_not_found = match action.cluster_not_found_response_code {
            1 => StatusCode::NOT_FOUND,
            2 => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        if !action.prefix_rewrite.is_empty() && action.regex_rewrite.is_some() {
            return Err(ConfigError::invalid(
                "cannot set both prefix_rewrite and regex_rewrite",
            ));
        }
        Ok(Forward {
            target,
            cluster_not_found,
            prefix_rewrite: Some(action.prefix_rewrite.clone()).filter(|p| !p.is_empty()),
            regex_rewrite: action
                .regex_rewrite
                .as_ref()
                .map(substitution)
                .transpose()?,
            host_rewrite,
            // Envoy's default route timeout is 15 s; 0 disables it.
            timeout: match &action.timeout {
                None => Some(Duration::from_secs(15)),
                Some(t) => Some(config::duration(t)).filter(|d| !d.is_zero()),
            },
            idle_timeout: action
                .idle_timeout
                .as_ref()
                .map(|t| Some(config::duration(t)).filter(|d| !d.is_zero())),
            upgrades: action
                .upgrade_configs
                .iter()
                .map(|u| {
                    (
                        u.upgrade_type.to_ascii_lowercase(),
                        u.enabled.as_ref().is_none_or(|b| b.value),
                    )
                })
                .collect(),
            retry: match &action.retry_policy {
                Some(policy) => Some(Arc::new(
                    RetryPolicy::compile(policy).map_err(|e| e.context("retry_policy"))?,
                )),
                None => vhost_retry.cloned(),
            },
            hash_policy: HashPolicy::compile_all(&action.hash_policy)?,
            mirrors: MirrorPolicy::compile_all(&action.request_mirror_policies, clusters)?,
            priority: match action.priority {
                1 => Priority::High,
                _ => Priority::Default,
            },
            stream_duration: action
                .max_stream_duration
                .as_ref()
                .map(StreamDuration::compile),
            max_grpc_timeout: action.max_grpc_timeout.as_ref().map(config::duration),
            grpc_timeout_offset: config::optional_duration(action.grpc_timeout_offset.as_ref()),
            buffer_limit,
        })
    }
}

impl Redirect {
    fn compile(redirect: &pb::RedirectAction) -> Result<Self, ConfigError> {
        use pb::redirect_action::{PathRewriteSpecifier, SchemeRewriteSpecifier};
        let scheme = match &redirect.scheme_rewrite_specifier {
            Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_owned()),
            Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => Some(s.to_ascii_lowercase()),
            _ => None,
        };
        let (path, prefix_rewrite, regex_rewrite) = match &redirect.path_rewrite_specifier {
            Some(PathRewriteSpecifier::PathRedirect(p)) => (Some(p.clone()), None, None),
            Some(PathRewriteSpecifier::PrefixRewrite(p)) => (None, Some(p.clone()), None),
            Some(PathRewriteSpecifier::RegexRewrite(r)) => (None, None, Some(substitution(r)?)),
            Some(PathRewriteSpecifier::PathRewrite(_)) => {
                return Err(ConfigError::unsupported(
                    "redirect path_rewrite (path templates)",
                ));
            }
            None => (None, None, None),
        };
        let status = match redirect.response_code {
            1 => StatusCode::FOUND,
            2 => StatusCode::SEE_OTHER,
            3 => StatusCode::TEMPORARY_REDIRECT,
            4 => StatusCode::PERMANENT_REDIRECT,
            _ => StatusCode::MOVED_PERMANENTLY,
        };
        Ok(Redirect {
            scheme,
            host: Some(redirect.host_redirect.clone()).filter(|h| !h.is_empty()),
            port: u16::try_from(redirect.port_redirect)
                .ok()
                .filter(|p| *p != 0),
            path,
            prefix_rewrite,
            regex_rewrite,
            strip_query: redirect.strip_query,
            status,
        })
    }

    /// The `Location` for a request, following Envoy's rules for each part.
    pub fn location(&self, request: &RequestView<'_>, route: &Route) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(request.scheme);
        let (original_host, original_port) = split_host_port(request.authority);
        // A new host replaces host and port; a new scheme drops the original port only when
        // it was the default port of the original scheme (Envoy 1.40).
        let default_port = |s: &str| match s {
            "http" => Some("80"),
            "https" => Some("443"),
            _ => None,
        };
        let (host, mut port) = match &self.host {
            Some(new_host) => {
                let (h, p) = split_host_port(new_host);
                (h, p.map(str::to_owned))
            }
            None if self.scheme.is_some() => (
                original_host,
                original_port
                    .filter(|p| Some(*p) != default_port(request.scheme))
                    .map(str::to_owned),
            ),
            None => (original_host, original_port.map(str::to_owned)),
        };
        if let Some(p) = self.port {
            port = Some(p.to_string());
        }
        let port = port
            .filter(|p| !((scheme == "http" && p == "80") || (scheme == "https" && p == "443")));
        let original_path = request.path();
        let query = request.query();
        let mut path = match (&self.path, &self.prefix_rewrite, &self.regex_rewrite) {
            (Some(p), _, _) => p.clone(),
            (None, Some(prefix), _) => {
                let matched = route.prefix().unwrap_or("");
                match original_path.get(..matched.len()) {
                    Some(head) if head.eq_ignore_ascii_case(matched) => {
                        format!("{prefix}{}", &original_path[matched.len()..])
                    }
                    _ => original_path.to_owned(),
                }
            }
            (None, None, Some((regex, replacement))) => regex
                .replace_all(original_path, replacement.as_str())
                .into_owned(),
            (None, None, None) => original_path.to_owned(),
        };
        let path_has_query = path.contains('?');
        if !self.strip_query && !path_has_query {
            if let Some(q) = query {
                path.push('?');
                path.push_str(q);
            }
        } else if self.strip_query {
            if let Some(i) = path.find('?') {
                path.truncate(i);
            }
        }
        match port {
            Some(port) => format!("{scheme}://{host}:{port}{path}"),
            None => format!("{scheme}://{host}{path}"),
        }
    }
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    let host = strip_port(authority);
    if host.len() == authority.len() {
        (authority, None)
    } else {
        (host, Some(&authority[host.len() + 1..]))
    }
}

/// Rewrites `path_and_query` as a forwarding route asks; `None` when unchanged.
pub fn rewrite_path(forward: &Forward, route: &Route, path_and_query: &str) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let new_path = if let Some(prefix) = &forward.prefix_rewrite {
        let matched = route.prefix()?;
        let head = path.get(..matched.len())?;
        let equal = if route.case_insensitive() {
            head.eq_ignore_ascii_case(matched)
        } else {
            head == matched
        };
        if !equal {
            return None;
        }
        format!("{prefix}{}", &path[matched.len()..])
    } else if let Some((regex, replacement)) = &forward.regex_rewrite {
        regex.replace_all(path, replacement.as_str()).into_owned()
    } else {
        return None;
    };
    Some(match query {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    })
}

#[cfg(test)]
mod tests;
