//! The service registry: services and their endpoints, built from what the store holds —
//! Kubernetes Services, Pods, Endpoints and EndpointSlices, and Istio ServiceEntries and
//! WorkloadEntries — as istiod's Kubernetes and ServiceEntry registries build them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bosun_api::networking::{self as se, Resolution as SeResolution};
use bosun_api::{Kind, Resource};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::store::Snapshot;

#[cfg(test)]
mod tests;

/// The DNS suffix of the mesh's services.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// The namespace of resources that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Pod label giving its locality (`region/zone/subzone`), as Istio reads it.
const LOCALITY_LABEL: &str = "istio-locality";

/// Service annotation restricting where a Kubernetes Service is visible.
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// The protocol of a service port, from its name (`http-web`), `appProtocol` or a
/// ServiceEntry's `protocol`, as Istio reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Protocol {
    /// HTTP/1.1 (and h2c when the client speaks it).
    Http,
    /// HTTP/2 in clear text.
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web (HTTP/1.1).
    GrpcWeb,
    /// HTTP over TLS the mesh does not terminate.
    Https,
    /// TLS the mesh does not terminate.
    Tls,
    /// Opaque TCP.
    Tcp,
    /// UDP: not proxied.
    Udp,
    /// MongoDB, Redis, MySQL, Thrift: proxied as TCP.
    Opaque,
    /// Not declared: detected from the first bytes of each connection.
    Unknown,
}

impl Protocol {
    /// Parses a protocol name (case-insensitive).
    pub fn parse(name: &str) -> Protocol {
        match name.to_ascii_lowercase().as_str() {
            "http" | "http_proxy" => Protocol::Http,
            "http2" | "kubernetes.io/h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" | "kubernetes.io/wss" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "mongo" | "redis" | "mysql" | "thrift" => Protocol::Opaque,
            "kubernetes.io/ws" => Protocol::Http,
            _ => Protocol::Unknown,
        }
    }

    /// The protocol of a Kubernetes Service port: `appProtocol`, else the name's prefix
    /// (`http-web`, `grpc`), else UDP/SCTP from `protocol`, else unknown.
    pub fn of_kubernetes_port(port: &core::ServicePort) -> Protocol {
        if port.protocol.as_deref() == Some("UDP") {
            return Protocol::Udp;
        }
        if let Some(app) = &port.app_protocol {
            let parsed = Protocol::parse(app);
            if parsed != Protocol::Unknown {
                return parsed;
            }
        }
        Protocol::of_port_name(port.name.as_deref().unwrap_or(""))
    }

    /// The protocol a port name declares (`http`, `http-web`, `grpc-api`).
    pub fn of_port_name(name: &str) -> Protocol {
        // `grpc-web` is a protocol of its own, not `grpc` with a suffix.
        if name.eq_ignore_ascii_case("grpc-web")
            || name.to_ascii_lowercase().starts_with("grpc-web-")
        {
            return Protocol::GrpcWeb;
        }
        Protocol::parse(name.split('-').next().unwrap_or(name))
    }

    /// Whether the mesh routes it as HTTP.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// Whether upstream connections speak HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// The name Istio prints (`HTTP`, `TCP`, …).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Opaque => "TCP",
            Protocol::Unknown => "UnsupportedProtocol",
        }
    }
}

/// Where a service port sends traffic on its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServicePort {
    /// Its name (may be empty for a single-port Kubernetes Service).
    pub name: String,
    /// The port clients call.
    pub port: u16,
    /// The port on the endpoints.
    pub target_port: TargetPort,
    /// Its protocol.
    pub protocol: Protocol,
}

/// How clients find a service's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Resolution {
    /// Endpoints known to pilot, load-balanced by the proxy (EDS).
    ClientSideLb,
    /// Endpoints are DNS names the proxy resolves (STRICT_DNS).
    Dns,
    /// One DNS name, its first address per connection (LOGICAL_DNS).
    DnsRoundRobin,
    /// The address the client called (ORIGINAL_DST).
    Passthrough,
}

