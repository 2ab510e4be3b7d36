//! Type URLs (`type.googleapis.com/envoy.config.cluster.v3.Cluster`).

use std::fmt;

/// A protobuf type URL, as in `Any.type_url` and xDS requests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeUrl(String);

const PREFIX: &str = "type.googleapis.com/";

impl TypeUrl {
    /// Listeners (LDS).
    pub const LISTENER: &'static str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// Clusters (CDS).
    pub const CLUSTER: &'static str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// Route configurations (RDS).
    pub const ROUTE_CONFIGURATION: &'static str =
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// Endpoints (EDS).
    pub const CLUSTER_LOAD_ASSIGNMENT: &'static str =
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// Secrets (SDS).
    pub const SECRET: &'static str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

    /// Istio's name table (NDS), for the DNS proxy.
    pub const NAME_TABLE: &'static str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

    /// A type URL from text.
    pub fn new(url: impl Into<String>) -> Self {
        TypeUrl(url.into())
    }

    /// The type URL of a message by its full name.
    pub fn of(full_name: &str) -> Self {
        TypeUrl(format!("{PREFIX}{full_name}"))
    }

    /// The message's full name (the part after the last `/`).
    pub fn message_name(&self) -> &str {
        self.0
            .rsplit_once('/')
            .map_or(self.0.as_str(), |(_, name)| name)
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TypeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TypeUrl {
    fn from(url: &str) -> Self {
        TypeUrl(url.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let url = TypeUrl::of("envoy.config.cluster.v3.Cluster");
        assert_eq!(url.as_str(), TypeUrl::CLUSTER);
        assert_eq!(url.message_name(), "envoy.config.cluster.v3.Cluster");
    }
}
