//! The HTTP connection manager (`envoy.filters.network.http_connection_manager`) and its router:
//! one connection's requests, routed and forwarded upstream, with Envoy's headers, local
//! replies, stats and access logs.

pub mod fault;
mod local_reply;
mod replay;
mod retry;
mod router;
mod stream_idle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager as HcmProto, http_connection_manager,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::access_log::AccessLogger;
use crate::body::{Body, BodyEnd, BodyObserver};
use crate::config::{self, ConfigError};
use crate::format::{FormatContext, ResponseFlags};
use crate::headers::HeaderMutations;
use crate::registry::Registry;
use crate::route::{
    self, Action, ClusterResolver, ClusterTarget, FilterOverride, HostRewrite, RequestView,
    RouteSlot, RouteTable,
};
use crate::stats::{Counter, Gauge, GaugeGuard, Stats, StatusCounters};
use crate::support;
use crate::upstream::{self, Cluster, Host};
use fault::{FaultFilter, FaultSettings, FaultStats};
pub use local_reply::{LocalReply, grpc_status_for};

/// Where a connection manager's routes come from.
#[derive(Debug)]
enum RouteSource {
    Static(Arc<RouteTable>),
    Rds(Arc<RouteSlot>),
}

/// What `server` header responses get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerHeader {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

