//! CDS: `outbound|<port>|<subset>|<host>` for every visible service port and
//! DestinationRule subset, with the traffic policy merged as Istio merges it (top level ←
//! port level ← subset ← subset port level); the special clusters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api::networking::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, H2UpgradePolicy, HashAlgorithm,
    LoadBalancerPolicy, LoadBalancerSettings, OutlierDetection, SimpleLb, TrafficPolicy,
};
use bosun_xds::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, CommonLbConfig, DiscoveryType, DnsLookupFamily, EdsClusterConfig,
        LbConfig, LbPolicy, MaglevLbConfig, RingHashLbConfig,
    },
};
use bosun_xds::pb::envoy::config::core::v3::{
    BindConfig, SocketAddress, socket_address::PortSpecifier,
};
use bosun_xds::pb::envoy::config::core::v3::{
    DataSource, Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttp,
    Metadata, TransportSocket, data_source::Specifier, transport_socket::ConfigType,
};
use bosun_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use bosun_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, TlsCertificate, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};
use bosun_xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
        explicit_http_config::ProtocolConfig,
    },
};
use bosun_xds::pb::envoy::r#type::v3::Percent;
use bosun_xds::pb::google::protobuf::{UInt32Value, UInt64Value};

use super::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, XdsResource,
    ads_config_source, any, proto_duration,
};
use crate::context::{DestinationRuleEntry, PushContext, SidecarEntry, host_matches};
use crate::model::{Protocol, Resolution, Service, ServicePort};
use crate::node::{Capture, ProxyNode, ProxyType};

/// Istio's connect timeout when a DestinationRule sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of an outbound cluster.
pub(crate) fn outbound_name(port: u16, subset: &str, hostname: &str) -> String {
    format!("outbound|{port}|{subset}|{hostname}")
}

/// The name of an inbound cluster.
pub(crate) fn inbound_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The services a proxy sees, after its Sidecar resource's egress hosts.
#[derive(Debug)]
pub(crate) struct OutboundView<'a> {
    /// Visible services, sorted by host name.
    pub services: Vec<&'a Arc<Service>>,
    /// The Sidecar resource that applies.
    pub sidecar: Option<Arc<SidecarEntry>>,
}

impl<'a> OutboundView<'a> {
    pub(crate) fn new(context: &'a PushContext, proxy: &'a ProxyNode) -> Self {
        let sidecar = match proxy.proxy_type {
            ProxyType::Sidecar => context.sidecar_for(proxy).cloned(),
            ProxyType::Router => None,
        };
        let egress_hosts: Option<Vec<&str>> = sidecar.as_ref().and_then(|s| {
            let hosts: Vec<&str> = s
                .spec
                .egress
                .iter()
                .flat_map(|e| e.hosts.iter().map(String::as_str))
                .collect();
            (!hosts.is_empty()).then_some(hosts)
        });
        let services = context
            .registry
            .visible_services(&proxy.namespace)
            .filter(|service| match &egress_hosts {
                None => true,
                Some(hosts) => hosts
                    .iter()
                    .any(|h| egress_host_allows(h, service, &proxy.namespace)),
            })
            .collect();
        OutboundView { services, sidecar }
    }
}

/// Whether a Sidecar egress host (`namespace/host`) admits a service.
fn egress_host_allows(egress: &str, service: &Service, proxy_namespace: &str) -> bool {
    let (namespace, host) = egress.split_once('/').unwrap_or(("*", egress));
    let namespace_ok = match namespace {
        "*" => true,
        "." => service.id.namespace == proxy_namespace,
        "~" => false,
        ns => service.id.namespace == ns,
    };
    namespace_ok && host_matches(host, &service.id.hostname)
}

/// A traffic policy with its levels merged.
#[derive(Clone, Debug, Default)]
pub(crate) struct Policy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTlsSettings>,
}

