//! The mesh on one machine: pilot (in this process), every pod's containers and sidecar as
//! local processes, the ingress gateway, and a kubelet's bookkeeping — Pods written to
//! pilot's store with their address, and marked ready when their ports answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_api::load::{Problem, Source, load_sources};
use bosun_api::{Kind, Resource};
use bosun_pilot::context::MeshConfig;
use bosun_pilot::store::{ResourceKey, Snapshot, Store, StoreError};
use bosun_pilot::{Pilot, PilotError, PilotOptions};
use tokio::task::JoinHandle;

use crate::netns::{self, NetnsError, PodNamespace, PodNetwork};
use crate::plan::{
    AddressPool, ContainerPlan, GATEWAY_NAME, GATEWAY_NAMESPACE, PlanError, PodPlan, Program,
    gateway_pod, gateway_service_yaml, plan,
};
use crate::supervisor::{Supervisor, UnitSpec, UnitState};

/// The sidecar's name among a pod's containers, as Istio names it.
pub const SIDECAR: &str = "istio-proxy";
/// The outbound HTTP proxy port of every sidecar (on its pod's address).
pub const HTTP_PROXY_PORT: u16 = bosun_pilot::node::DEFAULT_HTTP_PROXY_PORT;
/// The proxies' admin port (on their pod's address).
pub const ADMIN_PORT: u16 = 15000;

/// How the workloads' traffic reaches their sidecars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// No root needed: every pod has a loopback address of its own, the app's outbound HTTP
    /// goes through its sidecar as `HTTP_PROXY`, inbound through the sidecar's listeners on
    /// the pod address.
    Loopback,
    /// As root: every pod has its own network namespace, iptables redirects its TCP to the
    /// sidecar (15001/15006) and its DNS to the sidecar's DNS proxy, as istio-init does.
    Netns,
}

impl CaptureMode {
    /// As the `--capture` flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::Loopback => "loopback",
            CaptureMode::Netns => "netns",
        }
    }
}

/// How to run the mesh.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The workload and Istio YAML.
    pub sources: Vec<Source>,
    /// Where state lives: the config store, logs.
    pub state_dir: PathBuf,
    /// The `bosun` executable (sample apps are its subcommands, and so are proxies without
    /// [`UpOptions::proxy`]).
    pub bosun: PathBuf,
    /// The `bosun-proxy` executable sidecars and the gateway run as; `None`: `bosun proxy`.
    pub proxy: Option<PathBuf>,
    /// How traffic is captured.
    pub capture: CaptureMode,
    /// Where the ingress gateway serves HTTP (its Service maps port 80 there).
    pub gateway: SocketAddr,
    /// The gateway's admin endpoint.
    pub gateway_admin: SocketAddr,
    /// The /24 pods get addresses in: 127.a.b.0 on loopback (apps in the next /24), a
    /// private network in namespaces (the host is its `.1`).
    pub pod_network: Ipv4Addr,
    /// Pilot's ADS address (with namespaces, its host part is the bridge's address).
    pub xds_address: SocketAddr,
    /// Pilot's HTTP API address.
    pub http_address: SocketAddr,
    /// Where Services get their cluster IPs.
    pub cluster_ip_range: ipnet::Ipv4Net,
    /// Mesh-wide settings.
    pub mesh: MeshConfig,
}

impl UpOptions {
    /// Defaults for everything but the input: the gateway on localhost:8080, pilot on its
    /// usual ports, pods on 127.10.0.0/24 or (namespaces) 10.244.0.0/24.
    pub fn new(
        sources: Vec<Source>,
        state_dir: PathBuf,
        bosun: PathBuf,
        capture: CaptureMode,
    ) -> Self {
        UpOptions {
            sources,
            state_dir,
            bosun,
            proxy: None,
            capture,
            gateway: SocketAddr::from(([127, 0, 0, 1], 8080)),
            gateway_admin: SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT)),
            pod_network: match capture {
                CaptureMode::Loopback => Ipv4Addr::new(127, 10, 0, 0),
                CaptureMode::Netns => Ipv4Addr::new(10, 244, 0, 0),
            },
            xds_address: SocketAddr::from(([127, 0, 0, 1], 15010)),
            http_address: SocketAddr::from(([127, 0, 0, 1], 15014)),
            cluster_ip_range: ipnet::Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 16)
                .unwrap_or_default(),
            mesh: MeshConfig::default(),
        }
    }
}

