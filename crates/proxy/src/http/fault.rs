//! The fault injection filter (`envoy.filters.http.fault`): delays and aborts for a share of
//! requests, configured on the filter or per route (`typed_per_filter_config`), optionally
//! driven by `x-envoy-fault-*` request headers, bounded by `max_active_faults`.

use std::sync::Arc;
use std::time::Duration;

use bosun_xds::pb::envoy::extensions::filters::common::fault::v3::fault_delay;
use bosun_xds::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort};
use http::{HeaderMap, StatusCode};

use crate::config::{self, ConfigError};
use crate::route::HeaderMatchers;
use crate::route::policy::fraction;
use crate::stats::{Counter, Gauge, GaugeGuard, Stats};

const ABORT: &str = "x-envoy-fault-abort-request";
const ABORT_GRPC: &str = "x-envoy-fault-abort-grpc-request";
const ABORT_PERCENT: &str = "x-envoy-fault-abort-request-percentage";
const DELAY: &str = "x-envoy-fault-delay-request";
const DELAY_PERCENT: &str = "x-envoy-fault-delay-request-percentage";

#[derive(Debug)]
enum Delay {
    Fixed(Duration),
    Header,
}

#[derive(Debug)]
enum Abort {
    Http(StatusCode),
    Grpc(u32),
    Header,
}

/// Compiled `HTTPFault` settings (of the filter, or of a route).
#[derive(Debug)]
pub struct FaultSettings {
    delay: Option<(Delay, (u32, u32))>,
    abort: Option<(Abort, (u32, u32))>,
    abort_body: Option<String>,
    upstream_cluster: Option<String>,
    headers: HeaderMatchers,
    downstream_nodes: Vec<String>,
    max_active_faults: Option<u64>,
}

impl FaultSettings {
    /// Compiles an `HTTPFault`.
    pub fn compile(config: &HttpFault) -> Result<Self, ConfigError> {
        if config.response_rate_limit.is_some() {
            return Err(ConfigError::unsupported("fault response_rate_limit"));
        }
        let runtime_keys = [
            &config.delay_percent_runtime,
            &config.abort_percent_runtime,
            &config.delay_duration_runtime,
            &config.abort_http_status_runtime,
            &config.max_active_faults_runtime,
            &config.response_rate_limit_percent_runtime,
            &config.abort_grpc_status_runtime,
        ];
        if runtime_keys.iter().any(|k| !k.is_empty()) {
            // Without a runtime, Envoy reads the configured values; the keys change nothing.
            tracing::debug!("fault runtime keys are ignored: bosun proxy has no runtime");
        }
        let percentage = |p: Option<&bosun_xds::pb::envoy::r#type::v3::FractionalPercent>| {
            p.map_or((0, 100), fraction)
        };
        let delay = match &config.delay {
            None => None,
            Some(delay) => {
                let kind = match &delay.fault_delay_secifier {
                    Some(fault_delay::FaultDelaySecifier::FixedDelay(d)) => {
                        Delay::Fixed(config::duration(d))
                    }
                    Some(fault_delay::FaultDelaySecifier::HeaderDelay(_)) => Delay::Header,
                    None => return Err(ConfigError::invalid("fault delay without a delay")),
                };
                Some((kind, percentage(delay.percentage.as_ref())))
            }
        };
        let abort = match &config.abort {
            None => None,
            Some(abort) => {
                let kind = match &abort.error_type {
                    Some(fault_abort::ErrorType::HttpStatus(code)) => Abort::Http(
                        u16::try_from(*code)
                            .ok()
                            .filter(|c| (200..600).contains(c))
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .ok_or_else(|| {
                                ConfigError::invalid(format!(
                                    "fault abort http_status {code} must be in [200, 600)"
                                ))
                            })?,
                    ),
                    Some(fault_abort::ErrorType::GrpcStatus(code)) => Abort::Grpc(*code),
                    Some(fault_abort::ErrorType::HeaderAbort(_)) => Abort::Header,
                    None => return Err(ConfigError::invalid("fault abort without an error type")),
                };
                Some((kind, percentage(abort.percentage.as_ref())))
            }
        };
        Ok(FaultSettings {
            delay,
            abort_body: config
                .abort
                .as_ref()
                .map(|a| a.response_body.clone())
                .filter(|b| !b.is_empty()),
            abort,
            upstream_cluster: Some(config.upstream_cluster.clone()).filter(|c| !c.is_empty()),
            headers: HeaderMatchers::compile(&config.headers)?,
            downstream_nodes: config.downstream_nodes.clone(),
            max_active_faults: config.max_active_faults.map(|v| u64::from(v.value)),
        })
    }
}

/// Counters of a fault filter (`http.<stat_prefix>.fault.…`).
#[derive(Debug)]
pub struct FaultStats {
    delays_injected: Counter,
    aborts_injected: Counter,
    faults_overflow: Counter,
    active_faults: Gauge,
}

