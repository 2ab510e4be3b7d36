//! `EnvoyFilter`: patches to the Envoy configuration Istio generates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{PolicyTargetReference, WorkloadSelector};

/// The spec of an `EnvoyFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilter {
    /// Workloads this applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Resources this applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The patches, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_patches: Vec<EnvoyConfigObjectPatch>,
    /// Order relative to other EnvoyFilters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// One patch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyConfigObjectPatch {
    /// The kind of object patched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<ApplyTo>,
    /// Which objects are patched.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<EnvoyConfigObjectMatch>,
    /// The change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

/// Kinds of objects a patch applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplyTo {
    /// Invalid.
    Invalid,
    /// A listener.
    Listener,
    /// A filter chain.
    FilterChain,
    /// A network filter.
    NetworkFilter,
    /// An HTTP filter.
    HttpFilter,
    /// A route configuration.
    RouteConfiguration,
    /// A virtual host.
    VirtualHost,
    /// An HTTP route.
    HttpRoute,
    /// A cluster.
    Cluster,
    /// An extension configuration.
    ExtensionConfig,
    /// The bootstrap.
    Bootstrap,
    /// A listener filter.
    ListenerFilter,
}

/// Which objects a patch applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ObjectMatchFields", into = "ObjectMatchFields")]
pub struct EnvoyConfigObjectMatch {
    /// The kind of proxy and traffic direction.
    pub context: Option<PatchContext>,
    /// Conditions on the proxy.
    pub proxy: Option<ProxyMatch>,
    /// The object.
    pub object: Option<ObjectMatch>,
}

/// The kind of object a patch matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectMatch {
    /// A listener.
    Listener(ListenerMatch),
    /// A route configuration.
    RouteConfiguration(RouteConfigurationMatch),
    /// A cluster.
    Cluster(ClusterMatch),
    /// A waypoint's objects.
    Waypoint(WaypointMatch),
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMatchFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<PatchContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proxy: Option<ProxyMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listener: Option<ListenerMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route_configuration: Option<RouteConfigurationMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waypoint: Option<WaypointMatch>,
}

impl TryFrom<ObjectMatchFields> for EnvoyConfigObjectMatch {
    type Error = &'static str;

    fn try_from(f: ObjectMatchFields) -> Result<Self, Self::Error> {
        let objects = [
            f.listener.map(ObjectMatch::Listener),
            f.route_configuration.map(ObjectMatch::RouteConfiguration),
            f.cluster.map(ObjectMatch::Cluster),
            f.waypoint.map(ObjectMatch::Waypoint),
        ];
        let mut set = objects.into_iter().flatten();
        let object = set.next();
        if set.next().is_some() {
            return Err("only one of listener, routeConfiguration, cluster or waypoint may be set");
        }
        Ok(EnvoyConfigObjectMatch {
            context: f.context,
            proxy: f.proxy,
            object,
        })
    }
}

impl From<EnvoyConfigObjectMatch> for ObjectMatchFields {
    fn from(m: EnvoyConfigObjectMatch) -> Self {
        let mut f = ObjectMatchFields {
            context: m.context,
            proxy: m.proxy,
            ..Default::default()
        };
        match m.object {
            Some(ObjectMatch::Listener(x)) => f.listener = Some(x),
            Some(ObjectMatch::RouteConfiguration(x)) => f.route_configuration = Some(x),
            Some(ObjectMatch::Cluster(x)) => f.cluster = Some(x),
            Some(ObjectMatch::Waypoint(x)) => f.waypoint = Some(x),
            None => {}
        }
        f
    }
}

/// The kind of proxy and direction a patch applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchContext {
    /// All.
    Any,
    /// Sidecar inbound.
    SidecarInbound,
    /// Sidecar outbound.
    SidecarOutbound,
    /// Gateways.
    Gateway,
    /// Waypoints.
    Waypoint,
}

/// Conditions on the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyMatch {
    /// A regular expression on the proxy version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_version: Option<String>,
    /// Node metadata values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A listener match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMatch {
    /// The listener's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// A filter chain of the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_chain: Option<FilterChainMatch>,
    /// A listener filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_filter: Option<String>,
    /// The listener's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A filter chain match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterChainMatch {
    /// The chain's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The chain's SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `raw_buffer` or `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_protocol: Option<String>,
    /// ALPN values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_protocols: Option<String>,
    /// A network filter of the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// The destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u32>,
}

/// A filter match, optionally with a sub-filter (an HTTP filter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterMatch {
    /// The filter's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A filter inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

/// A sub-filter match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubFilterMatch {
    /// The filter's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A route configuration match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfigurationMatch {
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// The port's name (gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// The gateway (`ns/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// A virtual host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
    /// The route configuration's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A virtual host match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHostMatch {
    /// The virtual host's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A route of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
    /// A domain of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
}

/// A route match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// The route's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The route's action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RouteAction>,
}

/// Route actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RouteAction {
    /// Any.
    Any,
    /// Forwarding.
    Route,
    /// Redirect.
    Redirect,
    /// Direct response.
    DirectResponse,
}

/// A cluster match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMatch {
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
    /// The service FQDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A match on a waypoint's objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointMatch {
    /// A filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// A route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<WaypointRouteMatch>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
}

/// A waypoint route match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointRouteMatch {
    /// The route's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The change a patch makes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patch {
    /// The operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<PatchOperation>,
    /// The value merged or added (Envoy's JSON form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Where an added HTTP filter goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_class: Option<FilterClass>,
}

/// Patch operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchOperation {
    /// Invalid.
    Invalid,
    /// Merge into the object.
    Merge,
    /// Add an object.
    Add,
    /// Remove the object.
    Remove,
    /// Insert before the object.
    InsertBefore,
    /// Insert after the object.
    InsertAfter,
    /// Insert first.
    InsertFirst,
    /// Replace the object.
    Replace,
    /// Merge, replacing lists.
    MergeAndReplaceList,
}

/// Where an added HTTP filter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterClass {
    /// Unspecified.
    Unspecified,
    /// After authentication.
    Authn,
    /// After authorization.
    Authz,
    /// Before stats.
    Stats,
}
