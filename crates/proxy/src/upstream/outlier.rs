//! Outlier detection (`outlier_detection`), as Envoy's detector: consecutive 5xx, gateway
//! failures and local-origin failures eject an endpoint at once; success rate and failure
//! percentage are judged every `interval`; ejected endpoints come back after
//! `base_ejection_time` times their ejection count (capped by `max_ejection_time`), checked at
//! the interval ticks.
//!
//! Requests report outcomes through atomics on the endpoint; ejecting or returning one takes a
//! short lock on that endpoint's ejection state and rebuilds the cluster's host set.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bosun_xds::pb::envoy::config::cluster::v3::OutlierDetection as OutlierProto;
use tokio::time::Instant;

use crate::config::{self, ConfigError};
use crate::stats::{Counter, Gauge, Stats};

/// What happened to a request, as outlier detection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers with this status arrived.
    Response(u16),
    /// The connection could not be opened (or was reset, as Envoy's router reports resets).
    ConnectFailed,
    /// The request timed out.
    Timeout,
    /// A connection was opened for the request.
    ConnectSuccess,
}

/// Why an endpoint is ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EjectionType {
    /// `consecutive_5xx`.
    Consecutive5xx,
    /// `consecutive_gateway_failure`.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure`.
    ConsecutiveLocalOriginFailure,
    /// Success rate (external origin).
    SuccessRate,
    /// Success rate (local origin).
    SuccessRateLocalOrigin,
    /// Failure percentage (external origin).
    FailurePercentage,
    /// Failure percentage (local origin).
    FailurePercentageLocalOrigin,
}

impl EjectionType {
    fn stat(self) -> &'static str {
        match self {
            EjectionType::Consecutive5xx => "consecutive_5xx",
            EjectionType::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            EjectionType::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            EjectionType::SuccessRate => "success_rate",
            EjectionType::SuccessRateLocalOrigin => "local_origin_success_rate",
            EjectionType::FailurePercentage => "failure_percentage",
            EjectionType::FailurePercentageLocalOrigin => "local_origin_failure_percentage",
        }
    }

    const ALL: [EjectionType; 7] = [
        EjectionType::Consecutive5xx,
        EjectionType::ConsecutiveGatewayFailure,
        EjectionType::ConsecutiveLocalOriginFailure,
        EjectionType::SuccessRate,
        EjectionType::SuccessRateLocalOrigin,
        EjectionType::FailurePercentage,
        EjectionType::FailurePercentageLocalOrigin,
    ];

    fn index(self) -> usize {
        EjectionType::ALL
            .iter()
            .position(|t| *t == self)
            .unwrap_or(0)
    }
}

