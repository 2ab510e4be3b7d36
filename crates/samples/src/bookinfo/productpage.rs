//! Bookinfo's `productpage` (`examples-bookinfo-productpage-v1`): the web page and API of
//! the book, built from calls to `details`, `reviews` and (API only) `ratings`.

mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION, REFERER, SET_COOKIE};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::ServiceAddress;
use crate::HttpClient;
use crate::propagation::forward_headers;
use crate::server::{self, Response};

/// The session cookie holding the signed-in user's name.
const SESSION_COOKIE: &str = "session";

/// The one book of the store.
const PRODUCT_ID: u32 = 0;
const PRODUCT_TITLE: &str = "The Comedy of Errors";
const PRODUCT_DESCRIPTION_HTML: &str = "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play.";

const DETAILS_UNAVAILABLE: &str = "Sorry, product details are currently unavailable for this book.";
const REVIEWS_UNAVAILABLE: &str = "Sorry, product reviews are currently unavailable for this book.";
const RATINGS_UNAVAILABLE: &str = "Sorry, product ratings are currently unavailable for this book.";

/// Where productpage's backends are and how long it waits for them.
#[derive(Debug, Clone)]
pub struct ProductpageConfig {
    /// Where `details` is (`DETAILS_HOSTNAME`, `DETAILS_SERVICE_PORT`).
    pub details: ServiceAddress,
    /// Where `reviews` is (`REVIEWS_HOSTNAME`, `REVIEWS_SERVICE_PORT`).
    pub reviews: ServiceAddress,
    /// Where `ratings` is (`RATINGS_HOSTNAME`, `RATINGS_SERVICE_PORT`), for the ratings API.
    pub ratings: ServiceAddress,
    /// Limit on the call to `details`.
    pub details_timeout: Duration,
    /// Limit on each call to `reviews`.
    pub reviews_timeout: Duration,
    /// How many times `reviews` is called before giving up.
    pub reviews_attempts: u32,
    /// Limit on the call to `ratings`.
    pub ratings_timeout: Duration,
    /// The client for all outbound calls.
    pub client: HttpClient,
}

impl Default for ProductpageConfig {
    /// The real app's settings: backends at `details:9080`, `reviews:9080`,
    /// `ratings:9080`, 3 s per call, `reviews` tried twice (the deliberate bug of Istio's
    /// fault-injection task), direct calls.
    fn default() -> Self {
        Self {
            details: ServiceAddress::bookinfo("details", None, None, None),
            reviews: ServiceAddress::bookinfo("reviews", None, None, None),
            ratings: ServiceAddress::bookinfo("ratings", None, None, None),
            details_timeout: Duration::from_secs(3),
            reviews_timeout: Duration::from_secs(3),
            reviews_attempts: 2,
            ratings_timeout: Duration::from_secs(3),
            client: HttpClient::direct(),
        }
    }
}

/// Serves `productpage` on `listener` until the future is dropped: `GET /productpage`,
/// `GET /` (index), `POST /login`, `GET /logout`, `GET /health` and the
/// `/api/v1/products[/{id}[/reviews|/ratings]]` API.
pub async fn serve(listener: TcpListener, config: ProductpageConfig) {
    let config = Arc::new(config);
    server::serve(listener, move |request, _peer: SocketAddr| {
        let config = config.clone();
        async move { handle(&config, request).await }
    })
    .await;
}

/// A backend's answer as productpage uses it: the status it reports and the JSON it shows.
#[derive(Debug)]
struct Fetched {
    status: u16,
    body: Value,
}

impl Fetched {
    fn ok(&self) -> bool {
        self.status == 200
    }
}

async fn handle(config: &ProductpageConfig, request: Request<Incoming>) -> Response {
    let path = request.uri().path().to_owned();
    // Flask answers HEAD on every GET route; hyper leaves the body out.
    let method = match request.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/" | "/index.html") => server::html(StatusCode::OK, page::index(config)),
        (&Method::GET, "/health") => server::html(StatusCode::OK, "Product page is healthy"),
        (&Method::GET, "/metrics") => server::answer(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            "",
        ),
        (&Method::POST, "/login") => login(request).await,
        (&Method::GET, "/logout") => logout(&request),
        (&Method::GET, "/productpage") => product_page(config, &request).await,
        (&Method::GET, "/api/v1/products") => products(),
        (&Method::GET, api) if api.starts_with("/api/v1/products/") => {
            let rest = &api["/api/v1/products/".len()..];
            let headers = outbound_headers(&request);
            let fetched = match rest.split('/').collect::<Vec<_>>().as_slice() {
                [id] if !id.is_empty() => fetch_details(config, id, &headers).await,
                [id, "reviews"] if !id.is_empty() => fetch_reviews(config, id, &headers).await,
                [id, "ratings"] if !id.is_empty() => fetch_ratings(config, id, &headers).await,
                _ => return not_found(),
            };
            let status =
                StatusCode::from_u16(fetched.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            server::json(status, &fetched.body)
        }
        (_, "/" | "/index.html" | "/health" | "/login" | "/logout" | "/productpage") => {
            server::empty(StatusCode::METHOD_NOT_ALLOWED)
        }
        _ => not_found(),
    }
}

