//! The push context: everything translation reads, indexed once per store revision and then
//! shared, immutable, by every connection. istiod's `PushContext`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex};

use bosun_api::networking::{
    DestinationRule, Gateway, HttpMatchRequest, HttpRoute, OutboundTrafficMode, Sidecar,
    VirtualService,
};
use bosun_api::{Kind, Object, Resource};

use crate::model::{Resolution, ServiceRegistry, Visibility, labels_match, resolve_short_name};
use crate::node::ProxyNode;
use crate::store::Snapshot;
use crate::translate::{OutboundScope, XdsResource};

/// Mesh-wide settings (istiod's MeshConfig).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MeshConfig {
    /// The namespace whose Sidecar and DestinationRules apply mesh-wide.
    pub root_namespace: String,
    /// Whether unknown destinations are passed through (`ALLOW_ANY`) or refused
    /// (`REGISTRY_ONLY`).
    pub allow_any: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".to_owned(),
            allow_any: true,
        }
    }
}

/// A VirtualService ready for translation: hosts as FQDNs, gateway names qualified, delegates
/// expanded.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VirtualServiceEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its hosts, short names resolved in its namespace.
    pub hosts: Vec<String>,
    /// The gateways it binds to, `mesh` or `namespace/name`.
    pub gateways: Vec<String>,
    /// Its spec, with delegate routes inlined and match gateways qualified.
    pub spec: VirtualService,
    /// Who sees it.
    pub visibility: Visibility,
    /// A hash of all of the above (delegates included): what generated routes are cached
    /// under.
    #[serde(skip)]
    pub fingerprint: u64,
}

/// A DestinationRule with its host resolved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DestinationRuleEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its host as an FQDN (or a wildcard).
    pub host: String,
    /// Its spec.
    pub spec: DestinationRule,
    /// Who sees it.
    pub visibility: Visibility,
}

/// A Gateway.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GatewayEntry {
    /// `namespace/name`.
    pub qualified_name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its spec.
    pub spec: Gateway,
}

/// A Sidecar resource.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SidecarEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its spec.
    pub spec: Sidecar,
}

/// Resources shared by every proxy with the same outbound view, computed once per push.
pub(crate) type ScopeCache = Mutex<HashMap<String, Arc<OutboundScope>>>;

/// A summary of what translation reads, per input, so that the next context can tell which
/// inputs changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fingerprints {
    /// What the service registry is built from (store keys and revisions).
    registry_inputs: u64,
    /// The services (not their endpoints).
    services: u64,
    /// VirtualServices (store keys and revisions).
    virtual_services: u64,
    /// DestinationRules.
    destination_rules: u64,
    /// Sidecar resources.
    sidecars: u64,
}

/// What a context takes over from the one before it: the outbound scopes that were built,
/// and for each part of a scope whether it still holds. A part is carried when none of its
/// inputs changed; otherwise it is rebuilt (and its unchanged resources keep their `Arc`s).
/// Endpoint changes, the most frequent, rebuild only the assignments of the services whose
/// endpoints changed.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    /// The previous context's scopes, by key.
    pub(crate) scopes: HashMap<String, Arc<OutboundScope>>,
    /// Clusters: services, DestinationRules, Sidecars, and the endpoints of DNS services.
    pub(crate) clusters: bool,
    /// Endpoints: the clusters, and the endpoints of every service.
    pub(crate) endpoints: bool,
    /// Outbound listeners: services, VirtualServices, DestinationRules, Sidecars.
    pub(crate) listeners: bool,
    /// Route tables: the same inputs as listeners.
    pub(crate) routes: bool,
    /// Name tables: services and Sidecars.
    pub(crate) name_tables: bool,
    /// The previous context's encoded virtual hosts, when services, DestinationRules and
    /// mesh settings are the same (a key names the rest of what a virtual host is made of).
    pub(crate) virtual_hosts: VirtualHostCache,
}

