//! The small test apps (httpbin, helloworld, tcp-echo, curl) on loopback, and the command
//! line that starts them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun_samples::cli::{Sample, sample_args_for_image};
use bosun_samples::curl::{self, CurlArgs};
use bosun_samples::helloworld::{self, HelloworldConfig};
use bosun_samples::testing::{self, Background, ForwardProxy, Stalling};
use bosun_samples::{HttpClient, httpbin, tcp_echo};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use test_case::test_case;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::new(Bytes::from(body.to_owned()));
    *request.method_mut() = method;
    *request.uri_mut() = url.parse().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let response = HttpClient::direct()
        .send(request, Some(LIMIT))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body)
}

async fn get_json(url: &str, headers: &[(&str, &str)]) -> Value {
    let (status, _, body) = send(Method::GET, url, headers, "").await;
    assert_eq!(status, StatusCode::OK, "{url}");
    serde_json::from_slice(&body).unwrap()
}

async fn start_httpbin() -> (SocketAddr, Background) {
    let (listener, addr) = testing::local_listener().await;
    (addr, testing::spawn(httpbin::serve(listener)))
}

#[tokio::test]
async fn httpbin_shows_headers_like_go_httpbin() {
    let (addr, _task) = start_httpbin().await;
    let reply = get_json(
        &format!("http://{addr}/headers"),
        &[
            ("x-custom-thing", "a"),
            ("x-custom-thing", "b"),
            ("user-agent", "tester"),
        ],
    )
    .await;
    let headers = &reply["headers"];
    assert_eq!(headers["X-Custom-Thing"], json!(["a", "b"]));
    assert_eq!(headers["User-Agent"], json!(["tester"]));
    assert_eq!(headers["Host"], json!([addr.to_string()]));
}

