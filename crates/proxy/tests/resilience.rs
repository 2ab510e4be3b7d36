//! Resilience end to end: retries, timeouts, faults, mirroring, load balancing, circuit breaking,
//! outlier detection and health checks, against upstreams on loopback that fail, hang, reset or
//! crawl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun_proxy::testing::{Answer, Mode, TestUpstream, eventually, get, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use common::{Running, start};

/// A bootstrap with one HTTP listener (`http`), the given virtual hosts (indented YAML list
/// items), HTTP filters before the router, and clusters.
fn bootstrap(virtual_hosts: &str, filters: &str, clusters: &str) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local
            validate_clusters: false
            virtual_hosts:
{virtual_hosts}
          http_filters:
{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#
    )
}

/// A static cluster over `endpoints` with extra fields (indented YAML).
fn cluster(name: &str, endpoints: &[SocketAddr], extra: &str) -> String {
    let lb_endpoints: String = endpoints
        .iter()
        .map(|a| {
            format!(
                "        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}\n",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: 1s
{extra}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
{lb_endpoints}"
    )
}

/// One virtual host `main` for every domain with these routes (indented YAML list items).
fn vhost(extra: &str, routes: &str) -> String {
    format!(
        "            - name: main
              domains: [\"*\"]
{extra}
              routes:
{routes}"
    )
}

fn counter(running: &Running, name: &str) -> u64 {
    running.proxy.stats.counter(name).get()
}

fn gauge(running: &Running, name: &str) -> i64 {
    running.proxy.stats.gauge(name).get()
}

async fn request(address: SocketAddr, path: &str) -> Answer {
    get(address, "example.com", path).await.unwrap()
}

fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn retries_hide_a_flaky_backend_and_count_attempts() {
    let flaky = TestUpstream::start("flaky").await.unwrap();
    // Every other request fails: the first of each pair.
    flaky.set_mode(Mode::FailEvery {
        every: 2,
        status: 503,
    });
    let routes = "              - match: {prefix: /}
                route:
                  cluster: flaky
                  retry_policy: {retry_on: 5xx, num_retries: 3}
";
    let running = start(&bootstrap(
        &vhost(
            "              include_request_attempt_count: true\n              include_attempt_count_in_response: true",
            routes,
        ),
        "",
        &cluster("flaky", &[flaky.address], ""),
    ))
    .await;
    let address = running.listener("http");
    for _ in 0..10 {
        let answer = request(address, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        // The failed first attempt and the second one that worked.
        assert_eq!(answer.header("x-envoy-attempt-count"), Some("2"));
        assert_eq!(answer.json()["headers"]["x-envoy-attempt-count"], "2");
    }
    assert_eq!(flaky.count(), 20);
    assert_eq!(counter(&running, "cluster.flaky.upstream_rq_retry"), 10);
    assert_eq!(
        counter(&running, "cluster.flaky.upstream_rq_retry_success"),
        10
    );
    assert_eq!(counter(&running, "cluster.flaky.retry.upstream_rq_503"), 10);
    assert_eq!(counter(&running, "cluster.flaky.upstream_rq_200"), 10);
}

#[tokio::test]
async fn exhausted_retries_pass_the_last_answer_on_with_flag_urx() {
    let down = TestUpstream::start("down").await.unwrap();
    down.set_mode(Mode::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let routes = "              - match: {prefix: /}
                route:
                  cluster: down
                  retry_policy:
                    retry_on: gateway-error
                    num_retries: 2
                    retry_back_off: {base_interval: 0.001s}
";
    let yaml = bootstrap(
        &vhost(
            "              include_attempt_count_in_response: true",
            routes,
        ),
        "",
        &cluster("down", &[down.address], ""),
    )
    .replace(
        "          stat_prefix: ingress_http\n",
        &format!(
            "          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format: {{text_format_source: {{inline_string: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\"}}}}
",
            log.display()
        ),
    );
    let running = start(&yaml).await;
    let answer = request(running.listener("http"), "/").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("x-envoy-attempt-count"), Some("3"));
    assert_eq!(down.count(), 3);
    assert_eq!(
        counter(&running, "cluster.down.upstream_rq_retry_limit_exceeded"),
        1
    );
    let line = eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.ends_with('\n'))
    })
    .await
    .unwrap();
    assert_eq!(line, "503 URX\n");
}

#[tokio::test]
async fn per_try_timeouts_move_on_to_another_endpoint() {
    let hung = TestUpstream::start("hung").await.unwrap();
    hung.set_mode(Mode::Hang);
    let good = TestUpstream::start("good").await.unwrap();
    let routes = "              - match: {prefix: /}
                route:
                  cluster: pair
                  timeout: 5s
                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    per_try_timeout: 0.2s
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}
                    host_selection_retry_max_attempts: 5
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &cluster("pair", &[hung.address, good.address], ""),
    ))
    .await;
    let address = running.listener("http");
    for _ in 0..6 {
        let answer = request(address, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-upstream"), Some("good"));
        // The per-try timeout, not the global one, is what the upstream expects.
        assert_eq!(
            answer.json()["headers"]["x-envoy-expected-rq-timeout-ms"],
            "200"
        );
    }
    assert!(hung.count() >= 1);
    assert_eq!(
        counter(&running, "cluster.pair.upstream_rq_per_try_timeout"),
        hung.count()
    );
}