/// Everything translation needs, at one store revision.
#[derive(Debug)]
pub struct PushContext {
    /// The store revision it was built from.
    pub revision: u64,
    /// Services and endpoints (shared with the previous context when none of their inputs
    /// changed).
    pub registry: Arc<ServiceRegistry>,
    /// VirtualServices that have hosts, in creation order (store order).
    pub virtual_services: Vec<Arc<VirtualServiceEntry>>,
    /// DestinationRules.
    pub destination_rules: Vec<Arc<DestinationRuleEntry>>,
    /// Gateways.
    pub gateways: Vec<Arc<GatewayEntry>>,
    /// Sidecar resources.
    pub sidecars: Vec<Arc<SidecarEntry>>,
    /// Mesh settings.
    pub mesh: MeshConfig,
    /// Whether any VirtualService matches on source labels (then routes depend on the
    /// proxy's labels, not only its namespace).
    pub has_source_label_matches: bool,
    /// TLS certificates and keys of Secrets (`tls.crt`, `tls.key`), by namespace and name:
    /// what Gateway servers' `credentialName` refers to.
    pub secrets: HashMap<(String, String), (Vec<u8>, Vec<u8>)>,
    pub(crate) scopes: ScopeCache,
    pub(crate) load_assignments: Mutex<HashMap<String, Arc<XdsResource>>>,
    pub(crate) carried: Carried,
    /// Encoded virtual hosts of sidecar route tables, by what they are made of.
    pub(crate) virtual_hosts: Mutex<VirtualHostCache>,
    fingerprints: Fingerprints,
}

/// Encoded virtual hosts by [`VirtualHostKey::fingerprint`]. Tens of thousands are looked up
/// per push (every service, for every namespace's route table), so the key is a 64-bit
/// fingerprint rather than its strings, as Istio keys its route cache by a hash.
pub(crate) type VirtualHostCache = HashMap<u64, Arc<[u8]>, BuildHasherDefault<Prehashed>>;

/// What a sidecar's virtual host for one service port is made of, besides the services and
/// DestinationRules of the context (when those change, no virtual host is carried over).
#[derive(Debug, Hash)]
pub(crate) struct VirtualHostKey<'a> {
    /// The service.
    pub(crate) service: &'a crate::model::ServiceId,
    /// The port.
    pub(crate) port: u16,
    /// The proxy's namespace (short names, visibility, `sourceNamespace`).
    pub(crate) namespace: &'a str,
    /// The proxy's labels, when some VirtualService matches on `sourceLabels`.
    pub(crate) labels: Option<&'a BTreeMap<String, String>>,
    /// Whether only `host:port` domains are listed (the `http_proxy` table).
    pub(crate) port_qualified_only: bool,
    /// The fingerprint of the VirtualService that shapes it, if one does.
    pub(crate) virtual_service: Option<u64>,
}

