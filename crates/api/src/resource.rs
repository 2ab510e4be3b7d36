//! Every kind Bosun reads, and [`Resource`], one typed document of any of them.

use std::fmt;

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as k8s_networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::load::de::{DeError, Nulls, from_node};
use crate::load::node::Node;
use crate::{extensions, gateway_api, networking, security, telemetry};

/// A custom resource (Istio's or the Gateway API's): the Kubernetes envelope around a typed spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S> {
    /// `group/version`, e.g. `networking.istio.io/v1`.
    pub api_version: String,
    /// The kind, e.g. `VirtualService`.
    pub kind: String,
    /// Name, namespace, labels, annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: S,
    /// Status written by controllers; kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// What Bosun knows about a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind as written in `kind:`.
    pub name: &'static str,
    /// The API group (`""` for core Kubernetes).
    pub group: &'static str,
    /// The versions accepted, newest first.
    pub versions: &'static [&'static str],
    /// The plural resource name (`virtualservices`).
    pub plural: &'static str,
    /// kubectl short names (`vs`).
    pub short_names: &'static [&'static str],
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// Whether Istio's schema requires `spec`.
    pub spec_required: bool,
}

impl KindInfo {
    /// `group/version` for the newest version.
    pub fn api_version(&self) -> String {
        join_api_version(self.group, self.versions[0])
    }
}

fn join_api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

const ISTIO_NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const ISTIO_SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];
const ISTIO_ALPHA_VERSIONS: &[&str] = &["v1", "v1alpha1"];
const GATEWAY_API_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha2"];

macro_rules! kinds {
    ($(
        $variant:ident($ty:ty, $nulls:ident) = $name:literal in $group:literal $versions:expr,
            $plural:literal [$($short:literal),*] namespaced: $namespaced:literal spec: $spec:literal;
    )*) => {
        /// Every kind Bosun reads.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $(
                #[doc = concat!("`", $name, "` in `", $group, "`.")]
                $variant,
            )*
        }

        /// One typed document.
        #[derive(Clone, Debug, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Resource {
            $(
                #[doc = concat!("A `", $name, "`.")]
                $variant($ty),
            )*
        }

        impl Kind {
            /// All kinds.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// What Bosun knows about this kind.
            pub fn info(self) -> &'static KindInfo {
                match self {
                    $(
                        Kind::$variant => &KindInfo {
                            name: $name,
                            group: $group,
                            versions: $versions,
                            plural: $plural,
                            short_names: &[$($short),*],
                            namespaced: $namespaced,
                            spec_required: $spec,
                        },
                    )*
                }
            }
        }

        impl Resource {
            /// The kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $(Resource::$variant(_) => Kind::$variant,)*
                }
            }

            /// The metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Resource::$variant(r) => &r.metadata,)*
                }
            }

            /// The metadata, to change.
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Resource::$variant(r) => &mut r.metadata,)*
                }
            }

            /// The resource as JSON, as it would be written back.
            pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $(Resource::$variant(r) => serde_json::to_value(r),)*
                }
            }

            /// The resource as YAML, as it would be written back.
            pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
                match self {
                    $(Resource::$variant(r) => serde_saphyr::to_string(r),)*
                }
            }

            pub(crate) fn from_node_as(kind: Kind, node: &Node) -> Result<Resource, DeError> {
                match kind {
                    $(Kind::$variant => from_node::<$ty>(node, Nulls::$nulls).map(Resource::$variant),)*
                }
            }
        }
    };
}

