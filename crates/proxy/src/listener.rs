//! Listeners: sockets, listener filters (`tls_inspector`, `http_inspector`, `original_dst`),
//! filter chain selection as Envoy does it, and hand-off to the network filter.

mod inspect;
mod original_dst;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bosun_xds::pb::envoy::config::core::v3::{address, socket_address};
use bosun_xds::pb::envoy::config::listener::v3::{
    FilterChain as FilterChainProto, Listener as ListenerProto, filter, listener_filter,
};
use bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager as HcmProto;
use bosun_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy as TcpProxyProto;
use bosun_xds::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{self, ConfigError};
use crate::http::{self, HttpConnectionManager};
use crate::registry::Registry;
use crate::stats::{Counter, Gauge, GaugeGuard};
use crate::support;
use crate::tcp::{self, TcpProxy};
pub use inspect::Inspected;

/// The network filter a chain ends in.
#[derive(Debug)]
pub enum NetworkFilter {
    /// HTTP.
    Http(Arc<HttpConnectionManager>),
    /// TCP proxy.
    Tcp(Arc<TcpProxy>),
}

#[derive(Debug, Default)]
struct ChainMatch {
    destination_port: Option<u16>,
    prefix_ranges: Vec<IpNet>,
    server_names: Vec<String>,
    transport_protocol: Option<String>,
    application_protocols: Vec<String>,
    source_prefix_ranges: Vec<IpNet>,
    source_ports: Vec<u16>,
}

/// A compiled filter chain.
pub struct FilterChain {
    /// Its name.
    pub name: String,
    matcher: ChainMatch,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The network filter.
    pub network: NetworkFilter,
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterChain")
            .field("name", &self.name)
            .field("matcher", &self.matcher)
            .field("tls", &self.tls.is_some())
            .field("network", &self.network)
            .finish()
    }
}

