//! Istio's validation of `networking.istio.io` resources.

use std::collections::{BTreeMap, BTreeSet};

use super::Errors;
use super::common::{
    duration, export_to, is_dns1123_label, labels, percent, selector_labels, validate_duration,
    validate_fqdn, validate_gateway_reference, validate_header_name, validate_header_value,
    validate_ip_or_cidr, validate_port, validate_protocol, validate_regex,
    validate_wildcard_domain,
};
use crate::networking::*;
use crate::path::FieldPath;
use crate::types::PortSelector;

/// Envoy's `retry_on` policies that Istio accepts in `retryOn`.
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub(super) fn virtual_service(vs: &VirtualService, path: &FieldPath, errors: &mut Errors) {
    let is_delegate = vs.hosts.is_empty();
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    if is_delegate {
        if !vs.gateways.is_empty() {
            errors.add(
                &path.key("gateways"),
                "a delegate virtual service (one without hosts) must have no gateways",
            );
        }
        if !vs.tls.is_empty() {
            errors.add(
                &path.key("tls"),
                "a delegate virtual service must have no tls routes",
            );
        }
        if !vs.tcp.is_empty() {
            errors.add(
                &path.key("tcp"),
                "a delegate virtual service must have no tcp routes",
            );
        }
    }
    let mut seen_hosts = BTreeSet::new();
    for (i, host) in vs.hosts.iter().enumerate() {
        let at = path.key("hosts").index(i);
        if host.contains('/') {
            errors.add(
                &at,
                format!("invalid host \"{host}\": namespaces are not allowed here"),
            );
            continue;
        }
        if host.parse::<std::net::IpAddr>().is_err() {
            errors.check(&at, validate_wildcard_domain(host));
        }
        if host == "*" && applies_to_mesh {
            errors.add(
                &at,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            );
        }
        if !seen_hosts.insert(host.as_str()) {
            errors.add(&at, format!("duplicate host \"{host}\""));
        }
    }
    for (i, gateway) in vs.gateways.iter().enumerate() {
        errors.check(
            &path.key("gateways").index(i),
            validate_gateway_reference(gateway),
        );
    }
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        errors.add(path, "http, tcp or tls must be provided in virtual service");
    }
    let mut route_names = BTreeSet::new();
    for (i, route) in vs.http.iter().enumerate() {
        let at = path.key("http").index(i);
        if let Some(name) = &route.name {
            if !route_names.insert(name.as_str()) {
                errors.add(
                    &at.key("name"),
                    format!("route name \"{name}\" is not unique"),
                );
            }
        }
        http_route(route, is_delegate, &at, errors);
    }
    for (i, route) in vs.tls.iter().enumerate() {
        tls_route(route, &vs.hosts, &path.key("tls").index(i), errors);
    }
    for (i, route) in vs.tcp.iter().enumerate() {
        tcp_route(route, &path.key("tcp").index(i), errors);
    }
    export_to(&vs.export_to, &path.key("exportTo"), errors);
}

fn http_route(route: &HttpRoute, in_delegate: bool, path: &FieldPath, errors: &mut Errors) {
    let has_route = !route.route.is_empty();
    let has_redirect = route.redirect.is_some();
    let has_direct = route.direct_response.is_some();
    let has_delegate = route.delegate.is_some();
    if !has_route && !has_redirect && !has_direct && !has_delegate {
        errors.add(path, "HTTP route, redirect or direct response is required");
    }
    if has_route && has_redirect {
        errors.add(path, "HTTP route cannot contain both route and redirect");
    }
    if has_direct && has_route {
        errors.add(
            path,
            "HTTP route cannot contain both route and direct response",
        );
    }
    if has_direct && has_redirect {
        errors.add(
            path,
            "HTTP route cannot contain both redirect and direct response",
        );
    }
    if route.rewrite.is_some() && has_redirect {
        errors.add(
            path,
            "HTTP route rule cannot contain both rewrite and redirect",
        );
    }
    if has_delegate {
        if in_delegate {
            errors.add(
                &path.key("delegate"),
                "a delegate virtual service cannot delegate again",
            );
        }
        if has_route || has_redirect || has_direct {
            errors.add(
                &path.key("delegate"),
                "HTTP route with delegate cannot also have route, redirect or direct response",
            );
        }
        if let Some(delegate) = &route.delegate {
            if delegate.name.is_empty() {
                errors.add(&path.key("delegate").key("name"), "Required value");
            }
            if let Some(ns) = &delegate.namespace {
                if !is_dns1123_label(ns) {
                    errors.add(
                        &path.key("delegate").key("namespace"),
                        format!("invalid namespace \"{ns}\""),
                    );
                }
            }
        }
    }
    for (i, m) in route.matches.iter().enumerate() {
        http_match(m, &path.key("match").index(i), errors);
    }
    let weights: Vec<Option<i32>> = route.route.iter().map(|d| d.weight).collect();
    route_weights(&weights, &path.key("route"), errors);
    for (i, destination) in route.route.iter().enumerate() {
        let at = path.key("route").index(i);
        validate_destination(&destination.destination, &at.key("destination"), errors);
        if let Some(headers) = &destination.headers {
            header_changes(headers, &at.key("headers"), errors);
        }
    }
    if let Some(redirect) = &route.redirect {
        http_redirect(redirect, &path.key("redirect"), errors);
    }
    if let Some(direct) = &route.direct_response {
        let at = path.key("directResponse");
        if !(200..=599).contains(&direct.status) {
            errors.add(
                &at.key("status"),
                format!("status must be between 200 and 599, got {}", direct.status),
            );
        }
    }
    if let Some(rewrite) = &route.rewrite {
        http_rewrite(rewrite, &path.key("rewrite"), errors);
    }
    duration(&route.timeout, &path.key("timeout"), errors);
    if let Some(retries) = &route.retries {
        http_retry(retries, &path.key("retries"), errors);
    }
    if let Some(fault) = &route.fault {
        fault_injection(fault, &path.key("fault"), errors);
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        errors.add(path, "mirror and mirrors cannot both be set");
    }
    if let Some(mirror) = &route.mirror {
        validate_destination(mirror, &path.key("mirror"), errors);
    }
    for (i, mirror) in route.mirrors.iter().enumerate() {
        let at = path.key("mirrors").index(i);
        validate_destination(&mirror.destination, &at.key("destination"), errors);
        percent(&mirror.percentage, &at.key("percentage"), errors);
    }
    percent(
        &route.mirror_percentage,
        &path.key("mirrorPercentage"),
        errors,
    );
    if let Some(p) = route.mirror_percent {
        if p > 100 {
            errors.add(
                &path.key("mirrorPercent"),
                format!("mirror percent must be in range [0, 100], got {p}"),
            );
        }
    }
    if let Some(cors) = &route.cors_policy {
        cors_policy(cors, &path.key("corsPolicy"), errors);
    }
    if let Some(headers) = &route.headers {
        header_changes(headers, &path.key("headers"), errors);
    }
}

