//! LDS for sidecars: `virtualOutbound` (15001) handing connections to per-port outbound
//! listeners (`0.0.0.0_9080` for HTTP, `<VIP>_<port>` for TCP), `virtualInbound` (15006)
//! with a chain per workload port; without capture, listeners on the pod's own address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use bosun_api::networking::VirtualService;
use bosun_xds::pb::envoy::config::core::v3::TrafficDirection;
use bosun_xds::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use bosun_xds::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    route::Action,
    route_action::{ClusterSpecifier, MaxStreamDuration},
    route_match::PathSpecifier,
};
use bosun_xds::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use bosun_xds::pb::envoy::extensions::filters::http::router::v3::Router;
use bosun_xds::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use bosun_xds::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::{
        CodecType, PathWithEscapedSlashesAction, RouteSpecifier, UpgradeConfig,
    },
    http_filter,
};
use bosun_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy,
    tcp_proxy::{self, ClusterSpecifier as TcpClusterSpecifier},
};
use bosun_xds::pb::google::protobuf::{BoolValue, Duration as ProtoDuration, UInt32Value};

use super::clusters::{OutboundView, inbound_cluster, inbound_name, outbound_name};
use super::endpoints::socket_address;
use super::routes::{FAULT_FILTER, RouteScope, destination_cluster};
use super::{
    BLACKHOLE_CLUSTER, HTTP_PROXY_ROUTE, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND_PORT, VIRTUAL_OUTBOUND_PORT, XdsResource, ads_config_source, any,
};
use crate::context::{PushContext, host_matches};
use crate::model::{Protocol, Service, TargetPort};
use crate::node::{Capture, ProxyNode};

/// How an HTTP connection manager finds its routes.
pub(super) enum Routes {
    /// Over RDS, by name.
    Rds(String),
    /// Inline.
    Inline(Box<RouteConfiguration>),
}

/// An HTTP connection manager as Istio configures one.
pub(super) fn http_connection_manager(
    stat_prefix: &str,
    routes: Routes,
    with_fault_filter: bool,
    use_remote_address: bool,
) -> Filter {
    let mut http_filters = Vec::new();
    if with_fault_filter {
        http_filters.push(HttpFilter {
            name: FAULT_FILTER.to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(
                &HttpFault::default(),
            ))),
            ..Default::default()
        });
    }
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    });
    let hcm = HttpConnectionManager {
        codec_type: CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(match routes {
            Routes::Rds(name) => RouteSpecifier::Rds(Rds {
                config_source: Some(ads_config_source()),
                route_config_name: name,
            }),
            Routes::Inline(config) => RouteSpecifier::RouteConfig(*config),
        }),
        http_filters,
        server_name: "istio-envoy".to_owned(),
        use_remote_address: Some(BoolValue {
            value: use_remote_address,
        }),
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".to_owned(),
            ..Default::default()
        }],
        normalize_path: Some(BoolValue { value: true }),
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::KeepUnchanged as i32,
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
    }
}

/// A TCP proxy to one cluster, or split by weight.
pub(super) fn tcp_proxy(stat_prefix: &str, clusters: &[(String, u32)]) -> Filter {
    let cluster_specifier = match clusters {
        [(single, _)] => TcpClusterSpecifier::Cluster(single.clone()),
        many => TcpClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(
                    |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name: name.clone(),
                        weight: *weight,
                        ..Default::default()
                    },
                )
                .collect(),
        }),
    };
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_owned(),
        cluster_specifier: Some(cluster_specifier),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&proxy))),
    }
}