impl Policy {
    /// Applies a level over this one: each part it sets replaces the part below.
    fn overlay(&mut self, policy: &TrafficPolicy, port: u16) {
        self.apply_fields(
            &policy.load_balancer,
            &policy.connection_pool,
            &policy.outlier_detection,
            &policy.tls,
        );
        if let Some(level) = policy
            .port_level_settings
            .iter()
            .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))
        {
            self.apply_fields(
                &level.load_balancer,
                &level.connection_pool,
                &level.outlier_detection,
                &level.tls,
            );
        }
    }

    fn apply_fields(
        &mut self,
        load_balancer: &Option<LoadBalancerSettings>,
        connection_pool: &Option<ConnectionPoolSettings>,
        outlier_detection: &Option<OutlierDetection>,
        tls: &Option<ClientTlsSettings>,
    ) {
        if load_balancer.is_some() {
            self.load_balancer.clone_from(load_balancer);
        }
        if connection_pool.is_some() {
            self.connection_pool.clone_from(connection_pool);
        }
        if outlier_detection.is_some() {
            self.outlier_detection.clone_from(outlier_detection);
        }
        if tls.is_some() {
            self.tls.clone_from(tls);
        }
    }

    /// The policy for `port` and `subset` of the service a DestinationRule is for.
    pub(crate) fn of(dr: Option<&DestinationRuleEntry>, port: u16, subset: Option<&str>) -> Policy {
        let mut policy = Policy::default();
        let Some(dr) = dr else { return policy };
        if let Some(top) = &dr.spec.traffic_policy {
            policy.overlay(top, port);
        }
        if let Some(subset) = subset {
            if let Some(subset_policy) = dr
                .spec
                .subsets
                .iter()
                .find(|s| s.name == subset)
                .and_then(|s| s.traffic_policy.as_ref())
            {
                policy.overlay(subset_policy, port);
            }
        }
        policy
    }
}

/// Every outbound cluster of a proxy's view, and the names of those that use EDS.
pub(super) fn outbound(
    context: &PushContext,
    proxy: &ProxyNode,
    view: &OutboundView<'_>,
) -> (Vec<Arc<XdsResource>>, Vec<String>) {
    let mut clusters = Vec::new();
    let mut eds = Vec::new();
    for service in &view.services {
        let dr = context.destination_rule_for(
            &proxy.namespace,
            &service.id.hostname,
            &service.id.namespace,
        );
        for port in service.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            let mut subsets: Vec<Option<&str>> = vec![None];
            if let Some(dr) = dr {
                subsets.extend(dr.spec.subsets.iter().map(|s| Some(s.name.as_str())));
            }
            for subset in subsets {
                let policy = Policy::of(dr.map(|d| &**d), port.port, subset);
                let name = outbound_name(port.port, subset.unwrap_or(""), &service.id.hostname);
                let cluster = service_cluster(
                    context,
                    &name,
                    service,
                    port,
                    subset,
                    &policy,
                    dr.map(|d| &**d),
                );
                if service.resolution == Resolution::ClientSideLb {
                    eds.push(name.clone());
                }
                clusters.push(Arc::new(XdsResource::new(name, &cluster)));
            }
        }
    }
    clusters.push(Arc::new(XdsResource::new(
        BLACKHOLE_CLUSTER,
        &blackhole_cluster(),
    )));
    clusters.push(Arc::new(XdsResource::new(
        PASSTHROUGH_CLUSTER,
        &passthrough_cluster(PASSTHROUGH_CLUSTER),
    )));
    if proxy.proxy_type == ProxyType::Sidecar && proxy.capture == Capture::Iptables {
        // From 127.0.0.6, which the capture rules let through: a connection to the pod's own
        // address from the proxy would otherwise be captured again, without end.
        let inbound = Cluster {
            upstream_bind_config: Some(BindConfig {
                source_address: Some(SocketAddress {
                    address: INBOUND_PASSTHROUGH_SOURCE.to_owned(),
                    port_specifier: Some(PortSpecifier::PortValue(0)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..passthrough_cluster(INBOUND_PASSTHROUGH_CLUSTER)
        };
        clusters.push(Arc::new(XdsResource::new(
            INBOUND_PASSTHROUGH_CLUSTER,
            &inbound,
        )));
    }
    (clusters, eds)
}

fn blackhole_cluster() -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(proto_duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

/// The source address of inbound passthrough connections (Istio's).
const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

fn passthrough_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(proto_duration(DEFAULT_CONNECT_TIMEOUT)),
        circuit_breakers: Some(circuit_breakers(None)),
        typed_extension_protocol_options: protocol_options(Protocol::Unknown, None),
        ..Default::default()
    }
}

/// The cluster sending to one port of the application beside the sidecar.
pub(super) fn inbound_cluster(port: u16, app_address: std::net::IpAddr) -> Cluster {
    let name = inbound_name(port);
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(proto_duration(DEFAULT_CONNECT_TIMEOUT)),
        circuit_breakers: Some(circuit_breakers(None)),
        load_assignment: Some(super::endpoints::static_assignment(
            &name,
            &app_address.to_string(),
            port,
        )),
        name,
        ..Default::default()
    }
}

fn service_cluster(
    context: &PushContext,
    name: &str,
    service: &Service,
    port: &ServicePort,
    subset: Option<&str>,
    policy: &Policy,
    dr: Option<&DestinationRuleEntry>,
) -> Cluster {
    let mut cluster = Cluster {
        name: name.to_owned(),
        connect_timeout: Some(proto_duration(
            policy
                .connection_pool
                .as_ref()
                .and_then(|p| p.tcp.as_ref())
                .and_then(|t| t.connect_timeout)
                .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.get()),
        )),
        circuit_breakers: Some(circuit_breakers(policy.connection_pool.as_ref())),
        metadata: dr.map(istio_metadata),
        ..Default::default()
    };
    let discovery = match service.resolution {
        Resolution::ClientSideLb => {
            cluster.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: name.to_owned(),
            });
            DiscoveryType::Eds
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            cluster.dns_lookup_family = DnsLookupFamily::V4Only as i32;
            let endpoints = context.registry.endpoints_of(&service.id, port.port);
            cluster.load_assignment = Some(ClusterLoadAssignment {
                cluster_name: name.to_owned(),
                endpoints: super::endpoints::locality_groups(endpoints, subset_labels(dr, subset)),
                ..Default::default()
            });
            if service.resolution == Resolution::Dns {
                DiscoveryType::StrictDns
            } else {
                DiscoveryType::LogicalDns
            }
        }
        Resolution::Passthrough => DiscoveryType::OriginalDst,
    };
    cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(discovery as i32));
    if discovery == DiscoveryType::OriginalDst {
        cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    } else {
        apply_load_balancer(&mut cluster, policy.load_balancer.as_ref());
    }
    if let Some(outlier) = &policy.outlier_detection {
        apply_outlier_detection(&mut cluster, outlier);
    }
    cluster.typed_extension_protocol_options =
        protocol_options(port.protocol, policy.connection_pool.as_ref());
    if let Some(tls) = &policy.tls {
        cluster.transport_socket = upstream_tls(tls, &service.id.hostname);
    }
    cluster
}

