//! Test helpers: upstream servers that say who they are and what they received, a small HTTP
//! client, and where Envoy is.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How a [`TestUpstream`] misbehaves, whatever the path asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// As the path says.
    #[default]
    Normal,
    /// Every request gets this status.
    Status(u16),
    /// Every `every`-th request (the 1st, the `every + 1`-th, …) gets `status`.
    FailEvery {
        /// Period.
        every: u64,
        /// Status of the failing ones.
        status: u16,
    },
    /// Every `every`-th request (as with [`Mode::FailEvery`]) gets `status` and the header
    /// `header: true` (e.g. `x-envoy-ratelimited`).
    FailEveryWithHeader {
        /// Period.
        every: u64,
        /// Status of the failing ones.
        status: u16,
        /// The header the failing ones carry.
        header: &'static str,
    },
    /// Every `every`-th gRPC request gets a trailers-only answer with `grpc-status: code`.
    GrpcFailEvery {
        /// Period.
        every: u64,
        /// The gRPC status code of the failing ones.
        code: u32,
    },
    /// Requests are never answered.
    Hang,
    /// Connections are closed without an answer.
    Reset,
    /// Answers come after this many milliseconds.
    DelayMs(u64),
}

/// An HTTP/1.1 and HTTP/2 server on 127.0.0.1 that answers with `x-upstream: <name>` and a JSON
/// description of the request. `/status/<code>` answers that code, `/delay/<ms>` waits first,
/// `/reset` closes the connection without answering, `/hang` never answers, `/drip/<ms>` sends
/// its body in three chunks `ms` apart; `Upgrade: websocket`
/// is accepted and echoed; gRPC requests get their message echoed with `grpc-status: 0`. A
/// [`Mode`] makes it misbehave for every request; an answer whose status the mode forced
/// carries `x-test-forced: <status>`.
#[derive(Debug)]
pub struct TestUpstream {
    /// Its name (in `x-upstream`).
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Requests served.
    pub requests: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    /// Requests being answered now.
    pub active: Arc<AtomicU64>,
    /// The highest number of requests answered at once.
    pub max_active: Arc<AtomicU64>,
    last: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
    mode: Arc<std::sync::Mutex<Mode>>,
    stop: watch::Sender<bool>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl TestUpstream {
    /// Starts one on 127.0.0.1.
    pub async fn start(name: &str) -> std::io::Result<TestUpstream> {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts one on `address` (another loopback address, a given port).
    pub async fn start_on(name: &str, address: SocketAddr) -> std::io::Result<TestUpstream> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let active = Arc::new(AtomicU64::new(0));
        let max_active = Arc::new(AtomicU64::new(0));
        let mode = Arc::new(std::sync::Mutex::new(Mode::Normal));
        let last = Arc::new(std::sync::Mutex::new(None));
        let (stop, mut stopped) = watch::channel(false);
        let name_owned = name.to_owned();
        let counters = Counters {
            requests: requests.clone(),
            active: active.clone(),
            max_active: max_active.clone(),
            last: last.clone(),
            mode: mode.clone(),
        };
        let accepted_count = connections.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        accepted_count.fetch_add(1, Ordering::Relaxed);
                        let name = name_owned.clone();
                        let counters = counters.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let n = counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
                                let mode = *counters.mode.lock().unwrap_or_else(|e| e.into_inner());
                                let guard = ActiveGuard::new(&counters);
                                let name = name.clone();
                                let last = counters.last.clone();
                                async move {
                                    let _guard = guard;
                                    answer(req, name, peer, mode, n, last).await
                                }
                            });
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(TestUpstream {
            name: name.to_owned(),
            address,
            requests,
            connections,
            active,
            max_active,
            last,
            mode,
            stop,
        })
    }

    /// Requests served so far.
    pub fn count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Starts counting requests from zero again ([`Mode::FailEvery`] counts from here).
    pub fn reset_count(&self) {
        self.requests.store(0, Ordering::Relaxed);
    }

    /// The JSON description of the last request it answered (as in its response bodies).
    pub fn last_request(&self) -> Option<serde_json::Value> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every request misbehave as `mode` says (or behave, with [`Mode::Normal`]).
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }
}

