//! The admin endpoint, access logs, and configuration the proxy refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bosun_proxy::testing::{TestUpstream, eventually, get};

use common::{cluster, http_bootstrap, start};

const ROUTES: &str = r#"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: to-a
                match: {prefix: "/"}
                route: {cluster: a}
"#;

#[tokio::test]
async fn admin_shows_readiness_stats_clusters_and_config() {
    let a = TestUpstream::start("a").await.unwrap();
    let proxy = start(&http_bootstrap(ROUTES, "", &cluster("a", a.address))).await;
    for _ in 0..3 {
        assert_eq!(
            get(proxy.listener("http"), "x", "/").await.unwrap().status,
            200
        );
    }
    let admin = proxy.admin.unwrap();
    let ready = get(admin, "admin", "/ready").await.unwrap();
    assert_eq!(
        (ready.status.as_u16(), ready.text().as_str()),
        (200, "LIVE\n")
    );

    let stats = get(admin, "admin", "/stats").await.unwrap().text();
    for line in [
        "cluster.a.upstream_rq_total: 3",
        "cluster.a.upstream_rq_200: 3",
        "cluster.a.upstream_rq_2xx: 3",
        "http.ingress_http.downstream_rq_total: 3",
        "http.ingress_http.downstream_rq_2xx: 3",
    ] {
        assert!(
            stats.lines().any(|l| l == line),
            "missing {line:?} in\n{stats}"
        );
    }
    assert!(
        stats.contains("listener.127.0.0.1_0.downstream_cx_total"),
        "{stats}"
    );

    let prometheus = get(admin, "admin", "/stats/prometheus")
        .await
        .unwrap()
        .text();
    assert!(
        prometheus.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 3"),
        "{prometheus}"
    );

    let clusters = get(admin, "admin", "/clusters").await.unwrap().text();
    let host = format!("a::{}", a.address);
    assert!(
        clusters.contains(&format!("{host}::rq_total::3")),
        "{clusters}"
    );
    assert!(
        clusters.contains(&format!("{host}::rq_success::3")),
        "{clusters}"
    );
    assert!(
        clusters.contains(&format!("{host}::health_flags::healthy")),
        "{clusters}"
    );

    let dump = get(admin, "admin", "/config_dump").await.unwrap().json();
    let configs = dump["configs"].as_array().unwrap();
    let types: Vec<&str> = configs
        .iter()
        .map(|c| c["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
        ]
    );
    assert_eq!(configs[1]["static_clusters"][0]["cluster"]["name"], "a");
    assert_eq!(
        configs[1]["static_clusters"][0]["cluster"]["@type"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    assert_eq!(
        configs[2]["static_listeners"][0]["listener"]["name"],
        "http"
    );

    let server_info = get(admin, "admin", "/server_info").await.unwrap().json();
    assert_eq!(server_info["state"], "LIVE");

    let quit = bosun_proxy::testing::send(
        admin,
        http::Request::post("/quitquitquit")
            .header("host", "admin")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(quit.status, 200);
    tokio::time::timeout(Duration::from_secs(5), proxy.proxy.wait_for_shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn access_logs_use_envoys_default_and_json_formats() {
    let a = TestUpstream::start("a").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text_log = dir.path().join("access.log");
    let json_log = dir.path().join("access.json");
    let hcm = format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                json_format:
                  code: "%RESPONSE_CODE%"
                  flags: "%RESPONSE_FLAGS%"
                  route: "%ROUTE_NAME%"
                  cluster: "%UPSTREAM_CLUSTER%"
                  method_path: "%REQ(:METHOD)% %REQ(:PATH)%"
"#,
        text_log.display(),
        json_log.display()
    );
    let proxy = start(&http_bootstrap(ROUTES, &hcm, &cluster("a", a.address))).await;
    let answer = get(proxy.listener("http"), "bookinfo", "/productpage?u=1")
        .await
        .unwrap();
    let request_id = answer.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&text_log)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await
    .expect("an access log line");
    let expected_tail = format!(
        "\"GET /productpage?u=1 HTTP/1.1\" 200 - 0 {} ",
        answer.body.len()
    );
    assert!(line.starts_with('['), "{line}");
    assert!(line.contains(&expected_tail), "{line}");
    assert!(
        line.contains(&format!("\"{request_id}\" \"bookinfo\" \"{}\"", a.address)),
        "{line}"
    );
    let json = eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&json_log)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await
    .unwrap();
    let entry: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        entry,
        serde_json::json!({"code": 200, "flags": "-", "route": "to-a", "cluster": "a", "method_path": "GET /productpage?u=1"})
    );
}

#[tokio::test]
async fn unsupported_configuration_is_refused_at_load_by_name() {
    let yaml = r#"
static_resources:
  clusters:
  - name: a
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    preconnect_policy: {per_upstream_preconnect_ratio: 1.5}
"#;
    let error = bosun_proxy::bootstrap::load(None, Some(yaml))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "--config-yaml: static_resources.clusters[0].preconnect_policy: field \"preconnect_policy\" \
         of envoy.config.cluster.v3.Cluster is not supported by bosun proxy"
    );
    let yaml = r#"
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: x
          cluster: c
          max_connect_attempts: 3
"#;
    let error = bosun_proxy::bootstrap::load(None, Some(yaml))
        .unwrap_err()
        .to_string();
    assert!(error.contains("max_connect_attempts"), "{error}");
    let typo = "static_resources: {clusters: [{name: a, conect_timeout: 1s}]}";
    let error = bosun_proxy::bootstrap::load(None, Some(typo))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("static_resources.clusters[0]") && error.contains("conect_timeout"),
        "{error}"
    );
}

