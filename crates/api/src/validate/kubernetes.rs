//! Validation of the Kubernetes kinds Bosun runs: what the API server would refuse.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Errors;
use super::common::{is_dns1123_label, labels, validate_port};
use crate::path::FieldPath;

pub(super) fn service(service: &Service, path: &FieldPath, errors: &mut Errors) {
    let Some(spec) = &service.spec else { return };
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = path.key("ports").index(i);
        match u32::try_from(port.port) {
            Ok(number) => errors.check(&at.key("port"), validate_port(number)),
            Err(_) => errors.add(
                &at.key("port"),
                format!("port must be between 1-65535, got {}", port.port),
            ),
        }
        match port.name.as_deref() {
            None | Some("") if ports.len() > 1 => {
                errors.add(
                    &at.key("name"),
                    "Required value: a name is required when a Service has several ports",
                );
            }
            Some(name) if !name.is_empty() => {
                if !is_dns1123_label(name) {
                    errors.add(
                        &at.key("name"),
                        format!("invalid port name \"{name}\": must be a lowercase RFC 1123 label"),
                    );
                }
                if !names.insert(name) {
                    errors.add(&at.key("name"), format!("Duplicate value: \"{name}\""));
                }
            }
            _ => {}
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !numbers.insert((port.port, protocol)) {
            errors.add(
                &at,
                format!("Duplicate value: port {} {protocol}", port.port),
            );
        }
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            errors.add(
                &at.key("protocol"),
                crate::load::de::unsupported_value(protocol, &["TCP", "UDP", "SCTP"]),
            );
        }
        if let Some(target) = &port.target_port {
            target_port(target, &at.key("targetPort"), errors);
        }
    }
    if let Some(selector) = &spec.selector {
        labels(selector, &path.key("selector"), errors);
    }
}

fn target_port(target: &IntOrString, path: &FieldPath, errors: &mut Errors) {
    match target {
        IntOrString::Int(n) => match u32::try_from(*n) {
            Ok(number) => errors.check(path, validate_port(number)),
            Err(_) => errors.add(path, format!("port must be between 1-65535, got {n}")),
        },
        IntOrString::String(name) => {
            let valid = !name.is_empty()
                && name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && name.bytes().any(|b| b.is_ascii_lowercase());
            if !valid {
                errors.add(path, format!("invalid port name \"{name}\""));
            }
        }
    }
}

pub(super) fn deployment(deployment: &Deployment, path: &FieldPath, errors: &mut Errors) {
    let Some(spec) = &deployment.spec else {
        errors.add(path, "Required value");
        return;
    };
    if spec.replicas.is_some_and(|r| r < 0) {
        errors.add(&path.key("replicas"), "must be greater than or equal to 0");
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    if selector.is_empty()
        && spec
            .selector
            .match_expressions
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    {
        errors.add(
            &path.key("selector"),
            "Required value: empty selector is invalid for deployment",
        );
    }
    if selector
        .iter()
        .any(|(k, v)| template_labels.get(k) != Some(v))
    {
        errors.add(
            &path.key("template").key("metadata").key("labels"),
            "Invalid value: `selector` does not match template `labels`",
        );
    }
    match &spec.template.spec {
        Some(pod_spec) => pod_spec_check(pod_spec, &path.key("template").key("spec"), errors),
        None => errors.add(&path.key("template").key("spec"), "Required value"),
    }
}

pub(super) fn pod(pod: &Pod, path: &FieldPath, errors: &mut Errors) {
    match &pod.spec {
        Some(spec) => pod_spec_check(spec, path, errors),
        None => errors.add(path, "Required value"),
    }
}

fn pod_spec_check(spec: &PodSpec, path: &FieldPath, errors: &mut Errors) {
    if spec.containers.is_empty() {
        errors.add(&path.key("containers"), "Required value");
    }
    let mut names = BTreeSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let at = path.key("containers").index(i);
        if container.name.is_empty() {
            errors.add(&at.key("name"), "Required value");
        } else if !is_dns1123_label(&container.name) {
            errors.add(
                &at.key("name"),
                format!("invalid container name \"{}\"", container.name),
            );
        } else if !names.insert(container.name.as_str()) {
            errors.add(
                &at.key("name"),
                format!("Duplicate value: \"{}\"", container.name),
            );
        }
        for (j, port) in container
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match u32::try_from(port.container_port) {
                Ok(number) => errors.check(
                    &at.key("ports").index(j).key("containerPort"),
                    validate_port(number),
                ),
                Err(_) => errors.add(
                    &at.key("ports").index(j).key("containerPort"),
                    "port must be between 1-65535",
                ),
            }
        }
    }
}
