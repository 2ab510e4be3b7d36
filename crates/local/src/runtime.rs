//! The mesh on one machine: pilot (in this process), every pod's containers and sidecar as
//! local processes, the ingress gateway, and a kubelet's bookkeeping — Pods written to
//! pilot's store with their address, and marked ready when their ports answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bosun_api::load::{Problem, Source, load_sources};
use bosun_api::{Kind, Resource};
use bosun_pilot::store::{ResourceKey, StoreError};
use bosun_pilot::{Pilot, PilotError, PilotOptions};
use tokio::task::JoinHandle;

use crate::plan::{
    AddressPool, GATEWAY_NAME, GATEWAY_NAMESPACE, PlanError, PodPlan, Program, gateway_pod,
    gateway_service_yaml, plan,
};
use crate::supervisor::{Supervisor, UnitSpec, UnitState};

/// The sidecar's name among a pod's containers, as Istio names it.
pub const SIDECAR: &str = "istio-proxy";
/// The outbound HTTP proxy port of every sidecar (on its pod's address).
pub const HTTP_PROXY_PORT: u16 = bosun_pilot::node::DEFAULT_HTTP_PROXY_PORT;

/// How to run the mesh.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The workload and Istio YAML.
    pub sources: Vec<Source>,
    /// Where state lives: the config store, logs.
    pub state_dir: PathBuf,
    /// The `bosun` executable (sidecars and sample apps are its subcommands).
    pub bosun: PathBuf,
    /// The gateway's address.
    pub gateway_ip: Ipv4Addr,
    /// The gateway's HTTP port.
    pub gateway_port: u16,
    /// Pods get 127.`a`.`b`.x (apps 127.`a`.`b+1`.x).
    pub pod_network: (u8, u8),
    /// Pilot's ADS address.
    pub xds_address: SocketAddr,
    /// Pilot's HTTP API address.
    pub http_address: SocketAddr,
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
}

/// A pod, as `bosun status` shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PodStatus {
    /// `namespace/name`.
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
    /// Its `version` label.
    pub version: String,
    /// Its sidecar's sync state with pilot (`SYNCED`, `STALE`, …).
    pub sync: String,
}

/// The mesh, as `bosun status` shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MeshStatus {
    /// The gateway's URL.
    pub gateway_url: String,
    /// Pilot's HTTP API.
    pub pilot: String,
    /// Pilot's ADS address.
    pub xds: String,
    /// Every pod, the gateway first.
    pub pods: Vec<PodStatus>,
    /// Admin endpoints of the proxies, by pod.
    pub admin: BTreeMap<String, String>,
}

/// The running mesh.
#[derive(Debug)]
pub struct Mesh {
    pilot: Pilot,
    supervisor: Arc<Supervisor>,
    pods: Vec<PodPlan>,
    gateway: PodPlan,
    options: UpOptions,
    ready: Arc<std::sync::Mutex<BTreeSet<String>>>,
    kubelet: JoinHandle<()>,
}

fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace(['-', '.'], "_")
}

impl Mesh {
    /// Starts everything.
    pub async fn up(options: UpOptions) -> Result<Mesh, UpError> {
        let loaded = load_sources(&options.sources);
        if !loaded.problems.is_empty() {
            return Err(UpError::Invalid(loaded.problems));
        }
        let resources: Vec<Resource> = loaded.loaded.into_iter().map(|l| l.resource).collect();
        let mut addresses = AddressPool::new(options.pod_network.0, options.pod_network.1);
        let pods = plan(&resources, &mut addresses)?;
        let gateway = gateway_pod(options.gateway_ip);

        let pilot = Pilot::start(PilotOptions {
            config_dir: Some(options.state_dir.join("store")),
            xds_address: options.xds_address,
            http_address: options.http_address,
            ..PilotOptions::default()
        })
        .await?;
        let store = pilot.store().clone();
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
            let gateway_yaml = gateway_service_yaml(options.gateway_port);
            let extra = load_sources(&[Source::new("gateway", gateway_yaml)]);
            config.extend(extra.loaded.into_iter().map(|l| l.resource));
        }
        store.apply(config, None)?;
        let mut pod_docs = vec![Source::new("kubelet", gateway.pod_yaml(true))];
        pod_docs.extend(
            pods.iter()
                .map(|p| Source::new("kubelet", p.pod_yaml(false))),
        );
        store.apply_sources(&pod_docs, None)?;

        let supervisor = Arc::new(Supervisor::new());
        let mesh_env = service_env(&store.snapshot());
        for pod in &pods {
            for container in &pod.containers {
                supervisor.start(app_unit(&options, pod, container, &mesh_env));
            }
            supervisor.start(proxy_unit(&options, pod, pilot.xds_address(), false));
        }
        supervisor.start(proxy_unit(&options, &gateway, pilot.xds_address(), true));