/// The detector's settings, with Envoy's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    /// `interval`.
    pub interval: Duration,
    /// `base_ejection_time`.
    pub base_ejection_time: Duration,
    /// `max_ejection_time`.
    pub max_ejection_time: Duration,
    /// `max_ejection_time_jitter`.
    pub max_ejection_jitter: Duration,
    /// `max_ejection_percent`.
    pub max_ejection_percent: u32,
    /// `always_eject_one_host`.
    pub always_eject_one_host: bool,
    /// `consecutive_5xx`.
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure`.
    pub consecutive_gateway_failure: u32,
    /// `consecutive_local_origin_failure`.
    pub consecutive_local_origin_failure: u32,
    /// `split_external_local_origin_errors`.
    pub split_local_origin: bool,
    /// `enforcing_*`, percent, indexed by [`EjectionType`].
    enforcing: [u32; 7],
    /// `success_rate_minimum_hosts`.
    pub success_rate_minimum_hosts: u64,
    /// `success_rate_request_volume`.
    pub success_rate_request_volume: u64,
    /// `success_rate_stdev_factor` (thousandths).
    pub success_rate_stdev_factor: u64,
    /// `failure_percentage_threshold`.
    pub failure_percentage_threshold: u64,
    /// `failure_percentage_minimum_hosts`.
    pub failure_percentage_minimum_hosts: u64,
    /// `failure_percentage_request_volume`.
    pub failure_percentage_request_volume: u64,
    /// `successful_active_health_check_uneject_host`.
    pub uneject_on_health_check: bool,
}

impl OutlierConfig {
    /// Compiles `outlier_detection`.
    pub fn compile(config: &OutlierProto) -> Result<Self, ConfigError> {
        let u = |v: Option<u32>, default: u32| v.unwrap_or(default);
        let d = |v: Option<&bosun_xds::pb::google::protobuf::Duration>, default: u64| {
            v.map(config::duration)
                .unwrap_or(Duration::from_millis(default))
        };
        if !config.monitors.is_empty() {
            return Err(ConfigError::unsupported("outlier_detection.monitors"));
        }
        if config.detect_degraded_hosts.is_some_and(|b| b.value) {
            return Err(ConfigError::unsupported(
                "outlier_detection.detect_degraded_hosts",
            ));
        }
        let base = d(config.base_ejection_time.as_ref(), 30_000);
        let max = d(config.max_ejection_time.as_ref(), 300_000);
        if max < base {
            return Err(ConfigError::invalid(
                "outlier detector's max_ejection_time cannot be smaller than base_ejection_time",
            ));
        }
        let mut enforcing = [0u32; 7];
        enforcing[EjectionType::Consecutive5xx.index()] =
            u(config.enforcing_consecutive_5xx.map(|v| v.value), 100);
        enforcing[EjectionType::ConsecutiveGatewayFailure.index()] = u(
            config
                .enforcing_consecutive_gateway_failure
                .map(|v| v.value),
            0,
        );
        enforcing[EjectionType::ConsecutiveLocalOriginFailure.index()] = u(
            config
                .enforcing_consecutive_local_origin_failure
                .map(|v| v.value),
            100,
        );
        enforcing[EjectionType::SuccessRate.index()] =
            u(config.enforcing_success_rate.map(|v| v.value), 100);
        enforcing[EjectionType::SuccessRateLocalOrigin.index()] = u(
            config.enforcing_local_origin_success_rate.map(|v| v.value),
            100,
        );
        enforcing[EjectionType::FailurePercentage.index()] =
            u(config.enforcing_failure_percentage.map(|v| v.value), 0);
        enforcing[EjectionType::FailurePercentageLocalOrigin.index()] = u(
            config
                .enforcing_failure_percentage_local_origin
                .map(|v| v.value),
            0,
        );
        Ok(OutlierConfig {
            interval: d(config.interval.as_ref(), 10_000).max(Duration::from_millis(1)),
            base_ejection_time: base,
            max_ejection_time: max,
            max_ejection_jitter: d(config.max_ejection_time_jitter.as_ref(), 0),
            max_ejection_percent: u(config.max_ejection_percent.map(|v| v.value), 10).min(100),
            always_eject_one_host: config.always_eject_one_host.is_some_and(|b| b.value),
            consecutive_5xx: u(config.consecutive_5xx.map(|v| v.value), 5),
            consecutive_gateway_failure: u(config.consecutive_gateway_failure.map(|v| v.value), 5),
            consecutive_local_origin_failure: u(
                config.consecutive_local_origin_failure.map(|v| v.value),
                5,
            ),
            split_local_origin: config.split_external_local_origin_errors,
            enforcing,
            success_rate_minimum_hosts: u64::from(u(
                config.success_rate_minimum_hosts.map(|v| v.value),
                5,
            )),
            success_rate_request_volume: u64::from(u(
                config.success_rate_request_volume.map(|v| v.value),
                100,
            )),
            success_rate_stdev_factor: u64::from(u(
                config.success_rate_stdev_factor.map(|v| v.value),
                1900,
            )),
            failure_percentage_threshold: u64::from(u(
                config.failure_percentage_threshold.map(|v| v.value),
                85,
            )),
            failure_percentage_minimum_hosts: u64::from(u(
                config.failure_percentage_minimum_hosts.map(|v| v.value),
                5,
            )),
            failure_percentage_request_volume: u64::from(u(
                config.failure_percentage_request_volume.map(|v| v.value),
                50,
            )),
            uneject_on_health_check: config
                .successful_active_health_check_uneject_host
                .is_none_or(|b| b.value),
        })
    }

    fn enforced(&self, kind: EjectionType) -> bool {
        let percent = self.enforcing[kind.index()];
        percent >= 100 || (percent > 0 && fastrand::u32(..100) < percent)
    }
}

/// Counters of a cluster's detector (`cluster.<name>.outlier_detection.…`).
#[derive(Debug)]
pub struct OutlierStats {
    /// `ejections_active`.
    pub ejections_active: Gauge,
    /// `ejections_enforced_total`.
    pub ejections_enforced_total: Counter,
    /// `ejections_overflow`.
    pub ejections_overflow: Counter,
    /// `ejections_total` (deprecated in Envoy, still counted).
    pub ejections_total: Counter,
    /// `ejections_consecutive_5xx` (deprecated in Envoy, still counted).
    pub ejections_consecutive_5xx: Counter,
    /// `ejections_success_rate` (deprecated in Envoy, still counted).
    pub ejections_success_rate: Counter,
    detected: [Counter; 7],
    enforced: [Counter; 7],
}

impl OutlierStats {
    /// The stats of cluster `name`.
    pub fn new(stats: &Stats, name: &str) -> Self {
        let c = |stat: &str| stats.counter(&format!("cluster.{name}.outlier_detection.{stat}"));
        OutlierStats {
            ejections_active: stats.gauge(&format!(
                "cluster.{name}.outlier_detection.ejections_active"
            )),
            ejections_enforced_total: c("ejections_enforced_total"),
            ejections_overflow: c("ejections_overflow"),
            ejections_total: c("ejections_total"),
            ejections_consecutive_5xx: c("ejections_consecutive_5xx"),
            ejections_success_rate: c("ejections_success_rate"),
            detected: EjectionType::ALL.map(|t| c(&format!("ejections_detected_{}", t.stat()))),
            enforced: EjectionType::ALL.map(|t| c(&format!("ejections_enforced_{}", t.stat()))),
        }
    }
}

/// Per-endpoint state of outlier detection.
#[derive(Debug, Default)]
pub struct HostMonitor {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    external_total: AtomicU64,
    external_success: AtomicU64,
    local_total: AtomicU64,
    local_success: AtomicU64,
    ejection: Mutex<EjectionState>,
}

#[derive(Debug)]
struct EjectionState {
    ejected: bool,
    num_ejections: u32,
    backoff: u32,
    jitter: Duration,
    last_ejection: Option<Instant>,
    last_unejection: Option<Instant>,
    /// Last interval's (total, success), external and local origin.
    last_external: (u64, u64),
    last_local: (u64, u64),
    /// Success rates shown by `/clusters` (-1: not enough data).
    success_rate: f64,
    local_success_rate: f64,
}

impl Default for EjectionState {
    fn default() -> Self {
        EjectionState {
            ejected: false,
            num_ejections: 0,
            backoff: 0,
            jitter: Duration::ZERO,
            last_ejection: None,
            last_unejection: None,
            last_external: (0, 0),
            last_local: (0, 0),
            success_rate: -1.0,
            local_success_rate: -1.0,
        }
    }
}

impl HostMonitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, EjectionState> {
        // The state is plain numbers; a panic mid-update cannot break an invariant worth dying for.
        self.ejection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Times this endpoint was ejected.
    pub fn num_ejections(&self) -> u32 {
        self.lock().num_ejections
    }

    /// The success rates last computed (external, local origin); -1 when unknown.
    pub fn success_rates(&self) -> (f64, f64) {
        let state = self.lock();
        (state.success_rate, state.local_success_rate)
    }

    fn http_code(&self, config: &OutlierConfig, code: u16) -> Option<EjectionType> {
        self.external_total.fetch_add(1, Ordering::Relaxed);
        if code >= 500 {
            let mut found = None;
            if matches!(code, 502..=504) {
                let n = self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
                if n == config.consecutive_gateway_failure {
                    found = Some(EjectionType::ConsecutiveGatewayFailure);
                }
            } else {
                self.consecutive_gateway.store(0, Ordering::Relaxed);
            }
            let n = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
            if n == config.consecutive_5xx {
                found = Some(EjectionType::Consecutive5xx);
            }
            found
        } else {
            self.external_success.fetch_add(1, Ordering::Relaxed);
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.consecutive_gateway.store(0, Ordering::Relaxed);
            None
        }
    }

    fn local_failure(&self, config: &OutlierConfig) -> Option<EjectionType> {
        self.local_total.fetch_add(1, Ordering::Relaxed);
        let n = self.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
        (n == config.consecutive_local_origin_failure)
            .then_some(EjectionType::ConsecutiveLocalOriginFailure)
    }

    fn local_success(&self) {
        self.local_total.fetch_add(1, Ordering::Relaxed);
        self.local_success.fetch_add(1, Ordering::Relaxed);
        self.consecutive_local.store(0, Ordering::Relaxed);
    }

    /// Records an outcome; returns the ejection it calls for, if a consecutive threshold was
    /// just reached.
    pub fn record(&self, config: &OutlierConfig, outcome: Outcome) -> Option<EjectionType> {
        if config.split_local_origin {
            match outcome {
                Outcome::Response(code) => self.http_code(config, code),
                Outcome::ConnectFailed | Outcome::Timeout => self.local_failure(config),
                Outcome::ConnectSuccess => {
                    self.local_success();
                    None
                }
            }
        } else {
            match outcome {
                Outcome::Response(code) => self.http_code(config, code),
                Outcome::ConnectFailed => self.http_code(config, 503),
                Outcome::Timeout => self.http_code(config, 504),
                // A connection alone says nothing about the response that follows.
                Outcome::ConnectSuccess => None,
            }
        }
    }

    fn reset_counter(&self, kind: EjectionType) {
        match kind {
            EjectionType::Consecutive5xx => self.consecutive_5xx.store(0, Ordering::Relaxed),
            EjectionType::ConsecutiveGatewayFailure => {
                self.consecutive_gateway.store(0, Ordering::Relaxed)
            }
            EjectionType::ConsecutiveLocalOriginFailure => {
                self.consecutive_local.store(0, Ordering::Relaxed)
            }
            _ => {}
        }
    }
}

/// A cluster's detector.
#[derive(Debug)]
pub struct OutlierDetector {
    /// Settings.
    pub config: OutlierConfig,
    /// Counters.
    pub stats: OutlierStats,
}

/// What the detector needs to know about an endpoint: its monitor and whether it is ejected.
pub trait Monitored {
    /// The endpoint's monitor.
    fn monitor(&self) -> &HostMonitor;
    /// Marks the endpoint ejected or not (its health flag).
    fn set_ejected(&self, ejected: bool);
}

impl OutlierDetector {
    /// A detector.
    pub fn new(config: OutlierConfig, stats: OutlierStats) -> Self {
        OutlierDetector { config, stats }
    }

    /// Handles a consecutive-error ejection request for `host` among `hosts`. Returns whether
    /// the endpoint was ejected.
    pub fn on_consecutive<H: Monitored>(
        &self,
        host: &H,
        hosts: &[&H],
        kind: EjectionType,
        now: Instant,
    ) -> bool {
        if host.monitor().lock().ejected {
            return false;
        }
        self.stats.detected[kind.index()].inc();
        let ejected = self.eject(host, hosts, kind, now);
        if kind == EjectionType::Consecutive5xx {
            self.stats.ejections_consecutive_5xx.inc();
        }
        host.monitor().reset_counter(kind);
        ejected
    }

    fn eject<H: Monitored>(
        &self,
        host: &H,
        hosts: &[&H],
        kind: EjectionType,
        now: Instant,
    ) -> bool {
        let active = hosts.iter().filter(|h| h.monitor().lock().ejected).count();
        let total = hosts.len().max(1);
        let percent = 100.0 * (active + 1) as f64 / total as f64;
        let allowed = percent <= f64::from(self.config.max_ejection_percent)
            || (self.config.always_eject_one_host && active == 0);
        if !allowed {
            self.stats.ejections_overflow.inc();
            return false;
        }
        if matches!(
            kind,
            EjectionType::Consecutive5xx | EjectionType::SuccessRate
        ) {
            self.stats.ejections_total.inc();
        }
        if !self.config.enforced(kind) {
            return false;
        }
        {
            let mut state = host.monitor().lock();
            if state.ejected {
                return false;
            }
            state.ejected = true;
            state.num_ejections += 1;
            let base = self.config.base_ejection_time;
            // The back-off grows while base × backoff stays below max + base.
            if base.saturating_mul(state.backoff + 1)
                < self.config.max_ejection_time.saturating_add(base)
            {
                state.backoff += 1;
            }
            let jitter_ms = self.config.max_ejection_jitter.as_millis() as u64;
            state.jitter = Duration::from_millis(if jitter_ms == 0 {
                0
            } else {
                fastrand::u64(..=jitter_ms)
            });
            state.last_ejection = Some(now);
        }
        host.set_ejected(true);
        self.stats.ejections_enforced_total.inc();
        self.stats.enforced[kind.index()].inc();
        self.stats.ejections_active.set((active + 1) as i64);
        true
    }

    /// Returns an ejected endpoint to service at once (a passing active health check).
    pub fn uneject<H: Monitored>(&self, host: &H, now: Instant) -> bool {
        let mut state = host.monitor().lock();
        if !state.ejected {
            return false;
        }
        state.ejected = false;
        state.last_unejection = Some(now);
        drop(state);
        let monitor = host.monitor();
        monitor.reset_counter(EjectionType::Consecutive5xx);
        monitor.reset_counter(EjectionType::ConsecutiveGatewayFailure);
        monitor.reset_counter(EjectionType::ConsecutiveLocalOriginFailure);
        host.set_ejected(false);
        true
    }

    /// The work of one interval tick: returns ejected endpoints whose time is up, judges
    /// success rates and failure percentages. Returns whether any endpoint changed state.
    pub fn on_interval<H: Monitored>(&self, hosts: &[&H], now: Instant) -> bool {
        let mut changed = false;
        for host in hosts {
            let monitor = host.monitor();
            let back = {
                let mut state = monitor.lock();
                // Close the interval's buckets.
                let external = (
                    monitor.external_total.swap(0, Ordering::Relaxed),
                    monitor.external_success.swap(0, Ordering::Relaxed),
                );
                let local = (
                    monitor.local_total.swap(0, Ordering::Relaxed),
                    monitor.local_success.swap(0, Ordering::Relaxed),
                );
                state.last_external = external;
                state.last_local = local;
                state.success_rate = -1.0;
                state.local_success_rate = -1.0;
                if state.ejected {
                    let since = state
                        .last_ejection
                        .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
                    let time = self
                        .config
                        .base_ejection_time
                        .saturating_mul(state.backoff)
                        .min(self.config.max_ejection_time)
                        + state.jitter;
                    time <= since
                } else {
                    // A clean interval after the last return shortens the next ejection.
                    if let Some(back_at) = state.last_unejection {
                        if now.saturating_duration_since(back_at) >= self.config.interval
                            && state.backoff > 0
                        {
                            state.backoff -= 1;
                        }
                    }
                    false
                }
            };
            if back && self.uneject(*host, now) {
                changed = true;
            }
        }
        changed |= self.judge_rates(hosts, now, false);
        if self.config.split_local_origin {
            changed |= self.judge_rates(hosts, now, true);
        }
        let active = hosts.iter().filter(|h| h.monitor().lock().ejected).count();
        self.stats.ejections_active.set(active as i64);
        changed
    }

    fn judge_rates<H: Monitored>(&self, hosts: &[&H], now: Instant, local: bool) -> bool {
        let config = &self.config;
        let count = hosts.len() as u64;
        if count < config.success_rate_minimum_hosts
            && count < config.failure_percentage_minimum_hosts
        {
            return false;
        }
        let mut rated: Vec<(usize, f64)> = Vec::new();
        let mut percentage: Vec<(usize, f64)> = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let mut state = host.monitor().lock();
            if state.ejected {
                continue;
            }
            let (total, success) = if local {
                state.last_local
            } else {
                state.last_external
            };
            if total == 0 {
                continue;
            }
            let rate = success as f64 * 100.0 / total as f64;
            if total
                >= config
                    .success_rate_request_volume
                    .min(config.failure_percentage_request_volume)
            {
                if local {
                    state.local_success_rate = rate;
                } else {
                    state.success_rate = rate;
                }
            }
            if total >= config.success_rate_request_volume {
                rated.push((i, rate));
            }
            if total >= config.failure_percentage_request_volume {
                percentage.push((i, rate));
            }
        }
        let mut changed = false;
        if !rated.is_empty() && rated.len() as u64 >= config.success_rate_minimum_hosts {
            let n = rated.len() as f64;
            let mean = rated.iter().map(|(_, r)| r).sum::<f64>() / n;
            let variance = rated.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
            let threshold =
                mean - config.success_rate_stdev_factor as f64 / 1000.0 * variance.sqrt();
            for (i, rate) in &rated {
                if *rate < threshold {
                    let kind = if local {
                        EjectionType::SuccessRateLocalOrigin
                    } else {
                        EjectionType::SuccessRate
                    };
                    self.stats.ejections_success_rate.inc();
                    self.stats.detected[kind.index()].inc();
                    changed |= self.eject(hosts[*i], hosts, kind, now);
                }
            }
        }
        if !percentage.is_empty()
            && percentage.len() as u64 >= config.failure_percentage_minimum_hosts
        {
            for (i, rate) in &percentage {
                if 100.0 - rate >= config.failure_percentage_threshold as f64 {
                    let kind = if local {
                        EjectionType::FailurePercentageLocalOrigin
                    } else {
                        EjectionType::FailurePercentage
                    };
                    self.stats.detected[kind.index()].inc();
                    if !hosts[*i].monitor().lock().ejected {
                        changed |= self.eject(hosts[*i], hosts, kind, now);
                    }
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests;
