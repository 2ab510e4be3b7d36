//! RDS: VirtualService http routes → Envoy routes, field by field as istiod translates them;
//! the route tables of sidecars (one per port, `"9080"`) with a virtual host per service.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bosun_api::networking::{
    AbortError, DelayKind, DerivePort, Destination, HashKey, HeaderOperations, Headers, HttpBody,
    HttpFaultInjection, HttpMatchRequest, HttpRedirect, HttpRetry, HttpRoute, LoadBalancerPolicy,
    RedirectPort, StringMatch,
};
use bosun_api::types::Percent;
use bosun_xds::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, Metadata, RuntimeFractionalPercent,
    data_source::Specifier, header_value_option::HeaderAppendAction,
};
use bosun_xds::pb::envoy::config::route::v3::{
    Decorator, DirectResponseAction, FilterConfig, HeaderMatcher, QueryParameterMatcher,
    RedirectAction, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::{RetryBackOff, RetryHostPredicate},
    route::Action,
    route_action::{
        self, ClusterSpecifier, HashPolicy, HostRewriteSpecifier, MaxStreamDuration,
        RequestMirrorPolicy,
    },
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use bosun_xds::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use bosun_xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use bosun_xds::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use bosun_xds::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use bosun_xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use bosun_xds::pb::google::protobuf::{BoolValue, Duration as ProtoDuration, UInt32Value};
use prost::{Message, Name};

use super::clusters::{OutboundView, outbound_name};
use super::{HTTP_PROXY_ROUTE, PASSTHROUGH_CLUSTER, XdsResource, any, proto_duration};
use crate::context::{PushContext, VirtualHostKey, VirtualServiceEntry, host_matches, lock};
use crate::model::{Service, labels_match};
use crate::node::{Capture, ProxyNode};

/// The HTTP filter name fault injection is configured under.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// Istio's retry conditions when a VirtualService sets none.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Who the routes are for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteScope<'a> {
    /// `mesh` for sidecars, `namespace/name` of the Gateway for routers.
    pub gateway: &'a str,
    /// The proxy's namespace.
    pub namespace: &'a str,
    /// The proxy's labels (for `sourceLabels`).
    pub labels: &'a BTreeMap<String, String>,
    /// The port the request arrived on (the service port for sidecars, the Gateway server's
    /// port for routers): picks a destination's port when it names none, and filters
    /// matches on `port`.
    pub port: u16,
}

/// Sidecar route tables: one per HTTP port (`"9080"`), and `http_proxy` without capture.
pub(super) fn sidecar_route_tables(
    context: &PushContext,
    proxy: &ProxyNode,
    view: &OutboundView<'_>,
    allow_any: bool,
) -> Vec<Arc<XdsResource>> {
    let mut by_port: BTreeMap<u16, Vec<&Arc<Service>>> = BTreeMap::new();
    for service in &view.services {
        for port in service
            .ports
            .iter()
            .filter(|p| p.protocol.is_http() || p.protocol == crate::model::Protocol::Unknown)
        {
            by_port.entry(port.port).or_default().push(service);
        }
    }
    let mut tables = Vec::new();
    let mut proxy_hosts = Vec::new();
    for (port, services) in &by_port {
        let scope = RouteScope {
            gateway: "mesh",
            namespace: &proxy.namespace,
            labels: &proxy.labels,
            port: *port,
        };
        let mut virtual_hosts: Vec<Arc<[u8]>> = services
            .iter()
            .map(|service| encoded_virtual_host(context, &scope, service, false))
            .collect();
        if let Capture::None { .. } = proxy.capture {
            proxy_hosts.extend(
                services
                    .iter()
                    .map(|service| encoded_virtual_host(context, &scope, service, true)),
            );
        }
        virtual_hosts.push(catch_all_host(allow_any).encode_to_vec().into());
        tables.push(route_table(&port.to_string(), &virtual_hosts, true));
    }
    if let Capture::None { .. } = proxy.capture {
        // One table for every port: here the port in the authority is what tells services
        // on different ports apart.
        tables.push(route_table(HTTP_PROXY_ROUTE, &proxy_hosts, false));
    }
    tables
}

