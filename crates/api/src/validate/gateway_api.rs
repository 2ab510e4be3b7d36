//! Validation of Gateway API resources, as their CRD schemas enforce it.

use std::collections::BTreeSet;

use super::Errors;
use super::common::{
    is_dns1123_subdomain, validate_header_name, validate_port, validate_regex,
    validate_wildcard_domain,
};
use crate::gateway_api::*;
use crate::load::de::unsupported_value;
use crate::path::FieldPath;

const LISTENER_PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS", "TCP", "UDP"];
const FILTER_TYPES: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
];

pub(super) fn gateway_class(gc: &GatewayClass, path: &FieldPath, errors: &mut Errors) {
    if gc.controller_name.is_empty() {
        errors.add(&path.key("controllerName"), "Required value");
    }
}

pub(super) fn gateway(gw: &Gateway, path: &FieldPath, errors: &mut Errors) {
    if gw.gateway_class_name.is_empty() {
        errors.add(&path.key("gatewayClassName"), "Required value");
    }
    if gw.listeners.is_empty() {
        errors.add(&path.key("listeners"), "Required value");
    }
    let mut names = BTreeSet::new();
    for (i, listener) in gw.listeners.iter().enumerate() {
        let at = path.key("listeners").index(i);
        if listener.name.is_empty() {
            errors.add(&at.key("name"), "Required value");
        } else if !names.insert(listener.name.as_str()) {
            errors.add(
                &at.key("name"),
                format!("Duplicate value: \"{}\"", listener.name),
            );
        }
        errors.check(&at.key("port"), validate_port(listener.port));
        let protocol_known = LISTENER_PROTOCOLS.contains(&listener.protocol.as_str())
            || listener.protocol.contains('/');
        if !protocol_known {
            errors.add(
                &at.key("protocol"),
                unsupported_value(&listener.protocol, LISTENER_PROTOCOLS),
            );
        }
        if let Some(hostname) = &listener.hostname {
            errors.check(&at.key("hostname"), hostname_check(hostname));
        }
        let needs_tls = matches!(listener.protocol.as_str(), "HTTPS" | "TLS");
        match &listener.tls {
            None if listener.protocol == "HTTPS" => {
                errors.add(
                    &at.key("tls"),
                    "tls must be specified for protocols ['HTTPS', 'TLS']",
                );
            }
            Some(_) if !needs_tls => {
                errors.add(
                    &at.key("tls"),
                    "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
                );
            }
            Some(tls) => {
                let terminate =
                    tls.mode.unwrap_or(TlsModeType::Terminate) == TlsModeType::Terminate;
                if terminate && tls.certificate_refs.is_empty() && tls.options.is_empty() {
                    errors.add(
                        &at.key("tls").key("certificateRefs"),
                        "certificateRefs or options must be specified when mode is Terminate",
                    );
                }
            }
            None => {}
        }
    }
}

fn hostname_check(hostname: &str) -> Result<(), String> {
    if hostname.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "hostname \"{hostname}\" must be a DNS name, not an IP address"
        ));
    }
    validate_wildcard_domain(hostname)
}

fn parent_refs(refs: &[ParentReference], path: &FieldPath, errors: &mut Errors) {
    for (i, parent) in refs.iter().enumerate() {
        let at = path.index(i);
        if parent.name.is_empty() {
            errors.add(&at.key("name"), "Required value");
        }
        if let Some(port) = parent.port {
            errors.check(&at.key("port"), validate_port(port));
        }
    }
}

fn hostnames(names: &[String], path: &FieldPath, errors: &mut Errors) {
    for (i, name) in names.iter().enumerate() {
        errors.check(&path.index(i), hostname_check(name));
    }
}

fn backend_refs(refs: &[BackendRef], path: &FieldPath, errors: &mut Errors) {
    for (i, backend) in refs.iter().enumerate() {
        let at = path.index(i);
        backend_ref(backend, &at, errors);
        for (j, filter) in backend.filters.iter().enumerate() {
            http_filter(filter, &at.key("filters").index(j), errors);
        }
    }
}

