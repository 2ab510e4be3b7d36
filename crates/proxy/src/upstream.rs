//! Upstream clusters: their endpoints, how one is chosen, and how requests reach it.

pub mod circuit;
pub mod connect;
pub mod health_check;
pub mod lb;
pub mod outlier;
pub mod pool;
mod resolve;
pub mod xxhash;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
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
use circuit::{CircuitBreakers, Priority, Thresholds};
use connect::{ConnectError, UpstreamIo};
pub use lb::{HostSet, LbPolicy, LbSettings, Selection};
use outlier::{HostMonitor, Monitored, Outcome, OutlierConfig, OutlierDetector, OutlierStats};
use pool::{H1Conn, Hold, Pool, Pools, ReturnToPool};

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
    /// Requests waiting for a connection.
    pub rq_pending_active: Gauge,
    /// Requests answered with a non-5xx status.
    pub rq_success: Counter,
    /// Requests that failed or got a 5xx.
    pub rq_error: Counter,
    /// Requests that timed out.
    pub rq_timeout: Counter,
}

/// Health flags learnt at run time: ejected by outlier detection.
const FAILED_OUTLIER_CHECK: u8 = 1;
/// Health flags learnt at run time: failing (or not yet passing) active health checks.
const FAILED_ACTIVE_HC: u8 = 2;

/// One endpoint of a cluster.
#[derive(Debug)]
pub struct Host {
    /// Its address.
    pub address: SocketAddr,
    /// Its name (DNS clusters, or `hostname` in EDS).
    pub hostname: Option<String>,
    /// Load-balancing weight.
    pub weight: u32,
    /// Health as configured (EDS).
    pub health: Health,
    /// Priority (0 is highest).
    pub priority: u32,
    /// Locality (`region/zone/subzone`).
    pub locality: String,
    /// The locality's weight (`load_balancing_weight` of its `LocalityLbEndpoints`, 0 unset).
    pub locality_weight: u32,
    /// Counters.
    pub stats: HostStats,
    /// Open connections, per routing priority.
    pub pools: Pools,
    /// Outlier detection state.
    pub outlier: HostMonitor,
    /// Active health checking state.
    pub health_check: health_check::HostCheck,
    flags: AtomicU8,
}

impl Host {
    /// Health now: configured health unless ejected or failing active health checks.
    pub fn current_health(&self) -> Health {
        if self.flags.load(Ordering::Relaxed) != 0 {
            Health::Unhealthy
        } else {
            self.health
        }
    }

    /// Requests in flight to this endpoint (for LEAST_REQUEST).
    pub fn active_requests(&self) -> i64 {
        self.stats.rq_active.get()
    }

    /// Whether outlier detection ejected this endpoint.
    pub fn failed_outlier_check(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & FAILED_OUTLIER_CHECK != 0
    }

    /// Whether active health checks find this endpoint unhealthy.
    pub fn failed_active_health_check(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & FAILED_ACTIVE_HC != 0
    }

    /// Sets or clears a flag; returns whether it changed.
    fn set_flag(&self, flag: u8, on: bool) -> bool {
        let before = if on {
            self.flags.fetch_or(flag, Ordering::AcqRel)
        } else {
            self.flags.fetch_and(!flag, Ordering::AcqRel)
        };
        (before & flag != 0) != on
    }

    /// Marks the endpoint failing (or passing) active health checks; returns whether it
    /// changed.
    pub fn set_failed_active_health_check(&self, failed: bool) -> bool {
        self.set_flag(FAILED_ACTIVE_HC, failed)
    }
}

impl Monitored for Host {
    fn monitor(&self) -> &HostMonitor {
        &self.outlier
    }

