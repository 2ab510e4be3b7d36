//! Bookinfo's services on loopback, wired together as in the mesh and called over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun_samples::HttpClient;
use bosun_samples::bookinfo::productpage::{self, ProductpageConfig};
use bosun_samples::bookinfo::reviews::{self, ReviewsConfig, ReviewsVersion};
use bosun_samples::bookinfo::{ServiceAddress, details, ratings};
use bosun_samples::testing::{self, Background, FakeBackend, ForwardProxy, Stalling};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use test_case::test_case;

const CALL_LIMIT: Duration = Duration::from_secs(20);

const REVIEW1: &str =
    "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!";
const REVIEW2: &str = "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.";

/// An answer as the tests look at it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn call(
    method: Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = Request::new(Bytes::from(body.to_owned()));
    *request.method_mut() = method;
    *request.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let response = HttpClient::direct()
        .send(request, Some(CALL_LIMIT))
        .await
        .unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: String::from_utf8(response.body().to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    call(Method::GET, addr, path, headers, "").await
}

fn service(addr: SocketAddr) -> ServiceAddress {
    ServiceAddress::new(addr.ip().to_string(), addr.port())
}

async fn start_details() -> (SocketAddr, Background) {
    let (listener, addr) = testing::local_listener().await;
    (addr, testing::spawn(details::serve(listener)))
}

async fn start_ratings() -> (SocketAddr, Background) {
    let (listener, addr) = testing::local_listener().await;
    (addr, testing::spawn(ratings::serve(listener)))
}

async fn start_reviews(config: ReviewsConfig) -> (SocketAddr, Background) {
    let (listener, addr) = testing::local_listener().await;
    (addr, testing::spawn(reviews::serve(listener, config)))
}

async fn start_productpage(config: ProductpageConfig) -> (SocketAddr, Background) {
    let (listener, addr) = testing::local_listener().await;
    (addr, testing::spawn(productpage::serve(listener, config)))
}

fn reviews_config(version: ReviewsVersion, ratings: SocketAddr) -> ReviewsConfig {
    ReviewsConfig {
        ratings: service(ratings),
        pod_name: format!("reviews-{version:?}").to_lowercase(),
        ..ReviewsConfig::for_version(version)
    }
}

fn productpage_config(
    details: SocketAddr,
    reviews: SocketAddr,
    ratings: SocketAddr,
) -> ProductpageConfig {
    ProductpageConfig {
        details: service(details),
        reviews: service(reviews),
        ratings: service(ratings),
        ..ProductpageConfig::default()
    }
}

/// All four services with reviews at `version`; productpage's address first.
async fn bookinfo(version: ReviewsVersion) -> (SocketAddr, Vec<Background>) {
    let (details, details_task) = start_details().await;
    let (ratings, ratings_task) = start_ratings().await;
    let (reviews, reviews_task) = start_reviews(reviews_config(version, ratings)).await;
    let (productpage, productpage_task) =
        start_productpage(productpage_config(details, reviews, ratings)).await;
    (
        productpage,
        vec![details_task, ratings_task, reviews_task, productpage_task],
    )
}

fn full_stars(page: &str) -> usize {
    page.matches("<span class=\"glyphicon glyphicon-star\"></span>")
        .count()
}

fn empty_stars(page: &str) -> usize {
    page.matches("<span class=\"glyphicon glyphicon-star-empty\"></span>")
        .count()
}

