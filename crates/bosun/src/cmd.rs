//! The subcommands.

pub(crate) mod analyze;
pub(crate) mod proxy;
pub(crate) mod sample;
pub(crate) mod validate;

use std::path::PathBuf;

use bosun_api::load::{LoadResult, load_sources, read_sources};

/// Reads and validates every file given with `-f` (files, directories, `-` for stdin).
pub(crate) fn load_files(files: &[PathBuf]) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(
        !files.is_empty(),
        "no input: give files or directories with -f (or - for stdin)"
    );
    let sources = read_sources(files)?;
    Ok(load_sources(&sources))
}

/// Prints what was skipped (documents of API groups Bosun does not manage), to stderr.
pub(crate) fn report_skipped(result: &LoadResult) {
    for skipped in &result.skipped {
        eprintln!(
            "{}:{}: skipped {} {} \"{}\": not an API group Bosun manages",
            skipped.origin.file,
            skipped.origin.location,
            skipped.api_version,
            skipped.kind,
            skipped.name
        );
    }
}
