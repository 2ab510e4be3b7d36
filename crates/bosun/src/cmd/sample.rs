//! `bosun sample <app>`: Bosun's built-in sample applications.

use std::process::ExitCode;

use anyhow::Context as _;

pub(crate) fn run(sample: bosun_samples::cli::Sample) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        tokio::select! {
            result = bosun_samples::cli::run(sample) => result,
            _ = crate::signals::terminated() => Ok(ExitCode::SUCCESS),
        }
    })
}
