//! The xDS client against a management server: pushes, updates, removals, NACKs, delta, and
//! serving on while the server is away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bosun_proxy::testing::ads::{TestAds, any};
use bosun_proxy::testing::{TestUpstream, eventually, get};
use bosun_xds::TypeUrl;
use bosun_xds::pb::envoy::config::cluster::v3::Cluster;
use bosun_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use bosun_xds::pb::envoy::config::listener::v3::Listener;
use bosun_xds::pb::envoy::config::route::v3::RouteConfiguration;

use common::start;

fn bootstrap(ads: std::net::SocketAddr, delta: bool) -> String {
    let api_type = if delta { "DELTA_GRPC" } else { "GRPC" };
    format!(
        r#"
node: {{id: sidecar~127.0.0.1~test.default~default.svc.cluster.local, cluster: test}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
        port = ads.port()
    )
}

fn from_yaml<M: prost::Message + Default>(yaml: &str, name: &str) -> M {
    bosun_xds::from_yaml(yaml, name, bosun_proxy::support::support()).unwrap()
}

fn eds_cluster(name: &str) -> Cluster {
    from_yaml(
        &format!(
            "name: {name}\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}"
        ),
        "envoy.config.cluster.v3.Cluster",
    )
}

fn assignment(name: &str, upstream: &TestUpstream) -> ClusterLoadAssignment {
    from_yaml(
        &format!(
            "cluster_name: {name}\nendpoints:\n- lb_endpoints:\n  - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}",
            upstream.address.port()
        ),
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    )
}

fn routes(cluster: &str, extra_match: &str) -> RouteConfiguration {
    from_yaml(
        &format!(
            "name: local\nvirtual_hosts:\n- name: all\n  domains: ['*']\n  routes:\n  - match: {{prefix: /{extra_match}}}\n    route: {{cluster: {cluster}}}"
        ),
        "envoy.config.route.v3.RouteConfiguration",
    )
}

fn listener() -> Listener {
    from_yaml(
        r#"
name: http
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: http
      rds: {route_config_name: local, config_source: {ads: {}, resource_api_version: V3}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
        "envoy.config.listener.v3.Listener",
    )
}

async fn push_all(ads: &TestAds, upstream: &TestUpstream) {
    ads.set(
        TypeUrl::CLUSTER,
        vec![(
            "backend".into(),
            any(TypeUrl::CLUSTER, &eds_cluster("backend")),
        )],
    );
    ads.set(
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
        vec![(
            "backend".into(),
            any(
                TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
                &assignment("backend", upstream),
            ),
        )],
    );
    ads.set(
        TypeUrl::ROUTE_CONFIGURATION,
        vec![(
            "local".into(),
            any(TypeUrl::ROUTE_CONFIGURATION, &routes("backend", "")),
        )],
    );
    ads.set(
        TypeUrl::LISTENER,
        vec![("http".into(), any(TypeUrl::LISTENER, &listener()))],
    );
}

async fn upstream_of(proxy: &common::Running) -> Option<String> {
    let address = *proxy.proxy.listener_addresses().get("http")?;
    let answer = get(address, "svc", "/").await.ok()?;
    answer.header("x-upstream").map(str::to_owned)
}

async fn converges_and_updates(delta: bool) {
    let a = TestUpstream::start("a").await.unwrap();
    let b = TestUpstream::start("b").await.unwrap();
    let ads = TestAds::start().await.unwrap();
    push_all(&ads, &a).await;
    let proxy = start(&bootstrap(ads.address, delta)).await;
    let first = eventually(Duration::from_secs(10), || async {
        upstream_of(&proxy).await.filter(|u| u == "a")
    })
    .await;
    assert_eq!(
        first.as_deref(),
        Some("a"),
        "the proxy never served the pushed configuration"
    );

    // Requests keep succeeding while endpoints change under them.
    let address = proxy.listener("http");
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let (failures, done) = (failures.clone(), done.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !done.load(Ordering::Relaxed) && sent < 5_000 {
                match get(address, "svc", "/").await {
                    Ok(answer) if answer.status == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent += 1;
            }
            sent
        })
    };
    ads.set(
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
        vec![(
            "backend".into(),
            any(TypeUrl::CLUSTER_LOAD_ASSIGNMENT, &assignment("backend", &b)),
        )],
    );
    let moved = eventually(Duration::from_secs(10), || async {
        upstream_of(&proxy).await.filter(|u| u == "b")
    })
    .await;
    assert_eq!(moved.as_deref(), Some("b"));
    done.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    assert!(sent > 0);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the update"
    );

    // A bad route configuration is NACKed and the old one keeps serving.
    let mut bad = routes("backend", "");
    bad.virtual_hosts[0].routes[0].r#match = Some(from_yaml(
        "safe_regex: {regex: '(unclosed'}",
        "envoy.config.route.v3.RouteMatch",
    ));
    ads.set(
        TypeUrl::ROUTE_CONFIGURATION,
        vec![("local".into(), any(TypeUrl::ROUTE_CONFIGURATION, &bad))],
    );
    let nack = eventually(Duration::from_secs(10), || async {
        ads.acks()
            .into_iter()
            .find(|a| a.type_url == TypeUrl::ROUTE_CONFIGURATION && a.error.is_some())
    })
    .await
    .expect("a NACK for the bad route configuration");
    assert!(
        nack.error.as_deref().unwrap().contains("invalid regex"),
        "{nack:?}"
    );
    assert_eq!(upstream_of(&proxy).await.as_deref(), Some("b"));

    // Removing the listener stops it.
    ads.set(TypeUrl::LISTENER, Vec::new());
    let gone = eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(address)
            .await
            .err()
            .map(|_| ())
    })
    .await;
    assert!(
        gone.is_some(),
        "the removed listener still accepts connections"
    );
}

