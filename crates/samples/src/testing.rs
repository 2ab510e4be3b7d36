//! Helpers for tests that run samples on loopback: ephemeral listeners, fake backends that
//! record what they receive, a server that never answers, and a forwarding HTTP proxy that
//! plays the sidecar of `HTTP_PROXY` mode.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::{self, Response};
use crate::{HttpClient, ProxySettings};

/// A task running in the background, aborted when this guard is dropped.
#[derive(Debug)]
pub struct Background(JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `future` (a sample's `serve`) in the background until the guard is dropped.
pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Background {
    Background(tokio::spawn(future))
}

/// A listener on `127.0.0.1` with a port chosen by the system, and its address.
pub async fn local_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("cannot bind 127.0.0.1:0: {error}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("no local address: {error}"));
    (listener, addr)
}

/// An address where nothing listens: connections to it are refused.
pub async fn closed_port() -> SocketAddr {
    let (listener, addr) = local_listener().await;
    drop(listener);
    addr
}

/// Calls `check` every few milliseconds until it gives `Some` or `deadline` has passed.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request as a fake server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The request target as sent: a path, or an absolute URL through a proxy.
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

fn snapshot(log: &Log) -> Vec<Recorded> {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

async fn record(log: &Log, request: Request<hyper::body::Incoming>) -> Recorded {
    let (parts, body) = request.into_parts();
    let recorded = Recorded {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body: server::read_body(body).await.unwrap_or_default(),
    };
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded.clone());
    recorded
}

/// A fake HTTP backend that answers every request with one status and JSON body, and
/// records the requests.
#[derive(Debug)]
pub struct FakeBackend {
    addr: SocketAddr,
    log: Log,
    _task: Background,
}

impl FakeBackend {
    /// Starts the backend on an ephemeral loopback port.
    pub async fn start(status: StatusCode, body: &'static str) -> Self {
        let (listener, addr) = local_listener().await;
        let log = Log::default();
        let server_log = log.clone();
        let task = spawn(server::serve(listener, move |request, _peer| {
            let log = server_log.clone();
            async move {
                record(&log, request).await;
                server::answer(status, "application/json", body)
            }
        }));
        Self {
            addr,
            log,
            _task: task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        snapshot(&self.log)
    }
}

/// A server that accepts connections and never answers, to exercise timeouts.
#[derive(Debug)]
pub struct Stalling {
    addr: SocketAddr,
    _task: Background,
}

impl Stalling {
    /// Starts it on an ephemeral loopback port.
    pub async fn start() -> Self {
        let (listener, addr) = local_listener().await;
        let task = spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                // Held, never read or written, until the task is aborted.
                open.push(stream);
            }
        });
        Self { addr, _task: task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A forwarding HTTP proxy, as a sidecar is in `HTTP_PROXY` mode: it records each request
/// (with its absolute-form target) and forwards it to the address its authority
/// (`details:9080`) maps to, keeping the `Host` header; unknown authorities get 502.
#[derive(Debug)]
pub struct ForwardProxy {
    addr: SocketAddr,
    log: Log,
    _task: Background,
}

impl ForwardProxy {
    /// Starts the proxy on an ephemeral loopback port with `routes` from authority
    /// (`host:port` as in the URL) to address.
    pub async fn start(routes: HashMap<String, SocketAddr>) -> Self {
        let (listener, addr) = local_listener().await;
        let log = Log::default();
        let server_log = log.clone();
        let routes = Arc::new(routes);
        let task = spawn(server::serve(listener, move |request, _peer| {
            let log = server_log.clone();
            let routes = routes.clone();
            async move {
                let recorded = record(&log, request).await;
                forward(&routes, recorded).await
            }
        }));
        Self {
            addr,
            log,
            _task: task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Proxy settings pointing at this proxy, as `HTTP_PROXY=http://127.0.0.1:<port>`.
    pub fn settings(&self) -> ProxySettings {
        ProxySettings {
            http_proxy: Some(format!("http://{}", self.addr)),
            no_proxy: None,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        snapshot(&self.log)
    }
}

async fn forward(routes: &HashMap<String, SocketAddr>, recorded: Recorded) -> Response {
    let authority = recorded
        .uri
        .authority()
        .map(ToString::to_string)
        .unwrap_or_default();
    let Some(target) = routes.get(&authority) else {
        return server::text(StatusCode::BAD_GATEWAY, "no route\n");
    };
    let path = recorded.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(uri) = format!("http://{target}{path}").parse::<Uri>() else {
        return server::text(StatusCode::BAD_GATEWAY, "bad target\n");
    };
    let mut request = Request::new(recorded.body);
    *request.method_mut() = recorded.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = recorded.headers;
    match HttpClient::direct().send(request, None).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let mut answer = Response::new(http_body_util::Full::new(body));
            *answer.status_mut() = parts.status;
            *answer.headers_mut() = parts.headers;
            answer
        }
        Err(error) => server::text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}
