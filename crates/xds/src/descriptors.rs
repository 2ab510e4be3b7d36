//! The descriptors of the Envoy protos Bosun reads, compiled at build time.

use std::sync::Mutex;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static ENCODED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// How many [`PoolGuard`]s exist, and the pool they keep decoded.
static KEPT: Mutex<(usize, Option<DescriptorPool>)> = Mutex::new((0, None));

fn kept() -> std::sync::MutexGuard<'static, (usize, Option<DescriptorPool>)> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The descriptor pool. Decoded, it takes a few megabytes, so it stays decoded only while a
/// [`PoolGuard`] exists: a proxy with static configuration needs it while it reads its
/// bootstrap, one with xDS for the life of its stream. Without a guard, each call decodes.
pub fn pool() -> DescriptorPool {
    let mut kept = kept();
    if let Some(pool) = &kept.1 {
        return pool.clone();
    }
    let pool = match DescriptorPool::decode(ENCODED) {
        Ok(pool) => pool,
        // The set is produced by our build script from pinned protos; failing to decode it
        // is a build defect, not a runtime condition.
        Err(error) => panic!("embedded Envoy descriptors are corrupt: {error}"),
    };
    if kept.0 > 0 {
        kept.1 = Some(pool.clone());
    }
    pool
}

/// Keeps the decoded pool in memory while it lives.
#[derive(Debug)]
pub struct PoolGuard(());

impl PoolGuard {
    /// Keeps the pool decoded until this guard (and every other) is dropped.
    pub fn new() -> Self {
        kept().0 += 1;
        PoolGuard(())
    }
}

impl Default for PoolGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let mut kept = kept();
        kept.0 -= 1;
        if kept.0 == 0 {
            kept.1 = None;
        }
    }
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
