//! Istio config → Envoy v3 resources, per connected proxy, with Istio's names and semantics.
//!
//! Resources every proxy with the same outbound view shares (clusters, outbound listeners and
//! route tables of sidecars in one namespace) are built once per push and shared by `Arc`;
//! only what depends on the proxy itself (its inbound side, its own addresses) is built per
//! proxy.

mod clusters;
mod endpoints;
mod gateway;
mod listeners;
mod names;
mod routes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bosun_xds::pb::envoy::config::core::v3::Metadata;
use bosun_xds::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, config_source::ConfigSourceSpecifier,
};
use bosun_xds::pb::google::protobuf::{
    Any, Duration as ProtoDuration, Struct, Value, value::Kind as ValueKind,
};
use prost::{Message, Name};

use crate::context::PushContext;
use crate::node::{Capture, ProxyNode, ProxyType};

pub use endpoints::load_assignment;
pub(crate) use endpoints::{socket_address, static_assignment as load_assignment_for};

/// `type.googleapis.com/envoy.config.cluster.v3.Cluster`.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment`.
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `type.googleapis.com/envoy.config.listener.v3.Listener`.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `type.googleapis.com/envoy.config.route.v3.RouteConfiguration`.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// `type.googleapis.com/istio.networking.nds.v1.NameTable`: Istio's name table (NDS), for
/// the DNS proxy beside a sidecar.
pub const NAME_TABLE_TYPE: &str = bosun_xds::TypeUrl::NAME_TABLE;

/// The Envoy resource types pilot serves, in the order a push sends them (clusters and their
/// endpoints before the listeners and routes that use them, as Envoy expects over ADS).
pub const PUSH_ORDER: [&str; 4] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

/// Every type pilot serves, in push order: Envoy's, then the name table.
pub const SERVED_TYPES: [&str; 5] = [
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    NAME_TABLE_TYPE,
];

/// The short name of a type URL as istioctl prints it (`CDS`, `EDS`, `LDS`, `RDS`).
pub fn short_type_name(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER_TYPE => "CDS",
        ENDPOINT_TYPE => "EDS",
        LISTENER_TYPE => "LDS",
        ROUTE_TYPE => "RDS",
        NAME_TABLE_TYPE => "NDS",
        _ => "?",
    }
}

/// Cluster name of unknown destinations passed through.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Cluster name of refused destinations.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Cluster name of inbound traffic to ports no service declares.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The outbound capture port.
pub const VIRTUAL_OUTBOUND_PORT: u16 = 15001;
/// The inbound capture port.
pub const VIRTUAL_INBOUND_PORT: u16 = 15006;
/// The route table of the outbound HTTP proxy listener (`NONE` capture mode).
pub const HTTP_PROXY_ROUTE: &str = "http_proxy";

/// One encoded resource with its version (a hash of its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsResource {
    /// Its name.
    pub name: String,
    /// The resource.
    pub resource: Any,
    /// Its version.
    pub version: String,
}

impl XdsResource {
    /// Encodes a message.
    pub fn new<M: Message + Name>(name: impl Into<String>, message: &M) -> Self {
        let value = message.encode_to_vec();
        let mut hasher = std::hash::DefaultHasher::new();
        value.hash(&mut hasher);
        XdsResource {
            name: name.into(),
            resource: Any {
                type_url: M::type_url(),
                value,
            },
            version: format!("{:016x}", hasher.finish()),
        }
    }
}

/// Resources of one type, by name.
pub type ResourceMap = BTreeMap<String, Arc<XdsResource>>;

/// Everything pilot sends one proxy.
#[derive(Clone, Debug, Default)]
pub struct ProxyResources {
    /// CDS.
    pub clusters: ResourceMap,
    /// EDS, for every EDS cluster.
    pub endpoints: ResourceMap,
    /// LDS.
    pub listeners: ResourceMap,
    /// RDS.
    pub routes: ResourceMap,
    /// NDS: one name table (sidecars).
    pub name_tables: ResourceMap,
}

impl ProxyResources {
    /// The resources of one type.
    pub fn of_type(&self, type_url: &str) -> Option<&ResourceMap> {
        match type_url {
            CLUSTER_TYPE => Some(&self.clusters),
            ENDPOINT_TYPE => Some(&self.endpoints),
            LISTENER_TYPE => Some(&self.listeners),
            ROUTE_TYPE => Some(&self.routes),
            NAME_TABLE_TYPE => Some(&self.name_tables),
            _ => None,
        }
    }
}