impl VirtualHostKey<'_> {
    /// The key as the cache holds it.
    pub(crate) fn fingerprint(&self) -> u64 {
        // Fixed keys: fingerprints are compared across push contexts.
        let mut hasher = std::hash::DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// The hasher of maps whose keys are already hashes.
#[derive(Debug, Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; anything else is folded in, never lost.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl PushContext {
    /// Builds the context from a store snapshot.
    pub fn build(snapshot: &Snapshot, mesh: MeshConfig) -> PushContext {
        PushContext::with_registry(snapshot, mesh, Arc::new(ServiceRegistry::build(snapshot)))
    }

    fn with_registry(
        snapshot: &Snapshot,
        mesh: MeshConfig,
        registry: Arc<ServiceRegistry>,
    ) -> PushContext {
        let mut virtual_services: Vec<(u64, Object<VirtualService>)> = Vec::new();
        let mut destination_rules = Vec::new();
        let mut gateways = Vec::new();
        let mut sidecars = Vec::new();
        let mut secrets = HashMap::new();
        for (key, stored) in snapshot.resources.iter() {
            match &*stored.resource {
                Resource::VirtualService(vs) => {
                    virtual_services.push((stored.revision, vs.clone()))
                }
                Resource::DestinationRule(dr) => {
                    destination_rules.push(Arc::new(DestinationRuleEntry {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        host: resolve_short_name(&dr.spec.host, &key.namespace),
                        visibility: Visibility::from_export_to(&dr.spec.export_to, &key.namespace),
                        spec: dr.spec.clone(),
                    }));
                }
                Resource::Gateway(gw) => gateways.push(Arc::new(GatewayEntry {
                    qualified_name: format!("{}/{}", key.namespace, key.name),
                    namespace: key.namespace.clone(),
                    spec: gw.spec.clone(),
                })),
                Resource::Sidecar(sc) => sidecars.push(Arc::new(SidecarEntry {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    spec: sc.spec.clone(),
                })),
                Resource::Secret(secret) => {
                    if let Some(pair) = tls_pair(secret) {
                        secrets.insert((key.namespace.clone(), key.name.clone()), pair);
                    }
                }
                _ => {}
            }
        }
        // Istio orders VirtualServices by creation; the store revision is the closest we keep.
        virtual_services.sort_by_key(|(revision, _)| *revision);
        let delegates: HashMap<(String, String), VirtualService> = virtual_services
            .iter()
            .filter(|(_, vs)| vs.spec.hosts.is_empty())
            .map(|(_, vs)| {
                (
                    (
                        namespace_of(vs),
                        vs.metadata.name.clone().unwrap_or_default(),
                    ),
                    vs.spec.clone(),
                )
            })
            .collect();
        let virtual_services: Vec<Arc<VirtualServiceEntry>> = virtual_services
            .into_iter()
            .filter(|(_, vs)| !vs.spec.hosts.is_empty())
            .map(|(_, vs)| Arc::new(virtual_service_entry(&vs, &delegates)))
            .collect();
        let has_source_label_matches = virtual_services.iter().any(|vs| {
            vs.spec
                .http
                .iter()
                .flat_map(|r| r.matches.iter())
                .any(|m| !m.source_labels.is_empty())
        });
        PushContext {
            revision: snapshot.revision,
            registry,
            virtual_services,
            destination_rules,
            gateways,
            sidecars,
            mesh,
            has_source_label_matches,
            secrets,
            scopes: Mutex::new(HashMap::new()),
            load_assignments: Mutex::new(HashMap::new()),
            carried: Carried::default(),
            virtual_hosts: Mutex::new(VirtualHostCache::default()),
            fingerprints: Fingerprints::default(),
        }
        .with_fingerprints(snapshot)
    }

    /// Builds the context of a later snapshot, taking over from `previous` what the changes
    /// in between leave valid: a change of endpoints re-encodes only the assignments of the
    /// services concerned, a change of VirtualServices only route tables and listeners.
    pub fn build_after(previous: &PushContext, snapshot: &Snapshot, mesh: MeshConfig) -> Self {
        let registry = if registry_inputs(snapshot) == previous.fingerprints.registry_inputs {
            previous.registry.clone()
        } else {
            Arc::new(ServiceRegistry::build(snapshot))
        };
        let mut context = PushContext::with_registry(snapshot, mesh, registry);
        if context.mesh != previous.mesh {
            return context;
        }
        let (old, new) = (&previous.fingerprints, &context.fingerprints);
        let services = old.services == new.services;
        let rules = old.destination_rules == new.destination_rules;
        let sidecars = old.sidecars == new.sidecars;
        let routing = services && rules && sidecars && old.virtual_services == new.virtual_services;
        let changed_hosts = if Arc::ptr_eq(&previous.registry, &context.registry) {
            HashSet::new()
        } else {
            hosts_with_changed_endpoints(&previous.registry, &context.registry)
        };
        let dns_endpoints_same = context.registry.services.iter().all(|s| {
            !matches!(s.resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                || !changed_hosts.contains(s.id.hostname.as_str())
        });
        context.carried = Carried {
            scopes: lock(&previous.scopes).clone(),
            clusters: services && rules && sidecars && dns_endpoints_same,
            endpoints: services
                && rules
                && sidecars
                && Arc::ptr_eq(&previous.registry, &context.registry),
            listeners: routing,
            routes: routing,
            name_tables: services && sidecars,
            virtual_hosts: if services && rules {
                lock(&previous.virtual_hosts).clone()
            } else {
                VirtualHostCache::default()
            },
        };
        if services && rules {
            let kept: HashMap<String, Arc<XdsResource>> = lock(&previous.load_assignments)
                .iter()
                .filter(|(cluster, _)| {
                    cluster
                        .rsplit('|')
                        .next()
                        .is_some_and(|host| !changed_hosts.contains(host))
                })
                .map(|(cluster, cla)| (cluster.clone(), cla.clone()))
                .collect();
            context.load_assignments = Mutex::new(kept);
        }
        context
    }

    fn with_fingerprints(mut self, snapshot: &Snapshot) -> Self {
        let mut services = std::hash::DefaultHasher::new();
        self.registry.services.hash(&mut services);
        self.fingerprints = Fingerprints {
            registry_inputs: registry_inputs(snapshot),
            services: services.finish(),
            virtual_services: revisions_of(snapshot, Kind::VirtualService),
            destination_rules: revisions_of(snapshot, Kind::DestinationRule),
            sidecars: revisions_of(snapshot, Kind::Sidecar),
        };
        self
    }

    /// The DestinationRule that applies to `hostname` for a proxy in `namespace`: the
    /// proxy's namespace first, then the service's, then the root namespace; exact hosts
    /// before wildcards.
    pub fn destination_rule_for(
        &self,
        proxy_namespace: &str,
        hostname: &str,
        service_namespace: &str,
    ) -> Option<&Arc<DestinationRuleEntry>> {
        let candidates: Vec<&Arc<DestinationRuleEntry>> = self
            .destination_rules
            .iter()
            .filter(|dr| {
                host_matches(&dr.host, hostname) && dr.visibility.visible_to(proxy_namespace)
            })
            .collect();
        let rank = |dr: &Arc<DestinationRuleEntry>| {
            let namespace_rank = if dr.namespace == proxy_namespace {
                0
            } else if dr.namespace == service_namespace {
                1
            } else if dr.namespace == self.mesh.root_namespace {
                2
            } else {
                3
            };
            (
                namespace_rank,
                usize::from(dr.host != hostname),
                usize::MAX - dr.host.len(),
            )
        };
        candidates.into_iter().min_by_key(|dr| rank(dr))
    }

    /// The Sidecar resource that applies to a proxy: one selecting its labels in its
    /// namespace, else its namespace's default, else the root namespace's default.
    pub fn sidecar_for(&self, proxy: &ProxyNode) -> Option<&Arc<SidecarEntry>> {
        let selects = |s: &&Arc<SidecarEntry>| {
            s.spec.workload_selector.as_ref().is_some_and(|sel| {
                !sel.labels.is_empty() && labels_match(&sel.labels, &proxy.labels)
            })
        };
        let namespace_default = |namespace: &str| {
            self.sidecars
                .iter()
                .find(|s| s.namespace == namespace && s.spec.workload_selector.is_none())
        };
        self.sidecars
            .iter()
            .filter(|s| s.namespace == proxy.namespace)
            .find(selects)
            .or_else(|| namespace_default(&proxy.namespace))
            .or_else(|| namespace_default(&self.mesh.root_namespace))
    }

    /// Whether unknown destinations pass through for this proxy.
    pub fn allow_any(&self, sidecar: Option<&SidecarEntry>) -> bool {
        match sidecar
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .and_then(|p| p.mode)
        {
            Some(OutboundTrafficMode::RegistryOnly) => false,
            Some(OutboundTrafficMode::AllowAny) => true,
            None => self.mesh.allow_any,
        }
    }

    /// The VirtualServices bound to `gateway` (`mesh` or `namespace/name`) that namespace
    /// `namespace` sees.
    pub fn virtual_services_for<'a>(
        &'a self,
        gateway: &'a str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Arc<VirtualServiceEntry>> + 'a {
        self.virtual_services.iter().filter(move |vs| {
            vs.gateways.iter().any(|g| g == gateway)
                && (gateway != "mesh" || vs.visibility.visible_to(namespace))
        })
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The store keys and revisions of one kind, hashed: equal exactly when no resource of the
/// kind was created, changed or deleted.
fn revisions_of(snapshot: &Snapshot, kind: Kind) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hash_revisions(snapshot, kind, &mut hasher);
    hasher.finish()
}

fn hash_revisions(snapshot: &Snapshot, kind: Kind, hasher: &mut impl Hasher) {
    for (key, stored) in snapshot.of_kind(kind) {
        key.namespace.hash(hasher);
        key.name.hash(hasher);
        stored.revision.hash(hasher);
    }
}

/// The kinds [`ServiceRegistry::build`] reads, their keys and revisions hashed.
fn registry_inputs(snapshot: &Snapshot) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for kind in [
        Kind::Service,
        Kind::ServiceEntry,
        Kind::Pod,
        Kind::WorkloadEntry,
        Kind::Endpoints,
        Kind::EndpointSlice,
    ] {
        hash_revisions(snapshot, kind, &mut hasher);
    }
    hasher.finish()
}

/// The host names of services whose endpoints differ between two registries (or that are in
/// only one of them).
fn hosts_with_changed_endpoints(old: &ServiceRegistry, new: &ServiceRegistry) -> HashSet<String> {
    let mut changed = HashSet::new();
    for (id, endpoints) in &new.endpoints {
        if old.endpoints.get(id) != Some(endpoints) {
            changed.insert(id.hostname.clone());
        }
    }
    for id in old.endpoints.keys() {
        if !new.endpoints.contains_key(id) {
            changed.insert(id.hostname.clone());
        }
    }
    changed
}

/// Whether a host pattern (`*`, `*.example.com`, or a name) matches a host name.
pub fn host_matches(pattern: &str, hostname: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => hostname.ends_with(suffix),
        None => pattern == hostname,
    }
}