async fn product_page(config: &ProductpageConfig, request: &Request<Incoming>) -> Response {
    let user = session_user(request);
    let headers = outbound_headers(request);
    // One after the other, as the real app does: timings under fault injection match.
    let details = fetch_details(config, &PRODUCT_ID.to_string(), &headers).await;
    let reviews = fetch_reviews(config, &PRODUCT_ID.to_string(), &headers).await;
    server::html(
        StatusCode::OK,
        page::product(user.as_deref(), &details, &reviews),
    )
}

fn products() -> Response {
    server::json(
        StatusCode::OK,
        &json!([{
            "id": PRODUCT_ID,
            "title": PRODUCT_TITLE,
            "descriptionHtml": PRODUCT_DESCRIPTION_HTML,
        }]),
    )
}

async fn fetch_details(config: &ProductpageConfig, id: &str, headers: &HeaderMap) -> Fetched {
    let url = config.details.url(&format!("/details/{id}"));
    fetch(
        config,
        &url,
        headers,
        config.details_timeout,
        1,
        DETAILS_UNAVAILABLE,
    )
    .await
}

async fn fetch_reviews(config: &ProductpageConfig, id: &str, headers: &HeaderMap) -> Fetched {
    let url = config.reviews.url(&format!("/reviews/{id}"));
    let attempts = config.reviews_attempts.max(1);
    fetch(
        config,
        &url,
        headers,
        config.reviews_timeout,
        attempts,
        REVIEWS_UNAVAILABLE,
    )
    .await
}

async fn fetch_ratings(config: &ProductpageConfig, id: &str, headers: &HeaderMap) -> Fetched {
    let url = config.ratings.url(&format!("/ratings/{id}"));
    fetch(
        config,
        &url,
        headers,
        config.ratings_timeout,
        1,
        RATINGS_UNAVAILABLE,
    )
    .await
}

/// Calls `url` up to `attempts` times until it answers 200 with JSON. Otherwise reports the
/// last status (500 when there was no answer) with `{"error": unavailable}`, as the real
/// app does.
async fn fetch(
    config: &ProductpageConfig,
    url: &str,
    headers: &HeaderMap,
    timeout: Duration,
    attempts: u32,
    unavailable: &str,
) -> Fetched {
    let mut status = 500;
    for _ in 0..attempts {
        match config.client.get(url, headers.clone(), timeout).await {
            Ok(response) if response.status() == StatusCode::OK => {
                match serde_json::from_slice::<Value>(response.body()) {
                    Ok(body) => return Fetched { status: 200, body },
                    Err(error) => {
                        tracing::warn!(%url, %error, "backend answered invalid json");
                        status = 500;
                    }
                }
            }
            Ok(response) => {
                tracing::warn!(%url, status = %response.status(), "backend answered with an error");
                status = response.status().as_u16();
            }
            Err(error) => {
                tracing::warn!(%url, error = %error, "backend call failed");
                status = 500;
            }
        }
    }
    Fetched {
        status,
        body: json!({"error": unavailable}),
    }
}

/// The headers of the calls made while serving `request`: the propagated ones, with
/// `end-user` set to the signed-in user when there is one.
fn outbound_headers(request: &Request<Incoming>) -> HeaderMap {
    let mut headers = forward_headers(request.headers());
    if let Some(user) = session_user(request)
        && let Ok(value) = HeaderValue::from_str(&user)
    {
        headers.insert("end-user", value);
    }
    headers
}

fn session_user<B>(request: &Request<B>) -> Option<String> {
    let value = server::cookie(request, SESSION_COOKIE)?;
    form_urlencoded::parse(value.as_bytes())
        .next()
        .map(|(user, _)| user.into_owned())
        .filter(|user| !user.is_empty())
}

async fn login(request: Request<Incoming>) -> Response {
    let back = back_to(&request);
    // Like Flask's `request.values`, the query string is read before the form.
    let mut user = server::query_pairs(&request)
        .into_iter()
        .find(|(key, _)| key == "username")
        .map(|(_, value)| value);
    if user.is_none() {
        let body = server::read_body(request.into_body())
            .await
            .unwrap_or_default();
        user = form_urlencoded::parse(&body)
            .find(|(key, _)| key == "username")
            .map(|(_, value)| value.into_owned());
    }
    let cookie = match user.filter(|user| !user.is_empty()) {
        Some(user) => {
            let encoded: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
            format!("{SESSION_COOKIE}={encoded}; Path=/; HttpOnly")
        }
        None => clear_session_cookie(),
    };
    redirect(&back, &cookie)
}

fn logout<B>(request: &Request<B>) -> Response {
    redirect(&back_to(request), &clear_session_cookie())
}

fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly")
}

/// Where login and logout send the browser: the page it came from (as the real app does),
/// else the product page.
fn back_to<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(REFERER)
        .and_then(|value| value.to_str().ok())
        .filter(|referer| !referer.is_empty())
        .unwrap_or("/productpage")
        .to_owned()
}

fn redirect(location: &str, cookie: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target URL: <a href=\"{0}\">{0}</a>. If not, click the link.\n",
        server::escape_html(location)
    );
    let mut response = server::html(StatusCode::FOUND, Bytes::from(body));
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

fn not_found() -> Response {
    server::html(
        StatusCode::NOT_FOUND,
        "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n",
    )
}
