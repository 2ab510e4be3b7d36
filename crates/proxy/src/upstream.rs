//! Upstream clusters: their endpoints, how one is chosen, and how requests reach it.

pub mod connect;
pub mod pool;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bosun_xds::pb::envoy::config::cluster::v3::{Cluster as ClusterProto, cluster};
use bosun_xds::pb::envoy::config::core::v3::{HealthStatus, address, socket_address};
use bosun_xds::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use bosun_xds::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use bosun_xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use http::{Request, Response, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::Body;
use crate::config::{self, ConfigError};
use crate::stats::{Counter, Gauge, GaugeGuard, Stats, StatusCounters};
use crate::support;
use crate::tls::TlsConnector;
use connect::{ConnectError, UpstreamIo};
use pool::{Pool, ReturnToPool};

/// A named place where a cluster lives; routes hold slots, so a cluster can be added, updated
/// or removed without recompiling the routes that name it.
#[derive(Debug)]
pub struct ClusterSlot {
    name: Arc<str>,
    current: ArcSwapOption<Cluster>,
}

impl ClusterSlot {
    /// An empty slot for the cluster `name`.
    pub fn new(name: &str) -> Self {
        ClusterSlot {
            name: Arc::from(name),
            current: ArcSwapOption::empty(),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The active cluster, if any.
    pub fn load(&self) -> Option<Arc<Cluster>> {
        self.current.load_full()
    }

    /// Makes `cluster` the active one (or removes it).
    pub fn store(&self, cluster: Option<Arc<Cluster>>) {
        self.current.store(cluster);
    }
}

/// How a cluster finds its endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterKind {
    /// Addresses in the configuration.
    Static,
    /// Names resolved with DNS; every address is an endpoint.
    StrictDns,
    /// A name resolved with DNS; the first address is the endpoint.
    LogicalDns,
    /// Endpoints from EDS.
    Eds,
    /// The address the downstream connection was originally for.
    OriginalDst,
}

/// The protocol spoken to endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
    /// Whatever the downstream request used.
    Downstream,
}

/// An endpoint's health, as EDS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Takes traffic.
    Healthy,
    /// Takes traffic only when nothing healthy is left.
    Degraded,
    /// Takes no traffic.
    Unhealthy,
}

/// Counters of one endpoint (shown by `/clusters`).
#[derive(Debug, Default)]
pub struct HostStats {
    /// Connections opened.
    pub cx_total: Counter,
    /// Connections open.
    pub cx_active: Gauge,
    /// Connections that failed to open.
    pub cx_connect_fail: Counter,
    /// Requests sent.
    pub rq_total: Counter,
    /// Requests in flight.
    pub rq_active: Gauge,
    /// Requests answered with a non-5xx status.
    pub rq_success: Counter,
    /// Requests that failed or got a 5xx.
    pub rq_error: Counter,
    /// Requests that timed out.
    pub rq_timeout: Counter,
}

/// One endpoint of a cluster.
#[derive(Debug)]
pub struct Host {
    /// Its address.
    pub address: SocketAddr,
    /// Its name (DNS clusters, or `hostname` in EDS).
    pub hostname: Option<String>,
    /// Load-balancing weight.
    pub weight: u32,
    /// Health as configured.
    pub health: Health,
    /// Priority (0 is highest).
    pub priority: u32,
    /// Locality (`region/zone/subzone`).
    pub locality: String,
    /// Counters.
    pub stats: HostStats,
    /// Open connections.
    pub pool: Pool,
}

