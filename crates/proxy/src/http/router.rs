//! The router's upstream half: attempts with retries and per-try timeouts under the route's
//! global timeout, endpoint choice (hash, previous hosts), circuit-breaker overflows, request
//! mirroring, outlier detection reports, and Envoy's local replies for failures.

use std::time::Duration;

use std::future::Future as _;

use http::Method;
use http_body::Body as _;
use tokio::time::Instant as TokioInstant;

use super::replay::Replay;
use super::retry::{Decision, ResetKind, RetryState};
use super::*;
use crate::route::policy::{MirrorTarget, format_grpc_timeout, grpc_timeout, shadow_authority};
use crate::upstream::outlier::Outcome;
use crate::upstream::{Selection, UpstreamError};

static X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
static X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");
const UPSTREAM_RQ_TIMEOUT_MS: &str = "x-envoy-upstream-rq-timeout-ms";
const UPSTREAM_RQ_PER_TRY_TIMEOUT_MS: &str = "x-envoy-upstream-rq-per-try-timeout-ms";

/// A request's timeouts, from the route and the `x-envoy-upstream-rq-*` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Timeouts {
    /// Over all attempts (the route `timeout`).
    pub global: Option<Duration>,
    /// For each attempt until response headers.
    pub per_try: Option<Duration>,
    /// For each attempt between upstream events.
    pub per_try_idle: Option<Duration>,
}

fn header_millis(headers: &mut HeaderMap, name: &str) -> Option<Option<Duration>> {
    let value = headers.remove(name)?;
    let millis: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Some(Duration::from_millis(millis)).filter(|d| !d.is_zero()))
}

impl Timeouts {
    /// Envoy's `finalTimeout`: route timeout (or the capped `grpc-timeout` under
    /// `max_grpc_timeout`; none under `max_stream_duration`), overridden by the request's
    /// timeout headers; a per-try timeout not shorter than the global one is dropped.
    pub(super) fn compute(forward: &route::Forward, headers: &mut HeaderMap, grpc: bool) -> Self {
        let mut global = if forward.stream_duration.is_some() {
            None
        } else if let (true, Some(max)) = (grpc, forward.max_grpc_timeout) {
            let mut timeout = grpc_timeout(headers).unwrap_or(Duration::ZERO);
            if let Some(offset) = forward.grpc_timeout_offset {
                if offset < timeout {
                    timeout -= offset;
                }
            }
            if !max.is_zero() && (timeout.is_zero() || timeout > max) {
                timeout = max;
            }
            Some(timeout).filter(|t| !t.is_zero())
        } else {
            forward.timeout
        };
        if let Some(value) = header_millis(headers, UPSTREAM_RQ_TIMEOUT_MS) {
            global = value;
        }
        let policy = forward.retry.as_deref();
        let mut per_try = policy.and_then(|p| p.per_try_timeout);
        if let Some(value) = header_millis(headers, UPSTREAM_RQ_PER_TRY_TIMEOUT_MS) {
            per_try = value;
        }
        if let (Some(p), Some(g)) = (per_try, global) {
            if p >= g {
                per_try = None;
            }
        }
        let timeouts = Timeouts {
            global,
            per_try,
            per_try_idle: policy.and_then(|p| p.per_try_idle_timeout),
        };
        if grpc && forward.stream_duration.is_none() && forward.max_grpc_timeout.is_some() {
            if let Some(expected) = timeouts.expected() {
                if let Ok(value) = HeaderValue::from_str(&format_grpc_timeout(expected)) {
                    headers.insert("grpc-timeout", value);
                }
            }
        }
        timeouts
    }

    /// What the upstream is told to expect (`x-envoy-expected-rq-timeout-ms`).
    pub(super) fn expected(&self) -> Option<Duration> {
        self.per_try.or(self.global)
    }