kinds! {
    VirtualService(Object<networking::VirtualService>, Refused) =
        "VirtualService" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "virtualservices" ["vs"] namespaced: true spec: false;
    DestinationRule(Object<networking::DestinationRule>, Refused) =
        "DestinationRule" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "destinationrules" ["dr"] namespaced: true spec: false;
    Gateway(Object<networking::Gateway>, Refused) =
        "Gateway" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "gateways" ["gw"] namespaced: true spec: false;
    ServiceEntry(Object<networking::ServiceEntry>, Refused) =
        "ServiceEntry" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "serviceentries" ["se"] namespaced: true spec: true;
    WorkloadEntry(Object<networking::WorkloadEntry>, Refused) =
        "WorkloadEntry" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "workloadentries" ["we"] namespaced: true spec: true;
    WorkloadGroup(Object<networking::WorkloadGroup>, Refused) =
        "WorkloadGroup" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "workloadgroups" ["wg"] namespaced: true spec: true;
    Sidecar(Object<networking::Sidecar>, Refused) =
        "Sidecar" in "networking.istio.io" ISTIO_NETWORKING_VERSIONS,
        "sidecars" [] namespaced: true spec: false;
    EnvoyFilter(Object<networking::EnvoyFilter>, Refused) =
        "EnvoyFilter" in "networking.istio.io" &["v1alpha3"],
        "envoyfilters" [] namespaced: true spec: false;
    ProxyConfig(Object<networking::ProxyConfig>, Refused) =
        "ProxyConfig" in "networking.istio.io" &["v1beta1"],
        "proxyconfigs" [] namespaced: true spec: false;
    PeerAuthentication(Object<security::PeerAuthentication>, Refused) =
        "PeerAuthentication" in "security.istio.io" ISTIO_SECURITY_VERSIONS,
        "peerauthentications" ["pa"] namespaced: true spec: false;
    AuthorizationPolicy(Object<security::AuthorizationPolicy>, Refused) =
        "AuthorizationPolicy" in "security.istio.io" ISTIO_SECURITY_VERSIONS,
        "authorizationpolicies" ["ap"] namespaced: true spec: false;
    RequestAuthentication(Object<security::RequestAuthentication>, Refused) =
        "RequestAuthentication" in "security.istio.io" ISTIO_SECURITY_VERSIONS,
        "requestauthentications" ["ra"] namespaced: true spec: false;
    Telemetry(Object<telemetry::Telemetry>, Refused) =
        "Telemetry" in "telemetry.istio.io" ISTIO_ALPHA_VERSIONS,
        "telemetries" ["telemetry"] namespaced: true spec: false;
    WasmPlugin(Object<extensions::WasmPlugin>, Refused) =
        "WasmPlugin" in "extensions.istio.io" ISTIO_ALPHA_VERSIONS,
        "wasmplugins" [] namespaced: true spec: false;
    GatewayClass(Object<gateway_api::GatewayClass>, Refused) =
        "GatewayClass" in "gateway.networking.k8s.io" GATEWAY_API_VERSIONS,
        "gatewayclasses" ["gc"] namespaced: false spec: true;
    KubernetesGateway(Object<gateway_api::Gateway>, Refused) =
        "Gateway" in "gateway.networking.k8s.io" GATEWAY_API_VERSIONS,
        "gateways" ["gtw"] namespaced: true spec: true;
    HttpRoute(Object<gateway_api::HttpRoute>, Refused) =
        "HTTPRoute" in "gateway.networking.k8s.io" GATEWAY_API_VERSIONS,
        "httproutes" [] namespaced: true spec: true;
    GrpcRoute(Object<gateway_api::GrpcRoute>, Refused) =
        "GRPCRoute" in "gateway.networking.k8s.io" GATEWAY_API_VERSIONS,
        "grpcroutes" [] namespaced: true spec: true;
    TcpRoute(Object<gateway_api::TcpRoute>, Refused) =
        "TCPRoute" in "gateway.networking.k8s.io" &["v1alpha2"],
        "tcproutes" [] namespaced: true spec: true;
    TlsRoute(Object<gateway_api::TlsRoute>, Refused) =
        "TLSRoute" in "gateway.networking.k8s.io" &["v1alpha3", "v1alpha2"],
        "tlsroutes" [] namespaced: true spec: true;
    ReferenceGrant(Object<gateway_api::ReferenceGrant>, Refused) =
        "ReferenceGrant" in "gateway.networking.k8s.io" &["v1beta1", "v1alpha2"],
        "referencegrants" [] namespaced: true spec: true;
    Namespace(core::Namespace, AsAbsent) =
        "Namespace" in "" &["v1"], "namespaces" ["ns"] namespaced: false spec: false;
    Service(core::Service, AsAbsent) =
        "Service" in "" &["v1"], "services" ["svc"] namespaced: true spec: false;
    ServiceAccount(core::ServiceAccount, AsAbsent) =
        "ServiceAccount" in "" &["v1"], "serviceaccounts" ["sa"] namespaced: true spec: false;
    Pod(core::Pod, AsAbsent) =
        "Pod" in "" &["v1"], "pods" ["po"] namespaced: true spec: false;
    Endpoints(core::Endpoints, AsAbsent) =
        "Endpoints" in "" &["v1"], "endpoints" ["ep"] namespaced: true spec: false;
    Secret(core::Secret, AsAbsent) =
        "Secret" in "" &["v1"], "secrets" [] namespaced: true spec: false;
    ConfigMap(core::ConfigMap, AsAbsent) =
        "ConfigMap" in "" &["v1"], "configmaps" ["cm"] namespaced: true spec: false;
    Deployment(apps::Deployment, AsAbsent) =
        "Deployment" in "apps" &["v1"], "deployments" ["deploy"] namespaced: true spec: false;
    EndpointSlice(discovery::EndpointSlice, AsAbsent) =
        "EndpointSlice" in "discovery.k8s.io" &["v1"], "endpointslices" [] namespaced: true spec: false;
    Ingress(k8s_networking::Ingress, AsAbsent) =
        "Ingress" in "networking.k8s.io" &["v1"], "ingresses" ["ing"] namespaced: true spec: false;
}