/// A sidecar's virtual host for one service port, encoded: taken from this context's cache,
/// else from the previous context's (see [`crate::context::Carried`]), else built. Only the
/// virtual hosts a change touches are built again, however many namespaces see them.
fn encoded_virtual_host(
    context: &PushContext,
    scope: &RouteScope<'_>,
    service: &Service,
    port_qualified_only: bool,
) -> Arc<[u8]> {
    let vs = mesh_virtual_service(context, scope.namespace, service);
    let key = VirtualHostKey {
        service: &service.id,
        port: scope.port,
        namespace: scope.namespace,
        labels: context.has_source_label_matches.then_some(scope.labels),
        port_qualified_only,
        virtual_service: vs.map(|vs| vs.fingerprint),
    }
    .fingerprint();
    if let Some(found) = lock(&context.virtual_hosts).get(&key) {
        return found.clone();
    }
    let encoded = match context.carried.virtual_hosts.get(&key) {
        Some(carried) => carried.clone(),
        None => service_virtual_host(context, scope, service, vs, port_qualified_only)
            .encode_to_vec()
            .into(),
    };
    lock(&context.virtual_hosts).insert(key, encoded.clone());
    encoded
}

/// A route table of encoded virtual hosts. Encoding a message and appending its repeated
/// field's elements already encoded is the same protobuf as encoding it whole (fields may
/// come in any order), and saves re-encoding a thousand unchanged virtual hosts.
///
/// A table of one port ignores the port of the authority when it picks a virtual host, as
/// Istio's sidecar tables have since 1.16: its domains need no `host:port` twins, which
/// halves them (a mesh-wide change sends every sidecar its whole table).
fn route_table(name: &str, virtual_hosts: &[Arc<[u8]>], ignore_port: bool) -> Arc<XdsResource> {
    const VIRTUAL_HOSTS_FIELD: u32 = 2;
    let table = RouteConfiguration {
        name: name.to_owned(),
        validate_clusters: Some(BoolValue { value: false }),
        ignore_port_in_host_matching: ignore_port,
        ..Default::default()
    };
    let mut bytes = table.encode_to_vec();
    for host in virtual_hosts {
        prost::encoding::encode_key(
            VIRTUAL_HOSTS_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut bytes,
        );
        prost::encoding::encode_varint(host.len() as u64, &mut bytes);
        bytes.extend_from_slice(host);
    }
    Arc::new(XdsResource::encoded(
        name,
        RouteConfiguration::type_url(),
        bytes,
    ))
}

/// The VirtualService bound to the mesh that shapes a service for proxies in `namespace`.
fn mesh_virtual_service<'a>(
    context: &'a PushContext,
    namespace: &'a str,
    service: &Service,
) -> Option<&'a Arc<VirtualServiceEntry>> {
    context.virtual_services_for("mesh", namespace).find(|vs| {
        vs.hosts
            .iter()
            .any(|h| host_matches(h, &service.id.hostname))
    })
}

