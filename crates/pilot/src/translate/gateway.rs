//! Routers: listeners from the Gateway servers that select the router's labels (on the
//! Service's target port: `0.0.0.0_8080` for port 80 when the gateway Service maps 80→8080)
//! and route tables (`http.8080`) from the VirtualServices bound to those Gateways, their
//! hosts intersected with the servers'.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_api::networking::{Server, ServerTlsMode};
use bosun_xds::pb::envoy::config::core::v3::{
    DataSource, TrafficDirection, TransportSocket, data_source::Specifier, transport_socket,
};
use bosun_xds::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use bosun_xds::pb::envoy::config::route::v3::{
    RedirectAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
    redirect_action::SchemeRewriteSpecifier, route::Action, route_match::PathSpecifier,
};
use bosun_xds::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use bosun_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, TlsCertificate,
};
use bosun_xds::pb::google::protobuf::BoolValue;

use super::endpoints::socket_address;
use super::listeners::{Routes, http_connection_manager, tcp_proxy, tcp_route_clusters};
use super::routes::{RouteScope, blackhole_host, translate_routes};
use super::{XdsResource, any};
use crate::context::{GatewayEntry, PushContext, host_intersection};
use crate::model::{TargetPort, labels_match};
use crate::node::{Capture, ProxyNode};

/// A router's listeners and route tables.
#[derive(Debug, Default)]
pub(super) struct GatewayResources {
    pub listeners: Vec<Arc<XdsResource>>,
    pub routes: Vec<Arc<XdsResource>>,
}

/// One Gateway server, placed on a listener port.
struct PlacedServer<'a> {
    gateway: &'a GatewayEntry,
    server: &'a Server,
    index: usize,
}

impl PlacedServer<'_> {
    fn is_http(&self) -> bool {
        matches!(
            self.server.port.protocol.to_ascii_uppercase().as_str(),
            "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"
        )
    }

    fn tls_mode(&self) -> Option<ServerTlsMode> {
        self.server.tls.as_ref().and_then(|t| t.mode)
    }

    /// HTTPS or TLS terminated here, HTTP inside.
    fn is_terminated_https(&self) -> bool {
        self.server.port.protocol.eq_ignore_ascii_case("HTTPS")
            && matches!(
                self.tls_mode(),
                Some(ServerTlsMode::Simple | ServerTlsMode::Mutual) | None
            )
    }

    /// Istio's name of an HTTPS server's route table.
    fn https_route_name(&self, listener_port: u16) -> String {
        let name = self
            .server
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.server.port.name, self.index));
        let (namespace, gateway) = self
            .gateway
            .qualified_name
            .split_once('/')
            .unwrap_or(("", &self.gateway.qualified_name));
        format!("https.{listener_port}.{name}.{gateway}.{namespace}")
    }

    /// The server's hosts without their namespace qualifier, with the namespace they are
    /// restricted to.
    fn hosts(&self) -> Vec<(Option<&str>, &str)> {
        self.server
            .hosts
            .iter()
            .map(|h| match h.split_once('/') {
                Some(("*", host)) => (None, host),
                Some((".", host)) => (Some(self.gateway.namespace.as_str()), host),
                Some((ns, host)) => (Some(ns), host),
                None => (None, h.as_str()),
            })
            .collect()
    }
}

/// The port a router listens on for a Gateway server port: the target port of the router's
/// Service port with that number, else the number itself.
fn listener_port(context: &PushContext, proxy: &ProxyNode, server: &Server) -> Option<u16> {
    let number = u16::try_from(server.port.number).ok()?;
    if let Some(target) = server.port.target_port.and_then(|t| u16::try_from(t).ok()) {
        return Some(target);
    }
    for service in context
        .registry
        .services_selecting(&proxy.namespace, &proxy.labels)
    {
        if let Some(port) = service.port(number) {
            if let TargetPort::Number(target) = port.target_port {
                return Some(target);
            }
        }
    }
    Some(number)
}

