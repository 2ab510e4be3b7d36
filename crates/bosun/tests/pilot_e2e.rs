//! End-to-end: `bosun pilot` + proxies (bosun's, or Envoy's for interop) + Bookinfo on
//! loopback. Applying Bookinfo's networking files changes routing as SCENARIOS.md S2–S9 say;
//! pilot restarts lose nothing; bad config changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mesh;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh::{Mesh, ProxyKind, http, reviews_version};

const NETWORKING: &str = "samples/bookinfo/networking";

/// Applies a networking file and waits until every proxy has ACKed the resulting push.
async fn apply_and_wait(mesh: &Mesh, file: &str) {
    let before = mesh.nonces().await;
    mesh.apply_istio(&format!("{NETWORKING}/{file}"));
    let changed = bosun_proxy::testing::eventually(Duration::from_secs(10), || async {
        (mesh.nonces().await != before).then_some(())
    })
    .await;
    assert!(changed.is_some(), "nothing was pushed after {file}");
    mesh.wait_synced(mesh.proxies.len()).await;
    assert_no_nack(mesh).await;
}

async fn assert_no_nack(mesh: &Mesh) {
    let syncz = mesh.syncz().await;
    for proxy in syncz.as_array().unwrap() {
        for t in ["cds", "lds", "eds", "rds"] {
            assert!(
                proxy.get(format!("{t}_nack")).is_none(),
                "{} rejected {t}: {}",
                proxy["proxy"],
                proxy[format!("{t}_nack")]
            );
        }
    }
}

/// The reviews version that answered `GET /api/v1/products/0/reviews` through the gateway.
async fn reviews_pod(mesh: &Mesh, user: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = user.map(|u| ("end-user", u)).into_iter().collect();
    let (status, _, body) = http(
        mesh.gateway_address(),
        "GET",
        "bookinfo",
        "/api/v1/products/0/reviews",
        &headers,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["podname"].as_str().unwrap_or("").to_owned()
}

/// How many of `n` requests each reviews version answered.
async fn reviews_shares(mesh: &Mesh, n: usize, user: Option<&str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let pod = reviews_pod(mesh, user).await;
        let version = pod
            .trim_start_matches("reviews-")
            .split('-')
            .next()
            .unwrap_or("")
            .to_owned();
        *counts.entry(version).or_default() += 1;
    }
    counts
}

async fn product_page(mesh: &Mesh, user: Option<&str>) -> (u16, String) {
    let cookie = user.map(|u| format!("session={u}"));
    let headers: Vec<(&str, &str)> = cookie
        .as_deref()
        .map(|c| ("cookie", c))
        .into_iter()
        .collect();
    let (status, _, body) = http(
        mesh.gateway_address(),
        "GET",
        "bookinfo",
        "/productpage",
        &headers,
    )
    .await
    .unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_runs_behind_the_gateway() {
    let mut mesh = Mesh::start();
    mesh.start_bookinfo(ProxyKind::Bosun, ProxyKind::Bosun)
        .await;
    apply_and_wait(&mesh, "bookinfo-gateway.yaml").await;

    // S1/S2: the product page through the gateway, every reviews version in turn.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, headers, body) = http(
            mesh.gateway_address(),
            "GET",
            "bookinfo",
            "/productpage",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<title>Simple Bookstore App</title>"));
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "server" && v == "istio-envoy"),
            "{headers:?}"
        );
        seen.insert(reviews_version(&body));
    }
    assert_eq!(
        seen.len(),
        3,
        "reviews v1, v2 and v3 all answered: {seen:?}"
    );
    // Routed requests reach productpage (which answers them, found or not); the rest are
    // answered 404 by the gateway itself.
    let upstream = |headers: &[(String, String)]| {
        headers
            .iter()
            .any(|(k, _)| k == "x-envoy-upstream-service-time")
    };
    for path in [
        "/static/css/style.css",
        "/api/v1/products",
        "/logout",
        "/login",
    ] {
        let (_, headers, _) = http(mesh.gateway_address(), "GET", "bookinfo", path, &[])
            .await
            .unwrap();
        assert!(upstream(&headers), "{path} is routed: {headers:?}");
    }
    for path in ["/admin", "/productpage/x", "/"] {
        let (status, headers, _) = http(mesh.gateway_address(), "GET", "bookinfo", path, &[])
            .await
            .unwrap();
        assert_eq!(status, 404, "{path}");
        assert!(!upstream(&headers), "{path} is not routed");
    }

    // proxy-status and proxy-config show what istioctl shows.
    let (ok, out, _) = mesh.bosun(&["proxy-status"]);
    assert!(ok);
    assert!(out.starts_with("NAME"), "{out}");
    assert_eq!(
        out.matches("SYNCED").count(),
        4 * mesh.proxies.len(),
        "{out}"
    );
    assert!(!out.contains("STALE") && !out.contains("NACKED"), "{out}");
    let productpage = format!("{}.default", mesh.pod("productpage").name);
    let (ok, out, err) = mesh.bosun(&["proxy-config", "clusters", &productpage]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("reviews.default.svc.cluster.local") && l.contains(" 9080 ")),
        "{out}"
    );
    let (ok, out, _) = mesh.bosun(&[
        "proxy-config",
        "routes",
        "istio-ingressgateway-0.istio-system",
    ]);
    assert!(ok);
    assert!(
        out.contains("http.8080") && out.contains("bookinfo.default"),
        "{out}"
    );
    let (ok, out, _) = mesh.bosun(&["proxy-config", "endpoints", &productpage, "-o", "json"]);
    assert!(ok);
    let dump: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        dump[0]["dynamic_endpoint_configs"]
            .as_array()
            .unwrap()
            .len()
            >= 4
    );
}