fn backend_ref(backend: &BackendRef, path: &FieldPath, errors: &mut Errors) {
    if backend.name.is_empty() {
        errors.add(&path.key("name"), "Required value");
    }
    let is_service = backend.group.as_deref().unwrap_or("").is_empty()
        && backend.kind.as_deref().unwrap_or("Service") == "Service";
    match backend.port {
        None if is_service => errors.add(&path.key("port"), "Must have port for Service reference"),
        Some(port) => errors.check(&path.key("port"), validate_port(port)),
        None => {}
    }
    if let Some(weight) = backend.weight {
        if !(0..=1_000_000).contains(&weight) {
            errors.add(
                &path.key("weight"),
                format!("weight must be in range [0, 1000000], got {weight}"),
            );
        }
    }
    if let Some(ns) = &backend.namespace {
        if !is_dns1123_subdomain(ns) {
            errors.add(
                &path.key("namespace"),
                format!("invalid namespace \"{ns}\""),
            );
        }
    }
}

fn http_filter(filter: &HttpRouteFilter, path: &FieldPath, errors: &mut Errors) {
    if !FILTER_TYPES.contains(&filter.filter_type.as_str()) && !filter.filter_type.contains('/') {
        errors.add(
            &path.key("type"),
            unsupported_value(&filter.filter_type, FILTER_TYPES),
        );
        return;
    }
    let present = match filter.filter_type.as_str() {
        "RequestHeaderModifier" => filter.request_header_modifier.is_some(),
        "ResponseHeaderModifier" => filter.response_header_modifier.is_some(),
        "RequestMirror" => filter.request_mirror.is_some(),
        "RequestRedirect" => filter.request_redirect.is_some(),
        "URLRewrite" => filter.url_rewrite.is_some(),
        "ExtensionRef" => filter.extension_ref.is_some(),
        "CORS" => filter.cors.is_some(),
        _ => true,
    };
    if !present {
        errors.add(
            path,
            format!(
                "filter of type {} must set its configuration",
                filter.filter_type
            ),
        );
    }
    for (field, modifier) in [
        ("requestHeaderModifier", &filter.request_header_modifier),
        ("responseHeaderModifier", &filter.response_header_modifier),
    ] {
        let Some(modifier) = modifier else { continue };
        let at = path.key(field);
        for (list, headers) in [("set", &modifier.set), ("add", &modifier.add)] {
            for (i, header) in headers.iter().enumerate() {
                errors.check(
                    &at.key(list).index(i).key("name"),
                    validate_header_name(&header.name),
                );
            }
        }
        for (i, name) in modifier.remove.iter().enumerate() {
            errors.check(&at.key("remove").index(i), validate_header_name(name));
        }
    }
    if let Some(mirror) = &filter.request_mirror {
        backend_ref(
            &mirror.backend_ref,
            &path.key("requestMirror").key("backendRef"),
            errors,
        );
    }
    if let Some(redirect) = &filter.request_redirect {
        let at = path.key("requestRedirect");
        if let Some(code) = redirect.status_code {
            if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                errors.add(
                    &at.key("statusCode"),
                    format!("Unsupported value: {code}: supported values: 301, 302, 303, 307, 308"),
                );
            }
        }
        if let Some(scheme) = &redirect.scheme {
            if !matches!(scheme.as_str(), "http" | "https") {
                errors.add(
                    &at.key("scheme"),
                    format!("Unsupported value: \"{scheme}\""),
                );
            }
        }
        if let Some(path_modifier) = &redirect.path {
            path_modifier_check(path_modifier, &at.key("path"), errors);
        }
    }
    if let Some(rewrite) = &filter.url_rewrite {
        if let Some(path_modifier) = &rewrite.path {
            path_modifier_check(path_modifier, &path.key("urlRewrite").key("path"), errors);
        }
    }
}

fn path_modifier_check(modifier: &HttpPathModifier, path: &FieldPath, errors: &mut Errors) {
    match modifier.modifier_type.as_str() {
        "ReplaceFullPath" if modifier.replace_full_path.is_none() => {
            errors.add(
                &path.key("replaceFullPath"),
                "replaceFullPath must be specified when type is set to 'ReplaceFullPath'",
            );
        }
        "ReplacePrefixMatch" if modifier.replace_prefix_match.is_none() => {
            errors.add(
                &path.key("replacePrefixMatch"),
                "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'",
            );
        }
        "ReplaceFullPath" | "ReplacePrefixMatch" => {}
        other => errors.add(
            &path.key("type"),
            unsupported_value(other, &["ReplaceFullPath", "ReplacePrefixMatch"]),
        ),
    }
}