/// The labels of a DestinationRule subset.
pub(super) fn subset_labels<'a>(
    dr: Option<&'a DestinationRuleEntry>,
    subset: Option<&str>,
) -> Option<&'a std::collections::BTreeMap<String, String>> {
    let subset = subset?;
    dr?.spec
        .subsets
        .iter()
        .find(|s| s.name == subset)
        .map(|s| &s.labels)
}

fn apply_load_balancer(cluster: &mut Cluster, settings: Option<&LoadBalancerSettings>) {
    let policy = settings.and_then(|s| s.policy.as_ref());
    cluster.lb_policy = match policy {
        None
        | Some(LoadBalancerPolicy::Simple(
            SimpleLb::Unspecified | SimpleLb::LeastRequest | SimpleLb::LeastConn,
        )) => LbPolicy::LeastRequest,
        Some(LoadBalancerPolicy::Simple(SimpleLb::RoundRobin)) => LbPolicy::RoundRobin,
        Some(LoadBalancerPolicy::Simple(SimpleLb::Random)) => LbPolicy::Random,
        Some(LoadBalancerPolicy::Simple(SimpleLb::Passthrough)) => {
            cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
            cluster.eds_cluster_config = None;
            cluster.load_assignment = None;
            LbPolicy::ClusterProvided
        }
        Some(LoadBalancerPolicy::ConsistentHash(hash)) => match &hash.algorithm {
            Some(HashAlgorithm::Maglev(maglev)) => {
                cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: maglev.table_size.map(|value| UInt64Value { value }),
                }));
                LbPolicy::Maglev
            }
            Some(HashAlgorithm::RingHash(ring)) => {
                cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                    minimum_ring_size: Some(UInt64Value {
                        value: ring.minimum_ring_size.unwrap_or(1024),
                    }),
                    ..Default::default()
                }));
                LbPolicy::RingHash
            }
            None => {
                cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                    minimum_ring_size: Some(UInt64Value {
                        value: hash.minimum_ring_size.unwrap_or(1024),
                    }),
                    ..Default::default()
                }));
                LbPolicy::RingHash
            }
        },
    } as i32;
}

