//! The xDS client: one ADS stream (state-of-the-world or delta) to the management server named
//! in the bootstrap; ACKs and NACKs, subscriptions that follow the clusters and listeners, and
//! reconnection with jittered backoff while the last good configuration keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bosun_xds::TypeUrl;
use bosun_xds::pb::envoy::config::cluster::v3::Cluster as ClusterProto;
use bosun_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use bosun_xds::pb::envoy::config::listener::v3::Listener as ListenerProto;
use bosun_xds::pb::envoy::config::route::v3::RouteConfiguration;
use bosun_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use bosun_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use bosun_xds::pb::google::protobuf::Any;
use bosun_xds::pb::google::rpc::Status;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::server::{Origin, Proxy, Rejections};
use crate::support;

/// How to reach and use the management server.
#[derive(Clone, Debug)]
pub struct AdsSettings {
    /// The static cluster of the management server.
    pub cluster: String,
    /// Delta (incremental) rather than state-of-the-world.
    pub delta: bool,
    /// Whether clusters come over ADS.
    pub cds: bool,
    /// Whether listeners come over ADS.
    pub lds: bool,
    /// How long to wait for the first configuration before calling the proxy initialized.
    pub initial_fetch_timeout: Duration,
    /// Send the node only on the first request of a stream.
    pub node_on_first_message_only: bool,
    /// Whether to ask for Istio's name table (NDS), for the DNS proxy.
    pub nds: bool,
}

/// The types a response may carry.
const KNOWN_TYPES: [&str; 5] = [
    TypeUrl::CLUSTER,
    TypeUrl::LISTENER,
    TypeUrl::ROUTE_CONFIGURATION,
    TypeUrl::CLUSTER_LOAD_ASSIGNMENT,
    TypeUrl::NAME_TABLE,
];

/// Starts the client; the receiver fires once the first clusters and listeners are applied.
pub fn spawn(proxy: Arc<Proxy>, settings: AdsSettings) -> oneshot::Receiver<()> {
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(run(proxy, settings, ready_tx));
    ready_rx
}

