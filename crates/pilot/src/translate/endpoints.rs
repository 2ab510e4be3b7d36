//! EDS: the endpoints of each cluster, filtered by subset labels and grouped by locality.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_xds::pb::envoy::config::core::v3::{
    Address, Locality, SocketAddress, address, socket_address::PortSpecifier,
};
use bosun_xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use bosun_xds::pb::google::protobuf::UInt32Value;

use super::XdsResource;
use crate::context::PushContext;
use crate::model::{Endpoint, labels_match};

/// A socket address.
pub(crate) fn socket_address(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// Endpoints (those with the subset's labels) grouped by locality, each group weighted by
/// the sum of its endpoints' weights.
pub(super) fn locality_groups(
    endpoints: &[Endpoint],
    subset_labels: Option<&BTreeMap<String, String>>,
) -> Vec<LocalityLbEndpoints> {
    let mut groups: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    for endpoint in endpoints
        .iter()
        .filter(|e| subset_labels.is_none_or(|labels| labels_match(labels, &e.labels)))
    {
        groups.entry(&endpoint.locality).or_default().push(endpoint);
    }
    groups
        .into_iter()
        .map(|(locality, endpoints)| {
            let mut parts = locality.split('/');
            let locality = Locality {
                region: parts.next().unwrap_or("").to_owned(),
                zone: parts.next().unwrap_or("").to_owned(),
                sub_zone: parts.next().unwrap_or("").to_owned(),
            };
            LocalityLbEndpoints {
                locality: Some(locality),
                load_balancing_weight: Some(UInt32Value {
                    value: endpoints.iter().map(|e| e.weight).sum(),
                }),
                lb_endpoints: endpoints
                    .into_iter()
                    .map(|e| LbEndpoint {
                        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
                            address: Some(socket_address(&e.address, e.port)),
                            ..Default::default()
                        })),
                        load_balancing_weight: Some(UInt32Value { value: e.weight }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        })
        .collect()
}

/// A one-endpoint assignment.
pub(crate) fn static_assignment(cluster: &str, address: &str, port: u16) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
                    address: Some(socket_address(address, port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The assignment of an outbound cluster (`outbound|port|subset|host`), or `None` for a
/// name that is not one.
pub fn load_assignment(context: &PushContext, cluster: &str) -> Option<ClusterLoadAssignment> {
    let mut parts = cluster.splitn(4, '|');
    let (Some("outbound"), Some(port), Some(subset), Some(hostname)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let port: u16 = port.parse().ok()?;
    let service = context.registry.first_named(hostname)?;
    let subset = (!subset.is_empty()).then_some(subset);
    let dr = context.destination_rule_for(&service.id.namespace, hostname, &service.id.namespace);
    let labels = super::clusters::subset_labels(dr.map(|d| &**d), subset);
    // A subset no rule defines selects nothing, as in Istio.
    if subset.is_some() && labels.is_none() {
        return Some(ClusterLoadAssignment {
            cluster_name: cluster.to_owned(),
            ..Default::default()
        });
    }
    Some(ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: locality_groups(context.registry.endpoints_of(&service.id, port), labels),
        ..Default::default()
    })
}

/// The assignment of a cluster, encoded once per push.
pub(super) fn cached_load_assignment(
    context: &PushContext,
    cluster: &str,
) -> Option<Arc<XdsResource>> {
    let cache = |map: &std::sync::Mutex<std::collections::HashMap<String, Arc<XdsResource>>>| {
        map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .cloned()
    };
    if let Some(found) = cache(&context.load_assignments) {
        return Some(found);
    }
    let assignment = load_assignment(context, cluster)?;
    let resource = Arc::new(XdsResource::new(cluster, &assignment));
    context
        .load_assignments
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(cluster.to_owned(), resource.clone());
    Some(resource)
}