pub(super) fn generate(context: &PushContext, proxy: &ProxyNode) -> GatewayResources {
    let mut by_port: BTreeMap<u16, Vec<PlacedServer<'_>>> = BTreeMap::new();
    for gateway in context
        .gateways
        .iter()
        .filter(|g| labels_match(&g.spec.selector, &proxy.labels))
    {
        for (index, server) in gateway.spec.servers.iter().enumerate() {
            if let Some(port) = listener_port(context, proxy, server) {
                by_port.entry(port).or_default().push(PlacedServer {
                    gateway,
                    server,
                    index,
                });
            }
        }
    }
    let bind = match proxy.capture {
        Capture::Iptables => "0.0.0.0".to_owned(),
        Capture::None { .. } => proxy.ip().to_string(),
    };
    let mut out = GatewayResources::default();
    for (port, servers) in &by_port {
        let name = format!("0.0.0.0_{port}");
        let stat_prefix = format!("outbound_{name}");
        let mut listener = Listener {
            name: name.clone(),
            address: Some(socket_address(&bind, *port)),
            traffic_direction: TrafficDirection::Outbound as i32,
            ..Default::default()
        };
        let http: Vec<&PlacedServer<'_>> = servers.iter().filter(|s| s.is_http()).collect();
        if !http.is_empty() {
            let route_name = format!("http.{port}");
            out.routes
                .push(route_table(context, proxy, &route_name, &http));
            listener.filter_chains.push(FilterChain {
                name: name.clone(),
                filters: vec![http_connection_manager(
                    &stat_prefix,
                    Routes::Rds(route_name),
                    true,
                    true,
                )],
                ..Default::default()
            });
        }
        for server in servers.iter().filter(|s| s.is_terminated_https()) {
            let route_name = server.https_route_name(*port);
            out.routes
                .push(route_table(context, proxy, &route_name, &[server]));
            let server_names: Vec<String> = server
                .hosts()
                .into_iter()
                .filter(|(_, h)| *h != "*")
                .map(|(_, h)| h.to_owned())
                .collect();
            listener.filter_chains.push(FilterChain {
                name: route_name.clone(),
                filter_chain_match: Some(FilterChainMatch {
                    server_names,
                    ..Default::default()
                }),
                transport_socket: downstream_tls(context, server),
                filters: vec![http_connection_manager(
                    &stat_prefix,
                    Routes::Rds(route_name),
                    true,
                    true,
                )],
                ..Default::default()
            });
            listener.listener_filters = vec![tls_inspector()];
        }
        for server in servers.iter().filter(|s| {
            s.server.port.protocol.eq_ignore_ascii_case("TCP")
                || s.tls_mode() == Some(ServerTlsMode::Passthrough)
        }) {
            let scope = RouteScope {
                gateway: &server.gateway.qualified_name,
                namespace: &proxy.namespace,
                labels: &proxy.labels,
                port: u16::try_from(server.server.port.number).unwrap_or(*port),
            };
            let clusters = context
                .virtual_services_for(&server.gateway.qualified_name, &proxy.namespace)
                .find_map(|vs| tcp_route_clusters(context, &scope, &vs.spec));
            if let Some(clusters) = clusters {
                listener.filter_chains.push(FilterChain {
                    name: format!("{name}-tcp-{}", server.index),
                    filters: vec![tcp_proxy(&stat_prefix, &clusters)],
                    ..Default::default()
                });
            }
        }
        if !listener.filter_chains.is_empty() {
            out.listeners
                .push(Arc::new(XdsResource::new(name, &listener)));
        }
    }
    out
}

fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".to_owned(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// TLS termination with the server's certificate: from files (`serverCertificate`,
/// `privateKey`) or from the Secret `credentialName` names in the router's namespace.
fn downstream_tls(context: &PushContext, server: &PlacedServer<'_>) -> Option<TransportSocket> {
    let tls = server.server.tls.as_ref()?;
    let (chain, key) = if let Some(name) = &tls.credential_name {
        let (cert, key) = context
            .secrets
            .get(&(server.gateway.namespace.clone(), name.clone()))?;
        (
            Specifier::InlineBytes(cert.clone()),
            Specifier::InlineBytes(key.clone()),
        )
    } else {
        (
            Specifier::Filename(tls.server_certificate.clone()?),
            Specifier::Filename(tls.private_key.clone()?),
        )
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: Some(DataSource {
                    specifier: Some(chain),
                    ..Default::default()
                }),
                private_key: Some(DataSource {
                    specifier: Some(key),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            alpn_protocols: vec!["h2".to_owned(), "http/1.1".to_owned()],
            ..Default::default()
        }),
        require_client_certificate: Some(BoolValue { value: false }),
        ..Default::default()
    };
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
    })
}

/// A route table for Gateway servers: a virtual host per host the servers and their bound
/// VirtualServices have in common, or one answering 404 when there is none.
fn route_table(
    context: &PushContext,
    proxy: &ProxyNode,
    name: &str,
    servers: &[&PlacedServer<'_>],
) -> Arc<XdsResource> {
    let mut hosts: BTreeMap<String, VirtualHost> = BTreeMap::new();
    for server in servers {
        let server_port = server.server.port.number;
        let redirect = server
            .server
            .tls
            .as_ref()
            .and_then(|t| t.https_redirect)
            .unwrap_or(false)
            && server.is_http();
        let scope = RouteScope {
            gateway: &server.gateway.qualified_name,
            namespace: &proxy.namespace,
            labels: &proxy.labels,
            port: u16::try_from(server_port).unwrap_or(0),
        };
        for vs in context.virtual_services_for(&server.gateway.qualified_name, &proxy.namespace) {
            for vs_host in &vs.hosts {
                for (namespace, server_host) in server.hosts() {
                    if namespace.is_some_and(|ns| ns != vs.namespace) {
                        continue;
                    }
                    let Some(host) = host_intersection(server_host, vs_host) else {
                        continue;
                    };
                    // Servers on other ports may share this listener; a host gets one
                    // virtual host (Envoy requires unique domains), named after the first.
                    let entry = hosts.entry(host.to_owned()).or_insert_with(|| VirtualHost {
                        name: format!("{host}:{server_port}"),
                        domains: if host == "*" {
                            vec!["*".to_owned()]
                        } else {
                            vec![host.to_owned(), format!("{host}:*")]
                        },
                        include_request_attempt_count: true,
                        ..Default::default()
                    });
                    if redirect {
                        if entry.routes.is_empty() {
                            entry.routes.push(https_redirect_route());
                        }
                    } else {
                        entry
                            .routes
                            .extend(translate_routes(context, &scope, vs, host));
                    }
                }
            }
        }
    }
    let mut virtual_hosts: Vec<VirtualHost> = hosts.into_values().collect();
    if virtual_hosts.is_empty() {
        let port = servers.first().map_or(0, |s| s.server.port.number);
        virtual_hosts.push(blackhole_host(port));
    }
    let table = RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    };
    Arc::new(XdsResource::new(name, &table))
}

fn https_redirect_route() -> Route {
    Route {
        name: "https-redirect".to_owned(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".to_owned())),
            ..Default::default()
        }),
        action: Some(Action::Redirect(RedirectAction {
            scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::HttpsRedirect(true)),
            ..Default::default()
        })),
        ..Default::default()
    }
}
