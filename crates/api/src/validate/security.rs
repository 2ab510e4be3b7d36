//! Istio's validation of `security.istio.io` resources.

use super::Errors;
use super::common::{
    duration, selector_labels, validate_header_name, validate_ip_or_cidr, validate_port,
};
use crate::path::FieldPath;
use crate::security::*;
use crate::types::{MatchLabels, PolicyTargetReference};

pub(super) fn peer_authentication(pa: &PeerAuthentication, path: &FieldPath, errors: &mut Errors) {
    if let Some(selector) = &pa.selector {
        selector_labels(
            &selector.match_labels,
            &path.key("selector").key("matchLabels"),
            errors,
        );
    }
    if let Some(ports) = &pa.port_level_mtls {
        let at = path.key("portLevelMtls");
        if ports.is_empty() {
            errors.add(
                &at,
                "spec.portLevelMtls in body should have at least 1 properties",
            );
        }
        let has_selector = pa
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if !has_selector && !ports.is_empty() {
            errors.add(&at, "portLevelMtls requires selector");
        }
        for port in ports.keys() {
            errors.check(&at.key(&port.to_string()), validate_port(*port));
        }
    }
}

/// Checks `selector`, `targetRef` and `targetRefs` together, as Istio's policies share them.
fn policy_targets(
    selector: &Option<MatchLabels>,
    target_ref: &Option<PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    namespace: &str,
    path: &FieldPath,
    errors: &mut Errors,
) {
    let set = [
        selector.is_some(),
        target_ref.is_some(),
        !target_refs.is_empty(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        errors.add(path, "only one of targetRefs or selector can be set");
    }
    if let Some(selector) = selector {
        selector_labels(
            &selector.match_labels,
            &path.key("selector").key("matchLabels"),
            errors,
        );
    }
    if let Some(target) = target_ref {
        policy_target(target, namespace, &path.key("targetRef"), errors);
    }
    for (i, target) in target_refs.iter().enumerate() {
        policy_target(target, namespace, &path.key("targetRefs").index(i), errors);
    }
}

pub(super) fn policy_target(
    target: &PolicyTargetReference,
    namespace: &str,
    path: &FieldPath,
    errors: &mut Errors,
) {
    if target.name.is_empty() {
        errors.add(&path.key("name"), "Required value");
    }
    let group_ok = target.group.is_empty()
        || target.group.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !group_ok {
        errors.add(
            &path.key("group"),
            format!(
                "spec.targetRef.group in body should match \
                 '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', got \"{}\"",
                target.group
            ),
        );
    }
    let kind_ok = target
        .kind
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && target
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !target.kind.ends_with('-');
    if !kind_ok {
        errors.add(
            &path.key("kind"),
            format!(
                "spec.targetRef.kind in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$', got \"{}\"",
                target.kind
            ),
        );
    } else {
        let supported = matches!(
            (target.group.as_str(), target.kind.as_str()),
            ("", "Service")
                | ("networking.istio.io", "ServiceEntry")
                | ("gateway.networking.k8s.io", "Gateway" | "GatewayClass")
        );
        if !supported {
            errors.add(
                path,
                format!(
                    "Unsupported target kind \"{}/{}\": supported are core/Service, \
                     networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway",
                    target.group, target.kind
                ),
            );
        }
    }
    if !target.namespace.is_empty() && target.namespace != namespace {
        errors.add(
            &path.key("namespace"),
            "cross namespace referencing is not currently supported",
        );
    }
}

/// The attributes a `when` condition may test.
fn condition_key_valid(key: &str) -> bool {
    const PLAIN: &[&str] = &[
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    ];
    if PLAIN.contains(&key) {
        return true;
    }
    let bracketed = |prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
    };
    bracketed("request.headers")
        || bracketed("request.auth.claims")
        || (key.starts_with("experimental.envoy.filters.")
            && key.ends_with(']')
            && key.contains('['))
}