/// Which codecs a connection may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// HTTP/1.1 or HTTP/2, detected.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// Counters of one connection manager (`http.<stat_prefix>.…`).
#[derive(Debug)]
pub struct HttpStats {
    /// `downstream_rq_total`.
    pub downstream_rq_total: Counter,
    /// `downstream_rq_http1_total`.
    pub downstream_rq_http1_total: Counter,
    /// `downstream_rq_http2_total`.
    pub downstream_rq_http2_total: Counter,
    /// `downstream_rq_active`.
    pub downstream_rq_active: Gauge,
    /// `downstream_rq_<N>xx`.
    pub downstream_rq: StatusCounters,
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_active`.
    pub downstream_cx_active: Gauge,
    /// `downstream_cx_http1_total`.
    pub downstream_cx_http1_total: Counter,
    /// `downstream_cx_http2_total`.
    pub downstream_cx_http2_total: Counter,
    /// `no_route`.
    pub no_route: Counter,
    /// `no_cluster`.
    pub no_cluster: Counter,
    /// `rq_direct_response`.
    pub rq_direct_response: Counter,
    /// `rq_redirect`.
    pub rq_redirect: Counter,
    /// `downstream_rq_timeout`.
    pub downstream_rq_timeout: Counter,
    /// `downstream_rq_idle_timeout`.
    pub downstream_rq_idle_timeout: Counter,
    /// `downstream_rq_max_duration_reached`.
    pub downstream_rq_max_duration_reached: Counter,
}

impl HttpStats {
    fn new(stats: &Arc<Stats>, prefix: &str) -> Self {
        let c = |stat: &str| stats.counter(&format!("http.{prefix}.{stat}"));
        HttpStats {
            downstream_rq_total: c("downstream_rq_total"),
            downstream_rq_http1_total: c("downstream_rq_http1_total"),
            downstream_rq_http2_total: c("downstream_rq_http2_total"),
            downstream_rq_active: stats.gauge(&format!("http.{prefix}.downstream_rq_active")),
            downstream_rq: StatusCounters::classes_only(
                stats,
                &format!("http.{prefix}.downstream_rq"),
            ),
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: stats.gauge(&format!("http.{prefix}.downstream_cx_active")),
            downstream_cx_http1_total: c("downstream_cx_http1_total"),
            downstream_cx_http2_total: c("downstream_cx_http2_total"),
            no_route: c("no_route"),
            no_cluster: c("no_cluster"),
            rq_direct_response: c("rq_direct_response"),
            rq_redirect: c("rq_redirect"),
            downstream_rq_timeout: c("downstream_rq_timeout"),
            downstream_rq_idle_timeout: c("downstream_rq_idle_timeout"),
            downstream_rq_max_duration_reached: c("downstream_rq_max_duration_reached"),
        }
    }
}

/// A compiled HTTP connection manager.
#[derive(Debug)]
pub struct HttpConnectionManager {
    /// Stats prefix.
    pub stat_prefix: String,
    /// Counters.
    pub stats: Arc<HttpStats>,
    routes: RouteSource,
    server_name: HeaderValue,
    server_header: ServerHeader,
    generate_request_id: bool,
    preserve_external_request_id: bool,
    always_set_request_id_in_response: bool,
    use_remote_address: bool,
    skip_xff_append: bool,
    /// Codecs accepted.
    pub codec: Codec,
    /// Limit on the request headers, bytes.
    pub max_request_headers_bytes: usize,
    /// Limit on the number of request headers.
    pub max_headers_count: Option<usize>,
    request_timeout: Option<Duration>,
    stream_idle_timeout: Option<Duration>,
    /// Idle timeout of downstream connections.
    pub idle_timeout: Option<Duration>,
    access_logs: Vec<Arc<AccessLogger>>,
    upgrades: Vec<(String, bool)>,
    suppress_envoy_headers: bool,
    registry: Arc<Registry>,
    /// Fault injection filters, in chain order.
    faults: Vec<FaultFilter>,
    /// `common_http_protocol_options.max_stream_duration`.
    max_stream_duration: Option<Duration>,
    /// `internal_address_config`: who may send `x-envoy-*` control headers.
    internal_addresses: Vec<ipnet::IpNet>,
}

impl HttpConnectionManager {
    /// Compiles a connection manager.
    pub fn compile(config: &HcmProto, registry: &Arc<Registry>) -> Result<Self, ConfigError> {
        use http_connection_manager::RouteSpecifier;
        let routes = match &config.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => {
                if rds.route_config_name.is_empty() {
                    return Err(ConfigError::invalid("rds without route_config_name"));
                }
                RouteSource::Rds(registry.route_slot(&rds.route_config_name))
            }
            Some(RouteSpecifier::RouteConfig(table)) => RouteSource::Static(Arc::new(
                RouteTable::compile(table.clone(), registry.as_ref(), true)
                    .map_err(|e| e.context("route_config"))?,
            )),
            Some(_) => return Err(ConfigError::unsupported("scoped routes")),
            None => {
                return Err(ConfigError::invalid(
                    "http_connection_manager needs rds or route_config",
                ));
            }
        };
        let mut suppress_envoy_headers = false;
        match config.http_filters.last() {
            Some(last) if last_is_router(last) => {}
            _ => {
                return Err(ConfigError::invalid(
                    "http_filters must end with the router filter (envoy.filters.http.router)",
                ));
            }
        }
        let mut faults = Vec::new();
        for filter in &config.http_filters {
            use bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
            match &filter.config_type {
                Some(ConfigType::TypedConfig(any)) if config::type_name(any) == support::ROUTER => {
                    let router: bosun_xds::pb::envoy::extensions::filters::http::router::v3::Router =
                        config::typed_config(Some(any), "router")?.unwrap_or_default();
                    suppress_envoy_headers = router.suppress_envoy_headers;
                }
                Some(ConfigType::TypedConfig(any))
                    if config::type_name(any) == support::HTTP_FAULT =>
                {
                    let fault: bosun_xds::pb::envoy::extensions::filters::http::fault::v3::HttpFault =
                        config::typed_config(Some(any), &filter.name)?.unwrap_or_default();
                    faults.push(FaultFilter {
                        name: filter.name.clone(),
                        settings: Arc::new(
                            FaultSettings::compile(&fault)
                                .map_err(|e| e.context(format!("HTTP filter {:?}", filter.name)))?,
                        ),
                        stats: FaultStats::new(&registry.stats, &config.stat_prefix),
                    });
                }
                Some(ConfigType::TypedConfig(any)) => {
                    return Err(ConfigError::unsupported(format!(
                        "HTTP filter {}",
                        any.type_url
                    )));
                }
                None if filter.name == "envoy.filters.http.router" => {}
                _ => {
                    return Err(ConfigError::unsupported(format!(
                        "HTTP filter {:?}",
                        filter.name
                    )));
                }
            }
        }
        let internal_addresses = match &config.internal_address_config {
            None => Vec::new(),
            Some(internal) => internal
                .cidr_ranges
                .iter()
                .map(|range| {
                    let ip: std::net::IpAddr = range.address_prefix.parse().map_err(|_| {
                        ConfigError::invalid(format!(
                            "internal_address_config: invalid address {:?}",
                            range.address_prefix
                        ))
                    })?;
                    let len = range
                        .prefix_len
                        .map_or(if ip.is_ipv4() { 32 } else { 128 }, |l| l.value);
                    ipnet::IpNet::new(ip, u8::try_from(len).unwrap_or(u8::MAX)).map_err(|_| {
                        ConfigError::invalid(format!(
                            "internal_address_config: invalid prefix length {len}"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let codec = match http_connection_manager::CodecType::try_from(config.codec_type)
            .unwrap_or(http_connection_manager::CodecType::Auto)
        {
            http_connection_manager::CodecType::Auto => Codec::Auto,
            http_connection_manager::CodecType::Http1 => Codec::Http1,
            http_connection_manager::CodecType::Http2 => Codec::Http2,
            http_connection_manager::CodecType::Http3 => {
                return Err(ConfigError::unsupported("HTTP/3"));
            }
        };
        let server_header = match http_connection_manager::ServerHeaderTransformation::try_from(
            config.server_header_transformation,
        )
        .unwrap_or(http_connection_manager::ServerHeaderTransformation::Overwrite)
        {
            http_connection_manager::ServerHeaderTransformation::Overwrite => {
                ServerHeader::Overwrite
            }
            http_connection_manager::ServerHeaderTransformation::AppendIfAbsent => {
                ServerHeader::AppendIfAbsent
            }
            http_connection_manager::ServerHeaderTransformation::PassThrough => {
                ServerHeader::PassThrough
            }
        };
        let server_name = if config.server_name.is_empty() {
            "envoy"
        } else {
            config.server_name.as_str()
        };
        let common = config.common_http_protocol_options.unwrap_or_default();
        if common.max_requests_per_connection.is_some() {
            return Err(ConfigError::unsupported(
                "common_http_protocol_options.max_requests_per_connection on downstream connections",
            ));
        }
        let stats = Arc::new(HttpStats::new(&registry.stats, &config.stat_prefix));
        Ok(HttpConnectionManager {
            stat_prefix: config.stat_prefix.clone(),
            stats,
            routes,
            server_name: HeaderValue::from_str(server_name).map_err(|_| {
                ConfigError::invalid(format!("invalid server_name {server_name:?}"))
            })?,
            server_header,
            generate_request_id: config.generate_request_id.as_ref().is_none_or(|b| b.value),
            preserve_external_request_id: config.preserve_external_request_id,
            always_set_request_id_in_response: config.always_set_request_id_in_response,
            use_remote_address: config.use_remote_address.as_ref().is_some_and(|b| b.value),
            skip_xff_append: config.skip_xff_append,
            codec,
            max_request_headers_bytes: config
                .max_request_headers_kb
                .as_ref()
                .map_or(60 * 1024, |kb| kb.value as usize * 1024),
            max_headers_count: common.max_headers_count.as_ref().map(|n| n.value as usize),
            request_timeout: config::optional_duration(config.request_timeout.as_ref()),
            stream_idle_timeout: match &config.stream_idle_timeout {
                None => Some(Duration::from_secs(300)),
                Some(d) => config::optional_duration(Some(d)),
            },
            idle_timeout: match &common.idle_timeout {
                None => Some(Duration::from_secs(3600)),
                Some(d) => config::optional_duration(Some(d)),
            },
            access_logs: AccessLogger::compile_all(&config.access_log)?,
            upgrades: config
                .upgrade_configs
                .iter()
                .map(|u| {
                    (
                        u.upgrade_type.to_ascii_lowercase(),
                        u.enabled.as_ref().is_none_or(|b| b.value),
                    )
                })
                .collect(),
            suppress_envoy_headers,
            registry: registry.clone(),
            faults,
            max_stream_duration: config::optional_duration(common.max_stream_duration.as_ref()),
            internal_addresses,
        })
    }

    fn route_table(&self) -> Option<Arc<RouteTable>> {
        match &self.routes {
            RouteSource::Static(table) => Some(table.clone()),
            RouteSource::Rds(slot) => slot.load(),
        }
    }

    /// The RDS route configuration this waits for, if any.
    pub fn rds_slot(&self) -> Option<&Arc<RouteSlot>> {
        match &self.routes {
            RouteSource::Rds(slot) => Some(slot),
            RouteSource::Static(_) => None,
        }
    }
}

fn last_is_router(
    filter: &bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter,
) -> bool {
    use bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
    match &filter.config_type {
        Some(ConfigType::TypedConfig(any)) => config::type_name(any) == support::ROUTER,
        None => filter.name == "envoy.filters.http.router",
        Some(_) => false,
    }
}

/// What a connection knows about itself.
#[derive(Debug)]
pub struct Connection {
    /// The connection manager.
    pub hcm: Arc<HttpConnectionManager>,
    /// The peer.
    pub remote: SocketAddr,
    /// The local address (the original destination when redirected).
    pub local: SocketAddr,
    /// The SNI, when TLS.
    pub server_name: Option<String>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The connection's id.
    pub id: u64,
}

/// Serves HTTP on `io` until it closes or `drain` fires (then finishes in-flight requests).
pub async fn serve<I>(
    io: I,
    connection: Arc<Connection>,
    h2_hint: bool,
    mut drain: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hcm = connection.hcm.clone();
    hcm.stats.downstream_cx_total.inc();
    let _active = GaugeGuard::new(&hcm.stats.downstream_cx_active);
    let service = hyper::service::service_fn(move |req| handle(req, connection.clone()));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        // Envoy's `request_headers_timeout` is off by default; a timer per request costs.
        .header_read_timeout(None)
        .max_buf_size(hcm.max_request_headers_bytes.max(8192));
    if let Some(max) = hcm.max_headers_count {
        builder.http1().max_headers(max);
    }
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(u32::try_from(hcm.max_request_headers_bytes).unwrap_or(u32::MAX));
    let builder = match hcm.codec {
        Codec::Http1 => builder.http1_only(),
        Codec::Http2 => builder.http2_only(),
        Codec::Auto => builder,
    };
    let h2 = hcm.codec == Codec::Http2 || (hcm.codec == Codec::Auto && h2_hint);
    if h2 {
        hcm.stats.downstream_cx_http2_total.inc();
    } else {
        hcm.stats.downstream_cx_http1_total.inc();
    }
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let idle = hcm.idle_timeout;
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "downstream connection ended with an error");
            }
            return;
        }
        _ = crate::server::signalled(&mut drain) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = match idle {
        Some(limit) => tokio::time::timeout(limit, connection)
            .await
            .unwrap_or(Ok(())),
        None => connection.await,
    };
}

/// Per-request facts that end up in stats and access logs.
#[derive(Debug, Default)]
struct StreamInfo {
    flags: ResponseFlags,
    details: &'static str,
    /// What follows `details` in braces (the reset reason of an upstream reset, as Envoy
    /// writes it: spaces as `_`).
    details_reason: Option<String>,
    route_name: Option<String>,
    upstream_host: Option<SocketAddr>,
    upstream_cluster: Option<Arc<str>>,
    transport_failure: Option<String>,
    response_started: Option<Instant>,
    started: Option<Instant>,
    request_complete: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Set when a timeout cut the response body (flag UT rather than UC).
    body_timed_out: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The stream idle timeout's clock (the route may change its limit).
    idle: Option<Arc<stream_idle::IdleClock>>,
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
];

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_ENVOY_EXPECTED_TIMEOUT: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
static X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");
static X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
static X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");

/// Control headers Envoy strips from requests that are not internal (`cleanInternalHeaders`).
const INTERNAL_ONLY: [&str; 14] = [
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Also stripped at the edge (`use_remote_address` and external).
const EDGE_ONLY: [&str; 3] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];

/// The address in `x-forwarded-for` when it holds exactly one (Envoy's internal-request test
/// without `use_remote_address`).
fn single_forwarded_address(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let mut values = headers.get_all(&X_FORWARDED_FOR).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() || value.contains(',') {
        return None;
    }
    value.trim().parse().ok()
}

fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none or only `Connection: keep-alive|close`: one pass over the few
    // names a message has is cheaper than a lookup per hop-by-hop name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Headers named by `Connection` are hop-by-hop too. Its usual tokens name a header removed
    // below anyway (`keep-alive`) or, almost always, none (`close`).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| {
            let names_no_other_header = name.eq_ignore_ascii_case("keep-alive")
                || (name.eq_ignore_ascii_case("close") && !headers.contains_key("close"));
            !names_no_other_header
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in &HOP_BY_HOP {
        if keep_upgrade && (*name == header::UPGRADE || *name == header::CONNECTION) {
            continue;
        }
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// RFC 1918, loopback and unique-local addresses: what Envoy calls internal.
fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Watches the request body: counts its bytes, notes that it ended, and counts its frames as
/// activity on the stream.
#[derive(Debug)]
struct CountBytes {
    bytes: Arc<AtomicU64>,
    complete: Arc<std::sync::atomic::AtomicBool>,
    idle: Arc<stream_idle::IdleClock>,
}

impl BodyObserver for CountBytes {
    fn on_data(&mut self, len: usize) {
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.idle.touch();
    }

    fn on_end(&mut self, end: BodyEnd) {
        if end == BodyEnd::Complete {
            self.complete.store(true, Ordering::Relaxed);
        }
    }
}

/// Envoy's `maybeRequestTimeoutCode`: 504 once the whole request was received, else 408.
fn timeout_status(request_complete: &std::sync::atomic::AtomicBool) -> StatusCode {
    if request_complete.load(Ordering::Relaxed) {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::REQUEST_TIMEOUT
    }
}

/// Writes the access log entries (and closes out stats) when the response body ends.
struct Finish {
    connection: Arc<Connection>,
    request: Option<RequestRecord>,
    info: StreamInfo,
    status: u16,
    response_headers: Option<HeaderMap>,
    trailers: Option<HeaderMap>,
    bytes_received: Arc<AtomicU64>,
    bytes_sent: u64,
    started: Instant,
    start_time: SystemTime,
    host: Option<Arc<Host>>,
    _active: GaugeGuard,
}

#[derive(Debug, Default)]
struct RequestRecord {
    method: String,
    path: String,
    authority: String,
    scheme: &'static str,
    version: &'static str,
    headers: Option<HeaderMap>,
}

impl BodyObserver for Finish {
    fn on_data(&mut self, len: usize) {
        self.bytes_sent += len as u64;
    }

    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if !self.connection.hcm.access_logs.is_empty() {
            self.trailers = Some(trailers.clone());
        }
    }

    fn on_end(&mut self, end: BodyEnd) {
        if end != BodyEnd::Complete {
            if let Some(host) = &self.host {
                host.stats.rq_error.inc();
            }
            let timed_out = self
                .info
                .body_timed_out
                .as_ref()
                .is_some_and(|t| t.load(Ordering::Relaxed));
            let idled = self.info.idle.as_ref().is_some_and(|c| c.expired());
            if end == BodyEnd::Error && idled {
                self.connection.hcm.stats.downstream_rq_idle_timeout.inc();
                self.info.flags.insert(ResponseFlags::STREAM_IDLE_TIMEOUT);
            } else if end == BodyEnd::Error && timed_out {
                self.info
                    .flags
                    .insert(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
            } else if end == BodyEnd::Error {
                self.info
                    .flags
                    .insert(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
            } else {
                self.info
                    .flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            }
        }
        let hcm = &self.connection.hcm;
        let Some(request) = &self.request else {
            return;
        };
        let duration = self.started.elapsed();
        let details = match &self.info.details_reason {
            Some(reason) => std::borrow::Cow::Owned(format!("{}{{{reason}}}", self.info.details)),
            None => std::borrow::Cow::Borrowed(self.info.details),
        };
        let ctx = FormatContext {
            start_time: Some(self.start_time),
            duration: Some(duration),
            request_duration: None,
            response_duration: self
                .info
                .response_started
                .map(|t| t.duration_since(self.started)),
            request_headers: request.headers.as_ref(),
            method: Some(&request.method),
            path: Some(&request.path),
            authority: Some(&request.authority),
            scheme: Some(request.scheme),
            protocol: Some(request.version),
            response_headers: self.response_headers.as_ref(),
            response_trailers: self.trailers.as_ref(),
            response_code: Some(self.status),
            response_code_details: Some(&details),
            response_flags: self.info.flags,
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent,
            upstream_host: self.info.upstream_host,
            upstream_cluster: self.info.upstream_cluster.as_deref(),
            upstream_local_address: None,
            upstream_transport_failure_reason: self.info.transport_failure.as_deref(),
            downstream_remote_address: Some(self.connection.remote),
            downstream_local_address: Some(self.connection.local),
            requested_server_name: self.connection.server_name.as_deref(),
            route_name: self.info.route_name.as_deref(),
            connection_id: Some(self.connection.id),
            connection_termination_details: None,
        };
        for logger in &hcm.access_logs {
            logger.log(&ctx);
        }
    }
}

/// Handles one request.
async fn handle(
    request: Request<Incoming>,
    connection: Arc<Connection>,
) -> Result<Response<Body>, Infallible> {
    let hcm = connection.hcm.clone();
    let started = Instant::now();
    let start_time = SystemTime::now();
    hcm.stats.downstream_rq_total.inc();
    match request.version() {
        Version::HTTP_2 => hcm.stats.downstream_rq_http2_total.inc(),
        _ => hcm.stats.downstream_rq_http1_total.inc(),
    }
    let active = GaugeGuard::new(&hcm.stats.downstream_rq_active);
    let (mut parts, body) = request.into_parts();
    let grpc = is_grpc(&parts.headers);
    let scheme: &'static str = if connection.tls { "https" } else { "http" };

    // Request id, forwarded-* headers: before routing, as Envoy does.
    // Requests from outside the mesh get a fresh id unless told to keep theirs (Envoy's
    // edge behaviour); internal ones keep theirs.
    let external = hcm.use_remote_address && !is_internal(connection.remote.ip());
    if external && !hcm.preserve_external_request_id {
        parts.headers.remove(&X_REQUEST_ID);
    }
    if hcm.generate_request_id && !parts.headers.contains_key(&X_REQUEST_ID) {
        let mut buffer = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
        if let Ok(id) = HeaderValue::from_str(id) {
            parts.headers.insert(X_REQUEST_ID.clone(), id);
        }
    }
    if hcm.use_remote_address {
        if !hcm.skip_xff_append {
            let peer = connection.remote.ip().to_string();
            let value = match parts
                .headers
                .get(&X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
            {
                Some(existing) => format!("{existing},{peer}"),
                None => peer,
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts.headers.insert(X_FORWARDED_FOR.clone(), value);
            }
        }
        parts
            .headers
            .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    } else if !parts.headers.contains_key(&X_FORWARDED_PROTO) {
        parts
            .headers
            .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    // Only requests from addresses configured as internal may steer Envoy with `x-envoy-*`
    // headers (retries, timeouts); Envoy 1.40 trusts no address by default.
    let internal = !hcm.internal_addresses.is_empty() && {
        let address = if hcm.use_remote_address {
            Some(connection.remote.ip())
        } else {
            single_forwarded_address(&parts.headers)
        };
        address.is_some_and(|ip| hcm.internal_addresses.iter().any(|net| net.contains(&ip)))
    };
    if internal {
        parts
            .headers
            .insert(X_ENVOY_INTERNAL.clone(), HeaderValue::from_static("true"));
    } else if parts
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("x-envoy-"))
    {
        for name in INTERNAL_ONLY {
            parts.headers.remove(name);
        }
        if hcm.use_remote_address {
            for name in EDGE_ONLY {
                parts.headers.remove(name);
            }
        }
    }
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    // What the access log needs of the request, kept only when something logs.
    let record = (!hcm.access_logs.is_empty()).then(|| RequestRecord {
        method: parts.method.as_str().to_owned(),
        path: path_and_query.clone(),
        authority: authority.clone(),
        scheme,
        version: protocol_name(parts.version),
        headers: Some(parts.headers.clone()),
    });
    let request_id = parts.headers.get(&X_REQUEST_ID).cloned();
    let bytes_received = Arc::new(AtomicU64::new(0));
    let request_complete = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = stream_idle::IdleClock::new(hcm.stream_idle_timeout);
    let body = Body::incoming(body).observe(CountBytes {
        bytes: bytes_received.clone(),
        complete: request_complete.clone(),
        idle: idle.clone(),
    });
    if http_body::Body::is_end_stream(&body) {
        request_complete.store(true, Ordering::Relaxed);
    }
    let mut info = StreamInfo {
        started: Some(started),
        request_complete: Some(request_complete.clone()),
        idle: Some(idle.clone()),
        ..StreamInfo::default()
    };
    let mut chosen_host = None;

    let routed = route_request(
        &connection,
        &mut parts,
        body,
        &authority,
        &path_and_query,
        scheme,
        grpc,
        &mut info,
        &mut chosen_host,
    );
    // `request_timeout` bounds the time to receive the whole request (Envoy disarms it once
    // the request is in); the stream idle timeout ends a stream without activity, here while
    // no response has started and in the response body after.
    let request_timer = {
        let request_complete = request_complete.clone();
        let limit = hcm.request_timeout;
        async move {
            match limit {
                Some(limit) => {
                    tokio::time::sleep(limit).await;
                    if request_complete.load(Ordering::Relaxed) {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    let idle_timer = idle.idle();
    enum Ending {
        Routed(Response<Body>),
        RequestTimeout,
        IdleTimeout,
    }
    let ending = {
        tokio::pin!(routed);
        tokio::select! {
            response = &mut routed => Ending::Routed(response),
            () = request_timer => Ending::RequestTimeout,
            () = idle_timer => Ending::IdleTimeout,
        }
    };
    let mut response = match ending {
        Ending::Routed(response) => response,
        Ending::RequestTimeout => {
            hcm.stats.downstream_rq_timeout.inc();
            info.details = "request_overall_timeout";
            LocalReply::new(StatusCode::REQUEST_TIMEOUT, "request timeout").into_response(grpc)
        }
        Ending::IdleTimeout => {
            hcm.stats.downstream_rq_idle_timeout.inc();
            info.flags.insert(ResponseFlags::STREAM_IDLE_TIMEOUT);
            info.details = "stream_idle_timeout";
            LocalReply::new(timeout_status(&request_complete), "stream timeout").into_response(grpc)
        }
    };

    match hcm.server_header {
        ServerHeader::Overwrite => {
            response
                .headers_mut()
                .insert(header::SERVER, hcm.server_name.clone());
        }
        ServerHeader::AppendIfAbsent if !response.headers().contains_key(header::SERVER) => {
            response
                .headers_mut()
                .insert(header::SERVER, hcm.server_name.clone());
        }
        ServerHeader::AppendIfAbsent | ServerHeader::PassThrough => {}
    }
    if hcm.always_set_request_id_in_response {
        if let Some(id) = request_id {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
    }
    let status = response.status().as_u16();
    hcm.stats.downstream_rq.record(status);
    info.response_started.get_or_insert_with(Instant::now);
    let (response_parts, mut response_body) = response.into_parts();
    if !http_body::Body::is_end_stream(&response_body) {
        response_body = Body::boxed(stream_idle::IdleBody::new(response_body, idle));
    }
    let finish = Finish {
        connection: connection.clone(),
        request: record,
        status,
        response_headers: (!hcm.access_logs.is_empty()).then(|| response_parts.headers.clone()),
        trailers: None,
        bytes_received,
        bytes_sent: 0,
        started,
        start_time,
        host: chosen_host,
        info,
        _active: active,
    };
    Ok(Response::from_parts(
        response_parts,
        response_body.observe(finish),
    ))
}

/// What routing learnt that the response needs (cookies to set).
#[derive(Debug, Default)]
struct RouteOutput {
    set_cookies: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn route_request(
    connection: &Arc<Connection>,
    parts: &mut http::request::Parts,
    body: Body,
    authority: &str,
    path_and_query: &str,
    scheme: &'static str,
    grpc: bool,
    info: &mut StreamInfo,
    chosen_host: &mut Option<Arc<Host>>,
) -> Response<Body> {
    let hcm = &connection.hcm;
    let table = hcm.route_table();
    let view = RequestView {
        authority,
        path_and_query,
        method: parts.method.as_str(),
        scheme,
        headers: &parts.headers,
        random: fastrand::u64(..),
    };
    let matched = table.as_ref().and_then(|t| t.route(&view));

    // The cluster of a forwarding route is chosen now (weighted clusters are picked once), so
    // that filters before the router see it, as in Envoy.
    let mut target: Option<PickedCluster<'_>> = None;
    if let Some((_, route)) = matched {
        if let Action::Forward(forward) = &route.action {
            target = Some(pick_cluster(hcm, forward, &parts.headers));
            if let (Some(limit), Some(idle)) = (forward.idle_timeout, &info.idle) {
                idle.set_limit(limit);
            }
        }
    }

    // HTTP filters before the router: fault injection.
    for filter in &hcm.faults {
        let overridden = matched.and_then(|(vhost, route)| {
            target
                .as_ref()
                .and_then(|(_, w, _)| w.and_then(|w| w.per_filter.get(&filter.name)))
                .or_else(|| route.per_filter.get(&filter.name))
                .or_else(|| vhost.per_filter.get(&filter.name))
                .or_else(|| table.as_ref().and_then(|t| t.per_filter.get(&filter.name)))
        });
        let settings = match overridden {
            Some(FilterOverride::Disabled) => continue,
            Some(FilterOverride::Fault(settings)) => settings,
            None => &filter.settings,
        };
        let cluster_name = target.as_ref().map(|(_, _, name)| name.as_ref());
        let decision = filter.decide(settings, &parts.headers, cluster_name);
        if let Some(delay) = decision.delay {
            info.flags.insert(ResponseFlags::DELAY_INJECTED);
            tokio::time::sleep(delay).await;
        }
        if let Some((status, grpc_status, text)) = decision.abort {
            info.flags.insert(ResponseFlags::FAULT_INJECTED);
            info.details = "fault_filter_abort";
            let mut reply = LocalReply::new(status, text);
            if let Some(code) = grpc_status {
                reply = reply.with_grpc_status(code);
            }
            return reply.into_response(grpc);
        }
    }

    let (Some(table), Some((vhost, route))) = (table.as_ref(), matched) else {
        hcm.stats.no_route.inc();
        info.flags.insert(ResponseFlags::NO_ROUTE_FOUND);
        info.details = "route_not_found";
        return LocalReply::new(StatusCode::NOT_FOUND, "").into_response(grpc);
    };
    info.route_name = Some(route.name.clone()).filter(|n| !n.is_empty());
    let method = parts.method.clone();
    let protocol = protocol_name(parts.version);
    let context = |request_headers| {
        request_context(
            connection,
            method.as_str(),
            path_and_query,
            authority,
            scheme,
            protocol,
            request_headers,
        )
    };
    let forward = match &route.action {
        Action::Direct { status, body } => {
            hcm.stats.rq_direct_response.inc();
            info.details = "direct_response";
            let mut response = Response::new(Body::full(body.clone()));
            *response.status_mut() = *status;
            if !body.is_empty() {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            apply_response_mutations(
                table,
                vhost,
                route,
                None,
                response.headers_mut(),
                &context(Some(&parts.headers)),
            );
            return response;
        }
        Action::Redirect(redirect) => {
            hcm.stats.rq_redirect.inc();
            info.details = "direct_response";
            let location = redirect.location(&view, route);
            let mut response = Response::new(Body::empty());
            *response.status_mut() = redirect.status;
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            apply_response_mutations(
                table,
                vhost,
                route,
                None,
                response.headers_mut(),
                &context(Some(&parts.headers)),
            );
            return response;
        }
        Action::Forward(forward) => forward,
    };

    // Upgrades (WebSocket): allowed by the route, else by the connection manager.
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if let Some(kind) = &upgrade {
        let allowed = forward
            .upgrades
            .iter()
            .find(|(t, _)| t == kind)
            .map(|(_, enabled)| *enabled)
            .or_else(|| {
                hcm.upgrades
                    .iter()
                    .find(|(t, _)| t == kind)
                    .map(|(_, e)| *e)
            })
            .unwrap_or(false);
        if !allowed {
            info.details = "upgrade_failed";
            return LocalReply::new(StatusCode::FORBIDDEN, "").into_response(grpc);
        }
    }

    let Some((cluster, weighted, _)) = target else {
        return LocalReply::new(StatusCode::INTERNAL_SERVER_ERROR, "").into_response(grpc);
    };
    let Some(cluster) = cluster else {
        hcm.stats.no_cluster.inc();
        info.flags.insert(ResponseFlags::NO_CLUSTER_FOUND);
        info.details = "cluster_not_found";
        return LocalReply::new(forward.cluster_not_found, "").into_response(grpc);
    };
    info.upstream_cluster = Some(cluster.name.clone());

    // The upstream request, as far as it does not depend on the endpoint.
    let h2 = cluster.uses_h2(parts.version);
    // Header templates (`%REQ(…)%`) read the request as it came in; copy it only if needed.
    let templated = mutation_levels(
        table,
        vhost,
        route,
        weighted.map(|w| &w.request_headers),
        true,
    )
    .into_iter()
    .chain(mutation_levels(
        table,
        vhost,
        route,
        weighted.map(|w| &w.response_headers),
        false,
    ))
    .flatten()
    .any(HeaderMutations::is_templated);
    let original_headers = templated.then(|| parts.headers.clone());
    let ctx = context(original_headers.as_ref());
    let mut headers = std::mem::take(&mut parts.headers);
    remove_hop_by_hop(&mut headers, upgrade.is_some());
    let mut path = path_and_query.to_owned();
    if let Some(rewritten) = route::rewrite_path(forward, route, path_and_query) {
        if let Ok(original) = HeaderValue::from_str(path_and_query) {
            headers.insert(X_ENVOY_ORIGINAL_PATH.clone(), original);
        }
        path = rewritten;
    }
    let timeouts = router::Timeouts::compute(forward, &mut headers, grpc);
    if let Some(expected) = timeouts.expected() {
        if !hcm.suppress_envoy_headers {
            headers.insert(
                X_ENVOY_EXPECTED_TIMEOUT.clone(),
                HeaderValue::from(expected.as_millis() as u64),
            );
        }
    }
    apply_request_mutations(
        table,
        vhost,
        route,
        weighted.map(|w| &w.request_headers),
        &mut headers,
        &ctx,
    );
    let mut output = RouteOutput::default();
    let hash = if forward.hash_policy.is_empty() {
        None
    } else {
        let input = route::policy::HashInput {
            headers: &headers,
            query: path_and_query.split_once('?').map(|(_, q)| q),
            remote: connection.remote,
            local: connection.local,
        };
        route::policy::request_hash(&forward.hash_policy, &input, &mut output.set_cookies)
    };
    let downstream_upgrade = if upgrade.is_some() {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let plan = router::Plan {
        hcm,
        connection,
        cluster,
        forward,
        vhost,
        method: method.clone(),
        authority,
        path,
        h2,
        headers,
        grpc,
        hash,
        timeouts,
        upgrade: upgrade.is_some(),
    };
    let stream_deadline = router::stream_deadline(hcm, forward, &plan.headers, info.started);
    let forwarding = router::forward(plan, body, info, chosen_host);
    let mut response = match stream_deadline {
        None => forwarding.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, forwarding).await {
            Ok(response) => response,
            Err(_) => {
                hcm.stats.downstream_rq_max_duration_reached.inc();
                info.details = "max_duration_timeout";
                let status = info
                    .request_complete
                    .as_deref()
                    .map_or(StatusCode::REQUEST_TIMEOUT, timeout_status);
                return LocalReply::new(status, "downstream duration timeout")
                    .with_grpc_status(4)
                    .into_response(grpc);
            }
        },
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream) = downstream_upgrade {
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(downstream, upstream));
        }
    }
    if info.details == "via_upstream" {
        for cookie in output.set_cookies {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        apply_response_mutations(
            table,
            vhost,
            route,
            weighted.map(|w| &w.response_headers),
            response.headers_mut(),
            &ctx,
        );
    }
    response
}

/// The cluster a forwarding route sends to (if it exists), the weighted entry picked, and the
/// cluster's name.
type PickedCluster<'a> = (
    Option<Arc<Cluster>>,
    Option<&'a route::WeightedCluster>,
    std::borrow::Cow<'a, str>,
);

/// The cluster a forwarding route sends to (the weighted one picked), its weighted entry, and
/// its name.
fn pick_cluster<'a>(
    hcm: &HttpConnectionManager,
    forward: &'a route::Forward,
    headers: &HeaderMap,
) -> PickedCluster<'a> {
    match &forward.target {
        ClusterTarget::Single(slot) => (slot.load(), None, slot.name().into()),
        ClusterTarget::Weighted { clusters, total } => {
            let mut pick = fastrand::u64(..*total);
            let chosen = clusters
                .iter()
                .find(|c| {
                    if pick < c.weight {
                        true
                    } else {
                        pick -= c.weight;
                        false
                    }
                })
                .or(clusters.last());
            (
                chosen.and_then(|c| c.slot.load()),
                chosen,
                chosen.map(|c| c.slot.name()).unwrap_or_default().into(),
            )
        }
        ClusterTarget::Header(name) => {
            let cluster_name = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (
                hcm.registry.find_cluster(cluster_name),
                None,
                cluster_name.to_owned().into(),
            )
        }
    }
}

/// What header templates of a request can read.
fn request_context<'a>(
    connection: &'a Connection,
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    scheme: &'static str,
    protocol: &'static str,
    request_headers: Option<&'a HeaderMap>,
) -> FormatContext<'a> {
    FormatContext {
        request_headers,
        method: Some(method),
        path: Some(path),
        authority: Some(authority),
        scheme: Some(scheme),
        protocol: Some(protocol),
        downstream_remote_address: Some(connection.remote),
        downstream_local_address: Some(connection.local),
        requested_server_name: connection.server_name.as_deref(),
        connection_id: Some(connection.id),
        ..Default::default()
    }
}

/// Copies bytes both ways between an upgraded downstream and upstream (WebSocket).
async fn tunnel(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(downstream), Ok(upstream)) = (downstream.await, upstream.await) else {
        return;
    };
    let mut downstream = TokioIo::new(downstream);
    let mut upstream = TokioIo::new(upstream);
    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
}

/// Envoy applies header changes from the most specific level first (weighted cluster, route,
/// virtual host, route configuration), so the least specific wins for overwrites; unless
/// `most_specific_header_mutations_wins`.
fn mutation_levels<'a>(
    table: &'a RouteTable,
    vhost: &'a route::VirtualHost,
    route: &'a route::Route,
    weighted: Option<&'a HeaderMutations>,
    request: bool,
) -> [Option<&'a HeaderMutations>; 4] {
    let pick =
        |req: &'a HeaderMutations, resp: &'a HeaderMutations| if request { req } else { resp };
    let mut levels = [
        weighted,
        Some(pick(&route.request_headers, &route.response_headers)),
        Some(pick(&vhost.request_headers, &vhost.response_headers)),
        Some(pick(&table.request_headers, &table.response_headers)),
    ];
    if table.most_specific_wins {
        levels.reverse();
    }
    levels
}

fn apply_request_mutations(
    table: &RouteTable,
    vhost: &route::VirtualHost,
    route: &route::Route,
    weighted: Option<&HeaderMutations>,
    headers: &mut HeaderMap,
    ctx: &FormatContext<'_>,
) {
    for level in mutation_levels(table, vhost, route, weighted, true)
        .into_iter()
        .flatten()
    {
        if !level.is_empty() {
            level.apply(headers, ctx);
        }
    }
}

fn apply_response_mutations(
    table: &RouteTable,
    vhost: &route::VirtualHost,
    route: &route::Route,
    weighted: Option<&HeaderMutations>,
    headers: &mut HeaderMap,
    ctx: &FormatContext<'_>,
) {
    for level in mutation_levels(table, vhost, route, weighted, false)
        .into_iter()
        .flatten()
    {
        if !level.is_empty() {
            level.apply(headers, ctx);
        }
    }
}

/// Looks up clusters for `cluster_header` routes in tests.
impl ClusterResolver for HttpConnectionManager {
    fn cluster_slot(&self, name: &str) -> Arc<crate::upstream::ClusterSlot> {
        self.registry.cluster_slot(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "1"),
        ]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(names(&map), ["x-kept"]);
    }

    #[test]
    fn connection_close_removes_a_header_named_close_only_if_there_is_one() {
        let mut map = headers(&[("connection", "close"), ("close", "1"), ("x-kept", "1")]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(names(&map), ["x-kept"]);
        let mut map = headers(&[("connection", "Close"), ("x-kept", "1")]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(names(&map), ["x-kept"]);
    }

    #[test]
    fn te_keeps_only_trailers_and_upgrades_keep_their_headers() {
        let mut map = headers(&[("te", "gzip, trailers")]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(
            map.get("te").map(HeaderValue::as_bytes),
            Some(&b"trailers"[..])
        );
        let mut map = headers(&[
            ("connection", "upgrade, x-private"),
            ("upgrade", "websocket"),
            ("x-private", "1"),
        ]);
        remove_hop_by_hop(&mut map, true);
        assert_eq!(names(&map), ["connection", "upgrade"]);
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut map = headers(&[("host", "a"), ("x-request-id", "1"), ("accept", "*/*")]);
        let before = map.clone();
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map, before);
    }
}
