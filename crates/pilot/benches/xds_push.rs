//! Pilot at scale: 1,000 services × 5 endpoints, 200 simulated sidecars on state-of-the-world
//! ADS. Measures the full push at start, the time from one VirtualService apply (and from one
//! endpoint change) until every client has it and ACKed it, and pilot's RSS and CPU.
//!
//! `cargo bench -p bosun-pilot --bench xds_push` (or `bench/pilot.sh`). The pilot under test is
//! the release `bosun` binary (`BOSUN_BIN`, default `target/release/bosun`), its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bosun_pilot::client::PilotClient;
use bosun_pilot::node::json_to_struct;
use bosun_pilot::translate::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use bosun_xds::pb::envoy::config::cluster::v3::Cluster;
use bosun_xds::pb::envoy::config::core::v3::Node;
use bosun_xds::pb::envoy::config::listener::v3::{Listener, filter::ConfigType};
use bosun_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use bosun_xds::pb::envoy::service::discovery::v3::DiscoveryRequest;
use bosun_xds::pb::google::protobuf::Any;
use bytes::Bytes;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 5;
const CLIENTS: usize = 200;
const NAMESPACES: usize = 10;
const ROUNDS: usize = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `DiscoveryResponse` as the simulated sidecars read it: resources stay the bytes they
/// came in (decoded only where a client needs to look inside), so that 200 clients on the
/// two cores pilot runs on cost little besides receiving every byte.
#[derive(Clone, PartialEq, prost::Message)]
struct Response {
    #[prost(string, tag = "1")]
    version_info: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    resources: Vec<Bytes>,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
}

fn any_value(resource: &Bytes) -> Vec<u8> {
    Any::decode(resource.clone())
        .map(|a| a.value)
        .unwrap_or_default()
}

/// What every client has received: per type, the number of responses.
#[derive(Default)]
struct Counters {
    routes: AtomicUsize,
    endpoints: AtomicUsize,
    ready: AtomicUsize,
}

fn world(services: usize, endpoints: usize) -> String {
    let mut yaml = String::new();
    for s in 0..services {
        let ns = s % NAMESPACES;
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: ns-{ns}}}\nspec:\n  selector: {{app: svc-{s}}}\n  ports: [{{name: http, port: 9080}}]\n---\n"
        ));
        for e in 0..endpoints {
            let ip = 10 << 24 | (s as u32) << 8 | e as u32;
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: svc-{s}-{e}, namespace: ns-{ns}, labels: {{app: svc-{s}, version: v1}}}}\nspec: {{containers: [{{name: app, image: x}}]}}\nstatus: {{podIP: {}, phase: Running}}\n---\n",
                std::net::Ipv4Addr::from(ip)
            ));
        }
    }
    yaml
}

fn pilot_stats(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (kb("VmRSS:") / 1024, kb("VmHWM:") / 1024, ticks / 100.0)
}