/// `allow_any` (pass through to where the client was going) or `block_all` (502).
fn catch_all_host(allow_any: bool) -> VirtualHost {
    if allow_any {
        VirtualHost {
            name: "allow_any".to_owned(),
            domains: vec!["*".to_owned()],
            routes: vec![Route {
                name: "allow_any".to_owned(),
                r#match: Some(prefix_match("/")),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(
                        PASSTHROUGH_CLUSTER.to_owned(),
                    )),
                    timeout: Some(ProtoDuration::default()),
                    max_stream_duration: Some(grpc_timeout_header_max()),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            include_request_attempt_count: true,
            ..Default::default()
        }
    } else {
        VirtualHost {
            name: "block_all".to_owned(),
            domains: vec!["*".to_owned()],
            routes: vec![Route {
                name: "block_all".to_owned(),
                r#match: Some(prefix_match("/")),
                action: Some(Action::DirectResponse(DirectResponseAction {
                    status: 502,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            include_request_attempt_count: true,
            ..Default::default()
        }
    }
}

/// The virtual host of one service port: its names as a client in the proxy's namespace may
/// write them, and the routes of the VirtualService that applies (or the default route).
fn service_virtual_host(
    context: &PushContext,
    scope: &RouteScope<'_>,
    service: &Service,
    vs: Option<&Arc<VirtualServiceEntry>>,
    port_qualified_only: bool,
) -> VirtualHost {
    let port = scope.port;
    let mut names = vec![service.id.hostname.clone()];
    names.extend(service.short_names(scope.namespace));
    if let Some(vip) = service.vip {
        names.push(vip.to_string());
    }
    let domains = if port_qualified_only {
        let mut domains = Vec::new();
        for name in &names {
            if port == 80 {
                domains.push(name.clone());
            }
            domains.push(format!("{name}:{port}"));
        }
        domains
    } else {
        // The table ignores the authority's port (`route_table`).
        names
    };
    let routes = match vs {
        Some(vs) => translate_routes(context, scope, vs, &service.id.hostname),
        None => vec![default_route(
            context,
            scope,
            &outbound_name(port, "", &service.id.hostname),
            &service.id.hostname,
        )],
    };
    VirtualHost {
        name: format!("{}:{port}", service.id.hostname),
        domains,
        routes,
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// The route of a service no VirtualService shapes.
fn default_route(
    context: &PushContext,
    scope: &RouteScope<'_>,
    cluster: &str,
    hostname: &str,
) -> Route {
    let mut action = RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_owned())),
        retry_policy: Some(default_retry_policy()),
        ..Default::default()
    };
    set_timeout(&mut action, ProtoDuration::default());
    action.hash_policy = hash_policy(context, scope, hostname, None);
    Route {
        name: "default".to_owned(),
        r#match: Some(prefix_match("/")),
        decorator: Some(Decorator {
            operation: format!("{hostname}:{}/*", scope.port),
            ..Default::default()
        }),
        action: Some(Action::Route(action)),
        ..Default::default()
    }
}

fn prefix_match(prefix: &str) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix(prefix.to_owned())),
        ..Default::default()
    }
}

/// The route timeout as Istio's `setTimeout` sets it: `timeout`, which also caps the
/// `grpc-timeout` of gRPC requests (`max_grpc_timeout`; 0 for none). Istio keeps the deprecated
/// field on purpose: `max_stream_duration` would switch Envoy to its "new timeouts", which
/// ignore the route `timeout` altogether.
#[allow(deprecated)]
fn set_timeout(action: &mut RouteAction, timeout: ProtoDuration) {
    action.max_grpc_timeout = Some(timeout);
    action.timeout = Some(timeout);
}

fn grpc_timeout_header_max() -> MaxStreamDuration {
    MaxStreamDuration {
        grpc_timeout_header_max: Some(ProtoDuration::default()),
        ..Default::default()
    }
}

/// Istio's retry policy when a VirtualService sets none: two retries on connection
/// failures, refused streams and 503s, each on another host.
fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_owned(),
        num_retries: Some(UInt32Value { value: 2 }),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![previous_hosts()],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

fn previous_hosts() -> RetryHostPredicate {
    RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".to_owned(),
        config_type: Some(
            bosun_xds::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                any(&PreviousHostsPredicate {}),
            ),
        ),
    }
}

/// The Envoy routes of a VirtualService's http routes for one host, in order. A route
/// whose every match is for another port, gateway or source is left out.
pub(crate) fn translate_routes(
    context: &PushContext,
    scope: &RouteScope<'_>,
    vs: &VirtualServiceEntry,
    hostname: &str,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for http in &vs.spec.http {
        if http.matches.is_empty() {
            routes.push(translate_route(context, scope, vs, http, None, hostname));
            continue;
        }
        for m in http.matches.iter().filter(|m| match_applies(scope, m)) {
            routes.push(translate_route(context, scope, vs, http, Some(m), hostname));
        }
    }
    routes
}

/// Whether a match's port, gateways and source conditions hold for these routes.
fn match_applies(scope: &RouteScope<'_>, m: &HttpMatchRequest) -> bool {
    m.port.is_none_or(|p| p == u32::from(scope.port))
        && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == scope.gateway))
        && (m.source_labels.is_empty() || labels_match(&m.source_labels, scope.labels))
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns == scope.namespace)
}