    fn set_ejected(&self, ejected: bool) {
        self.set_flag(FAILED_OUTLIER_CHECK, ejected);
    }
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
    /// `retry.upstream_rq_<code>`: responses that were retried.
    pub retry_upstream_rq: StatusCounters,
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
    /// `upstream_cx_overflow` (a connection was needed beyond `max_connections`).
    pub upstream_cx_overflow: Counter,
    /// `upstream_cx_pool_overflow`.
    pub upstream_cx_pool_overflow: Counter,
    /// `upstream_cx_max_requests` (connections closed at `max_requests_per_connection`).
    pub upstream_cx_max_requests: Counter,
    /// `upstream_rq_pending_overflow`.
    pub upstream_rq_pending_overflow: Counter,
    /// `upstream_rq_active_overflow` (`max_requests`).
    pub upstream_rq_active_overflow: Counter,
    /// `upstream_rq_pending_total`.
    pub upstream_rq_pending_total: Counter,
    /// `upstream_rq_pending_active`.
    pub upstream_rq_pending_active: Gauge,
    /// `upstream_rq_retry`.
    pub upstream_rq_retry: Counter,
    /// `upstream_rq_retry_success`.
    pub upstream_rq_retry_success: Counter,
    /// `upstream_rq_retry_overflow`.
    pub upstream_rq_retry_overflow: Counter,
    /// `upstream_rq_retry_limit_exceeded`.
    pub upstream_rq_retry_limit_exceeded: Counter,
    /// `upstream_rq_retry_backoff_exponential`.
    pub upstream_rq_retry_backoff_exponential: Counter,
    /// `upstream_rq_per_try_timeout`.
    pub upstream_rq_per_try_timeout: Counter,
    /// `upstream_rq_per_try_idle_timeout`.
    pub upstream_rq_per_try_idle_timeout: Counter,
    /// `retry_or_shadow_abandoned` (the body outgrew the replay buffer).
    pub retry_or_shadow_abandoned: Counter,
    /// `lb_healthy_panic`.
    pub lb_healthy_panic: Counter,
    /// `health_check.attempt`.
    pub health_check_attempt: Counter,
    /// `health_check.success`.
    pub health_check_success: Counter,
    /// `health_check.failure`.
    pub health_check_failure: Counter,
    /// `health_check.healthy`.
    pub health_check_healthy: Gauge,
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
            retry_upstream_rq: StatusCounters::new(
                stats,
                &format!("cluster.{name}.retry.upstream_rq"),
            ),
            upstream_rq_timeout: c("upstream_rq_timeout"),
            upstream_rq_rx_reset: c("upstream_rq_rx_reset"),
            upstream_cx_total: c("upstream_cx_total"),
            upstream_cx_active: g("upstream_cx_active"),
            upstream_cx_http1_total: c("upstream_cx_http1_total"),
            upstream_cx_http2_total: c("upstream_cx_http2_total"),
            upstream_cx_connect_fail: c("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: c("upstream_cx_connect_timeout"),
            upstream_cx_none_healthy: c("upstream_cx_none_healthy"),
            upstream_cx_overflow: c("upstream_cx_overflow"),
            upstream_cx_pool_overflow: c("upstream_cx_pool_overflow"),
            upstream_cx_max_requests: c("upstream_cx_max_requests"),
            upstream_rq_pending_overflow: c("upstream_rq_pending_overflow"),
            upstream_rq_active_overflow: c("upstream_rq_active_overflow"),
            upstream_rq_pending_total: c("upstream_rq_pending_total"),
            upstream_rq_pending_active: g("upstream_rq_pending_active"),
            upstream_rq_retry: c("upstream_rq_retry"),
            upstream_rq_retry_success: c("upstream_rq_retry_success"),
            upstream_rq_retry_overflow: c("upstream_rq_retry_overflow"),
            upstream_rq_retry_limit_exceeded: c("upstream_rq_retry_limit_exceeded"),
            upstream_rq_retry_backoff_exponential: c("upstream_rq_retry_backoff_exponential"),
            upstream_rq_per_try_timeout: c("upstream_rq_per_try_timeout"),
            upstream_rq_per_try_idle_timeout: c("upstream_rq_per_try_idle_timeout"),
            retry_or_shadow_abandoned: c("retry_or_shadow_abandoned"),
            lb_healthy_panic: c("lb_healthy_panic"),
            health_check_attempt: c("health_check.attempt"),
            health_check_success: c("health_check.success"),
            health_check_failure: c("health_check.failure"),
            health_check_healthy: g("health_check.healthy"),
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
    /// A circuit breaker refused the request.
    #[error("upstream overflow")]
    Overflow,
    /// `max_connection_pools` left no room for the endpoint's pool.
    #[error("no connection pool available")]
    PoolOverflow,
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
    /// The local address connections are made from (`upstream_bind_config`).
    pub source_address: Option<SocketAddr>,
    /// Protocol to endpoints.
    pub protocol: Protocol,
    /// TLS to endpoints.
    pub tls: Option<Arc<TlsConnector>>,
    /// How long idle connections are kept.
    pub idle_timeout: Option<Duration>,
    /// HTTP/1.1 requests per connection before it is closed (`max_requests_per_connection`).
    pub max_requests_per_connection: Option<u32>,
    /// The service name endpoints are requested under (EDS).
    pub eds_service_name: String,
    /// Counters.
    pub stats: Arc<ClusterStats>,
    /// The configuration, as received.
    pub config: Arc<ClusterProto>,
    /// When this version was applied.
    pub last_updated: std::time::SystemTime,
    /// How endpoints are chosen.
    pub lb: LbSettings,
    /// Circuit breakers.
    pub breakers: CircuitBreakers,
    /// Outlier detection, when configured.
    pub outlier: Option<OutlierDetector>,
    /// Active health checking, when configured.
    pub health_check: Option<Arc<health_check::HealthCheck>>,
    /// Wakes the health checker when new endpoints arrive (they are checked at once).
    pub health_check_wakeup: tokio::sync::Notify,
    hosts: ArcSwap<HostSet>,
    /// Serializes rebuilding the host set (membership and health changes).
    rebuild: Mutex<()>,
    overprovisioning: AtomicU32,
    /// ORIGINAL_DST endpoints made on demand, with whether they were used since the last
    /// cleanup.
    original_dst_hosts: Mutex<HashMap<SocketAddr, (Arc<Host>, bool)>>,
    /// How often unused ORIGINAL_DST endpoints are dropped (`cleanup_interval`).
    pub cleanup_interval: Option<Duration>,
    dns: Option<DnsSettings>,
}

#[derive(Debug, Clone)]
struct DnsSettings {
    targets: Vec<(String, u16, u32, u32)>,
    refresh: Duration,
    /// `respect_dns_ttl`: the next resolution comes when the answers expire.
    respect_ttl: bool,
    family: cluster::DnsLookupFamily,
    resolver: resolve::NameResolver,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The load-balancing settings of a cluster.
fn lb_settings(config: &ClusterProto, kind: ClusterKind) -> Result<LbSettings, ConfigError> {
    let lb = cluster::LbPolicy::try_from(config.lb_policy).unwrap_or(cluster::LbPolicy::RoundRobin);
    if config.load_balancing_policy.is_some() {
        return Err(ConfigError::unsupported(
            "load_balancing_policy (typed LB extensions)",
        ));
    }
    let policy = match (lb, kind) {
        (cluster::LbPolicy::ClusterProvided, ClusterKind::OriginalDst) => LbPolicy::RoundRobin,
        (cluster::LbPolicy::RoundRobin, _) => LbPolicy::RoundRobin,
        (cluster::LbPolicy::LeastRequest, _) => {
            let (choice_count, bias) = match &config.lb_config {
                Some(cluster::LbConfig::LeastRequestLbConfig(c)) => {
                    if c.slow_start_config.is_some() {
                        return Err(ConfigError::unsupported(
                            "least_request_lb_config.slow_start_config",
                        ));
                    }
                    let bias = c
                        .active_request_bias
                        .as_ref()
                        .map_or(1.0, |b| b.default_value);
                    (
                        c.choice_count.map_or(2, |v| v.value),
                        if bias.is_finite() && bias >= 0.0 {
                            bias
                        } else {
                            1.0
                        },
                    )
                }
                _ => (2, 1.0),
            };
            if choice_count < 2 {
                return Err(ConfigError::invalid(
                    "least_request_lb_config.choice_count must be at least 2",
                ));
            }
            LbPolicy::LeastRequest { choice_count, bias }
        }
        (cluster::LbPolicy::Random, _) => LbPolicy::Random,
        (cluster::LbPolicy::RingHash, _) => {
            let (mut min_size, mut max_size) = (lb::DEFAULT_MIN_RING, lb::DEFAULT_MAX_RING);
            if let Some(cluster::LbConfig::RingHashLbConfig(c)) = &config.lb_config {
                use cluster::ring_hash_lb_config::HashFunction;
                if HashFunction::try_from(c.hash_function).unwrap_or(HashFunction::XxHash)
                    != HashFunction::XxHash
                {
                    return Err(ConfigError::unsupported(
                        "ring_hash_lb_config.hash_function MURMUR_HASH_2",
                    ));
                }
                min_size = c.minimum_ring_size.map_or(min_size, |v| v.value);
                max_size = c.maximum_ring_size.map_or(max_size, |v| v.value);
            }
            if min_size == 0 || max_size < min_size || max_size > lb::DEFAULT_MAX_RING {
                return Err(ConfigError::invalid(format!(
                    "ring hash: minimum_ring_size ({min_size}) must be positive and at most maximum_ring_size ({max_size}), itself at most {}",
                    lb::DEFAULT_MAX_RING
                )));
            }
            LbPolicy::RingHash { min_size, max_size }
        }
        (cluster::LbPolicy::Maglev, _) => {
            let table_size = match &config.lb_config {
                Some(cluster::LbConfig::MaglevLbConfig(c)) => {
                    c.table_size.map_or(lb::DEFAULT_MAGLEV_TABLE, |v| v.value)
                }
                _ => lb::DEFAULT_MAGLEV_TABLE,
            };
            if !is_prime(table_size) || table_size > 5_000_011 {
                return Err(ConfigError::invalid(format!(
                    "maglev table_size {table_size} must be a prime number at most 5000011"
                )));
            }
            LbPolicy::Maglev { table_size }
        }
        (other, _) => {
            return Err(ConfigError::unsupported(format!(
                "lb_policy {}",
                other.as_str_name()
            )));
        }
    };
    let lb_config_matches = match (&config.lb_config, policy) {
        (None, _) => true,
        (Some(cluster::LbConfig::LeastRequestLbConfig(_)), LbPolicy::LeastRequest { .. }) => true,
        (Some(cluster::LbConfig::RingHashLbConfig(_)), LbPolicy::RingHash { .. }) => true,
        (Some(cluster::LbConfig::MaglevLbConfig(_)), LbPolicy::Maglev { .. }) => true,
        (Some(cluster::LbConfig::RoundRobinLbConfig(c)), LbPolicy::RoundRobin) => {
            c.slow_start_config.is_none()
        }
        _ => false,
    };
    if !lb_config_matches {
        return Err(ConfigError::unsupported(
            "this lb_config with this lb_policy",
        ));
    }
    let mut settings = LbSettings {
        policy,
        ..LbSettings::default()
    };
    if let Some(common) = &config.common_lb_config {
        use cluster::common_lb_config::LocalityConfigSpecifier;
        if let Some(threshold) = &common.healthy_panic_threshold {
            settings.panic_threshold = threshold.value.clamp(0.0, 100.0);
        }
        match &common.locality_config_specifier {
            None => {}
            Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_)) => {
                settings.locality_weighted = true;
            }
            Some(LocalityConfigSpecifier::ZoneAwareLbConfig(_)) => {
                return Err(ConfigError::unsupported(
                    "common_lb_config.zone_aware_lb_config",
                ));
            }
        }
        if let Some(hashing) = &common.consistent_hashing_lb_config {
            if hashing.hash_balance_factor.is_some() {
                return Err(ConfigError::unsupported(
                    "consistent_hashing_lb_config.hash_balance_factor",
                ));
            }
            settings.hostname_keys = hashing.use_hostname_for_hashing;
        }
    }
    Ok(settings)
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
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
        let lb = lb_settings(&config, kind)?;
        if kind == ClusterKind::OriginalDst && lb.policy != LbPolicy::RoundRobin {
            return Err(ConfigError::invalid(
                "ORIGINAL_DST clusters must use lb_policy CLUSTER_PROVIDED",
            ));
        }
        let connect_timeout = config
            .connect_timeout
            .as_ref()
            .map(config::duration)
            .unwrap_or(Duration::from_secs(5));
        let source_address = match config
            .upstream_bind_config
            .as_ref()
            .and_then(|b| b.source_address.as_ref())
        {
            None => None,
            Some(source) => Some(bind_address(source)?),
        };
        let options = protocol_options(&config)?;
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
        let breakers =
            CircuitBreakers::compile(config.circuit_breakers.as_ref(), stats, &stat_name)
                .map_err(|e| e.context("circuit_breakers"))?;
        let outlier = match &config.outlier_detection {
            None => None,
            Some(detection) => Some(OutlierDetector::new(
                OutlierConfig::compile(detection).map_err(|e| e.context("outlier_detection"))?,
                OutlierStats::new(stats, &stat_name),
            )),
        };
        let health_check = match config.health_checks.as_slice() {
            [] => None,
            [one] => Some(Arc::new(
                health_check::HealthCheck::compile(one, &config.name)
                    .map_err(|e| e.context("health_checks[0]"))?,
            )),
            _ => return Err(ConfigError::unsupported("more than one health check")),
        };
        let max_requests_per_connection = options
            .max_requests_per_connection
            .or(config.max_requests_per_connection.map(|v| v.value))
            .filter(|n| *n > 0);
        let initial_flags = if health_check.is_some() {
            FAILED_ACTIVE_HC
        } else {
            0
        };
        let mut dns = None;
        let mut hosts = Vec::new();
        let mut overprovisioning = lb::DEFAULT_OVERPROVISIONING;
        match kind {
            ClusterKind::Static => {
                if let Some(assignment) = &config.load_assignment {
                    hosts = hosts_from_assignment(assignment, &[], initial_flags)?;
                    overprovisioning = overprovisioning_factor(assignment)?;
                }
            }
            ClusterKind::StrictDns | ClusterKind::LogicalDns => {
                let assignment = config.load_assignment.clone().unwrap_or_default();
                overprovisioning = overprovisioning_factor(&assignment)?;
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
                    respect_ttl: config.respect_dns_ttl,
                    family,
                    resolver: resolve::NameResolver::for_cluster(&config, family)?,
                });
            }
            ClusterKind::Eds | ClusterKind::OriginalDst => {}
        }
        let cleanup_interval = (kind == ClusterKind::OriginalDst).then(|| {
            config
                .cleanup_interval
                .as_ref()
                .map(config::duration)
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(5))
        });
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
            source_address,
            protocol: options.protocol,
            tls,
            idle_timeout: options.idle_timeout,
            max_requests_per_connection,
            eds_service_name,
            stats: cluster_stats,
            config: Arc::new(config),
            last_updated: std::time::SystemTime::now(),
            lb,
            breakers,
            outlier,
            health_check,
            health_check_wakeup: tokio::sync::Notify::new(),
            hosts: ArcSwap::from_pointee(HostSet::default()),
            rebuild: Mutex::new(()),
            overprovisioning: AtomicU32::new(overprovisioning),
            original_dst_hosts: Mutex::new(HashMap::new()),
            cleanup_interval,
            dns,
        };
        cluster.set_hosts(hosts);
        Ok(cluster)
    }

    /// Whether the cluster resolves names periodically.
    pub fn needs_dns(&self) -> bool {
        self.dns.is_some()
    }

    /// How often names are re-resolved (`dns_refresh_rate`), when the answers' TTLs do not
    /// say otherwise.
    pub fn dns_refresh(&self) -> Option<Duration> {
        self.dns.as_ref().map(|d| d.refresh)
    }

    fn initial_flags(&self) -> u8 {
        if self.health_check.is_some() {
            FAILED_ACTIVE_HC
        } else {
            0
        }
    }

    /// Resolves a DNS cluster's names and updates its endpoints; returns when to resolve them
    /// again (the shortest TTL with `respect_dns_ttl`, else `dns_refresh_rate`).
    pub async fn resolve(&self) -> Result<Duration, ConfigError> {
        let Some(dns) = &self.dns else {
            return Ok(Duration::MAX);
        };
        let mut resolved = Vec::new();
        let mut next = dns.refresh;
        let mut shortest_ttl: Option<Duration> = None;
        for (name, port, weight, priority) in &dns.targets {
            let answer = dns.resolver.resolve(name, *port).await?;
            if let Some(ttl) = answer.ttl {
                shortest_ttl = Some(shortest_ttl.map_or(ttl, |t| t.min(ttl)));
            }
            let addresses = answer.addresses;
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
        let flags = self.initial_flags();
        let hosts = resolved
            .into_iter()
            .map(|(address, name, weight, priority)| {
                reuse_or_new(
                    &previous.hosts,
                    Endpoint {
                        address,
                        hostname: Some(name),
                        weight,
                        health: Health::Healthy,
                        priority,
                        locality: String::new(),
                        locality_weight: 0,
                    },
                    flags,
                )
            })
            .collect();
        self.set_hosts(hosts);
        self.stats.update_success.inc();
        // Envoy: a TTL of zero falls back to the refresh rate.
        if dns.respect_ttl {
            if let Some(ttl) = shortest_ttl.filter(|t| !t.is_zero()) {
                next = ttl;
            }
        }
        Ok(next)
    }

    /// Replaces the endpoints with those of a `ClusterLoadAssignment` (EDS).
    pub fn assign(&self, assignment: &ClusterLoadAssignment) -> Result<(), ConfigError> {
        let previous = self.hosts.load();
        let hosts = hosts_from_assignment(assignment, &previous.hosts, self.initial_flags())?;
        self.overprovisioning
            .store(overprovisioning_factor(assignment)?, Ordering::Relaxed);
        self.set_hosts(hosts);
        self.stats.update_success.inc();
        Ok(())
    }

    /// Takes over the endpoints of the cluster this one replaces (same EDS service), keeping
    /// their connections, counters and health.
    pub fn inherit_hosts(&self, previous: &Cluster) {
        if self.kind == previous.kind && self.eds_service_name == previous.eds_service_name {
            let hosts = previous.hosts.load_full();
            self.overprovisioning.store(
                previous.overprovisioning.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            if self.health_check.is_none() {
                for host in &hosts.hosts {
                    host.set_failed_active_health_check(false);
                }
            }
            self.set_hosts(hosts.hosts.clone());
        }
    }

    fn set_hosts(&self, hosts: Vec<Arc<Host>>) {
        let _rebuilding = lock(&self.rebuild);
        let before = self.hosts.load();
        if self.health_check.is_some()
            && hosts
                .iter()
                .any(|h| !before.hosts.iter().any(|b| Arc::ptr_eq(b, h)))
        {
            self.health_check_wakeup.notify_one();
        }
        for old in &before.hosts {
            if !hosts.iter().any(|h| Arc::ptr_eq(h, old)) {
                old.pools.clear();
            }
        }
        let set = HostSet::new(
            hosts,
            &self.lb,
            self.overprovisioning.load(Ordering::Relaxed),
        );
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
        if let Some(outlier) = &self.outlier {
            let ejected = set
                .hosts
                .iter()
                .filter(|h| h.failed_outlier_check())
                .count();
            outlier.stats.ejections_active.set(ejected as i64);
        }
        self.hosts.store(Arc::new(set));
    }

    /// Rebuilds the host set after an endpoint's health changed.
    pub fn refresh(&self) {
        let hosts = self.hosts.load().hosts.clone();
        self.set_hosts(hosts);
    }

    /// The current endpoints.
    pub fn hosts(&self) -> Arc<HostSet> {
        self.hosts.load_full()
    }

    /// Chooses an endpoint; `original_dst` is the downstream's original destination (for
    /// ORIGINAL_DST clusters).
    pub fn choose_host(
        &self,
        original_dst: Option<SocketAddr>,
        selection: &Selection<'_>,
    ) -> Option<Arc<Host>> {
        if self.kind == ClusterKind::OriginalDst {
            let address = original_dst?;
            let mut hosts = lock(&self.original_dst_hosts);
            let (host, used) = hosts.entry(address).or_insert_with(|| {
                let host = new_host(
                    Endpoint {
                        address,
                        hostname: None,
                        weight: 1,
                        health: Health::Healthy,
                        priority: 0,
                        locality: String::new(),
                        locality_weight: 0,
                    },
                    0,
                );
                (Arc::new(host), true)
            });
            *used = true;
            return Some(host.clone());
        }
        self.hosts.load().choose(selection)
    }

    /// Envoy's ORIGINAL_DST cleanup, every `cleanup_interval`: endpoints not chosen since the
    /// previous cleanup are dropped (their idle connections closed); returns how many remain.
    pub fn clean_up_original_dst(&self) -> usize {
        let mut hosts = lock(&self.original_dst_hosts);
        hosts.retain(|_, (host, used)| {
            if *used {
                *used = false;
                true
            } else {
                host.pools.clear();
                false
            }
        });
        hosts.len()
    }

    /// Tells outlier detection what happened to a request sent to `host`.
    pub fn report(&self, host: &Arc<Host>, outcome: Outcome) {
        let Some(detector) = &self.outlier else {
            return;
        };
        let Some(kind) = host.outlier.record(&detector.config, outcome) else {
            return;
        };
        let set = self.hosts.load();
        let all: Vec<&Host> = set.hosts.iter().map(Arc::as_ref).collect();
        if detector.on_consecutive(host.as_ref(), &all, kind, tokio::time::Instant::now()) {
            drop(set);
            self.refresh();
        }
    }

    /// One tick of outlier detection (every `interval`).
    pub fn outlier_tick(&self) {
        let Some(detector) = &self.outlier else {
            return;
        };
        let set = self.hosts.load();
        let all: Vec<&Host> = set.hosts.iter().map(Arc::as_ref).collect();
        if detector.on_interval(&all, tokio::time::Instant::now()) {
            drop(set);
            self.refresh();
        }
    }

    /// Whether requests of `version` go to endpoints over HTTP/2.
    pub fn uses_h2(&self, downstream: Version) -> bool {
        match self.protocol {
            Protocol::Http1 => false,
            Protocol::Http2 => true,
            Protocol::Downstream => downstream == Version::HTTP_2,
        }
    }

    /// Sends `request` to `host` within the circuit breakers of `priority`; returns the
    /// response headers (the body streams on).
    pub async fn send(
        self: &Arc<Self>,
        host: &Arc<Host>,
        request: Request<Body>,
        h2: bool,
        priority: Priority,
    ) -> Result<Response<Body>, UpstreamError> {
        let limits = self.breakers.thresholds(priority);
        let pool = host.pools.get(priority);
        // Pools are counted only under a `max_connection_pools` (or its gauge): no lock
        // per request otherwise.
        if limits.pools.is_counted() && !pool.claim(h2, &limits.pools) {
            self.stats.upstream_cx_pool_overflow.inc();
            return Err(UpstreamError::PoolOverflow);
        }
        if h2 {
            self.send_h2(host, pool, request, limits).await
        } else {
            self.send_h1(host, priority, request, limits).await
        }
    }

    async fn open(
        &self,
        host: &Arc<Host>,
    ) -> Result<(UpstreamIo, Option<SocketAddr>), UpstreamError> {
        match connect::connect(
            host.address,
            self.source_address,
            self.connect_timeout,
            self.tls.as_deref(),
        )
        .await
        {
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

    /// A connection for one request: an idle one, or a place in the endpoint's queue (within
    /// `max_pending_requests`) until one is returned or opened (within `max_connections`).
    async fn acquire_h1(
        self: &Arc<Self>,
        host: &Arc<Host>,
        priority: Priority,
        limits: &Thresholds,
    ) -> Result<(H1Conn, bool), UpstreamError> {
        let pool = host.pools.get(priority);
        if let Some(conn) = pool.take_h1(self.idle_timeout) {
            return Ok((conn, true));
        }
        let Some(_pending) = limits.pending.try_acquire() else {
            self.stats.upstream_rq_pending_overflow.inc();
            pool.release_h1_unit_if_unused();
            return Err(UpstreamError::Overflow);
        };
        self.stats.upstream_rq_pending_total.inc();
        let _pending_active = (
            GaugeGuard::new(&self.stats.upstream_rq_pending_active),
            GaugeGuard::new(&host.stats.rq_pending_active),
        );
        let connections = &limits.connections;
        let queued = pool.wait(self.idle_timeout, |open| {
            let allowed = connections.can_create() || open == 0;
            if !allowed {
                self.stats.upstream_cx_overflow.inc();
            }
            allowed
        });
        if queued.connect {
            self.spawn_h1_connect(host.clone(), priority);
        }
        match queued.ticket.await {
            Ok(Ok(conn)) => Ok((conn, false)),
            Ok(Err(error)) => Err(UpstreamError::Connect(error)),
            // The pool went away (the endpoint left the cluster while we waited).
            Err(_) => Err(UpstreamError::Connect(ConnectError::Tcp(
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "endpoint removed"),
            ))),
        }
    }

    /// Opens a connection for `host`'s queue in the background.
    fn spawn_h1_connect(self: &Arc<Self>, host: Arc<Host>, priority: Priority) {
        let cluster = self.clone();
        let guard = self.breakers.thresholds(priority).connections.acquire();
        tokio::spawn(async move {
            let result = cluster.open_h1(&host, priority, guard).await;
            host.pools
                .get(priority)
                .opened(result.map(H1Conn::new).map_err(|e| match e {
                    UpstreamError::Connect(c) => c,
                    other => ConnectError::Tcp(std::io::Error::other(other.to_string())),
                }));
        });
    }

    async fn open_h1(
        self: &Arc<Self>,
        host: &Arc<Host>,
        priority: Priority,
        connection_unit: circuit::ResourceGuard,
    ) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let (io, _) = self.open(host).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http1_total.inc();
        let guards = (
            GaugeGuard::new(&self.stats.upstream_cx_active),
            GaugeGuard::new(&host.stats.cx_active),
            connection_unit,
        );
        let weak_cluster = Arc::downgrade(self);
        let weak_host = Arc::downgrade(host);
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            drop(guards);
            // A closed connection may unblock requests waiting for one.
            if let (Some(cluster), Some(host)) = (weak_cluster.upgrade(), weak_host.upgrade()) {
                let connections = &cluster.breakers.thresholds(priority).connections;
                if host
                    .pools
                    .get(priority)
                    .closed(|open| connections.can_create() || open == 0)
                {
                    cluster.spawn_h1_connect(host.clone(), priority);
                }
            }
        });
        Ok(sender)
    }

    async fn send_h1(
        self: &Arc<Self>,
        host: &Arc<Host>,
        priority: Priority,
        mut request: Request<Body>,
        limits: &Thresholds,
    ) -> Result<Response<Body>, UpstreamError> {
        // A pooled connection may have been closed by the endpoint just now; the request is
        // handed back unsent in that case and goes out on another connection.
        for _ in 0..3 {
            let (mut conn, reused) = self.acquire_h1(host, priority, limits).await?;
            if !reused {
                self.report(host, Outcome::ConnectSuccess);
            }
            if let Err(error) = conn.sender.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Reset(error));
            }
            let Some(active) = limits.requests.try_acquire() else {
                host.pools.get(priority).release(conn);
                self.stats.upstream_rq_active_overflow.inc();
                return Err(UpstreamError::Overflow);
            };
            // Counted once the request has a connection, as Envoy counts it.
            self.stats.upstream_rq_total.inc();
            host.stats.rq_total.inc();
            match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    conn.requests += 1;
                    let limit_reached = self
                        .max_requests_per_connection
                        .is_some_and(|max| conn.requests >= max);
                    if limit_reached {
                        self.stats.upstream_cx_max_requests.inc();
                    }
                    let keep_alive = !connection_close(response.headers()) && !limit_reached;
                    let (parts, incoming) = response.into_parts();
                    let mut body = Body::incoming(incoming).observe(Hold(Some(active)));
                    if keep_alive && parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
                        body = body.observe(ReturnToPool::new(host, priority, conn));
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Reset(error.into_error())),
                },
            }
        }
        Err(UpstreamError::Connect(ConnectError::Tcp(
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "pooled connections kept closing",
            ),
        )))
    }

    /// Opens the HTTP/2 connection of `host`'s pool of the priority of `limits`; the pool's
    /// `max_connection_pools` unit is given back when it closes.
    async fn open_h2(
        &self,
        host: &Arc<Host>,
        limits: &Thresholds,
    ) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let (io, _) = self.open(host).await?;
        self.report(host, Outcome::ConnectSuccess);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http2_total.inc();
        let guards = (
            GaugeGuard::new(&self.stats.upstream_cx_active),
            GaugeGuard::new(&host.stats.cx_active),
            limits.connections.acquire(),
        );
        let weak_host = Arc::downgrade(host);
        let priority = limits.priority;
        tokio::spawn(async move {
            let _ = connection.await;
            drop(guards);
            if let Some(host) = weak_host.upgrade() {
                host.pools.get(priority).h2_gone();
            }
        });
        Ok(sender)
    }

    async fn send_h2(
        &self,
        host: &Arc<Host>,
        pool: &Pool,
        request: Request<Body>,
        limits: &Thresholds,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut sender = match pool.h2() {
            Some(sender) => sender,
            None => {
                let _connecting = pool.h2_connecting.lock().await;
                match pool.h2() {
                    Some(sender) => sender,
                    None => {
                        let opened = self.open_h2(host, limits).await;
                        match opened {
                            Ok(sender) => {
                                pool.set_h2(sender.clone());
                                sender
                            }
                            Err(error) => {
                                pool.h2_gone();
                                return Err(error);
                            }
                        }
                    }
                }
            }
        };
        let Some(active) = limits.requests.try_acquire() else {
            self.stats.upstream_rq_active_overflow.inc();
            return Err(UpstreamError::Overflow);
        };
        self.stats.upstream_rq_total.inc();
        host.stats.rq_total.inc();
        sender.ready().await.map_err(UpstreamError::Reset)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Reset)?;
        let (parts, incoming) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            Body::incoming(incoming).observe(Hold(Some(active))),
        ))
    }
}

