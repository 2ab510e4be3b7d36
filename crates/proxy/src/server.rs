//! The proxy at run time: applies static and dynamic resources (clusters, endpoints, routes,
//! listeners), binds and drains listeners, and keeps what the admin endpoints show.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bosun_xds::pb::envoy::config::bootstrap::v3::Bootstrap;
use bosun_xds::pb::envoy::config::cluster::v3::Cluster as ClusterProto;
use bosun_xds::pb::envoy::config::core::v3::Node;
use bosun_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use bosun_xds::pb::envoy::config::listener::v3::Listener as ListenerProto;
use bosun_xds::pb::envoy::config::route::v3::RouteConfiguration;
use tokio::sync::watch;

use crate::config::ConfigError;
use crate::listener::{self, ListenerConfig, ListenerIndex};
use crate::registry::Registry;
use crate::route::{ClusterResolver, RouteTable};
use crate::stats::{Counter, Gauge, Stats};
use crate::upstream::{Cluster, ClusterKind};

/// Where a resource came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The bootstrap's `static_resources`.
    Static,
    /// xDS.
    Dynamic,
}

#[derive(Debug)]
struct ClusterRecord {
    origin: Origin,
    version: String,
    assignment: Option<(ClusterLoadAssignment, String, SystemTime)>,
}

#[derive(Debug)]
struct ListenerEntry {
    origin: Origin,
    bound: Option<SocketAddr>,
    active: Option<Arc<ArcSwap<ListenerConfig>>>,
    warming: Option<Arc<ListenerConfig>>,
    stop: Option<watch::Sender<bool>>,
}

#[derive(Debug, Default)]
struct State {
    clusters: BTreeMap<String, ClusterRecord>,
    /// New EDS clusters waiting for their first endpoints before they take traffic, as Envoy
    /// warms them (until then a route to one finds no cluster).
    warming_clusters: BTreeMap<String, Arc<Cluster>>,
    routes: BTreeMap<String, (Origin, String, SystemTime)>,
    listeners: BTreeMap<String, ListenerEntry>,
    versions: HashMap<&'static str, String>,
}

/// Counters of the server (`server.…`, `cluster_manager.…`, `listener_manager.…`).
#[derive(Debug)]
struct ServerStats {
    cds_update_success: Counter,
    cds_update_rejected: Counter,
    lds_update_success: Counter,
    lds_update_rejected: Counter,
    rds_update_success: Counter,
    rds_update_rejected: Counter,
    eds_update_success: Counter,
    total_listeners_active: Gauge,
    total_listeners_warming: Gauge,
    total_clusters: Gauge,
    warming_clusters: Gauge,
}

