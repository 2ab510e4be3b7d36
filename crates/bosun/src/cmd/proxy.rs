//! `bosun proxy -c bootstrap.yaml`: the data plane, started from an Envoy v3 bootstrap;
//! `bosun proxy sidecar|router --pilot ADDR`: started as a member of the mesh, with the
//! bootstrap pilot-agent would write.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bosun_pilot::bootstrap::{BootstrapOptions, bootstrap_json};
use bosun_pilot::node::ProxyType;
use bosun_proxy::bootstrap;

/// The role of a mesh proxy.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Role {
    /// Beside one workload.
    Sidecar,
    /// A gateway.
    Router,
}

/// How traffic reaches a mesh proxy.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CaptureMode {
    /// Redirected by iptables.
    Iptables,
    /// Not redirected: explicit addresses.
    None,
}

/// Who a mesh proxy is (as pilot-agent reads it from the pod).
#[derive(Debug, clap::Args)]
struct Identity {
    /// Pilot's xDS address.
    #[arg(
        long = "pilot",
        env = "BOSUN_PILOT_XDS",
        default_value = "127.0.0.1:15010"
    )]
    pilot: String,
    /// The pod's name.
    #[arg(long = "pod-name", env = "POD_NAME")]
    pod_name: Option<String>,
    /// The pod's namespace.
    #[arg(long = "namespace", env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// The pod's address.
    #[arg(long = "ip", env = "INSTANCE_IP", default_value = "127.0.0.1")]
    ip: IpAddr,
    /// A label of the pod (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The pod's service account.
    #[arg(
        long = "service-account",
        env = "SERVICE_ACCOUNT",
        default_value = "default"
    )]
    service_account: String,
    /// The admin endpoint.
    #[arg(long = "admin-address", default_value = "127.0.0.1:15000")]
    admin_address: SocketAddr,
    /// Use delta xDS.
    #[arg(long = "delta")]
    delta: bool,
    /// How the workload's traffic reaches the proxy: `iptables` (redirected to 15001/15006,
    /// as istio-init sets up) or `none` (outbound HTTP through `HTTP_PROXY` to
    /// `--http-proxy-port`, inbound on the pod's own address, forwarded to
    /// `--app-address`; routers listen on the pod's address).
    #[arg(long = "capture", value_enum, default_value = "iptables")]
    capture: CaptureMode,
    /// The outbound HTTP proxy port on the pod's address (capture `none`).
    #[arg(long = "http-proxy-port", default_value_t = bosun_pilot::node::DEFAULT_HTTP_PROXY_PORT)]
    http_proxy_port: u16,
    /// Where the application listens (capture `none`).
    #[arg(long = "app-address", default_value = "127.0.0.1")]
    app_address: IpAddr,
    /// Run a DNS proxy on this UDP address that answers the mesh's host names from pilot's
    /// name table (capture `iptables` redirects the workload's DNS to it: 127.0.0.1:15053).
    #[arg(long = "dns-address", value_name = "ADDRESS")]
    dns_address: Option<SocketAddr>,
    /// Where the DNS proxy forwards names that are not the mesh's [default: none; they are
    /// answered NXDOMAIN].
    #[arg(
        long = "dns-upstream",
        value_name = "ADDRESS",
        requires = "dns_address"
    )]
    dns_upstream: Option<SocketAddr>,
    /// Print the bootstrap (JSON, usable with `envoy -c`) and exit.
    #[arg(long = "print-bootstrap")]
    print_bootstrap: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

impl Identity {
    fn bootstrap_options(&self, role: Role) -> anyhow::Result<BootstrapOptions> {
        let pilot = resolve(&self.pilot, 15010)?;
        let labels: BTreeMap<String, String> = self.labels.iter().cloned().collect();
        let proxy_type = match role {
            Role::Sidecar => ProxyType::Sidecar,
            Role::Router => ProxyType::Router,
        };
        let pod_name = self.pod_name.clone().unwrap_or_else(|| {
            let app = labels.get("app").map_or("proxy", String::as_str);
            format!("{app}-{}", std::process::id())
        });
        Ok(BootstrapOptions {
            proxy_type,
            pod_name,
            namespace: self.namespace.clone(),
            ip: self.ip,
            labels,
            service_account: self.service_account.clone(),
            pilot,
            admin: self.admin_address,
            delta: self.delta,
            no_capture: match self.capture {
                CaptureMode::Iptables => None,
                CaptureMode::None => Some((self.http_proxy_port, self.app_address)),
            },
            dns_capture: self.dns_address.is_some(),
        })
    }
}