    /// What a later attempt is told to expect: what is left of the global timeout when that
    /// is less (1 ms when nothing is left: 0 would mean no timeout).
    fn expected_after(&self, elapsed: Duration) -> Option<Duration> {
        let expected = self.expected()?;
        let Some(global) = self.global else {
            return Some(expected);
        };
        let elapsed = Duration::from_millis(elapsed.as_millis() as u64);
        Some(if elapsed >= global {
            Duration::from_millis(1)
        } else {
            expected.min(global - elapsed)
        })
    }
}

/// When the whole stream must be over (`max_stream_duration` of the route or the connection
/// manager, or a capped `grpc-timeout` under `grpc_timeout_header_max`), as Envoy's
/// `refreshDurationTimeout`.
pub(super) fn stream_deadline(
    hcm: &HttpConnectionManager,
    forward: &route::Forward,
    headers: &HeaderMap,
    started: Option<Instant>,
) -> Option<TokioInstant> {
    let limits = forward.stream_duration;
    let header_max = limits.and_then(|l| l.grpc_header_max);
    let timeout = match (grpc_timeout(headers), header_max) {
        (Some(mut timeout), Some(max)) => {
            if !max.is_zero() && timeout > max {
                timeout = max;
            }
            if !timeout.is_zero() {
                if let Some(offset) = limits.and_then(|l| l.grpc_header_offset) {
                    timeout = timeout.saturating_sub(offset);
                }
            }
            Some(timeout)
        }
        _ => match limits.and_then(|l| l.max) {
            Some(max) => Some(max).filter(|m| !m.is_zero()),
            None => hcm.max_stream_duration,
        },
    }?;
    let started = started.map_or_else(TokioInstant::now, TokioInstant::from_std);
    Some(started + timeout)
}

/// Everything the router needs to send a request upstream.
pub(super) struct Plan<'a> {
    /// The connection manager.
    pub hcm: &'a HttpConnectionManager,
    /// The downstream connection.
    pub connection: &'a Arc<Connection>,
    /// Where the request goes.
    pub cluster: Arc<Cluster>,
    /// The route's forwarding action.
    pub forward: &'a route::Forward,
    /// The matched virtual host (attempt-count settings).
    pub vhost: &'a route::VirtualHost,
    /// The request method.
    pub method: Method,
    /// The request's authority (before host rewrites).
    pub authority: &'a str,
    /// The path to send (after rewrites).
    pub path: String,
    /// Whether the upstream speaks HTTP/2.
    pub h2: bool,
    /// The request headers to send (without `Host`).
    pub headers: HeaderMap,
    /// Whether the request is gRPC (local replies in gRPC form).
    pub grpc: bool,
    /// The request's hash for consistent hashing.
    pub hash: Option<u64>,
    /// The request's timeouts.
    pub timeouts: Timeouts,
    /// Whether the request asks for a protocol upgrade (never retried nor mirrored).
    pub upgrade: bool,
}

/// How one attempt ended.
enum Attempt {
    Response(Response<Body>),
    Failed(UpstreamError),
    PerTryTimeout,
    GlobalTimeout,
}