/// What sidecars (or routers) with the same view of the mesh share.
#[derive(Debug, Default)]
pub struct OutboundScope {
    /// Outbound clusters and the special ones.
    pub clusters: Vec<Arc<XdsResource>>,
    /// Names of the clusters that take endpoints over EDS.
    pub eds_clusters: Vec<String>,
    /// Outbound listeners (sidecars).
    pub listeners: Vec<Arc<XdsResource>>,
    /// Outbound route tables.
    pub routes: Vec<Arc<XdsResource>>,
    /// The names the workloads may resolve (sidecars).
    pub name_table: Option<Arc<XdsResource>>,
}

/// Builds everything a proxy is sent.
pub fn generate(context: &PushContext, proxy: &ProxyNode) -> ProxyResources {
    let scope = outbound_scope(context, proxy);
    let mut out = ProxyResources::default();
    let insert = |map: &mut ResourceMap, r: &Arc<XdsResource>| {
        map.insert(r.name.clone(), r.clone());
    };
    for r in &scope.clusters {
        insert(&mut out.clusters, r);
    }
    for r in &scope.listeners {
        insert(&mut out.listeners, r);
    }
    for r in &scope.routes {
        insert(&mut out.routes, r);
    }
    if let Some(table) = &scope.name_table {
        insert(&mut out.name_tables, table);
    }
    for name in &scope.eds_clusters {
        if let Some(cla) = endpoints::cached_load_assignment(context, name) {
            insert(&mut out.endpoints, &cla);
        }
    }
    match proxy.proxy_type {
        ProxyType::Sidecar => {
            let inbound = listeners::inbound(context, proxy);
            for r in inbound.clusters.iter().chain(inbound.listeners.iter()) {
                let map = if r.resource.type_url == CLUSTER_TYPE {
                    &mut out.clusters
                } else {
                    &mut out.listeners
                };
                insert(map, r);
            }
            if let Capture::None { .. } = proxy.capture {
                let listener = listeners::http_proxy_listener(proxy);
                insert(&mut out.listeners, &listener);
            }
        }
        ProxyType::Router => {
            let gateway = gateway::generate(context, proxy);
            for r in &gateway.listeners {
                insert(&mut out.listeners, r);
            }
            for r in &gateway.routes {
                insert(&mut out.routes, r);
            }
        }
    }
    out
}

/// The key of the outbound view a proxy shares with others.
fn scope_key(context: &PushContext, proxy: &ProxyNode) -> String {
    let sidecar = context
        .sidecar_for(proxy)
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .unwrap_or_default();
    let capture = match proxy.capture {
        Capture::Iptables => "iptables",
        Capture::None { .. } => "none",
    };
    let labels = if context.has_source_label_matches {
        format!("{:?}", proxy.labels)
    } else {
        String::new()
    };
    format!(
        "{}|{}|{sidecar}|{capture}|{labels}",
        proxy.proxy_type, proxy.namespace
    )
}

fn outbound_scope(context: &PushContext, proxy: &ProxyNode) -> Arc<OutboundScope> {
    let key = scope_key(context, proxy);
    let cached = context
        .scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(scope) = cached {
        return scope;
    }
    // Built outside the lock: two connections may race to build the same scope, and both
    // results are equal.
    let scope = Arc::new(build_outbound_scope(context, proxy));
    context
        .scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, scope.clone());
    scope
}

fn build_outbound_scope(context: &PushContext, proxy: &ProxyNode) -> OutboundScope {
    let view = clusters::OutboundView::new(context, proxy);
    let (clusters, eds_clusters) = clusters::outbound(context, proxy, &view);
    let mut scope = OutboundScope {
        clusters,
        eds_clusters,
        ..Default::default()
    };
    if proxy.proxy_type == ProxyType::Sidecar {
        let allow_any = context.allow_any(view.sidecar.as_deref());
        scope.routes = routes::sidecar_route_tables(context, proxy, &view, allow_any);
        scope.listeners = listeners::outbound(context, proxy, &view, allow_any);
        scope.name_table = Some(names::name_table(proxy, &view));
    }
    scope
}

/// `filter_metadata: {istio: {config: <path>}}`: the Istio resource behind an Envoy one.
pub(crate) fn config_metadata(path: &str) -> Metadata {
    let istio = Struct {
        fields: HashMap::from([(
            "config".to_owned(),
            Value {
                kind: Some(ValueKind::StringValue(path.to_owned())),
            },
        )]),
    };
    Metadata {
        filter_metadata: HashMap::from([("istio".to_owned(), istio)]),
        ..Default::default()
    }
}

/// A duration as protobuf.
pub(crate) fn proto_duration(d: std::time::Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An `Any` holding a message.
pub(crate) fn any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// `{ads: {}, initial_fetch_timeout: 0s, resource_api_version: V3}`, as Istio writes it.
pub(crate) fn ads_config_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        initial_fetch_timeout: Some(ProtoDuration::default()),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}
