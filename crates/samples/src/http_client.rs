//! The HTTP/1.1 client every sample uses for its outbound calls.
//!
//! Without root, the local mesh cannot capture an app's traffic; it gives each app its
//! sidecar as an HTTP proxy instead. So the client honours `HTTP_PROXY`/`http_proxy` (and
//! `NO_PROXY`/`no_proxy`) as curl does: through a proxy the request goes in absolute form
//! (`GET http://details:9080/details/0 HTTP/1.1`), which is how the proxy learns the
//! destination. Each call opens its own connection: the samples make few calls, and a fresh
//! connection per call keeps load balancing in the mesh per request, as the real apps see it.

mod no_proxy;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Error;
use no_proxy::NoProxy;

/// Where outbound calls go: the proxy settings, usually read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// The HTTP proxy, `http://host:port` or `host:port`, as in `HTTP_PROXY`; `None` to
    /// connect directly.
    pub http_proxy: Option<String>,
    /// Hosts reached directly even with a proxy, as in `NO_PROXY`: comma-separated names
    /// (matching their subdomains too), IP addresses, CIDR ranges, or `*` for all.
    pub no_proxy: Option<String>,
}

impl ProxySettings {
    /// Reads `http_proxy`/`HTTP_PROXY` and `no_proxy`/`NO_PROXY` (lowercase first, as curl
    /// does; empty values count as unset).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ProxySettings::from_env`], with variables looked up by `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| {
            names
                .into_iter()
                .filter_map(&lookup)
                .find(|value| !value.trim().is_empty())
        };
        Self {
            http_proxy: first(["http_proxy", "HTTP_PROXY"]),
            no_proxy: first(["no_proxy", "NO_PROXY"]),
        }
    }
}

/// An HTTP/1.1 client for plain `http://` URLs, direct or through an HTTP proxy.
#[derive(Debug, Clone, Default)]
pub struct HttpClient {
    proxy: Option<Arc<Proxy>>,
}

#[derive(Debug)]
struct Proxy {
    host: String,
    port: u16,
    no_proxy: NoProxy,
}

/// The parts of a URL a call needs.
struct Target {
    host: String,
    port: u16,
    /// `host[:port]` as written in the URL, without credentials: the `Host` header.
    authority: Authority,
    path_and_query: PathAndQuery,
}

impl HttpClient {
    /// A client that always connects directly.
    pub fn direct() -> Self {
        Self::default()
    }

    /// A client using `settings`; fails when the proxy is not an `http://host[:port]` URL.
    pub fn new(settings: &ProxySettings) -> Result<Self, Error> {
        let Some(value) = settings.http_proxy.as_deref() else {
            return Ok(Self::direct());
        };
        let (host, port) = parse_proxy(value)?;
        let no_proxy = NoProxy::parse(settings.no_proxy.as_deref().unwrap_or(""));
        Ok(Self {
            proxy: Some(Arc::new(Proxy {
                host,
                port,
                no_proxy,
            })),
        })
    }

    /// A client configured from the process environment (see [`ProxySettings::from_env`]).
    pub fn from_env() -> Result<Self, Error> {
        Self::new(&ProxySettings::from_env())
    }

    /// The proxy a call to `host` goes through, as `(host, port)`; `None` when direct.
    pub fn proxy_for(&self, host: &str) -> Option<(&str, u16)> {
        self.proxy
            .as_deref()
            .filter(|proxy| !proxy.no_proxy.matches(strip_brackets(host)))
            .map(|proxy| (proxy.host.as_str(), proxy.port))
    }