/// The endpoints of a cluster at one moment, with the round-robin schedule over them.
#[derive(Debug, Default)]
pub struct HostSet {
    /// Every endpoint.
    pub hosts: Vec<Arc<Host>>,
    /// Indexes into `hosts`, repeated by weight, of the endpoints traffic goes to.
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl HostSet {
    fn new(hosts: Vec<Arc<Host>>) -> Self {
        // Traffic goes to the highest priority with a healthy endpoint (degraded ones only when
        // no priority has a healthy one).
        let mut chosen: Vec<usize> = Vec::new();
        let mut priorities: Vec<u32> = hosts.iter().map(|h| h.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        for health in [Health::Healthy, Health::Degraded] {
            for priority in &priorities {
                chosen = (0..hosts.len())
                    .filter(|&i| hosts[i].priority == *priority && hosts[i].health == health)
                    .collect();
                if !chosen.is_empty() {
                    break;
                }
            }
            if !chosen.is_empty() {
                break;
            }
        }
        HostSet {
            schedule: weighted_schedule(&hosts, &chosen),
            hosts,
            next: AtomicUsize::new(fastrand::usize(..1024)),
        }
    }

    /// The next endpoint in weighted round-robin order.
    pub fn round_robin(&self) -> Option<&Arc<Host>> {
        if self.schedule.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.hosts.get(self.schedule[n % self.schedule.len()])
    }

    /// Endpoints that can take traffic.
    pub fn healthy_count(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.health == Health::Healthy)
            .count()
    }
}

/// A round-robin schedule where each endpoint appears in proportion to its weight, spread out
/// (smooth weighted round robin), bounded in length.
fn weighted_schedule(hosts: &[Arc<Host>], chosen: &[usize]) -> Vec<usize> {
    const MAX_LEN: u64 = 4096;
    if chosen.is_empty() {
        return Vec::new();
    }
    let gcd = chosen
        .iter()
        .map(|&i| u64::from(hosts[i].weight.max(1)))
        .fold(0, gcd);
    let mut weights: Vec<u64> = chosen
        .iter()
        .map(|&i| u64::from(hosts[i].weight.max(1)) / gcd.max(1))
        .collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_LEN {
        // Scale down, keeping every endpoint at least once.
        weights = weights
            .iter()
            .map(|w| (w * MAX_LEN / total).max(1))
            .collect();
    }
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        schedule.push(chosen[best]);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The counters of one cluster (`cluster.<name>.…`).
#[derive(Debug)]
pub struct ClusterStats {
    /// `upstream_rq_total`.
    pub upstream_rq_total: Counter,
    /// `upstream_rq_completed`.
    pub upstream_rq_completed: Counter,
    /// `upstream_rq_active`.
    pub upstream_rq_active: Gauge,
    /// `upstream_rq_<code>` and `upstream_rq_<N>xx`.
    pub upstream_rq: StatusCounters,
    /// `upstream_rq_timeout`.
    pub upstream_rq_timeout: Counter,
    /// `upstream_rq_rx_reset`.
    pub upstream_rq_rx_reset: Counter,
    /// `upstream_cx_total`.
    pub upstream_cx_total: Counter,
    /// `upstream_cx_active`.
    pub upstream_cx_active: Gauge,
    /// `upstream_cx_http1_total`.
    pub upstream_cx_http1_total: Counter,
    /// `upstream_cx_http2_total`.
    pub upstream_cx_http2_total: Counter,
    /// `upstream_cx_connect_fail`.
    pub upstream_cx_connect_fail: Counter,
    /// `upstream_cx_connect_timeout`.
    pub upstream_cx_connect_timeout: Counter,
    /// `upstream_cx_none_healthy`.
    pub upstream_cx_none_healthy: Counter,
    /// `upstream_cx_tx_bytes_total`.
    pub upstream_cx_tx_bytes_total: Counter,
    /// `upstream_cx_rx_bytes_total`.
    pub upstream_cx_rx_bytes_total: Counter,
    /// `membership_total`.
    pub membership_total: Gauge,
    /// `membership_healthy`.
    pub membership_healthy: Gauge,
    /// `membership_change`.
    pub membership_change: Counter,
    /// `update_success` (EDS and DNS updates).
    pub update_success: Counter,
}

impl ClusterStats {
    /// The stats of the cluster whose stat name is `name`.
    pub fn new(stats: &Arc<Stats>, name: &str) -> Self {
        let c = |stat: &str| stats.counter(&format!("cluster.{name}.{stat}"));
        let g = |stat: &str| stats.gauge(&format!("cluster.{name}.{stat}"));
        ClusterStats {
            upstream_rq_total: c("upstream_rq_total"),
            upstream_rq_completed: c("upstream_rq_completed"),
            upstream_rq_active: g("upstream_rq_active"),
            upstream_rq: StatusCounters::new(stats, &format!("cluster.{name}.upstream_rq")),
            upstream_rq_timeout: c("upstream_rq_timeout"),
            upstream_rq_rx_reset: c("upstream_rq_rx_reset"),
            upstream_cx_total: c("upstream_cx_total"),
            upstream_cx_active: g("upstream_cx_active"),
            upstream_cx_http1_total: c("upstream_cx_http1_total"),
            upstream_cx_http2_total: c("upstream_cx_http2_total"),
            upstream_cx_connect_fail: c("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: c("upstream_cx_connect_timeout"),
            upstream_cx_none_healthy: c("upstream_cx_none_healthy"),
            upstream_cx_tx_bytes_total: c("upstream_cx_tx_bytes_total"),
            upstream_cx_rx_bytes_total: c("upstream_cx_rx_bytes_total"),
            membership_total: g("membership_total"),
            membership_healthy: g("membership_healthy"),
            membership_change: c("membership_change"),
            update_success: c("update_success"),
        }
    }
}

/// Why a request could not be sent to an endpoint or got no response headers.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be opened.
    #[error("upstream connect error: {0}")]
    Connect(#[from] ConnectError),
    /// The connection was reset before response headers.
    #[error("upstream reset: {0}")]
    Reset(#[source] hyper::Error),
}

/// A cluster, compiled from Envoy's `Cluster`.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name.
    pub name: Arc<str>,
    /// How endpoints are found.
    pub kind: ClusterKind,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Protocol to endpoints.
    pub protocol: Protocol,
    /// TLS to endpoints.
    pub tls: Option<Arc<TlsConnector>>,
    /// How long idle connections are kept.
    pub idle_timeout: Option<Duration>,
    /// The service name endpoints are requested under (EDS).
    pub eds_service_name: String,
    /// Counters.
    pub stats: Arc<ClusterStats>,
    /// The configuration, as received.
    pub config: Arc<ClusterProto>,
    /// When this version was applied.
    pub last_updated: std::time::SystemTime,
    hosts: ArcSwap<HostSet>,
    original_dst_hosts: Mutex<HashMap<SocketAddr, Arc<Host>>>,
    dns: Option<DnsSettings>,
}

#[derive(Debug, Clone)]
struct DnsSettings {
    targets: Vec<(String, u16, u32, u32)>,
    refresh: Duration,
    family: cluster::DnsLookupFamily,
}

impl Cluster {
    /// Compiles a cluster. DNS clusters start empty until [`Cluster::resolve`] runs.
    pub fn compile(config: ClusterProto, stats: &Arc<Stats>) -> Result<Cluster, ConfigError> {
        let kind = match &config.cluster_discovery_type {
            None => ClusterKind::Static,
            Some(cluster::ClusterDiscoveryType::Type(t)) => {
                match cluster::DiscoveryType::try_from(*t).unwrap_or(cluster::DiscoveryType::Static)
                {
                    cluster::DiscoveryType::Static => ClusterKind::Static,
                    cluster::DiscoveryType::StrictDns => ClusterKind::StrictDns,
                    cluster::DiscoveryType::LogicalDns => ClusterKind::LogicalDns,
                    cluster::DiscoveryType::Eds => ClusterKind::Eds,
                    cluster::DiscoveryType::OriginalDst => ClusterKind::OriginalDst,
                }
            }
            Some(cluster::ClusterDiscoveryType::ClusterType(_)) => {
                return Err(ConfigError::unsupported(
                    "cluster_type (custom cluster extensions)",
                ));
            }
        };
        let lb =
            cluster::LbPolicy::try_from(config.lb_policy).unwrap_or(cluster::LbPolicy::RoundRobin);
        let lb_ok = match kind {
            ClusterKind::OriginalDst => matches!(
                lb,
                cluster::LbPolicy::ClusterProvided | cluster::LbPolicy::RoundRobin
            ),
            _ => lb == cluster::LbPolicy::RoundRobin,
        };
        if !lb_ok {
            return Err(ConfigError::unsupported(format!(
                "lb_policy {}",
                lb.as_str_name()
            )));
        }
        let connect_timeout = config
            .connect_timeout
            .as_ref()
            .map(config::duration)
            .unwrap_or(Duration::from_secs(5));
        let (protocol, idle_timeout) = protocol_options(&config)?;
        let tls = match &config.transport_socket {
            None => None,
            Some(socket) => match socket.config_type.as_ref() {
                None => None,
                Some(bosun_xds::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(any)) => {
                    match config::type_name(any) {
                        support::RAW_BUFFER => None,
                        support::UPSTREAM_TLS_CONTEXT => {
                            let context: UpstreamTlsContext = config::typed_config(Some(any), "transport_socket")?
                                .unwrap_or_default();
                            Some(Arc::new(TlsConnector::from_envoy(&context)?))
                        }
                        other => return Err(ConfigError::unsupported(format!("transport socket {other}"))),
                    }
                }
            },
        };
        let stat_name = if config.alt_stat_name.is_empty() {
            config.name.clone()
        } else {
            config.alt_stat_name.clone()
        };
        let cluster_stats = Arc::new(ClusterStats::new(stats, &stat_name));
        let mut dns = None;
        let mut hosts = Vec::new();
        match kind {
            ClusterKind::Static => {
                if let Some(assignment) = &config.load_assignment {
                    hosts = hosts_from_assignment(assignment, &[], false)?;
                }
            }
            ClusterKind::StrictDns | ClusterKind::LogicalDns => {
                let assignment = config.load_assignment.clone().unwrap_or_default();
                let mut targets = Vec::new();
                for locality in &assignment.endpoints {
                    for lb_endpoint in &locality.lb_endpoints {
                        if let Some((host, port)) = endpoint_target(lb_endpoint)? {
                            let weight = lb_endpoint
                                .load_balancing_weight
                                .as_ref()
                                .map_or(1, |w| w.value)
                                .max(1);
                            targets.push((host, port, weight, locality.priority));
                        }
                    }
                }
                if kind == ClusterKind::LogicalDns && targets.len() != 1 {
                    return Err(ConfigError::invalid(
                        "LOGICAL_DNS clusters must have exactly one endpoint",
                    ));
                }
                let family = cluster::DnsLookupFamily::try_from(config.dns_lookup_family)
                    .unwrap_or(cluster::DnsLookupFamily::Auto);
                dns = Some(DnsSettings {
                    targets,
                    refresh: config
                        .dns_refresh_rate
                        .as_ref()
                        .map(config::duration)
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_secs(5)),
                    family,
                });
            }
            ClusterKind::Eds | ClusterKind::OriginalDst => {}
        }
        let eds_service_name = config
            .eds_cluster_config
            .as_ref()
            .map(|e| e.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| config.name.clone());
        let cluster = Cluster {
            name: Arc::from(config.name.as_str()),
            kind,
            connect_timeout,
            protocol,
            tls,
            idle_timeout,
            eds_service_name,
            stats: cluster_stats,
            config: Arc::new(config),
            last_updated: std::time::SystemTime::now(),
            hosts: ArcSwap::from_pointee(HostSet::default()),
            original_dst_hosts: Mutex::new(HashMap::new()),
            dns,
        };
        cluster.set_hosts(hosts);
        Ok(cluster)
    }

    /// Whether the cluster resolves names periodically.
    pub fn needs_dns(&self) -> bool {
        self.dns.is_some()
    }

    /// How often names are re-resolved.
    pub fn dns_refresh(&self) -> Option<Duration> {
        self.dns.as_ref().map(|d| d.refresh)
    }

    /// Resolves a DNS cluster's names and updates its endpoints.
    pub async fn resolve(&self) -> Result<(), ConfigError> {
        let Some(dns) = &self.dns else { return Ok(()) };
        let mut resolved = Vec::new();
        for (name, port, weight, priority) in &dns.targets {
            let addresses: Vec<SocketAddr> = match name.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, *port)],
                Err(_) => tokio::net::lookup_host((name.as_str(), *port))
                    .await
                    .map_err(|e| ConfigError::invalid(format!("resolving {name}: {e}")))?
                    .collect(),
            };
            let mut addresses: Vec<SocketAddr> = match dns.family {
                cluster::DnsLookupFamily::V4Only => {
                    addresses.into_iter().filter(SocketAddr::is_ipv4).collect()
                }
                cluster::DnsLookupFamily::V6Only => {
                    addresses.into_iter().filter(SocketAddr::is_ipv6).collect()
                }
                cluster::DnsLookupFamily::V4Preferred => {
                    let v4: Vec<_> = addresses
                        .iter()
                        .copied()
                        .filter(SocketAddr::is_ipv4)
                        .collect();
                    if v4.is_empty() { addresses } else { v4 }
                }
                cluster::DnsLookupFamily::Auto => {
                    let v6: Vec<_> = addresses
                        .iter()
                        .copied()
                        .filter(SocketAddr::is_ipv6)
                        .collect();
                    if v6.is_empty() { addresses } else { v6 }
                }
                cluster::DnsLookupFamily::All => addresses,
            };
            addresses.dedup();
            if self.kind == ClusterKind::LogicalDns {
                addresses.truncate(1);
            }
            for address in addresses {
                resolved.push((address, name.clone(), *weight, *priority));
            }
        }
        let previous = self.hosts.load();
        let hosts = resolved
            .into_iter()
            .map(|(address, name, weight, priority)| {
                reuse_or_new(
                    &previous.hosts,
                    address,
                    Some(name),
                    weight,
                    Health::Healthy,
                    priority,
                    String::new(),
                )
            })
            .collect();
        self.set_hosts(hosts);
        self.stats.update_success.inc();
        Ok(())
    }

    /// Replaces the endpoints with those of a `ClusterLoadAssignment` (EDS).
    pub fn assign(&self, assignment: &ClusterLoadAssignment) -> Result<(), ConfigError> {
        let previous = self.hosts.load();
        let hosts = hosts_from_assignment(assignment, &previous.hosts, true)?;
        self.set_hosts(hosts);
        self.stats.update_success.inc();
        Ok(())
    }

    /// Takes over the endpoints of the cluster this one replaces (same EDS service).
    pub fn inherit_hosts(&self, previous: &Cluster) {
        if self.kind == previous.kind && self.eds_service_name == previous.eds_service_name {
            let hosts = previous.hosts.load_full();
            self.hosts.store(hosts);
        }
    }

    fn set_hosts(&self, hosts: Vec<Arc<Host>>) {
        let before = self.hosts.load();
        for old in &before.hosts {
            if !hosts.iter().any(|h| Arc::ptr_eq(h, old)) {
                old.pool.clear();
            }
        }
        let set = HostSet::new(hosts);
        self.stats.membership_total.set(set.hosts.len() as i64);
        self.stats
            .membership_healthy
            .set(set.healthy_count() as i64);
        if before.hosts.len() != set.hosts.len()
            || before
                .hosts
                .iter()
                .zip(&set.hosts)
                .any(|(a, b)| !Arc::ptr_eq(a, b))
        {
            self.stats.membership_change.inc();
        }
        self.hosts.store(Arc::new(set));
    }

    /// The current endpoints.
    pub fn hosts(&self) -> Arc<HostSet> {
        self.hosts.load_full()
    }

    /// Chooses an endpoint; `original_dst` is the downstream's original destination (for
    /// ORIGINAL_DST clusters).
    pub fn choose_host(&self, original_dst: Option<SocketAddr>) -> Option<Arc<Host>> {
        if self.kind == ClusterKind::OriginalDst {
            let address = original_dst?;
            let mut hosts = self
                .original_dst_hosts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            return Some(
                hosts
                    .entry(address)
                    .or_insert_with(|| {
                        Arc::new(new_host(
                            address,
                            None,
                            1,
                            Health::Healthy,
                            0,
                            String::new(),
                        ))
                    })
                    .clone(),
            );
        }
        self.hosts.load().round_robin().cloned()
    }

    /// Whether requests of `version` go to endpoints over HTTP/2.
    pub fn uses_h2(&self, downstream: Version) -> bool {
        match self.protocol {
            Protocol::Http1 => false,
            Protocol::Http2 => true,
            Protocol::Downstream => downstream == Version::HTTP_2,
        }
    }

    /// Sends `request` to `host`; returns the response headers (the body streams on).
    pub async fn send(
        &self,
        host: &Arc<Host>,
        request: Request<Body>,
        h2: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        if h2 {
            self.send_h2(host, request).await
        } else {
            self.send_h1(host, request).await
        }
    }

    async fn open(
        &self,
        host: &Arc<Host>,
    ) -> Result<(UpstreamIo, Option<SocketAddr>), UpstreamError> {
        match connect::connect(host.address, self.connect_timeout, self.tls.as_deref()).await {
            Ok(connected) => {
                self.stats.upstream_cx_total.inc();
                host.stats.cx_total.inc();
                Ok(connected)
            }
            Err(error) => {
                self.stats.upstream_cx_connect_fail.inc();
                host.stats.cx_connect_fail.inc();
                if matches!(error, ConnectError::Timeout) {
                    self.stats.upstream_cx_connect_timeout.inc();
                }
                Err(UpstreamError::Connect(error))
            }
        }
    }

    async fn send_h1(
        &self,
        host: &Arc<Host>,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        // A pooled connection may have been closed by the endpoint just now; the request is
        // handed back unsent in that case and goes out on a fresh connection.
        for _ in 0..3 {
            let (mut sender, reused) = match host.pool.take_h1(self.idle_timeout) {
                Some(sender) => (sender, true),
                None => (self.open_h1(host).await?, false),
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Reset(error));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let keep_alive = !connection_close(response.headers());
                    let (parts, incoming) = response.into_parts();
                    let mut body = Body::incoming(incoming);
                    if keep_alive && parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
                        body = body.observe(ReturnToPool::new(host, sender));
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Reset(error.into_error())),
                },
            }
        }
        let mut sender = self.open_h1(host).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Reset)?;
        let (parts, incoming) = response.into_parts();
        Ok(Response::from_parts(parts, Body::incoming(incoming)))
    }

    async fn open_h1(&self, host: &Arc<Host>) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let (io, _) = self.open(host).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http1_total.inc();
        let guards = (
            GaugeGuard::new(&self.stats.upstream_cx_active),
            GaugeGuard::new(&host.stats.cx_active),
        );
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            drop(guards);
        });
        Ok(sender)
    }

    async fn send_h2(
        &self,
        host: &Arc<Host>,
        request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut sender = match host.pool.h2() {
            Some(sender) => sender,
            None => {
                let _connecting = host.pool.h2_connecting.lock().await;
                match host.pool.h2() {
                    Some(sender) => sender,
                    None => {
                        let (io, _) = self.open(host).await?;
                        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                            .handshake(TokioIo::new(io))
                            .await
                            .map_err(UpstreamError::Reset)?;
                        self.stats.upstream_cx_http2_total.inc();
                        let guards = (
                            GaugeGuard::new(&self.stats.upstream_cx_active),
                            GaugeGuard::new(&host.stats.cx_active),
                        );
                        tokio::spawn(async move {
                            let _ = connection.await;
                            drop(guards);
                        });
                        host.pool.set_h2(sender.clone());
                        sender
                    }
                }
            }
        };
        sender.ready().await.map_err(UpstreamError::Reset)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Reset)?;
        let (parts, incoming) = response.into_parts();
        Ok(Response::from_parts(parts, Body::incoming(incoming)))
    }
}