/// Why the mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Some documents are invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    /// A workload cannot run here.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Pilot could not start.
    #[error(transparent)]
    Pilot(#[from] PilotError),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pods' network could not be set up.
    #[error("setting up the pods' network namespaces: {0}")]
    Network(#[from] NetnsError),
    /// Network namespaces need root.
    #[error(
        "capture mode netns needs root (network namespaces and iptables); run as root or use --capture loopback"
    )]
    NotRoot,
    /// The addresses given do not fit the capture mode.
    #[error("{0}")]
    BadAddress(String),
}

/// A pod, as `bosun status` shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PodStatus {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Ready containers (sidecar included) over all.
    pub ready: String,
    /// `Running`, `ContainerCreating`, `CrashLoopBackOff`, `Terminating`.
    pub status: String,
    /// Restarts of all its containers.
    pub restarts: u32,
    /// Its address.
    pub ip: String,
    /// Its `app` label.
    pub app: String,
    /// Its `version` label.
    pub version: String,
    /// Its sidecar's sync state with pilot (`SYNCED`, `STALE`, `NACKED`, `NOT CONNECTED`).
    pub sync: String,
    /// Its proxy's admin endpoint.
    pub admin: String,
    /// The network namespace it runs in (capture `netns`).
    pub netns: Option<String>,
    /// Its sidecar's outbound HTTP proxy (capture `loopback`).
    pub http_proxy: Option<String>,
    /// Its containers, the sidecar last.
    pub containers: Vec<ContainerStatus>,
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerStatus {
    /// Its name (`istio-proxy` for the sidecar).
    pub name: String,
    /// `Running`, `Starting`, `BackOff` or `Stopped`.
    pub state: String,
    /// Its process, while it runs.
    pub pid: Option<u32>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How it last ended.
    pub last_exit: Option<String>,
}

/// The mesh, as `bosun status` shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MeshStatus {
    /// The gateway's URL.
    pub gateway_url: String,
    /// Pilot's HTTP API (`host:port`).
    pub pilot: String,
    /// Pilot's ADS address.
    pub xds: String,
    /// How traffic is captured.
    pub capture: CaptureMode,
    /// Every pod, the gateway first.
    pub pods: Vec<PodStatus>,
}

impl MeshStatus {
    /// Whether every pod runs, is ready and has its configuration.
    pub fn is_ready(&self) -> bool {
        self.pods
            .iter()
            .all(|p| p.status == "Running" && p.sync == "SYNCED")
    }

    /// A pod by name, or by the name of its Deployment (the first of its pods), as
    /// `kubectl exec deploy/NAME` picks one.
    pub fn find_pod(&self, name: &str, namespace: &str) -> Option<&PodStatus> {
        let in_namespace = || self.pods.iter().filter(|p| p.namespace == namespace);
        let deployment = name
            .strip_prefix("deploy/")
            .or_else(|| name.strip_prefix("deployment/"));
        match deployment {
            Some(deployment) => in_namespace().find(|p| {
                p.name
                    .strip_prefix(deployment)
                    .is_some_and(|rest| rest.starts_with('-') && rest[1..].contains('-'))
            }),
            None => in_namespace().find(|p| p.name == name),
        }
    }
}

/// A kubelet's view of which pods pass their readiness probes.
type ReadySet = Arc<Mutex<BTreeSet<String>>>;

/// The running mesh.
#[derive(Debug)]
pub struct Mesh {
    pilot: Pilot,
    supervisor: Arc<Supervisor>,
    pods: Vec<PodPlan>,
    gateway: PodPlan,
    options: UpOptions,
    ready: ReadySet,
    kubelet: JoinHandle<()>,
    network: Option<PodNetwork>,
    namespaces: BTreeMap<String, PodNamespace>,
}

fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace(['-', '.'], "_")
}