/// `upstream_bind_config.source_address`: an IP and (usually 0) port.
fn bind_address(
    source: &bosun_xds::pb::envoy::config::core::v3::SocketAddress,
) -> Result<SocketAddr, ConfigError> {
    config::ip_socket_address(source, "upstream_bind_config.source_address", 0)
}

fn connection_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

/// What `typed_extension_protocol_options` says about talking to endpoints.
#[derive(Debug)]
struct ProtocolOptions {
    protocol: Protocol,
    idle_timeout: Option<Duration>,
    max_requests_per_connection: Option<u32>,
}

fn protocol_options(config: &ClusterProto) -> Result<ProtocolOptions, ConfigError> {
    let mut options = ProtocolOptions {
        protocol: if config.http2_protocol_options.is_some() {
            Protocol::Http2
        } else {
            Protocol::Http1
        },
        idle_timeout: Some(Duration::from_secs(3600)),
        max_requests_per_connection: None,
    };
    for (name, any) in &config.typed_extension_protocol_options {
        if config::type_name(any) != support::HTTP_PROTOCOL_OPTIONS {
            return Err(ConfigError::unsupported(format!(
                "typed_extension_protocol_options {name} ({})",
                any.type_url
            )));
        }
        let http: HttpProtocolOptions = config::typed_config(Some(any), name)?.unwrap_or_default();
        match http.upstream_protocol_options {
            Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
                use http_protocol_options::explicit_http_config::ProtocolConfig;
                options.protocol = match explicit.protocol_config {
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
                options.protocol = Protocol::Downstream;
            }
            Some(http_protocol_options::UpstreamProtocolOptions::AutoConfig(_)) => {
                return Err(ConfigError::unsupported(
                    "auto_config (ALPN protocol selection)",
                ));
            }
            None => {}
        }
        if let Some(common) = &http.common_http_protocol_options {
            if let Some(t) = &common.idle_timeout {
                options.idle_timeout = Some(config::duration(t)).filter(|d| !d.is_zero());
            }
            if let Some(max) = &common.max_requests_per_connection {
                options.max_requests_per_connection = Some(max.value);
            }
            if common.max_stream_duration.is_some() || common.max_headers_count.is_some() {
                return Err(ConfigError::unsupported(
                    "common_http_protocol_options max_stream_duration and max_headers_count on clusters",
                ));
            }
        }
    }
    Ok(options)
}

