//! Starting a proxy from an Envoy v3 bootstrap (`-c file`, `--config-yaml`), as Envoy does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bosun_xds::pb::envoy::config::bootstrap::v3::Bootstrap;
use bosun_xds::pb::envoy::config::core::v3::{
    address, api_config_source, config_source, grpc_service, socket_address,
};
use prost::Message;

use crate::server::{Origin, Proxy};
use crate::support;
use crate::xds::{self, AdsSettings};

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The bootstrap file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bootstrap is not valid Envoy configuration, or uses something unsupported.
    #[error("{origin}: {source}")]
    Config {
        /// The file, or `--config-yaml`.
        origin: String,
        /// Why.
        #[source]
        source: bosun_xds::ConfigError,
    },
    /// Neither `-c` nor `--config-yaml` was given.
    #[error("no configuration: give -c FILE or --config-yaml TEXT")]
    Missing,
    /// A static resource was refused.
    #[error("static {kind} {name:?}: {error}")]
    Static {
        /// `cluster` or `listener`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Why.
        error: String,
    },
    /// A listener or the admin endpoint could not bind.
    #[error("cannot bind {what} on {address}: {source}")]
    Bind {
        /// What.
        what: String,
        /// Where.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The dynamic resources are configured in a way bosun proxy does not support.
    #[error("dynamic_resources: {0}")]
    Dynamic(String),
}

const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

/// Reads a bootstrap from a file and/or inline YAML; the inline text is merged over the file,
/// as Envoy merges `--config-yaml` over `-c`.
pub fn load(path: Option<&Path>, inline: Option<&str>) -> Result<Bootstrap, BootstrapError> {
    let mut bootstrap = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
                path: path.display().to_string(),
                source,
            })?;
            // As Envoy: a `.json` file is JSON; anything else is read as YAML (JSON included).
            let is_json = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let parsed = if is_json {
                bosun_xds::from_json_str::<Bootstrap>(&text, BOOTSTRAP, support::support())
            } else {
                bosun_xds::from_yaml::<Bootstrap>(&text, BOOTSTRAP, support::support())
            };
            Some(parsed.map_err(|source| BootstrapError::Config {
                origin: path.display().to_string(),
                source,
            })?)
        }
        None => None,
    };
    if let Some(inline) = inline {
        let overlay: Bootstrap = bosun_xds::from_yaml(inline, BOOTSTRAP, support::support())
            .map_err(|source| BootstrapError::Config {
                origin: "--config-yaml".to_owned(),
                source,
            })?;
        match &mut bootstrap {
            Some(base) => {
                // Protobuf merge semantics: scalars replaced, messages merged, lists appended.
                let bytes = overlay.encode_to_vec();
                if let Err(error) = base.merge(bytes.as_slice()) {
                    return Err(BootstrapError::Dynamic(format!(
                        "merging --config-yaml: {error}"
                    )));
                }
            }
            None => bootstrap = Some(overlay),
        }
    }
    bootstrap.ok_or(BootstrapError::Missing)
}

/// A started proxy and where its admin endpoint is.
#[derive(Debug)]
pub struct Started {
    /// The proxy.
    pub proxy: Arc<Proxy>,
    /// The admin endpoint's bound address, if configured.
    pub admin: Option<SocketAddr>,
}

/// Applies the static resources, binds the admin endpoint and starts xDS.
pub async fn start(bootstrap: Bootstrap) -> Result<Started, BootstrapError> {
    let proxy = Proxy::new(bootstrap.clone());
    // Runs as long as the proxy; nothing waits for it.
    drop(proxy.anchor_timers());
    let statics = bootstrap.static_resources.clone().unwrap_or_default();
    let rejected = proxy
        .apply_clusters(statics.clusters, Origin::Static, "", None)
        .await;
    if let Some((name, error)) = rejected.0.into_iter().next() {
        return Err(BootstrapError::Static {
            kind: "cluster",
            name,
            error,
        });
    }
    let names: Vec<String> = statics.listeners.iter().map(|l| l.name.clone()).collect();
    let rejected = proxy.apply_listeners(statics.listeners, Origin::Static, "", None);
    if let Some((name, error)) = rejected.0.into_iter().next() {
        return Err(BootstrapError::Static {
            kind: "listener",
            name,
            error,
        });
    }
    for view in proxy.listener_views() {
        if names.contains(&view.name) && view.active.is_none() && view.warming.is_none() {
            return Err(BootstrapError::Static {
                kind: "listener",
                name: view.name,
                error: "cannot bind its address".to_owned(),
            });
        }
    }
    let admin = match bootstrap.admin.as_ref().and_then(|a| a.address.as_ref()) {
        None => None,
        Some(address) => {
            let address = socket(address).map_err(BootstrapError::Dynamic)?;
            Some(
                crate::admin::serve(proxy.clone(), address)
                    .await
                    .map_err(|source| BootstrapError::Bind {
                        what: "admin".to_owned(),
                        address,
                        source,
                    })?,
            )
        }
    };
    match ads_settings(&bootstrap)? {
        None => proxy.set_initialized(),
        Some(settings) => {
            let ready = xds::spawn(proxy.clone(), settings.clone());
            // Envoy waits for the first CDS and LDS answers (or initial_fetch_timeout) before
            // it calls itself initialized; serving starts as resources arrive either way.
            let proxy_for_init = proxy.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(settings.initial_fetch_timeout, ready).await;
                proxy_for_init.set_initialized();
            });
        }
    }
    Ok(Started { proxy, admin })
}