impl FaultStats {
    /// The stats of the fault filter of connection manager `stat_prefix`.
    pub fn new(stats: &Stats, stat_prefix: &str) -> Self {
        let name = |stat: &str| format!("http.{stat_prefix}.fault.{stat}");
        FaultStats {
            delays_injected: stats.counter(&name("delays_injected")),
            aborts_injected: stats.counter(&name("aborts_injected")),
            faults_overflow: stats.counter(&name("faults_overflow")),
            active_faults: stats.gauge(&name("active_faults")),
        }
    }
}

/// A fault filter in a connection manager's chain.
#[derive(Debug)]
pub struct FaultFilter {
    /// Its name in `http_filters`, the key of per-route overrides.
    pub name: String,
    /// Its own settings.
    pub settings: Arc<FaultSettings>,
    /// Its counters.
    pub stats: FaultStats,
}

/// What the filter decided for a request.
#[derive(Debug, Default)]
pub struct Decision {
    /// Wait this long first (flag DI).
    pub delay: Option<Duration>,
    /// Then answer with this (flag FI): HTTP status, gRPC status, body.
    pub abort: Option<(StatusCode, Option<u32>, String)>,
    /// Holds an active-fault unit until the request is done with the fault.
    pub active: Option<GaugeGuard>,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    // Only the first value counts: these headers come from untrusted clients.
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn enabled((numerator, denominator): (u32, u32), header: Option<u64>) -> bool {
    // A percentage header can only lower the configured share.
    let numerator = header.map_or(numerator, |h| {
        u32::try_from(h).unwrap_or(u32::MAX).min(numerator)
    });
    numerator > 0 && fastrand::u32(..denominator) < numerator
}

impl FaultFilter {
    /// Decides what happens to a request whose route chose `cluster` under `settings` (the
    /// route's override, or the filter's own).
    pub fn decide(
        &self,
        settings: &FaultSettings,
        headers: &HeaderMap,
        cluster: Option<&str>,
    ) -> Decision {
        let mut decision = Decision::default();
        if let Some(wanted) = &settings.upstream_cluster {
            if cluster != Some(wanted.as_str()) {
                return decision;
            }
        }
        if !settings.downstream_nodes.is_empty() {
            let node = headers
                .get("x-envoy-downstream-service-node")
                .and_then(|v| v.to_str().ok());
            if !node.is_some_and(|n| settings.downstream_nodes.iter().any(|d| d == n)) {
                return decision;
            }
        }
        if !settings.headers.all_match(headers) {
            return decision;
        }
        let header_controlled = |kind_is_header: bool, name: &str| {
            if kind_is_header {
                header_u64(headers, name)
            } else {
                None
            }
        };
        if let Some((kind, share)) = &settings.delay {
            let is_header = matches!(kind, Delay::Header);
            if enabled(*share, header_controlled(is_header, DELAY_PERCENT)) {
                let duration = match kind {
                    Delay::Fixed(d) => Some(*d),
                    Delay::Header => header_u64(headers, DELAY).map(Duration::from_millis),
                };
                if let Some(duration) = duration.filter(|d| !d.is_zero()) {
                    if self.try_activate(settings, &mut decision) {
                        self.stats.delays_injected.inc();
                        decision.delay = Some(duration);
                    }
                }
            }
        }
        if let Some((kind, share)) = &settings.abort {
            let is_header = matches!(kind, Abort::Header);
            if enabled(*share, header_controlled(is_header, ABORT_PERCENT)) {
                let status = match kind {
                    Abort::Http(code) => Some((*code, None)),
                    Abort::Grpc(code) => Some((StatusCode::OK, Some(*code))),
                    Abort::Header => match header_u64(headers, ABORT)
                        .filter(|c| (200..600).contains(c))
                        .and_then(|c| StatusCode::from_u16(c as u16).ok())
                    {
                        Some(code) => Some((code, None)),
                        None => header_u64(headers, ABORT_GRPC)
                            .and_then(|c| u32::try_from(c).ok())
                            .map(|c| (StatusCode::OK, Some(c))),
                    },
                };
                if let Some((code, grpc)) = status {
                    if self.try_activate(settings, &mut decision) {
                        self.stats.aborts_injected.inc();
                        let body = settings
                            .abort_body
                            .clone()
                            .unwrap_or_else(|| "fault filter abort".to_owned());
                        decision.abort = Some((code, grpc, body));
                    }
                }
            }
        }
        decision
    }