/// Where a service is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Registry {
    /// A Kubernetes Service.
    Kubernetes,
    /// An Istio ServiceEntry.
    ServiceEntry,
}

/// Identifies a service: its host name and the namespace that defines it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServiceId {
    /// The host name (`reviews.default.svc.cluster.local`, `api.example.com`).
    pub hostname: String,
    /// The namespace of the resource that defines it.
    pub namespace: String,
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hostname, self.namespace)
    }
}

/// Which namespaces see a service or a config.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Visibility {
    /// Every namespace (`*`, or not given).
    Public,
    /// Only these namespaces (`.` resolved to the owner's).
    Namespaces(Vec<String>),
}

impl Visibility {
    /// Reads an `exportTo` list written in namespace `owner`.
    pub fn from_export_to(export_to: &[String], owner: &str) -> Visibility {
        if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
            return Visibility::Public;
        }
        Visibility::Namespaces(
            export_to
                .iter()
                .filter(|e| *e != "~")
                .map(|e| {
                    if e == "." {
                        owner.to_owned()
                    } else {
                        e.clone()
                    }
                })
                .collect(),
        )
    }

    /// Whether namespace `namespace` sees it.
    pub fn visible_to(&self, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Namespaces(list) => list.iter().any(|n| n == namespace),
        }
    }
}

/// A service: a host name, ports and a way to find endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Service {
    /// Host name and namespace.
    pub id: ServiceId,
    /// The Kubernetes Service's or ServiceEntry's name.
    pub name: String,
    /// Its virtual IP, when it has one.
    pub vip: Option<IpAddr>,
    /// Its ports, in declaration order.
    pub ports: Vec<ServicePort>,
    /// How its endpoints are found.
    pub resolution: Resolution,
    /// Where it is defined.
    pub registry: Registry,
    /// Whether it is outside the mesh (no sidecar on its endpoints).
    pub mesh_external: bool,
    /// Who sees it.
    pub visibility: Visibility,
    /// Labels selecting its workloads (Kubernetes `selector`, ServiceEntry
    /// `workloadSelector`).
    pub selector: Option<BTreeMap<String, String>>,
}

impl Service {
    /// The port numbered `port`.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The short names a client in `namespace` may use, most specific last: for
    /// `reviews.default.svc.cluster.local` seen from `default`: `reviews`, `reviews.default`,
    /// `reviews.default.svc`.
    pub fn short_names(&self, namespace: &str) -> Vec<String> {
        let Some(prefix) = self.id.hostname.strip_suffix(&format!(".{DOMAIN_SUFFIX}")) else {
            return Vec::new();
        };
        let Some((name, service_namespace)) = prefix.split_once('.') else {
            return Vec::new();
        };
        let mut names = Vec::new();
        if service_namespace == namespace {
            names.push(name.to_owned());
        }
        names.push(prefix.to_owned());
        names.push(format!("{prefix}.svc"));
        names
    }
}

/// A workload instance: a Pod or a WorkloadEntry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address (IP, or a DNS name for WorkloadEntries).
    pub address: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// `region/zone/subzone`, when known.
    pub locality: String,
    /// Named ports (container ports, WorkloadEntry `ports`).
    pub named_ports: BTreeMap<String, u16>,
    /// Load-balancing weight (WorkloadEntries).
    pub weight: Option<u32>,
    /// Whether it is a Pod (else a WorkloadEntry).
    pub is_pod: bool,
}

/// One endpoint of a service port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Endpoint {
    /// IP address, or a DNS name for DNS services.
    pub address: String,
    /// The port on the endpoint.
    pub port: u16,
    /// Labels of the workload behind it (subsets select on these).
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// `region/zone/subzone`, or empty.
    pub locality: String,
    /// Load-balancing weight (1 when not given).
    pub weight: u32,
    /// The workload's name (`namespace/name`), or empty when unknown.
    pub workload: String,
}

