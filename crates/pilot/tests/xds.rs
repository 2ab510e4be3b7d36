//! The ADS server, spoken to directly: state of the world and delta, ACK and NACK, stale
//! nonces, and pushes that carry only what changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bosun_api::load::Source;
use bosun_pilot::node::json_to_struct;
use bosun_pilot::translate::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use bosun_pilot::xds::SyncState;
use bosun_pilot::{Pilot, PilotOptions};
use bosun_xds::pb::envoy::config::core::v3::Node;
use bosun_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use bosun_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use bosun_xds::pb::google::rpc::Status;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const SERVICES: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, labels: {app: reviews}}
spec: {containers: [{name: app, image: x}]}
status: {podIP: 10.0.0.1, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: client-1, labels: {app: client}}
spec: {containers: [{name: app, image: x}]}
status: {podIP: 10.0.0.9, phase: Running}
";

const NEW_POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: reviews-2, labels: {app: reviews}}
spec: {containers: [{name: app, image: x}]}
status: {podIP: 10.0.0.2, phase: Running}
";

const REVIEWS_VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: 3s
    route:
    - destination: {host: reviews}
";

async fn pilot() -> Pilot {
    let any = "127.0.0.1:0".parse().unwrap();
    let pilot = Pilot::start(PilotOptions {
        xds_address: any,
        http_address: any,
        debounce: Duration::from_millis(20),
        ..PilotOptions::default()
    })
    .await
    .unwrap();
    apply(&pilot, SERVICES);
    wait_revision(&pilot).await;
    pilot
}

fn apply(pilot: &Pilot, yaml: &str) {
    pilot
        .store()
        .apply_sources(&[Source::new("test.yaml", yaml)], None)
        .unwrap();
}

/// Waits until the push context has caught up with the store.
async fn wait_revision(pilot: &Pilot) {
    let revision = pilot.store().snapshot().revision;
    let mut contexts = pilot.contexts();
    tokio::time::timeout(
        Duration::from_secs(5),
        contexts.wait_for(|c| c.revision >= revision),
    )
    .await
    .expect("a push")
    .unwrap();
}

fn node() -> Node {
    let metadata = serde_json::json!({"NAMESPACE": "default", "LABELS": {"app": "client"}});
    Node {
        id: "sidecar~10.0.0.9~client-1.default~default.svc.cluster.local".to_owned(),
        metadata: metadata.as_object().map(json_to_struct),
        ..Default::default()
    }
}

struct Sotw {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

impl Sotw {
    async fn connect(pilot: &Pilot) -> Sotw {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://{}", pilot.xds_address()))
                .await
                .unwrap();
        let (requests, receiver) = mpsc::channel(16);
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(receiver))
            .await
            .unwrap()
            .into_inner();
        Sotw {
            requests,
            responses,
        }
    }