impl Mesh {
    /// Starts everything. On an error, what was started is stopped again.
    pub async fn up(mut options: UpOptions) -> Result<Mesh, UpError> {
        let loaded = load_sources(&options.sources);
        if !loaded.problems.is_empty() {
            return Err(UpError::Invalid(loaded.problems));
        }
        let resources: Vec<Resource> = loaded.loaded.into_iter().map(|l| l.resource).collect();
        let mut addresses = match options.capture {
            CaptureMode::Loopback => {
                let [first, a, b, _] = options.pod_network.octets();
                if first != 127 {
                    return Err(UpError::BadAddress(format!(
                        "capture mode loopback needs a pod network in 127.0.0.0/8, not {}",
                        options.pod_network
                    )));
                }
                AddressPool::loopback(a, b)
            }
            CaptureMode::Netns => {
                if !netns::available() {
                    return Err(UpError::NotRoot);
                }
                AddressPool::namespaced(options.pod_network)
            }
        };
        let pods = plan(&resources, &mut addresses)?;
        let IpAddr::V4(gateway_ip) = options.gateway.ip() else {
            return Err(UpError::BadAddress(format!(
                "the gateway's address must be IPv4, not {}",
                options.gateway
            )));
        };
        let gateway = gateway_pod(gateway_ip);

        let network = match options.capture {
            CaptureMode::Netns => {
                let network = PodNetwork::create(options.pod_network).await?;
                options
                    .xds_address
                    .set_ip(IpAddr::V4(network.host_address()));
                Some(network)
            }
            CaptureMode::Loopback => None,
        };
        let started = Self::start(options, resources, pods, gateway, network.clone()).await;
        match started {
            Ok(mesh) => Ok(mesh),
            Err((error, namespaces)) => {
                for namespace in namespaces.values() {
                    let _ = namespace.remove().await;
                }
                if let Some(network) = network {
                    network.remove().await;
                }
                Err(error)
            }
        }
    }

    /// Starts pilot and the pods; on an error, gives back the namespaces made so far.
    async fn start(
        options: UpOptions,
        resources: Vec<Resource>,
        pods: Vec<PodPlan>,
        gateway: PodPlan,
        network: Option<PodNetwork>,
    ) -> Result<Mesh, (UpError, BTreeMap<String, PodNamespace>)> {
        let mut namespaces = BTreeMap::new();
        if let Some(network) = &network {
            for pod in &pods {
                match network.add_pod(pod.ip, &pod.name, &pod.namespace).await {
                    Ok(namespace) => {
                        namespaces.insert(pod.name.clone(), namespace);
                    }
                    Err(e) => return Err((e.into(), namespaces)),
                }
            }
        }
        let pilot = match Pilot::start(PilotOptions {
            config_dir: Some(options.state_dir.join("store")),
            xds_address: options.xds_address,
            http_address: options.http_address,
            mesh: options.mesh.clone(),
            cluster_ip_range: Some(options.cluster_ip_range),
            ..PilotOptions::default()
        })
        .await
        {
            Ok(pilot) => pilot,
            Err(e) => return Err((e.into(), namespaces)),
        };
        if let Err(e) = register(pilot.store(), resources, &pods, &gateway, &options) {
            pilot.shutdown().await;
            return Err((e, namespaces));
        }

        let supervisor = Arc::new(Supervisor::new());
        let mesh_env = service_env(&pilot.store().snapshot(), options.capture);
        for pod in &pods {
            let namespace = namespaces.get(&pod.name);
            for container in &pod.containers {
                supervisor.start(app_unit(&options, pod, container, &mesh_env, namespace));
            }
            supervisor.start(proxy_unit(&options, pod, pilot.xds_address(), namespace));
        }
        supervisor.start(proxy_unit(&options, &gateway, pilot.xds_address(), None));

        let ready = ReadySet::default();
        let kubelet = tokio::spawn(kubelet(pilot.store().clone(), pods.clone(), ready.clone()));
        Ok(Mesh {
            pilot,
            supervisor,
            pods,
            gateway,
            options,
            ready,
            kubelet,
            network,
            namespaces,
        })
    }

    /// Pilot.
    pub fn pilot(&self) -> &Pilot {
        &self.pilot
    }

    /// The gateway's HTTP address.
    pub fn gateway_address(&self) -> SocketAddr {
        self.options.gateway
    }