/// Services and endpoints at one store revision: immutable, shared by `Arc`.
#[derive(Debug, Default)]
pub struct ServiceRegistry {
    /// Every service, sorted by host name then namespace.
    pub services: Vec<Arc<Service>>,
    /// Endpoints per service and service port.
    pub endpoints: HashMap<ServiceId, BTreeMap<u16, Vec<Endpoint>>>,
    /// Every workload, sorted by namespace and name.
    pub workloads: Vec<Arc<Workload>>,
    by_hostname: HashMap<String, Vec<usize>>,
    /// Workload by address; the first in `workloads` order when two share one.
    by_address: HashMap<String, usize>,
}

impl ServiceRegistry {
    /// Builds the registry from a store snapshot.
    pub fn build(snapshot: &Snapshot) -> ServiceRegistry {
        let workloads = Workloads::new(collect_workloads(snapshot));
        let mut services = Vec::new();
        let mut endpoints = HashMap::new();
        for (_, stored) in snapshot.of_kind(Kind::Service) {
            if let Resource::Service(service) = &*stored.resource {
                if let Some((svc, eps)) = kubernetes_service(service, &workloads, snapshot) {
                    endpoints.insert(svc.id.clone(), eps);
                    services.push(Arc::new(svc));
                }
            }
        }
        for (_, stored) in snapshot.of_kind(Kind::ServiceEntry) {
            if let Resource::ServiceEntry(entry) = &*stored.resource {
                for (svc, eps) in service_entry_services(entry, &workloads) {
                    endpoints.insert(svc.id.clone(), eps);
                    services.push(Arc::new(svc));
                }
            }
        }
        services.sort_by(|a, b| a.id.cmp(&b.id));
        services.dedup_by(|a, b| a.id == b.id);
        let mut by_hostname: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, service) in services.iter().enumerate() {
            by_hostname
                .entry(service.id.hostname.clone())
                .or_default()
                .push(index);
        }
        let workloads: Vec<Arc<Workload>> = workloads.all.into_iter().map(Arc::new).collect();
        let mut by_address = HashMap::new();
        for (index, workload) in workloads.iter().enumerate() {
            by_address.entry(workload.address.clone()).or_insert(index);
        }
        ServiceRegistry {
            services,
            endpoints,
            workloads,
            by_hostname,
            by_address,
        }
    }

    /// The service named `hostname` that namespace `namespace` sees: its own namespace's
    /// definition first, else the first one exported to it.
    pub fn service_for(&self, hostname: &str, namespace: &str) -> Option<&Arc<Service>> {
        let candidates = self.by_hostname.get(hostname)?;
        let visible = |i: &&usize| self.services[**i].visibility.visible_to(namespace);
        candidates
            .iter()
            .filter(visible)
            .find(|i| self.services[**i].id.namespace == namespace)
            .or_else(|| candidates.iter().find(visible))
            .map(|i| &self.services[*i])
    }

    /// The first service (by namespace) named `hostname`.
    pub fn first_named(&self, hostname: &str) -> Option<&Arc<Service>> {
        let index = *self.by_hostname.get(hostname)?.first()?;
        self.services.get(index)
    }

    /// The services namespace `namespace` sees, sorted by host name.
    pub fn visible_services<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.services.iter().filter(move |s| {
            s.visibility.visible_to(namespace)
                && self
                    .service_for(&s.id.hostname, namespace)
                    .is_some_and(|chosen| chosen.id == s.id)
        })
    }

    /// The endpoints of one port of a service.
    pub fn endpoints_of(&self, service: &ServiceId, port: u16) -> &[Endpoint] {
        self.endpoints
            .get(service)
            .and_then(|ports| ports.get(&port))
            .map_or(&[], Vec::as_slice)
    }

    /// The workload with address `address` in `namespace`.
    pub fn workload_at(&self, address: &str) -> Option<&Arc<Workload>> {
        self.by_address.get(address).map(|&i| &self.workloads[i])
    }

    /// The services whose selector selects a workload with `labels` in `namespace`.
    pub fn services_selecting<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.services.iter().filter(move |s| {
            s.id.namespace == namespace
                && s.selector
                    .as_ref()
                    .is_some_and(|sel| !sel.is_empty() && labels_match(sel, labels))
        })
    }
}

