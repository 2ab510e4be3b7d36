use super::*;
use crate::pb::envoy::config::bootstrap::v3::Bootstrap;
use crate::support::Fields;

fn support() -> Support {
    Support::new(
        "test",
        &[
            (
                "envoy.config.bootstrap.v3.Bootstrap",
                Fields::Only(&["node", "static_resources", "admin"]),
            ),
            ("envoy.config.core.v3.Node", Fields::Opaque),
            (
                "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
                Fields::Only(&["clusters", "listeners"]),
            ),
            (
                "envoy.config.cluster.v3.Cluster",
                Fields::Only(&["name", "type", "connect_timeout", "load_assignment"]),
            ),
            (
                "envoy.config.endpoint.v3.ClusterLoadAssignment",
                Fields::Only(&["cluster_name", "endpoints"]),
            ),
            (
                "envoy.config.endpoint.v3.LocalityLbEndpoints",
                Fields::Only(&["lb_endpoints"]),
            ),
            (
                "envoy.config.endpoint.v3.LbEndpoint",
                Fields::Only(&["endpoint"]),
            ),
            (
                "envoy.config.endpoint.v3.Endpoint",
                Fields::Only(&["address"]),
            ),
            (
                "envoy.config.core.v3.Address",
                Fields::Only(&["socket_address"]),
            ),
            (
                "envoy.config.core.v3.SocketAddress",
                Fields::Only(&["address", "port_value"]),
            ),
        ],
        &[],
    )
}

const BOOTSTRAP: &str = "
node:
  id: test
static_resources:
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 8080 }
";

#[test]
fn reads_envoy_yaml_into_typed_messages() {
    let bootstrap: Bootstrap =
        from_yaml(BOOTSTRAP, "envoy.config.bootstrap.v3.Bootstrap", &support()).unwrap();
    let cluster = &bootstrap.static_resources.unwrap().clusters[0];
    assert_eq!(cluster.name, "backend");
    assert_eq!(cluster.connect_timeout.unwrap().nanos, 250_000_000);
}

#[test]
fn camel_case_json_names_work_too() {
    let bootstrap: Bootstrap = from_yaml(
        "staticResources: {clusters: [{name: a, connectTimeout: 1s}]}",
        "envoy.config.bootstrap.v3.Bootstrap",
        &support(),
    )
    .unwrap();
    assert_eq!(bootstrap.static_resources.unwrap().clusters[0].name, "a");
}

#[test]
fn unknown_fields_name_their_path_and_line() {
    let text = BOOTSTRAP.replace("connect_timeout", "connect_timout");
    let error = from_yaml::<Bootstrap>(&text, "envoy.config.bootstrap.v3.Bootstrap", &support())
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("static_resources.clusters[0]"),
        "{message}"
    );
    assert!(message.contains("connect_timout"), "{message}");
    assert!(message.starts_with("6:5: "), "{message}");
    assert!(
        !message.contains("at line"),
        "the location is given once: {message}"
    );
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let text = format!("{BOOTSTRAP}    lb_policy: MAGLEV\n");
    let error = from_yaml::<Bootstrap>(&text, "envoy.config.bootstrap.v3.Bootstrap", &support())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "static_resources.clusters[0].lb_policy: field \"lb_policy\" of envoy.config.cluster.v3.Cluster is not supported by test"
    );
}

#[test]
fn default_values_are_not_settings() {
    // `lb_policy: ROUND_ROBIN` is the proto default: setting it is not using an unsupported field.
    let text = format!("{BOOTSTRAP}    lb_policy: ROUND_ROBIN\n");
    assert!(
        from_yaml::<Bootstrap>(&text, "envoy.config.bootstrap.v3.Bootstrap", &support()).is_ok()
    );
}

#[test]
fn unknown_extensions_are_refused() {
    let text = "
static_resources:
  listeners:
  - name: l
    filter_chains:
    - filters:
      - name: envoy.filters.network.lua
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
";
    let support = Support::new(
        "test",
        &[
            (
                "envoy.config.bootstrap.v3.Bootstrap",
                Fields::Only(&["static_resources"]),
            ),
            (
                "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
                Fields::Only(&["listeners"]),
            ),
            (
                "envoy.config.listener.v3.Listener",
                Fields::Only(&["name", "filter_chains"]),
            ),
            (
                "envoy.config.listener.v3.FilterChain",
                Fields::Only(&["filters"]),
            ),
            (
                "envoy.config.listener.v3.Filter",
                Fields::Only(&["name", "typed_config"]),
            ),
        ],
        &[],
    );
    let error =
        from_yaml::<Bootstrap>(text, "envoy.config.bootstrap.v3.Bootstrap", &support).unwrap_err();
    assert_eq!(
        error.to_string(),
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config: extension \
         type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager \
         is not supported by test"
    );
}

#[test]
fn json_values_read_the_same() {
    let value: serde_json::Value = serde_json::json!({"node": {"id": "x"}});
    let bootstrap: Bootstrap =
        from_json_value(&value, "envoy.config.bootstrap.v3.Bootstrap", &support()).unwrap();
    assert_eq!(bootstrap.node.unwrap().id, "x");
}

/// [`BOOTSTRAP`] as JSON, one field per line.
fn bootstrap_json() -> String {
    let value: serde_json::Value = serde_saphyr::from_str(BOOTSTRAP).unwrap();
    serde_json::to_string_pretty(&value).unwrap()
}

#[test]
fn json_text_reads_as_its_yaml_does() {
    let text = bootstrap_json();
    let from_json: Bootstrap =
        from_json_str(&text, "envoy.config.bootstrap.v3.Bootstrap", &support()).unwrap();
    let from_yaml: Bootstrap =
        from_yaml(BOOTSTRAP, "envoy.config.bootstrap.v3.Bootstrap", &support()).unwrap();
    assert_eq!(from_json, from_yaml);
}

#[test]
fn json_errors_name_their_path_and_line() {
    let text = bootstrap_json().replace("connect_timeout", "connect_timout");
    let line = text
        .lines()
        .position(|l| l.contains("connect_timout"))
        .unwrap()
        + 1;
    let error =
        from_json_str::<Bootstrap>(&text, "envoy.config.bootstrap.v3.Bootstrap", &support())
            .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{line}:")),
        "line {line}: {message}"
    );
    assert!(
        message.contains("static_resources.clusters[0]"),
        "{message}"
    );
    assert!(message.contains("connect_timout"), "{message}");
    assert!(!message.contains("at line"), "{message}");
}

#[test]
fn json_text_must_end_where_its_value_does() {
    let error = from_json_str::<Bootstrap>(
        "{\"node\": {\"id\": \"x\"}} {}",
        "envoy.config.bootstrap.v3.Bootstrap",
        &support(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("trailing"), "{error}");
}