/// S4, S5 and S8 with every Bookinfo routing file, through proxies of one kind: bosun's or
/// Envoy's. Both must route the same way.
async fn bookinfo_routing_files(kind: ProxyKind) {
    let mut mesh = Mesh::start();
    mesh.start_bookinfo(kind, kind).await;
    apply_and_wait(&mesh, "bookinfo-gateway.yaml").await;
    apply_and_wait(&mesh, "destination-rule-all.yaml").await;

    // S4: everything to v1, then to v3.
    apply_and_wait(&mesh, "virtual-service-all-v1.yaml").await;
    for _ in 0..10 {
        let (status, page) = product_page(&mesh, None).await;
        assert_eq!(status, 200);
        assert_eq!(reviews_version(&page), "v1");
    }
    apply_and_wait(&mesh, "virtual-service-reviews-v3.yaml").await;
    assert_eq!(
        reviews_shares(&mesh, 20, None).await,
        BTreeMap::from([("v3".to_owned(), 20)])
    );

    // S4: weighted splits, within a few percent over 1000 requests.
    apply_and_wait(&mesh, "virtual-service-reviews-80-20.yaml").await;
    let shares = reviews_shares(&mesh, 1000, None).await;
    let v1 = shares.get("v1").copied().unwrap_or(0);
    let v2 = shares.get("v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 1000, "{shares:?}");
    assert!((740..=860).contains(&v1), "80/20 split: {shares:?}");
    apply_and_wait(&mesh, "virtual-service-reviews-50-v3.yaml").await;
    let shares = reviews_shares(&mesh, 400, None).await;
    let v3 = shares.get("v3").copied().unwrap_or(0);
    assert!((150..=250).contains(&v3), "50/50 split: {shares:?}");

    // S5: jason sees v2 (black stars), everyone else v1.
    apply_and_wait(&mesh, "virtual-service-reviews-test-v2.yaml").await;
    assert_eq!(
        reviews_shares(&mesh, 10, Some("jason")).await,
        BTreeMap::from([("v2".to_owned(), 10)])
    );
    assert_eq!(
        reviews_shares(&mesh, 10, Some("alice")).await,
        BTreeMap::from([("v1".to_owned(), 10)])
    );
    let (_, page) = product_page(&mesh, Some("jason")).await;
    assert_eq!(
        reviews_version(&page),
        "v2",
        "signed in as jason: black stars"
    );
    apply_and_wait(&mesh, "virtual-service-reviews-jason-v2-v3.yaml").await;
    assert_eq!(
        reviews_shares(&mesh, 5, Some("jason")).await,
        BTreeMap::from([("v2".to_owned(), 5)])
    );
    assert_eq!(
        reviews_shares(&mesh, 5, None).await,
        BTreeMap::from([("v3".to_owned(), 5)])
    );

    // S8: an abort for jason on ratings: reviews v2 cannot show stars.
    apply_and_wait(&mesh, "virtual-service-reviews-test-v2.yaml").await;
    apply_and_wait(&mesh, "virtual-service-ratings-test-abort.yaml").await;
    let (status, page) = product_page(&mesh, Some("jason")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Ratings service is currently unavailable"),
        "{page}"
    );
    let (_, page) = product_page(&mesh, Some("alice")).await;
    assert!(!page.contains("Ratings service is currently unavailable"));

    // S8: details aborted with 555 for everyone.
    apply_and_wait(&mesh, "fault-injection-details-v1.yaml").await;
    let (status, page) = product_page(&mesh, None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Sorry, product details are currently unavailable"),
        "{page}"
    );

    // A subset with no pods: details v2 does not exist, so details is unavailable too.
    apply_and_wait(&mesh, "virtual-service-details-v2.yaml").await;
    let (_, page) = product_page(&mesh, None).await;
    assert!(
        page.contains("Sorry, product details are currently unavailable"),
        "{page}"
    );

    // S8: the 7 s delay for jason meets productpage's own timeout (3 s, tried twice).
    apply_and_wait(&mesh, "virtual-service-all-v1.yaml").await;
    apply_and_wait(&mesh, "virtual-service-reviews-test-v2.yaml").await;
    apply_and_wait(&mesh, "virtual-service-ratings-test-delay.yaml").await;
    let started = Instant::now();
    let (status, page) = product_page(&mesh, Some("jason")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        page.contains("Sorry, product reviews are currently unavailable"),
        "{page}"
    );
    assert!(
        elapsed >= Duration::from_secs(6),
        "two 3 s tries: {elapsed:?}"
    );

    // The remaining files are accepted by every proxy (their routes are in the goldens;
    // `egress-rule-google-apis.yaml` is left out: it would make proxies resolve a public
    // name, and tests reach nothing beyond loopback).
    for file in [
        "virtual-service-ratings-db.yaml",
        "virtual-service-ratings-mysql.yaml",
        "virtual-service-ratings-mysql-vm.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-v2-v3.yaml",
        "virtual-service-details-v2.yaml",
        "destination-rule-reviews.yaml",
        "destination-rule-all-mtls.yaml",
        "certmanager-gateway.yaml",
    ] {
        apply_and_wait(&mesh, file).await;
    }
    let (status, _) = product_page(&mesh, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_routing_files_with_bosun_proxies() {
    bookinfo_routing_files(ProxyKind::Bosun).await;
}

/// Interop: Envoy, bootstrapped by `bosun proxy --print-bootstrap`, ACKs every push and
/// routes as bosun's proxy does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_routing_files_with_envoy() {
    bookinfo_routing_files(ProxyKind::Envoy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pilot_restarts_under_traffic_without_failing_a_request() {
    let mut mesh = Mesh::start();
    mesh.start_bookinfo(ProxyKind::Bosun, ProxyKind::Bosun)
        .await;
    apply_and_wait(&mesh, "bookinfo-gateway.yaml").await;
    apply_and_wait(&mesh, "destination-rule-all.yaml").await;
    apply_and_wait(&mesh, "virtual-service-all-v1.yaml").await;

    let gateway = mesh.gateway_address();
    let traffic = tokio::spawn(async move {
        let mut failures = Vec::new();
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(4) && sent < 2000 {
            match http(
                gateway,
                "GET",
                "bookinfo",
                "/api/v1/products/0/reviews",
                &[],
            )
            .await
            {
                Ok((200, _, body)) if body.contains("reviews-v1") => {}
                other => failures.push(format!("{other:?}")),
            }
            sent += 1;
        }
        (sent, failures)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    mesh.restart_pilot();
    let (sent, failures) = traffic.await.unwrap();
    assert!(sent > 50, "traffic flowed: {sent}");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );

    // Every proxy reconnects and converges on the restarted pilot, which lost nothing.
    mesh.wait_synced(mesh.proxies.len()).await;
    let (ok, out, _) = mesh.bosun(&["get", "vs"]);
    assert!(
        ok && out.contains("reviews") && out.contains("bookinfo"),
        "{out}"
    );
    apply_and_wait(&mesh, "virtual-service-reviews-v3.yaml").await;
    assert_eq!(
        reviews_shares(&mesh, 5, None).await,
        BTreeMap::from([("v3".to_owned(), 5)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_changes_nothing_and_rejections_show() {
    let mut mesh = Mesh::start();
    mesh.start_bookinfo(ProxyKind::Bosun, ProxyKind::Bosun)
        .await;
    apply_and_wait(&mesh, "bookinfo-gateway.yaml").await;
    apply_and_wait(&mesh, "destination-rule-all.yaml").await;
    apply_and_wait(&mesh, "virtual-service-reviews-v3.yaml").await;

    // An invalid apply is refused with the file, document and field, and changes nothing.
    let before = mesh.nonces().await;
    let (ok, _, err) = mesh.apply_text(
        "bad.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 150\n",
    );
    assert!(!ok);
    assert!(
        err.contains("bad.yaml:9:") && err.contains("spec.http[0].route[0].weight"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mesh.nonces().await, before, "nothing was pushed");
    assert_eq!(
        reviews_shares(&mesh, 5, None).await,
        BTreeMap::from([("v3".to_owned(), 5)])
    );

    // A resource the proxies reject (a CA file that does not exist) shows in proxy-status;
    // they keep serving with their last good clusters.
    let (ok, out, err) = mesh.apply_text(
        "tls.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: /nonexistent/ca.pem}\n  subsets:\n  - {name: v3, labels: {version: v3}}\n",
    );
    assert!(ok, "{out}{err}");
    let nacked = bosun_proxy::testing::eventually(Duration::from_secs(10), || async {
        let (_, out, _) = mesh.bosun(&["proxy-status"]);
        (out.contains("NACKED") && out.contains("rejected CDS")).then_some(out)
    })
    .await;
    let out = nacked.expect("the rejection shows in proxy-status");
    assert!(out.contains("/nonexistent/ca.pem"), "{out}");
    assert_eq!(
        reviews_shares(&mesh, 5, None).await,
        BTreeMap::from([("v3".to_owned(), 5)])
    );

    // Fixing it brings everyone back in sync.
    apply_and_wait(&mesh, "destination-rule-all.yaml").await;
    let (_, out, _) = mesh.bosun(&["proxy-status"]);
    assert!(!out.contains("NACKED"), "{out}");
}
