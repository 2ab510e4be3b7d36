//! Istio's validation of `Telemetry` and `WasmPlugin`.

use std::collections::BTreeSet;

use super::Errors;
use super::common::{duration, selector_labels, validate_percent, validate_port};
use super::security::policy_target;
use crate::extensions::{EnvValueSource, WasmPlugin};
use crate::path::FieldPath;
use crate::telemetry::{MetricName, TagOperation, Telemetry};

fn providers(providers: &[crate::telemetry::ProviderRef], path: &FieldPath, errors: &mut Errors) {
    for (i, provider) in providers.iter().enumerate() {
        if provider.name.is_empty() {
            errors.add(
                &path.index(i).key("name"),
                "name in body should be at least 1 chars long",
            );
        }
    }
}

pub(super) fn telemetry(t: &Telemetry, namespace: &str, path: &FieldPath, errors: &mut Errors) {
    let targets = [
        t.selector.is_some(),
        t.target_ref.is_some(),
        !t.target_refs.is_empty(),
    ];
    if targets.iter().filter(|s| **s).count() > 1 {
        errors.add(path, "only one of targetRefs or selector can be set");
    }
    if let Some(selector) = &t.selector {
        selector_labels(
            &selector.match_labels,
            &path.key("selector").key("matchLabels"),
            errors,
        );
    }
    if let Some(target) = &t.target_ref {
        policy_target(target, namespace, &path.key("targetRef"), errors);
    }
    for (i, target) in t.target_refs.iter().enumerate() {
        policy_target(target, namespace, &path.key("targetRefs").index(i), errors);
    }
    for (i, tracing) in t.tracing.iter().enumerate() {
        let at = path.key("tracing").index(i);
        providers(&tracing.providers, &at.key("providers"), errors);
        if let Some(p) = tracing.random_sampling_percentage {
            errors.check(&at.key("randomSamplingPercentage"), validate_percent(p));
        }
        for name in tracing.custom_tags.keys() {
            if name.is_empty() {
                errors.add(&at.key("customTags"), "tag name must not be empty");
            }
        }
    }
    for (i, metrics) in t.metrics.iter().enumerate() {
        let at = path.key("metrics").index(i);
        providers(&metrics.providers, &at.key("providers"), errors);
        duration(
            &metrics.reporting_interval,
            &at.key("reportingInterval"),
            errors,
        );
        for (j, over) in metrics.overrides.iter().enumerate() {
            let o_at = at.key("overrides").index(j);
            if let Some(MetricName::Custom(name)) =
                over.selector.as_ref().and_then(|s| s.metric.as_ref())
            {
                if name.is_empty() {
                    errors.add(
                        &o_at.key("match").key("customMetric"),
                        "customMetric in body should be at least 1 chars long",
                    );
                }
            }
            for (tag, tag_override) in &over.tag_overrides {
                let t_at = o_at.key("tagOverrides").key(tag);
                match tag_override.operation {
                    Some(TagOperation::Upsert) if tag_override.value.is_none() => {
                        errors.add(&t_at, "value must be set when operation is UPSERT");
                    }
                    Some(TagOperation::Remove) if tag_override.value.is_some() => {
                        errors.add(&t_at, "value must not be set when operation is REMOVE");
                    }
                    _ => {}
                }
            }
        }
    }
    for (i, logging) in t.access_logging.iter().enumerate() {
        let at = path.key("accessLogging").index(i);
        providers(&logging.providers, &at.key("providers"), errors);
    }
}

const WASM_SCHEMES: &[&str] = &["http", "https", "oci", "file"];

/// `url` is a URL with a supported scheme, or an image reference (read as `http://…`).
fn wasm_url(value: &str) -> Result<(), String> {
    let scheme_ok = |u: &url::Url| WASM_SCHEMES.contains(&u.scheme());
    let valid = match url::Url::parse(value) {
        Ok(parsed) => scheme_ok(&parsed),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            url::Url::parse(&format!("http://{value}")).is_ok_and(|u| scheme_ok(&u))
        }
        Err(_) => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "url must have schema one of [http, https, file, oci], got \"{value}\""
        ))
    }
}

pub(super) fn wasm_plugin(w: &WasmPlugin, namespace: &str, path: &FieldPath, errors: &mut Errors) {
    let targets = [
        w.selector.is_some(),
        w.target_ref.is_some(),
        !w.target_refs.is_empty(),
    ];
    if targets.iter().filter(|s| **s).count() > 1 {
        errors.add(path, "only one of targetRefs or selector can be set");
    }
    if let Some(selector) = &w.selector {
        selector_labels(
            &selector.match_labels,
            &path.key("selector").key("matchLabels"),
            errors,
        );
    }
    if let Some(target) = &w.target_ref {
        policy_target(target, namespace, &path.key("targetRef"), errors);
    }
    for (i, target) in w.target_refs.iter().enumerate() {
        policy_target(target, namespace, &path.key("targetRefs").index(i), errors);
    }
    match w.url.as_deref() {
        None => errors.add(&path.key("url"), "Required value"),
        Some("") => errors.add(
            &path.key("url"),
            "spec.url in body should be at least 1 chars long",
        ),
        Some(url) => errors.check(&path.key("url"), wasm_url(url)),
    }
    if let Some(sha) = &w.sha256 {
        let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            errors.add(
                &path.key("sha256"),
                "spec.sha256 in body should match '(^$|^(sha256:)?[a-f0-9]{64}$)'",
            );
        }
    }
    for (field, value) in [
        ("imagePullSecret", &w.image_pull_secret),
        ("pluginName", &w.plugin_name),
    ] {
        if value.as_deref() == Some("") {
            errors.add(
                &path.key(field),
                format!("spec.{field} in body should be at least 1 chars long"),
            );
        }
    }
    if let Some(vm) = &w.vm_config {
        let mut names = BTreeSet::new();
        for (i, env) in vm.env.iter().enumerate() {
            let at = path.key("vmConfig").key("env").index(i);
            if env.name.is_empty() {
                errors.add(
                    &at.key("name"),
                    "spec.vmConfig.env[].name in body should be at least 1 chars long",
                );
            } else if !names.insert(env.name.as_str()) {
                errors.add(
                    &at.key("name"),
                    format!("Duplicate value: \"{}\"", env.name),
                );
            }
            if env.value.is_some() && env.value_from == Some(EnvValueSource::Host) {
                errors.add(
                    &at.key("value"),
                    "value may only be set when valueFrom is INLINE",
                );
            }
        }
    }
    for (i, selector) in w.matches.iter().enumerate() {
        for (j, port) in selector.ports.iter().enumerate() {
            let at = path
                .key("match")
                .index(i)
                .key("ports")
                .index(j)
                .key("number");
            if port.number == 0 {
                errors.add(&at, "Required value");
            } else {
                errors.check(&at, validate_port(port.number));
            }
        }
    }
}