#[tokio::test]
async fn details_answers_like_the_real_service() {
    let (addr, _task) = start_details().await;
    let book = get(addr, "/details/0", &[]).await;
    assert_eq!(book.status, StatusCode::OK);
    assert_eq!(book.headers["content-type"], "application/json");
    assert_eq!(
        book.body,
        r#"{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}"#
    );
    assert_eq!(get(addr, "/details/7", &[]).await.json()["id"], 7);
    let bad = get(addr, "/details/abc", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json(),
        json!({"error": "please provide numeric product id"})
    );
    let health = get(addr, "/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "Details is healthy"}));
    assert_eq!(get(addr, "/other", &[]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ratings_answers_and_keeps_posted_ratings() {
    let (addr, _task) = start_ratings().await;
    let ratings = get(addr, "/ratings/0", &[]).await;
    assert_eq!(ratings.status, StatusCode::OK);
    assert_eq!(
        ratings.body,
        r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#
    );
    assert_eq!(
        get(addr, "/ratings/x", &[]).await.json(),
        json!({"error": "please provide numeric product ID"})
    );
    assert_eq!(
        get(addr, "/health", &[]).await.json(),
        json!({"status": "Ratings is healthy"})
    );
    let posted = call(
        Method::POST,
        addr,
        "/ratings/3",
        &[],
        r#"{"Reviewer1": 1, "Reviewer2": 2}"#,
    )
    .await;
    assert_eq!(posted.status, StatusCode::OK);
    assert_eq!(
        get(addr, "/ratings/3", &[]).await.json(),
        json!({"id": 3, "ratings": {"Reviewer1": 1, "Reviewer2": 2}})
    );
    let bad = call(Method::POST, addr, "/ratings/3", &[], "not json").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[test_case(ReviewsVersion::V1, None; "v1 without stars")]
#[test_case(ReviewsVersion::V2, Some("black"); "v2 black stars")]
#[test_case(ReviewsVersion::V3, Some("red"); "v3 red stars")]
#[tokio::test]
async fn reviews_answer_per_version(version: ReviewsVersion, color: Option<&str>) {
    let (ratings, _ratings_task) = start_ratings().await;
    let (addr, _task) = start_reviews(reviews_config(version, ratings)).await;
    let answer = get(addr, "/reviews/0", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let pod = format!("reviews-{version:?}").to_lowercase();
    let expected = match color {
        None => json!({"id": "0", "podname": pod, "clustername": "null", "reviews": [
            {"reviewer": "Reviewer1", "text": REVIEW1},
            {"reviewer": "Reviewer2", "text": REVIEW2},
        ]}),
        Some(color) => json!({"id": "0", "podname": pod, "clustername": "null", "reviews": [
            {"reviewer": "Reviewer1", "text": REVIEW1, "rating": {"stars": 5, "color": color}},
            {"reviewer": "Reviewer2", "text": REVIEW2, "rating": {"stars": 4, "color": color}},
        ]}),
    };
    // Key order too: the JSON is compared as text.
    assert_eq!(answer.body, expected.to_string());
    assert_eq!(
        get(addr, "/health", &[]).await.json(),
        json!({"status": "Reviews is healthy"})
    );
    assert_eq!(
        get(addr, "/reviews/x", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn reviews_report_ratings_unavailable_when_ratings_is_down() {
    let ratings = testing::closed_port().await;
    let (addr, _task) = start_reviews(reviews_config(ReviewsVersion::V2, ratings)).await;
    let answer = get(addr, "/reviews/0", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let reviews = answer.json()["reviews"].clone();
    for review in reviews.as_array().unwrap() {
        assert_eq!(
            review["rating"],
            json!({"error": "Ratings service is currently unavailable"})
        );
    }
}

#[tokio::test]
async fn reviews_v3_gives_up_on_slow_ratings() {
    let stalling = Stalling::start().await;
    let limit = Duration::from_millis(300);
    let config = ReviewsConfig {
        ratings_timeout: limit,
        ..reviews_config(ReviewsVersion::V3, stalling.addr())
    };
    let (addr, _task) = start_reviews(config).await;
    let started = Instant::now();
    let answer = get(addr, "/reviews/0", &[]).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= limit, "answered after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
    assert_eq!(
        answer.json()["reviews"][0]["rating"],
        json!({"error": "Ratings service is currently unavailable"})
    );
}

#[tokio::test]
async fn reviews_propagate_headers_to_ratings() {
    let ratings = FakeBackend::start(
        StatusCode::OK,
        r#"{"id": 0, "ratings": {"Reviewer1": 3, "Reviewer2": 1}}"#,
    )
    .await;
    let (addr, _task) = start_reviews(reviews_config(ReviewsVersion::V2, ratings.addr())).await;
    let answer = get(
        addr,
        "/reviews/0",
        &[
            ("x-request-id", "req-1"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("end-user", "jason"),
            ("x-not-propagated", "1"),
        ],
    )
    .await;
    let reviews = answer.json()["reviews"].clone();
    assert_eq!(reviews[0]["rating"], json!({"stars": 3, "color": "black"}));
    assert_eq!(reviews[1]["rating"], json!({"stars": 1, "color": "black"}));
    let seen = ratings.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/ratings/0");
    assert_eq!(seen[0].headers["x-request-id"], "req-1");
    assert_eq!(
        seen[0].headers["x-b3-traceid"],
        "80f198ee56343ba864fe8b2a57d3eff7"
    );
    assert_eq!(
        seen[0].headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(seen[0].headers["end-user"], "jason");
    assert!(!seen[0].headers.contains_key("x-not-propagated"));
}

#[test_case(ReviewsVersion::V1, "black", 0, 0; "v1 shows no stars")]
#[test_case(ReviewsVersion::V2, "black", 9, 1; "v2 shows black stars")]
#[test_case(ReviewsVersion::V3, "red", 9, 1; "v3 shows red stars")]
#[tokio::test]
async fn productpage_shows_the_book_and_its_reviews(
    version: ReviewsVersion,
    color: &str,
    full: usize,
    empty: usize,
) {
    let (productpage, _tasks) = bookinfo(version).await;
    let page = get(productpage, "/productpage", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.body;
    assert!(html.contains("<title>Simple Bookstore App</title>"));
    assert!(html.contains("The Comedy of Errors"));
    assert!(html.contains("Book Details"));
    assert!(html.contains("PublisherA"));
    assert!(html.contains("123-1234567890"));
    assert!(html.contains("Book Reviews"));
    assert!(html.contains(REVIEW1));
    assert!(html.contains(REVIEW2));
    assert!(html.contains("Sign in"));
    assert_eq!(full_stars(&html), full);
    assert_eq!(empty_stars(&html), empty);
    let fonts = html.matches(&format!("<font color=\"{color}\">")).count();
    assert_eq!(fonts, if full > 0 { 2 } else { 0 });
}

#[tokio::test]
async fn productpage_degrades_when_backends_are_down() {
    let config = productpage_config(
        testing::closed_port().await,
        testing::closed_port().await,
        testing::closed_port().await,
    );
    let (productpage, _task) = start_productpage(config).await;
    let page = get(productpage, "/productpage", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<title>Simple Bookstore App</title>"));
    assert!(page.body.contains("Error fetching product details!"));
    assert!(
        page.body
            .contains("Sorry, product details are currently unavailable for this book.")
    );
    assert!(page.body.contains("Error fetching product reviews!"));
    assert!(
        page.body
            .contains("Sorry, product reviews are currently unavailable for this book.")
    );
    let details = get(productpage, "/api/v1/products/0", &[]).await;
    assert_eq!(details.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        details.json(),
        json!({"error": "Sorry, product details are currently unavailable for this book."})
    );
    let ratings = get(productpage, "/api/v1/products/0/ratings", &[]).await;
    assert_eq!(
        ratings.json(),
        json!({"error": "Sorry, product ratings are currently unavailable for this book."})
    );
}

#[tokio::test]
async fn productpage_shows_ratings_unavailable() {
    let (details, _details_task) = start_details().await;
    let ratings = testing::closed_port().await;
    let (reviews, _reviews_task) = start_reviews(reviews_config(ReviewsVersion::V3, ratings)).await;
    let (productpage, _task) =
        start_productpage(productpage_config(details, reviews, ratings)).await;
    let page = get(productpage, "/productpage", &[]).await;
    assert_eq!(
        page.body
            .matches("Ratings service is currently unavailable")
            .count(),
        2
    );
    assert_eq!(full_stars(&page.body), 0);
    assert!(page.body.contains("Book Reviews"));
}

#[tokio::test]
async fn productpage_tries_reviews_twice_and_reports_its_status() {
    let (details, _details_task) = start_details().await;
    let reviews = FakeBackend::start(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream").await;
    let (productpage, _task) = start_productpage(productpage_config(
        details,
        reviews.addr(),
        testing::closed_port().await,
    ))
    .await;
    let page = get(productpage, "/productpage", &[]).await;
    assert!(page.body.contains("Error fetching product reviews!"));
    assert!(page.body.contains("PublisherA"));
    assert_eq!(reviews.requests().len(), 2);
    let api = get(productpage, "/api/v1/products/0/reviews", &[]).await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        api.json(),
        json!({"error": "Sorry, product reviews are currently unavailable for this book."})
    );
    assert_eq!(reviews.requests().len(), 4);
}

#[tokio::test]
async fn productpage_gives_up_on_slow_reviews_after_each_timeout() {
    let (details, _details_task) = start_details().await;
    let stalling = Stalling::start().await;
    let config = ProductpageConfig {
        reviews_timeout: Duration::from_millis(200),
        ..productpage_config(details, stalling.addr(), testing::closed_port().await)
    };
    let (productpage, _task) = start_productpage(config).await;
    let started = Instant::now();
    let page = get(productpage, "/productpage", &[]).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
    assert!(
        page.body
            .contains("Sorry, product reviews are currently unavailable for this book.")
    );
}

#[test]
fn productpage_defaults_are_the_real_apps() {
    let config = ProductpageConfig::default();
    assert_eq!(
        config.details.url("/details/0"),
        "http://details:9080/details/0"
    );
    assert_eq!(
        config.reviews.url("/reviews/0"),
        "http://reviews:9080/reviews/0"
    );
    assert_eq!(
        config.ratings.url("/ratings/0"),
        "http://ratings:9080/ratings/0"
    );
    assert_eq!(config.details_timeout, Duration::from_secs(3));
    assert_eq!(config.reviews_timeout, Duration::from_secs(3));
    assert_eq!(config.reviews_attempts, 2);
}

#[tokio::test]
async fn login_sets_the_user_and_logout_clears_it() {
    let details =
        FakeBackend::start(StatusCode::OK, r#"{"id": 0, "publisher": "PublisherA"}"#).await;
    let reviews = FakeBackend::start(StatusCode::OK, r#"{"id": "0", "reviews": []}"#).await;
    let (productpage, _task) = start_productpage(productpage_config(
        details.addr(),
        reviews.addr(),
        testing::closed_port().await,
    ))
    .await;

    let login = call(
        Method::POST,
        productpage,
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "username=jason&passwd=secret",
    )
    .await;
    assert_eq!(login.status, StatusCode::FOUND);
    assert_eq!(login.headers["location"], "/productpage");
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(cookie, "session=jason");

    let page = get(productpage, "/productpage", &[("cookie", &cookie)]).await;
    assert!(
        page.body
            .contains("jason ( <a href=\"logout\">sign out</a> )")
    );
    assert!(!page.body.contains("Sign in"));
    for backend in [&details, &reviews] {
        let seen = backend.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].headers["end-user"], "jason");
        assert_eq!(seen[0].headers["cookie"], cookie.as_str());
    }

    let logout = get(
        productpage,
        "/logout",
        &[
            ("cookie", &cookie),
            ("referer", "http://bookinfo.example/productpage"),
        ],
    )
    .await;
    assert_eq!(logout.status, StatusCode::FOUND);
    assert_eq!(
        logout.headers["location"],
        "http://bookinfo.example/productpage"
    );
    let cleared = logout.headers["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let anonymous = get(productpage, "/productpage", &[]).await;
    assert!(anonymous.body.contains("Sign in"));
    assert!(!details.requests()[1].headers.contains_key("end-user"));

    // Without a session, an `end-user` set by a caller travels on.
    get(productpage, "/productpage", &[("end-user", "tester")]).await;
    assert_eq!(details.requests()[2].headers["end-user"], "tester");
}

#[tokio::test]
async fn productpage_propagates_tracing_and_session_headers() {
    let details = FakeBackend::start(StatusCode::OK, r#"{"id": 0}"#).await;
    let reviews = FakeBackend::start(StatusCode::OK, r#"{"id": "0", "reviews": []}"#).await;
    let (productpage, _task) = start_productpage(productpage_config(
        details.addr(),
        reviews.addr(),
        testing::closed_port().await,
    ))
    .await;
    let propagated = [
        ("x-request-id", "9a6e6bd5-0f4d-9c2e-8d1e-3c1e9b1a2b3c"),
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", "0020000000000001"),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
        ("b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"),
        ("x-ot-span-context", "ot-context"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("x-datadog-trace-id", "123"),
        ("x-datadog-parent-id", "456"),
        ("x-datadog-sampling-priority", "1"),
        (
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1",
        ),
        ("grpc-trace-bin", "AAARf5W"),
        (
            "sw8",
            "1-TRACEID-SEGMENTID-3-UFJPRA-SU5TVA-RU5EUE9JTlQ-QUREUkVTUw",
        ),
        ("end-user", "jason"),
        ("user-agent", "Mozilla/5.0"),
        ("cookie", "theme=dark"),
        ("authorization", "Bearer token"),
    ];
    let mut headers = propagated.to_vec();
    headers.push(("x-not-propagated", "secret"));
    get(productpage, "/productpage", &headers).await;
    for backend in [&details, &reviews] {
        let seen = backend.requests();
        assert_eq!(seen.len(), 1);
        for (name, value) in propagated {
            assert_eq!(
                seen[0].headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name}"
            );
        }
        assert!(!seen[0].headers.contains_key("x-not-propagated"));
    }
    assert_eq!(details.requests()[0].uri, "/details/0");
    assert_eq!(reviews.requests()[0].uri, "/reviews/0");
}

#[tokio::test]
async fn productpage_api_and_pages() {
    let (productpage, _tasks) = bookinfo(ReviewsVersion::V2).await;
    let products = get(productpage, "/api/v1/products", &[]).await;
    assert_eq!(products.status, StatusCode::OK);
    let products = products.json();
    assert_eq!(products[0]["id"], 0);
    assert_eq!(products[0]["title"], "The Comedy of Errors");
    assert!(
        products[0]["descriptionHtml"]
            .as_str()
            .unwrap()
            .contains("Wikipedia Summary")
    );
    assert_eq!(
        get(productpage, "/api/v1/products/0", &[]).await.json()["ISBN-10"],
        "1234567890"
    );
    let reviews = get(productpage, "/api/v1/products/0/reviews", &[])
        .await
        .json();
    assert_eq!(
        reviews["reviews"][0]["rating"],
        json!({"stars": 5, "color": "black"})
    );
    assert_eq!(
        get(productpage, "/api/v1/products/0/ratings", &[])
            .await
            .json(),
        json!({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    );
    let health = get(productpage, "/health", &[]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "Product page is healthy")
    );
    let index = get(productpage, "/", &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.contains("<title>Simple Bookstore App</title>"));
    assert!(index.body.contains("/productpage?u=normal"));
    assert_eq!(
        get(productpage, "/nothing", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(productpage, "/api/v1/products/0/other", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let head = call(Method::HEAD, productpage, "/productpage", &[], "").await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    let post = call(Method::POST, productpage, "/productpage", &[], "").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bookinfo_runs_through_an_http_proxy() {
    let (details, _details_task) = start_details().await;
    let (ratings, _ratings_task) = start_ratings().await;
    // The reviews the proxy routes to; productpage and reviews only know the mesh names.
    let (reviews_listener, reviews) = testing::local_listener().await;
    let routes: HashMap<String, SocketAddr> = [
        ("details:9080".to_owned(), details),
        ("reviews:9080".to_owned(), reviews),
        ("ratings:9080".to_owned(), ratings),
    ]
    .into();
    let proxy = ForwardProxy::start(routes).await;
    let client = HttpClient::new(&proxy.settings()).unwrap();
    let reviews_config = ReviewsConfig {
        client: client.clone(),
        ..ReviewsConfig::for_version(ReviewsVersion::V2)
    };
    let _reviews_task = testing::spawn(reviews::serve(reviews_listener, reviews_config));
    let (productpage, _task) = start_productpage(ProductpageConfig {
        client,
        ..ProductpageConfig::default()
    })
    .await;

    let page = get(
        productpage,
        "/productpage",
        &[("x-request-id", "through-proxy")],
    )
    .await;
    assert!(page.body.contains("PublisherA"));
    assert_eq!(full_stars(&page.body), 9);

    let seen = proxy.requests();
    let targets: Vec<String> = seen.iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(
        targets,
        [
            "http://details:9080/details/0",
            "http://reviews:9080/reviews/0",
            "http://ratings:9080/ratings/0",
        ]
    );
    for request in &seen {
        let authority = request.uri.authority().unwrap().as_str();
        assert_eq!(request.headers["host"], authority);
        assert_eq!(request.headers["x-request-id"], "through-proxy");
    }
}