    /// `GET url` with `headers`, the whole call bounded by `timeout`.
    pub async fn get(
        &self,
        url: &str,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Response<Bytes>, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|error: http::uri::InvalidUri| Error::InvalidUrl {
                url: url.to_owned(),
                reason: error.to_string(),
            })?;
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.send(request, Some(timeout)).await
    }

    /// Sends `request`, whose URI must be an absolute `http://` URL, and reads the whole
    /// answer. `Host` is set from the URL unless the request has one. With a `timeout`, the
    /// whole call (resolving, connecting, sending, reading the body) is bounded by it.
    pub async fn send(
        &self,
        request: Request<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<Response<Bytes>, Error> {
        match timeout {
            Some(limit) => {
                let url = request.uri().to_string();
                tokio::time::timeout(limit, self.exchange(request))
                    .await
                    .map_err(|_| Error::Timeout {
                        url,
                        timeout: limit,
                    })?
            }
            None => self.exchange(request).await,
        }
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, Error> {
        let (mut parts, body) = request.into_parts();
        let target = Target::of(&parts.uri)?;
        if !parts.headers.contains_key(HOST) {
            let host = HeaderValue::from_str(target.authority.as_str()).map_err(|error| {
                Error::InvalidUrl {
                    url: parts.uri.to_string(),
                    reason: error.to_string(),
                }
            })?;
            parts.headers.insert(HOST, host);
        }
        let proxy = self.proxy_for(&target.host);
        parts.uri = match proxy {
            Some(_) => Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(target.authority.clone())
                .path_and_query(target.path_and_query.clone())
                .build()
                .map_err(Error::Request)?,
            None => Uri::from(target.path_and_query.clone()),
        };
        parts.version = Version::HTTP_11;
        let (label, stream) = match proxy {
            Some((host, port)) => {
                let label = format!("proxy {host}:{port}");
                let stream = connect(host, port, &label).await?;
                (label, stream)
            }
            None => {
                let label = format!("{}:{}", target.host, target.port);
                let stream = connect(&target.host, target.port, &label).await?;
                (label, stream)
            }
        };
        let http_error = |source| Error::Http {
            target: label.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        let request = Request::from_parts(parts, Full::new(body));
        let mut exchange = pin!(async move {
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Response::from_parts(parts, body))
        });
        // The connection is driven here rather than spawned so that dropping this future
        // (a timeout) closes the socket at once instead of leaving it to the server.
        let mut connection = pin!(connection);
        let result = tokio::select! {
            biased;
            result = &mut exchange => result,
            ended = &mut connection => match exchange.await {
                Ok(response) => Ok(response),
                // The connection's own error says more than the cancelled exchange.
                Err(error) => Err(ended.err().unwrap_or(error)),
            },
        };
        result.map_err(http_error)
    }
}

impl Target {
    fn of(uri: &Uri) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: uri.to_string(),
            reason: reason.to_owned(),
        };
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| invalid("not an absolute url"))?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(Error::UnsupportedScheme {
                url: uri.to_string(),
                scheme: scheme.to_owned(),
            });
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let host_port = authority
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or(authority.as_str());
        let authority: Authority = host_port.parse().map_err(|_| invalid("invalid host"))?;
        let host = strip_brackets(authority.host()).to_owned();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let path_and_query = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() && pq.as_str().starts_with('/') => pq.clone(),
            Some(pq) => format!("/{}", pq.as_str())
                .parse()
                .map_err(|_| invalid("invalid path"))?,
            None => PathAndQuery::from_static("/"),
        };
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(80),
            authority,
            path_and_query,
        })
    }
}