/// Whether `labels` has every label of `selector`.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The FQDN of a host written in namespace `namespace`: `reviews` →
/// `reviews.<namespace>.svc.cluster.local`, `reviews.other` →
/// `reviews.other.svc.cluster.local`; names with more dots, and wildcards, are kept.
pub fn resolve_short_name(host: &str, namespace: &str) -> String {
    if host.contains('*') {
        return host.to_owned();
    }
    match host.matches('.').count() {
        0 => format!("{host}.{namespace}.{DOMAIN_SUFFIX}"),
        1 => format!("{host}.{DOMAIN_SUFFIX}"),
        _ => host.to_owned(),
    }
}

/// Workloads with an index by namespace and label (selectors never cross namespaces), so
/// that a thousand services find their workloads among thousands without scanning them all.
struct Workloads {
    all: Vec<Workload>,
    /// (namespace, label key, label value) → workloads, in `all` order.
    by_label: HashMap<(String, String, String), Vec<usize>>,
}

impl Workloads {
    fn new(all: Vec<Workload>) -> Self {
        let mut by_label: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        for (index, workload) in all.iter().enumerate() {
            for (key, value) in &workload.labels {
                by_label
                    .entry((workload.namespace.clone(), key.clone(), value.clone()))
                    .or_default()
                    .push(index);
            }
        }
        Workloads { all, by_label }
    }

    /// The workloads of `namespace` that have every label of a (non-empty) selector.
    fn selected_by<'a>(
        &'a self,
        namespace: &str,
        selector: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        // Candidates: those with the selector's rarest label; then the whole selector.
        let candidates = selector
            .iter()
            .map(|(key, value)| {
                self.by_label
                    .get(&(namespace.to_owned(), key.clone(), value.clone()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|list| list.len())
            .unwrap_or(&[]);
        candidates
            .iter()
            .map(|i| &self.all[*i])
            .filter(move |w| labels_match(selector, &w.labels))
    }
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

fn collect_workloads(snapshot: &Snapshot) -> Vec<Workload> {
    let mut workloads = Vec::new();
    for (_, stored) in snapshot.of_kind(Kind::Pod) {
        if let Resource::Pod(pod) = &*stored.resource {
            if let Some(workload) = pod_workload(pod) {
                workloads.push(workload);
            }
        }
    }
    for (_, stored) in snapshot.of_kind(Kind::WorkloadEntry) {
        if let Resource::WorkloadEntry(entry) = &*stored.resource {
            let namespace = namespace_of(&entry.metadata);
            let mut workload = entry_workload(&entry.spec, &namespace);
            workload.name = entry.metadata.name.clone().unwrap_or_default();
            if !workload.address.is_empty() {
                workloads.push(workload);
            }
        }
    }
    workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    workloads
}

/// A running, ready Pod with an IP as a workload.
fn pod_workload(pod: &core::Pod) -> Option<Workload> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let not_ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "False");
    if not_ready || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let named_ports = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let name = p.name.clone()?;
            Some((name, u16::try_from(p.container_port).ok()?))
        })
        .collect();
    Some(Workload {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: namespace_of(&pod.metadata),
        address: ip,
        locality: labels
            .get(LOCALITY_LABEL)
            .map(|l| l.replace('.', "/"))
            .unwrap_or_default(),
        labels,
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        named_ports,
        weight: None,
        is_pod: true,
    })
}

fn entry_workload(entry: &se::WorkloadEntry, namespace: &str) -> Workload {
    Workload {
        name: String::new(),
        namespace: namespace.to_owned(),
        address: entry.address.clone().unwrap_or_default(),
        labels: entry.labels.clone(),
        service_account: entry
            .service_account
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        locality: entry.locality.clone().unwrap_or_default(),
        named_ports: entry
            .ports
            .iter()
            .filter_map(|(name, port)| Some((name.clone(), u16::try_from(*port).ok()?)))
            .collect(),
        weight: entry.weight,
        is_pod: false,
    }
}

