//! The name table (Istio's NDS) of a sidecar: every service it sees that has an address, by
//! host name, with the short names its namespace may use — what its DNS proxy answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_xds::istio::{NameInfo, NameTable};

use super::XdsResource;
use super::clusters::OutboundView;
use crate::model::Registry;
use crate::node::ProxyNode;

/// The name table for `proxy`'s view of the mesh (one unnamed resource, as istiod sends it).
pub(super) fn name_table(proxy: &ProxyNode, view: &OutboundView<'_>) -> Arc<XdsResource> {
    let mut table = BTreeMap::new();
    for service in &view.services {
        // Headless services and ServiceEntries without addresses are left to the upstream
        // resolver, as Istio does without address auto-allocation.
        let Some(vip) = service.vip else { continue };
        let kubernetes = service.registry == Registry::Kubernetes;
        table.insert(
            service.id.hostname.clone(),
            NameInfo {
                ips: vec![vip.to_string()],
                registry: if kubernetes { "Kubernetes" } else { "External" }.to_owned(),
                shortname: if kubernetes {
                    service.name.clone()
                } else {
                    String::new()
                },
                namespace: if kubernetes {
                    service.id.namespace.clone()
                } else {
                    String::new()
                },
                alt_hosts: service.short_names(&proxy.namespace),
            },
        );
    }
    Arc::new(XdsResource::new("", &NameTable { table }))
}
