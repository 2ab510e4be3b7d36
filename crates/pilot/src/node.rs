//! Who a connected proxy is, read from its xDS `node` as istiod reads it: the id
//! `<sidecar|router>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` and the metadata pilot-agent
//! sets (`LABELS`, `NAMESPACE`, `INSTANCE_IPS`, `SERVICE_ACCOUNT`, `CLUSTER_ID`, …), plus
//! Bosun's own keys for running without traffic capture.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use bosun_xds::pb::envoy::config::core::v3::Node;
use bosun_xds::pb::google::protobuf::{ListValue, Struct, Value, value::Kind as ValueKind};

use crate::model::DEFAULT_NAMESPACE;

/// Metadata key: how the proxy receives its workload's traffic. `NONE` means no
/// redirection (no root): outbound through an HTTP proxy listener (`HTTP_PROXY`), inbound
/// through listeners bound to the pod's own address.
pub const CAPTURE_MODE_KEY: &str = "BOSUN_CAPTURE_MODE";
/// Metadata key: the port of the outbound HTTP proxy listener in `NONE` capture mode.
pub const HTTP_PROXY_PORT_KEY: &str = "BOSUN_HTTP_PROXY_PORT";
/// Metadata key: the address the application listens on in `NONE` capture mode.
pub const APP_ADDRESS_KEY: &str = "BOSUN_APP_ADDRESS";

/// The default port of the outbound HTTP proxy listener.
pub const DEFAULT_HTTP_PROXY_PORT: u16 = 15080;

/// What a proxy is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyType {
    /// Beside one workload.
    Sidecar,
    /// A gateway.
    Router,
}

impl ProxyType {
    /// As written in node ids.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Sidecar => "sidecar",
            ProxyType::Router => "router",
        }
    }
}

impl fmt::Display for ProxyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How traffic reaches the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Capture {
    /// iptables redirects everything to 15001/15006 (as istio-init sets up).
    Iptables,
    /// Nothing is redirected: the proxy listens on the pod's own address.
    None {
        /// Port of the outbound HTTP proxy listener on the pod address.
        http_proxy_port: u16,
        /// Where the application listens.
        app_address: IpAddr,
    },
}

/// A connected proxy, as the translation needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProxyNode {
    /// The node id as sent.
    pub id: String,
    /// Sidecar or router.
    pub proxy_type: ProxyType,
    /// The pod's addresses, first one primary.
    pub ip_addresses: Vec<IpAddr>,
    /// The pod's name.
    pub pod_name: String,
    /// Its namespace.
    pub namespace: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// The cluster it runs in.
    pub cluster_id: String,
    /// How traffic reaches it.
    pub capture: Capture,
}

/// Why a node is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No node in the first request.
    #[error("the first request carries no node")]
    Missing,
    /// The id is not `<type>~<ip>~<pod>.<ns>~<domain>`.
    #[error("node id {0:?} is not <sidecar|router>~<ip>~<pod>.<namespace>~<domain>")]
    BadId(String),
    /// An address that is not one.
    #[error("node {id:?}: {what} {value:?} is not an IP address")]
    BadAddress {
        /// The node id.
        id: String,
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
}

impl ProxyNode {
    /// `<pod>.<namespace>`, the name istioctl shows.
    pub fn name(&self) -> String {
        format!("{}.{}", self.pod_name, self.namespace)
    }

