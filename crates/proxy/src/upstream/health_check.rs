//! Active health checks (`health_checks`, HTTP and TCP) as Envoy runs them: endpoints start
//! failing until their first check passes; a passing check after failures needs
//! `healthy_threshold` in a row; an HTTP status outside `expected_statuses` fails an endpoint
//! at once, network failures and timeouts after `unhealthy_threshold` in a row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bosun_xds::pb::envoy::config::core::v3::{HealthCheck as HealthCheckProto, health_check};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Cluster, Host};
use crate::config::{self, ConfigError};

/// What is checked.
#[derive(Debug)]
enum Kind {
    Http {
        host: String,
        path: String,
        expected: Vec<(u16, u16)>,
        retriable: Vec<(u16, u16)>,
        method: http::Method,
    },
    Tcp {
        send: Option<Vec<u8>>,
        receive: Vec<Vec<u8>>,
    },
}

/// A compiled health check.
#[derive(Debug)]
pub struct HealthCheck {
    timeout: Duration,
    interval: Duration,
    unhealthy_interval: Duration,
    no_traffic_interval: Duration,
    interval_jitter: Duration,
    jitter_percent: u32,
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    alt_port: Option<u16>,
    kind: Kind,
}

/// Per-endpoint state of active health checking.
#[derive(Debug, Default)]
pub struct HostCheck {
    healthy_in_a_row: AtomicU32,
    unhealthy_in_a_row: AtomicU32,
    checked: AtomicBool,
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// It passed.
    Healthy,
    /// The endpoint answered wrong (immediate failure).
    Failed,
    /// A retriable status, a connection failure or a timeout.
    NetworkOrRetriable,
}

