//! `bosun up` as a user runs it, for end-to-end tests: the real binary in the foreground, its
//! state in a temporary directory, pilot on ephemeral ports, the gateway and the pods on
//! addresses of their own (127.a.b.x, or 10.a.b.x in network namespaces), so tests run side
//! by side. Requests go to the gateway as a browser's would.

// Test support: failing loudly (unwrap) is the point; not every test uses every helper.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the mesh captures traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Pods on loopback addresses, apps using their sidecar as HTTP proxy.
    Loopback,
    /// Pods in network namespaces with iptables capture (root).
    Netns,
}

impl Capture {
    fn flag(self) -> &'static str {
        match self {
            Capture::Loopback => "loopback",
            Capture::Netns => "netns",
        }
    }
}

/// Root is needed for network namespaces. CI runs as root; elsewhere the test fails unless
/// the skip is asked for by name, so it is never skipped unnoticed.
pub fn require(capture: Capture) -> bool {
    if capture == Capture::Loopback || nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("BOSUN_SKIP_ROOT_TESTS").is_some() {
        eprintln!("skipped: capture netns needs root (BOSUN_SKIP_ROOT_TESTS is set)");
        return false;
    }
    panic!("capture netns needs root: run as root, or set BOSUN_SKIP_ROOT_TESTS=1 to skip");
}

/// Istio's shared file `relative` (under `shared/istio`).
pub fn istio(relative: &str) -> PathBuf {
    bosun_api::testing::istio_path(relative)
}

/// A network of its own per mesh: 192–251 for the second octet (pilot's tests use lower
/// ones), the process and a counter for the third.
fn next_network() -> (u8, u8) {
    static COUNTER: AtomicU8 = AtomicU8::new(0);
    let pid = std::process::id();
    let a = 192 + (pid % 60) as u8;
    let b = ((pid / 60 % 16) as u8) * 16 + (COUNTER.fetch_add(1, Ordering::Relaxed) % 8) * 2;
    (a, b)
}

/// A running `bosun up`.
#[derive(Debug)]
pub struct UpMesh {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub capture: Capture,
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
    pub pod_network: Ipv4Addr,
}