#[tokio::test]
async fn the_global_timeout_covers_every_attempt() {
    let slow = TestUpstream::start("slow").await.unwrap();
    slow.set_mode(Mode::DelayMs(150));
    let routes = "              - match: {prefix: /}
                route:
                  cluster: slow
                  timeout: 0.4s
                  retry_policy: {retry_on: 5xx, num_retries: 10, per_try_timeout: 0.1s}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &cluster("slow", &[slow.address], ""),
    ))
    .await;
    let started = Instant::now();
    let answer = request(running.listener("http"), "/").await;
    let took = started.elapsed();
    assert_eq!(answer.status, 504);
    assert_eq!(answer.text(), "upstream request timeout");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(counter(&running, "cluster.slow.upstream_rq_timeout"), 1);
    assert!(counter(&running, "cluster.slow.upstream_rq_per_try_timeout") >= 2);
}

#[tokio::test]
async fn timeouts_also_bound_the_response_body() {
    let a = TestUpstream::start("a").await.unwrap();
    let routes = "              - match: {prefix: /, headers: [{name: x-case, string_match: {exact: idle}}]}
                route: {cluster: a, timeout: 5s, retry_policy: {retry_on: 5xx, per_try_idle_timeout: 0.1s}}
              - match: {prefix: /}
                route: {cluster: a, timeout: 0.3s}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &cluster("a", &[a.address], ""),
    ))
    .await;
    let address = running.listener("http");
    // Three chunks 50 ms apart end well within the route timeout.
    let answer = request(address, "/drip/50").await;
    assert_eq!(answer.text(), "one two three");
    // 200 ms apart they do not: headers came, the body is cut.
    assert!(get(address, "example.com", "/drip/200").await.is_err());
    assert_eq!(counter(&running, "cluster.a.upstream_rq_timeout"), 1);
    // The per-try idle timeout watches the gaps between chunks.
    let idle: BTreeMap<&str, &str> = [("x-case", "idle")].into();
    let answer = get_with_result(address, "/drip/50", &idle).await.unwrap();
    assert_eq!(answer.text(), "one two three");
    assert!(get_with_result(address, "/drip/200", &idle).await.is_err());
    assert_eq!(
        counter(&running, "cluster.a.upstream_rq_per_try_idle_timeout"),
        1
    );
}