fn listener_filter<M: prost::Message + prost::Name>(name: &str, config: &M) -> ListenerFilter {
    ListenerFilter {
        name: name.to_owned(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

fn chain(name: &str, filters: Vec<Filter>) -> FilterChain {
    FilterChain {
        name: name.to_owned(),
        filters,
        ..Default::default()
    }
}

/// Outbound listeners of a sidecar whose traffic is captured.
pub(super) fn outbound(
    context: &PushContext,
    proxy: &ProxyNode,
    view: &OutboundView<'_>,
    allow_any: bool,
) -> Vec<Arc<XdsResource>> {
    if proxy.capture != Capture::Iptables {
        return Vec::new();
    }
    let catch_all = if allow_any {
        PASSTHROUGH_CLUSTER
    } else {
        BLACKHOLE_CLUSTER
    };
    let mut listeners = vec![Listener {
        name: "virtualOutbound".to_owned(),
        address: Some(socket_address("0.0.0.0", VIRTUAL_OUTBOUND_PORT)),
        use_original_dst: Some(BoolValue { value: true }),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: vec![chain(
            "virtualOutbound-catchall-tcp",
            vec![tcp_proxy(catch_all, &[(catch_all.to_owned(), 1)])],
        )],
        ..Default::default()
    }];
    // Per port: the HTTP services, and the TCP services by address.
    let mut http_ports: BTreeMap<u16, Protocol> = BTreeMap::new();
    let mut tcp: BTreeMap<(Option<IpAddr>, u16), Vec<&Service>> = BTreeMap::new();
    for service in &view.services {
        for port in &service.ports {
            match port.protocol {
                Protocol::Udp => {}
                p if p.is_http() => {
                    http_ports.entry(port.port).or_insert(p);
                }
                Protocol::Unknown => {
                    http_ports.insert(port.port, Protocol::Unknown);
                }
                _ => tcp
                    .entry((service.vip, port.port))
                    .or_default()
                    .push(service),
            }
        }
    }
    for (port, protocol) in &http_ports {
        let name = format!("0.0.0.0_{port}");
        let hcm = http_connection_manager(
            &format!("outbound_{name}"),
            Routes::Rds(port.to_string()),
            true,
            false,
        );
        let mut listener = Listener {
            name: name.clone(),
            address: Some(socket_address("0.0.0.0", *port)),
            bind_to_port: Some(BoolValue { value: false }),
            traffic_direction: TrafficDirection::Outbound as i32,
            ..Default::default()
        };
        if *protocol == Protocol::Unknown {
            // Sniffed: HTTP by its first bytes, anything else passed through.
            listener.listener_filters = vec![listener_filter(
                "envoy.filters.listener.http_inspector",
                &HttpInspector {},
            )];
            listener.filter_chains = vec![FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    application_protocols: vec!["http/1.1".to_owned(), "h2c".to_owned()],
                    ..Default::default()
                }),
                ..chain(&format!("{name}-http"), vec![hcm])
            }];
            listener.default_filter_chain = Some(chain(
                &format!("{name}-tcp"),
                vec![tcp_proxy(catch_all, &[(catch_all.to_owned(), 1)])],
            ));
        } else {
            listener.filter_chains = vec![chain(&name, vec![hcm])];
        }
        listeners.push(listener);
    }
    for ((vip, port), services) in &tcp {
        let address = vip.map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
        if vip.is_none() && http_ports.contains_key(port) {
            continue;
        }
        let name = format!("{address}_{port}");
        let clusters = match services.as_slice() {
            [service] => tcp_destinations(context, proxy, service, *port),
            _ => vec![(catch_all.to_owned(), 1)],
        };
        let stat_prefix = clusters
            .first()
            .map_or_else(|| catch_all.to_owned(), |(c, _)| c.clone());
        listeners.push(Listener {
            name: name.clone(),
            address: Some(socket_address(&address, *port)),
            bind_to_port: Some(BoolValue { value: false }),
            traffic_direction: TrafficDirection::Outbound as i32,
            filter_chains: vec![chain(&name, vec![tcp_proxy(&stat_prefix, &clusters)])],
            ..Default::default()
        });
    }
    listeners
        .into_iter()
        .map(|l| Arc::new(XdsResource::new(l.name.clone(), &l)))
        .collect()
}

/// Where TCP traffic to a service port goes: the first matching `tcp` route of the
/// VirtualService for it, else the service's own cluster.
fn tcp_destinations(
    context: &PushContext,
    proxy: &ProxyNode,
    service: &Service,
    port: u16,
) -> Vec<(String, u32)> {
    let scope = RouteScope {
        gateway: "mesh",
        namespace: &proxy.namespace,
        labels: &proxy.labels,
        port,
    };
    let vs = context
        .virtual_services_for("mesh", &proxy.namespace)
        .find(|vs| {
            vs.hosts
                .iter()
                .any(|h| host_matches(h, &service.id.hostname))
        });
    vs.and_then(|vs| tcp_route_clusters(context, &scope, &vs.spec))
        .unwrap_or_else(|| vec![(outbound_name(port, "", &service.id.hostname), 1)])
}

/// The clusters of the first `tcp` route that applies, with weights.
pub(super) fn tcp_route_clusters(
    context: &PushContext,
    scope: &RouteScope<'_>,
    vs: &VirtualService,
) -> Option<Vec<(String, u32)>> {
    let route = vs.tcp.iter().find(|r| {
        r.matches.is_empty()
            || r.matches.iter().any(|m| {
                m.port.is_none_or(|p| p == u32::from(scope.port))
                    && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == scope.gateway))
            })
    })?;
    let clusters: Vec<(String, u32)> = route
        .route
        .iter()
        .map(|d| {
            (
                destination_cluster(context, scope, &d.destination),
                u32::try_from(d.weight.unwrap_or(100)).unwrap_or(0),
            )
        })
        .filter(|(_, w)| *w > 0 || route.route.len() == 1)
        .collect();
    (!clusters.is_empty()).then_some(clusters)
}

/// Listeners and clusters for the workload beside the sidecar.
#[derive(Debug, Default)]
pub(super) struct Inbound {
    pub listeners: Vec<Arc<XdsResource>>,
    pub clusters: Vec<Arc<XdsResource>>,
}