/// Whether two host patterns have a name in common; the more specific one when they do
/// (how Istio intersects Gateway server hosts with VirtualService hosts).
pub fn host_intersection<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    if host_matches(a, b) {
        Some(b)
    } else if host_matches(b, a) {
        Some(a)
    } else {
        None
    }
}

/// The certificate and key of a `kubernetes.io/tls` (or generic) Secret.
fn tls_pair(secret: &k8s_openapi::api::core::v1::Secret) -> Option<(Vec<u8>, Vec<u8>)> {
    let get = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
    };
    Some((
        get("tls.crt").or_else(|| get("cert"))?,
        get("tls.key").or_else(|| get("key"))?,
    ))
}

fn namespace_of<S>(object: &Object<S>) -> String {
    object
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| crate::model::DEFAULT_NAMESPACE.to_owned())
}

fn qualify_gateway(gateway: &str, namespace: &str) -> String {
    if gateway == "mesh" || gateway.contains('/') {
        gateway.to_owned()
    } else {
        format!("{namespace}/{gateway}")
    }
}

fn virtual_service_entry(
    vs: &Object<VirtualService>,
    delegates: &HashMap<(String, String), VirtualService>,
) -> VirtualServiceEntry {
    let namespace = namespace_of(vs);
    let mut spec = vs.spec.clone();
    let gateways = if spec.gateways.is_empty() {
        vec!["mesh".to_owned()]
    } else {
        spec.gateways
            .iter()
            .map(|g| qualify_gateway(g, &namespace))
            .collect()
    };
    let mut http = Vec::new();
    for route in std::mem::take(&mut spec.http) {
        match &route.delegate {
            Some(delegate) => {
                let key = (
                    delegate
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.clone()),
                    delegate.name.clone(),
                );
                if let Some(child) = delegates.get(&key) {
                    http.extend(merge_delegate(&route, child, &key.0));
                }
            }
            None => http.push(route),
        }
    }
    for route in &mut http {
        for m in &mut route.matches {
            m.gateways = m
                .gateways
                .iter()
                .map(|g| qualify_gateway(g, &namespace))
                .collect();
        }
        qualify_destinations(route, &namespace);
    }
    spec.http = http;
    for route in &mut spec.tcp {
        for d in &mut route.route {
            d.destination.host = resolve_short_name(&d.destination.host, &namespace);
        }
    }
    for route in &mut spec.tls {
        for d in &mut route.route {
            d.destination.host = resolve_short_name(&d.destination.host, &namespace);
        }
    }
    let mut entry = VirtualServiceEntry {
        hosts: spec
            .hosts
            .iter()
            .map(|h| resolve_short_name(h, &namespace))
            .collect(),
        gateways,
        visibility: Visibility::from_export_to(&spec.export_to, &namespace),
        namespace,
        name: vs.metadata.name.clone().unwrap_or_default(),
        spec,
        fingerprint: 0,
    };
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(&entry)
        .unwrap_or_default()
        .hash(&mut hasher);
    entry.fingerprint = hasher.finish();
    entry
}