/// Counters of one listener (`listener.<address>.…`).
#[derive(Debug)]
pub struct ListenerStats {
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_active`.
    pub downstream_cx_active: Gauge,
    /// `no_filter_chain_match`.
    pub no_filter_chain_match: Counter,
}

/// A compiled listener.
#[derive(Debug)]
pub struct ListenerConfig {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it binds its address (else it only receives hand-offs).
    pub bind_to_port: bool,
    /// Whether connections are handed to the listener of their original destination.
    pub use_original_dst: bool,
    chains: Vec<FilterChain>,
    default_chain: Option<FilterChain>,
    tls_inspector: bool,
    http_inspector: bool,
    original_dst: bool,
    filters_timeout: Duration,
    /// Counters.
    pub stats: ListenerStats,
    /// The configuration, as received.
    pub config: ListenerProto,
    /// The version it came with.
    pub version: String,
    /// When it was applied.
    pub last_updated: SystemTime,
    drain: watch::Sender<bool>,
}

fn socket_address(
    address: Option<&bosun_xds::pb::envoy::config::core::v3::Address>,
) -> Result<SocketAddr, ConfigError> {
    let Some(address) = address else {
        return Err(ConfigError::invalid("listener without address"));
    };
    match &address.address {
        Some(address::Address::SocketAddress(socket)) => {
            let ip: IpAddr = socket.address.parse().map_err(|_| {
                ConfigError::invalid(format!(
                    "listener address {:?} is not an IP address",
                    socket.address
                ))
            })?;
            let port = match socket.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p)
                    .map_err(|_| ConfigError::invalid(format!("port {p} out of range")))?,
                _ => return Err(ConfigError::invalid("listener address needs port_value")),
            };
            Ok(SocketAddr::new(ip, port))
        }
        _ => Err(ConfigError::unsupported(
            "listener addresses other than socket_address",
        )),
    }
}

/// The stat name of an address (`0.0.0.0_8080`).
pub fn stat_address(address: SocketAddr) -> String {
    format!("{}_{}", address.ip(), address.port())
}

impl ListenerConfig {
    /// Compiles a listener.
    pub fn compile(
        config: ListenerProto,
        version: &str,
        registry: &Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let address = socket_address(config.address.as_ref())?;
        let mut tls_inspector = false;
        let mut http_inspector = false;
        let mut original_dst = false;
        for listener_filter in &config.listener_filters {
            let type_name = match &listener_filter.config_type {
                Some(listener_filter::ConfigType::TypedConfig(any)) => {
                    config::type_name(any).to_owned()
                }
                _ => listener_filter.name.clone(),
            };
            match type_name.as_str() {
                support::TLS_INSPECTOR | "envoy.filters.listener.tls_inspector" => {
                    tls_inspector = true
                }
                support::HTTP_INSPECTOR | "envoy.filters.listener.http_inspector" => {
                    http_inspector = true
                }
                support::ORIGINAL_DST | "envoy.filters.listener.original_dst" => {
                    original_dst = true
                }
                other => return Err(ConfigError::unsupported(format!("listener filter {other}"))),
            }
        }
        let chains = config
            .filter_chains
            .iter()
            .enumerate()
            .map(|(i, chain)| {
                FilterChain::compile(chain, registry)
                    .map_err(|e| e.context(format!("filter_chains[{i}] ({:?})", chain.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_chain = config
            .default_filter_chain
            .as_ref()
            .map(|chain| {
                FilterChain::compile(chain, registry).map_err(|e| e.context("default_filter_chain"))
            })
            .transpose()?;
        if chains.is_empty() && default_chain.is_none() {
            return Err(ConfigError::invalid(
                "a listener needs at least one filter chain",
            ));
        }
        let stats = &registry.stats;
        let prefix = if config.stat_prefix.is_empty() {
            stat_address(address)
        } else {
            config.stat_prefix.clone()
        };
        let (drain, _) = watch::channel(false);
        let use_original_dst = config.use_original_dst.as_ref().is_some_and(|b| b.value);
        Ok(ListenerConfig {
            name: config.name.clone(),
            address,
            bind_to_port: config.bind_to_port.as_ref().is_none_or(|b| b.value),
            use_original_dst,
            chains,
            default_chain,
            tls_inspector,
            http_inspector,
            // As Envoy's: `use_original_dst` adds the original_dst listener filter, or there
            // would be no original destination to hand the connection to.
            original_dst: original_dst || use_original_dst,
            filters_timeout: match &config.listener_filters_timeout {
                None => Duration::from_secs(15),
                Some(d) => config::optional_duration(Some(d)).unwrap_or(Duration::from_secs(3600)),
            },
            stats: ListenerStats {
                downstream_cx_total: stats
                    .counter(&format!("listener.{prefix}.downstream_cx_total")),
                downstream_cx_active: stats
                    .gauge(&format!("listener.{prefix}.downstream_cx_active")),
                no_filter_chain_match: stats
                    .counter(&format!("listener.{prefix}.no_filter_chain_match")),
            },
            config,
            version: version.to_owned(),
            last_updated: SystemTime::now(),
            drain,
        })
    }

    /// The RDS route configurations this listener's HTTP chains wait for.
    pub fn rds_names(&self) -> Vec<String> {
        self.chains
            .iter()
            .chain(self.default_chain.iter())
            .filter_map(|c| match &c.network {
                NetworkFilter::Http(hcm) => hcm.rds_slot().map(|s| s.name().to_owned()),
                NetworkFilter::Tcp(_) => None,
            })
            .collect()
    }

    /// Whether every RDS route configuration this listener needs has arrived (warm).
    pub fn is_warm(&self) -> bool {
        self.chains
            .iter()
            .chain(self.default_chain.iter())
            .all(|c| match &c.network {
                NetworkFilter::Http(hcm) => hcm.rds_slot().is_none_or(|s| s.load().is_some()),
                NetworkFilter::Tcp(_) => true,
            })
    }

    /// Tells this version's connections to finish (Connection: close, GOAWAY).
    pub fn drain(&self) {
        let _ = self.drain.send(true);
    }

    /// The chain for a connection, by Envoy's order of criteria; each criterion keeps the most
    /// specific matches and falls back to chains that do not constrain it.
    fn select_chain(&self, info: &ConnectionInfo) -> Option<&FilterChain> {
        let mut candidates: Vec<&FilterChain> = self.chains.iter().collect();
        candidates = narrow(candidates, &|m| match m.destination_port {
            None => Some(0),
            Some(p) if p == info.local.port() => Some(1),
            Some(_) => None,
        });
        candidates = narrow(candidates, &|m| {
            prefix_score(&m.prefix_ranges, info.local.ip())
        });
        candidates = narrow(candidates, &|m| {
            if m.server_names.is_empty() {
                return Some(0);
            }
            let sni = info.inspected.server_name.as_deref()?.to_ascii_lowercase();
            m.server_names
                .iter()
                .filter_map(|name| {
                    if *name == sni {
                        Some(u32::MAX)
                    } else if let Some(suffix) = name.strip_prefix('*') {
                        (sni.len() > suffix.len() && sni.ends_with(suffix))
                            .then_some(suffix.len() as u32)
                    } else {
                        None
                    }
                })
                .max()
        });
        candidates = narrow(candidates, &|m| match &m.transport_protocol {
            None => Some(0),
            Some(t) if *t == info.inspected.transport_protocol => Some(1),
            Some(_) => None,
        });
        candidates = narrow(candidates, &|m| {
            if m.application_protocols.is_empty() {
                Some(0)
            } else if m
                .application_protocols
                .iter()
                .any(|p| info.inspected.application_protocols.contains(p))
            {
                Some(1)
            } else {
                None
            }
        });
        candidates = narrow(candidates, &|m| {
            prefix_score(&m.source_prefix_ranges, info.remote.ip())
        });
        candidates = narrow(candidates, &|m| {
            if m.source_ports.is_empty() {
                Some(0)
            } else if m.source_ports.contains(&info.remote.port()) {
                Some(1)
            } else {
                None
            }
        });
        candidates
            .into_iter()
            .next()
            .or(self.default_chain.as_ref())
    }
}

/// Keeps the candidates with the best score (`None`: no match).
fn narrow<'a>(
    candidates: Vec<&'a FilterChain>,
    score: &dyn Fn(&ChainMatch) -> Option<u32>,
) -> Vec<&'a FilterChain> {
    let best = candidates.iter().filter_map(|c| score(&c.matcher)).max();
    match best {
        None => Vec::new(),
        Some(best) => candidates
            .into_iter()
            .filter(|c| score(&c.matcher) == Some(best))
            .collect(),
    }
}

fn prefix_score(ranges: &[IpNet], ip: IpAddr) -> Option<u32> {
    if ranges.is_empty() {
        return Some(0);
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ranges
        .iter()
        .filter(|net| net.contains(&ip))
        .map(|net| u32::from(net.prefix_len()) + 1)
        .max()
}

impl FilterChain {
    fn compile(chain: &FilterChainProto, registry: &Arc<Registry>) -> Result<Self, ConfigError> {
        let m = chain.filter_chain_match.clone().unwrap_or_default();
        let ranges = |ranges: &[bosun_xds::pb::envoy::config::core::v3::CidrRange]| -> Result<Vec<IpNet>, ConfigError> {
            ranges
                .iter()
                .map(|r| {
                    let prefix_len = r.prefix_len.as_ref().map_or(
                        if r.address_prefix.contains(':') { 128 } else { 32 },
                        |p| p.value,
                    );
                    format!("{}/{prefix_len}", r.address_prefix)
                        .parse::<IpNet>()
                        .map(|n| n.trunc())
                        .map_err(|_| ConfigError::invalid(format!("invalid CIDR range {}/{prefix_len}", r.address_prefix)))
                })
                .collect()
        };
        let matcher = ChainMatch {
            destination_port: m
                .destination_port
                .as_ref()
                .map(|p| {
                    u16::try_from(p.value)
                        .map_err(|_| ConfigError::invalid("destination_port out of range"))
                })
                .transpose()?,
            prefix_ranges: ranges(&m.prefix_ranges)?,
            server_names: m
                .server_names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            transport_protocol: Some(m.transport_protocol.clone()).filter(|t| !t.is_empty()),
            application_protocols: m.application_protocols.clone(),
            source_prefix_ranges: ranges(&m.source_prefix_ranges)?,
            source_ports: m
                .source_ports
                .iter()
                .map(|p| {
                    u16::try_from(*p).map_err(|_| ConfigError::invalid("source port out of range"))
                })
                .collect::<Result<_, _>>()?,
        };
        let tls = match &chain.transport_socket {
            None => None,
            Some(socket) => match &socket.config_type {
                Some(bosun_xds::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(any)) => {
                    match config::type_name(any) {
                        support::RAW_BUFFER => None,
                        support::DOWNSTREAM_TLS_CONTEXT => {
                            let context: DownstreamTlsContext =
                                config::typed_config(Some(any), "transport_socket")?.unwrap_or_default();
                            Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(&context)?))
                        }
                        other => return Err(ConfigError::unsupported(format!("transport socket {other}"))),
                    }
                }
                None => None,
            },
        };
        let [network] = chain.filters.as_slice() else {
            return Err(ConfigError::unsupported(format!(
                "filter chains with {} network filters (exactly one of http_connection_manager or tcp_proxy)",
                chain.filters.len()
            )));
        };
        let Some(filter::ConfigType::TypedConfig(any)) = &network.config_type else {
            return Err(ConfigError::invalid(format!(
                "network filter {:?} has no typed_config",
                network.name
            )));
        };
        let network = match config::type_name(any) {
            support::HTTP_CONNECTION_MANAGER => {
                let hcm: HcmProto =
                    config::typed_config(Some(any), "http_connection_manager")?.unwrap_or_default();
                NetworkFilter::Http(Arc::new(HttpConnectionManager::compile(&hcm, registry)?))
            }
            support::TCP_PROXY => {
                let proxy: TcpProxyProto =
                    config::typed_config(Some(any), "tcp_proxy")?.unwrap_or_default();
                NetworkFilter::Tcp(Arc::new(TcpProxy::compile(&proxy, registry)?))
            }
            other => return Err(ConfigError::unsupported(format!("network filter {other}"))),
        };
        Ok(FilterChain {
            name: chain.name.clone(),
            matcher,
            tls,
            network,
        })
    }
}

/// What is known about a connection when choosing its chain.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer.
    pub remote: SocketAddr,
    /// The local address (the original destination when redirected).
    pub local: SocketAddr,
    /// What the listener filters found.
    pub inspected: Inspected,
}

/// Finds the listener serving an address, for `use_original_dst` hand-offs.
pub trait ListenerIndex: Send + Sync {
    /// The listener bound at `address` (exactly, or on the wildcard address with its port).
    fn listener_for(&self, address: SocketAddr) -> Option<Arc<ListenerConfig>>;
}

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// Binds a listening socket as Envoy does (SO_REUSEADDR; IPv6 sockets are v6-only).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if address.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections on `listener` until `stop` fires; each connection is served with the
/// listener configuration current when it was accepted.
pub async fn accept_loop(
    listener: TcpListener,
    current: Arc<arc_swap::ArcSwap<ListenerConfig>>,
    index: Arc<dyn ListenerIndex>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let config = current.load_full();
                    let index = index.clone();
                    tokio::spawn(async move { serve_connection(stream, remote, config, index).await });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    // Out of file descriptors and similar: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = crate::server::signalled(&mut stop) => break,
        }
    }
}

/// Serves one accepted connection.
pub async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    mut config: Arc<ListenerConfig>,
    index: Arc<dyn ListenerIndex>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(mut local) = stream.local_addr() else {
        return;
    };
    if config.original_dst {
        if let Some(original) = original_dst::original_destination(&stream) {
            local = original;
        }
    }
    if config.use_original_dst && local != config.address {
        if let Some(target) = index.listener_for(local) {
            if !Arc::ptr_eq(&target, &config) {
                config = target;
            }
        }
    }
    config.stats.downstream_cx_total.inc();
    let _active = GaugeGuard::new(&config.stats.downstream_cx_active);
    let inspected = match tokio::time::timeout(
        config.filters_timeout,
        inspect::inspect(&stream, config.tls_inspector, config.http_inspector),
    )
    .await
    {
        Ok(Ok(inspected)) => inspected,
        Ok(Err(_)) => return,
        Err(_) => Inspected::default(),
    };
    let info = ConnectionInfo {
        remote,
        local,
        inspected,
    };
    let Some(chain) = config.select_chain(&info) else {
        config.stats.no_filter_chain_match.inc();
        return;
    };
    let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
    let drain = config.drain.subscribe();
    match &chain.tls {
        Some(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let (server_name, h2) = {
                let session = tls.get_ref().1;
                (
                    session
                        .server_name()
                        .map(str::to_owned)
                        .or(info.inspected.server_name.clone()),
                    session.alpn_protocol() == Some(b"h2"),
                )
            };
            run_network(tls, chain, &info, server_name, true, h2, id, drain).await;
        }
        None => {
            let h2 = info
                .inspected
                .application_protocols
                .iter()
                .any(|p| p == "h2c" || p == "h2");
            let server_name = info.inspected.server_name.clone();
            run_network(stream, chain, &info, server_name, false, h2, id, drain).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_network<I>(
    io: I,
    chain: &FilterChain,
    info: &ConnectionInfo,
    server_name: Option<String>,
    tls: bool,
    h2: bool,
    id: u64,
    drain: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match &chain.network {
        NetworkFilter::Http(hcm) => {
            let connection = Arc::new(http::Connection {
                hcm: hcm.clone(),
                remote: info.remote,
                local: info.local,
                server_name,
                tls,
                id,
            });
            http::serve(io, connection, h2, drain).await;
        }
        NetworkFilter::Tcp(proxy) => {
            let downstream = tcp::Downstream {
                remote: info.remote,
                local: info.local,
                server_name,
                id,
            };
            tcp::proxy(io, downstream, proxy.clone()).await;
        }
    }
}