/// Changes the process's log level (`/logging?level=debug`).
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// A running proxy.
pub struct Proxy {
    /// Clusters and route tables.
    pub registry: Arc<Registry>,
    /// Every stat.
    pub stats: Arc<Stats>,
    /// The bootstrap it started with.
    pub bootstrap: Bootstrap,
    /// When it started.
    pub started: Instant,
    state: Mutex<State>,
    index: ArcSwap<HashMap<SocketAddr, Arc<ArcSwap<ListenerConfig>>>>,
    server_stats: ServerStats,
    initialized: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// Changes the log level (`/logging`), set by the binary.
    pub set_log_level: Mutex<Option<LogLevelSetter>>,
    /// The mesh's host names from pilot's name table (NDS), for the DNS proxy.
    pub names: Arc<ArcSwap<crate::dns::Names>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("node", &self.node().id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What an update did: resources rejected, by name, with why.
#[derive(Debug, Default)]
pub struct Rejections(pub Vec<(String, String)>);

impl Rejections {
    /// Whether everything was applied.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One line per rejected resource, for a NACK.
    pub fn message(&self) -> String {
        self.0
            .iter()
            .map(|(name, error)| format!("{name}: {error}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Proxy {
    /// A proxy for `bootstrap`, with nothing applied yet.
    pub fn new(bootstrap: Bootstrap) -> Arc<Proxy> {
        let stats = Stats::new();
        let registry = Registry::new(stats.clone());
        let c = |name: &str| stats.counter(name);
        let server_stats = ServerStats {
            cds_update_success: c("cluster_manager.cds.update_success"),
            cds_update_rejected: c("cluster_manager.cds.update_rejected"),
            lds_update_success: c("listener_manager.lds.update_success"),
            lds_update_rejected: c("listener_manager.lds.update_rejected"),
            rds_update_success: c("http.rds.update_success"),
            rds_update_rejected: c("http.rds.update_rejected"),
            eds_update_success: c("cluster_manager.eds.update_success"),
            total_listeners_active: stats.gauge("listener_manager.total_listeners_active"),
            total_listeners_warming: stats.gauge("listener_manager.total_listeners_warming"),
            total_clusters: stats.gauge("cluster_manager.active_clusters"),
            warming_clusters: stats.gauge("cluster_manager.warming_clusters"),
        };
        let (shutdown, _) = watch::channel(false);
        Arc::new(Proxy {
            registry,
            stats,
            bootstrap,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            index: ArcSwap::from_pointee(HashMap::new()),
            server_stats,
            initialized: AtomicBool::new(false),
            shutdown,
            set_log_level: Mutex::new(None),
            names: Arc::new(ArcSwap::from_pointee(crate::dns::Names::default())),
        })
    }

    /// The node identity.
    pub fn node(&self) -> Node {
        self.bootstrap.node.clone().unwrap_or_default()
    }

    /// Marks the proxy ready (`/ready` answers LIVE).
    pub fn set_initialized(&self) {
        self.initialized.store(true, Ordering::SeqCst);
    }

    /// Whether initial configuration is in place.
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::SeqCst)
    }

    /// Asks the proxy to stop (`/quitquitquit`, signals).
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Keeps one timer armed in the current runtime until the proxy stops or is dropped.
    ///
    /// Tokio wakes its I/O driver (a write to an eventfd, then one more `epoll_wait`) whenever
    /// a timer is armed that expires before all others, even from the runtime's own thread.
    /// With no other timer armed, that is every request's route timeout and stream idle
    /// timer: a wakeup and two syscalls per request. A timer that expires sooner than those,
    /// at all times, makes arming them cost nothing but the timer wheel (tokio-rs/tokio#5207).
    /// The task ends at shutdown or when the proxy is dropped.
    pub fn anchor_timers(&self) -> tokio::task::JoinHandle<()> {
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(TIMER_ANCHOR_PERIOD) => {}
                    () = signalled(&mut shutdown) => return,
                }
            }
        })
    }

    /// Resolves when shutdown was asked for.
    pub async fn wait_for_shutdown(&self) {
        let mut receiver = self.shutdown.subscribe();
        signalled(&mut receiver).await;
    }

    /// The version last accepted for a resource type (`cds`, `lds`, `rds`, `eds`).
    pub fn version(&self, kind: &'static str) -> String {
        lock(&self.state)
            .versions
            .get(kind)
            .cloned()
            .unwrap_or_default()
    }

    /// Applies clusters. With `replace: Some(keep)`, dynamic clusters neither in the set nor in
    /// `keep` (the names of rejected ones) are removed: state-of-the-world CDS. Invalid clusters
    /// are rejected; the others are applied.
    pub async fn apply_clusters(
        self: &Arc<Self>,
        clusters: Vec<ClusterProto>,
        origin: Origin,
        version: &str,
        replace: Option<&[String]>,
    ) -> Rejections {
        let mut rejections = Rejections::default();
        let mut seen = Vec::new();
        for config in clusters {
            let name = config.name.clone();
            seen.push(name.clone());
            let unchanged = {
                let state = lock(&self.state);
                state.clusters.contains_key(&name)
                    && self
                        .registry
                        .find_cluster(&name)
                        .is_some_and(|c| *c.config == config)
            };
            if unchanged {
                if let Some(record) = lock(&self.state).clusters.get_mut(&name) {
                    record.version = version.to_owned();
                }
                continue;
            }
            match Cluster::compile(config, &self.stats) {
                Err(error) => rejections.0.push((name, error.to_string())),
                Ok(cluster) => {
                    let cluster = Arc::new(cluster);
                    let slot = self.registry.cluster_slot(&name);
                    let previous = slot.load();
                    if let Some(previous) = &previous {
                        cluster.inherit_hosts(previous);
                    }
                    // A cluster replacing an active one takes over its endpoints; a new EDS
                    // cluster waits for its own.
                    let warms = {
                        let mut state = lock(&self.state);
                        let assignment = if cluster.kind == ClusterKind::Eds {
                            state.clusters.get(&name).and_then(|r| r.assignment.clone())
                        } else {
                            None
                        };
                        let warms = cluster.kind == ClusterKind::Eds
                            && previous.is_none()
                            && assignment.is_none();
                        state.clusters.insert(
                            name.clone(),
                            ClusterRecord {
                                origin,
                                version: version.to_owned(),
                                assignment,
                            },
                        );
                        state.warming_clusters.remove(&name);
                        if warms {
                            state.warming_clusters.insert(name.clone(), cluster.clone());
                        }
                        warms
                    };
                    if warms {
                        if let Some(timeout) = eds_initial_fetch_timeout(&cluster) {
                            self.activate_after(timeout, cluster);
                        }
                        continue;
                    }
                    activate(slot, cluster).await;
                }
            }
        }
        if let Some(keep) = replace {
            let removed: Vec<String> = lock(&self.state)
                .clusters
                .iter()
                .filter(|(name, record)| {
                    record.origin == Origin::Dynamic && !seen.contains(name) && !keep.contains(name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in removed {
                {
                    let mut state = lock(&self.state);
                    state.clusters.remove(&name);
                    state.warming_clusters.remove(&name);
                }
                let slot = self.registry.cluster_slot(&name);
                if let Some(cluster) = slot.load() {
                    for host in &cluster.hosts().hosts {
                        host.pools.clear();
                    }
                }
                slot.store(None);
            }
        }
        self.registry.publish();
        self.count_clusters();
        if origin == Origin::Dynamic {
            if rejections.is_empty() {
                self.server_stats.cds_update_success.inc();
                lock(&self.state).versions.insert("cds", version.to_owned());
            } else {
                self.server_stats.cds_update_rejected.inc();
            }
        }
        rejections
    }

    /// The EDS service names of the clusters taking endpoints, warming ones included.
    pub fn eds_service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .eds_clusters()
            .iter()
            .map(|(_, c)| c.eds_service_name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// EDS clusters, active and warming, with whether they warm.
    fn eds_clusters(&self) -> Vec<(bool, Arc<Cluster>)> {
        let mut clusters: Vec<(bool, Arc<Cluster>)> = self
            .registry
            .clusters()
            .into_iter()
            .filter(|c| c.kind == ClusterKind::Eds)
            .map(|c| (false, c))
            .collect();
        let state = lock(&self.state);
        clusters.extend(state.warming_clusters.values().map(|c| (true, c.clone())));
        clusters
    }

    /// Applies endpoint assignments (EDS); a warming cluster that gets its endpoints starts
    /// taking traffic.
    pub fn apply_endpoints(
        self: &Arc<Self>,
        assignments: Vec<ClusterLoadAssignment>,
        version: &str,
    ) -> Rejections {
        let mut rejections = Rejections::default();
        let eds_clusters = self.eds_clusters();
        for assignment in assignments {
            let clusters = eds_clusters
                .iter()
                .filter(|(_, c)| c.eds_service_name == assignment.cluster_name);
            for (warming, cluster) in clusters {
                match cluster.assign(&assignment) {
                    Ok(()) => {
                        if let Some(record) =
                            lock(&self.state).clusters.get_mut(cluster.name.as_ref())
                        {
                            record.assignment =
                                Some((assignment.clone(), version.to_owned(), SystemTime::now()));
                        }
                        if *warming {
                            self.activate_warmed(cluster.clone());
                        }
                    }
                    Err(error) => rejections
                        .0
                        .push((assignment.cluster_name.clone(), error.to_string())),
                }
            }
        }
        if rejections.is_empty() {
            self.server_stats.eds_update_success.inc();
            lock(&self.state).versions.insert("eds", version.to_owned());
        }
        rejections
    }

    /// Ends the warming of `cluster` if it still warms: it takes traffic from now on.
    fn activate_warmed(self: &Arc<Self>, cluster: Arc<Cluster>) {
        let proxy = self.clone();
        tokio::spawn(async move {
            let name = cluster.name.to_string();
            let still_warming = {
                let mut state = lock(&proxy.state);
                let current = state
                    .warming_clusters
                    .get(&name)
                    .is_some_and(|c| Arc::ptr_eq(c, &cluster));
                if current {
                    state.warming_clusters.remove(&name);
                }
                current
            };
            if still_warming {
                activate(proxy.registry.cluster_slot(&name), cluster).await;
                proxy.count_clusters();
            }
        });
    }

    /// After `initial_fetch_timeout`, a cluster still without endpoints takes traffic anyway
    /// (and answers `no healthy upstream`), as in Envoy.
    fn activate_after(self: &Arc<Self>, timeout: Duration, cluster: Arc<Cluster>) {
        let proxy = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(proxy) = proxy.upgrade() {
                proxy.activate_warmed(cluster);
            }
        });
    }

    fn count_clusters(&self) {
        self.server_stats
            .total_clusters
            .set(self.registry.clusters().len() as i64);
        let warming = lock(&self.state).warming_clusters.len();
        self.server_stats.warming_clusters.set(warming as i64);
    }

    /// Applies route configurations (RDS, or static ones by name).
    pub fn apply_routes(
        self: &Arc<Self>,
        routes: Vec<RouteConfiguration>,
        origin: Origin,
        version: &str,
    ) -> Rejections {
        let mut rejections = Rejections::default();
        for config in routes {
            let name = config.name.clone();
            let slot = self.registry.route_slot(&name);
            if slot.load().is_some_and(|t| t.config == config) {
                continue;
            }
            match RouteTable::compile(config, self.registry.as_ref(), origin == Origin::Static) {
                Ok(table) => {
                    slot.store(Some(Arc::new(table)));
                    lock(&self.state)
                        .routes
                        .insert(name, (origin, version.to_owned(), SystemTime::now()));
                }
                Err(error) => rejections.0.push((name, error.to_string())),
            }
        }
        if origin == Origin::Dynamic {
            if rejections.is_empty() {
                self.server_stats.rds_update_success.inc();
                lock(&self.state).versions.insert("rds", version.to_owned());
            } else {
                self.server_stats.rds_update_rejected.inc();
            }
        }
        self.activate_warm_listeners();
        rejections
    }

    /// The RDS route configurations the listeners need.
    pub fn rds_names(&self) -> Vec<String> {
        let state = lock(&self.state);
        let mut names: Vec<String> = state
            .listeners
            .values()
            .flat_map(|entry| {
                entry
                    .active
                    .iter()
                    .map(|a| a.load_full())
                    .chain(entry.warming.iter().cloned())
                    .flat_map(|l| l.rds_names())
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Applies listeners. With `replace: Some(keep)`, dynamic listeners neither in the set nor in
    /// `keep` are removed and drained. A listener waits (warms) until its RDS route
    /// configurations have arrived.
    pub fn apply_listeners(
        self: &Arc<Self>,
        listeners: Vec<ListenerProto>,
        origin: Origin,
        version: &str,
        replace: Option<&[String]>,
    ) -> Rejections {
        let mut rejections = Rejections::default();
        let mut seen = Vec::new();
        for config in listeners {
            let name = config.name.clone();
            seen.push(name.clone());
            {
                let state = lock(&self.state);
                if let Some(entry) = state.listeners.get(&name) {
                    let current = entry
                        .warming
                        .clone()
                        .or_else(|| entry.active.as_ref().map(|a| a.load_full()));
                    if current.is_some_and(|c| c.config == config) {
                        continue;
                    }
                }
            }
            match ListenerConfig::compile(config, version, &self.registry) {
                Err(error) => rejections.0.push((name, error.to_string())),
                Ok(compiled) => {
                    let compiled = Arc::new(compiled);
                    let mut state = lock(&self.state);
                    let entry =
                        state
                            .listeners
                            .entry(name.clone())
                            .or_insert_with(|| ListenerEntry {
                                origin,
                                bound: None,
                                active: None,
                                warming: None,
                                stop: None,
                            });
                    entry.origin = origin;
                    entry.warming = Some(compiled);
                }
            }
        }
        if let Some(keep) = replace {
            let removed: Vec<String> = lock(&self.state)
                .listeners
                .iter()
                .filter(|(name, entry)| {
                    entry.origin == Origin::Dynamic && !seen.contains(name) && !keep.contains(name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in removed {
                if let Some(entry) = lock(&self.state).listeners.remove(&name) {
                    stop_listener(entry);
                }
            }
        }
        if origin == Origin::Dynamic {
            if rejections.is_empty() {
                self.server_stats.lds_update_success.inc();
                lock(&self.state).versions.insert("lds", version.to_owned());
            } else {
                self.server_stats.lds_update_rejected.inc();
            }
        }
        self.activate_warm_listeners();
        rejections
    }

    /// Puts warm listeners in service: binds new ones, swaps updated ones in place (the old
    /// version's connections drain), rebinds ones whose address changed.
    fn activate_warm_listeners(self: &Arc<Self>) {
        let mut state = lock(&self.state);
        let mut to_start = Vec::new();
        for (name, entry) in state.listeners.iter_mut() {
            let Some(warming) = entry.warming.clone() else {
                continue;
            };
            if !warming.is_warm() {
                continue;
            }
            entry.warming = None;
            match &entry.active {
                Some(active)
                    if active.load().address == warming.address
                        && active.load().bind_to_port == warming.bind_to_port =>
                {
                    let old = active.swap(warming);
                    old.drain();
                }
                _ => {
                    if let Some(stop) = entry.stop.take() {
                        let _ = stop.send(true);
                    }
                    if let Some(active) = entry.active.take() {
                        active.load().drain();
                    }
                    let active = Arc::new(ArcSwap::new(warming.clone()));
                    entry.active = Some(active.clone());
                    to_start.push((name.clone(), active));
                }
            }
        }
        let mut started = Vec::new();
        for (name, active) in to_start {
            let config = active.load_full();
            if !config.bind_to_port {
                continue;
            }
            match listener::bind(config.address) {
                Ok(socket) => {
                    let bound = socket.local_addr().ok();
                    let (stop, stop_rx) = watch::channel(false);
                    let index: Arc<dyn ListenerIndex> = self.clone();
                    tokio::spawn(listener::accept_loop(
                        socket,
                        active.clone(),
                        index,
                        stop_rx,
                    ));
                    started.push((name, stop, bound));
                }
                Err(error) => {
                    tracing::error!(listener = %name, address = %config.address, %error, "cannot bind listener");
                    state.listeners.remove(&name);
                }
            }
        }
        for (name, stop, bound) in started {
            if let Some(entry) = state.listeners.get_mut(&name) {
                entry.stop = Some(stop);
                entry.bound = bound;
            }
        }
        let index: HashMap<SocketAddr, Arc<ArcSwap<ListenerConfig>>> = state
            .listeners
            .values()
            .filter_map(|e| e.active.clone())
            .map(|a| (a.load().address, a))
            .collect();
        let active = state
            .listeners
            .values()
            .filter(|e| e.active.is_some())
            .count();
        let warming = state
            .listeners
            .values()
            .filter(|e| e.warming.is_some())
            .count();
        drop(state);
        self.server_stats.total_listeners_active.set(active as i64);
        self.server_stats
            .total_listeners_warming
            .set(warming as i64);
        self.index.store(Arc::new(index));
    }

    /// The addresses of active listeners, by name; the bound address when the configured port
    /// was 0.
    pub fn listener_addresses(&self) -> BTreeMap<String, SocketAddr> {
        lock(&self.state)
            .listeners
            .iter()
            .filter_map(|(name, e)| {
                e.active
                    .as_ref()
                    .map(|a| (name.clone(), e.bound.unwrap_or(a.load().address)))
            })
            .collect()
    }

    /// Active and warming listeners, with their state, for `/config_dump` and `/listeners`.
    pub fn listener_views(&self) -> Vec<ListenerView> {
        lock(&self.state)
            .listeners
            .iter()
            .map(|(name, e)| ListenerView {
                name: name.clone(),
                origin: e.origin,
                bound: e.bound,
                active: e.active.as_ref().map(|a| a.load_full()),
                warming: e.warming.clone(),
            })
            .collect()
    }

    /// Clusters with where they came from and their version, for `/config_dump`: the active
    /// ones, then the warming ones.
    pub fn cluster_views(&self) -> Vec<ClusterView> {
        let state = lock(&self.state);
        let active = self.registry.clusters().into_iter().map(|c| (false, c));
        let warming = state
            .warming_clusters
            .values()
            .map(|c| (true, c.clone()))
            .collect::<Vec<_>>();
        active
            .chain(warming)
            .filter_map(|(warming, cluster)| {
                let record = state.clusters.get(cluster.name.as_ref())?;
                Some(ClusterView {
                    origin: record.origin,
                    version: record.version.clone(),
                    assignment: record.assignment.clone(),
                    warming,
                    cluster,
                })
            })
            .collect()
    }

    /// Route configurations with where they came from, for `/config_dump`.
    pub fn route_views(&self) -> Vec<(Origin, String, SystemTime, Arc<RouteTable>)> {
        let state = lock(&self.state);
        self.registry
            .route_tables()
            .into_iter()
            .filter_map(|slot| {
                let table = slot.load()?;
                let (origin, version, updated) = state.routes.get(slot.name())?.clone();
                Some((origin, version, updated, table))
            })
            .collect()
    }

    /// Stops accepting on every listener and drains their connections.
    pub fn drain_listeners(&self) {
        let mut state = lock(&self.state);
        for entry in state.listeners.values_mut() {
            if let Some(stop) = entry.stop.take() {
                let _ = stop.send(true);
            }
            if let Some(active) = &entry.active {
                active.load().drain();
            }
        }
    }

    /// Stops everything.
    pub fn stop(&self) {
        let entries: Vec<ListenerEntry> = std::mem::take(&mut lock(&self.state).listeners)
            .into_values()
            .collect();
        for entry in entries {
            stop_listener(entry);
        }
    }
}

/// How often the timer anchor of [`Proxy::anchor_timers`] fires.
const TIMER_ANCHOR_PERIOD: Duration = Duration::from_secs(1);

/// Resolves once the flag behind `receiver` is set (or its sender is gone).
pub(crate) async fn signalled(receiver: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await point.
    let _ = receiver.wait_for(|set| *set).await.map(|_| ());
}

fn stop_listener(entry: ListenerEntry) {
    if let Some(stop) = entry.stop {
        let _ = stop.send(true);
    }
    if let Some(active) = entry.active {
        active.load().drain();
    }
}

/// A listener as `/config_dump` shows it.
#[derive(Debug)]
pub struct ListenerView {
    /// Its name.
    pub name: String,
    /// The address it is bound to (differs from the configured one when that had port 0).
    pub bound: Option<SocketAddr>,
    /// Static or dynamic.
    pub origin: Origin,
    /// The version in service.
    pub active: Option<Arc<ListenerConfig>>,
    /// The version waiting for its routes.
    pub warming: Option<Arc<ListenerConfig>>,
}

/// A cluster as `/config_dump` shows it.
#[derive(Debug)]
pub struct ClusterView {
    /// Static or dynamic.
    pub origin: Origin,
    /// The version it came with.
    pub version: String,
    /// Its endpoints as last assigned, with their version.
    pub assignment: Option<(ClusterLoadAssignment, String, SystemTime)>,
    /// Whether it still waits for its endpoints (takes no traffic yet).
    pub warming: bool,
    /// The cluster.
    pub cluster: Arc<Cluster>,
}

impl ListenerIndex for Proxy {
    fn listener_for(&self, address: SocketAddr) -> Option<Arc<ListenerConfig>> {
        let index = self.index.load();
        if let Some(found) = index.get(&address) {
            return Some(found.load_full());
        }
        let wildcard = match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        index
            .get(&SocketAddr::new(wildcard, address.port()))
            .map(|found| found.load_full())
    }
}

/// Whether `cluster` is still the one in `slot` (tasks of replaced clusters stop).
fn is_current(slot: &crate::upstream::ClusterSlot, cluster: &Arc<Cluster>) -> bool {
    slot.load()
        .is_some_and(|current| Arc::ptr_eq(&current, cluster))
}

/// Runs outlier detection's interval for as long as the cluster is the one in its slot.
/// Brings a cluster into service: resolves its names, runs a first round of health checks,
/// starts its periodic tasks, then puts it in its slot where routes find it.
async fn activate(slot: Arc<crate::upstream::ClusterSlot>, cluster: Arc<Cluster>) {
    let name = cluster.name.clone();
    let mut next_resolution = cluster.dns_refresh();
    if cluster.needs_dns() {
        // Warm: the first resolution happens before the cluster takes traffic.
        match tokio::time::timeout(Duration::from_secs(5), cluster.resolve())
            .await
            .unwrap_or_else(|_| Err(ConfigError::invalid("DNS resolution timed out")))
        {
            Ok(next) => next_resolution = Some(next),
            Err(error) => {
                tracing::warn!(cluster = %name, %error, "initial DNS resolution failed");
            }
        }
    }
    if let Some(check) = &cluster.health_check {
        // Envoy lets a cluster take traffic once every endpoint was checked.
        let round = crate::upstream::health_check::run_round(&cluster, check);
        let _ = tokio::time::timeout(Duration::from_secs(5), round).await;
    }
    // Stored first: the periodic tasks stop when the slot holds another cluster.
    slot.store(Some(cluster.clone()));
    if let Some(first) = next_resolution.filter(|_| cluster.needs_dns()) {
        spawn_dns_refresh(slot.clone(), cluster.clone(), first);
    }
    if let Some(check) = cluster.health_check.clone() {
        spawn_health_checks(slot.clone(), cluster.clone(), check);
    }
    if let Some(outlier) = &cluster.outlier {
        spawn_periodic(
            slot.clone(),
            cluster.clone(),
            outlier.config.interval,
            Cluster::outlier_tick,
        );
    }
    if let Some(interval) = cluster.cleanup_interval {
        spawn_periodic(slot, cluster.clone(), interval, |c| {
            c.clean_up_original_dst();
        });
    }
}

/// How long a new EDS cluster waits for its endpoints (`eds_config.initial_fetch_timeout`,
/// 15 s when unset); `None` when it waits for ever (a zero timeout, as Istio sets it).
fn eds_initial_fetch_timeout(cluster: &Cluster) -> Option<Duration> {
    let configured = cluster
        .config
        .eds_cluster_config
        .as_ref()
        .and_then(|e| e.eds_config.as_ref())
        .and_then(|c| c.initial_fetch_timeout.as_ref());
    match configured {
        None => Some(Duration::from_secs(15)),
        Some(timeout) => Some(crate::config::duration(timeout)).filter(|d| !d.is_zero()),
    }
}

/// Runs `work` on the cluster every `interval` for as long as it is the one in its slot
/// (outlier detection ticks, ORIGINAL_DST cleanups).
fn spawn_periodic(
    slot: Arc<crate::upstream::ClusterSlot>,
    cluster: Arc<Cluster>,
    interval: Duration,
    work: fn(&Cluster),
) {
    let weak = Arc::downgrade(&cluster);
    drop(cluster);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            if !is_current(&slot, &cluster) && slot.load().is_some() {
                return;
            }
            work(&cluster);
        }
    });
}

/// Runs active health checks for as long as the cluster is the one in its slot.
fn spawn_health_checks(
    slot: Arc<crate::upstream::ClusterSlot>,
    cluster: Arc<Cluster>,
    check: Arc<crate::upstream::health_check::HealthCheck>,
) {
    let weak = Arc::downgrade(&cluster);
    drop(cluster);
    tokio::spawn(async move {
        loop {
            let wait = match weak.upgrade() {
                Some(cluster) => check.next_interval(&cluster),
                None => return,
            };
            let wakeup = async {
                match weak.upgrade() {
                    // New endpoints are checked at once rather than at the next interval.
                    Some(cluster) => cluster.health_check_wakeup.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wakeup => {}
            }
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            if !is_current(&slot, &cluster) && slot.load().is_some() {
                return;
            }
            crate::upstream::health_check::run_round(&cluster, &check).await;
        }
    });
}

/// Re-resolves a DNS cluster's names for as long as it is the one in its slot, `first` after
/// the first resolution and then when each resolution says.
fn spawn_dns_refresh(
    slot: Arc<crate::upstream::ClusterSlot>,
    cluster: Arc<Cluster>,
    first: Duration,
) {
    let Some(refresh) = cluster.dns_refresh() else {
        return;
    };
    let weak = Arc::downgrade(&cluster);
    drop(cluster);
    tokio::spawn(async move {
        let mut wait = first;
        loop {
            tokio::time::sleep(wait).await;
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            if !slot
                .load()
                .is_some_and(|current| Arc::ptr_eq(&current, &cluster))
            {
                return;
            }
            wait = match cluster.resolve().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::debug!(cluster = %cluster.name, %error, "DNS refresh failed");
                    refresh
                }
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Arc<Proxy> {
        Proxy::new(Bootstrap::default())
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_anchor_fires_until_shutdown_and_then_ends() {
        let proxy = proxy();
        let anchor = proxy.anchor_timers();
        // Several periods pass (paused clock: instantly); the anchor keeps going.
        tokio::time::sleep(TIMER_ANCHOR_PERIOD * 5).await;
        assert!(!anchor.is_finished());
        proxy.request_shutdown();
        let ended = tokio::time::timeout(TIMER_ANCHOR_PERIOD * 2, anchor).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "the anchor outlived shutdown: {ended:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_anchor_ends_with_its_proxy() {
        let anchor = proxy().anchor_timers();
        let ended = tokio::time::timeout(TIMER_ANCHOR_PERIOD * 2, anchor).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "the anchor outlived its proxy: {ended:?}"
        );
    }
}
