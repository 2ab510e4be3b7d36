//! `bosun validate -f PATH...`

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `bosun validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories (recursive: .yaml, .yml, .json) to check; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Do not list skipped documents of other API groups.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let result = super::load_files(&args.files)?;
    if !args.quiet {
        super::report_skipped(&result);
    }
    for problem in &result.problems {
        println!("{problem}");
    }
    if result.problems.is_empty() {
        let skipped = match result.skipped.len() {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        let noun = if result.loaded.len() == 1 {
            "resource"
        } else {
            "resources"
        };
        println!("{} {noun} valid{skipped}", result.loaded.len());
        Ok(ExitCode::SUCCESS)
    } else {
        let noun = if result.problems.len() == 1 {
            "problem"
        } else {
            "problems"
        };
        eprintln!("{} {noun} found", result.problems.len());
        Ok(ExitCode::FAILURE)
    }
}