async fn get_with_result(
    address: SocketAddr,
    path: &str,
    headers: &BTreeMap<&str, &str>,
) -> Result<Answer, String> {
    let mut builder = Request::get(path).header("host", "example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(address, builder.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn connect_failures_are_retried_elsewhere() {
    let good = TestUpstream::start("good").await.unwrap();
    let routes = "              - match: {prefix: /retry}
                route:
                  cluster: mixed
                  retry_policy:
                    retry_on: connect-failure
                    num_retries: 2
                    retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}]
                    host_selection_retry_max_attempts: 3
              - match: {prefix: /}
                route: {cluster: mixed}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &cluster("mixed", &[closed_port(), good.address], ""),
    ))
    .await;
    let address = running.listener("http");
    let mut failures = 0;
    for _ in 0..8 {
        let answer = request(address, "/retry").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let plain = request(address, "/").await;
        if plain.status == 503 {
            failures += 1;
            assert_eq!(
                plain.text(),
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
            );
        }
    }
    // Round robin over two endpoints: without retries half fail.
    assert!(failures >= 2, "{failures}");
}

#[tokio::test]
async fn request_bodies_are_replayed_on_retry() {
    let flaky = TestUpstream::start("flaky").await.unwrap();
    flaky.set_mode(Mode::FailEvery {
        every: 2,
        status: 502,
    });
    let routes = "              - match: {prefix: /}
                route:
                  cluster: flaky
                  retry_policy: {retry_on: gateway-error, num_retries: 1}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &cluster("flaky", &[flaky.address], ""),
    ))
    .await;
    let body = "x".repeat(100_000);
    let request = Request::post("/upload")
        .header("host", "example.com")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let answer = send(running.listener("http"), request).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["body_bytes"], 100_000);
    assert_eq!(flaky.count(), 2);
}

const FAULT_FILTER: &str = "          - name: envoy.filters.http.fault
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort:
                header_abort: {}
                percentage: {numerator: 100}
              delay:
                header_delay: {}
                percentage: {numerator: 100}
";

#[tokio::test]
async fn faults_abort_and_delay_per_route_and_by_header() {
    let a = TestUpstream::start("a").await.unwrap();
    let routes = "              - match: {prefix: /abort}
                route: {cluster: a}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 418, percentage: {numerator: 100}}
              - match: {prefix: /delay}
                route: {cluster: a}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    delay: {fixed_delay: 0.3s, percentage: {numerator: 100}}
              - match: {prefix: /never}
                route: {cluster: a}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 500, percentage: {numerator: 0}}
              - match: {prefix: /}
                route: {cluster: a}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        FAULT_FILTER,
        &cluster("a", &[a.address], ""),
    ))
    .await;
    let address = running.listener("http");
    let answer = request(address, "/abort").await;
    assert_eq!(answer.status, 418);
    assert_eq!(answer.text(), "fault filter abort");
    assert_eq!(a.count(), 0);
    let started = Instant::now();
    let answer = request(address, "/delay").await;
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    for _ in 0..20 {
        assert_eq!(request(address, "/never").await.status, 200);
    }
    // The filter's own settings answer to headers.
    assert_eq!(request(address, "/").await.status, 200);
    let headers: BTreeMap<&str, &str> = [("x-envoy-fault-abort-request", "503")].into();
    let answer = get_with(address, "/", &headers).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.text(), "fault filter abort");
    let headers: BTreeMap<&str, &str> = [("x-envoy-fault-delay-request", "200")].into();
    let started = Instant::now();
    assert_eq!(get_with(address, "/", &headers).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        counter(&running, "http.ingress_http.fault.aborts_injected"),
        2
    );
    assert_eq!(
        counter(&running, "http.ingress_http.fault.delays_injected"),
        2
    );
}

