//! `bosun-proxy`: bosun's proxy alone, as `envoy` is to `istioctl` and `pilot-discovery`.
//! The same code as `bosun proxy` with the same flags, in a binary without the control plane,
//! the local runtime and the CLI: what a proxy process maps is then mostly what it runs.

#[path = "../errors.rs"]
mod errors;
#[path = "../logging.rs"]
mod logging;
#[path = "../cmd/proxy.rs"]
mod proxy;
#[path = "../signals.rs"]
mod signals;

use std::process::ExitCode;

use clap::Parser;

/// Bosun's proxy: runs an Envoy v3 bootstrap (`-c FILE`), or a mesh proxy with a generated one
/// (`sidecar` or `router`).
#[derive(Debug, Parser)]
#[command(name = "bosun-proxy", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: proxy::Args,
}

fn main() -> ExitCode {
    errors::exit_code(proxy::run(Cli::parse().args))
}