    /// The primary address.
    pub fn ip(&self) -> IpAddr {
        self.ip_addresses
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Reads a node as sent by a proxy.
    pub fn from_node(node: Option<&Node>) -> Result<ProxyNode, NodeError> {
        let node = node.ok_or(NodeError::Missing)?;
        let id = node.id.clone();
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod, _domain] = parts.as_slice() else {
            return Err(NodeError::BadId(id));
        };
        let proxy_type = match *kind {
            "sidecar" => ProxyType::Sidecar,
            "router" => ProxyType::Router,
            _ => return Err(NodeError::BadId(id)),
        };
        let metadata = node.metadata.as_ref();
        let text = |key: &str| metadata.and_then(|m| string_field(m, key));
        let (pod_name, id_namespace) = pod
            .split_once('.')
            .map_or((pod.to_string(), None), |(p, n)| {
                (p.to_owned(), Some(n.to_owned()))
            });
        let namespace = text("NAMESPACE")
            .or(id_namespace)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let parse_ip = |what: &'static str, value: &str| {
            value
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| NodeError::BadAddress {
                    id: id.clone(),
                    what,
                    value: value.to_owned(),
                })
        };
        let mut ip_addresses = Vec::new();
        if let Some(ips) = text("INSTANCE_IPS") {
            for value in ips.split(',').filter(|v| !v.trim().is_empty()) {
                ip_addresses.push(parse_ip("INSTANCE_IPS", value)?);
            }
        }
        if ip_addresses.is_empty() && !ip.is_empty() {
            ip_addresses.push(parse_ip("the id's address", ip)?);
        }
        let labels = metadata
            .and_then(|m| m.fields.get("LABELS"))
            .and_then(|v| match &v.kind {
                Some(ValueKind::StructValue(s)) => Some(
                    s.fields
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), value_text(v)?)))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default();
        let capture = match text(CAPTURE_MODE_KEY).as_deref() {
            Some(mode) if mode.eq_ignore_ascii_case("none") => Capture::None {
                http_proxy_port: text(HTTP_PROXY_PORT_KEY)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(DEFAULT_HTTP_PROXY_PORT),
                app_address: match text(APP_ADDRESS_KEY) {
                    Some(address) => parse_ip(APP_ADDRESS_KEY, &address)?,
                    None => IpAddr::V4(Ipv4Addr::LOCALHOST),
                },
            },
            _ => Capture::Iptables,
        };
        Ok(ProxyNode {
            proxy_type,
            ip_addresses,
            pod_name,
            namespace,
            labels,
            service_account: text("SERVICE_ACCOUNT").unwrap_or_else(|| "default".to_owned()),
            cluster_id: text("CLUSTER_ID").unwrap_or_else(|| "Kubernetes".to_owned()),
            capture,
            id,
        })
    }
}

fn value_text(value: &Value) -> Option<String> {
    match &value.kind {
        Some(ValueKind::StringValue(s)) => Some(s.clone()),
        Some(ValueKind::NumberValue(n)) => Some(n.to_string()),
        Some(ValueKind::BoolValue(b)) => Some(b.to_string()),
        _ => None,
    }
}

fn string_field(metadata: &Struct, key: &str) -> Option<String> {
    metadata.fields.get(key).and_then(value_text)
}

/// A JSON object as a protobuf `Struct`.
pub fn json_to_struct(object: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: object
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(value: &serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => ValueKind::NullValue(0),
        serde_json::Value::Bool(b) => ValueKind::BoolValue(*b),
        serde_json::Value::Number(n) => ValueKind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => ValueKind::StringValue(s.clone()),
        serde_json::Value::Array(items) => ValueKind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => ValueKind::StructValue(json_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, metadata: serde_json::Value) -> Node {
        Node {
            id: id.to_owned(),
            metadata: metadata.as_object().map(json_to_struct),
            ..Default::default()
        }
    }

    #[test]
    fn reads_an_istio_sidecar_node() {
        let n = node(
            "sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local",
            serde_json::json!({
                "LABELS": {"app": "reviews", "version": "v1"},
                "SERVICE_ACCOUNT": "bookinfo-reviews",
                "INSTANCE_IPS": "10.1.2.3,fd00::3",
            }),
        );
        let proxy = ProxyNode::from_node(Some(&n)).unwrap();
        assert_eq!(proxy.proxy_type, ProxyType::Sidecar);
        assert_eq!(proxy.name(), "reviews-v1-abc.bookinfo");
        assert_eq!(proxy.namespace, "bookinfo");
        assert_eq!(proxy.labels["version"], "v1");
        assert_eq!(proxy.service_account, "bookinfo-reviews");
        assert_eq!(proxy.ip_addresses.len(), 2);
        assert_eq!(proxy.capture, Capture::Iptables);
    }

    #[test]
    fn reads_bosun_capture_metadata() {
        let n = node(
            "router~127.0.5.1~gw.istio-system~istio-system.svc.cluster.local",
            serde_json::json!({"BOSUN_CAPTURE_MODE": "NONE", "BOSUN_HTTP_PROXY_PORT": "15081"}),
        );
        let proxy = ProxyNode::from_node(Some(&n)).unwrap();
        assert_eq!(proxy.proxy_type, ProxyType::Router);
        assert_eq!(proxy.namespace, "istio-system");
        assert_eq!(proxy.ip().to_string(), "127.0.5.1");
        assert_eq!(
            proxy.capture,
            Capture::None {
                http_proxy_port: 15081,
                app_address: "127.0.0.1".parse().unwrap()
            }
        );
    }

    #[test]
    fn refuses_malformed_ids() {
        for id in [
            "",
            "sidecar",
            "gateway~1.2.3.4~a.b~c",
            "sidecar~not-an-ip~a.b~c",
        ] {
            assert!(
                ProxyNode::from_node(Some(&node(id, serde_json::json!({})))).is_err(),
                "{id}"
            );
        }
        assert!(matches!(
            ProxyNode::from_node(None),
            Err(NodeError::Missing)
        ));
    }
}