        let ready = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let kubelet = tokio::spawn(kubelet(pilot.store().clone(), pods.clone(), ready.clone()));
        Ok(Mesh {
            pilot,
            supervisor,
            pods,
            gateway,
            options,
            ready,
            kubelet,
        })
    }

    /// Pilot.
    pub fn pilot(&self) -> &Pilot {
        &self.pilot
    }

    /// The gateway's HTTP address.
    pub fn gateway_address(&self) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(self.options.gateway_ip),
            self.options.gateway_port,
        )
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
        let mut admin = BTreeMap::new();
        for pod in std::iter::once(&self.gateway).chain(self.pods.iter()) {
            let mut names: Vec<String> = pod
                .containers
                .iter()
                .map(|c| format!("{}/{}", pod.name, c.name))
                .collect();
            names.push(format!("{}/{SIDECAR}", pod.name));
            let statuses: Vec<_> = names.iter().filter_map(|n| units.get(n)).collect();
            let running = statuses
                .iter()
                .filter(|s| matches!(s.state, UnitState::Running(_)))
                .count();
            let restarts = statuses.iter().map(|s| s.restarts).sum();
            let proxy_name = format!("{}.{}", pod.name, pod.namespace);
            let connection = sync.iter().find(|c| c.node.name() == proxy_name);
            let sync_state = connection.map_or("NOT CONNECTED".to_owned(), |c| {
                let states: BTreeSet<&str> = bosun_pilot::translate::PUSH_ORDER
                    .iter()
                    .map(|t| c.state(t).as_str())
                    .filter(|s| *s != "NOT SENT")
                    .collect();
                states
                    .into_iter()
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
            pods.push(PodStatus {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ready: format!("{ready_count}/{}", names.len()),
                status: status.to_owned(),
                restarts,
                ip: pod.ip.to_string(),
                version: pod.labels.get("version").cloned().unwrap_or_default(),
                sync: sync_state,
            });
            admin.insert(proxy_name, format!("http://{}:15000", pod.ip));
        }
        MeshStatus {
            gateway_url: format!("http://{}", self.gateway_address()),
            pilot: format!("http://{}", self.pilot.http_address()),
            xds: self.pilot.xds_address().to_string(),
            pods,
            admin,
        }
    }

    /// Whether every pod runs, is ready and has its configuration.
    pub fn is_ready(&self) -> bool {
        self.status()
            .pods
            .iter()
            .all(|p| p.status == "Running" && p.sync == "SYNCED")
    }

    /// Stops everything in order: the gateway, the sidecars, the apps, pilot.
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
    }
}

/// `<SERVICE>_SERVICE_HOST` and `_PORT` for every Service, by namespace (as Kubernetes sets
/// them; the host is the Service's name, which the sidecar resolves).
fn service_env(snapshot: &bosun_pilot::store::Snapshot) -> BTreeMap<String, Vec<(String, String)>> {
    let mut env: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (key, stored) in snapshot.of_kind(Kind::Service) {
        let Resource::Service(service) = &*stored.resource else {
            continue;
        };
        let Some(port) = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
        else {
            continue;
        };
        let prefix = env_name(&key.name);
        let list = env.entry(key.namespace.clone()).or_default();
        list.push((format!("{prefix}_SERVICE_HOST"), key.name.clone()));
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

fn app_unit(
    options: &UpOptions,
    pod: &PodPlan,
    container: &crate::plan::ContainerPlan,
    mesh_env: &BTreeMap<String, Vec<(String, String)>>,
) -> UnitSpec {
    let proxy = format!("http://{}:{HTTP_PROXY_PORT}", pod.ip);
    let mut env: Vec<(String, String)> = mesh_env.get(&pod.namespace).cloned().unwrap_or_default();
    env.extend([
        ("HTTP_PROXY".to_owned(), proxy.clone()),
        ("http_proxy".to_owned(), proxy),
        ("HOSTNAME".to_owned(), pod.name.clone()),
        ("POD_NAME".to_owned(), pod.name.clone()),
        ("POD_NAMESPACE".to_owned(), pod.namespace.clone()),
        ("INSTANCE_IP".to_owned(), pod.app_ip.to_string()),
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
    UnitSpec {
        name: format!("{}/{}", pod.name, container.name),
        program,
        args,
        env,
        log: log_path(options, pod, &container.name),
    }
}

fn proxy_unit(options: &UpOptions, pod: &PodPlan, xds: SocketAddr, router: bool) -> UnitSpec {
    let mut args = vec![
        "proxy".to_owned(),
        if router { "router" } else { "sidecar" }.to_owned(),
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
        format!("{}:15000", pod.ip),
        "--capture".to_owned(),
        "none".to_owned(),
        "--app-address".to_owned(),
        pod.app_ip.to_string(),
    ];
    for (key, value) in &pod.labels {
        args.push("--label".to_owned());
        args.push(format!("{key}={value}"));
    }
    UnitSpec {
        name: format!("{}/{SIDECAR}", pod.name),
        program: options.bosun.clone(),
        args,
        env: Vec::new(),
        log: log_path(options, pod, SIDECAR),
    }
}

/// A kubelet's readiness probes: a pod is ready when each of its containers' ports accepts a
/// connection; the Pod in the store follows.
async fn kubelet(
    store: bosun_pilot::store::Store,
    pods: Vec<PodPlan>,
    ready: Arc<std::sync::Mutex<BTreeSet<String>>>,
) {
    let mut known: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        for pod in &pods {
            let mut is_ready = true;
            for port in pod.containers.iter().flat_map(|c| c.ports.iter()) {
                let address = SocketAddr::from((pod.app_ip, *port));
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
