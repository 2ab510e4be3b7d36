//! The retry state of one request: which outcomes are retried (route policy plus the
//! `x-envoy-retry-*` request headers), how many retries remain, the retry circuit breaker, and
//! Envoy's jittered exponential back-off.

use std::time::Duration;

use http::HeaderMap;

use crate::route::policy::{RetryOn, RetryPolicy};
use crate::upstream::Cluster;
use crate::upstream::circuit::{ResourceGuard, Thresholds};

/// Why an attempt failed without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResetKind {
    /// The connection could not be opened (or timed out opening).
    ConnectFailure,
    /// The connection was reset or closed before response headers.
    Reset,
    /// HTTP/2 `REFUSED_STREAM`: the upstream did not process the request.
    RefusedStream,
    /// The per-try timeout fired (Envoy resets the attempt locally).
    PerTryTimeout,
    /// A circuit breaker refused the attempt: never retried.
    Overflow,
}

/// What [`RetryState::decide`] says.
#[derive(Debug)]
pub(super) enum Decision {
    /// Do not retry (the outcome was not retriable).
    No,
    /// Retry after this back-off.
    Retry(Duration),
    /// Retriable, but no retries are left (flag URX).
    LimitExceeded,
    /// Retriable, but the retry circuit breaker is open (flag UO).
    Overflow,
}

/// Envoy's `JitteredExponentialBackOffStrategy`: a uniformly random wait below an interval that
/// doubles from the base up to the maximum.
#[derive(Debug)]
pub(super) struct BackOff {
    next_ms: u64,
    max_ms: u64,
}

impl BackOff {
    /// A back-off from `base` doubling up to `max`.
    pub(super) fn new(base: Duration, max: Duration) -> Self {
        BackOff {
            next_ms: (base.as_millis() as u64).max(1),
            max_ms: (max.as_millis() as u64).max(1),
        }
    }

    /// The next wait.
    pub(super) fn next(&mut self) -> Duration {
        let interval = self.next_ms;
        self.next_ms = if self.next_ms < self.max_ms / 2 {
            self.next_ms * 2
        } else {
            self.max_ms
        };
        Duration::from_millis(fastrand::u64(..interval).min(self.max_ms))
    }
}

/// One request's retry state.
#[derive(Debug)]
pub(super) struct RetryState<'a> {
    policy: Option<&'a RetryPolicy>,
    retry_on: RetryOn,
    extra_status_codes: Vec<u16>,
    remaining: u32,
    backoff: BackOff,
    /// A retry was scheduled and not yet judged (its unit of the retry breaker).
    armed: Option<ResourceGuard>,
    retried: bool,
}

const RETRY_ON: &str = "x-envoy-retry-on";
const RETRY_GRPC_ON: &str = "x-envoy-retry-grpc-on";
const MAX_RETRIES: &str = "x-envoy-max-retries";
const RETRIABLE_STATUS_CODES: &str = "x-envoy-retriable-status-codes";