fn endpoint_for(workload: &Workload, port: u16) -> Endpoint {
    Endpoint {
        address: workload.address.clone(),
        port,
        labels: workload.labels.clone(),
        service_account: workload.service_account.clone(),
        locality: workload.locality.clone(),
        weight: workload.weight.unwrap_or(1).max(1),
        workload: if workload.name.is_empty() {
            String::new()
        } else {
            format!("{}/{}", workload.namespace, workload.name)
        },
    }
}

fn kubernetes_service(
    service: &core::Service,
    workloads: &Workloads,
    snapshot: &Snapshot,
) -> Option<(Service, BTreeMap<u16, Vec<Endpoint>>)> {
    let name = service.metadata.name.clone()?;
    let namespace = namespace_of(&service.metadata);
    let spec = service.spec.clone().unwrap_or_default();
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let target_port = match &p.target_port {
                Some(IntOrString::Int(n)) => TargetPort::Number(u16::try_from(*n).ok()?),
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) => TargetPort::Number(n),
                    Err(_) => TargetPort::Name(s.clone()),
                },
                None => TargetPort::Number(port),
            };
            Some(ServicePort {
                name: p.name.clone().unwrap_or_default(),
                port,
                target_port,
                protocol: Protocol::of_kubernetes_port(p),
            })
        })
        .collect();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let vip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let export_to: Vec<String> = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPORT_TO_ANNOTATION))
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    let svc = Service {
        id: ServiceId {
            hostname: format!("{name}.{namespace}.{DOMAIN_SUFFIX}"),
            namespace: namespace.clone(),
        },
        name: name.clone(),
        vip,
        ports,
        resolution: if headless {
            Resolution::Passthrough
        } else {
            Resolution::ClientSideLb
        },
        registry: Registry::Kubernetes,
        mesh_external: spec.type_.as_deref() == Some("ExternalName"),
        visibility: Visibility::from_export_to(&export_to, &namespace),
        selector: selector.clone(),
    };
    let mut endpoints: BTreeMap<u16, Vec<Endpoint>> = BTreeMap::new();
    if let Some(selector) = &selector {
        for workload in workloads.selected_by(&namespace, selector) {
            for port in &svc.ports {
                let target = match &port.target_port {
                    TargetPort::Number(n) => Some(*n),
                    TargetPort::Name(name) => workload.named_ports.get(name).copied(),
                };
                // WorkloadEntries map service port names to their own ports.
                let target = if workload.is_pod {
                    target
                } else {
                    workload.named_ports.get(&port.name).copied().or(target)
                };
                if let Some(target) = target {
                    endpoints
                        .entry(port.port)
                        .or_default()
                        .push(endpoint_for(workload, target));
                }
            }
        }
    } else {
        manual_endpoints(&svc, snapshot, &workloads.all, &mut endpoints);
    }
    for list in endpoints.values_mut() {
        list.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
        list.dedup();
    }
    Some((svc, endpoints))
}

/// Endpoints of a Service without a selector: from its Endpoints and EndpointSlices.
fn manual_endpoints(
    svc: &Service,
    snapshot: &Snapshot,
    workloads: &[Workload],
    endpoints: &mut BTreeMap<u16, Vec<Endpoint>>,
) {
    let mut add = |address: &str, port_name: &str, target: u16, ready: bool| {
        if !ready {
            return;
        }
        let port = svc
            .ports
            .iter()
            .find(|p| p.name == port_name || svc.ports.len() == 1);
        let Some(port) = port else { return };
        let endpoint = match workloads.iter().find(|w| w.address == address) {
            Some(workload) => endpoint_for(workload, target),
            None => Endpoint {
                address: address.to_owned(),
                port: target,
                labels: BTreeMap::new(),
                service_account: String::new(),
                locality: String::new(),
                weight: 1,
                workload: String::new(),
            },
        };
        endpoints.entry(port.port).or_default().push(endpoint);
    };
    for (_, stored) in snapshot.of_kind(Kind::Endpoints) {
        let Resource::Endpoints(eps) = &*stored.resource else {
            continue;
        };
        if eps.metadata.name.as_deref() != Some(svc.name.as_str())
            || namespace_of(&eps.metadata) != svc.id.namespace
        {
            continue;
        }
        for subset in eps.subsets.iter().flatten() {
            for address in subset.addresses.iter().flatten() {
                for port in subset.ports.iter().flatten() {
                    if let Ok(target) = u16::try_from(port.port) {
                        add(
                            &address.ip,
                            port.name.as_deref().unwrap_or(""),
                            target,
                            true,
                        );
                    }
                }
            }
        }
    }
    for (_, stored) in snapshot.of_kind(Kind::EndpointSlice) {
        let Resource::EndpointSlice(slice) = &*stored.resource else {
            continue;
        };
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"));
        if owner != Some(&svc.name) || namespace_of(&slice.metadata) != svc.id.namespace {
            continue;
        }
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            for address in &endpoint.addresses {
                for port in slice.ports.iter().flatten() {
                    if let Some(target) = port.port.and_then(|p| u16::try_from(p).ok()) {
                        add(address, port.name.as_deref().unwrap_or(""), target, ready);
                    }
                }
            }
        }
    }
}