pub(super) fn authorization_policy(
    ap: &AuthorizationPolicy,
    namespace: &str,
    path: &FieldPath,
    errors: &mut Errors,
) {
    policy_targets(
        &ap.selector,
        &ap.target_ref,
        &ap.target_refs,
        namespace,
        path,
        errors,
    );
    let action = ap.action.unwrap_or(AuthorizationAction::Allow);
    match (&ap.provider, action) {
        (Some(_), AuthorizationAction::Custom) => {}
        (Some(_), _) => errors.add(
            &path.key("provider"),
            "provider must only be used with the CUSTOM action",
        ),
        (None, AuthorizationAction::Custom) => errors.add(
            &path.key("provider"),
            "the CUSTOM action requires a provider",
        ),
        (None, _) => {}
    }
    if let Some(provider) = &ap.provider {
        if provider.name.is_empty() {
            errors.add(&path.key("provider").key("name"), "Required value");
        }
    }
    if action == AuthorizationAction::Audit && ap.rules.is_empty() {
        errors.add(
            &path.key("rules"),
            "the AUDIT action requires at least one rule",
        );
    }
    for (i, rule) in ap.rules.iter().enumerate() {
        let at = path.key("rules").index(i);
        for (j, from) in rule.from.iter().enumerate() {
            source(&from.source, &at.key("from").index(j).key("source"), errors);
        }
        for (j, to) in rule.to.iter().enumerate() {
            operation(
                &to.operation,
                &at.key("to").index(j).key("operation"),
                errors,
            );
        }
        for (j, condition) in rule.when.iter().enumerate() {
            condition_rule(condition, &at.key("when").index(j), errors);
        }
    }
}

fn source(source: &Source, path: &FieldPath, errors: &mut Errors) {
    if *source == Source::default() {
        errors.add(path, "`from.source` must not be empty");
        return;
    }
    let has_service_accounts =
        !source.service_accounts.is_empty() || !source.not_service_accounts.is_empty();
    let has_namespaces_or_principals = !source.namespaces.is_empty()
        || !source.not_namespaces.is_empty()
        || !source.principals.is_empty()
        || !source.not_principals.is_empty();
    if has_service_accounts && has_namespaces_or_principals {
        errors.add(
            path,
            "Cannot set serviceAccounts with namespaces or principals",
        );
    }
    for (field, values) in [
        ("ipBlocks", &source.ip_blocks),
        ("notIpBlocks", &source.not_ip_blocks),
        ("remoteIpBlocks", &source.remote_ip_blocks),
        ("notRemoteIpBlocks", &source.not_remote_ip_blocks),
    ] {
        for (i, value) in values.iter().enumerate() {
            errors.check(&path.key(field).index(i), validate_ip_or_cidr(value));
        }
    }
    for (field, values) in [
        ("principals", &source.principals),
        ("notPrincipals", &source.not_principals),
        ("requestPrincipals", &source.request_principals),
        ("notRequestPrincipals", &source.not_request_principals),
        ("namespaces", &source.namespaces),
        ("notNamespaces", &source.not_namespaces),
        ("serviceAccounts", &source.service_accounts),
        ("notServiceAccounts", &source.not_service_accounts),
    ] {
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() {
                errors.add(&path.key(field).index(i), "empty value is not allowed");
            }
        }
    }
}

fn operation(op: &Operation, path: &FieldPath, errors: &mut Errors) {
    if *op == Operation::default() {
        errors.add(path, "`to.operation` must not be empty");
        return;
    }
    for (field, values) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
        for (i, value) in values.iter().enumerate() {
            let valid = value.parse::<u32>().is_ok_and(|p| validate_port(p).is_ok());
            if !valid {
                errors.add(
                    &path.key(field).index(i),
                    format!("invalid port \"{value}\""),
                );
            }
        }
    }
    for (field, values) in [("paths", &op.paths), ("notPaths", &op.not_paths)] {
        for (i, value) in values.iter().enumerate() {
            if let Err(e) = path_template(value) {
                errors.add(&path.key(field).index(i), e);
            }
        }
    }
    for (field, values) in [
        ("hosts", &op.hosts),
        ("notHosts", &op.not_hosts),
        ("methods", &op.methods),
        ("notMethods", &op.not_methods),
    ] {
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() {
                errors.add(&path.key(field).index(i), "empty value is not allowed");
            }
        }
    }
}

/// Paths are exact, `prefix*`, `*suffix`, `*`, or templates whose braces hold `*` or `**`.
fn path_template(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty path is not allowed".to_owned());
    }
    if !value.contains('{') && !value.contains('}') {
        return Ok(());
    }
    for segment in value.split('/') {
        if (segment.contains('{') || segment.contains('}')) && !matches!(segment, "{*}" | "{**}") {
            return Err(format!(
                "invalid path template \"{value}\": only {{*}} and {{**}} are supported, as whole segments"
            ));
        }
    }
    Ok(())
}

/// A check of one condition value.
type ValueCheck = fn(&str) -> Result<(), String>;