impl Drop for UpMesh {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

/// SIGTERM, then SIGKILL if it has not ended within 30 s.
fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `bosun` with `args`, the mesh found through `state_dir`: (success, stdout, stderr).
pub fn bosun_in(state_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env("BOSUN_STATE_DIR", state_dir)
        .env_remove("BOSUN_PILOT")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl UpMesh {
    /// The arguments that give a mesh addresses of its own.
    pub fn address_args(capture: Capture) -> (Vec<String>, SocketAddr, SocketAddr, Ipv4Addr) {
        let (a, b) = next_network();
        let gateway = SocketAddr::from(([127, a, b.wrapping_add(1), 2], 8080));
        let admin = SocketAddr::from(([127, a, b.wrapping_add(1), 2], 15000));
        let pod_network = match capture {
            Capture::Loopback => Ipv4Addr::new(127, a, b, 0),
            Capture::Netns => Ipv4Addr::new(10, a, b, 0),
        };
        let args = [
            "--capture",
            capture.flag(),
            "--address",
            &gateway.ip().to_string(),
            "--port",
            "8080",
            "--gateway-admin-address",
            &admin.to_string(),
            "--pilot-address",
            "127.0.0.1:0",
            "--xds-address",
            "127.0.0.1:0",
            "--pod-network",
            &pod_network.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        (args, gateway, admin, pod_network)
    }

    /// Starts `bosun up -f <files>` and waits until it says it is ready.
    pub fn start(capture: Capture, files: &[PathBuf]) -> UpMesh {
        let dir = tempfile::tempdir().unwrap();
        let (address_args, gateway, gateway_admin, pod_network) = Self::address_args(capture);
        let mut command = Command::new(env!("CARGO_BIN_EXE_bosun"));
        command.arg("up");
        for file in files {
            command.arg("-f").arg(file);
        }
        let log = std::fs::File::create(dir.path().join("up.out")).unwrap();
        let child = command
            .args(&address_args)
            .arg("--state-dir")
            .arg(dir.path())
            .args(["-l", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut mesh = UpMesh {
            dir,
            child: Some(child),
            capture,
            gateway,
            gateway_admin,
            pod_network,
        };
        mesh.wait_ready();
        mesh
    }

    /// What `bosun up` printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.out")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.record().is_some_and(|r| r["ready"] == true) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("bosun up exited ({status}):\n{}", self.output());
                }
            }
            assert!(
                Instant::now() < deadline,
                "bosun up is not ready after 2 minutes:\n{}\n{}",
                self.output(),
                self.status_json()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `up.json`: the running mesh's record.
    pub fn record(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("up.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `bosun status -o json`'s `status` part.
    pub fn status_json(&self) -> Value {
        let (_, out, _) = self.bosun(&["status", "-o", "json"]);
        serde_json::from_str::<Value>(&out).map_or(Value::Null, |v| v["status"].clone())
    }

    /// `bosun <args>` against this mesh.
    pub fn bosun(&self, args: &[&str]) -> (bool, String, String) {
        bosun_in(self.dir.path(), args)
    }

    /// Applies files and waits until every proxy has the result.
    pub async fn apply(&self, files: &[&Path]) {
        let mut args = vec!["apply".to_owned()];
        for file in files {
            args.push("-f".to_owned());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = self.bosun(&args);
        assert!(ok, "bosun {args:?}: {out}{err}");
        self.wait_synced().await;
    }

    /// Applies one of Istio's files.
    pub async fn apply_istio(&self, relative: &str) {
        self.apply(&[&istio(relative)]).await;
    }

    /// Applies YAML text.
    pub async fn apply_yaml(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        self.apply(&[&path]).await;
    }

    /// Polls pilot until every connected proxy holds the store's current revision: each was
    /// pushed the config of that revision (or later) and ACKed it.
    pub async fn wait_synced(&self) {
        let api = self.record().unwrap()["api"].as_str().unwrap().to_owned();
        let client = bosun_pilot::client::PilotClient::new(&api).unwrap();
        let list = client.list("namespaces", None).await.unwrap();
        let revision: u64 = list["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap();
        let synced = bosun_proxy::testing::eventually(Duration::from_secs(30), || async {
            let proxies = client.syncz().await.ok()?;
            let all = proxies.as_array()?;
            let ok = !all.is_empty()
                && all.iter().all(|p| {
                    p["revision"].as_u64().is_some_and(|r| r >= revision)
                        && ["cds", "lds", "eds", "rds"].iter().all(|t| {
                            let state = &p[format!("{t}_state")];
                            state == "SYNCED" || state == "NOT SENT"
                        })
                });
            ok.then_some(())
        })
        .await;
        assert!(
            synced.is_some(),
            "proxies did not sync revision {revision}: {:?}",
            client.syncz().await
        );
    }

    /// A GET through the gateway.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.gateway, "GET", "bookinfo", path, headers, "")
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The product page through the gateway, as `user` when given (signed in with the
    /// session cookie productpage sets).
    pub async fn product_page(&self, session: Option<&str>) -> Reply {
        let cookie = session.map(|s| format!("session={s}"));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        self.get("/productpage", &headers).await
    }

    /// Signs in through the gateway (productpage's login form); the session cookie's value.
    pub async fn login(&self, user: &str) -> String {
        let body = format!("username={user}&passwd=password");
        let reply = request(
            self.gateway,
            "POST",
            "bookinfo",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await
        .unwrap();
        assert!(
            (300..400).contains(&reply.status),
            "login answers a redirect: {reply:?}"
        );
        let cookie = reply.header("set-cookie").expect("a session cookie");
        cookie
            .split(';')
            .next()
            .and_then(|c| c.strip_prefix("session="))
            .unwrap()
            .to_owned()
    }

    /// The gateway's admin stats, as text.
    pub async fn gateway_stats(&self) -> String {
        request(self.gateway_admin, "GET", "admin", "/stats", &[], "")
            .await
            .unwrap()
            .body
    }

    /// The pods `bosun status` shows.
    pub fn pods(&self) -> Vec<Value> {
        self.status_json()["pods"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops `bosun up` as Ctrl-C does and waits for it; its exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "bosun up did not stop:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
pub async fn request(
    address: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| "connect timeout".to_owned())?
    .map_err(|e| e.to_string())?;
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "read timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Which reviews version rendered a product page: `v1` (no stars), `v2` (black), `v3` (red).
pub fn reviews_version(page: &str) -> &'static str {
    if page.contains("<font color=\"red\">") {
        "v3"
    } else if page.contains("<font color=\"black\">") {
        "v2"
    } else {
        "v1"
    }
}

/// Whether a process is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The network namespaces whose names start with `prefix`.
pub fn namespaces_named(prefix: &str) -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Whether a network interface exists.
pub fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}
