//! Checks shared by many kinds: names, hosts, ports, durations, regexes, labels.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Errors;
use crate::path::FieldPath;
use crate::types::{Duration, Percent};

/// Whether `s` is an RFC 1123 label: lowercase letters, digits and `-`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is an RFC 1123 subdomain: labels joined by `.`, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A DNS label as Istio accepts it in host names: case-insensitive letters, digits, `-`.
fn is_host_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks a host name that may start with a wildcard (`*`, `*.example.com`, `reviews`).
pub fn validate_wildcard_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host name must not be empty".to_owned());
    }
    if host.len() > 255 {
        return Err(format!(
            "host name \"{host}\" is longer than 255 characters"
        ));
    }
    if host == "*" {
        return Ok(());
    }
    let rest = match host.strip_prefix('*') {
        Some(rest) => match rest.strip_prefix('.') {
            Some(rest) => rest,
            None => {
                return Err(format!(
                    "invalid host \"{host}\": a wildcard must be the whole first label (\"*.example.com\")"
                ));
            }
        },
        None => host,
    };
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if rest.split('.').all(is_host_label) {
        Ok(())
    } else {
        Err(format!(
            "invalid host \"{host}\": must be a DNS name (labels of letters, digits and '-'), \
             optionally starting with \"*.\""
        ))
    }
}

/// Checks a host name without wildcards (a destination).
pub(crate) fn validate_fqdn(host: &str) -> Result<(), String> {
    if host.contains('*') {
        return Err(format!(
            "invalid host \"{host}\": wildcards are not allowed here"
        ));
    }
    validate_wildcard_domain(host)
}

/// Checks a port number.
pub(crate) fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port must be between 1-65535, got {port}"))
    }
}

/// Checks a duration as Istio does: at least 1ms, whole milliseconds.
pub(crate) fn validate_duration(duration: Duration) -> Result<(), String> {
    let d = duration.get();
    if d < std::time::Duration::from_millis(1) {
        return Err(format!("duration must be greater than 1ms, got {duration}"));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "only durations to ms precision are supported, got {duration}"
        ));
    }
    Ok(())
}

/// Checks a percentage.
pub(crate) fn validate_percent(value: f64) -> Result<(), String> {
    if (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("percentage {value} is out of range [0, 100]"))
    }
}

pub(crate) fn percent(p: &Option<Percent>, path: &FieldPath, errors: &mut Errors) {
    if let Some(p) = p {
        errors.check(&path.key("value"), validate_percent(p.value));
    }
}

pub(crate) fn duration(d: &Option<Duration>, path: &FieldPath, errors: &mut Errors) {
    if let Some(d) = d {
        errors.check(path, validate_duration(*d));
    }
}

/// Checks an RE2 regular expression (the `regex` crate's syntax is RE2's).
pub(crate) fn validate_regex(pattern: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(pattern)
        .map(|_| ())
        .map_err(|e| {
            let detail = e.to_string();
            let reason = detail.lines().last().unwrap_or(&detail).trim().to_owned();
            format!("\"{pattern}\" is not a valid regular expression: {reason}")
        })
}

/// Checks an HTTP header name (an RFC 7230 token).
pub(crate) fn validate_header_name(name: &str) -> Result<(), String> {
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() {
        Err("header name must not be empty".to_owned())
    } else if !name.bytes().all(is_token) {
        Err(format!(
            "header name \"{name}\" is not a valid HTTP header name"
        ))
    } else {
        Ok(())
    }
}

/// Checks an HTTP header value (no control characters but tab).
pub(crate) fn validate_header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        Err(format!(
            "header value {value:?} contains control characters"
        ))
    } else {
        Ok(())
    }
}

/// Checks an IP address or CIDR block.
pub(crate) fn validate_ip_or_cidr(value: &str) -> Result<(), String> {
    if value.parse::<IpAddr>().is_ok() || value.parse::<ipnet::IpNet>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "\"{value}\" is not a valid IP address or CIDR block"
        ))
    }
}

/// Checks Kubernetes labels: keys `[prefix/]name`, values of at most 63 name characters.
pub(crate) fn labels(labels: &BTreeMap<String, String>, path: &FieldPath, errors: &mut Errors) {
    for (key, value) in labels {
        let at = path.key(key);
        errors.check(&at, validate_label_key(key));
        errors.check(&at, validate_label_value(value));
    }
}

fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn validate_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key must not be empty".to_owned());
    }
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !is_dns1123_subdomain(p)) || !is_label_name(name) {
        return Err(format!(
            "invalid label key \"{key}\": must be [prefix/]name, name of at most 63 letters, \
             digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

pub(crate) fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value \"{value}\": at most 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Checks `exportTo`: `.`, `*`, `~` or namespace names, no duplicates, `*` alone.
pub(crate) fn export_to(values: &[String], path: &FieldPath, errors: &mut Errors) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, value) in values.iter().enumerate() {
        let at = path.index(i);
        if !seen.insert(value.as_str()) {
            errors.add(&at, format!("duplicate entry \"{value}\" in exportTo"));
        }
        if !matches!(value.as_str(), "." | "*" | "~") && !is_dns1123_label(value) {
            errors.add(
                &at,
                format!("invalid exportTo \"{value}\": must be \".\", \"*\", \"~\" or a namespace"),
            );
        }
    }
    if values.len() > 1 && values.iter().any(|v| v == "*" || v == "~") {
        errors.add(
            path,
            "\"*\" and \"~\" cannot be combined with other exportTo values",
        );
    }
}

/// The protocols Istio knows for ports (case-insensitive).
pub(crate) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP2",
    "HTTP_PROXY",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "UDP",
    "MONGO",
    "REDIS",
    "MYSQL",
];

pub(crate) fn validate_protocol(protocol: &str) -> Result<(), String> {
    if PROTOCOLS.iter().any(|p| p.eq_ignore_ascii_case(protocol)) {
        Ok(())
    } else {
        Err(format!(
            "invalid protocol \"{protocol}\", supported protocols are {}",
            PROTOCOLS.join(", ")
        ))
    }
}

/// Checks `[namespace/]gateway-name` references and the reserved name `mesh`.
pub(crate) fn validate_gateway_reference(reference: &str) -> Result<(), String> {
    if reference == "mesh" {
        return Ok(());
    }
    let (namespace, name) = match reference.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, reference),
    };
    if namespace.is_some_and(|ns| !is_dns1123_label(ns)) || !is_dns1123_subdomain(name) {
        return Err(format!(
            "invalid gateway \"{reference}\": must be \"mesh\" or [namespace/]name"
        ));
    }
    Ok(())
}

/// Label selectors that match workloads: no wildcards, valid keys and values.
pub(crate) fn selector_labels(
    labels: &BTreeMap<String, String>,
    path: &FieldPath,
    errors: &mut Errors,
) {
    for (key, value) in labels {
        let at = path.key(key);
        if key.contains('*') {
            errors.add(&at, "wildcard not allowed in label key match");
        } else if let Err(e) = validate_label_key(key) {
            errors.add(&at, e);
        }
        if value.contains('*') {
            errors.add(&at, "wildcard not allowed in label value match");
        } else if let Err(e) = validate_label_value(value) {
            errors.add(&at, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_domains() {
        for ok in [
            "*",
            "*.example.com",
            "reviews",
            "reviews.default.svc.cluster.local",
            "Example.COM",
        ] {
            assert!(validate_wildcard_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "foo*",
            "*foo.com",
            "a..b",
            "-a.com",
            "a_b.com",
            "foo.*.com",
        ] {
            assert!(validate_wildcard_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_need_millisecond_precision() {
        assert!(validate_duration("1ms".parse().unwrap()).is_ok());
        assert!(validate_duration("0s".parse().unwrap()).is_err());
        assert!(validate_duration("1.0005s".parse().unwrap()).is_err());
    }

    #[test]
    fn regexes_follow_re2() {
        assert!(validate_regex("^/api/v[0-9]+/.*$").is_ok());
        assert!(validate_regex("(unclosed").is_err());
        assert!(validate_regex("(?=lookahead)").is_err());
    }

    #[test]
    fn labels_follow_kubernetes() {
        assert!(validate_label_key("app.kubernetes.io/name").is_ok());
        assert!(validate_label_key("").is_err());
        assert!(validate_label_key("bad key").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1.2_3-a").is_ok());
        assert!(validate_label_value("-x").is_err());
    }
}