#[tokio::test]
async fn httpbin_inspects_requests() {
    let (addr, _task) = start_httpbin().await;
    let ip = get_json(&format!("http://{addr}/ip"), &[]).await;
    assert_eq!(ip, json!({"origin": "127.0.0.1"}));
    let forwarded = get_json(
        &format!("http://{addr}/ip"),
        &[("x-forwarded-for", "10.1.2.3, 10.0.0.1")],
    )
    .await;
    assert_eq!(forwarded["origin"], "10.1.2.3");

    let got = get_json(&format!("http://{addr}/get?show_env=1&a=x&a=y"), &[]).await;
    assert_eq!(got["args"], json!({"a": ["x", "y"], "show_env": ["1"]}));
    assert_eq!(got["method"], "GET");
    assert_eq!(got["origin"], "127.0.0.1");
    assert_eq!(got["url"], format!("http://{addr}/get?show_env=1&a=x&a=y"));

    let (status, _, body) = send(
        Method::POST,
        &format!("http://{addr}/anything/x"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "user=jason&role=tester",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let anything: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(anything["method"], "POST");
    assert_eq!(anything["data"], "user=jason&role=tester");
    assert_eq!(
        anything["form"],
        json!({"role": ["tester"], "user": ["jason"]})
    );

    let (status, _, _) = send(Method::GET, &format!("http://{addr}/post"), &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, headers, _) = send(
        Method::GET,
        &format!("http://{addr}/response-headers?x-answer=42"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-answer"], "42");
}

#[test_case("200", 200)]
#[test_case("418", 418)]
#[test_case("503", 503)]
#[test_case("302", 302)]
#[test_case("abc", 400)]
#[tokio::test]
async fn httpbin_answers_the_status_asked_for(codes: &str, expected: u16) {
    let (addr, _task) = start_httpbin().await;
    let (status, headers, _) = send(
        Method::GET,
        &format!("http://{addr}/status/{codes}"),
        &[],
        "",
    )
    .await;
    assert_eq!(status.as_u16(), expected);
    if expected == 302 {
        assert_eq!(headers["location"], "/redirect/1");
    }
}

#[tokio::test]
async fn httpbin_delays_up_to_ten_seconds() {
    let (addr, _task) = start_httpbin().await;
    let started = Instant::now();
    let (status, _, _) = send(Method::GET, &format!("http://{addr}/delay/0.3"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (status, _, _) = send(Method::GET, &format!("http://{addr}/delay/11"), &[], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test_case("v1")]
#[test_case("v2")]
#[tokio::test]
async fn helloworld_says_its_version_and_instance(version: &str) {
    let (listener, addr) = testing::local_listener().await;
    let config = HelloworldConfig {
        version: version.to_owned(),
        instance: format!("helloworld-{version}-7d8f"),
    };
    let _task = testing::spawn(helloworld::serve(listener, config));
    let (status, _, body) = send(Method::GET, &format!("http://{addr}/hello"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body.to_vec()).unwrap(),
        format!("Hello version: {version}, instance: helloworld-{version}-7d8f\n")
    );
    let (status, _, _) = send(Method::GET, &format!("http://{addr}/health"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tcp_echo_answers_every_line_on_every_port() {
    let (first, first_addr) = testing::local_listener().await;
    let (second, second_addr) = testing::local_listener().await;
    let _task = testing::spawn(tcp_echo::serve(vec![first, second], "hello".to_owned()));
    for addr in [first_addr, second_addr] {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"world\nagain\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "hello world");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "hello again");
        // A last line without a newline is answered when the client stops sending.
        write.write_all(b"bye").await.unwrap();
        write.shutdown().await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "hello bye");
        assert_eq!(lines.next_line().await.unwrap(), None);
    }
}

/// Runs the built-in curl with `args` (without the program name) and `client`.
async fn curl(args: &[&str], client: &HttpClient) -> (u8, String, String) {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        curl: CurlArgs,
    }
    let parsed = Cli::try_parse_from(std::iter::once("curl").chain(args.iter().copied())).unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = curl::run(&parsed.curl, client, &mut stdout, &mut stderr).await;
    (
        code,
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[tokio::test]
async fn curl_prints_like_curl() {
    let (addr, _task) = start_httpbin().await;
    let client = HttpClient::direct();

    let (code, out, _) = curl(
        &[
            "-s",
            &format!("http://{addr}/headers"),
            "-H",
            "x-user: jason",
        ],
        &client,
    )
    .await;
    assert_eq!(code, 0);
    let headers: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(headers["headers"]["X-User"], json!(["jason"]));
    assert!(
        headers["headers"]["User-Agent"][0]
            .as_str()
            .unwrap()
            .starts_with("curl/")
    );

    let (code, out, _) = curl(
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{addr}/status/418"),
        ],
        &client,
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "418"));

    let (code, out, _) = curl(&["-si", &format!("http://{addr}/status/503")], &client).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{out}"
    );

    let (code, out, _) = curl(
        &[
            "-s",
            "-X",
            "PUT",
            "-d",
            "a=1",
            "-d",
            "b=2",
            &format!("http://{addr}/put"),
        ],
        &client,
    )
    .await;
    assert_eq!(code, 0);
    let put: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(put["form"], json!({"a": ["1"], "b": ["2"]}));

    let (code, _, err) = curl(&["-sSf", &format!("http://{addr}/status/404")], &client).await;
    assert_eq!(code, 22);
    assert!(err.contains("returned error: 404"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.json");
    let (code, out, _) = curl(
        &[
            "-s",
            "-o",
            file.to_str().unwrap(),
            &format!("http://{addr}/ip"),
        ],
        &client,
    )
    .await;
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("127.0.0.1")
    );
}

#[tokio::test]
async fn curl_fails_like_curl_without_an_answer() {
    let closed = testing::closed_port().await;
    let client = HttpClient::direct();
    let (code, out, err) = curl(
        &["-s", "-w", "%{http_code}", &format!("http://{closed}/")],
        &client,
    )
    .await;
    assert_eq!((code, out.as_str(), err.as_str()), (7, "000", ""));
    let (code, _, err) = curl(&["-sS", &format!("http://{closed}/")], &client).await;
    assert_eq!(code, 7);
    assert!(err.starts_with("curl: (7) Failed to connect to"), "{err}");

    let stalling = Stalling::start().await;
    let (code, _, err) = curl(
        &["-m", "0.2", &format!("http://{}/", stalling.addr())],
        &client,
    )
    .await;
    assert_eq!(code, 28);
    assert!(err.contains("timed out"), "{err}");
}

#[tokio::test]
async fn curl_goes_through_the_proxy() {
    let (addr, _task) = start_httpbin().await;
    let proxy = ForwardProxy::start(HashMap::from([("httpbin:8000".to_owned(), addr)])).await;
    let client = HttpClient::new(&proxy.settings()).unwrap();
    let (code, out, _) = curl(&["-s", "http://httpbin:8000/headers"], &client).await;
    assert_eq!(code, 0);
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["headers"]["Host"], json!(["httpbin:8000"]));
    assert_eq!(proxy.requests()[0].uri, "http://httpbin:8000/headers");
}

#[derive(Parser)]
#[command(name = "bosun", version, propagate_version = true)]
struct Bosun {
    #[command(subcommand)]
    sample: Sample,
}

#[test]
fn the_command_line_is_consistent_under_a_versioned_binary() {
    use clap::CommandFactory;
    Bosun::command().debug_assert();
}

#[test]
fn samples_parse_from_the_command_line() {
    let reviews = Bosun::try_parse_from([
        "bosun",
        "reviews",
        "--service-version",
        "v3",
        "--listen",
        "127.0.0.5:9080",
    ])
    .unwrap();
    let Sample::Reviews(args) = reviews.sample else {
        panic!("not reviews");
    };
    let config = args.config().unwrap();
    assert_eq!(config.star_color, "red");
    assert_eq!(config.ratings_timeout, Duration::from_millis(2500));
    assert_eq!(args.listen.addr(), "127.0.0.5:9080".parse().unwrap());

    let details = Bosun::try_parse_from(["bosun", "details"]).unwrap();
    let Sample::Details(args) = details.sample else {
        panic!("not details");
    };
    assert_eq!(args.addr(), "0.0.0.0:9080".parse().unwrap());

    let echo = Bosun::try_parse_from(["bosun", "tcp-echo", "9000,9001,9002", "hello"]).unwrap();
    let Sample::TcpEcho(args) = echo.sample else {
        panic!("not tcp-echo");
    };
    assert_eq!(
        (args.ports.as_str(), args.prefix.as_str()),
        ("9000,9001,9002", "hello")
    );

    let curl = Bosun::try_parse_from([
        "bosun",
        "curl",
        "-sSo",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://x/",
    ])
    .unwrap();
    let Sample::Curl(args) = curl.sample else {
        panic!("not curl");
    };
    assert!(args.silent && args.show_error);
    assert_eq!(
        args.output.as_deref(),
        Some(std::path::Path::new("/dev/null"))
    );
}

#[test_case("registry.istio.io/release/examples-bookinfo-productpage-v1:1.20.3", Some(&["productpage"]))]
#[test_case("docker.io/istio/examples-bookinfo-reviews-v3:1.20.2", Some(&["reviews", "--service-version", "v3"]))]
#[test_case("examples-bookinfo-ratings-v1", Some(&["ratings"]))]
#[test_case("localhost:5000/examples-bookinfo-details-v1", Some(&["details"]))]
#[test_case("docker.io/mccutchen/go-httpbin:v2.15.0", Some(&["httpbin"]))]
#[test_case("registry.istio.io/release/examples-helloworld-v2:1.0", Some(&["helloworld", "--service-version", "v2"]))]
#[test_case("registry.istio.io/release/tcp-echo-server:1.3@sha256:abc", Some(&["tcp-echo"]))]
#[test_case("docker.io/curlimages/curl:8.16.0", None)]
fn known_images_map_to_samples(image: &str, expected: Option<&[&str]>) {
    assert_eq!(sample_args_for_image(image).as_deref(), expected);
}