/// Envoy's HTTP status for a gRPC status, as outlier detection sees trailers-only answers.
fn grpc_to_http(status: u32) -> u16 {
    match status {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

impl Plan<'_> {
    fn host_header(&self, host: &Host) -> String {
        match &self.forward.host_rewrite {
            Some(HostRewrite::Literal(value)) => {
                value.to_str().unwrap_or(self.authority).to_owned()
            }
            Some(HostRewrite::Auto) => host
                .hostname
                .clone()
                .unwrap_or_else(|| self.authority.to_owned()),
            None => self.authority.to_owned(),
        }
    }

    /// The request of one attempt.
    fn request(&self, host: &Host, mut headers: HeaderMap, body: Body) -> Option<Request<Body>> {
        let host_header = self.host_header(host);
        let uri = if self.h2 {
            Uri::builder()
                .scheme(if self.cluster.tls.is_some() {
                    "https"
                } else {
                    "http"
                })
                .authority(host_header.as_str())
                .path_and_query(self.path.as_str())
                .build()
        } else {
            Uri::builder().path_and_query(self.path.as_str()).build()
        }
        .ok()?;
        if self.h2 {
            headers.remove(header::HOST);
        } else if let Ok(value) = HeaderValue::from_str(&host_header) {
            headers.insert(header::HOST, value);
        }
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = if self.h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        *request.headers_mut() = headers;
        Some(request)
    }

    /// Sends copies of the request to the mirror clusters; their answers are dropped.
    fn mirror(&self, replay: Option<&Replay>, body_is_empty: bool) {
        for mirror in &self.forward.mirrors {
            if !mirror.sampled() {
                continue;
            }
            let cluster = match &mirror.target {
                MirrorTarget::Cluster(slot) => slot.load(),
                MirrorTarget::Header(name) => self
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|name| self.hcm.registry.find_cluster(name)),
            };
            let Some(cluster) = cluster else { continue };
            let body = if body_is_empty {
                Body::empty()
            } else {
                match replay.and_then(Replay::reader) {
                    Some(body) => body,
                    None => {
                        cluster.stats.retry_or_shadow_abandoned.inc();
                        continue;
                    }
                }
            };
            let selection = Selection {
                hash: self.hash,
                ..Selection::default()
            };
            let Some(host) = cluster.choose_host(Some(self.connection.local), &selection) else {
                cluster.stats.upstream_cx_none_healthy.inc();
                continue;
            };
            let authority = mirror
                .host_rewrite
                .clone()
                .unwrap_or_else(|| self.host_header(&host));
            let authority = if mirror.append_shadow {
                shadow_authority(&authority)
            } else {
                authority
            };
            let h2 = cluster.uses_h2(if self.h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            });
            let uri = if h2 {
                Uri::builder()
                    .scheme(if cluster.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    })
                    .authority(authority.as_str())
                    .path_and_query(self.path.as_str())
                    .build()
            } else {
                Uri::builder().path_and_query(self.path.as_str()).build()
            };
            let Ok(uri) = uri else { continue };
            let mut headers = self.headers.clone();
            if h2 {
                headers.remove(header::HOST);
            } else if let Ok(value) = HeaderValue::from_str(&authority) {
                headers.insert(header::HOST, value);
            }
            let mut request = Request::new(body);
            *request.method_mut() = self.method.clone();
            *request.uri_mut() = uri;
            *request.version_mut() = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            *request.headers_mut() = headers;
            let timeout = self.timeouts.global;
            let priority = self.forward.priority;
            tokio::spawn(async move {
                let _active = (
                    GaugeGuard::new(&cluster.stats.upstream_rq_active),
                    GaugeGuard::new(&host.stats.rq_active),
                );
                let exchange = async {
                    let response = cluster.send(&host, request, h2, priority).await?;
                    let status = response.status().as_u16();
                    // Read the answer to its end so the connection can be reused.
                    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                    Ok::<u16, UpstreamError>(status)
                };
                let result = match timeout {
                    Some(limit) => tokio::time::timeout(limit, exchange).await.ok(),
                    None => Some(exchange.await),
                };
                match result {
                    Some(Ok(status)) => {
                        cluster.stats.upstream_rq_completed.inc();
                        cluster.stats.upstream_rq.record(status);
                        if status >= 500 {
                            host.stats.rq_error.inc();
                        } else {
                            host.stats.rq_success.inc();
                        }
                    }
                    Some(Err(_)) => host.stats.rq_error.inc(),
                    None => {
                        cluster.stats.upstream_rq_timeout.inc();
                        host.stats.rq_timeout.inc();
                    }
                }
            });
        }
    }
}