    /// A receiver that sees changes of the processes' states.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.supervisor.subscribe()
    }

    /// Where every pod stands.
    pub fn status(&self) -> MeshStatus {
        let units = self.supervisor.statuses();
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sync = self.pilot.sync().connections();
        let mut pods = Vec::new();
        for pod in std::iter::once(&self.gateway).chain(self.pods.iter()) {
            let mut names: Vec<String> = pod
                .containers
                .iter()
                .map(|c| format!("{}/{}", pod.name, c.name))
                .collect();
            names.push(format!("{}/{SIDECAR}", pod.name));
            let statuses: Vec<_> = names.iter().filter_map(|n| units.get(n)).collect();
            let containers = names
                .iter()
                .filter_map(|n| Some((n, units.get(n)?)))
                .map(|(name, unit)| ContainerStatus {
                    name: name.rsplit('/').next().unwrap_or(name).to_owned(),
                    state: match unit.state {
                        UnitState::Starting => "Starting",
                        UnitState::Running(_) => "Running",
                        UnitState::BackOff => "BackOff",
                        UnitState::Stopped => "Stopped",
                    }
                    .to_owned(),
                    pid: match unit.state {
                        UnitState::Running(pid) => Some(pid),
                        _ => None,
                    },
                    restarts: unit.restarts,
                    last_exit: unit.last_exit.clone(),
                })
                .collect();
            let running = statuses
                .iter()
                .filter(|s| matches!(s.state, UnitState::Running(_)))
                .count();
            let restarts = statuses.iter().map(|s| s.restarts).sum();
            let proxy_name = format!("{}.{}", pod.name, pod.namespace);
            let connection = sync.iter().find(|c| c.node.name() == proxy_name);
            let sync_state = connection.map_or("NOT CONNECTED".to_owned(), |c| {
                bosun_pilot::translate::PUSH_ORDER
                    .iter()
                    .map(|t| c.state(t).as_str())
                    .filter(|s| *s != "NOT SENT")
                    .max_by_key(|s| match *s {
                        "NACKED" => 3,
                        "STALE" => 2,
                        _ => 1,
                    })
                    .unwrap_or("NOT SENT")
                    .to_owned()
            });
            let app_ready = pod.containers.is_empty() || ready.contains(&pod.name);
            let status = if statuses.iter().any(|s| s.state == UnitState::BackOff) {
                "CrashLoopBackOff"
            } else if statuses.iter().any(|s| s.state == UnitState::Stopped) {
                "Terminating"
            } else if running == names.len() && app_ready {
                "Running"
            } else {
                "ContainerCreating"
            };
            let ready_count = if app_ready { running } else { running.min(1) };
            let is_gateway = pod.name == self.gateway.name;
            pods.push(PodStatus {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ready: format!("{ready_count}/{}", names.len()),
                status: status.to_owned(),
                restarts,
                ip: pod.ip.to_string(),
                app: pod.labels.get("app").cloned().unwrap_or_default(),
                version: pod.labels.get("version").cloned().unwrap_or_default(),
                sync: sync_state,
                admin: format!(
                    "http://{}",
                    if is_gateway {
                        self.options.gateway_admin
                    } else {
                        SocketAddr::from((pod.ip, ADMIN_PORT))
                    }
                ),
                netns: self.namespaces.get(&pod.name).map(|n| n.name().to_owned()),
                http_proxy: (self.options.capture == CaptureMode::Loopback && !is_gateway)
                    .then(|| format!("http://{}:{HTTP_PROXY_PORT}", pod.ip)),
                containers,
            });
        }
        MeshStatus {
            gateway_url: format!("http://{}", self.gateway_address()),
            pilot: self.pilot.http_address().to_string(),
            xds: self.pilot.xds_address().to_string(),
            capture: self.options.capture,
            pods,
        }
    }

    /// Whether every pod runs, is ready and has its configuration.
    pub fn is_ready(&self) -> bool {
        self.status().is_ready()
    }

    /// Stops everything in order: the gateway, the sidecars, the apps, pilot; then removes
    /// the pods' network namespaces.
    pub async fn down(self) {
        self.kubelet.abort();
        let gateway = format!("{}/", self.gateway.name);
        self.supervisor
            .stop_where(|n| n.starts_with(&gateway))
            .await;
        self.supervisor
            .stop_where(|n| n.ends_with(&format!("/{SIDECAR}")))
            .await;
        self.supervisor.stop_where(|_| true).await;
        self.pilot.shutdown().await;
        for namespace in self.namespaces.values() {
            if let Err(e) = namespace.remove().await {
                tracing::warn!(namespace = namespace.name(), error = %e, "cannot remove");
            }
        }
        if let Some(network) = &self.network {
            network.remove().await;
        }
    }
}