#[tokio::test]
async fn state_of_the_world_pushes_apply_and_nacks_keep_the_last_good_config() {
    converges_and_updates(false).await;
}

#[tokio::test]
async fn delta_pushes_apply_and_nacks_keep_the_last_good_config() {
    converges_and_updates(true).await;
}

#[tokio::test]
async fn keeps_serving_while_the_server_is_away_and_reconnects() {
    let a = TestUpstream::start("a").await.unwrap();
    let ads = TestAds::start().await.unwrap();
    push_all(&ads, &a).await;
    let proxy = start(&bootstrap(ads.address, false)).await;
    let served = eventually(Duration::from_secs(10), || async {
        upstream_of(&proxy).await
    })
    .await;
    assert_eq!(served.as_deref(), Some("a"));
    ads.shutdown();
    for _ in 0..20 {
        assert_eq!(upstream_of(&proxy).await.as_deref(), Some("a"));
    }
    // The server comes back at the same address with new endpoints: the proxy reconnects.
    let b = TestUpstream::start("b").await.unwrap();
    let again = eventually(Duration::from_secs(5), || async {
        TestAds::start_on(ads.address).await.ok()
    })
    .await
    .expect("rebinding the management server's address");
    push_all(&again, &b).await;
    let moved = eventually(Duration::from_secs(20), || async {
        upstream_of(&proxy).await.filter(|u| u == "b")
    })
    .await;
    assert_eq!(moved.as_deref(), Some("b"), "the proxy did not reconnect");
}

