//! `bosun proxy -c bootstrap.yaml`: the data plane, started from an Envoy v3 bootstrap.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bosun_proxy::bootstrap;

/// Arguments of `bosun proxy` (Envoy's names where Envoy has the same flag).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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
    let bootstrap = bootstrap::load(args.config_path.as_deref(), args.config_yaml.as_deref())?;
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
    runtime.block_on(async move {
        let started = bootstrap::start(bootstrap).await?;
        drop(descriptors);
        let proxy = started.proxy;
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