    /// Counts one active fault per request, unless `max_active_faults` is reached.
    fn try_activate(&self, settings: &FaultSettings, decision: &mut Decision) -> bool {
        if decision.active.is_some() {
            return true;
        }
        if let Some(max) = settings.max_active_faults {
            if u64::try_from(self.stats.active_faults.get()).unwrap_or(0) >= max {
                self.stats.faults_overflow.inc();
                return false;
            }
        }
        decision.active = Some(GaugeGuard::new(&self.stats.active_faults));
        true
    }
}

#[cfg(test)]
mod tests {
    use bosun_xds::pb::envoy::extensions::filters::common::fault::v3::FaultDelay;
    use bosun_xds::pb::envoy::extensions::filters::http::fault::v3::FaultAbort;
    use bosun_xds::pb::envoy::r#type::v3::FractionalPercent;

    use super::*;

    fn filter(config: HttpFault) -> FaultFilter {
        let stats = Stats::new();
        FaultFilter {
            name: "envoy.filters.http.fault".into(),
            settings: Arc::new(FaultSettings::compile(&config).unwrap()),
            stats: FaultStats::new(&stats, "test"),
        }
    }

    fn percent(numerator: u32) -> Option<FractionalPercent> {
        Some(FractionalPercent {
            numerator,
            denominator: 0,
        })
    }

    #[test]
    fn full_abort_always_aborts_and_zero_never() {
        let always = filter(HttpFault {
            abort: Some(FaultAbort {
                percentage: percent(100),
                error_type: Some(fault_abort::ErrorType::HttpStatus(503)),
                ..Default::default()
            }),
            ..Default::default()
        });
        let headers = HeaderMap::new();
        for _ in 0..50 {
            let d = always.decide(&always.settings, &headers, None);
            assert_eq!(d.abort.unwrap().0, StatusCode::SERVICE_UNAVAILABLE);
        }
        let never = filter(HttpFault {
            abort: Some(FaultAbort {
                percentage: percent(0),
                error_type: Some(fault_abort::ErrorType::HttpStatus(503)),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!((0..50).all(|_| {
            never
                .decide(&never.settings, &headers, None)
                .abort
                .is_none()
        }));
    }

    #[test]
    fn header_faults_need_the_headers_and_percentages_only_lower_the_share() {
        let f = filter(HttpFault {
            abort: Some(FaultAbort {
                percentage: percent(100),
                error_type: Some(fault_abort::ErrorType::HeaderAbort(
                    fault_abort::HeaderAbort {},
                )),
                ..Default::default()
            }),
            delay: Some(FaultDelay {
                percentage: percent(100),
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::HeaderDelay(
                    fault_delay::HeaderDelay {},
                )),
            }),
            ..Default::default()
        });
        let mut headers = HeaderMap::new();
        let d = f.decide(&f.settings, &headers, None);
        assert!(d.abort.is_none() && d.delay.is_none());
        headers.insert(ABORT, "429".parse().unwrap());
        headers.insert(DELAY, "20".parse().unwrap());
        let d = f.decide(&f.settings, &headers, None);
        assert_eq!(d.abort.unwrap().0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(d.delay, Some(Duration::from_millis(20)));
        headers.insert(ABORT_PERCENT, "0".parse().unwrap());
        assert!(f.decide(&f.settings, &headers, None).abort.is_none());
        headers.remove(ABORT);
        headers.remove(ABORT_PERCENT);
        headers.insert(ABORT_GRPC, "14".parse().unwrap());
        let (status, grpc, body) = f.decide(&f.settings, &headers, None).abort.unwrap();
        assert_eq!(
            (status, grpc, body.as_str()),
            (StatusCode::OK, Some(14), "fault filter abort")
        );
    }

    #[test]
    fn max_active_faults_overflows() {
        let f = filter(HttpFault {
            delay: Some(FaultDelay {
                percentage: percent(100),
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(
                    bosun_xds::pb::google::protobuf::Duration {
                        seconds: 1,
                        nanos: 0,
                    },
                )),
            }),
            max_active_faults: Some(bosun_xds::pb::google::protobuf::UInt32Value { value: 1 }),
            ..Default::default()
        });
        let headers = HeaderMap::new();
        let first = f.decide(&f.settings, &headers, None);
        assert!(first.delay.is_some());
        let second = f.decide(&f.settings, &headers, None);
        assert!(second.delay.is_none());
        assert_eq!(f.stats.faults_overflow.get(), 1);
        drop(first);
        assert!(f.decide(&f.settings, &headers, None).delay.is_some());
    }

    #[test]
    fn upstream_cluster_limits_faults() {
        let f = filter(HttpFault {
            abort: Some(FaultAbort {
                percentage: percent(100),
                error_type: Some(fault_abort::ErrorType::HttpStatus(500)),
                ..Default::default()
            }),
            upstream_cluster: "ratings".into(),
            ..Default::default()
        });
        let headers = HeaderMap::new();
        assert!(
            f.decide(&f.settings, &headers, Some("reviews"))
                .abort
                .is_none()
        );
        assert!(
            f.decide(&f.settings, &headers, Some("ratings"))
                .abort
                .is_some()
        );
    }
}