pub(super) fn http_route(route: &HttpRoute, path: &FieldPath, errors: &mut Errors) {
    parent_refs(&route.parent_refs, &path.key("parentRefs"), errors);
    hostnames(&route.hostnames, &path.key("hostnames"), errors);
    for (i, rule) in route.rules.iter().enumerate() {
        let at = path.key("rules").index(i);
        for (j, m) in rule.matches.iter().enumerate() {
            let m_at = at.key("matches").index(j);
            if let Some(path_match) = &m.path {
                let value = path_match.value.as_deref().unwrap_or("/");
                match path_match.match_type.unwrap_or(PathMatchType::PathPrefix) {
                    PathMatchType::RegularExpression => {
                        errors.check(&m_at.key("path").key("value"), validate_regex(value))
                    }
                    _ => {
                        if !value.starts_with('/') {
                            errors.add(&m_at.key("path").key("value"), "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']");
                        }
                    }
                }
            }
            header_matches(&m.headers, &m_at.key("headers"), errors);
            for (k, q) in m.query_params.iter().enumerate() {
                if q.name.is_empty() {
                    errors.add(
                        &m_at.key("queryParams").index(k).key("name"),
                        "Required value",
                    );
                }
            }
            if let Some(method) = &m.method {
                const METHODS: &[&str] = &[
                    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
                ];
                if !METHODS.contains(&method.as_str()) {
                    errors.add(&m_at.key("method"), unsupported_value(method, METHODS));
                }
            }
        }
        for (j, filter) in rule.filters.iter().enumerate() {
            http_filter(filter, &at.key("filters").index(j), errors);
        }
        backend_refs(&rule.backend_refs, &at.key("backendRefs"), errors);
    }
}

fn header_matches(headers: &[HttpHeaderMatch], path: &FieldPath, errors: &mut Errors) {
    for (i, header) in headers.iter().enumerate() {
        let at = path.index(i);
        errors.check(&at.key("name"), validate_header_name(&header.name));
        if header.match_type == Some(ValueMatchType::RegularExpression) {
            errors.check(&at.key("value"), validate_regex(&header.value));
        }
    }
}

pub(super) fn grpc_route(route: &GrpcRoute, path: &FieldPath, errors: &mut Errors) {
    parent_refs(&route.parent_refs, &path.key("parentRefs"), errors);
    hostnames(&route.hostnames, &path.key("hostnames"), errors);
    for (i, rule) in route.rules.iter().enumerate() {
        let at = path.key("rules").index(i);
        for (j, m) in rule.matches.iter().enumerate() {
            let m_at = at.key("matches").index(j);
            if let Some(method) = &m.method {
                if method.service.is_none() && method.method.is_none() {
                    errors.add(
                        &m_at.key("method"),
                        "One or both of 'service' or 'method' must be specified",
                    );
                }
            }
            header_matches(&m.headers, &m_at.key("headers"), errors);
        }
        for (j, filter) in rule.filters.iter().enumerate() {
            http_filter(filter, &at.key("filters").index(j), errors);
        }
        backend_refs(&rule.backend_refs, &at.key("backendRefs"), errors);
    }
}

pub(super) fn tcp_route(route: &TcpRoute, path: &FieldPath, errors: &mut Errors) {
    parent_refs(&route.parent_refs, &path.key("parentRefs"), errors);
    l4_rules(&route.rules, path, errors);
}

pub(super) fn tls_route(route: &TlsRoute, path: &FieldPath, errors: &mut Errors) {
    parent_refs(&route.parent_refs, &path.key("parentRefs"), errors);
    hostnames(&route.hostnames, &path.key("hostnames"), errors);
    l4_rules(&route.rules, path, errors);
}

fn l4_rules(rules: &[L4RouteRule], path: &FieldPath, errors: &mut Errors) {
    if rules.is_empty() {
        errors.add(&path.key("rules"), "Required value");
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = path.key("rules").index(i);
        if rule.backend_refs.is_empty() {
            errors.add(&at.key("backendRefs"), "Required value");
        }
        backend_refs(&rule.backend_refs, &at.key("backendRefs"), errors);
    }
}

pub(super) fn reference_grant(grant: &ReferenceGrant, path: &FieldPath, errors: &mut Errors) {
    if grant.from.is_empty() {
        errors.add(&path.key("from"), "Required value");
    }
    if grant.to.is_empty() {
        errors.add(&path.key("to"), "Required value");
    }
    for (i, from) in grant.from.iter().enumerate() {
        let at = path.key("from").index(i);
        if from.kind.is_empty() {
            errors.add(&at.key("kind"), "Required value");
        }
        if from.namespace.is_empty() {
            errors.add(&at.key("namespace"), "Required value");
        }
    }
    for (i, to) in grant.to.iter().enumerate() {
        if to.kind.is_empty() {
            errors.add(&path.key("to").index(i).key("kind"), "Required value");
        }
    }
}