async fn get_with(address: SocketAddr, path: &str, headers: &BTreeMap<&str, &str>) -> Answer {
    let mut builder = Request::get(path).header("host", "example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(address, builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn mirrors_get_a_copy_and_never_slow_the_primary() {
    let primary = TestUpstream::start("primary").await.unwrap();
    let mirror = TestUpstream::start("mirror").await.unwrap();
    let routes = "              - match: {prefix: /}
                route:
                  cluster: primary
                  request_mirror_policies:
                  - cluster: mirror
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &format!(
            "{}{}",
            cluster("primary", &[primary.address], ""),
            cluster("mirror", &[mirror.address], "")
        ),
    ))
    .await;
    let address = running.listener("http");
    let request = Request::post("/orders")
        .header("host", "shop.example:8080")
        .body(Full::new(Bytes::from("order-42")))
        .unwrap();
    let answer = send(address, request).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-upstream"), Some("primary"));
    assert_eq!(answer.json()["body_bytes"], 8);
    assert!(
        eventually(Duration::from_secs(5), || async {
            (mirror.count() == 1).then_some(())
        })
        .await
        .is_some()
    );
    // A mirror that hangs does not hold the primary up.
    mirror.set_mode(Mode::Hang);
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(request_host(address, "shop.example:8080").await.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

async fn request_host(address: SocketAddr, host: &str) -> Answer {
    get(address, host, "/").await.unwrap()
}

#[tokio::test]
async fn mirrored_requests_carry_the_shadow_host() {
    let primary = TestUpstream::start("primary").await.unwrap();
    let mirror = TestUpstream::start("mirror").await.unwrap();
    let routes = "              - match: {prefix: /}
                route:
                  cluster: primary
                  request_mirror_policies:
                  - cluster: mirror
                    runtime_fraction: {default_value: {numerator: 100}}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &format!(
            "{}{}",
            cluster("primary", &[primary.address], ""),
            cluster("mirror", &[mirror.address], "")
        ),
    ))
    .await;
    let address = running.listener("http");
    for _ in 0..3 {
        assert_eq!(request_host(address, "reviews:9080").await.status, 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            (counter(&running, "cluster.mirror.upstream_rq_200") == 3).then_some(())
        })
        .await
        .is_some()
    );
    assert_eq!(primary.count(), 3);
    let seen = mirror.last_request().unwrap();
    assert_eq!(seen["headers"]["host"], "reviews-shadow:9080");
    assert_eq!(
        primary.last_request().unwrap()["headers"]["host"],
        "reviews:9080"
    );
}

#[tokio::test]
async fn consistent_hashing_keeps_a_key_on_one_endpoint() {
    let upstreams = [
        TestUpstream::start("a").await.unwrap(),
        TestUpstream::start("b").await.unwrap(),
        TestUpstream::start("c").await.unwrap(),
    ];
    let addresses: Vec<SocketAddr> = upstreams.iter().map(|u| u.address).collect();
    let routes = "              - match: {prefix: /cookie}
                route:
                  cluster: ring
                  hash_policy: [{cookie: {name: session, ttl: 60s, path: /}}]
              - match: {prefix: /}
                route:
                  cluster: ring
                  hash_policy: [{header: {header_name: x-user}}]
";
    for policy in ["RING_HASH", "MAGLEV"] {
        let running = start(&bootstrap(
            &vhost("", routes),
            "",
            &format!(
                "{}{}",
                cluster("ring", &addresses, &format!("    lb_policy: {policy}")),
                ""
            ),
        ))
        .await;
        let address = running.listener("http");
        let mut chosen = std::collections::BTreeSet::new();
        for user in ["jason", "ann", "bob", "carla", "dmitri", "eve", "fatima"] {
            let headers: BTreeMap<&str, &str> = [("x-user", user)].into();
            let first = get_with(address, "/", &headers).await;
            for _ in 0..5 {
                let again = get_with(address, "/", &headers).await;
                assert_eq!(
                    again.header("x-upstream"),
                    first.header("x-upstream"),
                    "{policy}"
                );
            }
            chosen.insert(first.header("x-upstream").unwrap().to_owned());
        }
        assert!(chosen.len() >= 2, "{policy}: {chosen:?}");
        // A missing cookie is generated, and sending it back sticks to one endpoint.
        let answer = request(address, "/cookie").await;
        let cookie = answer.header("set-cookie").unwrap().to_owned();
        assert!(cookie.starts_with("session=\""), "{cookie}");
        assert!(
            cookie.ends_with("; Max-Age=60; Path=/; HttpOnly"),
            "{cookie}"
        );
        let value = cookie.split(';').next().unwrap().to_owned();
        let headers: BTreeMap<&str, &str> = [("cookie", value.as_str())].into();
        let first = get_with(address, "/cookie", &headers).await;
        assert!(first.header("set-cookie").is_none());
        for _ in 0..5 {
            let again = get_with(address, "/cookie", &headers).await;
            assert_eq!(again.header("x-upstream"), first.header("x-upstream"));
        }
    }
}