fn connection_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

fn protocol_options(config: &ClusterProto) -> Result<(Protocol, Option<Duration>), ConfigError> {
    let mut protocol = if config.http2_protocol_options.is_some() {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let mut idle_timeout = Some(Duration::from_secs(3600));
    for (name, any) in &config.typed_extension_protocol_options {
        if config::type_name(any) != support::HTTP_PROTOCOL_OPTIONS {
            return Err(ConfigError::unsupported(format!(
                "typed_extension_protocol_options {name} ({})",
                any.type_url
            )));
        }
        let options: HttpProtocolOptions =
            config::typed_config(Some(any), name)?.unwrap_or_default();
        match options.upstream_protocol_options {
            Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
                use http_protocol_options::explicit_http_config::ProtocolConfig;
                protocol = match explicit.protocol_config {
                    Some(ProtocolConfig::Http2ProtocolOptions(_)) => Protocol::Http2,
                    Some(ProtocolConfig::HttpProtocolOptions(_)) | None => Protocol::Http1,
                    Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                        return Err(ConfigError::unsupported("HTTP/3 upstreams"));
                    }
                };
            }
            Some(http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
                _,
            )) => {
                protocol = Protocol::Downstream;
            }
            Some(http_protocol_options::UpstreamProtocolOptions::AutoConfig(_)) => {
                return Err(ConfigError::unsupported(
                    "auto_config (ALPN protocol selection)",
                ));
            }
            None => {}
        }
        if let Some(common) = &options.common_http_protocol_options {
            if let Some(t) = &common.idle_timeout {
                idle_timeout = Some(config::duration(t)).filter(|d| !d.is_zero());
            }
        }
    }
    Ok((protocol, idle_timeout))
}