#[test]
fn json_and_yaml_files_load_alike_and_name_the_file_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "node: {id: n}\nstatic_resources: {clusters: [{name: a, type: STATIC, connect_timeout: 1s}]}\n";
    let json = r#"{"node": {"id": "n"}, "static_resources": {"clusters": [{"name": "a", "type": "STATIC", "connect_timeout": "1s"}]}}"#;
    let yaml_path = dir.path().join("bootstrap.yaml");
    let json_path = dir.path().join("envoy-rev.json");
    std::fs::write(&yaml_path, yaml).unwrap();
    std::fs::write(&json_path, json).unwrap();
    let from_yaml = bosun_proxy::bootstrap::load(Some(&yaml_path), None).unwrap();
    let from_json = bosun_proxy::bootstrap::load(Some(&json_path), None).unwrap();
    assert_eq!(from_yaml, from_json);

    // A `.json` file is JSON, as in Envoy: YAML in it is an error naming the file and line.
    std::fs::write(&json_path, yaml).unwrap();
    let error = bosun_proxy::bootstrap::load(Some(&json_path), None)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!("{}: 1:", json_path.display())),
        "{error}"
    );
    std::fs::write(
        &json_path,
        json.replace("connect_timeout", "conect_timeout"),
    )
    .unwrap();
    let error = bosun_proxy::bootstrap::load(Some(&json_path), None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("static_resources.clusters[0]") && error.contains("conect_timeout"),
        "{error}"
    );
}

#[tokio::test]
async fn semantic_mistakes_are_refused_at_start() {
    let yaml = http_bootstrap(
        r#"
            virtual_hosts:
            - {name: a, domains: [x], routes: [{match: {prefix: /}, route: {cluster: a}}]}
            - {name: b, domains: [x], routes: [{match: {prefix: /}, route: {cluster: a}}]}
"#,
        "",
        "  - {name: a, type: STATIC, connect_timeout: 1s}",
    );
    let bootstrap = bosun_proxy::bootstrap::load(None, Some(&yaml)).unwrap();
    let error = bosun_proxy::bootstrap::start(bootstrap)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("static listener \"http\"") && error.contains("duplicate domain"),
        "{error}"
    );
}
