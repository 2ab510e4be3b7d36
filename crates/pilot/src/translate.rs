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
///
/// It is kept as the encoding of its `google.protobuf.Any`: every state-of-the-world response
/// that carries it shares these bytes instead of copying them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsResource {
    /// Its name.
    pub name: String,
    /// The resource as an encoded `google.protobuf.Any`.
    pub encoded_any: bytes::Bytes,
    /// Its version.
    pub version: String,
}

impl XdsResource {
    /// Encodes a message.
    pub fn new<M: Message + Name>(name: impl Into<String>, message: &M) -> Self {
        XdsResource::encoded(name, M::type_url(), message.encode_to_vec())
    }

    /// A resource already encoded.
    pub fn encoded(name: impl Into<String>, type_url: String, value: Vec<u8>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        value.hash(&mut hasher);
        let any = Any { type_url, value };
        XdsResource {
            name: name.into(),
            encoded_any: any.encode_to_vec().into(),
            version: format!("{:016x}", hasher.finish()),
        }
    }

    /// The resource as an `Any` (a copy, for delta responses and debug views).
    pub fn any(&self) -> Any {
        // Encoded from an `Any` above: decoding it back cannot fail.
        Any::decode(self.encoded_any.clone()).unwrap_or_default()
    }
}

/// Resources of one type, by name.
pub type ResourceMap = BTreeMap<String, Arc<XdsResource>>;

/// Resources of one type for one proxy: those it shares with every proxy of its scope (one
/// `Arc` for all of them, so 200 sidecars of a namespace hold one copy) and its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeResources {
    shared: Arc<ResourceMap>,
    own: ResourceMap,
}

impl TypeResources {
    /// Shared resources and the proxy's own (names do not overlap; an own one would win).
    pub fn new(shared: Arc<ResourceMap>, own: ResourceMap) -> Self {
        TypeResources { shared, own }
    }

    /// The part shared with other proxies.
    pub fn shared(&self) -> &Arc<ResourceMap> {
        &self.shared
    }

    /// The proxy's own part.
    pub fn own(&self) -> &ResourceMap {
        &self.own
    }

    /// The resource named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<XdsResource>> {
        self.own.get(name).or_else(|| self.shared.get(name))
    }

    /// Whether there is a resource named `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.shared.len() + self.own.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every resource, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<XdsResource>)> {
        MergedByName {
            shared: self.shared.iter().peekable(),
            own: self.own.iter().peekable(),
        }
    }

    /// Every resource, by name.
    pub fn values(&self) -> impl Iterator<Item = &Arc<XdsResource>> {
        self.iter().map(|(_, r)| r)
    }

    /// Whether both hold the very same resources: the shared part is one `Arc`, the own
    /// parts are equal. Cheap, and what a push asks to skip a proxy.
    pub fn same_as(&self, other: &TypeResources) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared) && self.own == other.own
    }

    /// The resources that are not in `previous` as they are here (new, or changed).
    pub fn changed_since<'a>(
        &'a self,
        previous: &'a TypeResources,
    ) -> impl Iterator<Item = &'a Arc<XdsResource>> + 'a {
        let shared: Box<dyn Iterator<Item = &'a Arc<XdsResource>> + 'a> =
            if Arc::ptr_eq(&self.shared, &previous.shared) {
                Box::new(std::iter::empty())
            } else {
                Box::new(changed_entries(&self.shared, &previous.shared))
            };
        shared.chain(changed_entries(&self.own, &previous.own))
    }
}

