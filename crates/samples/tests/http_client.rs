//! The shared HTTP client against raw sockets: what goes on the wire, direct and through a
//! proxy, and how failures are reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly.

use std::time::{Duration, Instant};

use bosun_samples::testing::{self, FakeBackend, Stalling};
use bosun_samples::{Error, HttpClient, ProxySettings};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(10);

/// A server that reads each request head and answers `ok`, reporting the raw heads.
async fn raw_server() -> (String, mpsc::UnboundedReceiver<String>, testing::Background) {
    let (listener, addr) = testing::local_listener().await;
    let (heads, received) = mpsc::unbounded_channel();
    let task = testing::spawn(serve_raw(listener, heads));
    (addr.to_string(), received, task)
}

async fn serve_raw(listener: TcpListener, heads: mpsc::UnboundedSender<String>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        heads.send(String::from_utf8(head).unwrap()).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await
            .unwrap();
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn proxied_requests_use_the_absolute_form() {
    let (proxy, mut heads, _task) = raw_server().await;
    let client = HttpClient::new(&ProxySettings {
        http_proxy: Some(format!("http://{proxy}")),
        no_proxy: None,
    })
    .unwrap();
    let response = client
        .get(
            "http://details:9080/details/0?x=1",
            headers(&[("x-request-id", "abc")]),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), b"ok");
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("GET http://details:9080/details/0?x=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nhost: details:9080\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: abc\r\n"), "{head}");
}

#[tokio::test]
async fn direct_requests_use_the_origin_form() {
    let (server, mut heads, _task) = raw_server().await;
    let response = HttpClient::direct()
        .get(
            &format!("http://{server}/reviews/0"),
            HeaderMap::new(),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /reviews/0 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: {server}\r\n")), "{head}");
}

#[tokio::test]
async fn no_proxy_hosts_are_called_directly() {
    let (proxy, mut proxy_heads, _proxy_task) = raw_server().await;
    let (server, mut heads, _task) = raw_server().await;
    let client = HttpClient::new(&ProxySettings {
        http_proxy: Some(proxy),
        no_proxy: Some("example.com,127.0.0.1".into()),
    })
    .unwrap();
    client
        .get(&format!("http://{server}/x"), HeaderMap::new(), LIMIT)
        .await
        .unwrap();
    assert!(
        heads
            .recv()
            .await
            .unwrap()
            .starts_with("GET /x HTTP/1.1\r\n")
    );
    assert!(proxy_heads.try_recv().is_err(), "the proxy was used");
}

#[tokio::test]
async fn bodies_and_methods_are_sent() {
    let backend = FakeBackend::start(StatusCode::CREATED, "{}").await;
    let mut request = Request::new(Bytes::from_static(b"{\"Reviewer1\": 1}"));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = format!("http://{}/ratings/0", backend.addr())
        .parse()
        .unwrap();
    let response = HttpClient::direct().send(request, None).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let seen = backend.requests();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].body.as_ref(), b"{\"Reviewer1\": 1}");
    assert_eq!(seen[0].headers["content-length"], "16");
}

#[tokio::test]
async fn timeouts_bound_the_whole_call() {
    let stalling = Stalling::start().await;
    let started = Instant::now();
    let result = HttpClient::direct()
        .get(
            &format!("http://{}/slow", stalling.addr()),
            HeaderMap::new(),
            Duration::from_millis(200),
        )
        .await;
    let elapsed = started.elapsed();
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn refused_connections_name_what_was_dialled() {
    let closed = testing::closed_port().await;
    let direct = HttpClient::direct()
        .get(&format!("http://{closed}/"), HeaderMap::new(), LIMIT)
        .await;
    match direct {
        Err(Error::Connect { target, .. }) => assert_eq!(target, closed.to_string()),
        other => panic!("{other:?}"),
    }
    let proxied = HttpClient::new(&ProxySettings {
        http_proxy: Some(format!("http://{closed}")),
        no_proxy: None,
    })
    .unwrap()
    .get("http://details:9080/", HeaderMap::new(), LIMIT)
    .await;
    match proxied {
        Err(Error::Connect { target, .. }) => assert_eq!(target, format!("proxy {closed}")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_plain_http_is_spoken() {
    let result = HttpClient::direct()
        .get("https://example.com/", HeaderMap::new(), LIMIT)
        .await;
    assert!(
        matches!(result, Err(Error::UnsupportedScheme { .. })),
        "{result:?}"
    );
    let bad = HttpClient::new(&ProxySettings {
        http_proxy: Some("socks5://127.0.0.1:1080".into()),
        no_proxy: None,
    });
    assert!(matches!(bad, Err(Error::InvalidProxy { .. })), "{bad:?}");
}
