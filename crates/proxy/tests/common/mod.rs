//! Shared helpers of the proxy's integration tests: start a proxy in-process from a bootstrap
//! written as YAML, with `{{NAME}}` placeholders for ports of test upstreams.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bosun_proxy::bootstrap;
use bosun_proxy::server::Proxy;

/// A running proxy and its listeners' bound addresses.
pub(crate) struct Running {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) admin: Option<SocketAddr>,
}

impl Running {
    /// The bound address of listener `name`.
    pub(crate) fn listener(&self, name: &str) -> SocketAddr {
        *self
            .proxy
            .listener_addresses()
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.proxy.listener_addresses()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.proxy.request_shutdown();
        self.proxy.stop();
    }
}

/// Fills `{{NAME}}` placeholders.
pub(crate) fn fill(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    text
}

/// Starts a proxy from bootstrap YAML.
pub(crate) async fn start(yaml: &str) -> Running {
    let bootstrap =
        bootstrap::load(None, Some(yaml)).unwrap_or_else(|e| panic!("bootstrap: {e}\n{yaml}"));
    let started = bootstrap::start(bootstrap)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    Running {
        proxy: started.proxy,
        admin: started.admin,
    }
}

/// A static cluster of one endpoint.
pub(crate) fn cluster(name: &str, address: SocketAddr) -> String {
    format!(
        "
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
",
        ip = address.ip(),
        port = address.port()
    )
}

/// A bootstrap with one HTTP listener on an ephemeral port whose route configuration is
/// `route_config` (indented YAML of `virtual_hosts`), extra HCM fields, and `clusters`.
pub(crate) fn http_bootstrap(route_config: &str, hcm_extra: &str, clusters: &str) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
{hcm_extra}
          route_config:
            name: local
{route_config}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#
    )
}