#[derive(Clone)]
struct Counters {
    requests: Arc<AtomicU64>,
    active: Arc<AtomicU64>,
    max_active: Arc<AtomicU64>,
    last: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
    mode: Arc<std::sync::Mutex<Mode>>,
}

struct ActiveGuard(Arc<AtomicU64>);

impl ActiveGuard {
    fn new(counters: &Counters) -> Self {
        let now = counters.active.fetch_add(1, Ordering::Relaxed) + 1;
        counters.max_active.fetch_max(now, Ordering::Relaxed);
        ActiveGuard(counters.active.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn answer(
    mut request: Request<Incoming>,
    name: String,
    peer: SocketAddr,
    mode: Mode,
    number: u64,
    last: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
) -> Result<Response<BoxBody>, std::io::Error> {
    let path = request.uri().path().to_owned();
    let mut forced_status = None;
    let mut forced_grpc_status = None;
    let mut forced_header = None;
    match mode {
        Mode::Normal => {}
        Mode::GrpcFailEvery { every, code } => {
            if every > 0 && (number - 1).is_multiple_of(every) {
                forced_grpc_status = Some(code);
            }
        }
        Mode::Status(status) => forced_status = Some(status),
        Mode::FailEvery { every, status } => {
            if every > 0 && (number - 1).is_multiple_of(every) {
                forced_status = Some(status);
            }
        }
        Mode::FailEveryWithHeader {
            every,
            status,
            header,
        } => {
            if every > 0 && (number - 1).is_multiple_of(every) {
                forced_status = Some(status);
                forced_header = Some(header);
            }
        }
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Reset => return Err(std::io::Error::other("reset requested")),
        Mode::DelayMs(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    if let Some(ms) = path
        .strip_prefix("/drip/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        // Headers at once, then three chunks `ms` apart.
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
        tokio::spawn(async move {
            for chunk in ["one ", "two ", "three"] {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if sender
                    .send(Ok(http_body::Frame::data(Bytes::from(chunk))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let body =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        let mut response = Response::new(BodyExt::boxed(body));
        set_upstream(&mut response, &name);
        return Ok(response);
    }
    let full = |status: StatusCode, body: String| {
        let mut response = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = status;
        response
    };
    if let Some(ms) = path
        .strip_prefix("/delay/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/reset" {
        // A service error makes hyper close the connection without answering.
        return Err(std::io::Error::other("reset requested"));
    }
    let is_websocket = request
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if is_websocket {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("echo {line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        let mut response = full(StatusCode::SWITCHING_PROTOCOLS, String::new());
        response
            .headers_mut()
            .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        response.headers_mut().insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        set_upstream(&mut response, &name);
        return Ok(response);
    }
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let version = request.version();
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = header_map_json(request.headers());
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let (true, Some(code)) = (grpc, forced_grpc_status) {
        let mut response = full(StatusCode::OK, String::new());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(code));
        headers.insert("x-test-forced", HeaderValue::from(code));
        set_upstream(&mut response, &name);
        return Ok(response);
    }
    if grpc {
        let mut response = Response::new(GrpcEcho::new(body).boxed());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        set_upstream(&mut response, &name);
        return Ok(response);
    }
    let status = forced_status
        .or_else(|| {
            path.strip_prefix("/status/")
                .and_then(|code| code.parse::<u16>().ok())
        })
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let description = serde_json::json!({
        "upstream": name,
        "method": method,
        "path": path_and_query,
        "version": format!("{version:?}"),
        "headers": headers,
        "body_bytes": body.len(),
        "peer": peer.to_string(),
    });
    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(description.clone());
    let mut response = full(status, description.to_string());
    set_upstream(&mut response, &name);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if forced_status.is_some() {
        // Lets a test tell (and a proxy match on) the answers its Mode forced.
        response
            .headers_mut()
            .insert("x-test-forced", HeaderValue::from(status.as_u16()));
    }
    if let Some(header) = forced_header {
        response
            .headers_mut()
            .insert(header, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// An HTTP/2 server on 127.0.0.1 that resets every `every`-th stream (the 1st, the
/// `every + 1`-th, …) with `RST_STREAM` and the given reason (`REFUSED_STREAM`,
/// `INTERNAL_ERROR`, …) before answering, and answers the others `200` with
/// `x-upstream: <name>`. (hyper's server cannot reset a stream with a chosen reason.)
#[derive(Debug)]
pub struct ResettingUpstream {
    /// Where it listens.
    pub address: SocketAddr,
    /// Streams received, refused or not.
    pub requests: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl Drop for ResettingUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl ResettingUpstream {
    /// Starts one.
    pub async fn start(
        name: &str,
        every: u64,
        reason: h2::Reason,
    ) -> std::io::Result<ResettingUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let counted = requests.clone();
        let name = HeaderValue::from_str(name).map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(reset_some(stream, every, reason, counted.clone(), name.clone()));
                    }
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(ResettingUpstream {
            address,
            requests,
            stop,
        })
    }

    /// Streams received so far.
    pub fn count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Starts counting streams from zero again (the next one is reset).
    pub fn reset_count(&self) {
        self.requests.store(0, Ordering::Relaxed);
    }
}

async fn reset_some(
    stream: tokio::net::TcpStream,
    every: u64,
    reason: h2::Reason,
    requests: Arc<AtomicU64>,
    name: HeaderValue,
) {
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((_request, mut respond))) = connection.accept().await {
        let number = requests.fetch_add(1, Ordering::Relaxed) + 1;
        if every > 0 && (number - 1).is_multiple_of(every) {
            respond.send_reset(reason);
            continue;
        }
        let mut response = Response::new(());
        response.headers_mut().insert("x-upstream", name.clone());
        if let Ok(mut body) = respond.send_response(response, false) {
            let _ = body.send_data(Bytes::from_static(b"ok"), true);
        }
    }
}

fn set_upstream<B>(response: &mut Response<B>, name: &str) {
    if let Ok(value) = HeaderValue::from_str(name) {
        response.headers_mut().insert("x-upstream", value);
    }
}

fn header_map_json(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// A gRPC response body: the request's message, then `grpc-status: 0` trailers.
struct GrpcEcho {
    message: Option<Bytes>,
    trailers_sent: bool,
}

impl GrpcEcho {
    fn new(message: Bytes) -> Self {
        GrpcEcho {
            message: Some(message),
            trailers_sent: false,
        }
    }
}

impl http_body::Body for GrpcEcho {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if let Some(message) = self.message.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(message))));
        }
        if !self.trailers_sent {
            self.trailers_sent = true;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        std::task::Poll::Ready(None)
    }
}

/// A TCP server that answers each line with `<name> <line>`.
#[derive(Debug)]
pub struct TcpEcho {
    /// Where it listens.
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl TcpEcho {
    /// Starts one.
    pub async fn start(name: &str) -> std::io::Result<TcpEcho> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let name = name.clone();
                        tokio::spawn(async move {
                            let (read, mut write) = stream.into_split();
                            let mut lines = BufReader::new(read).lines();
                            while let Ok(Some(line)) = lines.next_line().await {
                                if write.write_all(format!("{name} {line}\n").as_bytes()).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(TcpEcho { address, stop })
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Trailers.
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (test upstreams answer JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a fresh connection to `address` (HTTP/1.1, or HTTP/2 with prior
/// knowledge when `request.version()` is HTTP/2).
pub async fn send(
    address: SocketAddr,
    mut request: Request<Full<Bytes>>,
) -> Result<Answer, String> {
    if request.version() == Version::HTTP_2 && request.uri().authority().is_none() {
        // HTTP/2 carries the authority in the URI (`:authority`), not in a Host header.
        let authority = request
            .headers_mut()
            .remove(http::header::HOST)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .unwrap_or_else(|| address.to_string());
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        *request.uri_mut() = format!("http://{authority}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    }
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    let response = if request.version() == Version::HTTP_2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?
    };
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// A GET of `path` with `Host: authority`.
pub async fn get(address: SocketAddr, authority: &str, path: &str) -> Result<Answer, String> {
    let request = Request::get(path)
        .header(http::header::HOST, authority)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    send(address, request).await
}

/// Polls `check` every 20 ms until it returns `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Envoy binary for differential tests: `BOSUN_ENVOY`, else `.venv/bin/envoy` at the
/// workspace root (where `.ci/run` installs it).
pub fn envoy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BOSUN_ENVOY") {
        return Some(PathBuf::from(path));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/envoy");
    root.exists().then_some(root)
}

/// A management server for tests: holds resources per type, serves them over ADS (state of the
/// world and delta), pushes changes, and records every ACK and NACK.
pub mod ads {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use bosun_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    };
    use bosun_xds::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        Resource,
    };
    use bosun_xds::pb::google::protobuf::Any;
    use futures_util::Stream;
    use prost::Message;
    use tokio::sync::{mpsc, watch};
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;

    /// What a client said about a response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Ack {
        /// The resource type.
        pub type_url: String,
        /// The version the client now has.
        pub version: String,
        /// The nonce of the response answered.
        pub nonce: String,
        /// The NACK's reason, if it was one.
        pub error: Option<String>,
    }

    #[derive(Debug, Default)]
    struct State {
        version: u64,
        resources: BTreeMap<String, Vec<(String, Any)>>,
        acks: Vec<Ack>,
        nonce: u64,
    }

    /// The server.
    #[derive(Clone, Debug)]
    pub struct TestAds {
        /// Where it listens.
        pub address: SocketAddr,
        state: Arc<Mutex<State>>,
        changed: watch::Sender<u64>,
        stop: Arc<watch::Sender<bool>>,
    }

    fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps a message in an `Any` of `type_url`.
    pub fn any<M: Message>(type_url: &str, message: &M) -> Any {
        Any {
            type_url: type_url.to_owned(),
            value: message.encode_to_vec(),
        }
    }

    impl TestAds {
        /// Starts one on 127.0.0.1.
        pub async fn start() -> std::io::Result<TestAds> {
            Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
        }

        /// Starts one on `address` (to stand in for a server that went away).
        pub async fn start_on(address: SocketAddr) -> std::io::Result<TestAds> {
            let listener = tokio::net::TcpListener::bind(address).await?;
            let address = listener.local_addr()?;
            let (changed, _) = watch::channel(0);
            let (stop, mut stopped) = watch::channel(false);
            let server = TestAds {
                address,
                state: Arc::new(Mutex::new(State::default())),
                changed,
                stop: Arc::new(stop),
            };
            let service = AggregatedDiscoveryServiceServer::new(server.clone());
            tokio::spawn(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stopped.wait_for(|s| *s).await.map(|_| ());
                    })
                    .await;
            });
            Ok(server)
        }

        /// Stops serving (streams end, new connections are refused).
        pub fn shutdown(&self) {
            let _ = self.stop.send(true);
            // Streams hold their own tasks; closing the change channel ends them.
            let _ = self.changed.send(u64::MAX);
        }

        /// Replaces the resources of `type_url` (named) and pushes them.
        pub fn set(&self, type_url: &str, resources: Vec<(String, Any)>) {
            let version = {
                let mut state = lock(&self.state);
                state.version += 1;
                state.resources.insert(type_url.to_owned(), resources);
                state.version
            };
            let _ = self.changed.send(version);
        }

        /// Every ACK and NACK so far.
        pub fn acks(&self) -> Vec<Ack> {
            lock(&self.state).acks.clone()
        }

        fn snapshot(
            &self,
            type_url: &str,
            names: &BTreeSet<String>,
        ) -> (String, Vec<(String, Any)>, String) {
            let mut state = lock(&self.state);
            state.nonce += 1;
            let resources = state
                .resources
                .get(type_url)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| names.is_empty() || names.contains(name))
                .collect();
            (
                state.version.to_string(),
                resources,
                state.nonce.to_string(),
            )
        }

        fn record(&self, ack: Ack) {
            lock(&self.state).acks.push(ack);
        }
    }

    type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

    #[tonic::async_trait]
    impl AggregatedDiscoveryService for TestAds {
        type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
        type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

        async fn stream_aggregated_resources(
            &self,
            request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
        ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
            let mut requests = request.into_inner();
            let (sender, receiver) = mpsc::channel(64);
            let server = self.clone();
            let mut changed = self.changed.subscribe();
            tokio::spawn(async move {
                let mut subscriptions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                let send = |type_url: &str, names: &BTreeSet<String>| {
                    let (version, resources, nonce) = server.snapshot(type_url, names);
                    DiscoveryResponse {
                        version_info: version,
                        resources: resources.into_iter().map(|(_, any)| any).collect(),
                        type_url: type_url.to_owned(),
                        nonce,
                        ..Default::default()
                    }
                };
                loop {
                    tokio::select! {
                        request = requests.next() => {
                            let Some(Ok(request)) = request else { break };
                            if !request.response_nonce.is_empty() {
                                server.record(Ack {
                                    type_url: request.type_url.clone(),
                                    version: request.version_info.clone(),
                                    nonce: request.response_nonce.clone(),
                                    error: request.error_detail.as_ref().map(|e| e.message.clone()),
                                });
                            }
                            let names: BTreeSet<String> = request.resource_names.iter().cloned().collect();
                            let new = subscriptions.get(&request.type_url) != Some(&names);
                            if request.response_nonce.is_empty() || new {
                                subscriptions.insert(request.type_url.clone(), names.clone());
                                if sender.send(Ok(send(&request.type_url, &names))).await.is_err() {
                                    break;
                                }
                            }
                        }
                        changed_version = changed.changed() => {
                            if changed_version.is_err() || *changed.borrow() == u64::MAX {
                                break;
                            }
                            for (type_url, names) in &subscriptions {
                                if sender.send(Ok(send(type_url, names))).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
                receiver,
            ))))
        }

        async fn delta_aggregated_resources(
            &self,
            request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
        ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
            let mut requests = request.into_inner();
            let (sender, receiver) = mpsc::channel(64);
            let server = self.clone();
            let mut changed = self.changed.subscribe();
            tokio::spawn(async move {
                // What each type's client holds: name -> version.
                let mut held: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                let mut subscriptions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                let delta = |type_url: &str,
                             names: &BTreeSet<String>,
                             held: &mut BTreeMap<String, String>| {
                    let (version, resources, nonce) = server.snapshot(type_url, names);
                    let current: BTreeMap<String, Any> = resources.into_iter().collect();
                    let removed: Vec<String> = held
                        .keys()
                        .filter(|n| !current.contains_key(*n))
                        .cloned()
                        .collect();
                    let updated: Vec<Resource> = current
                        .iter()
                        .filter(|(name, any)| held.get(*name) != Some(&digest(any)))
                        .map(|(name, any)| Resource {
                            name: name.clone(),
                            version: digest(any),
                            resource: Some(any.clone()),
                            ..Default::default()
                        })
                        .collect();
                    *held = current
                        .iter()
                        .map(|(n, a)| (n.clone(), digest(a)))
                        .collect();
                    DeltaDiscoveryResponse {
                        system_version_info: version,
                        resources: updated,
                        type_url: type_url.to_owned(),
                        removed_resources: removed,
                        nonce,
                        ..Default::default()
                    }
                };
                loop {
                    tokio::select! {
                        request = requests.next() => {
                            let Some(Ok(request)) = request else { break };
                            if !request.response_nonce.is_empty() {
                                server.record(Ack {
                                    type_url: request.type_url.clone(),
                                    version: String::new(),
                                    nonce: request.response_nonce.clone(),
                                    error: request.error_detail.as_ref().map(|e| e.message.clone()),
                                });
                                continue;
                            }
                            let names = subscriptions.entry(request.type_url.clone()).or_default();
                            names.extend(request.resource_names_subscribe.iter().filter(|n| *n != "*").cloned());
                            for gone in &request.resource_names_unsubscribe {
                                names.remove(gone);
                            }
                            let names = names.clone();
                            let held = held.entry(request.type_url.clone()).or_default();
                            if sender.send(Ok(delta(&request.type_url, &names, held))).await.is_err() {
                                break;
                            }
                        }
                        changed_version = changed.changed() => {
                            if changed_version.is_err() || *changed.borrow() == u64::MAX {
                                break;
                            }
                            for (type_url, names) in &subscriptions {
                                let held = held.entry(type_url.clone()).or_default();
                                if sender.send(Ok(delta(type_url, names, held))).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
                receiver,
            ))))
        }
    }

    fn digest(any: &Any) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        any.value.hash(&mut hasher);
        format!("{:x}", hasher.finish())
    }
}
