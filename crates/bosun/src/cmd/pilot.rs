//! `bosun pilot`: the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bosun_pilot::context::MeshConfig;
use bosun_pilot::{Pilot, PilotOptions};

/// Arguments of `bosun pilot`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of the config store (one file per resource); created if missing.
    #[arg(long = "config-dir", value_name = "DIR", env = "BOSUN_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Address of the ADS (xDS gRPC) server.
    #[arg(long = "xds-address", default_value = "127.0.0.1:15010")]
    xds_address: SocketAddr,
    /// Address of the HTTP API (apply, get, delete, debug endpoints).
    #[arg(long = "http-address", default_value = "127.0.0.1:15014")]
    http_address: SocketAddr,
    /// Refuse destinations outside the registry (outboundTrafficPolicy REGISTRY_ONLY).
    #[arg(long = "registry-only")]
    registry_only: bool,
    /// Namespace whose Sidecar and DestinationRules apply mesh-wide.
    #[arg(long = "root-namespace", default_value = "istio-system")]
    root_namespace: String,
    /// Give Services stored without a `clusterIP` one from this range, as the Kubernetes API
    /// server's flag of the same name does.
    #[arg(long = "service-cluster-ip-range", value_name = "CIDR")]
    service_cluster_ip_range: Option<ipnet::Ipv4Net>,
    /// Log level (trace, debug, info, warning, error).
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _set_level = crate::logging::init(&args.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let options = PilotOptions {
            config_dir: args.config_dir,
            xds_address: args.xds_address,
            http_address: args.http_address,
            mesh: MeshConfig {
                root_namespace: args.root_namespace,
                allow_any: !args.registry_only,
            },
            cluster_ip_range: args.service_cluster_ip_range,
            ..PilotOptions::default()
        };
        let pilot = Pilot::start(options).await?;
        println!(
            "pilot: xDS on {}, API on http://{}",
            pilot.xds_address(),
            pilot.http_address()
        );
        crate::signals::terminated().await;
        pilot.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
