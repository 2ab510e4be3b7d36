//! Processes kept running as a kubelet keeps containers: each unit is restarted with an
//! exponential back-off when it exits (`CrashLoopBackOff`), and stopped on request — SIGTERM,
//! then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopped process gets to exit before it is killed.
const GRACE: Duration = Duration::from_secs(3);
/// The longest back-off between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long is healthy again: its back-off starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Clone, Debug)]
pub struct UnitSpec {
    /// `pod/container` or `pod/istio-proxy`.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (added to a clean one with `PATH` and `HOME`).
    pub env: Vec<(String, String)>,
    /// Where its output goes.
    pub log: PathBuf,
}

/// Where a unit is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnitState {
    /// Being started.
    Starting,
    /// Running, with this process id.
    Running(u32),
    /// Exited; waiting to be started again.
    BackOff,
    /// Stopped on request.
    Stopped,
}

/// A unit's state and history.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UnitStatus {
    /// Where it is.
    pub state: UnitState,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How it last ended, if it did.
    pub last_exit: Option<String>,
}

/// The units and their states.
#[derive(Debug, Default)]
pub struct Supervisor {
    statuses: Arc<Mutex<BTreeMap<String, UnitStatus>>>,
    units: Mutex<Vec<RunningUnit>>,
    changed: Arc<watch::Sender<u64>>,
}

/// A started unit: how to stop it and the task that runs it.
#[derive(Debug)]
struct RunningUnit {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Supervisor {
    /// A supervisor with no units.
    pub fn new() -> Self {
        Supervisor {
            changed: Arc::new(watch::channel(0).0),
            ..Default::default()
        }
    }

    /// Every unit's status, by name.
    pub fn statuses(&self) -> BTreeMap<String, UnitStatus> {
        lock(&self.statuses).clone()
    }

    /// A receiver that sees every change of status.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts a unit and keeps it running.
    pub fn start(&self, spec: UnitSpec) {
        let (stop, stopped) = watch::channel(false);
        let statuses = self.statuses.clone();
        let changed = self.changed.clone();
        let name = spec.name.clone();
        lock(&statuses).insert(
            name.clone(),
            UnitStatus {
                state: UnitState::Starting,
                restarts: 0,
                last_exit: None,
            },
        );
        let task = tokio::spawn(run_unit(spec, statuses, changed, stopped));
        lock(&self.units).push(RunningUnit { name, stop, task });
    }

    /// Stops the units whose names `select` picks, and waits for them.
    pub async fn stop_where(&self, select: impl Fn(&str) -> bool) {
        let picked: Vec<RunningUnit> = {
            let mut units = lock(&self.units);
            let (picked, kept) = std::mem::take(&mut *units)
                .into_iter()
                .partition(|unit| select(&unit.name));
            *units = kept;
            picked
        };
        for unit in &picked {
            let _ = unit.stop.send(true);
        }
        for unit in picked {
            let _ = unit.task.await;
        }
    }
}

fn set_state(
    statuses: &Mutex<BTreeMap<String, UnitStatus>>,
    changed: &watch::Sender<u64>,
    name: &str,
    update: impl FnOnce(&mut UnitStatus),
) {
    if let Some(status) = lock(statuses).get_mut(name) {
        update(status);
    }
    changed.send_modify(|n| *n += 1);
}

fn spawn(spec: &UnitSpec) -> std::io::Result<Child> {
    if let Some(parent) = spec.log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(
            ["PATH", "HOME", "LANG", "RUST_LOG"]
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))),
        )
        .envs(spec.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at the terminal reaches the supervisor, which stops
        // everything in order, not every process at once.
        .process_group(0)
        .kill_on_drop(true);
    command.spawn()
}

/// Asks a process to stop, then kills it after the grace period.
async fn terminate(child: &mut Child) -> String {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => {
            let _ = child.kill().await;
            "killed".to_owned()
        }
    }
}

/// Resolves when a stop is requested (the borrow of the channel ends here, not in the
/// caller's `select!`).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn run_unit(
    spec: UnitSpec,
    statuses: Arc<Mutex<BTreeMap<String, UnitStatus>>>,
    changed: Arc<watch::Sender<u64>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(unit = %spec.name, error = %e, "cannot start");
                set_state(&statuses, &changed, &spec.name, |s| {
                    s.state = UnitState::BackOff;
                    s.last_exit = Some(format!("cannot start {}: {e}", spec.program.display()));
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop_requested(&mut stopped) => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        set_state(&statuses, &changed, &spec.name, |s| {
            s.state = UnitState::Running(pid)
        });
        let exit = tokio::select! {
            status = child.wait() => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            _ = stop_requested(&mut stopped) => {
                let exit = terminate(&mut child).await;
                set_state(&statuses, &changed, &spec.name, |s| {
                    s.state = UnitState::Stopped;
                    s.last_exit = Some(exit);
                });
                return;
            }
        };
        tracing::warn!(unit = %spec.name, %exit, "exited; restarting after {backoff:?}");
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = Duration::from_secs(1);
        }
        set_state(&statuses, &changed, &spec.name, |s| {
            s.state = UnitState::BackOff;
            s.last_exit = Some(exit);
            s.restarts += 1;
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_requested(&mut stopped) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    set_state(&statuses, &changed, &spec.name, |s| {
        s.state = UnitState::Stopped
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(name: &str, script: &str, dir: &std::path::Path) -> UnitSpec {
        UnitSpec {
            name: name.to_owned(),
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".to_owned(), script.to_owned()],
            env: vec![("GREETING".to_owned(), "hello".to_owned())],
            log: dir.join(format!("{name}.log")),
        }
    }

    async fn eventually(check: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn restarts_what_exits_and_stops_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::new();
        supervisor.start(shell("crashing", "echo $GREETING; exit 3", dir.path()));
        supervisor.start(shell("steady", "exec sleep 30", dir.path()));
        assert!(
            eventually(|| supervisor.statuses()["crashing"].restarts >= 1).await,
            "restarted after exiting"
        );
        let crashing = &supervisor.statuses()["crashing"];
        assert!(
            crashing.last_exit.as_deref().unwrap_or("").contains('3'),
            "{crashing:?}"
        );
        let log = std::fs::read_to_string(dir.path().join("crashing.log")).unwrap();
        assert!(
            log.starts_with("hello\n"),
            "output and environment: {log:?}"
        );
        let UnitState::Running(pid) = supervisor.statuses()["steady"].state else {
            panic!("running: {:?}", supervisor.statuses())
        };
        supervisor.stop_where(|_| true).await;
        assert!(
            supervisor
                .statuses()
                .values()
                .all(|s| s.state == UnitState::Stopped)
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "the process is gone"
        );
    }
}