#[tokio::test]
async fn least_request_and_random_spread_over_every_endpoint() {
    let upstreams = [
        TestUpstream::start("a").await.unwrap(),
        TestUpstream::start("b").await.unwrap(),
        TestUpstream::start("c").await.unwrap(),
    ];
    let addresses: Vec<SocketAddr> = upstreams.iter().map(|u| u.address).collect();
    for policy in ["LEAST_REQUEST", "RANDOM"] {
        let running = start(&bootstrap(
            &vhost(
                "",
                "              - match: {prefix: /}\n                route: {cluster: pool}\n",
            ),
            "",
            &cluster("pool", &addresses, &format!("    lb_policy: {policy}")),
        ))
        .await;
        let address = running.listener("http");
        for _ in 0..60 {
            assert_eq!(request(address, "/").await.status, 200);
        }
    }
    for upstream in &upstreams {
        assert!(
            upstream.count() >= 15,
            "{}: {}",
            upstream.name,
            upstream.count()
        );
    }
}

#[tokio::test]
async fn least_request_steers_around_a_slow_endpoint() {
    let slow = TestUpstream::start("slow").await.unwrap();
    slow.set_mode(Mode::DelayMs(300));
    let fast = TestUpstream::start("fast").await.unwrap();
    let running = start(&bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: pool}\n",
        ),
        "",
        &cluster(
            "pool",
            &[slow.address, fast.address],
            "    lb_policy: LEAST_REQUEST",
        ),
    ))
    .await;
    let address = running.listener("http");
    // Eight clients in a closed loop: requests pile up on the slow endpoint, so P2C sends it
    // only what comes when both samples land on it (a quarter), against half with round robin.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(tokio::spawn(async move {
            for _ in 0..20 {
                let _ = get(address, "example.com", "/").await;
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let share = slow.count() as f64 / (slow.count() + fast.count()) as f64;
    assert!(share < 0.36, "fast {} slow {}", fast.count(), slow.count());
}

/// Istio's circuit-breaking task: one connection, one pending request, one request per
/// connection, a backend that takes a while.
const BREAKER: &str = "    circuit_breakers:
      thresholds: [{max_connections: 1, max_pending_requests: 1}]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {max_requests_per_connection: 1}
        explicit_http_config: {http_protocol_options: {}}";

async fn load(
    address: SocketAddr,
    clients: usize,
    per_client: usize,
) -> (usize, usize, Vec<Answer>) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..per_client {
                answers.push(get(address, "example.com", "/").await.unwrap());
            }
            answers
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let ok = all.iter().filter(|a| a.status == 200).count();
    let overflowed = all.iter().filter(|a| a.status == 503).count();
    (ok, overflowed, all)
}