/// Envoy's `503 no healthy upstream` (flag UH).
fn no_healthy_upstream(plan: &Plan<'_>, info: &mut StreamInfo, attempt: u32) -> Response<Body> {
    info.flags.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
    info.details = "no_healthy_upstream";
    let mut response = LocalReply::new(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
        .into_response(plan.grpc);
    attempt_count_downstream(plan, &mut response, attempt);
    response
}

/// Sends `body` upstream as `plan` says, with retries, and returns the response or Envoy's
/// local reply for the failure.
pub(super) async fn forward(
    mut plan: Plan<'_>,
    body: Body,
    info: &mut StreamInfo,
    chosen: &mut Option<Arc<Host>>,
) -> Response<Body> {
    let cluster = plan.cluster.clone();
    let forward = plan.forward;
    let limits = cluster.breakers.thresholds(forward.priority);
    let mut retry = RetryState::new(forward.retry.as_deref(), &mut plan.headers);
    let retries_possible = retry.enabled() && !plan.upgrade;
    if retry.enabled() {
        if let Some(policy) = forward.retry.as_deref() {
            let view = route::policy::headers_only(&plan.headers);
            if !policy.request_is_retriable(&view) {
                retry = RetryState::new(None, &mut HeaderMap::new());
            }
        }
    }
    let body_is_empty = body.is_end_stream();
    let needs_replay = (retries_possible || !forward.mirrors.is_empty()) && !body_is_empty;
    let (replay, mut first_body) = if needs_replay {
        (Some(Replay::new(body, forward.buffer_limit)), None)
    } else {
        (None, Some(body))
    };
    if !plan.upgrade {
        plan.mirror(replay.as_ref(), body_is_empty);
    }
    let forwarding_since = Instant::now();
    let global_deadline = plan.timeouts.global.map(|t| TokioInstant::now() + t);
    // One timer for the route timeout, from the first attempt to the end of the response body.
    let mut global_sleep = global_deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut attempt: u32 = 0;
    let mut abandoned = false;
    loop {
        attempt += 1;
        let selection = Selection {
            hash: plan.hash,
            avoid: if retry.avoid_previous_hosts() {
                &tried
            } else {
                &[]
            },
            attempts: 1 + retry.host_selection_attempts(),
        };
        let Some(host) = cluster.choose_host(Some(plan.connection.local), &selection) else {
            cluster.stats.upstream_cx_none_healthy.inc();
            return no_healthy_upstream(&plan, info, attempt);
        };
        info.upstream_host = Some(host.address);
        *chosen = Some(host.clone());

        let request_body = match (first_body.take(), &replay) {
            (Some(body), _) => body,
            // Only the first attempt may read a body beyond the buffer.
            (None, Some(replay)) => replay.reader().unwrap_or_default(),
            (None, None) => Body::empty(),
        };
        let mut headers = if retries_possible {
            plan.headers.clone()
        } else {
            std::mem::take(&mut plan.headers)
        };
        if plan.vhost.attempt_count_upstream {
            headers.insert(X_ENVOY_ATTEMPT_COUNT.clone(), HeaderValue::from(attempt));
        }
        if attempt > 1 && !plan.hcm.suppress_envoy_headers {
            if let Some(expected) = plan.timeouts.expected_after(forwarding_since.elapsed()) {
                headers.insert(
                    X_ENVOY_EXPECTED_TIMEOUT.clone(),
                    HeaderValue::from(expected.as_millis() as u64),
                );
            }
        }
        let Some(request) = plan.request(&host, headers, request_body) else {
            info.details = "invalid_path";
            return LocalReply::new(StatusCode::BAD_REQUEST, "").into_response(plan.grpc);
        };

        let active = (
            GaugeGuard::new(&cluster.stats.upstream_rq_active),
            GaugeGuard::new(&host.stats.rq_active),
        );
        let sent_at = Instant::now();
        let per_try = plan
            .timeouts
            .per_try
            .into_iter()
            .chain(plan.timeouts.per_try_idle)
            .min();
        let per_try_deadline = per_try.map(|t| TokioInstant::now() + t);
        let sending = cluster.send(&host, request, plan.h2, forward.priority);
        let outcome = tokio::select! {
            result = sending => match result {
                Ok(response) => Attempt::Response(response),
                Err(error) => Attempt::Failed(error),
            },
            () = sleep_until(per_try_deadline) => Attempt::PerTryTimeout,
            () = wait(&mut global_sleep) => Attempt::GlobalTimeout,
        };
        if replay.as_ref().is_some_and(Replay::overflowed) && !abandoned {
            abandoned = true;
            cluster.stats.retry_or_shadow_abandoned.inc();
        }
        let can_replay = !abandoned || body_is_empty;
        match outcome {
            Attempt::Response(mut response) => {
                let status = response.status().as_u16();
                let outlier_code = if plan.grpc {
                    response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .map_or(status, grpc_to_http)
                } else {
                    status
                };
                cluster.report(&host, Outcome::Response(outlier_code));
                let wants = retries_possible
                    && can_replay
                    && retry.wants_response(status, response.headers());
                match retry.decide(wants, &cluster, limits) {
                    Decision::Retry(backoff) => {
                        host.stats.rq_error.inc();
                        cluster.stats.retry_upstream_rq.record(status);
                        drop(response);
                        drop(active);
                        tried.push(host);
                        if !back_off(backoff, global_deadline).await {
                            return global_timeout(&plan, &cluster, None, info, attempt);
                        }
                        continue;
                    }
                    Decision::Overflow => info.flags.insert(ResponseFlags::UPSTREAM_OVERFLOW),
                    Decision::LimitExceeded => info
                        .flags
                        .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED),
                    Decision::No => {}
                }
                cluster.stats.upstream_rq_completed.inc();
                cluster.stats.upstream_rq.record(status);
                if status >= 500 {
                    host.stats.rq_error.inc();
                } else {
                    host.stats.rq_success.inc();
                }
                info.details = "via_upstream";
                info.response_started = Some(Instant::now());
                if status != 101 {
                    remove_hop_by_hop(response.headers_mut(), false);
                }
                if !plan.hcm.suppress_envoy_headers {
                    response.headers_mut().insert(
                        X_ENVOY_UPSTREAM_SERVICE_TIME.clone(),
                        HeaderValue::from(sent_at.elapsed().as_millis() as u64),
                    );
                }
                attempt_count_downstream(&plan, &mut response, attempt);
                // The request stays active (gauges, LEAST_REQUEST) until the body is read.
                let (parts, mut body) = response.into_parts();
                let idle = plan.timeouts.per_try_idle;
                if status != 101
                    && !body.is_end_stream()
                    && (global_deadline.is_some() || idle.is_some())
                {
                    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    info.body_timed_out = Some(timed_out.clone());
                    body = Body::boxed(TimedBody {
                        timed_out,
                        inner: body,
                        deadline: global_sleep.take(),
                        idle: idle.map(|i| (i, Box::pin(tokio::time::sleep(i)))),
                        cluster: cluster.clone(),
                        host: host.clone(),
                    });
                }
                return Response::from_parts(
                    parts,
                    body.observe(upstream::pool::Hold(Some(active))),
                );
            }
            // Envoy finds no connection pool for the endpoint: it answers as if there were
            // no endpoint, and never retries.
            Attempt::Failed(UpstreamError::PoolOverflow) => {
                info.upstream_host = None;
                *chosen = None;
                return no_healthy_upstream(&plan, info, attempt);
            }
            Attempt::Failed(error) => {
                drop(active);
                let kind = match &error {
                    UpstreamError::Connect(_) => ResetKind::ConnectFailure,
                    UpstreamError::Reset(reset)
                        if StreamReset::of(reset) == StreamReset::RemoteRefusedStream =>
                    {
                        ResetKind::RefusedStream
                    }
                    UpstreamError::Reset(_) => ResetKind::Reset,
                    UpstreamError::Overflow | UpstreamError::PoolOverflow => ResetKind::Overflow,
                };
                if kind != ResetKind::Overflow {
                    cluster.report(&host, Outcome::ConnectFailed);
                }
                let wants = retries_possible && can_replay && retry.wants_reset(kind);
                match retry.decide(wants, &cluster, limits) {
                    Decision::Retry(backoff) => {
                        host.stats.rq_error.inc();
                        tried.push(host);
                        if !back_off(backoff, global_deadline).await {
                            return global_timeout(&plan, &cluster, None, info, attempt);
                        }
                        continue;
                    }
                    Decision::Overflow => info.flags.insert(ResponseFlags::UPSTREAM_OVERFLOW),
                    Decision::LimitExceeded => info
                        .flags
                        .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED),
                    Decision::No => {}
                }
                let mut response =
                    upstream_failure(&plan, &cluster, &host, error, info, retry.retried());
                attempt_count_downstream(&plan, &mut response, attempt);
                return response;
            }
            Attempt::PerTryTimeout => {
                drop(active);
                cluster.stats.upstream_rq_per_try_timeout.inc();
                host.stats.rq_timeout.inc();
                cluster.report(&host, Outcome::Timeout);
                let wants =
                    retries_possible && can_replay && retry.wants_reset(ResetKind::PerTryTimeout);
                match retry.decide(wants, &cluster, limits) {
                    Decision::Retry(backoff) => {
                        host.stats.rq_error.inc();
                        tried.push(host);
                        if !back_off(backoff, global_deadline).await {
                            return global_timeout(&plan, &cluster, None, info, attempt);
                        }
                        continue;
                    }
                    Decision::Overflow => info.flags.insert(ResponseFlags::UPSTREAM_OVERFLOW),
                    Decision::LimitExceeded => info
                        .flags
                        .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED),
                    Decision::No => {}
                }
                host.stats.rq_error.inc();
                cluster.stats.upstream_rq.record(504);
                info.flags.insert(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
                info.details = "upstream_per_try_timeout";
                let mut response =
                    LocalReply::new(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
                        .into_response(plan.grpc);
                attempt_count_downstream(&plan, &mut response, attempt);
                return response;
            }
            Attempt::GlobalTimeout => {
                drop(active);
                cluster.report(&host, Outcome::Timeout);
                return global_timeout(&plan, &cluster, Some(&host), info, attempt);
            }
        }
    }
}