fn string_match(m: &StringMatch, path: &FieldPath, errors: &mut Errors) {
    if let StringMatch::Regex(pattern) = m {
        errors.check(&path.key("regex"), validate_regex(pattern));
    }
}

fn http_match(m: &HttpMatchRequest, path: &FieldPath, errors: &mut Errors) {
    for (name, field) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(value) = field {
            string_match(value, &path.key(name), errors);
        }
    }
    if let Some(StringMatch::Exact(uri) | StringMatch::Prefix(uri)) = &m.uri {
        if uri.is_empty() {
            errors.add(&path.key("uri"), "uri match must not be empty");
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, value) in map {
            let at = path.key(field).key(name);
            errors.check(&at, validate_header_name(name));
            string_match(value, &at, errors);
        }
    }
    for (name, value) in &m.query_params {
        let at = path.key("queryParams").key(name);
        if name.is_empty() {
            errors.add(&at, "query parameter name must not be empty");
        }
        string_match(value, &at, errors);
    }
    if let Some(port) = m.port {
        errors.check(&path.key("port"), validate_port(port));
    }
    labels(&m.source_labels, &path.key("sourceLabels"), errors);
    for (i, gateway) in m.gateways.iter().enumerate() {
        errors.check(
            &path.key("gateways").index(i),
            validate_gateway_reference(gateway),
        );
    }
    if let Some(ns) = &m.source_namespace {
        if !is_dns1123_label(ns) {
            errors.add(
                &path.key("sourceNamespace"),
                format!("invalid namespace \"{ns}\""),
            );
        }
    }
}

/// Weights: each in [0, 100]; with several destinations the total must not be zero.
fn route_weights(weights: &[Option<i32>], path: &FieldPath, errors: &mut Errors) {
    let mut total: i64 = 0;
    for (i, weight) in weights.iter().enumerate() {
        let Some(weight) = weight else { continue };
        if !(0..=100).contains(weight) {
            errors.add(
                &path.index(i).key("weight"),
                format!("weight must be in range [0, 100], got {weight}"),
            );
        }
        total += i64::from(*weight);
    }
    let any_weighted = weights.iter().any(Option::is_some);
    if weights.len() > 1 && any_weighted && total == 0 {
        errors.add(path, "total destination weight = 0");
    }
    if any_weighted && total > 100 {
        errors.add(path, format!("total destination weight {total} > 100"));
    }
}

fn validate_destination(d: &Destination, path: &FieldPath, errors: &mut Errors) {
    if d.host.is_empty() {
        errors.add(&path.key("host"), "Required value");
    } else if d.host == "*" {
        errors.add(
            &path.key("host"),
            "wildcard host * is not allowed as a destination",
        );
    } else if d.host.parse::<std::net::IpAddr>().is_err() {
        errors.check(&path.key("host"), validate_fqdn(&d.host));
    }
    if let Some(subset) = &d.subset {
        if !is_dns1123_label(subset) {
            errors.add(
                &path.key("subset"),
                format!("subset name \"{subset}\" must be a valid DNS label"),
            );
        }
    }
    if let Some(PortSelector { number }) = d.port {
        errors.check(&path.key("port").key("number"), validate_port(number));
    }
}

fn header_changes(headers: &Headers, path: &FieldPath, errors: &mut Errors) {
    for (direction, ops) in [
        ("request", &headers.request),
        ("response", &headers.response),
    ] {
        let Some(ops) = ops else { continue };
        let at = path.key(direction);
        for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
            for (name, value) in map {
                let entry = at.key(field).key(name);
                errors.check(&entry, validate_header_name(name));
                errors.check(&entry, validate_header_value(value));
            }
        }
        for (i, name) in ops.remove.iter().enumerate() {
            errors.check(&at.key("remove").index(i), validate_header_name(name));
        }
    }
}

fn http_redirect(redirect: &HttpRedirect, path: &FieldPath, errors: &mut Errors) {
    let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    if empty(&redirect.uri)
        && empty(&redirect.authority)
        && empty(&redirect.scheme)
        && redirect.port.is_none()
    {
        errors.add(
            path,
            "redirect must specify URI, authority, scheme, or port",
        );
    }
    if let Some(code) = redirect.redirect_code {
        if !(300..=399).contains(&code) {
            errors.add(
                &path.key("redirectCode"),
                format!("{code} is not a valid redirect code, must be 3xx"),
            );
        }
    }
    if let Some(RedirectPort::Port(port)) = redirect.port {
        errors.check(&path.key("port"), validate_port(port));
    }
    if let Some(scheme) = &redirect.scheme {
        if !matches!(scheme.as_str(), "http" | "https") {
            errors.add(
                &path.key("scheme"),
                format!("unsupported redirect scheme \"{scheme}\""),
            );
        }
    }
}

fn http_rewrite(rewrite: &HttpRewrite, path: &FieldPath, errors: &mut Errors) {
    let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    if empty(&rewrite.uri) && empty(&rewrite.authority) && rewrite.uri_regex_rewrite.is_none() {
        errors.add(
            path,
            "rewrite must specify uri, uriRegexRewrite or authority; or remove the rewrite",
        );
    }
    if !empty(&rewrite.uri) && rewrite.uri_regex_rewrite.is_some() {
        errors.add(
            path,
            "rewrite may only contain one of uri or uriRegexRewrite",
        );
    }
    if let Some(regex) = &rewrite.uri_regex_rewrite {
        let at = path.key("uriRegexRewrite");
        if regex.pattern.is_empty() {
            errors.add(&at.key("match"), "Required value");
        } else {
            errors.check(&at.key("match"), validate_regex(&regex.pattern));
        }
    }
}

