//! The TCP proxy (`envoy.filters.network.tcp_proxy`): a connection relayed to an endpoint of a
//! cluster, with an idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bosun_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy as TcpProxyProto, tcp_proxy,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::access_log::AccessLogger;
use crate::config::{self, ConfigError};
use crate::format::{FormatContext, ResponseFlags};
use crate::registry::Registry;
use crate::route::ClusterResolver;
use crate::stats::{Counter, Gauge, GaugeGuard};
use crate::upstream::{ClusterSlot, connect};

/// Counters of one TCP proxy (`tcp.<stat_prefix>.…`).
#[derive(Debug)]
pub struct TcpStats {
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_no_route`.
    pub downstream_cx_no_route: Counter,
    /// `downstream_cx_rx_bytes_total`.
    pub downstream_cx_rx_bytes_total: Counter,
    /// `downstream_cx_tx_bytes_total`.
    pub downstream_cx_tx_bytes_total: Counter,
    /// `idle_timeout`.
    pub idle_timeout: Counter,
    /// `upstream_flush_active`.
    pub active: Gauge,
}

#[derive(Debug)]
enum Target {
    Single(Arc<ClusterSlot>),
    Weighted(Vec<(Arc<ClusterSlot>, u64)>, u64),
}

/// A compiled TCP proxy.
#[derive(Debug)]
pub struct TcpProxy {
    /// Stats prefix.
    pub stat_prefix: String,
    target: Target,
    idle_timeout: Option<Duration>,
    access_logs: Vec<Arc<AccessLogger>>,
    /// Counters.
    pub stats: Arc<TcpStats>,
}

impl TcpProxy {
    /// Compiles a TCP proxy.
    pub fn compile(config: &TcpProxyProto, registry: &Arc<Registry>) -> Result<Self, ConfigError> {
        let target = match &config.cluster_specifier {
            Some(tcp_proxy::ClusterSpecifier::Cluster(name)) => {
                Target::Single(registry.cluster_slot(name))
            }
            Some(tcp_proxy::ClusterSpecifier::WeightedClusters(weighted)) => {
                let clusters: Vec<(Arc<ClusterSlot>, u64)> = weighted
                    .clusters
                    .iter()
                    .map(|c| (registry.cluster_slot(&c.name), u64::from(c.weight)))
                    .collect();
                let total = clusters.iter().map(|(_, w)| w).sum();
                if total == 0 {
                    return Err(ConfigError::invalid(
                        "tcp_proxy weighted_clusters: sum of weights must be greater than 0",
                    ));
                }
                Target::Weighted(clusters, total)
            }
            None => {
                return Err(ConfigError::invalid(
                    "tcp_proxy needs cluster or weighted_clusters",
                ));
            }
        };
        let prefix = &config.stat_prefix;
        let stats = &registry.stats;
        let c = |stat: &str| stats.counter(&format!("tcp.{prefix}.{stat}"));
        Ok(TcpProxy {
            stat_prefix: prefix.clone(),
            target,
            idle_timeout: match &config.idle_timeout {
                None => Some(Duration::from_secs(3600)),
                Some(d) => config::optional_duration(Some(d)),
            },
            access_logs: AccessLogger::compile_all(&config.access_log)?,
            stats: Arc::new(TcpStats {
                downstream_cx_total: c("downstream_cx_total"),
                downstream_cx_no_route: c("downstream_cx_no_route"),
                downstream_cx_rx_bytes_total: c("downstream_cx_rx_bytes_total"),
                downstream_cx_tx_bytes_total: c("downstream_cx_tx_bytes_total"),
                idle_timeout: c("idle_timeout"),
                active: stats.gauge(&format!("tcp.{prefix}.upstream_flush_active")),
            }),
        })
    }

    fn choose_slot(&self) -> &Arc<ClusterSlot> {
        match &self.target {
            Target::Single(slot) => slot,
            Target::Weighted(clusters, total) => {
                let mut pick = fastrand::u64(..*total);
                for (slot, weight) in clusters {
                    if pick < *weight {
                        return slot;
                    }
                    pick -= weight;
                }
                &clusters[clusters.len() - 1].0
            }
        }
    }
}

/// What the TCP proxy knows about the downstream connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The peer.
    pub remote: SocketAddr,
    /// The local (original destination) address.
    pub local: SocketAddr,
    /// The SNI, when TLS was inspected.
    pub server_name: Option<String>,
    /// The connection's id.
    pub id: u64,
}

/// Relays `io` to an endpoint of the proxy's cluster until both sides close or the connection
/// idles out.
pub async fn proxy<I>(mut io: I, downstream: Downstream, tcp: Arc<TcpProxy>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let start_time = SystemTime::now();
    tcp.stats.downstream_cx_total.inc();
    let _active = GaugeGuard::new(&tcp.stats.active);
    let mut flags = ResponseFlags::NONE;
    let mut upstream_host = None;
    let mut cluster_name = None;
    let mut transport_failure = None;
    let (mut received, mut sent) = (0u64, 0u64);
    let slot = tcp.choose_slot();
    match slot.load() {
        None => {
            tcp.stats.downstream_cx_no_route.inc();
            flags.insert(ResponseFlags::NO_CLUSTER_FOUND);
        }
        Some(cluster) => {
            cluster_name = Some(cluster.name.clone());
            let connections = &cluster
                .breakers
                .thresholds(crate::upstream::circuit::Priority::Default)
                .connections;
            let unit = connections.try_acquire();
            let chosen = cluster.choose_host(
                Some(downstream.local),
                &crate::upstream::Selection::default(),
            );
            match (chosen, unit) {
                (None, _) => {
                    cluster.stats.upstream_cx_none_healthy.inc();
                    flags.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
                }
                (Some(_), None) => {
                    // Envoy's tcp_proxy refuses connections beyond `max_connections`.
                    cluster.stats.upstream_cx_overflow.inc();
                    flags.insert(ResponseFlags::UPSTREAM_OVERFLOW);
                }
                (Some(host), Some(_unit)) => {
                    upstream_host = Some(host.address);
                    match connect::connect(
                        host.address,
                        cluster.source_address,
                        cluster.connect_timeout,
                        cluster.tls.as_deref(),
                    )
                    .await
                    {
                        Err(error) => {
                            cluster.stats.upstream_cx_connect_fail.inc();
                            host.stats.cx_connect_fail.inc();
                            if matches!(error, connect::ConnectError::Timeout) {
                                cluster.stats.upstream_cx_connect_timeout.inc();
                            }
                            cluster.report(&host, crate::upstream::outlier::Outcome::ConnectFailed);
                            flags.insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                            transport_failure = Some(error.reason());
                        }
                        Ok((mut upstream, _local)) => {
                            cluster
                                .report(&host, crate::upstream::outlier::Outcome::ConnectSuccess);
                            cluster.stats.upstream_cx_total.inc();
                            host.stats.cx_total.inc();
                            let _cx = (
                                GaugeGuard::new(&cluster.stats.upstream_cx_active),
                                GaugeGuard::new(&host.stats.cx_active),
                            );
                            let outcome = relay(&mut io, &mut upstream, tcp.idle_timeout).await;
                            received = outcome.downstream_to_upstream;
                            sent = outcome.upstream_to_downstream;
                            cluster.stats.upstream_cx_tx_bytes_total.add(received);
                            cluster.stats.upstream_cx_rx_bytes_total.add(sent);
                            if outcome.idled_out {
                                tcp.stats.idle_timeout.inc();
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = io.shutdown().await;
    tcp.stats.downstream_cx_rx_bytes_total.add(received);
    tcp.stats.downstream_cx_tx_bytes_total.add(sent);
    if !tcp.access_logs.is_empty() {
        let ctx = FormatContext {
            start_time: Some(start_time),
            duration: Some(started.elapsed()),
            response_flags: flags,
            bytes_received: received,
            bytes_sent: sent,
            upstream_host,
            upstream_cluster: cluster_name.as_deref(),
            upstream_transport_failure_reason: transport_failure.as_deref(),
            downstream_remote_address: Some(downstream.remote),
            downstream_local_address: Some(downstream.local),
            requested_server_name: downstream.server_name.as_deref(),
            connection_id: Some(downstream.id),
            ..Default::default()
        };
        for logger in &tcp.access_logs {
            logger.log(&ctx);
        }
    }
}

/// Bytes relayed each way, and whether the idle timeout ended it.
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayOutcome {
    /// Bytes from downstream to upstream.
    pub downstream_to_upstream: u64,
    /// Bytes from upstream to downstream.
    pub upstream_to_downstream: u64,
    /// Whether the connection idled out.
    pub idled_out: bool,
}

/// Copies both ways, half-closing each direction at its end, until both are done or nothing
/// moved for `idle`.
pub async fn relay<A, B>(a: &mut A, b: &mut B, idle: Option<Duration>) -> RelayOutcome
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let mut a_buf = vec![0u8; 16 * 1024];
    let mut b_buf = vec![0u8; 16 * 1024];
    let mut outcome = RelayOutcome::default();
    let (mut a_open, mut b_open) = (true, true);
    let far = Duration::from_secs(365 * 24 * 3600);
    let sleep = tokio::time::sleep(idle.unwrap_or(far));
    tokio::pin!(sleep);
    while a_open || b_open {
        tokio::select! {
            read = a_read.read(&mut a_buf), if a_open => match read {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = b_write.shutdown().await;
                }
                Ok(n) => {
                    if b_write.write_all(&a_buf[..n]).await.is_err() {
                        break;
                    }
                    outcome.downstream_to_upstream += n as u64;
                    sleep.as_mut().reset(tokio::time::Instant::now() + idle.unwrap_or(far));
                }
            },
            read = b_read.read(&mut b_buf), if b_open => match read {
                Ok(0) | Err(_) => {
                    b_open = false;
                    let _ = a_write.shutdown().await;
                }
                Ok(n) => {
                    if a_write.write_all(&b_buf[..n]).await.is_err() {
                        break;
                    }
                    outcome.upstream_to_downstream += n as u64;
                    sleep.as_mut().reset(tokio::time::Instant::now() + idle.unwrap_or(far));
                }
            },
            _ = &mut sleep => {
                outcome.idled_out = true;
                break;
            }
        }
    }
    outcome
}
