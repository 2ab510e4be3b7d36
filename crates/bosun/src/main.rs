//! `bosun`: the one binary of the Bosun service mesh.

mod cmd;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