fn translate_route(
    context: &PushContext,
    scope: &RouteScope<'_>,
    vs: &VirtualServiceEntry,
    http: &HttpRoute,
    m: Option<&HttpMatchRequest>,
    hostname: &str,
) -> Route {
    let name = match (m.and_then(|m| m.name.as_deref()), http.name.as_deref()) {
        (Some(match_name), Some(route_name)) => format!("{route_name}.{match_name}"),
        (Some(name), None) | (None, Some(name)) => name.to_owned(),
        (None, None) => String::new(),
    };
    let mut route = Route {
        name,
        r#match: Some(m.map_or_else(|| prefix_match("/"), route_match)),
        metadata: Some(vs_metadata(vs)),
        decorator: Some(Decorator {
            operation: format!("{hostname}:{}/*", scope.port),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(headers) = &http.headers {
        apply_route_headers(&mut route, headers);
    }
    route.action = Some(if let Some(redirect) = &http.redirect {
        Action::Redirect(redirect_action(redirect))
    } else if let Some(direct) = &http.direct_response {
        Action::DirectResponse(DirectResponseAction {
            status: direct.status,
            body: direct.body.as_ref().map(|body| DataSource {
                specifier: Some(match body {
                    HttpBody::String(s) => Specifier::InlineString(s.clone()),
                    HttpBody::Bytes(b) => Specifier::InlineBytes(
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .unwrap_or_else(|_| b.clone().into_bytes()),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    } else {
        Action::Route(route_action(context, scope, http))
    });
    if let Some(fault) = &http.fault {
        if let Some(config) = fault_config(fault) {
            route.typed_per_filter_config.insert(
                FAULT_FILTER.to_owned(),
                any(&FilterConfig {
                    config: Some(any(&config)),
                    ..Default::default()
                }),
            );
        }
    }
    route
}

/// `filter_metadata.istio.config`: the VirtualService a route comes from.
fn vs_metadata(vs: &VirtualServiceEntry) -> Metadata {
    super::config_metadata(&format!(
        "/apis/networking.istio.io/v1/namespaces/{}/virtual-service/{}",
        vs.namespace, vs.name
    ))
}

fn string_matcher(m: &StringMatch, ignore_case: bool) -> Option<StringMatcher> {
    let pattern = match m {
        StringMatch::Exact(s) => MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(s) => MatchPattern::SafeRegex(regex_matcher(s)),
        StringMatch::Any => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    })
}

fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_owned(),
        ..Default::default()
    }
}

fn header_matcher(name: &str, m: &StringMatch, invert: bool) -> HeaderMatcher {
    let specifier = match string_matcher(m, false) {
        Some(matcher) => HeaderMatchSpecifier::StringMatch(matcher),
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: name.to_owned(),
        invert_match: invert,
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

fn route_match(m: &HttpMatchRequest) -> RouteMatch {
    let ignore_case = m.ignore_uri_case.unwrap_or(false);
    let path_specifier = match &m.uri {
        None | Some(StringMatch::Any) => PathSpecifier::Prefix("/".to_owned()),
        Some(StringMatch::Exact(path)) => PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => PathSpecifier::SafeRegex(regex_matcher(regex)),
    };
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        headers.push(header_matcher(name, value, false));
    }
    for (name, value) in &m.without_headers {
        headers.push(header_matcher(name, value, true));
    }
    for (name, value) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(value) = value {
            headers.push(header_matcher(name, value, false));
        }
    }
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, value)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(value, false) {
                Some(matcher) => QueryParameterMatchSpecifier::StringMatch(matcher),
                None => QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: ignore_case.then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_options(operations: &HeaderOperations) -> (Vec<HeaderValueOption>, Vec<String>) {
    let option = |(key, value): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let mut add: Vec<HeaderValueOption> = operations
        .set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    add.extend(
        operations
            .add
            .iter()
            .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
    );
    (add, operations.remove.clone())
}

fn apply_route_headers(route: &mut Route, headers: &Headers) {
    if let Some(request) = &headers.request {
        let (add, remove) = header_options(request);
        route.request_headers_to_add.extend(add);
        route.request_headers_to_remove.extend(remove);
    }
    if let Some(response) = &headers.response {
        let (add, remove) = header_options(response);
        route.response_headers_to_add.extend(add);
        route.response_headers_to_remove.extend(remove);
    }
}

fn redirect_action(redirect: &HttpRedirect) -> RedirectAction {
    let response_code = match redirect.redirect_code.unwrap_or(301) {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    let mut action = RedirectAction {
        host_redirect: redirect.authority.clone().unwrap_or_default(),
        response_code: response_code as i32,
        path_rewrite_specifier: redirect.uri.clone().map(PathRewriteSpecifier::PathRedirect),
        scheme_rewrite_specifier: redirect.scheme.clone().map(|scheme| {
            if scheme == "https" {
                SchemeRewriteSpecifier::HttpsRedirect(true)
            } else {
                SchemeRewriteSpecifier::SchemeRedirect(scheme)
            }
        }),
        ..Default::default()
    };
    match redirect.port {
        Some(RedirectPort::Port(port)) => action.port_redirect = port,
        Some(RedirectPort::Derive(DerivePort::FromProtocolDefault)) => {
            action.port_redirect = if redirect.scheme.as_deref() == Some("https") {
                443
            } else {
                80
            };
        }
        Some(RedirectPort::Derive(DerivePort::FromRequestPort)) | None => {}
    }
    action
}

/// The cluster a destination names: its port, else the service's only port, else the port
/// the request came in on.
pub(crate) fn destination_cluster(
    context: &PushContext,
    scope: &RouteScope<'_>,
    destination: &Destination,
) -> String {
    let port = destination
        .port
        .and_then(|p| u16::try_from(p.number).ok())
        .or_else(|| {
            let service = context
                .registry
                .service_for(&destination.host, scope.namespace)?;
            match service.ports.as_slice() {
                [only] => Some(only.port),
                _ => None,
            }
        })
        .unwrap_or(scope.port);
    outbound_name(
        port,
        destination.subset.as_deref().unwrap_or(""),
        &destination.host,
    )
}

fn route_action(context: &PushContext, scope: &RouteScope<'_>, http: &HttpRoute) -> RouteAction {
    let timeout = http
        .timeout
        .map_or_else(ProtoDuration::default, |t| proto_duration(t.get()));
    let mut action = RouteAction::default();
    set_timeout(&mut action, timeout);
    let destinations: Vec<_> = http
        .route
        .iter()
        .filter(|d| http.route.len() == 1 || d.weight.unwrap_or(0) > 0)
        .collect();
    action.cluster_specifier = Some(match destinations.as_slice() {
        [single] => {
            action.hash_policy = hash_policy(
                context,
                scope,
                &single.destination.host,
                single.destination.subset.as_deref(),
            );
            ClusterSpecifier::Cluster(destination_cluster(context, scope, &single.destination))
        }
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|d| {
                    let mut weight = ClusterWeight {
                        name: destination_cluster(context, scope, &d.destination),
                        weight: Some(UInt32Value {
                            value: u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0),
                        }),
                        ..Default::default()
                    };
                    if let Some(headers) = &d.headers {
                        if let Some(request) = &headers.request {
                            let (add, remove) = header_options(request);
                            weight.request_headers_to_add = add;
                            weight.request_headers_to_remove = remove;
                        }
                        if let Some(response) = &headers.response {
                            let (add, remove) = header_options(response);
                            weight.response_headers_to_add = add;
                            weight.response_headers_to_remove = remove;
                        }
                    }
                    weight
                })
                .collect(),
            ..Default::default()
        }),
    });
    if let Some(rewrite) = &http.rewrite {
        if let Some(uri) = &rewrite.uri {
            action.prefix_rewrite = uri.clone();
        }
        if let Some(regex) = &rewrite.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex_matcher(&regex.pattern)),
                substitution: regex.rewrite.clone(),
            });
        }
        if let Some(authority) = &rewrite.authority {
            action.host_rewrite_specifier =
                Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
        }
    }
    action.retry_policy = match &http.retries {
        None => Some(default_retry_policy()),
        Some(retries) => retry_policy(retries),
    };
    action.request_mirror_policies = mirror_policies(context, scope, http);
    action
}

fn retry_policy(retries: &HttpRetry) -> Option<RetryPolicy> {
    if retries.attempts <= 0 {
        return None;
    }
    let mut policy = RetryPolicy {
        num_retries: Some(UInt32Value {
            value: u32::try_from(retries.attempts).unwrap_or(0),
        }),
        retry_host_predicate: vec![previous_hosts()],
        host_selection_retry_max_attempts: 5,
        per_try_timeout: retries.per_try_timeout.map(|d| proto_duration(d.get())),
        retry_back_off: retries.backoff.map(|d| RetryBackOff {
            base_interval: Some(proto_duration(d.get())),
            ..Default::default()
        }),
        ..Default::default()
    };
    match &retries.retry_on {
        None => {
            policy.retry_on = DEFAULT_RETRY_ON.to_owned();
            policy.retriable_status_codes = vec![503];
        }
        Some(retry_on) => {
            let mut conditions = Vec::new();
            for condition in retry_on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match condition.parse::<u32>() {
                    Ok(code) => policy.retriable_status_codes.push(code),
                    Err(_) => conditions.push(condition.to_owned()),
                }
            }
            if !policy.retriable_status_codes.is_empty()
                && !conditions.iter().any(|c| c == "retriable-status-codes")
            {
                conditions.push("retriable-status-codes".to_owned());
            }
            policy.retry_on = conditions.join(",");
        }
    }
    Some(policy)
}