#[tokio::test]
async fn circuit_breakers_shed_load_beyond_one_connection_and_one_pending_request() {
    let backend = TestUpstream::start("backend").await.unwrap();
    backend.set_mode(Mode::DelayMs(50));
    let running = start(&bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: backend}\n",
        ),
        "",
        &cluster("backend", &[backend.address], BREAKER),
    ))
    .await;
    let address = running.listener("http");
    // One client: never more than one request in flight, nothing is shed.
    let (ok, overflowed, _) = load(address, 1, 10).await;
    assert_eq!((ok, overflowed), (10, 0));
    // Ten clients: one in flight, one pending, the rest refused at once.
    let (ok, overflowed, answers) = load(address, 10, 5).await;
    assert_eq!(ok + overflowed, 50);
    assert!(overflowed >= 20, "only {overflowed} of 50 shed");
    assert!(ok >= 5, "{ok}");
    let shed = answers.iter().find(|a| a.status == 503).unwrap();
    assert_eq!(shed.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(
        shed.text(),
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
    assert_eq!(
        counter(&running, "cluster.backend.upstream_rq_pending_overflow"),
        overflowed as u64
    );
    // The backend never saw more than one request at a time, each on its own connection.
    assert_eq!(
        backend
            .max_active
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        backend.count()
    );
    assert!(counter(&running, "cluster.backend.upstream_cx_overflow") > 0);
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint() {
    let bad = TestUpstream::start("bad").await.unwrap();
    bad.set_mode(Mode::Status(503));
    let good = TestUpstream::start("good").await.unwrap();
    let outlier = "    outlier_detection:
      consecutive_5xx: 1
      interval: 0.2s
      base_ejection_time: 0.6s
      max_ejection_percent: 100";
    let running = start(&bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: pair}\n",
        ),
        "",
        &cluster("pair", &[bad.address, good.address], outlier),
    ))
    .await;
    let address = running.listener("http");
    let admin = running.admin.unwrap();
    // Round robin reaches the bad endpoint within two requests; one 503 ejects it.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(request(address, "/").await.status.as_u16());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    assert_eq!(
        gauge(&running, "cluster.pair.outlier_detection.ejections_active"),
        1
    );
    assert_eq!(
        counter(
            &running,
            "cluster.pair.outlier_detection.ejections_enforced_total"
        ),
        1
    );
    let clusters = get(admin, "admin", "/clusters").await.unwrap().text();
    assert!(
        clusters.contains(&format!(
            "pair::{}::health_flags::/failed_outlier_check",
            bad.address
        )),
        "{clusters}"
    );
    // Only the good endpoint now; the bad one had one request.
    let before = bad.count();
    for _ in 0..10 {
        let answer = request(address, "/").await;
        assert_eq!(answer.header("x-upstream"), Some("good"));
    }
    assert_eq!(bad.count(), before);
    // It comes back after the ejection time, at an interval tick.
    bad.set_mode(Mode::Normal);
    let back = eventually(Duration::from_secs(5), || async {
        (gauge(&running, "cluster.pair.outlier_detection.ejections_active") == 0).then_some(())
    })
    .await;
    assert!(back.is_some());
    let mut seen_bad = false;
    for _ in 0..4 {
        seen_bad |= request(address, "/").await.header("x-upstream") == Some("bad");
    }
    assert!(seen_bad);
}

#[tokio::test]
async fn active_health_checks_take_failing_endpoints_out() {
    let sick = TestUpstream::start("sick").await.unwrap();
    sick.set_mode(Mode::Status(503));
    let well = TestUpstream::start("well").await.unwrap();
    let health = "    health_checks:
    - timeout: 1s
      interval: 0.1s
      no_traffic_interval: 0.1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: {path: /healthz}";
    let running = start(&bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: checked}\n",
        ),
        "",
        &cluster("checked", &[sick.address, well.address], health),
    ))
    .await;
    let address = running.listener("http");
    let admin = running.admin.unwrap();
    let clusters = get(admin, "admin", "/clusters").await.unwrap().text();
    assert!(
        clusters.contains(&format!(
            "checked::{}::health_flags::/failed_active_hc",
            sick.address
        )),
        "{clusters}"
    );
    assert!(clusters.contains(&format!("checked::{}::health_flags::healthy", well.address)));
    for _ in 0..10 {
        assert_eq!(
            request(address, "/").await.header("x-upstream"),
            Some("well")
        );
    }
    // Healed, it passes the next check and takes traffic again.
    sick.set_mode(Mode::Normal);
    let healed = eventually(Duration::from_secs(5), || async {
        let text = get(admin, "admin", "/clusters").await.ok()?.text();
        text.contains(&format!("checked::{}::health_flags::healthy", sick.address))
            .then_some(())
    })
    .await;
    assert!(healed.is_some());
    assert!(counter(&running, "cluster.checked.health_check.attempt") >= 4);
}