/// `host` without the brackets of an IPv6 literal.
fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// Reads an `HTTP_PROXY` value: `http://host[:port][/]` or `host[:port]`, port 80 by default.
fn parse_proxy(value: &str) -> Result<(String, u16), Error> {
    let invalid = |reason: &str| Error::InvalidProxy {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = value.trim();
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(invalid("only http:// proxies are supported")),
        None => trimmed,
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    if host_port.contains('@') {
        return Err(invalid("proxy credentials are not supported"));
    }
    let authority: Authority = host_port
        .parse()
        .map_err(|_| invalid("expected host:port"))?;
    let host = strip_brackets(authority.host());
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok((host.to_owned(), authority.port_u16().unwrap_or(80)))
}

/// Opens a TCP connection to `host:port`, trying each resolved address in turn.
async fn connect(host: &str, port: u16, label: &str) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| Error::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Requests are written whole; Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    match last_error {
        Some(source) => Err(Error::Connect {
            target: label.to_owned(),
            source,
        }),
        None => Err(Error::Resolve {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use test_case::test_case;

    use super::*;

    #[test_case("http://127.0.0.1:15001", "127.0.0.1", 15001; "url")]
    #[test_case("http://127.0.0.1:15001/", "127.0.0.1", 15001; "trailing slash")]
    #[test_case("127.0.0.2:3128", "127.0.0.2", 3128; "bare host and port")]
    #[test_case("HTTP://proxy.local", "proxy.local", 80; "default port")]
    #[test_case("http://[::1]:8080", "::1", 8080; "ipv6")]
    fn proxies_are_parsed(value: &str, host: &str, port: u16) {
        assert_eq!(parse_proxy(value).unwrap(), (host.to_owned(), port));
    }

    #[test_case("https://proxy:443"; "tls proxy")]
    #[test_case("http://user:pw@proxy:80"; "credentials")]
    #[test_case("http://"; "no host")]
    fn bad_proxies_are_rejected(value: &str) {
        assert!(matches!(
            parse_proxy(value),
            Err(Error::InvalidProxy { .. })
        ));
    }

    #[test]
    fn lowercase_variables_win_and_empty_ones_are_unset() {
        let env: HashMap<&str, &str> = [
            ("http_proxy", ""),
            ("HTTP_PROXY", "http://127.0.0.1:15001"),
            ("no_proxy", "localhost"),
            ("NO_PROXY", "other"),
        ]
        .into();
        let settings = ProxySettings::from_lookup(|name| env.get(name).map(|v| (*v).to_owned()));
        assert_eq!(
            settings.http_proxy.as_deref(),
            Some("http://127.0.0.1:15001")
        );
        assert_eq!(settings.no_proxy.as_deref(), Some("localhost"));
    }

    #[test]
    fn no_proxy_hosts_bypass_the_proxy() {
        let client = HttpClient::new(&ProxySettings {
            http_proxy: Some("http://127.0.0.1:15001".into()),
            no_proxy: Some("localhost, .svc.cluster.local,10.0.0.0/8".into()),
        })
        .unwrap();
        assert_eq!(client.proxy_for("details"), Some(("127.0.0.1", 15001)));
        assert_eq!(client.proxy_for("localhost"), None);
        assert_eq!(client.proxy_for("details.default.svc.cluster.local"), None);
        assert_eq!(client.proxy_for("10.1.2.3"), None);
        assert_eq!(HttpClient::direct().proxy_for("details"), None);
    }

    #[test_case(
        "http://details:9080/details/0",
        "details",
        9080,
        "details:9080",
        "/details/0"
    )]
    #[test_case(
        "http://reviews/reviews/0?x=1",
        "reviews",
        80,
        "reviews",
        "/reviews/0?x=1"
    )]
    #[test_case("http://u:p@[::1]:81", "::1", 81, "[::1]:81", "/")]
    fn targets_are_read_from_urls(url: &str, host: &str, port: u16, authority: &str, path: &str) {
        let target = Target::of(&url.parse().unwrap()).unwrap();
        assert_eq!(target.host, host);
        assert_eq!(target.port, port);
        assert_eq!(target.authority.as_str(), authority);
        assert_eq!(target.path_and_query.as_str(), path);
    }

    #[test]
    fn only_absolute_http_urls_are_called() {
        let relative = Target::of(&"/details/0".parse().unwrap());
        assert!(matches!(relative, Err(Error::InvalidUrl { .. })));
        let tls = Target::of(&"https://example.com/".parse().unwrap());
        assert!(matches!(tls, Err(Error::UnsupportedScheme { .. })));
    }
}