#[tokio::test]
async fn unsupported_fields_in_pushed_resources_are_nacked_by_name() {
    let a = TestUpstream::start("a").await.unwrap();
    let ads = TestAds::start().await.unwrap();
    push_all(&ads, &a).await;
    let proxy = start(&bootstrap(ads.address, false)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            upstream_of(&proxy).await
        })
        .await
        .is_some()
    );
    let mut cluster = eds_cluster("other");
    cluster.health_checks = vec![Default::default()];
    ads.set(
        TypeUrl::CLUSTER,
        vec![
            (
                "backend".into(),
                any(TypeUrl::CLUSTER, &eds_cluster("backend")),
            ),
            ("other".into(), any(TypeUrl::CLUSTER, &cluster)),
        ],
    );
    let nack = eventually(Duration::from_secs(10), || async {
        ads.acks()
            .into_iter()
            .find(|a| a.type_url == TypeUrl::CLUSTER && a.error.is_some())
    })
    .await
    .expect("a NACK");
    let error = nack.error.unwrap();
    assert!(
        error.contains("other") && error.contains("health_checks"),
        "{error}"
    );
    // The valid cluster stays and traffic flows.
    assert_eq!(upstream_of(&proxy).await.as_deref(), Some("a"));
}

#[tokio::test]
async fn endpoints_pushed_to_checked_clusters_are_checked_at_once() {
    let a = TestUpstream::start("a").await.unwrap();
    let b = TestUpstream::start("b").await.unwrap();
    let ads = TestAds::start().await.unwrap();
    // Checks every 30 s (60 s before any traffic): only checking new endpoints at once can
    // make them take traffic within the test's deadlines.
    let cluster: Cluster = from_yaml(
        "name: backend
type: EDS
connect_timeout: 1s
lb_policy: RING_HASH
eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3}}
health_checks: [{timeout: 1s, interval: 30s, http_health_check: {path: /healthz}}]
outlier_detection: {consecutive_5xx: 2, max_ejection_percent: 100}",
        "envoy.config.cluster.v3.Cluster",
    );
    ads.set(
        TypeUrl::CLUSTER,
        vec![("backend".into(), any(TypeUrl::CLUSTER, &cluster))],
    );
    ads.set(
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
        vec![(
            "backend".into(),
            any(TypeUrl::CLUSTER_LOAD_ASSIGNMENT, &assignment("backend", &a)),
        )],
    );
    ads.set(
        TypeUrl::LISTENER,
        vec![("http".into(), any(TypeUrl::LISTENER, &listener()))],
    );
    ads.set(
        TypeUrl::ROUTE_CONFIGURATION,
        vec![(
            "local".into(),
            any(TypeUrl::ROUTE_CONFIGURATION, &routes("backend", "")),
        )],
    );
    let proxy = start(&bootstrap(ads.address, false)).await;
    let healthy = |n: usize| {
        let proxy = proxy.proxy.clone();
        async move {
            let cluster = proxy.registry.find_cluster("backend")?;
            let hosts = cluster.hosts();
            (hosts.hosts.len() == n && hosts.hosts.iter().all(|h| !h.failed_active_health_check()))
                .then_some(())
        }
    };
    assert!(
        eventually(Duration::from_secs(5), || healthy(1))
            .await
            .is_some()
    );
    let address = eventually(Duration::from_secs(5), || async {
        proxy.proxy.listener_addresses().get("http").copied()
    })
    .await
    .unwrap();
    assert_eq!(
        get(address, "x", "/").await.unwrap().header("x-upstream"),
        Some("a")
    );
    // A second endpoint arrives: checked at once, then part of the ring.
    let both: ClusterLoadAssignment = from_yaml(
        &format!(
            "cluster_name: backend
endpoints:
- lb_endpoints:
  - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
  - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}",
            a.address.port(),
            b.address.port()
        ),
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    );
    ads.set(
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
        vec![(
            "backend".into(),
            any(TypeUrl::CLUSTER_LOAD_ASSIGNMENT, &both),
        )],
    );
    assert!(
        eventually(Duration::from_secs(5), || healthy(2))
            .await
            .is_some()
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let answer = get(address, "x", "/").await.unwrap();
        seen.insert(answer.header("x-upstream").unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn a_new_eds_cluster_warms_until_its_endpoints_arrive() {
    let a = TestUpstream::start("a").await.unwrap();
    let ads = TestAds::start().await.unwrap();
    // `waiting` waits for ever (Istio's 0s); `impatient` gives up after 0.2 s.
    let impatient: Cluster = from_yaml(
        "name: impatient
type: EDS
connect_timeout: 1s
eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0.2s}}",
        "envoy.config.cluster.v3.Cluster",
    );
    let waiting: Cluster = from_yaml(
        "name: waiting
type: EDS
connect_timeout: 1s
eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}}",
        "envoy.config.cluster.v3.Cluster",
    );
    ads.set(
        TypeUrl::CLUSTER,
        vec![
            ("impatient".into(), any(TypeUrl::CLUSTER, &impatient)),
            ("waiting".into(), any(TypeUrl::CLUSTER, &waiting)),
        ],
    );
    let mut table = routes("waiting", "");
    let mut impatient_route = table.virtual_hosts[0].routes[0].clone();
    impatient_route.r#match = Some(from_yaml(
        "prefix: /impatient",
        "envoy.config.route.v3.RouteMatch",
    ));
    if let Some(bosun_xds::pb::envoy::config::route::v3::route::Action::Route(action)) =
        &mut impatient_route.action
    {
        action.cluster_specifier = Some(
            bosun_xds::pb::envoy::config::route::v3::route_action::ClusterSpecifier::Cluster(
                "impatient".into(),
            ),
        );
    }
    table.virtual_hosts[0].routes.insert(0, impatient_route);
    ads.set(
        TypeUrl::ROUTE_CONFIGURATION,
        vec![("local".into(), any(TypeUrl::ROUTE_CONFIGURATION, &table))],
    );
    ads.set(
        TypeUrl::LISTENER,
        vec![("http".into(), any(TypeUrl::LISTENER, &listener()))],
    );
    let proxy = start(&bootstrap(ads.address, false)).await;
    let address = eventually(Duration::from_secs(5), || async {
        proxy.proxy.listener_addresses().get("http").copied()
    })
    .await
    .unwrap();
    let warming = || {
        proxy
            .proxy
            .stats
            .gauge("cluster_manager.warming_clusters")
            .get()
    };

    // Both warm: a route to them finds no cluster (Envoy's 503 NC, empty body).
    let answer = eventually(Duration::from_secs(5), || async {
        get(address, "x", "/")
            .await
            .ok()
            .filter(|a| a.status == 503)
    })
    .await
    .expect("an answer from the listener");
    assert_eq!(answer.text(), "");
    assert!(proxy.proxy.registry.find_cluster("waiting").is_none());

    // The impatient one takes traffic without endpoints after its timeout.
    let no_endpoints = eventually(Duration::from_secs(5), || async {
        get(address, "x", "/impatient")
            .await
            .ok()
            .filter(|a| a.text() == "no healthy upstream")
    })
    .await;
    assert!(
        no_endpoints.is_some(),
        "the impatient cluster never took traffic"
    );
    assert_eq!(warming(), 1, "the waiting one still warms");
    assert!(proxy.proxy.registry.find_cluster("waiting").is_none());
    let dump = bosun_proxy::admin::config_dump_value(&proxy.proxy);
    let clusters = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump")
        .unwrap();
    let names = |section: &str| -> Vec<String> {
        clusters[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cluster"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("dynamic_warming_clusters"), ["waiting"]);
    assert!(names("dynamic_active_clusters").contains(&"impatient".to_owned()));

    // Its endpoints arrive (it is subscribed to while it warms): it takes traffic.
    ads.set(
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
        vec![(
            "waiting".into(),
            any(TypeUrl::CLUSTER_LOAD_ASSIGNMENT, &assignment("waiting", &a)),
        )],
    );
    let served = eventually(Duration::from_secs(5), || async {
        upstream_of(&proxy).await.filter(|u| u == "a")
    })
    .await;
    assert_eq!(served.as_deref(), Some("a"));
    assert_eq!(warming(), 0);
}