async fn run(proxy: Arc<Proxy>, settings: AdsSettings, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(250);
    loop {
        let address = proxy
            .registry
            .find_cluster(&settings.cluster)
            .and_then(|c| c.choose_host(None, &crate::upstream::Selection::default()))
            .map(|h| h.address);
        let outcome = match address {
            None => Err(format!(
                "ADS cluster {:?} has no endpoint",
                settings.cluster
            )),
            Some(address) => match connect(address).await {
                Err(error) => Err(error),
                Ok(client) => {
                    let result = if settings.delta {
                        delta_stream(&proxy, &settings, client, &mut ready).await
                    } else {
                        sotw_stream(&proxy, &settings, client, &mut ready).await
                    };
                    // A stream that got far enough to receive configuration resets the backoff.
                    if matches!(result, Ok(true)) {
                        backoff = Duration::from_millis(250);
                    }
                    result.map(|_| ())
                }
            },
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "xDS stream to {} ended", settings.cluster);
        }
        let jitter = backoff.mul_f64(0.5 + fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(jitter) => {}
            _ = proxy.wait_for_shutdown() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// How long the descriptors stay decoded after the last response: longer than the usual gap
/// within a burst of pushes, shorter than a quiet mesh's hours.
const DESCRIPTORS_LINGER: Duration = Duration::from_secs(30);

/// Every response is checked against the descriptors. Decoded, they take a few megabytes and
/// decoding them takes a few milliseconds; a management server pushes in bursts (clusters,
/// endpoints, listeners, routes within milliseconds, then quiet), so they stay decoded from a
/// response until the stream has been quiet for [`DESCRIPTORS_LINGER`].
#[derive(Debug, Default)]
struct LingeringDescriptors {
    /// The guard that keeps them decoded, and until when.
    held: Option<(bosun_xds::PoolGuard, tokio::time::Instant)>,
}

impl LingeringDescriptors {
    /// Keeps the descriptors decoded for another [`DESCRIPTORS_LINGER`].
    fn hold(&mut self) {
        let until = tokio::time::Instant::now() + DESCRIPTORS_LINGER;
        match &mut self.held {
            Some((_, held_until)) => *held_until = until,
            None => self.held = Some((bosun_xds::PoolGuard::new(), until)),
        }
    }

    /// Completes once the descriptors have been held and the stream has been quiet since.
    async fn quiet(&self) {
        match &self.held {
            Some((_, until)) => tokio::time::sleep_until(*until).await,
            None => std::future::pending().await,
        }
    }

    /// Lets the descriptors go (the next response decodes them again).
    fn release(&mut self) {
        self.held = None;
    }
}

type Client = AggregatedDiscoveryServiceClient<tonic::transport::Channel>;

async fn connect(address: std::net::SocketAddr) -> Result<Client, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// Decodes the resources of a response, keeping the undecodable or unsupported ones apart
/// (rejected with a reason, by name when the name could be read).
fn decode<M, N>(resources: &[Any], full_name: &str, name_of: N) -> (Vec<M>, Rejections)
where
    M: Message + Default,
    N: Fn(&M) -> String,
{
    let mut decoded = Vec::new();
    let mut rejections = Rejections::default();
    for (index, any) in resources.iter().enumerate() {
        let type_name = any
            .type_url
            .rsplit_once('/')
            .map_or(any.type_url.as_str(), |(_, n)| n);
        if type_name != full_name {
            rejections.0.push((
                format!("resource {index}"),
                format!("unexpected type {}", any.type_url),
            ));
            continue;
        }
        match M::decode(any.value.as_slice()) {
            Err(error) => rejections
                .0
                .push((format!("resource {index}"), error.to_string())),
            Ok(message) => match bosun_xds::check_binary(&any.value, full_name, support::support())
            {
                Ok(()) => decoded.push(message),
                Err(error) => rejections.0.push((name_of(&message), error.to_string())),
            },
        }
    }
    (decoded, rejections)
}

/// The state of one resource type on a stream.
#[derive(Debug, Default)]
struct TypeState {
    /// Last accepted version.
    version: String,
    /// Resources subscribed to (empty: wildcard).
    names: BTreeSet<String>,
    /// Whether a request was sent.
    requested: bool,
    /// Delta: resources held, by name, with their versions.
    held: BTreeMap<String, (String, Any)>,
}

/// Applies one batch of resources of a type; returns what was rejected.
async fn apply(
    proxy: &Arc<Proxy>,
    type_url: &str,
    resources: &[Any],
    version: &str,
    mut rejections: Rejections,
) -> Rejections {
    let extra = match type_url {
        TypeUrl::CLUSTER => {
            let (clusters, rejected) =
                decode::<ClusterProto, _>(resources, "envoy.config.cluster.v3.Cluster", |c| {
                    c.name.clone()
                });
            let keep: Vec<String> = rejected.0.iter().map(|(n, _)| n.clone()).collect();
            let mut applied = proxy
                .apply_clusters(clusters, Origin::Dynamic, version, Some(&keep))
                .await;
            applied.0.extend(rejected.0);
            applied
        }
        TypeUrl::LISTENER => {
            let (listeners, rejected) =
                decode::<ListenerProto, _>(resources, "envoy.config.listener.v3.Listener", |l| {
                    l.name.clone()
                });
            let keep: Vec<String> = rejected.0.iter().map(|(n, _)| n.clone()).collect();
            let mut applied =
                proxy.apply_listeners(listeners, Origin::Dynamic, version, Some(&keep));
            applied.0.extend(rejected.0);
            applied
        }
        TypeUrl::ROUTE_CONFIGURATION => {
            let (routes, rejected) = decode::<RouteConfiguration, _>(
                resources,
                "envoy.config.route.v3.RouteConfiguration",
                |r| r.name.clone(),
            );
            let mut applied = proxy.apply_routes(routes, Origin::Dynamic, version);
            applied.0.extend(rejected.0);
            applied
        }
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT => {
            let (assignments, rejected) = decode::<ClusterLoadAssignment, _>(
                resources,
                "envoy.config.endpoint.v3.ClusterLoadAssignment",
                |c| c.cluster_name.clone(),
            );
            let mut applied = proxy.apply_endpoints(assignments, version);
            applied.0.extend(rejected.0);
            applied
        }
        TypeUrl::NAME_TABLE => apply_name_table(proxy, resources),
        other => Rejections(vec![(
            other.to_owned(),
            "resource type not supported".to_owned(),
        )]),
    };
    rejections.0.extend(extra.0);
    rejections
}

/// Istio's name table: one resource, the whole table (Istio's own type, not Envoy's, so
/// there are no descriptors to check it against).
fn apply_name_table(proxy: &Proxy, resources: &[Any]) -> Rejections {
    let mut table = bosun_xds::istio::NameTable::default();
    for (index, any) in resources.iter().enumerate() {
        match bosun_xds::istio::NameTable::decode(any.value.as_slice()) {
            Ok(part) => table.table.extend(part.table),
            Err(error) => {
                return Rejections(vec![(format!("resource {index}"), error.to_string())]);
            }
        }
    }
    let names = crate::dns::Names::from_table(&table);
    tracing::debug!(names = names.len(), "name table applied");
    proxy.names.store(Arc::new(names));
    Rejections::default()
}

fn nack_status(rejections: &Rejections) -> Option<Status> {
    (!rejections.is_empty()).then(|| Status {
        code: 3, // INVALID_ARGUMENT
        message: rejections.message(),
        details: Vec::new(),
    })
}

/// What a resource type's subscription should be now (`None`: wildcard).
fn wanted_names(proxy: &Proxy, type_url: &str) -> Option<BTreeSet<String>> {
    match type_url {
        TypeUrl::CLUSTER_LOAD_ASSIGNMENT => Some(proxy.eds_service_names().into_iter().collect()),
        TypeUrl::ROUTE_CONFIGURATION => Some(proxy.rds_names().into_iter().collect()),
        _ => None,
    }
}

async fn sotw_stream(
    proxy: &Arc<Proxy>,
    settings: &AdsSettings,
    mut client: Client,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<bool, String> {
    let (requests, receiver) = mpsc::channel::<DiscoveryRequest>(64);
    let node = proxy.node();
    let mut first = true;
    let mut request = |type_url: &str,
                       version: &str,
                       nonce: &str,
                       names: &BTreeSet<String>,
                       error: Option<Status>| {
        let include_node = first || !settings.node_on_first_message_only;
        first = false;
        DiscoveryRequest {
            version_info: version.to_owned(),
            node: include_node.then(|| node.clone()),
            resource_names: names.iter().cloned().collect(),
            type_url: type_url.to_owned(),
            response_nonce: nonce.to_owned(),
            error_detail: error,
            ..Default::default()
        }
    };
    let mut states: BTreeMap<&'static str, TypeState> = BTreeMap::new();
    // Clusters first, then listeners: the order Envoy asks in; the name table after them.
    for (enabled, type_url) in [
        (settings.cds, TypeUrl::CLUSTER),
        (settings.lds, TypeUrl::LISTENER),
        (settings.nds, TypeUrl::NAME_TABLE),
    ] {
        if enabled {
            let state = states.entry(type_url).or_default();
            state.version = match type_url {
                TypeUrl::CLUSTER => proxy.version("cds"),
                TypeUrl::LISTENER => proxy.version("lds"),
                _ => String::new(),
            };
            state.requested = true;
            let _ = requests
                .send(request(
                    type_url,
                    &state.version,
                    "",
                    &BTreeSet::new(),
                    None,
                ))
                .await;
        }
    }
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(receiver))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut received_any = false;
    let mut descriptors = LingeringDescriptors::default();
    // Ready once clusters and listeners are in, as Envoy; the name table does not hold it up.
    let mut pending_ready: BTreeSet<&'static str> = states
        .keys()
        .copied()
        .filter(|t| *t != TypeUrl::NAME_TABLE)
        .collect();
    loop {
        tokio::select! {
            message = responses.message() => {
                let response: DiscoveryResponse = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return Ok(received_any),
                    Err(status) => return Err(format!("{}: {}", status.code(), status.message())),
                };
                received_any = true;
                descriptors.hold();
                let Some(type_url) = KNOWN_TYPES
                    .into_iter()
                    .find(|t| *t == response.type_url)
                else {
                    let error = Status { code: 3, message: format!("unsupported type {}", response.type_url), details: Vec::new() };
                    let _ = requests.send(request(&response.type_url, "", &response.nonce, &BTreeSet::new(), Some(error))).await;
                    continue;
                };
                let rejections = apply(proxy, type_url, &response.resources, &response.version_info, Rejections::default()).await;
                // Quiet counts from the end of handling: applying may take a while.
                descriptors.hold();
                let state = states.entry(type_url).or_default();
                if rejections.is_empty() {
                    state.version = response.version_info.clone();
                } else {
                    tracing::warn!(type_url, error = %rejections.message(), "rejecting xDS update");
                }
                let names = state.names.clone();
                let version = state.version.clone();
                let _ = requests.send(request(type_url, &version, &response.nonce, &names, nack_status(&rejections))).await;
                pending_ready.remove(type_url);
                if pending_ready.is_empty() {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                // Follow the clusters with EDS and the listeners with RDS.
                for follow in [TypeUrl::CLUSTER_LOAD_ASSIGNMENT, TypeUrl::ROUTE_CONFIGURATION] {
                    let Some(wanted) = wanted_names(proxy, follow) else { continue };
                    let state = states.entry(follow).or_default();
                    if state.names != wanted || (!state.requested && !wanted.is_empty()) {
                        state.names = wanted;
                        state.requested = true;
                        let names = state.names.clone();
                        let version = state.version.clone();
                        let _ = requests.send(request(follow, &version, "", &names, None)).await;
                    }
                }
            }
            () = descriptors.quiet() => descriptors.release(),
            _ = proxy.wait_for_shutdown() => return Ok(received_any),
        }
    }
}

async fn delta_stream(
    proxy: &Arc<Proxy>,
    settings: &AdsSettings,
    mut client: Client,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<bool, String> {
    let (requests, receiver) = mpsc::channel::<DeltaDiscoveryRequest>(64);
    let node = proxy.node();
    let mut first = true;
    let mut states: BTreeMap<&'static str, TypeState> = BTreeMap::new();
    let mut make = |type_url: &str| {
        let include_node = first || !settings.node_on_first_message_only;
        first = false;
        DeltaDiscoveryRequest {
            node: include_node.then(|| node.clone()),
            type_url: type_url.to_owned(),
            ..Default::default()
        }
    };
    for (enabled, type_url) in [
        (settings.cds, TypeUrl::CLUSTER),
        (settings.lds, TypeUrl::LISTENER),
        (settings.nds, TypeUrl::NAME_TABLE),
    ] {
        if enabled {
            let state = states.entry(type_url).or_default();
            state.requested = true;
            // An empty first subscription is the wildcard.
            let _ = requests.send(make(type_url)).await;
        }
    }
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(receiver))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut received_any = false;
    let mut descriptors = LingeringDescriptors::default();
    // Ready once clusters and listeners are in, as Envoy; the name table does not hold it up.
    let mut pending_ready: BTreeSet<&'static str> = states
        .keys()
        .copied()
        .filter(|t| *t != TypeUrl::NAME_TABLE)
        .collect();
    loop {
        tokio::select! {
            message = responses.message() => {
                let response: DeltaDiscoveryResponse = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return Ok(received_any),
                    Err(status) => return Err(format!("{}: {}", status.code(), status.message())),
                };
                received_any = true;
                descriptors.hold();
                let Some(type_url) = KNOWN_TYPES
                    .into_iter()
                    .find(|t| *t == response.type_url)
                else {
                    let mut nack = make(&response.type_url);
                    nack.response_nonce = response.nonce.clone();
                    nack.error_detail = Some(Status { code: 3, message: format!("unsupported type {}", response.type_url), details: Vec::new() });
                    let _ = requests.send(nack).await;
                    continue;
                };
                let state = states.entry(type_url).or_default();
                // The full set for this type after the update; CDS and LDS are applied as a
                // whole, EDS and RDS per resource.
                let mut held = state.held.clone();
                for name in &response.removed_resources {
                    held.remove(name);
                }
                let mut updated = Vec::new();
                for resource in &response.resources {
                    if let Some(any) = &resource.resource {
                        held.insert(resource.name.clone(), (resource.version.clone(), any.clone()));
                        updated.push(any.clone());
                    }
                }
                let version = response.system_version_info.clone();
                let batch: Vec<Any> = match type_url {
                    TypeUrl::CLUSTER | TypeUrl::LISTENER | TypeUrl::NAME_TABLE => held.values().map(|(_, any)| any.clone()).collect(),
                    _ => updated,
                };
                let rejections = apply(proxy, type_url, &batch, &version, Rejections::default()).await;
                // Quiet counts from the end of handling: applying may take a while.
                descriptors.hold();
                let state = states.entry(type_url).or_default();
                if rejections.is_empty() {
                    state.held = held;
                    state.version = version;
                } else {
                    tracing::warn!(type_url, error = %rejections.message(), "rejecting xDS update");
                }
                let mut ack = make(type_url);
                ack.response_nonce = response.nonce.clone();
                ack.error_detail = nack_status(&rejections);
                let _ = requests.send(ack).await;
                pending_ready.remove(type_url);
                if pending_ready.is_empty() {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                for follow in [TypeUrl::CLUSTER_LOAD_ASSIGNMENT, TypeUrl::ROUTE_CONFIGURATION] {
                    let Some(wanted) = wanted_names(proxy, follow) else { continue };
                    let state = states.entry(follow).or_default();
                    if state.names != wanted {
                        let mut change = make(follow);
                        change.resource_names_subscribe = wanted.difference(&state.names).cloned().collect();
                        change.resource_names_unsubscribe = state.names.difference(&wanted).cloned().collect();
                        change.initial_resource_versions = state
                            .held
                            .iter()
                            .map(|(name, (version, _))| (name.clone(), version.clone()))
                            .collect();
                        state.names = wanted;
                        state.requested = true;
                        let _ = requests.send(change).await;
                    }
                }
            }
            () = descriptors.quiet() => descriptors.release(),
            _ = proxy.wait_for_shutdown() => return Ok(received_any),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn descriptors_stay_decoded_until_the_stream_has_been_quiet_for_the_linger() {
        let mut descriptors = LingeringDescriptors::default();
        let never = tokio::time::timeout(Duration::from_secs(3600), descriptors.quiet()).await;
        assert!(never.is_err(), "nothing held, nothing to release");

        let start = tokio::time::Instant::now();
        descriptors.hold();
        tokio::time::sleep(DESCRIPTORS_LINGER / 2).await;
        descriptors.hold(); // the next response of a burst
        descriptors.quiet().await;
        assert_eq!(start.elapsed(), DESCRIPTORS_LINGER / 2 + DESCRIPTORS_LINGER);
        assert!(descriptors.held.is_some());
        descriptors.release();
        assert!(descriptors.held.is_none());
        let never = tokio::time::timeout(Duration::from_secs(3600), descriptors.quiet()).await;
        assert!(never.is_err(), "released, not quiet again");
    }
}
