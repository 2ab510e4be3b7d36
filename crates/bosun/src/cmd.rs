//! The subcommands.

pub(crate) mod analyze;
pub(crate) mod ctl;
pub(crate) mod pilot;
pub(crate) mod proxy;
pub(crate) mod proxy_status;
pub(crate) mod sample;
pub(crate) mod up;
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

/// Rows as kubectl prints tables: columns padded, three spaces apart.
pub(crate) fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