fn service_entry_services(
    entry: &bosun_api::Object<se::ServiceEntry>,
    workloads: &Workloads,
) -> Vec<(Service, BTreeMap<u16, Vec<Endpoint>>)> {
    let namespace = namespace_of(&entry.metadata);
    let spec = &entry.spec;
    let resolution = match spec.resolution {
        None | Some(SeResolution::None) => Resolution::Passthrough,
        Some(SeResolution::Static) => Resolution::ClientSideLb,
        Some(SeResolution::Dns) => Resolution::Dns,
        Some(SeResolution::DnsRoundRobin) => Resolution::DnsRoundRobin,
    };
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .filter_map(|p| {
            let port = u16::try_from(p.number).ok()?;
            let target = p
                .target_port
                .and_then(|t| u16::try_from(t).ok())
                .unwrap_or(port);
            Some(ServicePort {
                name: p.name.clone(),
                port,
                target_port: TargetPort::Number(target),
                protocol: p
                    .protocol
                    .as_deref()
                    .map_or(Protocol::Unknown, Protocol::parse),
            })
        })
        .collect();
    let vip = match spec.addresses.as_slice() {
        [single] => single.parse::<IpAddr>().ok(),
        _ => None,
    };
    let selector = spec
        .workload_selector
        .as_ref()
        .map(|s| s.labels.clone())
        .filter(|l| !l.is_empty());
    let selected: Vec<Workload> = match &selector {
        Some(selector) => workloads
            .selected_by(&namespace, selector)
            .cloned()
            .collect(),
        None => spec
            .endpoints
            .iter()
            .map(|e| entry_workload(e, &namespace))
            .collect(),
    };
    spec.hosts
        .iter()
        .map(|host| {
            let svc = Service {
                id: ServiceId {
                    hostname: host.clone(),
                    namespace: namespace.clone(),
                },
                name: entry.metadata.name.clone().unwrap_or_default(),
                vip,
                ports: ports.clone(),
                resolution,
                registry: Registry::ServiceEntry,
                mesh_external: spec.location != Some(se::Location::MeshInternal),
                visibility: Visibility::from_export_to(&spec.export_to, &namespace),
                selector: selector.clone(),
            };
            let mut endpoints: BTreeMap<u16, Vec<Endpoint>> = BTreeMap::new();
            for port in &svc.ports {
                let TargetPort::Number(default_target) = port.target_port else {
                    continue;
                };
                let list = endpoints.entry(port.port).or_default();
                for workload in &selected {
                    let target = workload
                        .named_ports
                        .get(&port.name)
                        .copied()
                        .unwrap_or(default_target);
                    list.push(endpoint_for(workload, target));
                }
                // A DNS service without endpoints resolves its own host name.
                if selected.is_empty()
                    && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                    && !host.contains('*')
                {
                    list.push(Endpoint {
                        address: host.clone(),
                        port: default_target,
                        labels: BTreeMap::new(),
                        service_account: String::new(),
                        locality: String::new(),
                        weight: 1,
                        workload: String::new(),
                    });
                }
            }
            (svc, endpoints)
        })
        .collect()
}