fn socket(address: &bosun_xds::pb::envoy::config::core::v3::Address) -> Result<SocketAddr, String> {
    match &address.address {
        Some(address::Address::SocketAddress(s)) => {
            let port = match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => {
                    u16::try_from(p).map_err(|_| "port out of range".to_owned())?
                }
                _ => return Err("address needs port_value".to_owned()),
            };
            let ip = s
                .address
                .parse()
                .map_err(|_| format!("{:?} is not an IP address", s.address))?;
            Ok(SocketAddr::new(ip, port))
        }
        _ => Err("only socket_address is supported".to_owned()),
    }
}

fn ads_settings(bootstrap: &Bootstrap) -> Result<Option<AdsSettings>, BootstrapError> {
    let Some(dynamic) = &bootstrap.dynamic_resources else {
        return Ok(None);
    };
    let uses_ads = |source: &Option<bosun_xds::pb::envoy::config::core::v3::ConfigSource>| -> Result<bool, BootstrapError> {
        match source.as_ref().and_then(|s| s.config_source_specifier.as_ref()) {
            None => Ok(false),
            Some(config_source::ConfigSourceSpecifier::Ads(_)) => Ok(true),
            Some(_) => Err(BootstrapError::Dynamic("only ADS config sources are supported".to_owned())),
        }
    };
    let cds = uses_ads(&dynamic.cds_config)?;
    let lds = uses_ads(&dynamic.lds_config)?;
    if !cds && !lds {
        return Ok(None);
    }
    let Some(ads) = &dynamic.ads_config else {
        return Err(BootstrapError::Dynamic(
            "cds_config/lds_config use ads but ads_config is missing".to_owned(),
        ));
    };
    let delta = match api_config_source::ApiType::try_from(ads.api_type)
        .unwrap_or(api_config_source::ApiType::Grpc)
    {
        api_config_source::ApiType::Grpc | api_config_source::ApiType::AggregatedGrpc => false,
        api_config_source::ApiType::DeltaGrpc | api_config_source::ApiType::AggregatedDeltaGrpc => {
            true
        }
        other => {
            return Err(BootstrapError::Dynamic(format!(
                "ads_config api_type {} is not supported",
                other.as_str_name()
            )));
        }
    };
    let Some(service) = ads.grpc_services.first() else {
        return Err(BootstrapError::Dynamic(
            "ads_config needs grpc_services".to_owned(),
        ));
    };
    let Some(grpc_service::TargetSpecifier::EnvoyGrpc(envoy_grpc)) = &service.target_specifier
    else {
        return Err(BootstrapError::Dynamic(
            "ads_config grpc_services must use envoy_grpc".to_owned(),
        ));
    };
    let initial_fetch_timeout = dynamic
        .lds_config
        .as_ref()
        .and_then(|c| c.initial_fetch_timeout.as_ref())
        .map(crate::config::duration)
        .unwrap_or(Duration::from_secs(15));
    Ok(Some(AdsSettings {
        cluster: envoy_grpc.cluster_name.clone(),
        delta,
        cds,
        lds,
        initial_fetch_timeout,
        node_on_first_message_only: ads.set_node_on_first_message_only,
        nds: dns_capture(bootstrap),
    }))
}

/// Whether the node asks for DNS capture (`DNS_CAPTURE: "true"` in its metadata, as Istio's
/// agent sets it): then the name table comes over ADS too.
fn dns_capture(bootstrap: &Bootstrap) -> bool {
    use bosun_xds::pb::google::protobuf::value::Kind;
    bootstrap
        .node
        .as_ref()
        .and_then(|n| n.metadata.as_ref())
        .and_then(|m| m.fields.get(DNS_CAPTURE_KEY))
        .is_some_and(|v| matches!(&v.kind, Some(Kind::StringValue(s)) if s == "true"))
}

/// Node metadata key of DNS capture (Istio's `ISTIO_META_DNS_CAPTURE`).
pub const DNS_CAPTURE_KEY: &str = "DNS_CAPTURE";