fn payload(p: &health_check::Payload) -> Result<Vec<u8>, ConfigError> {
    use health_check::payload::Payload;
    match &p.payload {
        Some(Payload::Text(hex)) => decode_hex(hex)
            .ok_or_else(|| ConfigError::invalid(format!("invalid hex payload {hex:?}"))),
        Some(Payload::Binary(bytes)) => Ok(bytes.clone()),
        None => Ok(Vec::new()),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl HealthCheck {
    /// Compiles a health check of the cluster named `cluster`.
    pub fn compile(config: &HealthCheckProto, cluster: &str) -> Result<Self, ConfigError> {
        let required = |d: Option<&bosun_xds::pb::google::protobuf::Duration>, what: &str| {
            d.map(config::duration)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::invalid(format!("health check needs a positive {what}"))
                })
        };
        let timeout = required(config.timeout.as_ref(), "timeout")?;
        let interval = required(config.interval.as_ref(), "interval")?;
        let kind = match &config.health_checker {
            Some(health_check::HealthChecker::HttpHealthCheck(http)) => {
                if http.send.is_some() || !http.receive.is_empty() {
                    return Err(ConfigError::unsupported(
                        "http_health_check send and receive",
                    ));
                }
                let ranges = |list: &[bosun_xds::pb::envoy::r#type::v3::Int64Range]| {
                    list.iter()
                        .map(|r| {
                            (
                                u16::try_from(r.start).unwrap_or(0),
                                u16::try_from(r.end).unwrap_or(u16::MAX),
                            )
                        })
                        .collect::<Vec<_>>()
                };
                let mut expected = ranges(&http.expected_statuses);
                if expected.is_empty() {
                    expected.push((200, 201));
                }
                let method = match http.method {
                    0 | 1 => http::Method::GET,
                    2 => http::Method::HEAD,
                    _ => {
                        return Err(ConfigError::unsupported(
                            "http_health_check methods other than GET and HEAD",
                        ));
                    }
                };
                if !http.path.starts_with('/') {
                    return Err(ConfigError::invalid(
                        "http_health_check.path must start with /",
                    ));
                }
                Kind::Http {
                    host: if http.host.is_empty() {
                        cluster.to_owned()
                    } else {
                        http.host.clone()
                    },
                    path: http.path.clone(),
                    expected,
                    retriable: ranges(&http.retriable_statuses),
                    method,
                }
            }
            Some(health_check::HealthChecker::TcpHealthCheck(tcp)) => Kind::Tcp {
                send: tcp.send.as_ref().map(payload).transpose()?,
                receive: tcp.receive.iter().map(payload).collect::<Result<_, _>>()?,
            },
            Some(_) => {
                return Err(ConfigError::unsupported(
                    "health checkers other than http_health_check and tcp_health_check",
                ));
            }
            None => {
                return Err(ConfigError::invalid(
                    "health check without a health checker",
                ));
            }
        };
        let or = |d: Option<&bosun_xds::pb::google::protobuf::Duration>, default: Duration| {
            d.map(config::duration)
                .filter(|d| !d.is_zero())
                .unwrap_or(default)
        };
        Ok(HealthCheck {
            timeout,
            interval,
            unhealthy_interval: or(config.unhealthy_interval.as_ref(), interval),
            no_traffic_interval: or(config.no_traffic_interval.as_ref(), Duration::from_secs(60)),
            interval_jitter: or(config.interval_jitter.as_ref(), Duration::ZERO),
            jitter_percent: config.interval_jitter_percent,
            unhealthy_threshold: config.unhealthy_threshold.map_or(1, |v| v.value).max(1),
            healthy_threshold: config.healthy_threshold.map_or(1, |v| v.value).max(1),
            alt_port: config
                .alt_port
                .and_then(|p| u16::try_from(p.value).ok())
                .filter(|p| *p != 0),
            kind,
        })
    }

    /// How long to wait before the next round: `no_traffic_interval` until the cluster carried
    /// traffic, then `interval` (`unhealthy_interval` when some endpoint is failing), jittered.
    pub fn next_interval(&self, cluster: &Cluster) -> Duration {
        let base = if cluster.stats.upstream_cx_total.get() == 0 {
            self.no_traffic_interval
        } else if cluster
            .hosts()
            .hosts
            .iter()
            .any(|h| h.failed_active_health_check())
        {
            self.unhealthy_interval
        } else {
            self.interval
        };
        let mut jitter_ms = self.interval_jitter.as_millis() as u64;
        if self.jitter_percent > 0 {
            jitter_ms += base.as_millis() as u64 * u64::from(self.jitter_percent) / 100;
        }
        base + Duration::from_millis(if jitter_ms == 0 {
            0
        } else {
            fastrand::u64(..jitter_ms)
        })
    }

    /// Checks `host` once.
    pub async fn check(&self, cluster: &Cluster, host: &Host) -> CheckResult {
        let mut address = host.address;
        if let Some(port) = self.alt_port {
            address.set_port(port);
        }
        let run = async {
            match &self.kind {
                Kind::Http {
                    host: authority,
                    path,
                    expected,
                    retriable,
                    method,
                } => {
                    let Ok((io, _)) = super::connect::connect(
                        address,
                        cluster.source_address,
                        cluster.connect_timeout,
                        cluster.tls.as_deref(),
                    )
                    .await
                    else {
                        return CheckResult::NetworkOrRetriable;
                    };
                    let Ok((mut sender, connection)) =
                        hyper::client::conn::http1::handshake(TokioIo::new(io)).await
                    else {
                        return CheckResult::NetworkOrRetriable;
                    };
                    tokio::spawn(connection);
                    let request = Request::builder()
                        .method(method.clone())
                        .uri(path.as_str())
                        .header(http::header::HOST, authority.as_str())
                        .header(http::header::USER_AGENT, "Envoy/HC")
                        .body(Empty::<Bytes>::new());
                    let Ok(request) = request else {
                        return CheckResult::Failed;
                    };
                    let Ok(response) = sender.send_request(request).await else {
                        return CheckResult::NetworkOrRetriable;
                    };
                    let status = response.status().as_u16();
                    // Read the body so the connection ends cleanly.
                    let _ = response.into_body().collect().await;
                    let within = |ranges: &[(u16, u16)]| {
                        ranges.iter().any(|(lo, hi)| status >= *lo && status < *hi)
                    };
                    if within(expected) {
                        CheckResult::Healthy
                    } else if within(retriable) {
                        CheckResult::NetworkOrRetriable
                    } else {
                        CheckResult::Failed
                    }
                }
                Kind::Tcp { send, receive } => {
                    let Ok((mut io, _)) = super::connect::connect(
                        address,
                        cluster.source_address,
                        cluster.connect_timeout,
                        cluster.tls.as_deref(),
                    )
                    .await
                    else {
                        return CheckResult::NetworkOrRetriable;
                    };
                    if let Some(bytes) = send {
                        if io.write_all(bytes).await.is_err() {
                            return CheckResult::NetworkOrRetriable;
                        }
                    }
                    let wanted: usize = receive.iter().map(Vec::len).sum();
                    if wanted == 0 {
                        return CheckResult::Healthy;
                    }
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    loop {
                        match io.read(&mut buffer).await {
                            Ok(0) | Err(_) => return CheckResult::NetworkOrRetriable,
                            Ok(n) => seen.extend_from_slice(&buffer[..n]),
                        }
                        if contains_in_order(&seen, receive) {
                            return CheckResult::Healthy;
                        }
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .unwrap_or(CheckResult::NetworkOrRetriable)
    }

    /// Applies a result to `host`'s health; returns whether its health flag changed.
    pub fn record(&self, host: &Host, result: CheckResult) -> bool {
        let state = &host.health_check;
        let first = !state.checked.swap(true, Ordering::AcqRel);
        match result {
            CheckResult::Healthy => {
                state.unhealthy_in_a_row.store(0, Ordering::Relaxed);
                if host.failed_active_health_check() {
                    let n = state.healthy_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                    if first || n >= self.healthy_threshold {
                        state.healthy_in_a_row.store(0, Ordering::Relaxed);
                        return host.set_failed_active_health_check(false);
                    }
                }
                false
            }
            CheckResult::Failed | CheckResult::NetworkOrRetriable => {
                state.healthy_in_a_row.store(0, Ordering::Relaxed);
                if !host.failed_active_health_check() {
                    let n = state.unhealthy_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                    if result == CheckResult::Failed || n >= self.unhealthy_threshold {
                        state.unhealthy_in_a_row.store(0, Ordering::Relaxed);
                        return host.set_failed_active_health_check(true);
                    }
                }
                false
            }
        }
    }
}

fn contains_in_order(haystack: &[u8], needles: &[Vec<u8>]) -> bool {
    let mut from = 0;
    for needle in needles {
        if needle.is_empty() {
            continue;
        }
        match haystack[from..]
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        {
            Some(at) => from += at + needle.len(),
            None => return false,
        }
    }
    true
}

/// One round of checks over every endpoint of `cluster`; rebuilds its host set if health
/// changed. A passing check also returns an ejected endpoint (Envoy's
/// `successful_active_health_check_uneject_host`).
pub async fn run_round(cluster: &Arc<Cluster>, check: &HealthCheck) {
    let hosts = cluster.hosts().hosts.clone();
    let results = futures_util::future::join_all(hosts.iter().map(|host| async move {
        cluster.stats.health_check_attempt.inc();
        (host, check.check(cluster, host).await)
    }))
    .await;
    let mut changed = false;
    for (host, result) in results {
        if result == CheckResult::Healthy {
            cluster.stats.health_check_success.inc();
        } else {
            cluster.stats.health_check_failure.inc();
        }
        changed |= check.record(host, result);
        if result == CheckResult::Healthy && !host.failed_active_health_check() {
            if let Some(detector) = &cluster.outlier {
                if detector.config.uneject_on_health_check
                    && detector.uneject(host.as_ref(), tokio::time::Instant::now())
                {
                    changed = true;
                }
            }
        }
    }
    if changed {
        cluster.refresh();
    }
    let healthy = hosts
        .iter()
        .filter(|h| !h.failed_active_health_check())
        .count();
    cluster.stats.health_check_healthy.set(healthy as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_payloads_decode() {
        assert_eq!(decode_hex("50 49 4e47"), Some(b"PING".to_vec()));
        assert_eq!(decode_hex("5"), None);
    }

    #[test]
    fn receive_payloads_match_in_order() {
        assert!(contains_in_order(
            b"xxPONGyyOK",
            &[b"PONG".to_vec(), b"OK".to_vec()]
        ));
        assert!(!contains_in_order(
            b"OK PONG",
            &[b"PONG".to_vec(), b"OK".to_vec()]
        ));
    }
}
