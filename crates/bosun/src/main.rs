//! `bosun`: the command-line binary of the Bosun service mesh (its proxy alone is also built as
//! `bosun-proxy`).

mod cmd;
mod errors;
mod logging;
mod signals;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bosun: a service mesh that speaks Istio's API.
#[derive(Debug, Parser)]
#[command(name = "bosun", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Istio and Kubernetes YAML: one line per problem, exit 1 if any.
    Validate(cmd::validate::Args),
    /// Find mistakes across resources, as `istioctl analyze` does.
    Analyze(cmd::analyze::Args),
    /// Run the proxy from an Envoy v3 bootstrap (`-c FILE`), as Envoy runs.
    Proxy(cmd::proxy::Args),
    /// Run the control plane: config store, service registry, xDS server.
    Pilot(cmd::pilot::Args),
    /// Create or update resources in pilot's store (`kubectl apply`).
    Apply(cmd::ctl::ApplyArgs),
    /// Delete resources from pilot's store (`kubectl delete`).
    Delete(cmd::ctl::DeleteArgs),
    /// Show resources in pilot's store (`kubectl get`).
    Get(cmd::ctl::GetArgs),
    /// Each connected proxy and whether it has what pilot sent (`istioctl proxy-status`).
    #[command(name = "proxy-status", alias = "ps")]
    ProxyStatus(cmd::proxy_status::StatusArgs),
    /// What pilot sent a proxy: clusters, listeners, routes, endpoints (`istioctl proxy-config`).
    #[command(name = "proxy-config", alias = "pc")]
    ProxyConfig(cmd::proxy_status::ConfigArgs),
    /// Run workloads and Istio YAML as a mesh on this machine: pilot, an ingress gateway, and
    /// every pod as local processes with its sidecar.
    Up(cmd::up::UpArgs),
    /// Bookinfo behind an ingress gateway on localhost, with what to try next.
    Demo(cmd::up::DemoArgs),
    /// The pods of the mesh `bosun up` runs.
    Status(cmd::up::StatusArgs),
    /// Stop the mesh `bosun up -d` runs.
    Down(cmd::up::StateArgs),
    /// Run a command in a pod of the mesh: its network (and sidecar), as `kubectl exec`.
    Exec(cmd::up::ExecArgs),
    /// Run a built-in sample application (Bookinfo, httpbin, helloworld, tcp-echo, curl).
    #[command(subcommand)]
    Sample(bosun_samples::cli::Sample),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Sample(sample) => cmd::sample::run(sample),
        Command::Up(args) => cmd::up::up(args),
        Command::Demo(args) => cmd::up::demo(args),
        Command::Status(args) => cmd::up::status(args),
        Command::Down(args) => cmd::up::down(args),
        Command::Exec(args) => cmd::up::exec(args),
        Command::Pilot(args) => cmd::pilot::run(args),
        Command::Apply(args) => cmd::ctl::apply(args),
        Command::Delete(args) => cmd::ctl::delete(args),
        Command::Get(args) => cmd::ctl::get(args),
        Command::ProxyStatus(args) => cmd::proxy_status::status(args),
        Command::ProxyConfig(args) => cmd::proxy_status::config(args),
    };
    errors::exit_code(result)
}