/// Destination hosts as FQDNs, resolved where the route was written.
fn qualify_destinations(route: &mut HttpRoute, namespace: &str) {
    for d in &mut route.route {
        d.destination.host = resolve_short_name(&d.destination.host, namespace);
    }
    if let Some(mirror) = &mut route.mirror {
        mirror.host = resolve_short_name(&mirror.host, namespace);
    }
    for mirror in &mut route.mirrors {
        mirror.destination.host = resolve_short_name(&mirror.destination.host, namespace);
    }
}

/// A root route delegating to `child`: the child's routes, each restricted by the root's
/// matches, with the root's policies where the child sets none.
fn merge_delegate(
    root: &HttpRoute,
    child: &VirtualService,
    child_namespace: &str,
) -> Vec<HttpRoute> {
    let mut merged = Vec::new();
    for child_route in &child.http {
        let mut route = child_route.clone();
        qualify_destinations(&mut route, child_namespace);
        route.matches = merge_matches(&root.matches, &child_route.matches);
        if root.matches.is_empty() || !route.matches.is_empty() {
            route.headers = route.headers.or_else(|| root.headers.clone());
            route.timeout = route.timeout.or(root.timeout);
            route.retries = route.retries.or_else(|| root.retries.clone());
            route.fault = route.fault.or_else(|| root.fault.clone());
            route.cors_policy = route.cors_policy.or_else(|| root.cors_policy.clone());
            merged.push(route);
        }
    }
    merged
}