impl<'a> RetryState<'a> {
    /// The state for a request with `headers` (the `x-envoy-retry-*` headers are read and
    /// removed; they only remain on requests trusted to send them).
    pub(super) fn new(policy: Option<&'a RetryPolicy>, headers: &mut HeaderMap) -> Self {
        let mut retry_on = policy.map_or(RetryOn::default(), |p| p.retry_on);
        for name in [RETRY_ON, RETRY_GRPC_ON] {
            if let Some(value) = headers.remove(name) {
                if let Ok(text) = value.to_str() {
                    retry_on.0 |= RetryOn::parse(text).0;
                }
            }
        }
        let mut remaining = policy.map_or(1, |p| p.num_retries);
        if let Some(value) = headers.remove(MAX_RETRIES) {
            if let Some(n) = value.to_str().ok().and_then(|v| v.trim().parse().ok()) {
                remaining = n;
            }
        }
        let extra_status_codes = headers
            .remove(RETRIABLE_STATUS_CODES)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .map(|text| {
                text.split(',')
                    .filter_map(|c| c.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let backoff = match policy {
            Some(p) => BackOff::new(p.base_interval, p.max_interval),
            None => BackOff::new(Duration::from_millis(25), Duration::from_millis(250)),
        };
        RetryState {
            policy,
            retry_on,
            extra_status_codes,
            remaining,
            backoff,
            armed: None,
            retried: false,
        }
    }

    /// Whether any retry is possible at all.
    pub(super) fn enabled(&self) -> bool {
        self.retry_on.0 != 0
    }

    /// Whether retries avoid endpoints already tried.
    pub(super) fn avoid_previous_hosts(&self) -> bool {
        self.policy.is_some_and(|p| p.avoid_previous_hosts)
    }

    /// Extra picks allowed to find an endpoint not tried before.
    pub(super) fn host_selection_attempts(&self) -> u32 {
        self.policy.map_or(0, |p| p.host_selection_attempts)
    }

    /// Whether a response with `status` and `headers` calls for a retry (Envoy's
    /// `wouldRetryFromHeaders`).
    pub(super) fn wants_response(&self, status: u16, headers: &HeaderMap) -> bool {
        let on = self.retry_on;
        if headers.contains_key("x-envoy-ratelimited") {
            return on.has(RetryOn::ENVOY_RATE_LIMITED);
        }
        if on.has(RetryOn::FIVE_XX) && status >= 500 {
            return true;
        }
        if on.has(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_STATUS_CODES)
            && (self
                .policy
                .is_some_and(|p| p.retriable_status_codes.contains(&status))
                || self.extra_status_codes.contains(&status))
        {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_HEADERS)
            && self
                .policy
                .is_some_and(|p| p.retriable_response_headers(headers))
        {
            return true;
        }
        let grpc = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        match grpc {
            Some(1) => on.has(RetryOn::GRPC_CANCELLED),
            Some(4) => on.has(RetryOn::GRPC_DEADLINE_EXCEEDED),
            Some(8) => on.has(RetryOn::GRPC_RESOURCE_EXHAUSTED),
            Some(13) => on.has(RetryOn::GRPC_INTERNAL),
            Some(14) => on.has(RetryOn::GRPC_UNAVAILABLE),
            _ => false,
        }
    }

    /// Whether a failure without response calls for a retry (Envoy's `wouldRetryFromReset`).
    pub(super) fn wants_reset(&self, kind: ResetKind) -> bool {
        let on = self.retry_on;
        match kind {
            ResetKind::Overflow => false,
            _ if on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET) => true,
            ResetKind::ConnectFailure => {
                on.has(RetryOn::CONNECT_FAILURE | RetryOn::RESET_BEFORE_REQUEST)
            }
            ResetKind::RefusedStream => on.has(RetryOn::REFUSED_STREAM),
            ResetKind::Reset | ResetKind::PerTryTimeout => false,
        }
    }

    /// Envoy's `shouldRetry`: judges the previous retry (a non-retriable outcome after one
    /// counts as `upstream_rq_retry_success`), then spends a retry and a unit of the retry
    /// circuit breaker if the outcome is retriable.
    pub(super) fn decide(
        &mut self,
        wants: bool,
        cluster: &Cluster,
        limits: &Thresholds,
    ) -> Decision {
        if self.armed.take().is_some() && !wants {
            cluster.stats.upstream_rq_retry_success.inc();
        }
        if !wants {
            return Decision::No;
        }
        if self.remaining == 0 {
            cluster.stats.upstream_rq_retry_limit_exceeded.inc();
            return Decision::LimitExceeded;
        }
        self.remaining -= 1;
        let Some(unit) = limits.retries.try_acquire() else {
            cluster.stats.upstream_rq_retry_overflow.inc();
            return Decision::Overflow;
        };
        self.armed = Some(unit);
        self.retried = true;
        cluster.stats.upstream_rq_retry.inc();
        cluster.stats.upstream_rq_retry_backoff_exponential.inc();
        Decision::Retry(self.backoff.next())
    }

    /// Whether the request was retried at least once.
    pub(super) fn retried(&self) -> bool {
        self.retried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_maximum_and_stays_below_the_interval() {
        let mut backoff = BackOff::new(Duration::from_millis(25), Duration::from_millis(250));
        let bounds = [25, 50, 100, 200, 250, 250, 250];
        for bound in bounds {
            for _ in 0..1 {
                let wait = backoff.next();
                assert!(wait < Duration::from_millis(bound), "{wait:?} >= {bound}ms");
            }
        }
        // Over many draws the waits spread over the whole interval.
        let mut max_seen = Duration::ZERO;
        for _ in 0..2000 {
            let mut b = BackOff::new(Duration::from_millis(100), Duration::from_millis(1000));
            max_seen = max_seen.max(b.next());
        }
        assert!(max_seen >= Duration::from_millis(90), "{max_seen:?}");
    }

    #[test]
    fn default_max_is_ten_times_the_base() {
        let policy = RetryPolicy::compile(&bosun_xds::pb::envoy::config::route::v3::RetryPolicy {
            retry_on: "5xx".into(),
            retry_back_off: Some(
                bosun_xds::pb::envoy::config::route::v3::retry_policy::RetryBackOff {
                    base_interval: Some(bosun_xds::pb::google::protobuf::Duration {
                        seconds: 0,
                        nanos: 10_000_000,
                    }),
                    max_interval: None,
                },
            ),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(policy.max_interval, Duration::from_millis(100));
        assert_eq!(policy.num_retries, 1);
    }

    #[test]
    fn what_is_retried() {
        let policy = RetryPolicy::compile(&bosun_xds::pb::envoy::config::route::v3::RetryPolicy {
            retry_on: "gateway-error,retriable-status-codes,unavailable".into(),
            retriable_status_codes: vec![418],
            ..Default::default()
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        let state = RetryState::new(Some(&policy), &mut headers);
        let empty = HeaderMap::new();
        assert!(state.wants_response(503, &empty));
        assert!(!state.wants_response(500, &empty));
        assert!(state.wants_response(418, &empty));
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(state.wants_response(200, &grpc));
        let mut limited = HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(!state.wants_response(503, &limited));
        assert!(state.wants_reset(ResetKind::ConnectFailure));
        assert!(state.wants_reset(ResetKind::PerTryTimeout));
        assert!(!state.wants_reset(ResetKind::Overflow));

        let connect_only =
            RetryPolicy::compile(&bosun_xds::pb::envoy::config::route::v3::RetryPolicy {
                retry_on: "connect-failure".into(),
                ..Default::default()
            })
            .unwrap();
        let state = RetryState::new(Some(&connect_only), &mut headers);
        assert!(state.wants_reset(ResetKind::ConnectFailure));
        assert!(!state.wants_reset(ResetKind::Reset));
        assert!(!state.wants_reset(ResetKind::RefusedStream));
        assert!(!state.wants_reset(ResetKind::PerTryTimeout));
        let refused = RetryPolicy::compile(&bosun_xds::pb::envoy::config::route::v3::RetryPolicy {
            retry_on: "refused-stream".into(),
            ..Default::default()
        })
        .unwrap();
        let state = RetryState::new(Some(&refused), &mut headers);
        assert!(state.wants_reset(ResetKind::RefusedStream));
        assert!(!state.wants_reset(ResetKind::Reset));
        assert!(!state.wants_response(503, &empty));
    }

    #[test]
    fn request_headers_add_conditions_and_set_the_count() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_ON, "5xx".parse().unwrap());
        headers.insert(MAX_RETRIES, "4".parse().unwrap());
        let state = RetryState::new(None, &mut headers);
        assert!(state.enabled());
        assert_eq!(state.remaining, 4);
        assert!(headers.is_empty());
    }
}