#[tokio::test]
async fn tcp_health_checks_find_closed_ports() {
    let open = TestUpstream::start("open").await.unwrap();
    let closed = closed_port();
    let health = "    health_checks:
    - {timeout: 0.5s, interval: 0.2s, tcp_health_check: {}}";
    let running = start(&bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: tcp}\n",
        ),
        "",
        &cluster("tcp", &[closed, open.address], health),
    ))
    .await;
    let clusters = get(running.admin.unwrap(), "admin", "/clusters")
        .await
        .unwrap()
        .text();
    assert!(clusters.contains(&format!("tcp::{closed}::health_flags::/failed_active_hc")));
    for _ in 0..6 {
        assert_eq!(
            request(running.listener("http"), "/")
                .await
                .header("x-upstream"),
            Some("open")
        );
    }
}

#[tokio::test]
async fn priorities_spill_over_when_the_first_is_unhealthy() {
    let primary = TestUpstream::start("primary").await.unwrap();
    let backup = TestUpstream::start("backup").await.unwrap();
    let clusters = format!(
        "  - name: tiers
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: tiers
      endpoints:
      - priority: 0
        lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
          health_status: UNHEALTHY
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
      - priority: 1
        lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
",
        closed_port().port(),
        primary.address.port(),
        backup.address.port()
    );
    let running = start(&bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: tiers}\n",
        ),
        "",
        &clusters,
    ))
    .await;
    let address = running.listener("http");
    for _ in 0..200 {
        assert_eq!(request(address, "/").await.status, 200);
    }
    // Half of P0 is healthy: 1.4 × 50% = 70% stays there, 30% spills to P1.
    let share = backup.count() as f64 / 200.0;
    assert!((0.18..0.42).contains(&share), "{share}");
}

#[tokio::test]
async fn unsupported_resilience_settings_are_refused_by_name() {
    let a = TestUpstream::start("a").await.unwrap();
    let yaml = bootstrap(
        &vhost(
            "",
            "              - match: {prefix: /}\n                route: {cluster: a}\n",
        ),
        "",
        &cluster(
            "a",
            &[a.address],
            "    circuit_breakers: {thresholds: [{retry_budget: {}}]}",
        ),
    );
    let error = bosun_proxy::bootstrap::load(None, Some(&yaml))
        .unwrap_err()
        .to_string();
    assert!(error.contains("retry_budget"), "{error}");
}