/// Writes the workloads to the store as the API server and kubelets would: the config and
/// Services (without the Pods of the input, which the runtime runs), the gateway's Service
/// unless the input has one, and a Pod per planned pod, not ready yet.
fn register(
    store: &Store,
    resources: Vec<Resource>,
    pods: &[PodPlan],
    gateway: &PodPlan,
    options: &UpOptions,
) -> Result<(), UpError> {
    // Pods of an earlier run are gone: the kubelet registers the new ones.
    let stale: Vec<ResourceKey> = store
        .snapshot()
        .of_kind(Kind::Pod)
        .map(|(key, _)| key.clone())
        .collect();
    store.delete(&stale)?;
    let mut config: Vec<Resource> = resources
        .into_iter()
        .filter(|r| r.kind() != Kind::Pod)
        .collect();
    let has_gateway_service = config.iter().any(|r| {
        r.kind() == Kind::Service
            && r.name() == GATEWAY_NAME
            && r.namespace() == Some(GATEWAY_NAMESPACE)
    });
    if !has_gateway_service {
        let gateway_yaml = gateway_service_yaml(options.gateway.port());
        let extra = load_sources(&[Source::new("gateway", gateway_yaml)]);
        if !extra.problems.is_empty() {
            return Err(UpError::Invalid(extra.problems));
        }
        config.extend(extra.loaded.into_iter().map(|l| l.resource));
    }
    store.apply(config, None)?;
    let mut pod_docs = vec![Source::new("kubelet", gateway.pod_yaml(true))];
    pod_docs.extend(
        pods.iter()
            .map(|p| Source::new("kubelet", p.pod_yaml(false))),
    );
    store.apply_sources(&pod_docs, None)?;
    Ok(())
}

/// `<SERVICE>_SERVICE_HOST` and `_PORT` for every Service, by namespace, as Kubernetes sets
/// them. The host is the cluster IP when traffic is captured; on loopback it is the
/// Service's name, which the sidecar (the app's HTTP proxy) resolves.
fn service_env(
    snapshot: &Snapshot,
    capture: CaptureMode,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut env: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (key, stored) in snapshot.of_kind(Kind::Service) {
        let Resource::Service(service) = &*stored.resource else {
            continue;
        };
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let Some(port) = spec.ports.as_ref().and_then(|p| p.first()) else {
            continue;
        };
        let host = match (capture, spec.cluster_ip.as_deref()) {
            (CaptureMode::Netns, Some(ip)) if ip != "None" => ip.to_owned(),
            _ => key.name.clone(),
        };
        let prefix = env_name(&key.name);
        let list = env.entry(key.namespace.clone()).or_default();
        list.push((format!("{prefix}_SERVICE_HOST"), host));
        list.push((format!("{prefix}_SERVICE_PORT"), port.port.to_string()));
    }
    env
}

fn log_path(options: &UpOptions, pod: &PodPlan, container: &str) -> PathBuf {
    options
        .state_dir
        .join("logs")
        .join(&pod.namespace)
        .join(&pod.name)
        .join(format!("{container}.log"))
}

/// A pod's program, run in its network namespace when it has one.
fn in_pod(
    namespace: Option<&PodNamespace>,
    as_proxy: bool,
    program: PathBuf,
    args: Vec<String>,
) -> (PathBuf, Vec<String>) {
    let Some(namespace) = namespace else {
        return (program, args);
    };
    let program = program.display().to_string();
    let (wrapper, mut wrapped) = if as_proxy {
        namespace.exec_as_proxy(&program)
    } else {
        namespace.exec(&program)
    };
    wrapped.extend(args);
    (PathBuf::from(wrapper), wrapped)
}

fn app_unit(
    options: &UpOptions,
    pod: &PodPlan,
    container: &ContainerPlan,
    mesh_env: &BTreeMap<String, Vec<(String, String)>>,
    namespace: Option<&PodNamespace>,
) -> UnitSpec {
    let mut env: Vec<(String, String)> = mesh_env.get(&pod.namespace).cloned().unwrap_or_default();
    if options.capture == CaptureMode::Loopback {
        let proxy = format!("http://{}:{HTTP_PROXY_PORT}", pod.ip);
        env.push(("HTTP_PROXY".to_owned(), proxy.clone()));
        env.push(("http_proxy".to_owned(), proxy));
    }
    env.extend([
        ("HOSTNAME".to_owned(), pod.name.clone()),
        ("POD_NAME".to_owned(), pod.name.clone()),
        ("POD_NAMESPACE".to_owned(), pod.namespace.clone()),
        ("INSTANCE_IP".to_owned(), pod.ip.to_string()),
    ]);
    env.extend(container.env.iter().cloned());
    let (program, args) = match &container.program {
        Program::Sample(args) => {
            let mut full = vec!["sample".to_owned()];
            full.extend(args.iter().cloned());
            (options.bosun.clone(), full)
        }
        Program::Command(argv) => (
            PathBuf::from(argv.first().cloned().unwrap_or_default()),
            argv.iter().skip(1).cloned().collect(),
        ),
    };
    let (program, args) = in_pod(namespace, false, program, args);
    UnitSpec {
        name: format!("{}/{}", pod.name, container.name),
        program,
        args,
        env,
        log: log_path(options, pod, &container.name),
    }
}

