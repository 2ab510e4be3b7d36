//! Validation that agrees with Istio's: the rules its CRD schemas and its validating webhook
//! enforce, applied to one typed resource at a time. Cross-resource mistakes are the
//! analyzer's business ([`crate::analyze`]).

mod common;
mod gateway_api;
mod kubernetes;
mod networking;
mod security;
mod telemetry;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::path::FieldPath;
use crate::resource::Resource;

pub use common::{is_dns1123_label, is_dns1123_subdomain, validate_wildcard_domain};
pub use networking::grpc_status_code;

/// A problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, `spec.http[0].route`.
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
}

/// Collects the problems of one resource.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.clone(),
            message: message.into(),
        });
    }

    /// Adds the error of a check, if any.
    pub(crate) fn check(&mut self, path: &FieldPath, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(path, message);
        }
    }
}

/// Validates one resource; an empty list means it is valid.
pub fn validate(resource: &Resource) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let root = FieldPath::root();
    validate_metadata(resource, &root.key("metadata"), &mut errors);
    let spec = root.key("spec");
    let namespace = resource.namespace_or_default().unwrap_or("");
    match resource {
        Resource::VirtualService(o) => networking::virtual_service(&o.spec, &spec, &mut errors),
        Resource::DestinationRule(o) => networking::destination_rule(&o.spec, &spec, &mut errors),
        Resource::Gateway(o) => networking::gateway(&o.spec, &spec, &mut errors),
        Resource::ServiceEntry(o) => networking::service_entry(&o.spec, &spec, &mut errors),
        Resource::WorkloadEntry(o) => networking::workload_entry(&o.spec, &spec, &mut errors),
        Resource::WorkloadGroup(o) => networking::workload_group(&o.spec, &spec, &mut errors),
        Resource::Sidecar(o) => networking::sidecar(&o.spec, &spec, &mut errors),
        Resource::EnvoyFilter(o) => networking::envoy_filter(&o.spec, &spec, &mut errors),
        Resource::ProxyConfig(o) => networking::proxy_config(&o.spec, &spec, &mut errors),
        Resource::PeerAuthentication(o) => {
            security::peer_authentication(&o.spec, &spec, &mut errors)
        }
        Resource::AuthorizationPolicy(o) => {
            security::authorization_policy(&o.spec, namespace, &spec, &mut errors)
        }
        Resource::RequestAuthentication(o) => {
            security::request_authentication(&o.spec, namespace, &spec, &mut errors)
        }
        Resource::Telemetry(o) => telemetry::telemetry(&o.spec, namespace, &spec, &mut errors),
        Resource::WasmPlugin(o) => telemetry::wasm_plugin(&o.spec, namespace, &spec, &mut errors),
        Resource::GatewayClass(o) => gateway_api::gateway_class(&o.spec, &spec, &mut errors),
        Resource::KubernetesGateway(o) => gateway_api::gateway(&o.spec, &spec, &mut errors),
        Resource::HttpRoute(o) => gateway_api::http_route(&o.spec, &spec, &mut errors),
        Resource::GrpcRoute(o) => gateway_api::grpc_route(&o.spec, &spec, &mut errors),
        Resource::TcpRoute(o) => gateway_api::tcp_route(&o.spec, &spec, &mut errors),
        Resource::TlsRoute(o) => gateway_api::tls_route(&o.spec, &spec, &mut errors),
        Resource::ReferenceGrant(o) => gateway_api::reference_grant(&o.spec, &spec, &mut errors),
        Resource::Service(s) => kubernetes::service(s, &spec, &mut errors),
        Resource::Deployment(d) => kubernetes::deployment(d, &spec, &mut errors),
        Resource::Pod(p) => kubernetes::pod(p, &spec, &mut errors),
        Resource::Namespace(_)
        | Resource::ServiceAccount(_)
        | Resource::Endpoints(_)
        | Resource::Secret(_)
        | Resource::ConfigMap(_)
        | Resource::EndpointSlice(_)
        | Resource::Ingress(_) => {}
    }
    errors.0
}

fn validate_metadata(resource: &Resource, path: &FieldPath, errors: &mut Errors) {
    let meta: &ObjectMeta = resource.metadata();
    match meta.name.as_deref() {
        None | Some("") => errors.add(&path.key("name"), "Required value"),
        Some(name) => {
            if !is_dns1123_subdomain(name) {
                errors.add(
                    &path.key("name"),
                    format!(
                        "invalid name \"{name}\": must be a lowercase RFC 1123 subdomain \
                         (letters, digits, '-' and '.', starting and ending with a letter or digit)"
                    ),
                );
            }
        }
    }
    if let Some(namespace) = meta.namespace.as_deref() {
        if !is_dns1123_label(namespace) {
            errors.add(
                &path.key("namespace"),
                format!("invalid namespace \"{namespace}\": must be a lowercase RFC 1123 label"),
            );
        }
    }
    if let Some(labels) = &meta.labels {
        common::labels(labels, &path.key("labels"), errors);
    }
}

#[cfg(test)]
mod tests;
