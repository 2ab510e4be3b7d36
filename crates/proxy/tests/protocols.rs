//! Protocols end to end: HTTP/2 both ways, gRPC with trailers, WebSocket, TCP, TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bosun_proxy::testing::{TcpEcho, TestUpstream, get, send};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use common::{cluster, http_bootstrap, start};

const ALL_TO_A: &str = r#"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: a}
"#;

fn h2_cluster(name: &str, address: std::net::SocketAddr) -> String {
    format!(
        r#"{}    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
"#,
        cluster(name, address)
    )
}

#[tokio::test]
async fn http2_downstream_and_upstream() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(ALL_TO_A, "", &h2_cluster("a", a.address))).await;
    let address = proxy.listener("http");
    // HTTP/1.1 in, HTTP/2 out.
    let answer = get(address, "svc", "/x").await.unwrap();
    assert_eq!(answer.json()["version"], "HTTP/2.0");
    // HTTP/2 in (prior knowledge), HTTP/2 out, with the authority carried through.
    let request = Request::get("/y")
        .version(Version::HTTP_2)
        .header("host", "svc.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(address, request).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["version"], "HTTP/2.0");
    assert_eq!(answer.json()["path"], "/y");
}

#[tokio::test]
async fn grpc_passes_through_with_trailers() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(ALL_TO_A, "", &h2_cluster("a", a.address))).await;
    let message = Bytes::from_static(b"\0\0\0\0\x05hello");
    let request = Request::post("/helloworld.Greeter/SayHello")
        .version(Version::HTTP_2)
        .header("host", "greeter")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message.clone()))
        .unwrap();
    let answer = send(proxy.listener("http"), request).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, message);
    assert_eq!(answer.trailers.unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn websocket_upgrades_when_enabled() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(
        ALL_TO_A,
        "          upgrade_configs: [{upgrade_type: websocket}]",
        &cluster("a", a.address),
    ))
    .await;
    let mut stream = tokio::net::TcpStream::connect(proxy.listener("http"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    reader.get_mut().write_all(b"ping\n").await.unwrap();
    let mut echoed = String::new();
    reader.read_line(&mut echoed).await.unwrap();
    assert_eq!(echoed, "echo ping\n");
}

#[tokio::test]
async fn websocket_is_refused_when_not_enabled() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(ALL_TO_A, "", &cluster("a", a.address))).await;
    let request = Request::get("/chat")
        .header("host", "chat")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(proxy.listener("http"), request).await.unwrap();
    assert_eq!(answer.status, 403);
}

fn tcp_bootstrap(clusters: &str, chains: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
{chains}
  clusters:
{clusters}
"#
    )
}

async fn exchange(address: std::net::SocketAddr, line: &str) -> String {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await.unwrap();
    reply.trim_end().to_owned()
}

#[tokio::test]
async fn tcp_proxy_splits_connections_by_weight() {
    let one = TcpEcho::start("one").await.unwrap();
    let two = TcpEcho::start("two").await.unwrap();
    let chains = r#"    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: echo
          weighted_clusters:
            clusters:
            - {name: one, weight: 80}
            - {name: two, weight: 20}
"#;
    let clusters = format!(
        "{}{}",
        cluster("one", one.address),
        cluster("two", two.address)
    );
    let proxy = start(&tcp_bootstrap(&clusters, chains)).await;
    let address = proxy.listener("tcp");
    let mut ones = 0;
    for i in 0..200 {
        let reply = exchange(address, &format!("hello {i}")).await;
        assert!(
            reply == format!("one hello {i}") || reply == format!("two hello {i}"),
            "{reply}"
        );
        if reply.starts_with("one") {
            ones += 1;
        }
    }
    assert!((130..=190).contains(&ones), "one got {ones} of 200");
    assert_eq!(
        proxy
            .proxy
            .stats
            .counter("tcp.echo.downstream_cx_total")
            .get(),
        200
    );
}