/// The assignment's overprovisioning factor (percent), 140 unless set.
fn overprovisioning_factor(assignment: &ClusterLoadAssignment) -> Result<u32, ConfigError> {
    let Some(policy) = &assignment.policy else {
        return Ok(lb::DEFAULT_OVERPROVISIONING);
    };
    if !policy.drop_overloads.is_empty() || policy.weighted_priority_health {
        return Err(ConfigError::unsupported(
            "load assignment policy drop_overloads and weighted_priority_health",
        ));
    }
    Ok(policy
        .overprovisioning_factor
        .map_or(lb::DEFAULT_OVERPROVISIONING, |f| f.value)
        .max(1))
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
    initial_flags: u8,
) -> Result<Vec<Arc<Host>>, ConfigError> {
    let mut hosts = Vec::new();
    for locality_endpoints in &assignment.endpoints {
        let locality = locality_endpoints
            .locality
            .as_ref()
            .map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone))
            .unwrap_or_default();
        let locality_weight = locality_endpoints
            .load_balancing_weight
            .as_ref()
            .map_or(0, |w| w.value);
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
                Endpoint {
                    address: SocketAddr::new(ip, port),
                    hostname,
                    weight,
                    health,
                    priority: locality_endpoints.priority,
                    locality: locality.clone(),
                    locality_weight,
                },
                initial_flags,
            ));
        }
    }
    Ok(hosts)
}