/// `host:port` (port defaulted) to one socket address.
fn resolve(address: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let with_port = if address
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        address.to_owned()
    } else {
        format!("{address}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {address}"))?
        .next()
        .with_context(|| format!("{address} has no address"))
}

/// Arguments of `bosun proxy` (Envoy's names where Envoy has the same flag).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run as a mesh proxy with a generated bootstrap (`sidecar` or `router`).
    #[arg(value_enum)]
    role: Option<Role>,
    #[command(flatten)]
    identity: Identity,
    /// Envoy v3 bootstrap file (YAML or JSON).
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    config_path: Option<PathBuf>,
    /// Bootstrap as inline YAML, merged over the file.
    #[arg(long = "config-yaml", value_name = "YAML")]
    config_yaml: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// `serve`, or `validate` to check the configuration and exit.
    #[arg(long, default_value = "serve", value_parser = ["serve", "validate"])]
    mode: String,
    /// Log level (trace, debug, info, warning, error, critical, off).
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Write the admin endpoint's bound address to this file (useful with port 0).
    #[arg(long = "admin-address-path", value_name = "FILE")]
    admin_address_path: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The descriptors stay decoded while the configuration is read and compiled, then go.
    let descriptors = bosun_xds::PoolGuard::new();
    let bootstrap = match args.role {
        Some(role) => {
            anyhow::ensure!(
                args.config_path.is_none() && args.config_yaml.is_none(),
                "a mesh proxy's bootstrap is generated: give no -c or --config-yaml"
            );
            let generated =
                bosun_pilot::bootstrap::bootstrap(&args.identity.bootstrap_options(role)?);
            if args.identity.print_bootstrap {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&bootstrap_json(&generated)?)?
                );
                return Ok(ExitCode::SUCCESS);
            }
            generated
        }
        None => bootstrap::load(args.config_path.as_deref(), args.config_yaml.as_deref())?,
    };
    if args.mode == "validate" {
        println!(
            "configuration '{}' OK",
            args.config_path
                .as_deref()
                .map_or("--config-yaml".into(), |p| p.display().to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let set_level = crate::logging::init(&args.log_level)?;
    let runtime = if args.concurrency <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.concurrency)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    let admin_address_path = args.admin_address_path.clone();
    let dns = args
        .role
        .and(args.identity.dns_address)
        .map(|address| (address, args.identity.dns_upstream));
    runtime.block_on(async move {
        // Bound before the proxy starts: a DNS address that cannot be bound is an error at once.
        let dns_socket = match dns {
            Some((address, upstream)) => Some((
                tokio::net::UdpSocket::bind(address)
                    .await
                    .with_context(|| format!("DNS proxy on {address}"))?,
                upstream,
            )),
            None => None,
        };
        let started = bootstrap::start(bootstrap).await?;
        drop(descriptors);
        let proxy = started.proxy;
        if let Some((socket, upstream)) = dns_socket {
            tracing::info!(address = ?socket.local_addr().ok(), "DNS proxy listening");
            tokio::spawn(bosun_proxy::dns::serve(
                socket,
                proxy.names.clone(),
                upstream,
            ));
        }
        *proxy
            .set_log_level
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(set_level);
        if let Some(admin) = started.admin {
            tracing::info!(%admin, "admin listening");
            if let Some(path) = &admin_address_path {
                std::fs::write(path, admin.to_string())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        tokio::select! {
            _ = proxy.wait_for_shutdown() => {}
            _ = crate::signals::terminated() => {}
        }
        proxy.request_shutdown();
        proxy.stop();
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
