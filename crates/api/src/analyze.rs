//! Cross-resource analysis, as `istioctl analyze` does it: mistakes no single resource shows,
//! reported with Istio's message codes and wording.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::load::node::Location;
use crate::load::{Loaded, Origin};
use crate::networking::{Destination, HttpRoute, VirtualService};
use crate::path::FieldPath;
use crate::resource::{Kind, Resource};

/// How serious an analysis message is (Istio's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Informational.
    Info,
    /// Probably a mistake.
    Warning,
    /// Certainly a mistake.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// One of Istio's analysis message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The code, `IST0101`.
    pub code: &'static str,
    /// The name, `ReferencedResourceNotFound`.
    pub name: &'static str,
    /// The level.
    pub level: Level,
}

/// IST0101: a resource refers to something that does not exist.
pub const REFERENCED_RESOURCE_NOT_FOUND: MessageType = MessageType {
    code: "IST0101",
    name: "ReferencedResourceNotFound",
    level: Level::Error,
};

/// IST0109: VirtualServices for the mesh define the same host.
pub const CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS: MessageType = MessageType {
    code: "IST0109",
    name: "ConflictingMeshGatewayVirtualServiceHosts",
    level: Level::Error,
};

/// IST0112: a destination of a multi-port service has no port.
pub const VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED: MessageType = MessageType {
    code: "IST0112",
    name: "VirtualServiceDestinationPortSelectorRequired",
    level: Level::Error,
};

/// IST0118: a Service port name does not say its protocol.
pub const PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION: MessageType = MessageType {
    code: "IST0118",
    name: "PortNameIsNotUnderNamingConvention",
    level: Level::Info,
};

/// BSN0001 (Bosun's own; Istio has no code for it): VirtualServices bound to the same gateway
/// define the same host, so their routes are merged in creation order.
pub const CONFLICTING_GATEWAY_VIRTUAL_SERVICE_HOSTS: MessageType = MessageType {
    code: "BSN0001",
    name: "ConflictingGatewayVirtualServiceHosts",
    level: Level::Warning,
};

/// An analysis finding about one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its type.
    pub message_type: MessageType,
    /// The resource's kind.
    pub kind: Kind,
    /// The resource's `namespace/name`.
    pub resource: String,
    /// Where the resource came from.
    pub origin: Origin,
    /// Where in the file the finding is.
    pub location: Location,
    /// The field concerned.
    pub path: FieldPath,
    /// The text.
    pub text: String,
}

impl fmt::Display for Message {
    /// `file:line:col: Error [IST0101] (VirtualService default/reviews) text`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} [{}] ({} {}) {}",
            self.origin.file,
            self.location,
            self.message_type.level,
            self.message_type.code,
            self.kind,
            self.resource,
            self.text
        )
    }
}

/// Labels that `bosun up` gives the ingress gateway it always runs, so Gateways selecting it
/// are bound even when no manifest declares it.
pub const BUILTIN_INGRESS_GATEWAY_LABELS: &[(&str, &str)] =
    &[("istio", "ingressgateway"), ("app", "istio-ingressgateway")];