fn http_retry(retry: &HttpRetry, path: &FieldPath, errors: &mut Errors) {
    if retry.attempts < 0 {
        errors.add(&path.key("attempts"), "attempts cannot be negative");
    }
    duration(&retry.per_try_timeout, &path.key("perTryTimeout"), errors);
    duration(&retry.backoff, &path.key("backoff"), errors);
    if let Some(retry_on) = &retry.retry_on {
        for policy in retry_on.split(',').map(str::trim) {
            if policy.is_empty() {
                continue;
            }
            let is_status = policy
                .parse::<u32>()
                .is_ok_and(|code| (100..=599).contains(&code));
            if !is_status && !RETRY_ON_POLICIES.contains(&policy) {
                let mut message = format!("\"{policy}\" is not a valid retryOn policy");
                if let Some(hint) =
                    crate::path::closest_match(policy, RETRY_ON_POLICIES.iter().copied())
                {
                    message.push_str(&format!(", did you mean \"{hint}\"?"));
                }
                errors.add(&path.key("retryOn"), message);
            }
        }
    }
}

fn fault_injection(fault: &HttpFaultInjection, path: &FieldPath, errors: &mut Errors) {
    if fault.delay.is_none() && fault.abort.is_none() {
        errors.add(
            path,
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    if let Some(delay) = &fault.delay {
        let at = path.key("delay");
        percent(&delay.percentage, &at.key("percentage"), errors);
        if let Some(p) = delay.percent {
            if !(0..=100).contains(&p) {
                errors.add(
                    &at.key("percent"),
                    format!("percentage {p} is out of range [0, 100]"),
                );
            }
        }
        match delay.kind {
            None => errors.add(&at.key("fixedDelay"), "Required value"),
            Some(DelayKind::Fixed(d)) => errors.check(&at.key("fixedDelay"), validate_duration(d)),
            Some(DelayKind::Exponential(_)) => errors.add(
                &at.key("exponentialDelay"),
                "exponentialDelay not supported yet",
            ),
        }
    }
    if let Some(abort) = &fault.abort {
        let at = path.key("abort");
        percent(&abort.percentage, &at.key("percentage"), errors);
        match &abort.error {
            None => errors.add(&at, "one of httpStatus or grpcStatus is required"),
            Some(AbortError::HttpStatus(status)) => {
                if !(200..=599).contains(status) {
                    errors.add(
                        &at.key("httpStatus"),
                        format!("invalid abort http status {status}, must be 200-599"),
                    );
                }
            }
            Some(AbortError::GrpcStatus(status)) => {
                if grpc_status_code(status).is_none() {
                    errors.add(
                        &at.key("grpcStatus"),
                        format!("invalid gRPC status \"{status}\""),
                    );
                }
            }
            Some(AbortError::Http2Error(_)) => errors.add(
                &at.key("http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            ),
        }
    }
}

/// The numeric gRPC status for a name (`UNAVAILABLE`) or number (`14`).
pub fn grpc_status_code(status: &str) -> Option<u32> {
    const NAMES: &[&str] = &[
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
    if let Ok(code) = status.parse::<u32>() {
        return (code < 17).then_some(code);
    }
    NAMES
        .iter()
        .position(|n| *n == status)
        .and_then(|i| u32::try_from(i).ok())
}

fn cors_policy(cors: &CorsPolicy, path: &FieldPath, errors: &mut Errors) {
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        string_match(origin, &path.key("allowOrigins").index(i), errors);
    }
    for (i, method) in cors.allow_methods.iter().enumerate() {
        if method != "*" && !HTTP_METHODS.contains(&method.as_str()) {
            errors.add(
                &path.key("allowMethods").index(i),
                format!("\"{method}\" is not a supported HTTP method"),
            );
        }
    }
    for (field, headers) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (i, name) in headers.iter().enumerate() {
            if name != "*" {
                errors.check(&path.key(field).index(i), validate_header_name(name));
            }
        }
    }
    if let Some(max_age) = cors.max_age {
        if max_age.get().subsec_nanos() != 0 {
            errors.add(
                &path.key("maxAge"),
                "max_age duration is accurate only to seconds precision",
            );
        }
    }
}

fn tls_route(route: &TlsRoute, hosts: &[String], path: &FieldPath, errors: &mut Errors) {
    if route.matches.is_empty() {
        errors.add(
            &path.key("match"),
            "TLS route must have at least one match condition",
        );
    }
    for (i, m) in route.matches.iter().enumerate() {
        let at = path.key("match").index(i);
        if m.sni_hosts.is_empty() {
            errors.add(
                &at.key("sniHosts"),
                "TLS match must have at least one SNI host",
            );
        }
        for (j, sni) in m.sni_hosts.iter().enumerate() {
            let sni_at = at.key("sniHosts").index(j);
            if let Err(e) = validate_wildcard_domain(sni) {
                errors.add(&sni_at, e);
            } else if !hosts
                .iter()
                .any(|h| host_covers(h, sni) || host_covers(sni, h))
            {
                errors.add(
                    &sni_at,
                    format!(
                        "the SNI host \"{sni}\" is not a subset of any of the virtual service hosts"
                    ),
                );
            }
        }
        l4_match_common(
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &at,
            errors,
        );
    }
    route_destinations(&route.route, path, errors);
}

fn tcp_route(route: &TcpRoute, path: &FieldPath, errors: &mut Errors) {
    for (i, m) in route.matches.iter().enumerate() {
        let at = path.key("match").index(i);
        l4_match_common(
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &at,
            errors,
        );
    }
    route_destinations(&route.route, path, errors);
}

fn l4_match_common(
    subnets: &[String],
    port: Option<u32>,
    source_labels: &BTreeMap<String, String>,
    gateways: &[String],
    path: &FieldPath,
    errors: &mut Errors,
) {
    for (i, subnet) in subnets.iter().enumerate() {
        errors.check(
            &path.key("destinationSubnets").index(i),
            validate_ip_or_cidr(subnet),
        );
    }
    if let Some(port) = port {
        errors.check(&path.key("port"), validate_port(port));
    }
    labels(source_labels, &path.key("sourceLabels"), errors);
    for (i, gateway) in gateways.iter().enumerate() {
        errors.check(
            &path.key("gateways").index(i),
            validate_gateway_reference(gateway),
        );
    }
}

fn route_destinations(route: &[RouteDestination], path: &FieldPath, errors: &mut Errors) {
    if route.is_empty() {
        errors.add(&path.key("route"), "route is required");
    }
    let weights: Vec<Option<i32>> = route.iter().map(|d| d.weight).collect();
    route_weights(&weights, &path.key("route"), errors);
    for (i, destination) in route.iter().enumerate() {
        validate_destination(
            &destination.destination,
            &path.key("route").index(i).key("destination"),
            errors,
        );
    }
}

/// Whether `pattern` (possibly `*.suffix` or `*`) covers `host`.
pub(crate) fn host_covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => false,
    }
}

pub(super) fn destination_rule(dr: &DestinationRule, path: &FieldPath, errors: &mut Errors) {
    if dr.host.is_empty() {
        errors.add(&path.key("host"), "Required value");
    } else {
        errors.check(&path.key("host"), validate_wildcard_domain(&dr.host));
    }
    if let Some(policy) = &dr.traffic_policy {
        traffic_policy(policy, &path.key("trafficPolicy"), errors);
    }
    let mut names = BTreeSet::new();
    for (i, subset) in dr.subsets.iter().enumerate() {
        let at = path.key("subsets").index(i);
        if subset.name.is_empty() {
            errors.add(&at.key("name"), "Required value");
        } else if !is_dns1123_label(&subset.name) {
            errors.add(
                &at.key("name"),
                format!("subset name \"{}\" must be a valid DNS label", subset.name),
            );
        }
        if !names.insert(subset.name.as_str()) {
            errors.add(
                &at.key("name"),
                format!("duplicate subset name \"{}\"", subset.name),
            );
        }
        labels(&subset.labels, &at.key("labels"), errors);
        if let Some(policy) = &subset.traffic_policy {
            traffic_policy(policy, &at.key("trafficPolicy"), errors);
        }
    }
    if let Some(selector) = &dr.workload_selector {
        selector_labels(
            &selector.match_labels,
            &path.key("workloadSelector").key("matchLabels"),
            errors,
        );
    }
    export_to(&dr.export_to, &path.key("exportTo"), errors);
}

fn traffic_policy(policy: &TrafficPolicy, path: &FieldPath, errors: &mut Errors) {
    if *policy == TrafficPolicy::default() {
        errors.add(path, "traffic policy must have at least one field");
        return;
    }
    if let Some(lb) = &policy.load_balancer {
        load_balancer(lb, &path.key("loadBalancer"), errors);
    }
    if let Some(pool) = &policy.connection_pool {
        connection_pool(pool, &path.key("connectionPool"), errors);
    }
    if let Some(outlier) = &policy.outlier_detection {
        outlier_detection(outlier, &path.key("outlierDetection"), errors);
    }
    if let Some(tls) = &policy.tls {
        client_tls(tls, &path.key("tls"), errors);
    }
    let mut ports = BTreeSet::new();
    for (i, port_policy) in policy.port_level_settings.iter().enumerate() {
        let at = path.key("portLevelSettings").index(i);
        match port_policy.port {
            None => errors.add(&at.key("port"), "Required value"),
            Some(PortSelector { number }) => {
                errors.check(&at.key("port").key("number"), validate_port(number));
                if !ports.insert(number) {
                    errors.add(
                        &at.key("port"),
                        format!("port {number} has more than one port level setting"),
                    );
                }
            }
        }
        if let Some(lb) = &port_policy.load_balancer {
            load_balancer(lb, &at.key("loadBalancer"), errors);
        }
        if let Some(pool) = &port_policy.connection_pool {
            connection_pool(pool, &at.key("connectionPool"), errors);
        }
        if let Some(outlier) = &port_policy.outlier_detection {
            outlier_detection(outlier, &at.key("outlierDetection"), errors);
        }
        if let Some(tls) = &port_policy.tls {
            client_tls(tls, &at.key("tls"), errors);
        }
    }
    if let Some(tunnel) = &policy.tunnel {
        let at = path.key("tunnel");
        if let Some(protocol) = &tunnel.protocol {
            if !matches!(protocol.as_str(), "CONNECT" | "POST") {
                errors.add(
                    &at.key("protocol"),
                    format!("tunnel protocol must be CONNECT or POST, got \"{protocol}\""),
                );
            }
        }
        if tunnel.target_host.is_empty() {
            errors.add(&at.key("targetHost"), "Required value");
        }
        errors.check(&at.key("targetPort"), validate_port(tunnel.target_port));
    }
}

fn load_balancer(lb: &LoadBalancerSettings, path: &FieldPath, errors: &mut Errors) {
    if let Some(LoadBalancerPolicy::ConsistentHash(hash)) = &lb.policy {
        let at = path.key("consistentHash");
        match &hash.hash_key {
            None => errors.add(
                &at,
                "one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required",
            ),
            Some(HashKey::HttpHeaderName(name)) => {
                errors.check(&at.key("httpHeaderName"), validate_header_name(name))
            }
            Some(HashKey::HttpCookie(cookie)) => {
                if cookie.name.is_empty() {
                    errors.add(&at.key("httpCookie").key("name"), "name required for HttpCookie");
                }
                if let Some(ttl) = cookie.ttl {
                    if ttl.get().subsec_nanos() % 1_000_000 != 0 {
                        errors.add(
                            &at.key("httpCookie").key("ttl"),
                            "only durations to ms precision are supported",
                        );
                    }
                }
            }
            Some(HashKey::HttpQueryParameterName(name)) => {
                if name.is_empty() {
                    errors.add(&at.key("httpQueryParameterName"), "Required value");
                }
            }
            Some(HashKey::UseSourceIp(_)) => {}
        }
        if let Some(HashAlgorithm::Maglev(MagLev {
            table_size: Some(size),
        })) = &hash.algorithm
        {
            if !is_prime(*size) {
                errors.add(
                    &at.key("maglev").key("tableSize"),
                    format!("table size {size} must be a prime number"),
                );
            }
        }
    }
    if let Some(locality) = &lb.locality_lb_setting {
        let at = path.key("localityLbSetting");
        if !locality.distribute.is_empty() && !locality.failover.is_empty() {
            errors.add(
                &at,
                "can not simultaneously set 'distribute' and 'failover'",
            );
        }
        for (i, distribute) in locality.distribute.iter().enumerate() {
            let total: u64 = distribute.to.values().map(|w| u64::from(*w)).sum();
            if total != 100 {
                errors.add(
                    &at.key("distribute").index(i).key("to"),
                    format!("total weight must be 100, got {total}"),
                );
            }
        }
        for (i, failover) in locality.failover.iter().enumerate() {
            let f_at = at.key("failover").index(i);
            if failover.from == failover.to {
                errors.add(
                    &f_at,
                    "locality lb failover settings must specify different regions",
                );
            }
            if failover.from.contains('/') || failover.to.contains('/') {
                errors.add(&f_at, "locality lb failover only specifies regions");
            }
        }
    }
    if let Some(d) = lb.warmup_duration_secs {
        errors.check(&path.key("warmupDurationSecs"), validate_duration(d));
    }
    if let Some(warmup) = &lb.warmup {
        let at = path.key("warmup");
        match warmup.duration {
            None => errors.add(&at.key("duration"), "Required value"),
            Some(d) => errors.check(&at.key("duration"), validate_duration(d)),
        }
        if let Some(p) = warmup.minimum_percent {
            if !(0.0..=100.0).contains(&p) {
                errors.add(
                    &at.key("minimumPercent"),
                    format!("Invalid value: {p}: must be between 0 and 100"),
                );
            }
        }
        if let Some(a) = warmup.aggression {
            if a < 1.0 {
                errors.add(
                    &at.key("aggression"),
                    format!("Invalid value: {a}: must be at least 1"),
                );
            }
        }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn connection_pool(pool: &ConnectionPoolSettings, path: &FieldPath, errors: &mut Errors) {
    if pool.tcp.is_none() && pool.http.is_none() {
        errors.add(path, "connection pool must have at least one field");
    }
    let non_negative = |value: Option<i32>, at: FieldPath, errors: &mut Errors| {
        if let Some(v) = value {
            if v < 0 {
                errors.add(&at, format!("must be non-negative, got {v}"));
            }
        }
    };
    if let Some(tcp) = &pool.tcp {
        let at = path.key("tcp");
        non_negative(tcp.max_connections, at.key("maxConnections"), errors);
        duration(&tcp.connect_timeout, &at.key("connectTimeout"), errors);
        duration(
            &tcp.max_connection_duration,
            &at.key("maxConnectionDuration"),
            errors,
        );
        duration(&tcp.idle_timeout, &at.key("idleTimeout"), errors);
        if let Some(keepalive) = &tcp.tcp_keepalive {
            duration(&keepalive.time, &at.key("tcpKeepalive").key("time"), errors);
            duration(
                &keepalive.interval,
                &at.key("tcpKeepalive").key("interval"),
                errors,
            );
        }
    }
    if let Some(http) = &pool.http {
        let at = path.key("http");
        non_negative(
            http.http1_max_pending_requests,
            at.key("http1MaxPendingRequests"),
            errors,
        );
        non_negative(http.http2_max_requests, at.key("http2MaxRequests"), errors);
        non_negative(
            http.max_requests_per_connection,
            at.key("maxRequestsPerConnection"),
            errors,
        );
        non_negative(http.max_retries, at.key("maxRetries"), errors);
        non_negative(
            http.max_concurrent_streams,
            at.key("maxConcurrentStreams"),
            errors,
        );
        duration(&http.idle_timeout, &at.key("idleTimeout"), errors);
        if let Some(keepalive) = &http.http2_keep_alive {
            duration(
                &keepalive.interval,
                &at.key("http2KeepAlive").key("interval"),
                errors,
            );
            duration(
                &keepalive.timeout,
                &at.key("http2KeepAlive").key("timeout"),
                errors,
            );
        }
    }
}

fn outlier_detection(outlier: &OutlierDetection, path: &FieldPath, errors: &mut Errors) {
    if let Some(v) = outlier.consecutive_errors {
        if v < 0 {
            errors.add(
                &path.key("consecutiveErrors"),
                "outlier detection consecutive errors cannot be negative",
            );
        }
    }
    duration(&outlier.interval, &path.key("interval"), errors);
    duration(
        &outlier.base_ejection_time,
        &path.key("baseEjectionTime"),
        errors,
    );
    for (field, value) in [
        ("maxEjectionPercent", outlier.max_ejection_percent),
        ("minHealthPercent", outlier.min_health_percent),
    ] {
        if let Some(v) = value {
            if !(0..=100).contains(&v) {
                errors.add(
                    &path.key(field),
                    format!("percentage {v} is out of range [0, 100]"),
                );
            }
        }
    }
    if outlier.consecutive_local_origin_failures.is_some()
        && outlier.split_external_local_origin_errors != Some(true)
    {
        errors.add(
            &path.key("consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors",
        );
    }
}

fn client_tls(tls: &ClientTlsSettings, path: &FieldPath, errors: &mut Errors) {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    match tls.mode {
        Some(ClientTlsMode::IstioMutual) => {
            if set(&tls.client_certificate)
                || set(&tls.private_key)
                || set(&tls.ca_certificates)
                || set(&tls.credential_name)
                || set(&tls.ca_crl)
            {
                errors.add(
                    path,
                    "cannot specify client certificates, CA certificates, CRL or credentialName \
                     when TLS mode is ISTIO_MUTUAL",
                );
            }
        }
        Some(ClientTlsMode::Mutual) if !set(&tls.credential_name) => {
            if !set(&tls.client_certificate) {
                errors.add(
                    &path.key("clientCertificate"),
                    "client certificate required for mutual tls",
                );
            }
            if !set(&tls.private_key) {
                errors.add(
                    &path.key("privateKey"),
                    "private key required for mutual tls",
                );
            }
        }
        _ => {}
    }
    if tls.insecure_skip_verify == Some(true)
        && (set(&tls.ca_certificates) || !tls.subject_alt_names.is_empty())
    {
        errors.add(
            &path.key("insecureSkipVerify"),
            "cannot skip verification while setting caCertificates or subjectAltNames",
        );
    }
}

pub(super) fn gateway(gw: &Gateway, path: &FieldPath, errors: &mut Errors) {
    if gw.servers.is_empty() {
        errors.add(
            &path.key("servers"),
            "gateway must have at least one server",
        );
    }
    selector_labels(&gw.selector, &path.key("selector"), errors);
    let mut port_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, server) in gw.servers.iter().enumerate() {
        let at = path.key("servers").index(i);
        gateway_server(server, &at, errors);
        if !server.port.name.is_empty() {
            if let Some(first) = port_names.insert(&server.port.name, i) {
                errors.add(
                    &at.key("port").key("name"),
                    format!(
                        "port names in servers must be unique: \"{}\" is also used by servers[{first}]",
                        server.port.name
                    ),
                );
            }
        }
    }
}

fn gateway_server(server: &Server, path: &FieldPath, errors: &mut Errors) {
    if server.hosts.is_empty() {
        errors.add(
            &path.key("hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, host) in server.hosts.iter().enumerate() {
        let at = path.key("hosts").index(i);
        let (namespace, name) = match host.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, host.as_str()),
        };
        if let Some(ns) = namespace {
            if !matches!(ns, "." | "*") && !is_dns1123_label(ns) {
                errors.add(
                    &at,
                    format!("invalid namespace \"{ns}\" in host \"{host}\""),
                );
            }
        }
        errors.check(&at, validate_wildcard_domain(name));
    }
    let port = &server.port;
    let port_at = path.key("port");
    errors.check(&port_at.key("protocol"), validate_protocol(&port.protocol));
    let unix_bind = server
        .bind
        .as_deref()
        .is_some_and(|b| b.starts_with("unix://"));
    if port.number > 0 || !unix_bind {
        errors.check(&port_at.key("number"), validate_port(port.number));
    }
    if port.target_port.is_some() {
        errors.add(&port_at.key("targetPort"), "targetPort is not supported");
    }
    if port.name.is_empty() {
        errors.add(&port_at.key("name"), "port name must be set");
    }
    if let Some(bind) = &server.bind {
        if !bind.starts_with("unix://") && bind.parse::<std::net::IpAddr>().is_err() {
            errors.add(
                &path.key("bind"),
                format!("\"{bind}\" is not a valid IP address or unix:// path"),
            );
        }
    }
    let protocol = port.protocol.to_ascii_uppercase();
    match &server.tls {
        None => {
            if protocol == "HTTPS" || protocol == "TLS" {
                errors.add(
                    &path.key("tls"),
                    format!("server must have TLS settings for the {protocol} protocol"),
                );
            }
        }
        Some(tls) => server_tls(tls, &protocol, &path.key("tls"), errors),
    }
}

pub(super) fn server_tls(
    tls: &ServerTlsSettings,
    protocol: &str,
    path: &FieldPath,
    errors: &mut Errors,
) {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    let has_credential = set(&tls.credential_name) || !tls.credential_names.is_empty();
    let has_files = set(&tls.server_certificate) || !tls.tls_certificates.is_empty();
    if tls.https_redirect == Some(true) && tls.mode.is_none() {
        // An HTTP server that only redirects.
        return;
    }
    match tls.mode {
        None if protocol == "HTTPS" || protocol == "TLS" => {
            errors.add(&path.key("mode"), "Required value");
        }
        Some(ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) => {
            if !has_credential && !has_files {
                errors.add(
                    &path.key("serverCertificate"),
                    "SIMPLE and MUTUAL TLS modes require a server certificate or credentialName",
                );
            }
            if !has_credential && set(&tls.server_certificate) && !set(&tls.private_key) {
                errors.add(
                    &path.key("privateKey"),
                    "a server certificate requires a private key",
                );
            }
            if matches!(
                tls.mode,
                Some(ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual)
            ) && !has_credential
                && !set(&tls.ca_certificates)
            {
                errors.add(
                    &path.key("caCertificates"),
                    "MUTUAL TLS requires a client CA bundle",
                );
            }
        }
        Some(ServerTlsMode::IstioMutual) => {
            if has_credential || has_files || set(&tls.ca_certificates) {
                errors.add(
                    path,
                    "ISTIO_MUTUAL TLS mode must not set certificates or credentialName",
                );
            }
        }
        Some(ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough) => {
            if protocol != "TLS" {
                errors.add(
                    &path.key("mode"),
                    format!(
                        "PASSTHROUGH modes are only valid for the TLS protocol, not {protocol}"
                    ),
                );
            }
        }
        None => {}
    }
    if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version) {
        if min > max && max != crate::networking::TlsProtocol::Auto {
            errors.add(
                &path.key("minProtocolVersion"),
                "TLS min version must not be greater than max",
            );
        }
    }
}

pub(super) fn service_entry(se: &ServiceEntry, path: &FieldPath, errors: &mut Errors) {
    if se.hosts.is_empty() {
        errors.add(&path.key("hosts"), "Required value");
    }
    for (i, host) in se.hosts.iter().enumerate() {
        let at = path.key("hosts").index(i);
        if host == "*" {
            errors.add(&at, "hostname cannot be wildcard");
        } else if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*' | b'_'))
        {
            errors.add(&at, format!("invalid host \"{host}\""));
        }
    }
    let resolution = se.resolution.unwrap_or(Resolution::None);
    for (i, address) in se.addresses.iter().enumerate() {
        let at = path.key("addresses").index(i);
        if let Err(e) = validate_ip_or_cidr(address) {
            errors.add(&at, e);
        } else if address.contains('/')
            && !matches!(resolution, Resolution::None | Resolution::Static)
        {
            errors.add(
                &at,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }
    }
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, port) in se.ports.iter().enumerate() {
        let at = path.key("ports").index(i);
        errors.check(&at.key("number"), validate_port(port.number));
        if let Some(target) = port.target_port {
            errors.check(&at.key("targetPort"), validate_port(target));
        }
        if port.name.is_empty() {
            errors.add(&at.key("name"), "Required value");
        } else if !names.insert(port.name.as_str()) {
            errors.add(
                &at.key("name"),
                format!("Duplicate value: \"{}\"", port.name),
            );
        }
        if !numbers.insert(port.number) {
            errors.add(&at.key("number"), "port number cannot be duplicated");
        }
        if let Some(protocol) = &port.protocol {
            errors.check(&at.key("protocol"), validate_protocol(protocol));
        }
    }
    if let Some(selector) = &se.workload_selector {
        let at = path.key("workloadSelector");
        if !se.endpoints.is_empty() {
            errors.add(&at, "only one of WorkloadSelector or Endpoints can be set");
        }
        for (key, value) in &selector.labels {
            let label_at = at.key("labels").key(key);
            if key.contains('*') || value.contains('*') {
                errors.add(&label_at, "wildcard is not supported in selector");
            } else {
                errors.check(&label_at, super::common::validate_label_key(key));
                errors.check(&label_at, super::common::validate_label_value(value));
            }
        }
    }
    match resolution {
        Resolution::None if !se.endpoints.is_empty() => {
            errors.add(&path.key("endpoints"), "NONE mode cannot set endpoints");
        }
        Resolution::DnsRoundRobin if se.endpoints.len() > 1 => {
            errors.add(
                &path.key("endpoints"),
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
            );
        }
        Resolution::Static if se.endpoints.is_empty() && se.workload_selector.is_none() => {
            errors.add(
                &path.key("endpoints"),
                "endpoints must be provided in STATIC resolution mode",
            );
        }
        _ => {}
    }
    for (i, endpoint) in se.endpoints.iter().enumerate() {
        let at = path.key("endpoints").index(i);
        workload_entry_fields(endpoint, &at, errors);
        if let Some(address) = &endpoint.address {
            if resolution == Resolution::Static
                && !address.starts_with("unix://")
                && address.parse::<std::net::IpAddr>().is_err()
            {
                errors.add(
                    &at.key("address"),
                    format!("endpoint address \"{address}\" must be an IP address in STATIC resolution mode"),
                );
            }
        } else {
            errors.add(&at.key("address"), "Address is required");
        }
        for name in endpoint.ports.keys() {
            if !se.ports.is_empty() && !names.contains(name.as_str()) {
                errors.add(
                    &at.key("ports").key(name),
                    format!("endpoint port \"{name}\" is not defined by the service entry"),
                );
            }
        }
    }
    export_to(&se.export_to, &path.key("exportTo"), errors);
    for (i, san) in se.subject_alt_names.iter().enumerate() {
        if san.is_empty() {
            errors.add(&path.key("subjectAltNames").index(i), "must not be empty");
        }
    }
}

/// The checks of a WorkloadEntry that also apply to ServiceEntry endpoints.
fn workload_entry_fields(we: &WorkloadEntry, path: &FieldPath, errors: &mut Errors) {
    if let Some(address) = &we.address {
        let at = path.key("address");
        if let Some(socket) = address.strip_prefix("unix://") {
            if socket.ends_with('/') {
                errors.add(&at, "UDS may not be a dir");
            } else if !socket.starts_with('/') && !socket.starts_with('@') {
                errors.add(&at, "UDS must be an absolute path or abstract socket");
            }
            if !we.ports.is_empty() {
                errors.add(&path.key("ports"), "UDS may not include ports");
            }
        } else if address.is_empty() {
            errors.add(&at, "Address is required");
        } else if address.parse::<std::net::IpAddr>().is_err() {
            errors.check(&at, validate_fqdn(address));
        }
    }
    for (name, port) in &we.ports {
        let at = path.key("ports").key(name);
        if !is_port_name(name) {
            errors.add(
                &path.key("ports"),
                format!("Invalid value: port name \"{name}\""),
            );
        }
        errors.check(&at, validate_port(*port));
    }
    labels(&we.labels, &path.key("labels"), errors);
}

/// IANA service names as Kubernetes accepts them for port names.
fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

pub(super) fn workload_entry(we: &WorkloadEntry, path: &FieldPath, errors: &mut Errors) {
    if we.address.is_none() && we.network.as_deref().is_none_or(str::is_empty) {
        errors.add(&path.key("address"), "Address is required");
    }
    workload_entry_fields(we, path, errors);
}

pub(super) fn workload_group(wg: &WorkloadGroup, path: &FieldPath, errors: &mut Errors) {
    if let Some(metadata) = &wg.metadata {
        labels(
            &metadata.labels,
            &path.key("metadata").key("labels"),
            errors,
        );
    }
    if let Some(template) = &wg.template {
        let at = path.key("template");
        if template.address.as_deref().is_some_and(|a| !a.is_empty()) {
            errors.add(
                &at.key("address"),
                "address is not allowed in a WorkloadGroup template",
            );
        }
        workload_entry_fields(template, &at, errors);
    }
    if let Some(probe) = &wg.probe {
        let at = path.key("probe");
        for (field, value) in [
            ("initialDelaySeconds", probe.initial_delay_seconds),
            ("timeoutSeconds", probe.timeout_seconds),
            ("periodSeconds", probe.period_seconds),
            ("successThreshold", probe.success_threshold),
            ("failureThreshold", probe.failure_threshold),
        ] {
            if value.is_some_and(|v| v < 0) {
                errors.add(&at.key(field), "must be non-negative");
            }
        }
        match &probe.check {
            None => errors.add(&at, "one of httpGet, tcpSocket, exec or grpc is required"),
            Some(HealthCheck::HttpGet(http)) => {
                let h_at = at.key("httpGet");
                errors.check(&h_at.key("port"), validate_port(http.port));
                for (i, header) in http.http_headers.iter().enumerate() {
                    let valid = !header.name.is_empty()
                        && header
                            .name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !valid {
                        errors.add(
                            &h_at.key("httpHeaders").index(i).key("name"),
                            format!(
                                "name \"{}\" in body should match '^[-_A-Za-z0-9]+$'",
                                header.name
                            ),
                        );
                    }
                }
            }
            Some(HealthCheck::TcpSocket(tcp)) => {
                errors.check(&at.key("tcpSocket").key("port"), validate_port(tcp.port));
            }
            Some(HealthCheck::Grpc(grpc)) => {
                errors.check(&at.key("grpc").key("port"), validate_port(grpc.port));
            }
            Some(HealthCheck::Exec(exec)) => {
                if exec.command.is_empty() {
                    errors.add(&at.key("exec").key("command"), "Required value");
                }
            }
        }
    }
}

pub(super) fn sidecar(sc: &Sidecar, path: &FieldPath, errors: &mut Errors) {
    if let Some(selector) = &sc.workload_selector {
        if selector.labels.is_empty() {
            errors.add(
                &path.key("workloadSelector").key("labels"),
                "sidecar: workloadSelector labels must not be empty",
            );
        }
        selector_labels(
            &selector.labels,
            &path.key("workloadSelector").key("labels"),
            errors,
        );
    }
    if sc.egress.is_empty()
        && sc.ingress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        errors.add(path, "sidecar: empty configuration provided");
    }
    let mut ingress_ports = BTreeSet::new();
    for (i, listener) in sc.ingress.iter().enumerate() {
        let at = path.key("ingress").index(i);
        match &listener.port {
            None => errors.add(
                &at.key("port"),
                "sidecar: port is required for ingress listeners",
            ),
            Some(port) => {
                errors.check(&at.key("port").key("number"), validate_port(port.number));
                errors.check(
                    &at.key("port").key("protocol"),
                    validate_protocol(&port.protocol),
                );
                if !ingress_ports.insert(port.number) {
                    errors.add(
                        &at.key("port"),
                        format!(
                            "sidecar: ports on ingress listeners must be unique, {} is repeated",
                            port.number
                        ),
                    );
                }
            }
        }
        if let Some(endpoint) = &listener.default_endpoint {
            if !endpoint.starts_with("unix://") {
                let valid = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
                    matches!(host, "127.0.0.1" | "0.0.0.0" | "[::1]" | "[::]" | "")
                        && port.parse::<u32>().is_ok_and(|p| validate_port(p).is_ok())
                });
                if !valid {
                    errors.add(
                        &at.key("defaultEndpoint"),
                        format!(
                            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, \
                             [::1]:<port>, [::]:<port>, :<port> or unix://<path>, got \"{endpoint}\""
                        ),
                    );
                }
            }
        }
        if let Some(tls) = &listener.tls {
            let protocol = listener
                .port
                .as_ref()
                .map(|p| p.protocol.to_ascii_uppercase())
                .unwrap_or_default();
            server_tls(tls, &protocol, &at.key("tls"), errors);
        }
    }
    for (i, listener) in sc.egress.iter().enumerate() {
        let at = path.key("egress").index(i);
        if let Some(port) = &listener.port {
            errors.check(&at.key("port").key("number"), validate_port(port.number));
            errors.check(
                &at.key("port").key("protocol"),
                validate_protocol(&port.protocol),
            );
        }
        if listener.hosts.is_empty() {
            errors.add(
                &at.key("hosts"),
                "sidecar: egress listener must contain at least one host",
            );
        }
        for (j, host) in listener.hosts.iter().enumerate() {
            let h_at = at.key("hosts").index(j);
            match host.split_once('/') {
                None => errors.add(
                    &h_at,
                    format!("sidecar: host \"{host}\" must be of form namespace/dnsName"),
                ),
                Some((ns, name)) => {
                    if !matches!(ns, "." | "*" | "~") && !is_dns1123_label(ns) {
                        errors.add(
                            &h_at,
                            format!("sidecar: invalid namespace \"{ns}\" in host \"{host}\""),
                        );
                    }
                    errors.check(&h_at, validate_wildcard_domain(name));
                }
            }
        }
    }
    if let Some(policy) = &sc.outbound_traffic_policy {
        if policy.egress_proxy.is_some() && policy.mode != Some(OutboundTrafficMode::AllowAny) {
            errors.add(
                &path.key("outboundTrafficPolicy").key("egressProxy"),
                "egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
            );
        }
        if let Some(proxy) = &policy.egress_proxy {
            validate_destination(
                proxy,
                &path.key("outboundTrafficPolicy").key("egressProxy"),
                errors,
            );
        }
    }
}