/// A response body under the route timeout (which lasts until the response is complete) and
/// the per-try idle timeout (between upstream events): when one fires the body fails, and the
/// downstream stream is reset, as Envoy resets it once the response has started.
struct TimedBody {
    inner: Body,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    idle: Option<(Duration, std::pin::Pin<Box<tokio::time::Sleep>>)>,
    cluster: Arc<Cluster>,
    host: Arc<Host>,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some((idle, sleep)) = &mut this.idle {
                sleep.as_mut().reset(TokioInstant::now() + *idle);
            }
            return Poll::Ready(frame);
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                this.timed_out
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                this.cluster.stats.upstream_rq_timeout.inc();
                this.host.stats.rq_timeout.inc();
                return Poll::Ready(Some(Err("upstream request timeout".into())));
            }
        }
        if let Some((_, sleep)) = &mut this.idle {
            if sleep.as_mut().poll(cx).is_ready() {
                this.timed_out
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                this.cluster.stats.upstream_rq_per_try_idle_timeout.inc();
                this.host.stats.rq_timeout.inc();
                return Poll::Ready(Some(Err("upstream per-try idle timeout".into())));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// How an upstream stream ended before its response headers, in Envoy's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamReset {
    /// The connection closed (or failed) under the stream.
    ConnectionTermination,
    /// The upstream reset the stream (HTTP/2 `RST_STREAM`).
    Remote,
    /// The upstream reset the stream with `REFUSED_STREAM`: it did not process it.
    RemoteRefusedStream,
}

impl StreamReset {
    fn of(error: &hyper::Error) -> StreamReset {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                if h2.is_reset() && h2.is_remote() {
                    return if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                        StreamReset::RemoteRefusedStream
                    } else {
                        StreamReset::Remote
                    };
                }
            }
            source = e.source();
        }
        StreamReset::ConnectionTermination
    }

    /// Envoy's response flag and reset reason (`resetReasonToString`).
    fn flag_and_reason(self) -> (ResponseFlags, &'static str) {
        match self {
            StreamReset::ConnectionTermination => (
                ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                "connection termination",
            ),
            StreamReset::Remote => (ResponseFlags::UPSTREAM_REMOTE_RESET, "remote reset"),
            StreamReset::RemoteRefusedStream => (
                ResponseFlags::UPSTREAM_REMOTE_RESET,
                "remote refused stream reset",
            ),
        }
    }
}