/// Kubernetes kinds in groups Bosun manages that it does not use: read past, not refused.
const UNUSED_KUBERNETES_KINDS: &[(&str, &str)] = &[
    ("", "PersistentVolumeClaim"),
    ("", "PersistentVolume"),
    ("", "ReplicationController"),
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("", "List"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "IngressClass"),
];

/// API groups whose kinds Bosun knows; anything else in them is a mistake.
pub const MANAGED_GROUPS: &[&str] = &[
    "networking.istio.io",
    "security.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
    "gateway.networking.k8s.io",
    "",
    "apps",
    "discovery.k8s.io",
    "networking.k8s.io",
];

/// What an `apiVersion` and `kind` pair is to Bosun.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindLookup {
    /// A kind Bosun reads.
    Known(Kind),
    /// A kind outside Bosun's groups, or one it deliberately does not use.
    Skipped,
    /// A mistake: unknown kind or version in a managed group.
    Unknown {
        /// What is wrong.
        message: String,
        /// Whether the problem is with `apiVersion` (else `kind`).
        in_api_version: bool,
    },
}

impl Kind {
    /// Looks up `apiVersion` and `kind` as written in a document.
    pub fn lookup(api_version: &str, kind: &str) -> KindLookup {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if !MANAGED_GROUPS.contains(&group) {
            return KindLookup::Skipped;
        }
        if UNUSED_KUBERNETES_KINDS.contains(&(group, kind)) {
            return KindLookup::Skipped;
        }
        let in_group: Vec<Kind> = Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.info().group == group)
            .collect();
        let Some(found) = in_group.iter().find(|k| k.info().name == kind) else {
            let mut message = format!("unknown kind \"{kind}\" in {}", display_group(group));
            if let Some(hint) =
                crate::path::closest_match(kind, in_group.iter().map(|k| k.info().name))
            {
                message.push_str(&format!(", did you mean \"{hint}\"?"));
            }
            return KindLookup::Unknown {
                message,
                in_api_version: false,
            };
        };
        let info = found.info();
        if !info.versions.contains(&version) {
            let supported: Vec<String> = info
                .versions
                .iter()
                .map(|v| format!("\"{}\"", join_api_version(group, v)))
                .collect();
            return KindLookup::Unknown {
                message: format!(
                    "unknown apiVersion \"{api_version}\" for {kind}: supported versions: {}",
                    supported.join(", ")
                ),
                in_api_version: true,
            };
        }
        KindLookup::Known(*found)
    }

    /// Finds a kind by any of the names kubectl accepts: `VirtualService`, `virtualservice`,
    /// `virtualservices`, `vs`. `Gateway` means Istio's.
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let (lower, group) = match lower.split_once('.') {
            Some((n, g)) => (n.to_owned(), Some(g.to_owned())),
            None => (lower, None),
        };
        Kind::ALL.iter().copied().find(|k| {
            let info = k.info();
            let named = info.name.to_ascii_lowercase() == lower
                || info.plural == lower
                || info.short_names.contains(&lower.as_str());
            let grouped = group.as_deref().is_none_or(|g| info.group == g);
            // Unqualified `gateway` means Istio's Gateway, as in istioctl.
            named && grouped && (group.is_some() || *k != Kind::KubernetesGateway || lower == "gtw")
        })
    }
}

fn display_group(group: &str) -> String {
    if group.is_empty() {
        "core Kubernetes (v1)".to_owned()
    } else {
        group.to_owned()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

impl Resource {
    /// The name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// The namespace as written (absent for cluster-scoped kinds or when not given).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// The namespace, `default` when not given (cluster-scoped kinds have none).
    pub fn namespace_or_default(&self) -> Option<&str> {
        if self.kind().info().namespaced {
            Some(self.namespace().unwrap_or("default"))
        } else {
            None
        }
    }

    /// `namespace/name`, or `name` for cluster-scoped kinds.
    pub fn qualified_name(&self) -> String {
        match self.namespace_or_default() {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_owned(),
        }
    }
}
