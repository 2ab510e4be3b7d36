//! `bosun up`, `bosun demo`, `bosun status`, `bosun down` and `bosun exec`: the whole mesh on
//! one machine, run by the local runtime (`bosun-local`).

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bosun_api::load::{Source, read_sources};
use bosun_local::state::{self, UpRecord};
use bosun_local::{CaptureMode, Mesh, MeshStatus, UpOptions};

/// How `bosun up` captures traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CaptureFlag {
    /// Network namespaces and iptables when run as root, loopback otherwise.
    Auto,
    /// Each pod in its own network namespace, traffic redirected by iptables (root).
    Netns,
    /// Each pod on its own loopback address, apps using their sidecar as HTTP proxy.
    Loopback,
}

/// How to run the mesh (shared by `up` and `demo`).
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The ingress gateway's port [default: 8080, or a free port when 8080 is taken].
    #[arg(long = "port")]
    port: Option<u16>,
    /// The address the ingress gateway listens on.
    #[arg(long = "address", default_value = "127.0.0.1")]
    address: Ipv4Addr,
    /// How the pods' traffic reaches their sidecars.
    #[arg(long = "capture", value_enum, default_value = "auto")]
    capture: CaptureFlag,
    /// Run in the background; `bosun status` shows it and `bosun down` stops it.
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// Pilot's HTTP API [default: 127.0.0.1:15014, or a free port when taken].
    #[arg(long = "pilot-address")]
    pilot_address: Option<SocketAddr>,
    /// Pilot's xDS address [default: port 15010, or a free port when taken].
    #[arg(long = "xds-address")]
    xds_address: Option<SocketAddr>,
    /// The gateway's admin endpoint [default: port 15000 of --address, or a free port].
    #[arg(long = "gateway-admin-address")]
    gateway_admin_address: Option<SocketAddr>,
    /// The /24 the pods get addresses in [default: 127.10.0.0 on loopback, 10.244.0.0 with
    /// namespaces].
    #[arg(long = "pod-network", value_name = "ADDRESS")]
    pod_network: Option<Ipv4Addr>,
    /// Refuse destinations outside the registry (outboundTrafficPolicy REGISTRY_ONLY).
    #[arg(long = "registry-only")]
    registry_only: bool,
    /// Where the mesh keeps its config store, logs and records.
    #[arg(long = "state-dir", env = "BOSUN_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log level of the runtime and pilot (trace, debug, info, warning, error).
    #[arg(short = 'l', long = "log-level", default_value = "warning")]
    log_level: String,
}

/// Arguments of `bosun up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Kubernetes workload YAML (Namespace, Service, ServiceAccount, Deployment, Pod) and
    /// Istio YAML: files or directories.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Arguments of `bosun demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Istio's `samples` directory [default: shared/istio/samples beside this repository, or
    /// under BOSUN_SHARED_DIR].
    #[arg(long = "samples", value_name = "DIR")]
    samples: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Where to find the running mesh.
#[derive(Debug, clap::Args)]
pub(crate) struct StateArgs {
    /// The mesh's state directory.
    #[arg(long = "state-dir", env = "BOSUN_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl StateArgs {
    fn dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(state::default_state_dir)
    }
}

/// Arguments of `bosun status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = ["table", "json"], default_value = "table")]
    output: String,
}

/// Arguments of `bosun exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// The pod (`NAME` or `deploy/NAME`).
    pod: String,
    /// The pod's namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
    #[command(flatten)]
    state: StateArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The Bookinfo files `bosun demo` starts with, under Istio's `samples`.
const DEMO_FILES: [&str; 3] = [
    "bookinfo/platform/kube/bookinfo.yaml",
    "bookinfo/networking/bookinfo-gateway.yaml",
    "bookinfo/networking/destination-rule-all.yaml",
];

pub(crate) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let sources = read_sources(&args.files)?;
    run_mesh(sources, args.run, None)
}

pub(crate) fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let samples = match args.samples {
        Some(dir) => dir,
        None => find_samples().context(
            "Istio's samples were not found (shared/istio/samples beside the repository); \
             give --samples DIR or set BOSUN_SHARED_DIR",
        )?,
    };
    let files: Vec<PathBuf> = DEMO_FILES.iter().map(|f| samples.join(f)).collect();
    let sources = read_sources(&files)?;
    run_mesh(sources, args.run, Some(samples))
}

/// Istio's `samples` directory: under `BOSUN_SHARED_DIR`, else `shared/istio/samples` beside
/// the working directory, the executable or the source tree (or any directory above).
fn find_samples() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BOSUN_SHARED_DIR") {
        let dir = PathBuf::from(dir).join("istio/samples");
        return dir.is_dir().then_some(dir);
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    starts.into_iter().flatten().find_map(|start| {
        start
            .ancestors()
            .map(|a| a.join("shared/istio/samples"))
            .find(|c| c.join("bookinfo").is_dir())
    })
}