#[tokio::test]
async fn retry_conditions_choose_which_answers_are_retried() {
    // Each upstream fails its first request of every pair with its status.
    let conflict = TestUpstream::start("conflict").await.unwrap();
    let teapot = TestUpstream::start("teapot").await.unwrap();
    let plain = TestUpstream::start("plain").await.unwrap();
    for (upstream, status) in [(&conflict, 409), (&teapot, 418), (&plain, 409)] {
        upstream.set_mode(Mode::FailEvery { every: 2, status });
    }
    let routes = "              - match: {prefix: /conflict}
                route: {cluster: conflict, retry_policy: {retry_on: retriable-4xx, num_retries: 1}}
              - match: {prefix: /teapot}
                route:
                  cluster: teapot
                  retry_policy: {retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 1}
              - match: {prefix: /plain}
                route: {cluster: plain, retry_policy: {retry_on: 5xx, num_retries: 1}}
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &format!(
            "{}{}{}",
            cluster("conflict", &[conflict.address], ""),
            cluster("teapot", &[teapot.address], ""),
            cluster("plain", &[plain.address], "")
        ),
    ))
    .await;
    let address = running.listener("http");
    // retriable-4xx retries 409, retriable-status-codes the listed 418.
    assert_eq!(request(address, "/conflict").await.status, 200);
    assert_eq!(conflict.count(), 2);
    assert_eq!(request(address, "/teapot").await.status, 200);
    assert_eq!(teapot.count(), 2);
    // 5xx does not cover a 409: it is passed on after one attempt.
    assert_eq!(request(address, "/plain").await.status, 409);
    assert_eq!(plain.count(), 1);
    assert_eq!(counter(&running, "cluster.plain.upstream_rq_retry"), 0);
    assert_eq!(counter(&running, "cluster.conflict.upstream_rq_retry"), 1);
    assert_eq!(counter(&running, "cluster.teapot.upstream_rq_retry"), 1);
}

#[tokio::test]
async fn retriable_headers_retry_answers_that_carry_them() {
    let marked = TestUpstream::start("marked").await.unwrap();
    // The first of every pair answers 200 with `x-test-forced: 200`.
    marked.set_mode(Mode::FailEvery {
        every: 2,
        status: 200,
    });
    let routes = "              - match: {prefix: /}
                route:
                  cluster: marked
                  retry_policy:
                    retry_on: retriable-headers
                    num_retries: 1
                    retriable_headers: [{name: x-test-forced, present_match: true}]
";
    let running = start(&bootstrap(
        &vhost("", routes),
        "",
        &cluster("marked", &[marked.address], ""),
    ))
    .await;
    let answer = request(running.listener("http"), "/").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-test-forced"), None, "the second answer");
    assert_eq!(marked.count(), 2);
    assert_eq!(counter(&running, "cluster.marked.upstream_rq_retry"), 1);
}

#[tokio::test]
async fn grpc_retry_conditions_read_the_grpc_status() {
    let h2 = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}";
    // (gRPC code, retry_on condition naming it)
    let conditions = [
        (1, "cancelled"),
        (4, "deadline-exceeded"),
        (8, "resource-exhausted"),
        (13, "internal"),
        (14, "unavailable"),
    ];
    for (code, condition) in conditions {
        let greeter = TestUpstream::start("greeter").await.unwrap();
        greeter.set_mode(Mode::GrpcFailEvery { every: 2, code });
        // One route retries on the condition, the other on a condition that does not apply.
        let other = if condition == "unavailable" {
            "cancelled"
        } else {
            "unavailable"
        };
        let routes = format!(
            "              - match: {{prefix: /retried.}}
                route: {{cluster: greeter, retry_policy: {{retry_on: {condition}, num_retries: 1}}}}
              - match: {{prefix: /}}
                route: {{cluster: greeter, retry_policy: {{retry_on: {other}, num_retries: 1}}}}
"
        );
        let running = start(&bootstrap(
            &vhost("", &routes),
            "",
            &cluster("greeter", &[greeter.address], h2),
        ))
        .await;
        let call = |path: &'static str| {
            let address = running.listener("http");
            async move {
                let request = Request::post(path)
                    .version(http::Version::HTTP_2)
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
                    .unwrap();
                send(address, request).await.unwrap()
            }
        };
        let retried = call("/retried.Greeter/SayHello").await;
        assert_eq!(
            retried
                .trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok()),
            Some("0"),
            "{condition}: the retry got the echo"
        );
        assert_eq!(greeter.count(), 2, "{condition}");
        let passed_on = call("/other.Greeter/SayHello").await;
        assert_eq!(
            passed_on.header("grpc-status"),
            Some(code.to_string().as_str()),
            "{condition}: {other} does not retry code {code}"
        );
        assert_eq!(greeter.count(), 3, "{condition}");
    }
}