fn condition_rule(condition: &Condition, path: &FieldPath, errors: &mut Errors) {
    if condition.key.is_empty() {
        errors.add(&path.key("key"), "Required value");
        return;
    }
    if !condition_key_valid(&condition.key) {
        errors.add(
            &path.key("key"),
            format!("unknown attribute ({})", condition.key),
        );
        return;
    }
    if condition.values.is_empty() && condition.not_values.is_empty() {
        errors.add(
            path,
            format!(
                "at least one of values or notValues must be set for key {}",
                condition.key
            ),
        );
    }
    let check: Option<ValueCheck> = match condition.key.as_str() {
        "source.ip" | "remote.ip" | "destination.ip" => Some(validate_ip_or_cidr),
        "destination.port" => Some(|v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("invalid port \"{v}\""))
                .and_then(validate_port)
        }),
        _ => None,
    };
    if let Some(check) = check {
        for (field, values) in [
            ("values", &condition.values),
            ("notValues", &condition.not_values),
        ] {
            for (i, value) in values.iter().enumerate() {
                errors.check(&path.key(field).index(i), check(value));
            }
        }
    }
}

pub(super) fn request_authentication(
    ra: &RequestAuthentication,
    namespace: &str,
    path: &FieldPath,
    errors: &mut Errors,
) {
    policy_targets(
        &ra.selector,
        &ra.target_ref,
        &ra.target_refs,
        namespace,
        path,
        errors,
    );
    let mut issuers = std::collections::BTreeSet::new();
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        let at = path.key("jwtRules").index(i);
        if rule.issuer.is_empty() {
            errors.add(&at.key("issuer"), "issuer must be set");
        } else if !issuers.insert(rule.issuer.as_str()) {
            errors.add(
                &at.key("issuer"),
                format!("duplicate issuer \"{}\"", rule.issuer),
            );
        }
        non_empty_items(&rule.audiences, &at.key("audiences"), errors);
        non_empty_items(&rule.from_params, &at.key("fromParams"), errors);
        non_empty_items(&rule.from_cookies, &at.key("fromCookies"), errors);
        non_empty_items(
            &rule.space_delimited_claims,
            &at.key("spaceDelimitedClaims"),
            errors,
        );
        if let Some(uri) = &rule.jwks_uri {
            match url::Url::parse(uri) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
                Ok(_) | Err(_) => errors.add(
                    &at.key("jwksUri"),
                    format!("url must have scheme http:// or https://, got \"{uri}\""),
                ),
            }
        }
        for (j, header) in rule.from_headers.iter().enumerate() {
            let h_at = at.key("fromHeaders").index(j).key("name");
            if header.name.is_empty() {
                errors.add(&h_at, "Required value");
            } else {
                errors.check(&h_at, validate_header_name(&header.name));
            }
        }
        for (j, claim) in rule.output_claim_to_headers.iter().enumerate() {
            let c_at = at.key("outputClaimToHeaders").index(j);
            if claim.claim.is_empty() {
                errors.add(
                    &c_at.key("claim"),
                    "claim in body should be at least 1 chars long",
                );
            }
            if claim.header.is_empty() {
                errors.add(
                    &c_at.key("header"),
                    "header in body should be at least 1 chars long",
                );
            } else if !claim
                .header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errors.add(
                    &c_at.key("header"),
                    format!(
                        "header in body should match '^[-_A-Za-z0-9]+$', got \"{}\"",
                        claim.header
                    ),
                );
            }
        }
        if let Some(header) = &rule.output_payload_to_header {
            errors.check(
                &at.key("outputPayloadToHeader"),
                validate_header_name(header),
            );
        }
        duration(&rule.timeout, &at.key("timeout"), errors);
    }
}

fn non_empty_items(values: &[String], path: &FieldPath, errors: &mut Errors) {
    for (i, value) in values.iter().enumerate() {
        if value.is_empty() {
            errors.add(&path.index(i), "should be at least 1 chars long");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates() {
        for ok in [
            "/exact",
            "/prefix/*",
            "*/suffix",
            "*",
            "/path/template/{*}",
            "/{**}/path/template",
        ] {
            assert!(path_template(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a/{x}", "/a/{*}b"] {
            assert!(path_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn condition_keys() {
        for ok in [
            "request.headers[X-header]",
            "request.auth.claims[nested1][nested2]",
            "source.ip",
        ] {
            assert!(condition_key_valid(ok), "{ok}");
        }
        for bad in [
            "request.headers",
            "request.headers[]",
            "source.ipx",
            "request.auth.claims",
        ] {
            assert!(!condition_key_valid(bad), "{bad}");
        }
    }
}
