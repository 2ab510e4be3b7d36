//! The descriptors of the Envoy protos Bosun reads, compiled at build time.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static ENCODED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// The descriptor pool, decoded on first use.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| match DescriptorPool::decode(ENCODED) {
        Ok(pool) => pool,
        // The set is produced by our build script from pinned protos; failing to decode it
        // is a build defect, not a runtime condition.
        Err(error) => panic!("embedded Envoy descriptors are corrupt: {error}"),
    })
}

/// The descriptor of a message by its full name (`envoy.config.cluster.v3.Cluster`).
pub fn message(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_the_resources_we_read() {
        for name in [
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.config.listener.v3.Listener",
            "envoy.config.cluster.v3.Cluster",
            "envoy.config.route.v3.RouteConfiguration",
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.service.discovery.v3.DiscoveryRequest",
        ] {
            assert!(message(name).is_some(), "{name}");
        }
    }
}