fn endpoint_target(
    lb_endpoint: &bosun_xds::pb::envoy::config::endpoint::v3::LbEndpoint,
) -> Result<Option<(String, u16)>, ConfigError> {
    let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb_endpoint.host_identifier else {
        return Err(ConfigError::unsupported(
            "lb_endpoint without an endpoint (endpoint_name)",
        ));
    };
    let Some(address) = &endpoint.address else {
        return Ok(None);
    };
    match &address.address {
        Some(address::Address::SocketAddress(socket)) => {
            let port = match socket.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p)
                    .map_err(|_| ConfigError::invalid(format!("port {p} out of range")))?,
                _ => return Err(ConfigError::invalid("endpoint without port_value")),
            };
            Ok(Some((socket.address.clone(), port)))
        }
        _ => Err(ConfigError::unsupported(
            "endpoint addresses other than socket_address",
        )),
    }
}

fn hosts_from_assignment(
    assignment: &ClusterLoadAssignment,
    previous: &[Arc<Host>],
    allow_names: bool,
) -> Result<Vec<Arc<Host>>, ConfigError> {
    let _ = allow_names;
    let mut hosts = Vec::new();
    for locality_endpoints in &assignment.endpoints {
        let locality = locality_endpoints
            .locality
            .as_ref()
            .map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone))
            .unwrap_or_default();
        for lb_endpoint in &locality_endpoints.lb_endpoints {
            let Some((ip, port)) = endpoint_target(lb_endpoint)? else {
                continue;
            };
            let ip: IpAddr = ip.parse().map_err(|_| {
                ConfigError::invalid(format!("endpoint address {ip:?} is not an IP address"))
            })?;
            let health = match HealthStatus::try_from(lb_endpoint.health_status)
                .unwrap_or(HealthStatus::Unknown)
            {
                HealthStatus::Unknown | HealthStatus::Healthy => Health::Healthy,
                HealthStatus::Degraded => Health::Degraded,
                HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout => {
                    Health::Unhealthy
                }
            };
            let hostname = match &lb_endpoint.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(e)) if !e.hostname.is_empty() => {
                    Some(e.hostname.clone())
                }
                _ => None,
            };
            let weight = lb_endpoint
                .load_balancing_weight
                .as_ref()
                .map_or(1, |w| w.value)
                .max(1);
            hosts.push(reuse_or_new(
                previous,
                SocketAddr::new(ip, port),
                hostname,
                weight,
                health,
                locality_endpoints.priority,
                locality.clone(),
            ));
        }
    }
    Ok(hosts)
}

/// The endpoint of `previous` at `address` when nothing about it changed (keeping its
/// connections and counters), otherwise a new one.
fn reuse_or_new(
    previous: &[Arc<Host>],
    address: SocketAddr,
    hostname: Option<String>,
    weight: u32,
    health: Health,
    priority: u32,
    locality: String,
) -> Arc<Host> {
    previous
        .iter()
        .find(|h| {
            h.address == address
                && h.hostname == hostname
                && h.weight == weight
                && h.health == health
                && h.priority == priority
                && h.locality == locality
        })
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(new_host(
                address, hostname, weight, health, priority, locality,
            ))
        })
}

fn new_host(
    address: SocketAddr,
    hostname: Option<String>,
    weight: u32,
    health: Health,
    priority: u32,
    locality: String,
) -> Host {
    Host {
        address,
        hostname,
        weight,
        health,
        priority,
        locality,
        stats: HostStats::default(),
        pool: Pool::default(),
    }
}

/// How long a request spent, for `x-envoy-upstream-service-time`.
pub fn elapsed_millis(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

#[cfg(test)]
mod tests;