pub(super) fn envoy_filter(ef: &EnvoyFilter, path: &FieldPath, errors: &mut Errors) {
    if ef.workload_selector.is_some() && !ef.target_refs.is_empty() {
        errors.add(
            path,
            "only one of targetRefs or workloadSelector can be set",
        );
    }
    if let Some(selector) = &ef.workload_selector {
        selector_labels(
            &selector.labels,
            &path.key("workloadSelector").key("labels"),
            errors,
        );
    }
    for (i, patch) in ef.config_patches.iter().enumerate() {
        let at = path.key("configPatches").index(i);
        let Some(apply_to) = patch.apply_to.filter(|a| *a != ApplyTo::Invalid) else {
            errors.add(&at.key("applyTo"), "Envoy filter: missing applyTo");
            continue;
        };
        if let Some(m) = &patch.matches {
            let m_at = at.key("match");
            let is_waypoint_context = m.context == Some(PatchContext::Waypoint);
            let is_waypoint_match = matches!(m.object, Some(ObjectMatch::Waypoint(_)));
            if is_waypoint_context != is_waypoint_match && (is_waypoint_match || m.object.is_some())
            {
                errors.add(
                    &m_at,
                    "Invalid value: \"object\": only support waypointMatch when context is WAYPOINT",
                );
            }
            let object_kind_ok = matches!(
                (&m.object, apply_to),
                (None | Some(ObjectMatch::Waypoint(_)), _)
                    | (
                        Some(ObjectMatch::Listener(_)),
                        ApplyTo::Listener
                            | ApplyTo::FilterChain
                            | ApplyTo::NetworkFilter
                            | ApplyTo::HttpFilter
                            | ApplyTo::ListenerFilter,
                    )
                    | (
                        Some(ObjectMatch::RouteConfiguration(_)),
                        ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute,
                    )
                    | (Some(ObjectMatch::Cluster(_)), ApplyTo::Cluster)
            );
            if !object_kind_ok {
                errors.add(
                    &m_at,
                    format!(
                        "Envoy filter: applyTo {apply_to:?} does not fit the kind of object matched"
                    ),
                );
            }
            match &m.object {
                Some(ObjectMatch::Waypoint(w)) => {
                    if let Some(port) = w.port_number {
                        if let Err(e) = validate_port(port) {
                            errors.add(
                                &m_at.key("waypoint").key("portNumber"),
                                format!("Invalid value: \"integer\": {e}"),
                            );
                        }
                    }
                }
                Some(ObjectMatch::Listener(l)) => {
                    if let Some(port) = l.port_number {
                        errors.check(&m_at.key("listener").key("portNumber"), validate_port(port));
                    }
                }
                Some(ObjectMatch::Cluster(c)) => {
                    if let Some(port) = c.port_number {
                        errors.check(&m_at.key("cluster").key("portNumber"), validate_port(port));
                    }
                }
                Some(ObjectMatch::RouteConfiguration(r)) => {
                    if let Some(port) = r.port_number {
                        errors.check(
                            &m_at.key("routeConfiguration").key("portNumber"),
                            validate_port(port),
                        );
                    }
                }
                None => {}
            }
        }
        let Some(p) = &patch.patch else {
            errors.add(&at.key("patch"), "Envoy filter: missing patch");
            continue;
        };
        let operation = p.operation.unwrap_or(PatchOperation::Invalid);
        if operation == PatchOperation::Invalid {
            errors.add(
                &at.key("patch").key("operation"),
                "Envoy filter: missing patch operation",
            );
        }
        if operation != PatchOperation::Remove
            && operation != PatchOperation::Invalid
            && p.value.is_none()
        {
            errors.add(
                &at.key("patch").key("value"),
                "Envoy filter: missing patch value for non-remove operation",
            );
        }
        let insert = matches!(
            operation,
            PatchOperation::InsertBefore
                | PatchOperation::InsertAfter
                | PatchOperation::InsertFirst
        );
        let insertable = matches!(
            apply_to,
            ApplyTo::NetworkFilter
                | ApplyTo::HttpFilter
                | ApplyTo::ListenerFilter
                | ApplyTo::HttpRoute
                | ApplyTo::FilterChain
        );
        if insert && !insertable {
            errors.add(
                &at.key("patch").key("operation"),
                format!("Envoy filter: {operation:?} is not supported for applyTo {apply_to:?}"),
            );
        }
    }
}

pub(super) fn proxy_config(pc: &ProxyConfig, path: &FieldPath, errors: &mut Errors) {
    if let Some(concurrency) = pc.concurrency {
        if concurrency < 0 {
            errors.add(
                &path.key("concurrency"),
                "spec.concurrency in body should be greater than or equal to 0",
            );
        }
    }
    if let Some(selector) = &pc.selector {
        for key in selector.match_labels.keys() {
            if key.is_empty() {
                errors.add(
                    &path.key("selector").key("matchLabels"),
                    "key must not be empty",
                );
            }
        }
    }
}
