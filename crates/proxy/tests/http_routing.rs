//! HTTP routing end to end: a proxy in front of real upstreams on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bosun_proxy::testing::{TestUpstream, get, send};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;

use common::{cluster, http_bootstrap, start};

const ROUTES: &str = r#"
            validate_clusters: false
            virtual_hosts:
            - name: bookinfo
              domains: ["bookinfo.example.com", "bookinfo.example.com:*"]
              request_headers_to_add:
              - header: {key: x-vhost, value: bookinfo}
              routes:
              - name: jason
                match: {prefix: "/reviews", headers: [{name: end-user, string_match: {exact: jason}}]}
                route: {cluster: b}
              - name: reviews
                match: {prefix: "/reviews"}
                route: {cluster: a}
                response_headers_to_add:
                - header: {key: x-route, value: reviews}
              - name: old
                match: {prefix: "/old"}
                redirect: {host_redirect: x.example, path_redirect: "/new?type=blog"}
              - name: rewrite
                match: {prefix: "/receiveapi/"}
                route: {cluster: a, prefix_rewrite: "/", host_rewrite_literal: internal.example}
              - name: direct
                match: {path: "/health"}
                direct_response: {status: 200, body: {inline_string: "ok"}}
              - name: slow
                match: {prefix: "/delay/"}
                route: {cluster: a, timeout: 0.2s}
              - name: nowhere
                match: {prefix: "/nowhere"}
                route: {cluster: missing}
              - name: empty
                match: {prefix: "/empty"}
                route: {cluster: empty}
              - name: down
                match: {prefix: "/down"}
                route: {cluster: down}
              - name: split
                match: {prefix: "/split"}
                route:
                  weighted_clusters:
                    clusters:
                    - {name: a, weight: 80}
                    - {name: b, weight: 20}
"#;

async fn setup() -> (TestUpstream, TestUpstream, common::Running) {
    let a = TestUpstream::start("a").await.unwrap();
    let b = TestUpstream::start("b").await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let clusters = format!(
        "{}{}{}\n  - name: empty\n    type: STATIC\n    connect_timeout: 1s\n",
        cluster("a", a.address),
        cluster("b", b.address),
        cluster("down", closed)
    );
    let running = start(&http_bootstrap(ROUTES, "", &clusters)).await;
    (a, b, running)
}

#[tokio::test]
async fn routes_by_path_and_header() {
    let (_a, _b, proxy) = setup().await;
    let address = proxy.listener("http");
    let plain = get(address, "bookinfo.example.com", "/reviews/1")
        .await
        .unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-upstream"), Some("a"));
    assert_eq!(plain.header("x-route"), Some("reviews"));
    let jason = send(
        address,
        Request::get("/reviews/1")
            .header("host", "bookinfo.example.com")
            .header("end-user", "jason")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(jason.header("x-upstream"), Some("b"));
    let unknown = get(address, "other.example.com", "/reviews/1")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body.len(), 0);
}

#[tokio::test]
async fn adds_envoys_headers_both_ways() {
    let (_a, _b, proxy) = setup().await;
    let address = proxy.listener("http");
    let answer = get(address, "bookinfo.example.com", "/reviews/1")
        .await
        .unwrap();
    let seen = answer.json();
    let headers = &seen["headers"];
    assert_eq!(headers["x-envoy-expected-rq-timeout-ms"], "15000");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-vhost"], "bookinfo");
    assert_eq!(headers["host"], "bookinfo.example.com");
    let id = headers["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(answer.header("x-envoy-upstream-service-time").is_some());
    assert_eq!(answer.header("server"), Some("envoy"));

    let kept = send(
        address,
        Request::get("/reviews/1")
            .header("host", "bookinfo.example.com")
            .header("x-request-id", "given-id")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(kept.json()["headers"]["x-request-id"], "given-id");
}

#[tokio::test]
async fn redirects_rewrites_and_direct_responses() {
    let (_a, _b, proxy) = setup().await;
    let address = proxy.listener("http");
    let redirect = get(address, "bookinfo.example.com", "/old/post")
        .await
        .unwrap();
    assert_eq!(redirect.status, 301);
    assert_eq!(
        redirect.header("location"),
        Some("http://x.example/new?type=blog")
    );
    let rewritten = get(address, "bookinfo.example.com", "/receiveapi/orders?id=7")
        .await
        .unwrap();
    assert_eq!(rewritten.json()["path"], "/orders?id=7");
    assert_eq!(rewritten.json()["headers"]["host"], "internal.example");
    assert_eq!(
        rewritten.json()["headers"]["x-envoy-original-path"],
        "/receiveapi/orders?id=7"
    );
    let direct = get(address, "bookinfo.example.com", "/health")
        .await
        .unwrap();
    assert_eq!(
        (direct.status.as_u16(), direct.text().as_str()),
        (200, "ok")
    );
}

#[tokio::test]
async fn local_replies_say_what_went_wrong() {
    let (_a, _b, proxy) = setup().await;
    let address = proxy.listener("http");
    let started = std::time::Instant::now();
    let timeout = get(address, "bookinfo.example.com", "/delay/2000")
        .await
        .unwrap();
    assert_eq!(timeout.status, 504);
    assert_eq!(timeout.text(), "upstream request timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let no_cluster = get(address, "bookinfo.example.com", "/nowhere")
        .await
        .unwrap();
    assert_eq!(no_cluster.status, 503);
    let empty = get(address, "bookinfo.example.com", "/empty")
        .await
        .unwrap();
    assert_eq!(
        (empty.status.as_u16(), empty.text().as_str()),
        (503, "no healthy upstream")
    );
    let down = get(address, "bookinfo.example.com", "/down").await.unwrap();
    assert_eq!(down.status, 503);
    assert_eq!(
        down.text(),
        "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
    );
}

#[tokio::test]
async fn grpc_requests_get_grpc_local_replies() {
    let (_a, _b, proxy) = setup().await;
    let address = proxy.listener("http");
    let request = Request::post("/empty")
        .version(Version::HTTP_2)
        .header("host", "bookinfo.example.com")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(address, request).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("grpc-status"), Some("14"));
    assert_eq!(answer.header("grpc-message"), Some("no healthy upstream"));
}

#[tokio::test]
async fn weighted_clusters_split_traffic() {
    let (a, b, proxy) = setup().await;
    let address = proxy.listener("http");
    for _ in 0..1000 {
        let answer = get(address, "bookinfo.example.com", "/split")
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    let share_a = a.count() as f64 / 1000.0;
    assert!(
        (share_a - 0.8).abs() < 0.05,
        "a got {share_a}, b got {}",
        b.count()
    );
}
