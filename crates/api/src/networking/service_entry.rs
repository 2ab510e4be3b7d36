//! `ServiceEntry`, `WorkloadEntry` and `WorkloadGroup`: services and workloads outside
//! the Kubernetes registry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::WorkloadSelector;

/// The spec of a `ServiceEntry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    /// Host names of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Endpoints of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Workloads (pods, WorkloadEntries) that are the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces this is visible to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities the endpoints' certificates must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A port of a ServiceEntry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// The port number.
    #[serde(default)]
    pub number: u32,
    /// `HTTP`, `HTTPS`, `HTTP2`, `GRPC`, `TCP`, `TLS`, `MONGO`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The port's name, unique in the entry.
    #[serde(default)]
    pub name: String,
    /// The endpoints' port, when different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// Whether a service is part of the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (no mTLS).
    MeshExternal,
    /// Inside the mesh.
    MeshInternal,
}

/// How a ServiceEntry's endpoints are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the address the caller connected to.
    None,
    /// The endpoints' addresses as given.
    Static,
    /// Resolve endpoint (or host) names, all addresses used.
    Dns,
    /// Resolve the name, use the first address.
    DnsRoundRobin,
}

/// The spec of a `WorkloadEntry`: one workload outside Kubernetes (a VM).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// IP, host name or `unix://` socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port names to numbers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// Labels of the workload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network the workload is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Locality (`region/zone/subzone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// The spec of a `WorkloadGroup`: a template for WorkloadEntries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadGroup {
    /// Labels and annotations for the entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WorkloadGroupMetadata>,
    /// The template (without address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<WorkloadEntry>,
    /// Readiness probe run by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ReadinessProbe>,
}

/// Labels and annotations for a WorkloadGroup's entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadGroupMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A readiness probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReadinessProbeFields", into = "ReadinessProbeFields")]
pub struct ReadinessProbe {
    /// Seconds before the first probe.
    pub initial_delay_seconds: Option<i32>,
    /// Seconds before a probe times out.
    pub timeout_seconds: Option<i32>,
    /// Seconds between probes.
    pub period_seconds: Option<i32>,
    /// Successes needed to become ready.
    pub success_threshold: Option<i32>,
    /// Failures needed to become unready.
    pub failure_threshold: Option<i32>,
    /// How to probe.
    pub check: Option<HealthCheck>,
}

/// How a readiness probe checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthCheck {
    /// An HTTP GET.
    HttpGet(HttpHealthCheck),
    /// A TCP connect.
    TcpSocket(TcpHealthCheck),
    /// A command.
    Exec(ExecHealthCheck),
    /// A gRPC health check.
    Grpc(GrpcHealthCheck),
}

/// An HTTP GET probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHealthCheck {
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: u32,
    /// Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Headers to send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// A header of an HTTP probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// A TCP connect probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpHealthCheck {
    /// Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: u32,
}

/// A command probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecHealthCheck {
    /// The command and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
}

/// A gRPC health-check probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcHealthCheck {
    /// Port.
    #[serde(default)]
    pub port: u32,
    /// Service name to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadinessProbeFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initial_delay_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_get: Option<HttpHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TcpHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<ExecHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grpc: Option<GrpcHealthCheck>,
}

impl TryFrom<ReadinessProbeFields> for ReadinessProbe {
    type Error = &'static str;

    fn try_from(f: ReadinessProbeFields) -> Result<Self, Self::Error> {
        let checks = [
            f.http_get.map(HealthCheck::HttpGet),
            f.tcp_socket.map(HealthCheck::TcpSocket),
            f.exec.map(HealthCheck::Exec),
            f.grpc.map(HealthCheck::Grpc),
        ];
        let mut set = checks.into_iter().flatten();
        let check = set.next();
        if set.next().is_some() {
            return Err("only one of httpGet, tcpSocket, exec or grpc may be set");
        }
        Ok(ReadinessProbe {
            initial_delay_seconds: f.initial_delay_seconds,
            timeout_seconds: f.timeout_seconds,
            period_seconds: f.period_seconds,
            success_threshold: f.success_threshold,
            failure_threshold: f.failure_threshold,
            check,
        })
    }
}

impl From<ReadinessProbe> for ReadinessProbeFields {
    fn from(p: ReadinessProbe) -> Self {
        let mut f = ReadinessProbeFields {
            initial_delay_seconds: p.initial_delay_seconds,
            timeout_seconds: p.timeout_seconds,
            period_seconds: p.period_seconds,
            success_threshold: p.success_threshold,
            failure_threshold: p.failure_threshold,
            ..Default::default()
        };
        match p.check {
            Some(HealthCheck::HttpGet(c)) => f.http_get = Some(c),
            Some(HealthCheck::TcpSocket(c)) => f.tcp_socket = Some(c),
            Some(HealthCheck::Exec(c)) => f.exec = Some(c),
            Some(HealthCheck::Grpc(c)) => f.grpc = Some(c),
            None => {}
        }
        f
    }
}