/// What configuration says about an endpoint.
#[derive(Debug)]
struct Endpoint {
    address: SocketAddr,
    hostname: Option<String>,
    weight: u32,
    health: Health,
    priority: u32,
    locality: String,
    locality_weight: u32,
}

/// The endpoint of `previous` at `address` when nothing about it changed (keeping its
/// connections, counters and health), otherwise a new one.
fn reuse_or_new(previous: &[Arc<Host>], endpoint: Endpoint, initial_flags: u8) -> Arc<Host> {
    previous
        .iter()
        .find(|h| {
            h.address == endpoint.address
                && h.hostname == endpoint.hostname
                && h.weight == endpoint.weight
                && h.health == endpoint.health
                && h.priority == endpoint.priority
                && h.locality == endpoint.locality
                && h.locality_weight == endpoint.locality_weight
        })
        .cloned()
        .unwrap_or_else(|| Arc::new(new_host(endpoint, initial_flags)))
}

fn new_host(endpoint: Endpoint, flags: u8) -> Host {
    Host {
        address: endpoint.address,
        hostname: endpoint.hostname,
        weight: endpoint.weight,
        health: endpoint.health,
        priority: endpoint.priority,
        locality: endpoint.locality,
        locality_weight: endpoint.locality_weight,
        stats: HostStats::default(),
        pools: Pools::default(),
        outlier: HostMonitor::default(),
        health_check: health_check::HostCheck::default(),
        flags: AtomicU8::new(flags),
    }
}

/// How long a request spent, for `x-envoy-upstream-service-time`.
pub fn elapsed_millis(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

#[cfg(test)]
mod tests;