/// An Istio percentage as Envoy's fraction of a million.
fn fraction(percent: Option<Percent>, default: f64) -> FractionalPercent {
    let value = percent.map_or(default, |p| p.value).clamp(0.0, 100.0);
    FractionalPercent {
        numerator: (value * 10_000.0).round() as u32,
        denominator: DenominatorType::Million as i32,
    }
}

fn mirror_policies(
    context: &PushContext,
    scope: &RouteScope<'_>,
    http: &HttpRoute,
) -> Vec<RequestMirrorPolicy> {
    let policy = |destination: &Destination, percent: Option<Percent>| RequestMirrorPolicy {
        cluster: destination_cluster(context, scope, destination),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(fraction(percent, 100.0)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut policies = Vec::new();
    if let Some(mirror) = &http.mirror {
        let percent = http
            .mirror_percentage
            .or(http.mirror_percent.map(|p| Percent {
                value: f64::from(p),
            }));
        policies.push(policy(mirror, percent));
    }
    for mirror in &http.mirrors {
        policies.push(policy(&mirror.destination, mirror.percentage));
    }
    policies
}

fn fault_config(fault: &HttpFaultInjection) -> Option<HttpFault> {
    let mut config = HttpFault::default();
    if let Some(delay) = &fault.delay {
        if let Some(DelayKind::Fixed(d)) = delay.kind {
            let percent = delay.percentage.or(delay.percent.map(|p| Percent {
                value: f64::from(p),
            }));
            config.delay = Some(FaultDelay {
                fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(proto_duration(d.get()))),
                percentage: Some(fraction(percent, 100.0)),
            });
        }
    }
    if let Some(abort) = &fault.abort {
        let error_type = match &abort.error {
            Some(AbortError::HttpStatus(status)) => {
                Some(ErrorType::HttpStatus(u32::try_from(*status).unwrap_or(500)))
            }
            Some(AbortError::GrpcStatus(status)) => {
                grpc_status_code(status).map(ErrorType::GrpcStatus)
            }
            _ => None,
        };
        if error_type.is_some() {
            config.abort = Some(FaultAbort {
                error_type,
                percentage: Some(fraction(abort.percentage, 100.0)),
                ..Default::default()
            });
        }
    }
    (config.delay.is_some() || config.abort.is_some()).then_some(config)
}

/// A gRPC status by name (`UNAVAILABLE`) or number.
fn grpc_status_code(status: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    status.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| *n == status)
            .and_then(|i| u32::try_from(i).ok())
    })
}