/// A self-signed certificate for `names`, as PEM (certificate, key).
fn certificate(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A TLS echo server presenting `cert`.
async fn tls_echo(name: &'static str, cert: &(String, String)) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (read, mut write) = tokio::io::split(tls);
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{name} {line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    address
}

async fn tls_exchange(address: std::net::SocketAddr, sni: &str, line: &str) -> String {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerify))
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap(),
            stream,
        )
        .await
        .unwrap();
    let (read, mut write) = tokio::io::split(tls);
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await.unwrap();
    reply.trim_end().to_owned()
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn tls_passthrough_is_routed_by_sni() {
    let first = tls_echo("first", &certificate(&["first.example"])).await;
    let second = tls_echo("second", &certificate(&["second.example"])).await;
    let chain = |sni: &str, cluster: &str| {
        format!(
            r#"    - filter_chain_match: {{server_names: ["{sni}"]}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {cluster}
          cluster: {cluster}
"#
        )
    };
    let chains = format!(
        "    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector\n    filter_chains:\n{}{}",
        chain("first.example", "first"),
        chain("*.second.example", "second")
    );
    let clusters = format!("{}{}", cluster("first", first), cluster("second", second));
    let proxy = start(&tcp_bootstrap(&clusters, &chains)).await;
    let address = proxy.listener("tcp");
    assert_eq!(
        tls_exchange(address, "first.example", "hi").await,
        "first hi"
    );
    assert_eq!(
        tls_exchange(address, "api.second.example", "hi").await,
        "second hi"
    );
}

#[tokio::test]
async fn tls_is_terminated_and_originated() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(&["gateway.example"]);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    // The upstream speaks TLS too; the proxy verifies it against its certificate as the CA.
    let upstream_cert = certificate(&["backend.internal"]);
    std::fs::write(dir.path().join("upstream-ca.pem"), &upstream_cert.0).unwrap();
    let backend = tls_echo("backend", &upstream_cert).await;
    let dir_path = dir.path().display();
    let chains = format!(
        r#"    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: {dir_path}/cert.pem}}
              private_key: {{filename: {dir_path}/key.pem}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tls
          cluster: backend
"#
    );
    let clusters = format!(
        r#"{}    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: backend.internal
        common_tls_context:
          validation_context:
            trusted_ca: {{filename: {dir_path}/upstream-ca.pem}}
"#,
        cluster("backend", backend)
    );
    let proxy = start(&tcp_bootstrap(&clusters, &chains)).await;
    assert_eq!(
        tls_exchange(proxy.listener("tcp"), "gateway.example", "secret").await,
        "backend secret"
    );
}

#[tokio::test]
async fn dns_clusters_resolve_names() {
    let a = TestUpstream::start("a").await.unwrap();
    let clusters = format!(
        r#"
  - name: a
    type: STRICT_DNS
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {port}}}}}}}
  - name: logical
    type: LOGICAL_DNS
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: logical
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {port}}}}}}}
"#,
        port = a.address.port()
    );
    let routes = r#"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: "/logical"}, route: {cluster: logical, auto_host_rewrite: true}}
              - {match: {prefix: "/"}, route: {cluster: a, auto_host_rewrite: true}}
"#;
    let proxy = start(&http_bootstrap(routes, "", &clusters)).await;
    for path in ["/x", "/logical"] {
        let answer = get(proxy.listener("http"), "svc", path).await.unwrap();
        assert_eq!(answer.header("x-upstream"), Some("a"), "{path}");
        // auto_host_rewrite uses the endpoint's name.
        assert_eq!(answer.json()["headers"]["host"], "localhost", "{path}");
    }
}

/// A name server on loopback answering `svc.test` with `address`, TTL 1 s.
fn names(address: [u8; 4]) -> bosun_proxy::dns::Names {
    let mut table = bosun_xds::istio::NameTable::default();
    table.table.insert(
        "svc.test".into(),
        bosun_xds::istio::NameInfo {
            ips: vec![std::net::Ipv4Addr::from(address).to_string()],
            ..Default::default()
        },
    );
    bosun_proxy::dns::Names::from_table(&table).with_ttl(1)
}