/// The entries of `current` that `previous` lacks or holds differently. Both maps are sorted
/// by name and mostly share their `Arc`s, so one pass that compares pointers first does it.
fn changed_entries<'a>(
    current: &'a ResourceMap,
    previous: &'a ResourceMap,
) -> impl Iterator<Item = &'a Arc<XdsResource>> + 'a {
    let mut old = previous.iter().peekable();
    current.iter().filter_map(move |(name, resource)| {
        while let Some(&(old_name, old_resource)) = old.peek() {
            if Arc::ptr_eq(old_resource, resource) {
                old.next();
                return None;
            }
            match old_name.as_str().cmp(name.as_str()) {
                std::cmp::Ordering::Less => {
                    old.next();
                }
                std::cmp::Ordering::Equal => {
                    old.next();
                    return (old_resource.version != resource.version).then_some(resource);
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        Some(resource)
    })
}

impl std::ops::Index<&str> for TypeResources {
    type Output = Arc<XdsResource>;

    fn index(&self, name: &str) -> &Arc<XdsResource> {
        match self.get(name) {
            Some(resource) => resource,
            None => panic!("no resource named {name}"),
        }
    }
}

impl From<ResourceMap> for TypeResources {
    fn from(own: ResourceMap) -> Self {
        TypeResources {
            shared: Arc::default(),
            own,
        }
    }
}

/// Two name-sorted iterators merged into one, the second winning on equal names.
struct MergedByName<A: Iterator, B: Iterator> {
    shared: std::iter::Peekable<A>,
    own: std::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for MergedByName<A, B>
where
    A: Iterator<Item = (&'a String, &'a Arc<XdsResource>)>,
    B: Iterator<Item = (&'a String, &'a Arc<XdsResource>)>,
{
    type Item = (&'a String, &'a Arc<XdsResource>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.shared.peek(), self.own.peek()) {
            (Some((a, _)), Some((b, _))) => match a.cmp(b) {
                std::cmp::Ordering::Less => self.shared.next(),
                std::cmp::Ordering::Equal => {
                    self.shared.next();
                    self.own.next()
                }
                std::cmp::Ordering::Greater => self.own.next(),
            },
            (Some(_), None) => self.shared.next(),
            (None, _) => self.own.next(),
        }
    }
}

/// Everything pilot sends one proxy.
#[derive(Clone, Debug, Default)]
pub struct ProxyResources {
    /// CDS.
    pub clusters: TypeResources,
    /// EDS, for every EDS cluster.
    pub endpoints: TypeResources,
    /// LDS.
    pub listeners: TypeResources,
    /// RDS.
    pub routes: TypeResources,
    /// NDS: one name table (sidecars).
    pub name_tables: TypeResources,
}

impl ProxyResources {
    /// The resources of one type.
    pub fn of_type(&self, type_url: &str) -> Option<&TypeResources> {
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

/// What sidecars (or routers) with the same view of the mesh share: built once per push
/// context, and carried into the next context part by part when what a part is made of did
/// not change (see [`crate::context::Carried`]).
#[derive(Debug, Default)]
pub struct OutboundScope {
    /// Outbound clusters and the special ones.
    pub clusters: Arc<ResourceMap>,
    /// Names of the clusters that take endpoints over EDS.
    pub eds_clusters: Arc<Vec<String>>,
    /// The endpoints of those clusters.
    pub endpoints: Arc<ResourceMap>,
    /// Outbound listeners (sidecars).
    pub listeners: Arc<ResourceMap>,
    /// Outbound route tables (sidecars).
    pub routes: Arc<ResourceMap>,
    /// The names the workloads may resolve (sidecars).
    pub name_tables: Arc<ResourceMap>,
}

/// Builds everything a proxy is sent.
pub fn generate(context: &PushContext, proxy: &ProxyNode) -> ProxyResources {
    let scope = outbound_scope(context, proxy);
    let mut own_clusters = ResourceMap::new();
    let mut own_listeners = ResourceMap::new();
    let mut own_routes = ResourceMap::new();
    let insert = |map: &mut ResourceMap, r: &Arc<XdsResource>| {
        map.insert(r.name.clone(), r.clone());
    };
    match proxy.proxy_type {
        ProxyType::Sidecar => {
            let inbound = listeners::inbound(context, proxy);
            for r in &inbound.clusters {
                insert(&mut own_clusters, r);
            }
            for r in &inbound.listeners {
                insert(&mut own_listeners, r);
            }
            if let Capture::None { .. } = proxy.capture {
                let listener = listeners::http_proxy_listener(proxy);
                insert(&mut own_listeners, &listener);
            }
        }
        ProxyType::Router => {
            let gateway = gateway::generate(context, proxy);
            for r in &gateway.listeners {
                insert(&mut own_listeners, r);
            }
            for r in &gateway.routes {
                insert(&mut own_routes, r);
            }
        }
    }
    ProxyResources {
        clusters: TypeResources::new(scope.clusters.clone(), own_clusters),
        endpoints: TypeResources::new(scope.endpoints.clone(), ResourceMap::new()),
        listeners: TypeResources::new(scope.listeners.clone(), own_listeners),
        routes: TypeResources::new(scope.routes.clone(), own_routes),
        name_tables: TypeResources::new(scope.name_tables.clone(), ResourceMap::new()),
    }
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
    let scope = Arc::new(build_outbound_scope(context, proxy, &key));
    context
        .scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, scope.clone());
    scope
}

/// Builds a scope, taking from the previous context's scope of the same key every part whose
/// inputs did not change, and keeping the previous `Arc`s of resources that came out equal.
fn build_outbound_scope(context: &PushContext, proxy: &ProxyNode, key: &str) -> OutboundScope {
    let carried = &context.carried;
    let previous = carried.scopes.get(key);
    let reuse = |still_valid: bool, part: fn(&OutboundScope) -> &Arc<ResourceMap>| {
        previous
            .filter(|_| still_valid)
            .map(|scope| part(scope).clone())
    };
    let view = clusters::OutboundView::new(context, proxy);
    let (clusters, eds_clusters) = match previous.filter(|_| carried.clusters) {
        Some(old) => (old.clusters.clone(), old.eds_clusters.clone()),
        None => {
            let (list, eds) = clusters::outbound(context, proxy, &view);
            (intern(previous.map(|s| &s.clusters), list), Arc::new(eds))
        }
    };
    let endpoints = reuse(carried.endpoints, |s| &s.endpoints).unwrap_or_else(|| {
        intern(
            previous.map(|s| &s.endpoints),
            eds_clusters
                .iter()
                .filter_map(|name| endpoints::cached_load_assignment(context, name))
                .collect(),
        )
    });
    let mut scope = OutboundScope {
        clusters,
        eds_clusters,
        endpoints,
        ..Default::default()
    };
    if proxy.proxy_type == ProxyType::Sidecar {
        let allow_any = context.allow_any(view.sidecar.as_deref());
        scope.routes = reuse(carried.routes, |s| &s.routes).unwrap_or_else(|| {
            intern(
                previous.map(|s| &s.routes),
                routes::sidecar_route_tables(context, proxy, &view, allow_any),
            )
        });
        scope.listeners = reuse(carried.listeners, |s| &s.listeners).unwrap_or_else(|| {
            intern(
                previous.map(|s| &s.listeners),
                listeners::outbound(context, proxy, &view, allow_any),
            )
        });
        scope.name_tables = reuse(carried.name_tables, |s| &s.name_tables).unwrap_or_else(|| {
            intern(
                previous.map(|s| &s.name_tables),
                vec![names::name_table(proxy, &view)],
            )
        });
    }
    scope
}

/// A map of `resources` that keeps, for each one equal to its namesake in `previous`, the
/// previous `Arc` — and `previous` itself when nothing changed — so that pushes can tell
/// what changed by comparing pointers, and equal resources are held once.
fn intern(
    previous: Option<&Arc<ResourceMap>>,
    resources: Vec<Arc<XdsResource>>,
) -> Arc<ResourceMap> {
    let Some(previous) = previous else {
        return Arc::new(resources.into_iter().map(|r| (r.name.clone(), r)).collect());
    };
    let mut all_kept = true;
    let map: ResourceMap = resources
        .into_iter()
        .map(|resource| match previous.get(&resource.name) {
            Some(old) if Arc::ptr_eq(old, &resource) || **old == *resource => {
                (resource.name.clone(), old.clone())
            }
            _ => {
                all_kept = false;
                (resource.name.clone(), resource)
            }
        })
        .collect();
    if all_kept && map.len() == previous.len() {
        previous.clone()
    } else {
        Arc::new(map)
    }
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