/// Analyses a set of valid resources together.
pub fn analyze(resources: &[Loaded]) -> Vec<Message> {
    let world = World::of(resources);
    let mut messages = Vec::new();
    for loaded in resources {
        let mut report = |message_type: MessageType, path: FieldPath, text: String| {
            messages.push(Message {
                message_type,
                kind: loaded.resource.kind(),
                resource: loaded.resource.qualified_name(),
                origin: loaded.origin.clone(),
                location: loaded.location_of(&path),
                path,
                text,
            });
        };
        let namespace = loaded.resource.namespace_or_default().unwrap_or("default");
        match &loaded.resource {
            Resource::VirtualService(vs) => {
                virtual_service(&vs.spec, namespace, &world, &mut report);
            }
            Resource::DestinationRule(dr) => {
                let host = fqdn(&dr.spec.host, namespace);
                if !world.host_exists(&host) {
                    report(
                        REFERENCED_RESOURCE_NOT_FOUND,
                        FieldPath::root().key("spec").key("host"),
                        format!("Referenced host not found: \"{}\"", dr.spec.host),
                    );
                }
            }
            Resource::Gateway(gw) => {
                if !gw.spec.selector.is_empty() && !world.workload_matches(&gw.spec.selector) {
                    let selector: Vec<String> = gw
                        .spec
                        .selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    report(
                        REFERENCED_RESOURCE_NOT_FOUND,
                        FieldPath::root().key("spec").key("selector"),
                        format!("Referenced selector not found: \"{}\"", selector.join(",")),
                    );
                }
            }
            Resource::Service(service) => {
                let ports = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.as_deref())
                    .unwrap_or_default();
                for (i, port) in ports.iter().enumerate() {
                    let named_ok = port.name.as_deref().is_some_and(port_name_has_protocol);
                    let app_protocol_ok = port.app_protocol.is_some();
                    if !named_ok && !app_protocol_ok {
                        let target = port
                            .target_port
                            .as_ref()
                            .map(|t| match t {
                                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                            })
                            .unwrap_or_else(|| port.port.to_string());
                        report(
                            PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
                            FieldPath::root().key("spec").key("ports").index(i),
                            format!(
                                "Port name {} (port: {}, targetPort: {target}) doesn't follow the naming \
                                 convention of Istio port.",
                                port.name.as_deref().unwrap_or(""),
                                port.port
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    messages.extend(conflicting_virtual_services(resources));
    messages.sort_by(|a, b| {
        (a.origin.file.as_ref(), a.location).cmp(&(b.origin.file.as_ref(), b.location))
    });
    messages
}

/// Whether a Service port name follows Istio's `<protocol>[-<suffix>]` convention.
pub fn port_name_has_protocol(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql",
        "redis", "h2c", "ws", "wss",
    ];
    let lower = name.to_ascii_lowercase();
    PREFIXES
        .iter()
        .any(|p| lower == *p || lower.starts_with(&format!("{p}-")))
}

/// The fully qualified form of a host written in `namespace`: `reviews` →
/// `reviews.default.svc.cluster.local`, `reviews.prod` → `reviews.prod.svc.cluster.local`.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('*') || host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_owned();
    }
    match host.matches('.').count() {
        0 => format!("{host}.{namespace}.svc.cluster.local"),
        1 => format!("{host}.svc.cluster.local"),
        _ => host.to_owned(),
    }
}

/// What exists: hosts, their subsets and ports, workloads and gateways.
struct World {
    /// Exact hosts (FQDNs of Services, ServiceEntry hosts).
    hosts: BTreeSet<String>,
    /// Wildcard ServiceEntry hosts (`*.example.com`).
    wildcard_hosts: Vec<String>,
    /// Subsets defined per FQDN host by DestinationRules (wildcard DR hosts included as is).
    subsets: BTreeMap<String, BTreeSet<String>>,
    /// Ports of each Service FQDN.
    service_ports: BTreeMap<String, Vec<i32>>,
    /// Labels of every workload (pod templates, pods, WorkloadEntries, built-in gateway).
    workload_labels: Vec<BTreeMap<String, String>>,
    /// Gateways, `namespace/name`.
    gateways: BTreeSet<String>,
}

impl World {
    fn of(resources: &[Loaded]) -> Self {
        let mut world = World {
            hosts: BTreeSet::new(),
            wildcard_hosts: Vec::new(),
            subsets: BTreeMap::new(),
            service_ports: BTreeMap::new(),
            workload_labels: vec![
                BUILTIN_INGRESS_GATEWAY_LABELS
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ],
            gateways: BTreeSet::new(),
        };
        for loaded in resources {
            let namespace = loaded.resource.namespace_or_default().unwrap_or("default");
            match &loaded.resource {
                Resource::Service(service) => {
                    let host = fqdn(loaded.resource.name(), namespace);
                    let ports = service
                        .spec
                        .as_ref()
                        .and_then(|s| s.ports.as_ref())
                        .map(|ports| ports.iter().map(|p| p.port).collect())
                        .unwrap_or_default();
                    world.service_ports.insert(host.clone(), ports);
                    world.hosts.insert(host);
                }
                Resource::ServiceEntry(se) => {
                    for host in &se.spec.hosts {
                        if host.starts_with('*') {
                            world.wildcard_hosts.push(host.clone());
                        } else {
                            world.hosts.insert(fqdn(host, namespace));
                        }
                    }
                }
                Resource::DestinationRule(dr) => {
                    world
                        .subsets
                        .entry(fqdn(&dr.spec.host, namespace))
                        .or_default()
                        .extend(dr.spec.subsets.iter().map(|s| s.name.clone()));
                }
                Resource::Gateway(_) => {
                    world
                        .gateways
                        .insert(format!("{namespace}/{}", loaded.resource.name()));
                }
                Resource::Deployment(deployment) => {
                    if let Some(labels) = deployment
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref())
                        .and_then(|m| m.labels.clone())
                    {
                        world.workload_labels.push(labels);
                    }
                }
                Resource::Pod(pod) => {
                    if let Some(labels) = pod.metadata.labels.clone() {
                        world.workload_labels.push(labels);
                    }
                }
                Resource::WorkloadEntry(we) => {
                    world.workload_labels.push(we.spec.labels.clone());
                }
                _ => {}
            }
        }
        world
    }

    fn host_exists(&self, host: &str) -> bool {
        if let Some(suffix) = host.strip_prefix('*') {
            return self.hosts.iter().any(|h| h.ends_with(suffix))
                || self.wildcard_hosts.iter().any(|h| h == host);
        }
        self.hosts.contains(host)
            || self
                .wildcard_hosts
                .iter()
                .any(|w| host.ends_with(&w[1..]) && host.len() > w.len() - 1)
    }

    fn subset_exists(&self, host: &str, subset: &str) -> bool {
        self.subsets.iter().any(|(dr_host, subsets)| {
            subsets.contains(subset)
                && (dr_host == host
                    || dr_host == "*"
                    || dr_host
                        .strip_prefix('*')
                        .is_some_and(|suffix| host.ends_with(suffix)))
        })
    }

    fn workload_matches(&self, selector: &BTreeMap<String, String>) -> bool {
        self.workload_labels
            .iter()
            .any(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

fn virtual_service(
    vs: &VirtualService,
    namespace: &str,
    world: &World,
    report: &mut impl FnMut(MessageType, FieldPath, String),
) {
    let spec = FieldPath::root().key("spec");
    for (i, gateway) in vs.gateways.iter().enumerate() {
        check_gateway(
            gateway,
            namespace,
            world,
            spec.key("gateways").index(i),
            report,
        );
    }
    for (i, route) in vs.http.iter().enumerate() {
        for (j, m) in route.matches.iter().enumerate() {
            for (k, gateway) in m.gateways.iter().enumerate() {
                let path = spec
                    .key("http")
                    .index(i)
                    .key("match")
                    .index(j)
                    .key("gateways")
                    .index(k);
                check_gateway(gateway, namespace, world, path, report);
            }
        }
    }
    let mut check_destination = |destination: &Destination, path: FieldPath| {
        let host = fqdn(&destination.host, namespace);
        if !world.host_exists(&host) {
            report(
                REFERENCED_RESOURCE_NOT_FOUND,
                path.key("host"),
                format!("Referenced host not found: \"{}\"", destination.host),
            );
            return;
        }
        if let Some(subset) = &destination.subset {
            if !world.subset_exists(&host, subset) {
                report(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    path.key("subset"),
                    format!(
                        "Referenced host+subset in destinationrule not found: \"{}+{subset}\"",
                        destination.host
                    ),
                );
            }
        }
        if destination.port.is_none() {
            if let Some(ports) = world.service_ports.get(&host) {
                if ports.len() > 1 {
                    let listed: Vec<String> = ports.iter().map(i32::to_string).collect();
                    report(
                        VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                        path.clone(),
                        format!(
                            "This VirtualService routes to a service \"{}\" that exposes multiple ports \
                             [{}]. Specifying a port in the destination is required to disambiguate.",
                            destination.host,
                            listed.join(" ")
                        ),
                    );
                }
            }
        }
    };
    for (i, route) in vs.http.iter().enumerate() {
        http_route_destinations(route, &spec.key("http").index(i), &mut check_destination);
    }
    for (field, routes) in [
        ("tcp", vs.tcp.iter().map(|r| &r.route).collect::<Vec<_>>()),
        ("tls", vs.tls.iter().map(|r| &r.route).collect::<Vec<_>>()),
    ] {
        for (i, route) in routes.iter().enumerate() {
            for (j, destination) in route.iter().enumerate() {
                check_destination(
                    &destination.destination,
                    spec.key(field)
                        .index(i)
                        .key("route")
                        .index(j)
                        .key("destination"),
                );
            }
        }
    }
}

fn http_route_destinations(
    route: &HttpRoute,
    path: &FieldPath,
    check: &mut impl FnMut(&Destination, FieldPath),
) {
    for (j, destination) in route.route.iter().enumerate() {
        check(
            &destination.destination,
            path.key("route").index(j).key("destination"),
        );
    }
    if let Some(mirror) = &route.mirror {
        check(mirror, path.key("mirror"));
    }
    for (j, mirror) in route.mirrors.iter().enumerate() {
        check(
            &mirror.destination,
            path.key("mirrors").index(j).key("destination"),
        );
    }
}

fn check_gateway(
    gateway: &str,
    namespace: &str,
    world: &World,
    path: FieldPath,
    report: &mut impl FnMut(MessageType, FieldPath, String),
) {
    if gateway == "mesh" {
        return;
    }
    let qualified = if gateway.contains('/') {
        gateway.to_owned()
    } else {
        format!("{namespace}/{gateway}")
    };
    if !world.gateways.contains(&qualified) {
        report(
            REFERENCED_RESOURCE_NOT_FOUND,
            path,
            format!("Referenced gateway not found: \"{gateway}\""),
        );
    }
}

/// IST0109 (and, for gateways, BSN0001): several VirtualServices define the same host for the
/// same gateway, which makes routing undefined.
fn conflicting_virtual_services(resources: &[Loaded]) -> Vec<Message> {
    // (gateway, fqdn host) -> VirtualServices defining it.
    let mut owners: BTreeMap<(String, String), Vec<&Loaded>> = BTreeMap::new();
    for loaded in resources {
        let Resource::VirtualService(vs) = &loaded.resource else {
            continue;
        };
        let namespace = loaded.resource.namespace_or_default().unwrap_or("default");
        let gateways: Vec<String> = if vs.spec.gateways.is_empty() {
            vec!["mesh".to_owned()]
        } else {
            vs.spec
                .gateways
                .iter()
                .map(|g| {
                    if g == "mesh" || g.contains('/') {
                        g.clone()
                    } else {
                        format!("{namespace}/{g}")
                    }
                })
                .collect()
        };
        for gateway in gateways {
            for host in &vs.spec.hosts {
                owners
                    .entry((gateway.clone(), fqdn(host, namespace)))
                    .or_default()
                    .push(loaded);
            }
        }
    }
    let mut messages = Vec::new();
    for ((gateway, host), defining) in owners {
        if defining.len() < 2 {
            continue;
        }
        let names: Vec<String> = defining
            .iter()
            .map(|l| l.resource.qualified_name())
            .collect();
        for loaded in defining {
            let (message_type, text) = if gateway == "mesh" {
                (
                    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
                    format!(
                        "The VirtualServices {} associated with mesh gateway define the same host {host} \
                         which can lead to undefined behavior. This can be fixed by merging the \
                         conflicting VirtualServices into a single resource.",
                        names.join(",")
                    ),
                )
            } else {
                (
                    CONFLICTING_GATEWAY_VIRTUAL_SERVICE_HOSTS,
                    format!(
                        "The VirtualServices {} associated with gateway {gateway} define the same host \
                         {host}; their routes are merged in creation order. Merge them into a single \
                         resource to make the order explicit.",
                        names.join(",")
                    ),
                )
            };
            let path = FieldPath::root().key("spec").key("hosts");
            messages.push(Message {
                message_type,
                kind: Kind::VirtualService,
                resource: loaded.resource.qualified_name(),
                origin: loaded.origin.clone(),
                location: loaded.location_of(&path),
                path,
                text,
            });
        }
    }
    messages
}

#[cfg(test)]
mod tests;