async fn wait(sleep: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits `backoff` unless the global timeout comes first; returns whether to go on.
async fn back_off(backoff: Duration, global_deadline: Option<TokioInstant>) -> bool {
    let wake = TokioInstant::now() + backoff;
    match global_deadline {
        Some(deadline) if deadline <= wake => {
            tokio::time::sleep_until(deadline).await;
            false
        }
        _ => {
            tokio::time::sleep_until(wake).await;
            true
        }
    }
}

fn attempt_count_downstream(plan: &Plan<'_>, response: &mut Response<Body>, attempt: u32) {
    if plan.vhost.attempt_count_downstream {
        response
            .headers_mut()
            .insert(X_ENVOY_ATTEMPT_COUNT.clone(), HeaderValue::from(attempt));
    }
}

fn global_timeout(
    plan: &Plan<'_>,
    cluster: &Cluster,
    host: Option<&Host>,
    info: &mut StreamInfo,
    attempt: u32,
) -> Response<Body> {
    cluster.stats.upstream_rq_timeout.inc();
    if let Some(host) = host {
        host.stats.rq_timeout.inc();
        host.stats.rq_error.inc();
    }
    cluster.stats.upstream_rq.record(504);
    info.flags.insert(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
    info.details = "upstream_response_timeout";
    let mut response = LocalReply::new(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
        .into_response(plan.grpc);
    attempt_count_downstream(plan, &mut response, attempt);
    response
}

fn upstream_failure(
    plan: &Plan<'_>,
    cluster: &Cluster,
    host: &Host,
    error: UpstreamError,
    info: &mut StreamInfo,
    retried: bool,
) -> Response<Body> {
    host.stats.rq_error.inc();
    cluster.stats.upstream_rq.record(503);
    let (flag, reason, transport) = match &error {
        UpstreamError::Connect(connect) => (
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            "remote connection failure",
            Some(connect.reason()),
        ),
        UpstreamError::Reset(reset) => {
            let reset = StreamReset::of(reset);
            // Envoy's pools count only plain remote resets as received.
            if reset == StreamReset::Remote {
                cluster.stats.upstream_rq_rx_reset.inc();
            }
            let (flag, reason) = reset.flag_and_reason();
            (flag, reason, None)
        }
        UpstreamError::Overflow | UpstreamError::PoolOverflow => {
            (ResponseFlags::UPSTREAM_OVERFLOW, "overflow", None)
        }
    };
    info.flags.insert(flag);
    info.details = "upstream_reset_before_response_started";
    let reason_in_details = match &transport {
        Some(transport) => format!("{reason}|{transport}"),
        None => reason.to_owned(),
    };
    info.details_reason = Some(reason_in_details.replace(char::is_whitespace, "_"));
    let retried = if retried {
        "retried and the latest "
    } else {
        ""
    };
    // Envoy 1.40 keeps the transport failure reason for the access log, not the body.
    let body = format!(
        "upstream connect error or disconnect/reset before headers. {retried}reset reason: {reason}"
    );
    info.transport_failure = transport;
    let mut response =
        LocalReply::new(StatusCode::SERVICE_UNAVAILABLE, body).into_response(plan.grpc);
    if matches!(error, UpstreamError::Overflow) && !plan.hcm.suppress_envoy_headers {
        response
            .headers_mut()
            .insert(X_ENVOY_OVERLOADED.clone(), HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_statuses_map_to_http_for_outlier_detection() {
        assert_eq!(grpc_to_http(14), 503);
        assert_eq!(grpc_to_http(4), 504);
        assert_eq!(grpc_to_http(0), 200);
        assert_eq!(grpc_to_http(13), 500);
    }
}
