//! `bosun analyze -f PATH...`

use std::path::PathBuf;
use std::process::ExitCode;

use bosun_api::analyze::{Level, analyze};

/// istioctl's exit code when analysis finds issues at or above the failure threshold.
const ISSUES_FOUND: u8 = 79;

/// Arguments of `bosun analyze`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories (recursive: .yaml, .yml, .json) to analyse together; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// The lowest level that makes the command fail (exit code 79).
    #[arg(long, value_enum, default_value = "error")]
    failure_threshold: Threshold,
    /// The lowest level printed.
    #[arg(long, value_enum, default_value = "info")]
    output_threshold: Threshold,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Threshold {
    Info,
    Warning,
    Error,
}

impl From<Threshold> for Level {
    fn from(t: Threshold) -> Level {
        match t {
            Threshold::Info => Level::Info,
            Threshold::Warning => Level::Warning,
            Threshold::Error => Level::Error,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let result = super::load_files(&args.files)?;
    super::report_skipped(&result);
    for problem in &result.problems {
        println!("{problem}");
    }
    let messages = analyze(&result.loaded);
    let shown: Vec<_> = messages
        .iter()
        .filter(|m| m.message_type.level >= args.output_threshold.into())
        .collect();
    for message in &shown {
        println!("{message}");
    }
    let failing = messages
        .iter()
        .any(|m| m.message_type.level >= args.failure_threshold.into());
    if !result.problems.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if shown.is_empty() {
        println!(
            "✔ No validation issues found when analyzing {} resources.",
            result.loaded.len()
        );
    }
    Ok(if failing {
        ExitCode::from(ISSUES_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}