fn proxy_unit(
    options: &UpOptions,
    pod: &PodPlan,
    xds: SocketAddr,
    namespace: Option<&PodNamespace>,
) -> UnitSpec {
    let is_gateway = pod.containers.is_empty() && pod.name.starts_with(GATEWAY_NAME);
    let admin = if is_gateway {
        options.gateway_admin
    } else {
        SocketAddr::from((pod.ip, ADMIN_PORT))
    };
    let (program, mut args) = match &options.proxy {
        Some(proxy) => (proxy.clone(), Vec::new()),
        None => (options.bosun.clone(), vec!["proxy".to_owned()]),
    };
    args.extend([
        if is_gateway { "router" } else { "sidecar" }.to_owned(),
        "--pilot".to_owned(),
        xds.to_string(),
        "--pod-name".to_owned(),
        pod.name.clone(),
        "--namespace".to_owned(),
        pod.namespace.clone(),
        "--ip".to_owned(),
        pod.ip.to_string(),
        "--service-account".to_owned(),
        pod.service_account.clone(),
        "--admin-address".to_owned(),
        admin.to_string(),
    ]);
    if namespace.is_some() {
        args.extend([
            "--capture".to_owned(),
            "iptables".to_owned(),
            "--dns-address".to_owned(),
            format!("127.0.0.1:{}", netns::DNS_PORT),
        ]);
    } else {
        args.extend([
            "--capture".to_owned(),
            "none".to_owned(),
            "--app-address".to_owned(),
            pod.app_ip.to_string(),
        ]);
    }
    for (key, value) in &pod.labels {
        args.push("--label".to_owned());
        args.push(format!("{key}={value}"));
    }
    let (program, args) = in_pod(namespace, true, program, args);
    UnitSpec {
        name: format!("{}/{SIDECAR}", pod.name),
        program,
        args,
        env: Vec::new(),
        log: log_path(options, pod, SIDECAR),
    }
}

/// Where a kubelet probes a pod's ports: the app's own address on loopback; the pod's
/// address (through its sidecar) in a namespace.
fn probe_address(pod: &PodPlan) -> Ipv4Addr {
    if pod.app_ip.is_unspecified() {
        pod.ip
    } else {
        pod.app_ip
    }
}

/// A kubelet's readiness probes: a pod is ready when each of its containers' ports accepts a
/// connection; the Pod in the store follows.
async fn kubelet(store: Store, pods: Vec<PodPlan>, ready: ReadySet) {
    let mut known: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        for pod in &pods {
            let mut is_ready = true;
            for port in pod.containers.iter().flat_map(|c| c.ports.iter()) {
                let address = SocketAddr::from((probe_address(pod), *port));
                let connected = tokio::time::timeout(
                    Duration::from_millis(300),
                    tokio::net::TcpStream::connect(address),
                )
                .await;
                if !matches!(connected, Ok(Ok(_))) {
                    is_ready = false;
                    break;
                }
            }
            if known.get(&pod.name) == Some(&is_ready) {
                continue;
            }
            let source = Source::new("kubelet", pod.pod_yaml(is_ready));
            if let Err(e) = store.apply_sources(&[source], None) {
                tracing::warn!(pod = %pod.name, error = %e, "cannot update the pod");
                continue;
            }
            known.insert(pod.name.clone(), is_ready);
            let mut set = ready.lock().unwrap_or_else(|e| e.into_inner());
            if is_ready {
                set.insert(pod.name.clone());
            } else {
                set.remove(&pod.name);
            }
        }
        // Quick while pods come up; then at a kubelet's calmer pace.
        let all_ready = known.len() == pods.len() && known.values().all(|r| *r);
        let period = if all_ready { 2000 } else { 250 };
        tokio::time::sleep(Duration::from_millis(period)).await;
    }
}