/// `preferred` when it can be bound, else a free port on the same address.
fn free_or_preferred(preferred: SocketAddr) -> anyhow::Result<SocketAddr> {
    if std::net::TcpListener::bind(preferred).is_ok() {
        return Ok(preferred);
    }
    let any = std::net::TcpListener::bind(SocketAddr::new(preferred.ip(), 0))
        .with_context(|| format!("no free port on {}", preferred.ip()))?;
    Ok(any.local_addr()?)
}

fn capture_mode(flag: CaptureFlag) -> anyhow::Result<CaptureMode> {
    let root = bosun_local::netns::available();
    Ok(match flag {
        CaptureFlag::Auto if root => CaptureMode::Netns,
        CaptureFlag::Auto | CaptureFlag::Loopback => CaptureMode::Loopback,
        CaptureFlag::Netns => {
            anyhow::ensure!(
                root,
                "--capture netns needs root (network namespaces and iptables); use --capture loopback"
            );
            CaptureMode::Netns
        }
    })
}

/// The executables apps and sidecars run as: `bosun`, and `bosun-proxy` when it was built
/// beside it (a proxy process then maps only the data plane). In namespaces the sidecar runs as
/// the proxy's uid, which must be able to reach it: when these are in a private directory (such
/// as root's home), copies in /run/bosun are used.
fn executables(capture: CaptureMode) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    let exe = std::env::current_exe().context("finding the bosun executable")?;
    let proxy = exe.with_file_name("bosun-proxy");
    let proxy = proxy.is_file().then_some(proxy);
    if capture == CaptureMode::Loopback {
        return Ok((exe, proxy));
    }
    let bosun = reachable_copy(exe)?;
    let proxy = proxy.map(reachable_copy).transpose()?;
    Ok((bosun, proxy))
}

/// `exe`, or a hard link to it (a copy across file systems) in /run/bosun when other users
/// cannot reach it. A link takes no space: a debug build is hundreds of megabytes, and the
/// mesh keeps running from it after `bosun up -d` returns.
fn reachable_copy(exe: PathBuf) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if reachable_by_others(&exe) {
        return Ok(exe);
    }
    let dir = Path::new("/run/bosun");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} readable", dir.display()))?;
    let name = exe
        .file_name()
        .map_or("bosun".into(), |n| n.to_string_lossy());
    let copy = dir.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&copy);
    if std::fs::hard_link(&exe, &copy).is_err() {
        std::fs::copy(&exe, &copy)
            .with_context(|| format!("copying {} to {}", exe.display(), copy.display()))?;
    }
    let mode = std::fs::metadata(&copy)
        .with_context(|| format!("reading {}", copy.display()))?
        .permissions()
        .mode();
    if mode & 0o005 != 0o005 {
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(mode | 0o755))
            .with_context(|| format!("making {} readable", copy.display()))?;
    }
    Ok(copy)
}

fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode());
    mode(path) & 0o005 == 0o005
        && path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .all(|a| mode(a) & 0o001 != 0)
}

fn options(sources: Vec<Source>, run: &RunArgs, dir: &Path) -> anyhow::Result<UpOptions> {
    let capture = capture_mode(run.capture)?;
    let (bosun, proxy) = executables(capture)?;
    let mut options = UpOptions::new(sources, dir.to_owned(), bosun, capture);
    options.proxy = proxy;
    let address = IpAddr::V4(run.address);
    options.gateway = match run.port {
        Some(port) => SocketAddr::new(address, port),
        None => free_or_preferred(SocketAddr::new(address, 8080))?,
    };
    options.gateway_admin = match run.gateway_admin_address {
        Some(admin) => admin,
        None => free_or_preferred(SocketAddr::new(address, bosun_local::runtime::ADMIN_PORT))?,
    };
    options.http_address = match run.pilot_address {
        Some(api) => api,
        None => free_or_preferred(options.http_address)?,
    };
    options.xds_address = match (run.xds_address, capture) {
        (Some(xds), _) => xds,
        // In namespaces pilot listens on the bridge, which does not exist yet: its port
        // 15010 is free there.
        (None, CaptureMode::Netns) => options.xds_address,
        (None, CaptureMode::Loopback) => free_or_preferred(options.xds_address)?,
    };
    if let Some(network) = run.pod_network {
        options.pod_network = network;
    }
    options.mesh.allow_any = !run.registry_only;
    Ok(options)
}

