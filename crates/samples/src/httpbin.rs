//! A subset of go-httpbin (`mccutchen/go-httpbin`, Istio's httpbin sample): the request
//! inspection and status/delay endpoints the Istio tasks use, answered in go-httpbin's shape
//! (canonical header names, every value a list).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, LOCATION, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::server::{self, Response};

/// The port go-httpbin listens on (the Service maps 8000 to it).
pub const PORT: u16 = 8080;

/// The longest `/delay` go-httpbin accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// Serves httpbin on `listener` until the future is dropped: `/headers`, `/ip`,
/// `/user-agent`, `/get`, `/post`, `/put`, `/patch`, `/delete`, `/anything[/…]`,
/// `/status/{codes}`, `/delay/{seconds}`, `/response-headers`, `/uuid`.
pub async fn serve(listener: TcpListener) {
    server::serve(listener, |request, peer| async move {
        handle(request, peer).await
    })
    .await;
}

async fn handle(request: Request<Incoming>, peer: SocketAddr) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/" => server::text(
            StatusCode::OK,
            "httpbin (bosun built-in): /headers /ip /user-agent /get /post /put /patch /delete /anything /status/{codes} /delay/{seconds} /response-headers /uuid\n",
        ),
        "/headers" if is_get => pretty(StatusCode::OK, &json!({"headers": headers_json(&request)})),
        "/ip" if is_get => pretty(StatusCode::OK, &json!({"origin": origin(&request, peer)})),
        "/user-agent" if is_get => {
            let agent = request
                .headers()
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            pretty(StatusCode::OK, &json!({"user-agent": agent}))
        }
        "/uuid" if is_get => pretty(
            StatusCode::OK,
            &json!({"uuid": uuid::Uuid::new_v4().to_string()}),
        ),
        "/get" if is_get => pretty(StatusCode::OK, &inspect(&request, peer)),
        "/post" | "/put" | "/patch" | "/delete" => {
            if method.as_str().eq_ignore_ascii_case(&path[1..]) {
                let reply = anything(request, peer).await;
                pretty(StatusCode::OK, &reply)
            } else {
                method_not_allowed()
            }
        }
        "/response-headers" => response_headers(&request),
        "/headers" | "/ip" | "/user-agent" | "/uuid" | "/get" => method_not_allowed(),
        _ if path == "/anything" || path.starts_with("/anything/") => {
            let reply = anything(request, peer).await;
            pretty(StatusCode::OK, &reply)
        }
        _ => {
            if let Some(codes) = path.strip_prefix("/status/") {
                status(codes)
            } else if let Some(delay) = path.strip_prefix("/delay/") {
                match parse_delay(delay) {
                    Some(delay) if delay <= MAX_DELAY => {
                        tokio::time::sleep(delay).await;
                        let reply = anything(request, peer).await;
                        pretty(StatusCode::OK, &reply)
                    }
                    _ => server::text(
                        StatusCode::BAD_REQUEST,
                        format!("invalid duration: must be between 0 and {MAX_DELAY:?}\n"),
                    ),
                }
            } else {
                server::text(StatusCode::NOT_FOUND, "Not Found\n")
            }
        }
    }
}

/// `{"args", "headers", "method", "origin", "url"}`, the answer of `/get`.
fn inspect<B>(request: &Request<B>, peer: SocketAddr) -> Value {
    json!({
        "args": args_json(request),
        "headers": headers_json(request),
        "method": request.method().as_str(),
        "origin": origin(request, peer),
        "url": url(request),
    })
}

/// `/get`'s answer plus the body as `data`, `form` and `json`, the answer of `/anything`.
async fn anything(request: Request<Incoming>, peer: SocketAddr) -> Value {
    let mut reply = inspect(&request, peer);
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = server::read_body(request.into_body())
        .await
        .unwrap_or_default();
    let form = if is_form {
        multi_map(form_urlencoded::parse(&body).into_owned())
    } else {
        Map::new()
    };
    if let Value::Object(fields) = &mut reply {
        fields.insert("data".into(), json!(String::from_utf8_lossy(&body)));
        fields.insert("files".into(), json!({}));
        fields.insert("form".into(), Value::Object(form));
        fields.insert(
            "json".into(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        );
    }
    reply
}

/// Answers with the status given, or one picked from `200,500` (evenly) or
/// `200:0.9,500:0.1` (by weight).
fn status(codes: &str) -> Response {
    let Some(code) = pick_status(codes, random_unit()) else {
        return server::text(StatusCode::BAD_REQUEST, "Invalid status\n");
    };
    let mut response = server::empty(code);
    if code.is_redirection() {
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/redirect/1"));
    } else if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"Fake Realm\""),
        );
    }
    response
}