/// One simulated sidecar: asks for CDS and LDS, then EDS for every EDS cluster and RDS for
/// every route table its listeners name, and ACKs everything.
async fn client(
    index: usize,
    xds: String,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let ns = index % NAMESPACES;
    let ip = format!("10.200.{}.{}", index / 250, index % 250 + 1);
    let metadata = serde_json::json!({"NAMESPACE": format!("ns-{ns}"), "LABELS": {"app": format!("client-{index}")}});
    let node = Node {
        id: format!("sidecar~{ip}~client-{index}.ns-{ns}~ns-{ns}.svc.cluster.local"),
        metadata: metadata.as_object().map(json_to_struct),
        ..Default::default()
    };
    // Envoy's HTTP/2 defaults for the xDS cluster: 256 MiB stream and connection windows, so
    // that a large response is not paced by flow control.
    let channel = tonic::transport::Endpoint::from_shared(xds)
        .unwrap()
        .initial_stream_window_size(256 * 1024 * 1024)
        .initial_connection_window_size(256 * 1024 * 1024)
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(512 * 1024 * 1024);
    grpc.ready().await.unwrap();
    let (requests, receiver) = mpsc::unbounded_channel();
    let mut responses = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(
                receiver,
            )),
            http::uri::PathAndQuery::from_static(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
            ),
            tonic_prost::ProstCodec::<DiscoveryRequest, Response>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let request =
        |type_url: &str, names: Vec<String>, version: &str, nonce: &str| DiscoveryRequest {
            node: Some(node.clone()),
            type_url: type_url.to_owned(),
            resource_names: names,
            version_info: version.to_owned(),
            response_nonce: nonce.to_owned(),
            ..Default::default()
        };
    let _ = requests.send(request(CLUSTER_TYPE, vec![], "", ""));
    let _ = requests.send(request(LISTENER_TYPE, vec![], "", ""));
    let mut eds_names: Vec<String> = Vec::new();
    let mut rds_names: Vec<String> = Vec::new();
    let mut have = BTreeSet::new();
    let mut ready = false;
    loop {
        let response = tokio::select! {
            r = responses.next() => match r { Some(Ok(r)) => r, _ => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let t = response.type_url.as_str();
        match t {
            CLUSTER_TYPE => {
                let names: Vec<String> = response
                    .resources
                    .iter()
                    .filter_map(|a| Cluster::decode(any_value(a).as_slice()).ok())
                    .filter(|c| c.eds_cluster_config.is_some())
                    .map(|c| c.name)
                    .collect();
                let _ = requests.send(request(t, vec![], &response.version_info, &response.nonce));
                if names != eds_names {
                    eds_names = names;
                    let _ = requests.send(request(ENDPOINT_TYPE, eds_names.clone(), "", ""));
                }
            }
            LISTENER_TYPE => {
                let mut names = BTreeSet::new();
                for any in &response.resources {
                    let Ok(listener) = Listener::decode(any_value(any).as_slice()) else {
                        continue;
                    };
                    for chain in &listener.filter_chains {
                        for filter in &chain.filters {
                            if let Some(ConfigType::TypedConfig(config)) = &filter.config_type {
                                if let Ok(hcm) =
                                    HttpConnectionManager::decode(config.value.as_slice())
                                {
                                    if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                                        names.insert(rds.route_config_name);
                                    }
                                }
                            }
                        }
                    }
                }
                let _ = requests.send(request(t, vec![], &response.version_info, &response.nonce));
                let names: Vec<String> = names.into_iter().collect();
                if names != rds_names {
                    rds_names = names;
                    let _ = requests.send(request(ROUTE_TYPE, rds_names.clone(), "", ""));
                }
            }
            ENDPOINT_TYPE => {
                let _ = requests.send(request(
                    t,
                    eds_names.clone(),
                    &response.version_info,
                    &response.nonce,
                ));
                counters.endpoints.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let _ = requests.send(request(
                    t,
                    rds_names.clone(),
                    &response.version_info,
                    &response.nonce,
                ));
                counters.routes.fetch_add(1, Ordering::Relaxed);
            }
        }
        have.insert(t.to_owned());
        if !ready && have.len() == 4 {
            ready = true;
            counters.ready.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let services = env_usize("BENCH_SERVICES", SERVICES);
    let endpoints = env_usize("BENCH_ENDPOINTS", ENDPOINTS);
    let clients = env_usize("BENCH_CLIENTS", CLIENTS);
    let rounds = env_usize("BENCH_ROUNDS", ROUNDS).max(1);
    let binary = std::env::var("BOSUN_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/bosun").to_owned()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut pilot = Command::new(&binary)
        .args([
            "pilot",
            "--xds-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "-l",
            "warn",
            "--config-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {binary}: {e} (build it: cargo build --release -p bosun)")
        });
    let mut line = String::new();
    BufReader::new(pilot.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let xds = format!("http://{}", words[3].trim_end_matches(','));
    let api = words[6].trim_start_matches("http://").to_owned();
    let pid = pilot.id();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client_api = PilotClient::new(&api).unwrap();
        let started = Instant::now();
        client_api.apply(world(services, endpoints), "world", None).await.unwrap();
        println!(
            "loaded {services} services x {endpoints} endpoints ({} pods) in {:.2?}",
            services * endpoints,
            started.elapsed()
        );
        let (rss, _, cpu_loaded) = pilot_stats(pid);
        println!("pilot after load: RSS {rss} MB, CPU {cpu_loaded:.2} s");

        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let started = Instant::now();
        for index in 0..clients {
            tokio::spawn(client(index, xds.clone(), counters.clone(), stopped.clone()));
        }
        let full = wait_until(Duration::from_secs(120), || counters.ready.load(Ordering::Relaxed) >= clients).await;
        let full = full.expect("every client got CDS, EDS, LDS and RDS");
        let (rss, hwm, cpu_full) = pilot_stats(pid);
        println!(
            "full push to {clients} clients: {full:.2?} (RSS {rss} MB, peak {hwm} MB, CPU {:.2} s)",
            cpu_full - cpu_loaded
        );
        let _ = started;

        let mut vs_times = Vec::new();
        let mut applied = Vec::new();
        for round in 0..rounds {
            let before = counters.routes.load(Ordering::Relaxed);
            let vs = format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-0, namespace: ns-0}}\nspec:\n  hosts: [svc-0]\n  http:\n  - timeout: {}s\n    route:\n    - destination: {{host: svc-0}}\n",
                round + 1
            );
            let started = Instant::now();
            client_api.apply(vs, "vs", None).await.unwrap();
            applied.push(started.elapsed());
            let took = wait_until(Duration::from_secs(30), || counters.routes.load(Ordering::Relaxed) >= before + clients).await;
            let took = took.expect("every client got the new routes");
            vs_times.push(started.elapsed().max(took));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let (_, _, cpu_vs) = pilot_stats(pid);
        let mut ep_times = Vec::new();
        for round in 0..rounds {
            let before = counters.endpoints.load(Ordering::Relaxed);
            let pod = format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: extra-{round}, namespace: ns-1, labels: {{app: svc-1}}}}\nspec: {{containers: [{{name: app, image: x}}]}}\nstatus: {{podIP: 10.250.0.{}, phase: Running}}\n",
                round + 1
            );
            let started = Instant::now();
            client_api.apply(pod, "pod", None).await.unwrap();
            let took = wait_until(Duration::from_secs(30), || counters.endpoints.load(Ordering::Relaxed) >= before + clients).await;
            took.expect("every client got the new endpoints");
            ep_times.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        applied.sort();
        vs_times.sort();
        ep_times.sort();
        let (rss, hwm, cpu_end) = pilot_stats(pid);
        println!(
            "VirtualService apply -> all {clients} clients have it: p50 {:.1?}, p99 {:.1?} (max of {rounds})",
            percentile(&vs_times, 0.5),
            percentile(&vs_times, 0.99)
        );
        println!(
            "  of which the apply itself (validated, stored): p50 {:.1?}",
            percentile(&applied, 0.5)
        );
        println!(
            "endpoint change -> all {clients} clients have it: p50 {:.1?}, p99 {:.1?}",
            percentile(&ep_times, 0.5),
            percentile(&ep_times, 0.99)
        );
        println!(
            "pilot: RSS {rss} MB (peak {hwm} MB), CPU {:.2} s over {} changes ({:.0} ms per VirtualService change, {:.0} ms per endpoint change)",
            cpu_end - cpu_full,
            2 * rounds,
            (cpu_vs - cpu_full) * 1000.0 / rounds as f64,
            (cpu_end - cpu_vs) * 1000.0 / rounds as f64,
        );
        let _ = stop.send(true);
    });
    let _ = pilot.kill();
    let _ = pilot.wait();
}
