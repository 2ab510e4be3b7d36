//! Where clusters and route tables live at run time, by name.
//!
//! Configuration holds slots (`Arc<ClusterSlot>`, `Arc<RouteSlot>`) resolved once at compile
//! time; requests read the slots without locking. The maps here are touched only when
//! configuration changes, and by `cluster_header` routes through a lock-free index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::route::{ClusterResolver, RouteSlot};
use crate::stats::Stats;
use crate::upstream::{Cluster, ClusterSlot};

/// The clusters and route tables of a proxy.
#[derive(Debug)]
pub struct Registry {
    /// Stats of the proxy.
    pub stats: Arc<Stats>,
    clusters: Mutex<HashMap<String, Arc<ClusterSlot>>>,
    cluster_index: ArcSwap<HashMap<String, Arc<ClusterSlot>>>,
    routes: Mutex<HashMap<String, Arc<RouteSlot>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// An empty registry.
    pub fn new(stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Registry {
            stats,
            clusters: Mutex::new(HashMap::new()),
            cluster_index: ArcSwap::from_pointee(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
        })
    }

    /// The slot of route configuration `name` (created empty if new).
    pub fn route_slot(&self, name: &str) -> Arc<RouteSlot> {
        lock(&self.routes)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(RouteSlot::new(name)))
            .clone()
    }

    /// Every route slot with a table.
    pub fn route_tables(&self) -> Vec<Arc<RouteSlot>> {
        let mut slots: Vec<_> = lock(&self.routes)
            .values()
            .filter(|s| s.load().is_some())
            .cloned()
            .collect();
        slots.sort_by(|a, b| a.name().cmp(b.name()));
        slots
    }

    /// The active cluster named `name`, without locking (for `cluster_header` routes).
    pub fn find_cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.cluster_index
            .load()
            .get(name)
            .and_then(|slot| slot.load())
    }

    /// Every cluster slot, sorted by name.
    pub fn cluster_slots(&self) -> Vec<Arc<ClusterSlot>> {
        let mut slots: Vec<_> = lock(&self.clusters).values().cloned().collect();
        slots.sort_by(|a, b| a.name().cmp(b.name()));
        slots
    }

    /// Every active cluster, sorted by name.
    pub fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.cluster_slots()
            .iter()
            .filter_map(|s| s.load())
            .collect()
    }

    /// The cluster serving EDS service `service_name`.
    pub fn cluster_for_service(&self, service_name: &str) -> Option<Arc<Cluster>> {
        self.clusters()
            .into_iter()
            .find(|c| c.eds_service_name == service_name)
    }

    /// Rebuilds the lock-free index after clusters changed.
    pub fn publish(&self) {
        let index = lock(&self.clusters).clone();
        self.cluster_index.store(Arc::new(index));
    }
}

impl ClusterResolver for Registry {
    fn cluster_slot(&self, name: &str) -> Arc<ClusterSlot> {
        let mut clusters = lock(&self.clusters);
        if let Some(slot) = clusters.get(name) {
            return slot.clone();
        }
        let slot = Arc::new(ClusterSlot::new(name));
        clusters.insert(name.to_owned(), slot.clone());
        drop(clusters);
        self.publish();
        slot
    }
}