    async fn send(
        &self,
        type_url: &str,
        names: &[&str],
        reply_to: Option<&DiscoveryResponse>,
        error: Option<&str>,
    ) {
        self.requests
            .send(DiscoveryRequest {
                node: Some(node()),
                type_url: type_url.to_owned(),
                resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
                version_info: reply_to.map(|r| r.version_info.clone()).unwrap_or_default(),
                response_nonce: reply_to.map(|r| r.nonce.clone()).unwrap_or_default(),
                error_detail: error.map(|message| Status {
                    code: 3,
                    message: message.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), self.responses.next())
            .await
            .expect("a response")
            .unwrap()
            .unwrap()
    }

    async fn nothing_for(&mut self, wait: Duration) {
        if let Ok(Some(response)) = tokio::time::timeout(wait, self.responses.next()).await {
            panic!(
                "unexpected push of {}",
                response.map(|r| r.type_url).unwrap_or_default()
            );
        }
    }
}

#[tokio::test]
async fn state_of_the_world_pushes_only_what_changed() {
    let pilot = pilot().await;
    let mut ads = Sotw::connect(&pilot).await;
    ads.send(CLUSTER_TYPE, &[], None, None).await;
    let clusters = ads.next().await;
    assert_eq!(clusters.type_url, CLUSTER_TYPE);
    assert!(
        clusters.resources.len() >= 3,
        "reviews, BlackHole, Passthrough…"
    );
    ads.send(CLUSTER_TYPE, &[], Some(&clusters), None).await;
    let eds_name = "outbound|9080||reviews.default.svc.cluster.local";
    ads.send(ENDPOINT_TYPE, &[eds_name], None, None).await;
    let endpoints = ads.next().await;
    assert_eq!(endpoints.resources.len(), 1);
    ads.send(ENDPOINT_TYPE, &[eds_name], Some(&endpoints), None)
        .await;
    ads.send(LISTENER_TYPE, &[], None, None).await;
    let listeners = ads.next().await;
    ads.send(LISTENER_TYPE, &[], Some(&listeners), None).await;
    ads.send(ROUTE_TYPE, &["9080"], None, None).await;
    let routes = ads.next().await;
    assert_eq!(routes.resources.len(), 1);
    ads.send(ROUTE_TYPE, &["9080"], Some(&routes), None).await;
    ads.nothing_for(Duration::from_millis(200)).await;

    // A new endpoint: EDS alone is pushed.
    apply(&pilot, NEW_POD);
    let push = ads.next().await;
    assert_eq!(push.type_url, ENDPOINT_TYPE);
    assert_ne!(push.version_info, endpoints.version_info);
    ads.send(ENDPOINT_TYPE, &[eds_name], Some(&push), None)
        .await;
    ads.nothing_for(Duration::from_millis(200)).await;

    // A VirtualService: RDS alone.
    apply(&pilot, REVIEWS_VS);
    let push = ads.next().await;
    assert_eq!(push.type_url, ROUTE_TYPE);
    ads.send(ROUTE_TYPE, &["9080"], Some(&push), None).await;
    ads.nothing_for(Duration::from_millis(200)).await;

    let status = pilot.sync().find("client-1.default").unwrap();
    for type_url in [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] {
        assert_eq!(status.state(type_url), SyncState::Synced, "{type_url}");
    }
    pilot.shutdown().await;
}

const RATINGS: &str = "apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: ratings-1, labels: {app: ratings}}
spec: {containers: [{name: app, image: x}]}
status: {podIP: 10.0.0.5, phase: Running}
";

#[tokio::test]
async fn an_endpoint_push_carries_only_the_assignments_that_changed() {
    let pilot = pilot().await;
    apply(&pilot, RATINGS);
    wait_revision(&pilot).await;
    let mut ads = Sotw::connect(&pilot).await;
    ads.send(CLUSTER_TYPE, &[], None, None).await;
    let clusters = ads.next().await;
    ads.send(CLUSTER_TYPE, &[], Some(&clusters), None).await;
    let reviews = "outbound|9080||reviews.default.svc.cluster.local";
    let ratings = "outbound|9080||ratings.default.svc.cluster.local";
    ads.send(ENDPOINT_TYPE, &[ratings, reviews], None, None)
        .await;
    let endpoints = ads.next().await;
    assert_eq!(
        endpoints.resources.len(),
        2,
        "a request gets everything it names"
    );
    ads.send(ENDPOINT_TYPE, &[ratings, reviews], Some(&endpoints), None)
        .await;

    apply(&pilot, NEW_POD);
    let push = ads.next().await;
    assert_eq!(push.type_url, ENDPOINT_TYPE);
    let names: Vec<String> = push
        .resources
        .iter()
        .map(|any| {
            use prost::Message;
            bosun_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment::decode(
                any.value.as_slice(),
            )
            .unwrap()
            .cluster_name
        })
        .collect();
    assert_eq!(names, [reviews], "ratings did not change");
    assert_ne!(push.version_info, endpoints.version_info);
    ads.send(ENDPOINT_TYPE, &[ratings, reviews], Some(&push), None)
        .await;
    ads.nothing_for(Duration::from_millis(200)).await;
    let status = pilot.sync().find("client-1.default").unwrap();
    assert_eq!(status.types[ENDPOINT_TYPE].state(), SyncState::Synced);
}

#[tokio::test]
async fn a_nack_is_recorded_and_not_answered_and_stale_nonces_are_ignored() {
    let pilot = pilot().await;
    let mut ads = Sotw::connect(&pilot).await;
    ads.send(LISTENER_TYPE, &[], None, None).await;
    let listeners = ads.next().await;
    ads.send(
        LISTENER_TYPE,
        &[],
        Some(&listeners),
        Some("listener \"x\": no"),
    )
    .await;
    ads.nothing_for(Duration::from_millis(200)).await;
    let status = pilot.sync().find("client-1.default").unwrap();
    assert_eq!(status.state(LISTENER_TYPE), SyncState::Nacked);
    assert_eq!(
        status.types[LISTENER_TYPE].last_nack.as_deref(),
        Some("listener \"x\": no")
    );
    // A reply to an old nonce changes nothing.
    let mut stale = listeners.clone();
    stale.nonce = "0-0".to_owned();
    ads.send(LISTENER_TYPE, &[], Some(&stale), None).await;
    ads.nothing_for(Duration::from_millis(100)).await;
    let status = pilot.sync().find("client-1.default").unwrap();
    assert_eq!(status.state(LISTENER_TYPE), SyncState::Nacked);
    // An ACK of the current nonce clears it.
    ads.send(LISTENER_TYPE, &[], Some(&listeners), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = pilot.sync().find("client-1.default").unwrap();
    assert_eq!(status.state(LISTENER_TYPE), SyncState::Synced);
    assert_eq!(status.state(ROUTE_TYPE), SyncState::NotSent);
    pilot.shutdown().await;
}

#[tokio::test]
async fn a_first_request_without_a_node_is_refused() {
    let pilot = pilot().await;
    let mut ads = Sotw::connect(&pilot).await;
    ads.requests
        .send(DiscoveryRequest {
            type_url: CLUSTER_TYPE.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), ads.responses.next())
        .await
        .unwrap();
    let status = answer.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("node"), "{}", status.message());
    pilot.shutdown().await;
}

#[tokio::test]
async fn delta_sends_changes_and_removals() {
    let pilot = pilot().await;
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", pilot.xds_address()))
            .await
            .unwrap();
    let (requests, receiver) = mpsc::channel(16);
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let mut next = async || -> DeltaDiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), responses.next())
            .await
            .expect("a response")
            .unwrap()
            .unwrap()
    };
    let send = |type_url: &str, subscribe: &[&str], nonce: &str| {
        let request = DeltaDiscoveryRequest {
            node: Some(node()),
            type_url: type_url.to_owned(),
            resource_names_subscribe: subscribe.iter().map(|s| (*s).to_owned()).collect(),
            response_nonce: nonce.to_owned(),
            ..Default::default()
        };
        let requests = requests.clone();
        async move { requests.send(request).await.unwrap() }
    };
    send(ROUTE_TYPE, &["9080"], "").await;
    let first = next().await;
    assert_eq!(first.resources.len(), 1);
    let version = first.resources[0].version.clone();
    send(ROUTE_TYPE, &[], &first.nonce).await;

    apply(&pilot, REVIEWS_VS);
    let changed = next().await;
    assert_eq!(changed.type_url, ROUTE_TYPE);
    assert_eq!(changed.resources.len(), 1);
    assert_ne!(changed.resources[0].version, version);
    send(ROUTE_TYPE, &[], &changed.nonce).await;

    // The service goes away: its port's route table goes with it.
    pilot
        .store()
        .delete(&[bosun_pilot::store::ResourceKey {
            kind: bosun_api::Kind::Service,
            namespace: "default".to_owned(),
            name: "reviews".to_owned(),
        }])
        .unwrap();
    let removed = next().await;
    assert_eq!(removed.removed_resources, vec!["9080".to_owned()]);
    assert!(removed.resources.is_empty());
    pilot.shutdown().await;
}
