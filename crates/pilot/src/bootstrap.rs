//! The bootstrap pilot-agent would write for a proxy: its node identity and metadata, ADS
//! towards pilot, an admin endpoint. Bosun's proxy starts from it; so does Envoy
//! (`envoy -c`), which makes Envoy a working member of the mesh.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use bosun_xds::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap,
    bootstrap::{DynamicResources, StaticResources},
};
use bosun_xds::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use bosun_xds::pb::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, ConfigSource, GrpcService, Http2ProtocolOptions, Node,
    api_config_source::ApiType,
    config_source::ConfigSourceSpecifier,
    grpc_service::{EnvoyGrpc, TargetSpecifier},
};
use bosun_xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};

use crate::node::{
    APP_ADDRESS_KEY, CAPTURE_MODE_KEY, HTTP_PROXY_PORT_KEY, ProxyType, json_to_struct,
};
use crate::translate::{ads_config_source, any, load_assignment_for};

/// The static cluster that reaches pilot.
pub const XDS_CLUSTER: &str = "xds-grpc";

/// Who the proxy is and where pilot is.
#[derive(Clone, Debug)]
pub struct BootstrapOptions {
    /// Sidecar or router.
    pub proxy_type: ProxyType,
    /// The pod's name.
    pub pod_name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// Pilot's ADS address.
    pub pilot: SocketAddr,
    /// The admin endpoint.
    pub admin: SocketAddr,
    /// Speak delta xDS.
    pub delta: bool,
    /// No traffic capture: the HTTP proxy port and the application's address.
    pub no_capture: Option<(u16, IpAddr)>,
    /// The workload's DNS is captured: the proxy asks for the name table (`DNS_CAPTURE`).
    pub dns_capture: bool,
}

impl BootstrapOptions {
    /// The node id: `<type>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "{}~{}~{}.{}~{}.svc.cluster.local",
            self.proxy_type, self.ip, self.pod_name, self.namespace, self.namespace
        )
    }
}

/// Builds the bootstrap.
pub fn bootstrap(options: &BootstrapOptions) -> Bootstrap {
    let mut metadata = serde_json::json!({
        "NAME": options.pod_name,
        "NAMESPACE": options.namespace,
        "LABELS": options.labels,
        "INSTANCE_IPS": options.ip.to_string(),
        "SERVICE_ACCOUNT": options.service_account,
        "CLUSTER_ID": "Kubernetes",
        "ISTIO_VERSION": env!("CARGO_PKG_VERSION"),
    });
    if let Some((http_proxy_port, app_address)) = options.no_capture {
        metadata[CAPTURE_MODE_KEY] = "NONE".into();
        metadata[HTTP_PROXY_PORT_KEY] = http_proxy_port.to_string().into();
        metadata[APP_ADDRESS_KEY] = app_address.to_string().into();
    }
    if options.dns_capture {
        metadata["DNS_CAPTURE"] = "true".into();
    }
    let workload = options
        .labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| options.pod_name.clone());
    let ads = ApiConfigSource {
        api_type: if options.delta {
            ApiType::DeltaGrpc
        } else {
            ApiType::Grpc
        } as i32,
        transport_api_version: ApiVersion::V3 as i32,
        grpc_services: vec![GrpcService {
            target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                cluster_name: XDS_CLUSTER.to_owned(),
                ..Default::default()
            })),
            ..Default::default()
        }],
        set_node_on_first_message_only: true,
        ..Default::default()
    };
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    let xds_cluster = Cluster {
        name: XDS_CLUSTER.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(crate::translate::proto_duration(
            std::time::Duration::from_secs(1),
        )),
        load_assignment: Some(load_assignment_for(
            XDS_CLUSTER,
            &options.pilot.ip().to_string(),
            options.pilot.port(),
        )),
        typed_extension_protocol_options: HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            any(&http2),
        )]),
        ..Default::default()
    };
    Bootstrap {
        node: Some(Node {
            id: options.node_id(),
            cluster: format!("{workload}.{}", options.namespace),
            metadata: metadata.as_object().map(json_to_struct),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            clusters: vec![xds_cluster],
            ..Default::default()
        }),
        dynamic_resources: Some(DynamicResources {
            ads_config: Some(ads),
            cds_config: Some(ads_config_source()),
            lds_config: Some(ConfigSource {
                config_source_specifier: Some(ConfigSourceSpecifier::Ads(Default::default())),
                ..ads_config_source()
            }),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(crate::translate::socket_address(
                &options.admin.ip().to_string(),
                options.admin.port(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The bootstrap as JSON (in Envoy's shape, accepted by `envoy -c` and `bosun proxy -c`).
pub fn bootstrap_json(bootstrap: &Bootstrap) -> Result<serde_json::Value, bosun_xds::ConfigError> {
    let _pool = bosun_xds::PoolGuard::new();
    let mut value = bosun_xds::to_json(bootstrap, "envoy.config.bootstrap.v3.Bootstrap")?;
    if let serde_json::Value::Object(object) = &mut value {
        object.remove("@type");
    }
    Ok(value)
}