/// Runs `bosun up` (or `demo`, when `samples` is given) in the foreground, or starts it in
/// the background and waits until it is ready.
fn run_mesh(
    sources: Vec<Source>,
    run: RunArgs,
    samples: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let loaded = bosun_api::load::load_sources(&sources);
    if !loaded.problems.is_empty() {
        for problem in &loaded.problems {
            eprintln!("{problem}");
        }
        return Ok(ExitCode::FAILURE);
    }
    crate::cmd::report_skipped(&loaded);
    let dir = run
        .state_dir
        .clone()
        .unwrap_or_else(state::default_state_dir);
    if let Some(running) = state::read_up(&dir) {
        anyhow::bail!(
            "a mesh is already running (pid {}, gateway {}): `bosun down` stops it",
            running.pid,
            running.gateway_url
        );
    }
    if run.detach {
        return start_detached(&dir, samples.as_deref());
    }
    let _set_level = crate::logging::init(&run.log_level)?;
    let options = options(sources, &run, &dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(foreground(options, dir, samples))
}

/// Starts this same command without `-d` in its own session, and returns once it is ready.
fn start_detached(dir: &Path, samples: Option<&Path>) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join("up.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "-d" && a != "--detach")
        .collect();
    use std::os::unix::process::CommandExt as _;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(&args)
        .env("BOSUN_STATE_DIR", dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the mesh in the background")?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            eprint!("{log}");
            anyhow::bail!(
                "the mesh did not start ({status}); its log is {}",
                log_path.display()
            );
        }
        if let Some(record) = state::read_up(dir).filter(|r| r.ready && r.pid == child.id()) {
            let status = state::read_status(dir);
            print!("{}", summary(&record, status.as_ref(), samples));
            println!(
                "running in the background (pid {}); `bosun status` shows it, `bosun down` stops it",
                record.pid
            );
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the mesh is not ready after 3 minutes; see {} and `bosun status`",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn foreground(
    options: UpOptions,
    dir: PathBuf,
    samples: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mesh = Mesh::up(options).await?;
    let mut record = UpRecord {
        pid: std::process::id(),
        api: mesh.pilot().http_address().to_string(),
        xds: mesh.pilot().xds_address().to_string(),
        gateway_url: format!("http://{}", mesh.gateway_address()),
        ready: false,
    };
    state::write_up(&dir, &record).with_context(|| format!("writing to {}", dir.display()))?;
    let live = std::io::stdout().is_terminal();
    let mut changes = mesh.subscribe();
    let mut shown: Option<MeshStatus> = None;
    let mut announced = false;
    let terminated = crate::signals::terminated();
    tokio::pin!(terminated);
    loop {
        let status = mesh.status();
        let changed = shown.as_ref().is_none_or(|s| !same_status(s, &status));
        if changed {
            let _ = state::write_status(&dir, &status);
            if live {
                print!(
                    "\x1b[H\x1b[2J{}",
                    summary(&record, Some(&status), samples.as_deref())
                );
                if !status.is_ready() {
                    println!("starting… ({}s)", started.elapsed().as_secs());
                } else {
                    println!("Ctrl-C stops the mesh");
                }
            } else {
                for line in transitions(shown.as_ref(), &status) {
                    println!("{line}");
                }
            }
            let _ = std::io::stdout().flush();
        }
        if !announced && status.is_ready() && gateway_answers(&mesh, samples.is_some()).await {
            announced = true;
            record.ready = true;
            state::write_up(&dir, &record)
                .with_context(|| format!("writing to {}", dir.display()))?;
            if !live {
                print!("{}", summary(&record, Some(&status), samples.as_deref()));
                println!(
                    "ready in {:.1}s; Ctrl-C stops the mesh",
                    started.elapsed().as_secs_f64()
                );
            } else {
                // Redraw with the ready banner.
                shown = None;
                continue;
            }
        }
        shown = Some(status);
        tokio::select! {
            _ = &mut terminated => break,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    println!("stopping the mesh…");
    mesh.down().await;
    state::remove_up(&dir);
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// For the demo: whether the product page answers through the gateway.
async fn gateway_answers(mesh: &Mesh, demo: bool) -> bool {
    if !demo {
        return true;
    }
    let url = format!("http://{}/productpage", mesh.gateway_address());
    let client = bosun_samples::http_client::HttpClient::direct();
    match client
        .get(&url, http::HeaderMap::new(), Duration::from_secs(5))
        .await
    {
        Ok(response) => {
            response.status() == 200
                && String::from_utf8_lossy(response.body()).contains("Simple Bookstore App")
        }
        Err(_) => false,
    }
}

fn same_status(a: &MeshStatus, b: &MeshStatus) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// One line per pod whose state changed, for a log that is not a terminal.
fn transitions(before: Option<&MeshStatus>, now: &MeshStatus) -> Vec<String> {
    now.pods
        .iter()
        .filter(|pod| {
            let earlier = before.and_then(|b| {
                b.pods
                    .iter()
                    .find(|p| p.name == pod.name && p.namespace == pod.namespace)
            });
            earlier.is_none_or(|e| {
                (&e.status, &e.ready, &e.sync, e.restarts)
                    != (&pod.status, &pod.ready, &pod.sync, pod.restarts)
            })
        })
        .map(|pod| {
            format!(
                "{}/{}: {} {} (sidecar {}, restarts {})",
                pod.namespace, pod.name, pod.status, pod.ready, pod.sync, pod.restarts
            )
        })
        .collect()
}

/// The URLs, the pods and (for the demo) what to try next.
fn summary(record: &UpRecord, status: Option<&MeshStatus>, samples: Option<&Path>) -> String {
    let mut out = String::new();
    let page = if samples.is_some() {
        "/productpage"
    } else {
        "/"
    };
    out.push_str(&format!("gateway   {}{page}\n", record.gateway_url));
    out.push_str(&format!(
        "pilot     http://{}   (bosun apply|get|delete|proxy-status|proxy-config talk to it)\n",
        record.api
    ));
    if let Some(status) = status {
        out.push_str(&format!("capture   {}\n\n", status.capture.as_str()));
        out.push_str(&pods_table(status));
    }
    if let Some(samples) = samples {
        let file = |name: &str| {
            samples
                .join("bookinfo/networking")
                .join(name)
                .display()
                .to_string()
        };
        out.push_str(&format!(
            "\nTry next (reload {}/productpage after each):\n  \
             bosun apply -f {}\n      every request to reviews v1: no stars\n  \
             bosun apply -f {}\n      sign in as \"jason\": black stars (reviews v2); everyone else v1\n  \
             bosun apply -f {}\n      a 7 s delay to ratings for jason: productpage gives up, \"reviews unavailable\"\n\n",
            record.gateway_url,
            file("virtual-service-all-v1.yaml"),
            file("virtual-service-reviews-test-v2.yaml"),
            file("virtual-service-ratings-test-delay.yaml"),
        ));
    }
    out
}

fn pods_table(status: &MeshStatus) -> String {
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "IP",
            "VERSION",
            "SIDECAR",
            "ADMIN",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for pod in &status.pods {
        rows.push(vec![
            pod.namespace.clone(),
            pod.name.clone(),
            pod.ready.clone(),
            pod.status.clone(),
            pod.restarts.to_string(),
            pod.ip.clone(),
            if pod.version.is_empty() {
                "-".to_owned()
            } else {
                pod.version.clone()
            },
            pod.sync.clone(),
            pod.admin.clone(),
        ]);
    }
    crate::cmd::format_table(&rows)
}

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = args.state.dir();
    let Some(record) = state::read_up(&dir) else {
        eprintln!("no mesh is running (state directory {})", dir.display());
        return Ok(ExitCode::FAILURE);
    };
    let status = state::read_status(&dir);
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"mesh": record, "status": status}))?
        );
    } else {
        print!("{}", summary(&record, status.as_ref(), None));
        if !record.ready {
            println!("starting…");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn down(args: StateArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir();
    let Some(record) = state::read_up(&dir) else {
        println!("no mesh is running");
        return Ok(ExitCode::SUCCESS);
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(record.pid)?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("stopping the mesh (pid {})", record.pid))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while state::read_up(&dir).is_some() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the mesh (pid {}) has not stopped after a minute",
            record.pid
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The record goes before the process ends: wait for it too.
    while running(record.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Whether a process runs: it exists and is not a zombie (a detached mesh's parent is gone,
/// and whoever adopted it may be slow to reap it).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

pub(crate) fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let dir = args.state.dir();
    let status = state::read_up(&dir)
        .and_then(|_| state::read_status(&dir))
        .context("no mesh is running")?;
    let pod = status
        .find_pod(&args.pod, &args.namespace)
        .with_context(|| {
            format!(
                "pod {:?} not found in namespace {:?}",
                args.pod, args.namespace
            )
        })?;
    let (program, rest) = args.command.split_first().context("no command given")?;
    let mut command = match &pod.netns {
        Some(netns) => {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", netns, program]).args(rest);
            command
        }
        None => {
            let mut command = std::process::Command::new(program);
            command.args(rest);
            if let Some(proxy) = &pod.http_proxy {
                command.env("HTTP_PROXY", proxy).env("http_proxy", proxy);
            }
            command
        }
    };
    command
        .env("POD_NAME", &pod.name)
        .env("POD_NAMESPACE", &pod.namespace)
        .env("INSTANCE_IP", &pod.ip);
    let exit = command
        .status()
        .with_context(|| format!("running {program}"))?;
    Ok(exit
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .map_or(ExitCode::FAILURE, ExitCode::from))
}