fn merge_matches(root: &[HttpMatchRequest], child: &[HttpMatchRequest]) -> Vec<HttpMatchRequest> {
    match (root.is_empty(), child.is_empty()) {
        (true, _) => child.to_vec(),
        (false, true) => root.to_vec(),
        (false, false) => {
            let mut out = Vec::new();
            for r in root {
                for c in child {
                    let mut m = c.clone();
                    m.uri = c.uri.clone().or_else(|| r.uri.clone());
                    m.method = c.method.clone().or_else(|| r.method.clone());
                    m.authority = c.authority.clone().or_else(|| r.authority.clone());
                    m.scheme = c.scheme.clone().or_else(|| r.scheme.clone());
                    m.port = c.port.or(r.port);
                    let mut headers: BTreeMap<_, _> = r.headers.clone();
                    headers.extend(c.headers.clone());
                    m.headers = headers;
                    let mut query: BTreeMap<_, _> = r.query_params.clone();
                    query.extend(c.query_params.clone());
                    m.query_params = query;
                    if m.gateways.is_empty() {
                        m.gateways = r.gateways.clone();
                    }
                    out.push(m);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches("*", "reviews.default.svc.cluster.local"));
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.org"));
        assert!(host_matches("a.b", "a.b"));
        assert_eq!(host_intersection("*", "bookinfo.com"), Some("bookinfo.com"));
        assert_eq!(host_intersection("*.com", "a.com"), Some("a.com"));
        assert_eq!(host_intersection("a.com", "b.com"), None);
    }
}