#[tokio::test]
async fn dns_clusters_follow_record_ttls_from_their_own_name_servers() {
    let a = TestUpstream::start_on("a", "127.0.0.2:0".parse().unwrap())
        .await
        .unwrap();
    let port = a.address.port();
    let b = TestUpstream::start_on("b", std::net::SocketAddr::from(([127, 0, 0, 3], port)))
        .await
        .unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns_port = socket.local_addr().unwrap().port();
    let table = Arc::new(arc_swap::ArcSwap::from_pointee(names([127, 0, 0, 2])));
    let server = tokio::spawn(bosun_proxy::dns::serve(socket, table.clone(), None));
    // Both ask that server and re-resolve hourly; `ttl` re-resolves when answers expire.
    let cluster = |name: &str, respect: bool| {
        format!(
            r#"
  - name: {name}
    type: STRICT_DNS
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 3600s
    respect_dns_ttl: {respect}
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{{socket_address: {{address: 127.0.0.1, port_value: {dns_port}}}}}]
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: svc.test, port_value: {port}}}}}}}"#
        )
    };
    let clusters = cluster("ttl", true) + &cluster("hourly", false);
    let routes = r#"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: "/hourly"}, route: {cluster: hourly}}
              - {match: {prefix: "/"}, route: {cluster: ttl}}
"#;
    let proxy = start(&http_bootstrap(routes, "", &clusters)).await;
    let upstream = |path: &'static str| {
        let address = proxy.listener("http");
        async move {
            let answer = get(address, "svc", path).await.unwrap();
            answer.header("x-upstream").map(str::to_owned)
        }
    };
    assert_eq!(upstream("/").await.as_deref(), Some("a"));
    assert_eq!(upstream("/hourly").await.as_deref(), Some("a"));

    table.store(Arc::new(names([127, 0, 0, 3])));
    let moved = bosun_proxy::testing::eventually(std::time::Duration::from_secs(10), || async {
        upstream("/").await.filter(|u| u == "b")
    })
    .await;
    assert_eq!(moved.as_deref(), Some("b"), "the TTL expired an hour early");
    assert_eq!(
        upstream("/hourly").await.as_deref(),
        Some("a"),
        "without respect_dns_ttl the refresh rate rules"
    );
    drop(b);
    server.abort();
}

#[tokio::test]
async fn ipv6_listeners_and_upstreams() {
    let listener = tokio::net::TcpListener::bind("[::1]:0").await;
    if listener.is_err() {
        panic!("this test needs IPv6 on loopback");
    }
    drop(listener);
    let a = TestUpstream::start("a").await.unwrap();
    let yaml = http_bootstrap(ALL_TO_A, "", &cluster("a", a.address)).replace(
        "  - name: http\n    address: {socket_address: {address: 127.0.0.1, port_value: 0}}",
        "  - name: http\n    address: {socket_address: {address: \"::1\", port_value: 0}}",
    );
    let proxy = start(&yaml).await;
    let address = proxy.listener("http");
    assert!(address.is_ipv6());
    assert_eq!(
        get(address, "svc", "/").await.unwrap().header("x-upstream"),
        Some("a")
    );
}

#[tokio::test]
async fn chunked_bodies_and_expect_continue_pass_through() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(ALL_TO_A, "", &cluster("a", a.address))).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.listener("http"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    reader.read_line(&mut line).await.unwrap();
    reader
        .get_mut()
        .write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let read_all = async {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&response).contains("\"body_bytes\":11") {
            let n = reader.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
        .await
        .expect("a response");
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"body_bytes\":11"), "{response}");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(
        ALL_TO_A,
        "          max_request_headers_kb: 8",
        &cluster("a", a.address),
    ))
    .await;
    let big = "x".repeat(16 * 1024);
    let request = Request::get("/")
        .header("host", "svc")
        .header("x-big", big)
        .body(Full::new(Bytes::new()))
        .unwrap();
    match send(proxy.listener("http"), request).await {
        Ok(answer) => assert_eq!(answer.status, 431),
        Err(error) => assert!(
            error.contains("closed") || error.contains("reset") || error.contains("connection"),
            "{error}"
        ),
    }
    assert_eq!(a.count(), 0, "the oversized request reached the upstream");
    // Normal requests still pass.
    assert_eq!(
        get(proxy.listener("http"), "svc", "/")
            .await
            .unwrap()
            .status,
        200
    );
}