/// Picks a status from `codes` with `roll` in `[0, 1)`.
fn pick_status(codes: &str, roll: f64) -> Option<StatusCode> {
    let mut choices = Vec::new();
    for choice in codes.split(',') {
        let (code, weight) = match choice.split_once(':') {
            Some((code, weight)) => (code, weight.trim().parse::<f64>().ok()?),
            None => (choice, 1.0),
        };
        let code = code
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))?;
        if !(weight >= 0.0 && weight.is_finite()) {
            return None;
        }
        choices.push((StatusCode::from_u16(code).ok()?, weight));
    }
    let total: f64 = choices.iter().map(|(_, weight)| weight).sum();
    let mut threshold = roll * total;
    for (code, weight) in &choices {
        if threshold < *weight {
            return Some(*code);
        }
        threshold -= weight;
    }
    choices.last().map(|(code, _)| *code)
}

/// A uniform number in `[0, 1)` from the v4 UUID generator, the one source of randomness
/// the crate already has. The low 53 bits are used: a v4 UUID's fixed version and variant
/// bits are all above them.
fn random_unit() -> f64 {
    const BITS: u32 = 53;
    let random = uuid::Uuid::new_v4().as_u128() & ((1u128 << BITS) - 1);
    random as f64 / (1u64 << BITS) as f64
}

/// `/delay/{d}`: seconds (`1`, `0.5`) or a Go duration (`500ms`, `2s`).
fn parse_delay(text: &str) -> Option<Duration> {
    let (number, unit) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let seconds = number.parse::<f64>().ok()? * unit;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Sets each query parameter as a response header and echoes them as JSON.
fn response_headers<B>(request: &Request<B>) -> Response {
    let pairs = server::query_pairs(request);
    let mut headers = HeaderMap::new();
    for (name, value) in &pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let mut body = multi_map(pairs);
    body.insert(
        "Content-Type".into(),
        json!(["application/json; charset=utf-8"]),
    );
    let mut response = pretty(StatusCode::OK, &Value::Object(body));
    response.headers_mut().extend(headers);
    response
}

/// The request headers with Go's canonical names (`X-Request-Id`), values as lists,
/// sorted by name, `Host` included.
fn headers_json<B>(request: &Request<B>) -> Value {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in request.headers() {
        headers
            .entry(canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    if !request.headers().contains_key(HOST)
        && let Some(authority) = request.uri().authority()
    {
        headers.insert("Host".into(), vec![authority.to_string()]);
    }
    json!(headers)
}

fn args_json<B>(request: &Request<B>) -> Value {
    Value::Object(multi_map(server::query_pairs(request)))
}

fn multi_map(pairs: impl IntoIterator<Item = (String, String)>) -> Map<String, Value> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in pairs {
        map.entry(key).or_default().push(value);
    }
    map.into_iter()
        .map(|(key, values)| (key, json!(values)))
        .collect()
}

/// Go's `CanonicalMIMEHeaderKey`: each dash-separated word capitalised.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// The client's address as go-httpbin reports it: the first `X-Forwarded-For` entry, else
/// the peer's IP.
fn origin<B>(request: &Request<B>, peer: SocketAddr) -> String {
    request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| plain_ip(peer.ip()).to_string())
}

/// An IPv4 address mapped into IPv6 (a dual-stack listener) shown as IPv4.
fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn url<B>(request: &Request<B>) -> String {
    let scheme = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(ToString::to_string))
        .unwrap_or_default();
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    format!("{scheme}://{host}{path}")
}

fn pretty(status: StatusCode, value: &Value) -> Response {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_default();
    body.push('\n');
    server::answer(status, "application/json; charset=utf-8", body)
}

fn method_not_allowed() -> Response {
    server::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test_case("x-request-id", "X-Request-Id")]
    #[test_case("USER-AGENT", "User-Agent")]
    #[test_case("host", "Host")]
    fn names_are_canonical(name: &str, expected: &str) {
        assert_eq!(canonical(name), expected);
    }

    #[test_case("418", 0.7, Some(418))]
    #[test_case("200,500", 0.2, Some(200))]
    #[test_case("200,500", 0.7, Some(500))]
    #[test_case("200:0.9,503:0.1", 0.85, Some(200))]
    #[test_case("200:0.9,503:0.1", 0.95, Some(503))]
    #[test_case("abc", 0.5, None)]
    #[test_case("99", 0.5, None)]
    fn statuses_are_picked(codes: &str, roll: f64, expected: Option<u16>) {
        assert_eq!(pick_status(codes, roll).map(|c| c.as_u16()), expected);
    }

    #[test_case("1", Some(1000))]
    #[test_case("0.25", Some(250))]
    #[test_case("500ms", Some(500))]
    #[test_case("2s", Some(2000))]
    #[test_case("-1", None)]
    #[test_case("soon", None)]
    fn delays_are_parsed(text: &str, millis: Option<u64>) {
        assert_eq!(parse_delay(text).map(|d| d.as_millis() as u64), millis);
    }

    #[test]
    fn random_numbers_are_in_the_unit_interval() {
        for _ in 0..1000 {
            let roll = random_unit();
            assert!((0.0..1.0).contains(&roll));
        }
    }
}
