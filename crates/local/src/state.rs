//! The state directory of a local mesh: the config store, logs, and the records that let
//! `bosun status`, `bosun down` and `bosun apply` find a mesh started elsewhere.

use std::path::{Path, PathBuf};

use crate::runtime::MeshStatus;

/// What a running `bosun up` records about itself.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UpRecord {
    /// The process that runs the mesh.
    pub pid: u32,
    /// Pilot's HTTP API (`host:port`).
    pub api: String,
    /// Pilot's ADS address.
    pub xds: String,
    /// The gateway's URL.
    pub gateway_url: String,
    /// Whether every pod is running and synced (at least once).
    pub ready: bool,
}

/// The default state directory: `$BOSUN_STATE_DIR`, else `$XDG_STATE_HOME/bosun`, else
/// `~/.local/state/bosun`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOSUN_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("bosun");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/state/bosun")
}

fn up_file(dir: &Path) -> PathBuf {
    dir.join("up.json")
}

fn status_file(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

/// Writes a file whole or not at all.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text)?;
    std::fs::rename(temp, path)
}

/// Records the running mesh.
pub fn write_up(dir: &Path, record: &UpRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomically(
        &up_file(dir),
        &serde_json::to_string_pretty(record).unwrap_or_default(),
    )
}

/// The running mesh's record, if its process is alive.
pub fn read_up(dir: &Path) -> Option<UpRecord> {
    let text = std::fs::read_to_string(up_file(dir)).ok()?;
    let record: UpRecord = serde_json::from_str(&text).ok()?;
    Path::new(&format!("/proc/{}", record.pid))
        .exists()
        .then_some(record)
}

/// Forgets the running mesh.
pub fn remove_up(dir: &Path) {
    let _ = std::fs::remove_file(up_file(dir));
    let _ = std::fs::remove_file(status_file(dir));
}

/// Records the mesh's status for `bosun status`.
pub fn write_status(dir: &Path, status: &MeshStatus) -> std::io::Result<()> {
    write_atomically(
        &status_file(dir),
        &serde_json::to_string_pretty(status).unwrap_or_default(),
    )
}

/// The last recorded status.
pub fn read_status(dir: &Path) -> Option<MeshStatus> {
    serde_json::from_str(&std::fs::read_to_string(status_file(dir)).ok()?).ok()
}