/// The hash policy of a destination whose DestinationRule asks for consistent hashing.
fn hash_policy(
    context: &PushContext,
    scope: &RouteScope<'_>,
    hostname: &str,
    subset: Option<&str>,
) -> Vec<HashPolicy> {
    let Some(service) = context.registry.service_for(hostname, scope.namespace) else {
        return Vec::new();
    };
    let dr = context.destination_rule_for(scope.namespace, hostname, &service.id.namespace);
    let policy = super::clusters::Policy::of(dr.map(|d| &**d), scope.port, subset);
    let Some(LoadBalancerPolicy::ConsistentHash(hash)) = policy
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.policy.as_ref())
    else {
        return Vec::new();
    };
    let specifier = match &hash.hash_key {
        Some(HashKey::HttpHeaderName(name)) => {
            route_action::hash_policy::PolicySpecifier::Header(route_action::hash_policy::Header {
                header_name: name.clone(),
                ..Default::default()
            })
        }
        Some(HashKey::HttpCookie(cookie)) => {
            route_action::hash_policy::PolicySpecifier::Cookie(route_action::hash_policy::Cookie {
                name: cookie.name.clone(),
                path: cookie.path.clone().unwrap_or_default(),
                ttl: cookie.ttl.map(|d| proto_duration(d.get())),
                ..Default::default()
            })
        }
        Some(HashKey::UseSourceIp(true)) => {
            route_action::hash_policy::PolicySpecifier::ConnectionProperties(
                route_action::hash_policy::ConnectionProperties { source_ip: true },
            )
        }
        Some(HashKey::HttpQueryParameterName(name)) => {
            route_action::hash_policy::PolicySpecifier::QueryParameter(
                route_action::hash_policy::QueryParameter { name: name.clone() },
            )
        }
        Some(HashKey::UseSourceIp(false)) | None => return Vec::new(),
    };
    vec![HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}

/// A route table whose virtual hosts match nothing: every request gets 404.
pub(crate) fn blackhole_host(port: u32) -> VirtualHost {
    VirtualHost {
        name: format!("blackhole:{port}"),
        domains: vec!["*".to_owned()],
        routes: vec![Route {
            name: "default".to_owned(),
            r#match: Some(prefix_match("/")),
            action: Some(Action::DirectResponse(DirectResponseAction {
                status: 404,
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}