/// The ports the workload serves (target ports of the services selecting it), with the
/// protocol of the service port that leads there.
fn workload_ports(context: &PushContext, proxy: &ProxyNode) -> BTreeMap<u16, Protocol> {
    let workload = context.registry.workload_at(&proxy.ip().to_string());
    let mut ports = BTreeMap::new();
    for service in context
        .registry
        .services_selecting(&proxy.namespace, &proxy.labels)
    {
        for port in service.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            let target = match &port.target_port {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => workload.and_then(|w| w.named_ports.get(name).copied()),
            };
            if let Some(target) = target {
                ports.entry(target).or_insert(port.protocol);
            }
        }
    }
    ports
}

/// The inbound side of a sidecar: `virtualInbound` with a chain per workload port, or, with
/// no capture, a listener per port on the pod's address.
pub(super) fn inbound(context: &PushContext, proxy: &ProxyNode) -> Inbound {
    let ports = workload_ports(context, proxy);
    let app_address = match &proxy.capture {
        Capture::Iptables => IpAddr::from([127, 0, 0, 1]),
        Capture::None { app_address, .. } => *app_address,
    };
    let mut inbound = Inbound::default();
    let mut chains = Vec::new();
    for (port, protocol) in &ports {
        let cluster = inbound_name(*port);
        inbound.clusters.push(Arc::new(XdsResource::new(
            cluster.clone(),
            &inbound_cluster(*port, app_address),
        )));
        let filter = if protocol.is_http() || *protocol == Protocol::Unknown {
            http_connection_manager(
                &format!("inbound_0.0.0.0_{port}"),
                Routes::Inline(Box::new(inbound_route_config(*port))),
                false,
                false,
            )
        } else {
            tcp_proxy(&cluster, &[(cluster.clone(), 1)])
        };
        match &proxy.capture {
            Capture::Iptables => chains.push(FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value {
                        value: u32::from(*port),
                    }),
                    ..Default::default()
                }),
                ..chain(&format!("0.0.0.0_{port}"), vec![filter])
            }),
            Capture::None { .. } => {
                let name = format!("{}_{port}", proxy.ip());
                let listener = Listener {
                    name: name.clone(),
                    address: Some(socket_address(&proxy.ip().to_string(), *port)),
                    traffic_direction: TrafficDirection::Inbound as i32,
                    filter_chains: vec![chain(&name, vec![filter])],
                    ..Default::default()
                };
                inbound
                    .listeners
                    .push(Arc::new(XdsResource::new(name, &listener)));
            }
        }
    }
    if proxy.capture == Capture::Iptables {
        chains.push(chain(
            "virtualInbound-catchall-tcp",
            vec![tcp_proxy(
                INBOUND_PASSTHROUGH_CLUSTER,
                &[(INBOUND_PASSTHROUGH_CLUSTER.to_owned(), 1)],
            )],
        ));
        // The original destination chooses a chain here, not another listener: handing the
        // connection to the outbound listener of its port would send it out again.
        let listener = Listener {
            name: "virtualInbound".to_owned(),
            address: Some(socket_address("0.0.0.0", VIRTUAL_INBOUND_PORT)),
            traffic_direction: TrafficDirection::Inbound as i32,
            listener_filters: vec![listener_filter(
                "envoy.filters.listener.original_dst",
                &OriginalDst {},
            )],
            filter_chains: chains,
            ..Default::default()
        };
        inbound
            .listeners
            .push(Arc::new(XdsResource::new("virtualInbound", &listener)));
    }
    inbound
}

fn inbound_route_config(port: u16) -> RouteConfiguration {
    let cluster = inbound_name(port);
    RouteConfiguration {
        name: cluster.clone(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".to_owned()],
            routes: vec![Route {
                name: "default".to_owned(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".to_owned())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
                    timeout: Some(ProtoDuration::default()),
                    max_stream_duration: Some(MaxStreamDuration {
                        grpc_timeout_header_max: Some(ProtoDuration::default()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// Without capture: the HTTP proxy listener the application reaches through `HTTP_PROXY`.
pub(super) fn http_proxy_listener(proxy: &ProxyNode) -> Arc<XdsResource> {
    let port = match proxy.capture {
        Capture::None {
            http_proxy_port, ..
        } => http_proxy_port,
        Capture::Iptables => crate::node::DEFAULT_HTTP_PROXY_PORT,
    };
    let ip = proxy.ip().to_string();
    let name = format!("{ip}_{port}");
    let listener = Listener {
        name: name.clone(),
        address: Some(socket_address(&ip, port)),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: vec![chain(
            &name,
            vec![http_connection_manager(
                &format!("outbound_{name}"),
                Routes::Rds(HTTP_PROXY_ROUTE.to_owned()),
                true,
                false,
            )],
        )],
        ..Default::default()
    };
    Arc::new(XdsResource::new(name, &listener))
}