fn circuit_breakers(pool: Option<&ConnectionPoolSettings>) -> CircuitBreakers {
    let limit = |value: Option<i32>| {
        Some(UInt32Value {
            value: value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(u32::MAX),
        })
    };
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
            max_requests: limit(http.and_then(|h| h.http2_max_requests)),
            max_retries: limit(http.and_then(|h| h.max_retries)),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn apply_outlier_detection(cluster: &mut Cluster, outlier: &OutlierDetection) {
    let consecutive_5xx = outlier.consecutive_5xx_errors.or_else(|| {
        outlier
            .consecutive_errors
            .and_then(|e| u32::try_from(e).ok())
    });
    let enforcing = |set: Option<u32>| {
        Some(UInt32Value {
            value: if set.is_some_and(|v| v > 0) { 100 } else { 0 },
        })
    };
    let mut envoy = EnvoyOutlier {
        consecutive_5xx: consecutive_5xx.map(|value| UInt32Value { value }),
        enforcing_consecutive_5xx: enforcing(consecutive_5xx),
        consecutive_gateway_failure: outlier
            .consecutive_gateway_errors
            .map(|value| UInt32Value { value }),
        enforcing_consecutive_gateway_failure: enforcing(outlier.consecutive_gateway_errors),
        interval: outlier.interval.map(|d| proto_duration(d.get())),
        base_ejection_time: outlier.base_ejection_time.map(|d| proto_duration(d.get())),
        max_ejection_percent: outlier
            .max_ejection_percent
            .and_then(|p| u32::try_from(p).ok())
            .map(|value| UInt32Value { value }),
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        split_external_local_origin_errors: outlier
            .split_external_local_origin_errors
            .unwrap_or(false),
        ..Default::default()
    };
    if let Some(failures) = outlier.consecutive_local_origin_failures {
        envoy.consecutive_local_origin_failure = Some(UInt32Value { value: failures });
    }
    cluster.outlier_detection = Some(envoy);
    // Istio turns panic mode off unless minHealthPercent asks for it.
    let common = cluster
        .common_lb_config
        .get_or_insert_with(CommonLbConfig::default);
    common.healthy_panic_threshold = Some(Percent {
        value: f64::from(outlier.min_health_percent.unwrap_or(0).max(0)),
    });
}

fn protocol_options(
    protocol: Protocol,
    pool: Option<&ConnectionPoolSettings>,
) -> HashMap<String, bosun_xds::pb::google::protobuf::Any> {
    let http = pool.and_then(|p| p.http.as_ref());
    let upgrade = http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade);
    let use_client = http.and_then(|h| h.use_client_protocol).unwrap_or(false);
    let upstream = if protocol.is_http2() || (protocol.is_http() && upgrade) {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(http2_options(
                    http.and_then(|h| h.max_concurrent_streams),
                ))),
            },
        ))
    } else if protocol == Protocol::Unknown || use_client {
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(http2_options(None)),
                ..Default::default()
            },
        ))
    } else {
        None
    };
    let common = http.and_then(|h| {
        let idle = h.idle_timeout.map(|d| proto_duration(d.get()));
        let per_connection = h
            .max_requests_per_connection
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0);
        (idle.is_some() || per_connection.is_some()).then(|| CommonHttp {
            idle_timeout: idle,
            max_requests_per_connection: per_connection.map(|value| UInt32Value { value }),
            ..Default::default()
        })
    });
    if upstream.is_none() && common.is_none() {
        return HashMap::new();
    }
    let options = HttpProtocolOptions {
        common_http_protocol_options: common,
        upstream_protocol_options: upstream,
        ..Default::default()
    };
    HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
        any(&options),
    )])
}

fn http2_options(max_concurrent_streams: Option<i32>) -> Http2ProtocolOptions {
    Http2ProtocolOptions {
        max_concurrent_streams: max_concurrent_streams
            .and_then(|n| u32::try_from(n).ok())
            .map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

/// TLS origination as a DestinationRule's `tls` asks. `ISTIO_MUTUAL` waits for the mesh's
/// own certificates (the security work); until then such traffic stays plain text.
fn upstream_tls(tls: &ClientTlsSettings, hostname: &str) -> Option<TransportSocket> {
    let mode = tls.mode?;
    if matches!(mode, ClientTlsMode::Disable | ClientTlsMode::IstioMutual) {
        return None;
    }
    let file = |path: &String| DataSource {
        specifier: Some(Specifier::Filename(path.clone())),
        ..Default::default()
    };
    let mut common = CommonTlsContext::default();
    if let Some(ca) = &tls.ca_certificates {
        common.validation_context_type = Some(ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(file(ca)),
                ..Default::default()
            },
        ));
    }
    if mode == ClientTlsMode::Mutual {
        if let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.private_key) {
            common.tls_certificates.push(TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            });
        }
    }
    let context = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: tls.sni.clone().unwrap_or_else(|| {
            if hostname.contains('*') {
                String::new()
            } else {
                hostname.to_owned()
            }
        }),
        ..Default::default()
    };
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(ConfigType::TypedConfig(any(&context))),
    })
}

/// `filter_metadata.istio.config`: the DestinationRule that shaped the cluster (read by
/// `proxy-config clusters`). One key only: protobuf maps encode in hash order, and a
/// resource's version is a hash of its bytes, which must not change while it does not.
fn istio_metadata(dr: &DestinationRuleEntry) -> Metadata {
    super::config_metadata(&format!(
        "/apis/networking.istio.io/v1/namespaces/{}/destination-rule/{}",
        dr.namespace, dr.name
    ))
}
