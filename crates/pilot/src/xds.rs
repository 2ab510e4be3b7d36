//! The ADS server: state-of-the-world and delta, one task per connection. Each connection
//! keeps what its proxy asked for and what it was sent; on every new push context it
//! regenerates its resources (mostly shared, see [`crate::translate`]) and sends only the
//! types — and, over delta, only the resources — that changed. ACKs and NACKs are recorded
//! for `proxy-status`.

mod service;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, Resource,
};
use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

pub use service::{AdsService, EncodedDiscoveryResponse};
pub use status::{ConnectionStatus, SyncRegistry, SyncState, TypeStatus};

use crate::context::PushContext;
use crate::node::ProxyNode;
use crate::translate::{
    CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, ProxyResources, ROUTE_TYPE,
    SERVED_TYPES, TypeResources, XdsResource, generate,
};

/// The ADS service, to be served by tonic.
#[derive(Clone, Debug)]
pub struct AdsServer {
    contexts: watch::Receiver<Arc<PushContext>>,
    registry: Arc<SyncRegistry>,
    next_id: Arc<AtomicU64>,
}

impl AdsServer {
    /// A server that pushes every context `contexts` publishes.
    pub fn new(contexts: watch::Receiver<Arc<PushContext>>, registry: Arc<SyncRegistry>) -> Self {
        AdsServer {
            contexts,
            registry,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The tonic service.
    pub fn into_service(self) -> AdsService {
        AdsService::new(self)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// What one type's client holds and wants.
#[derive(Debug, Default)]
struct TypeState {
    /// The client asked for this type at least once.
    requested: bool,
    /// All resources of the type, or only `names`.
    wildcard: bool,
    names: BTreeSet<String>,
    /// The nonce of the last response.
    nonce: String,
    /// State of the world: the version of the last response.
    version: String,
    /// Delta: what the client holds, name → version.
    held: BTreeMap<String, String>,
    /// State of the world: what the last response was made from, to tell what changed.
    sent: Option<TypeResources>,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// One connected proxy.
struct Connection {
    id: u64,
    node: Option<ProxyNode>,
    context: Arc<PushContext>,
    resources: Arc<ProxyResources>,
    types: BTreeMap<String, TypeState>,
    nonce: u64,
    registry: Arc<SyncRegistry>,
    delta: bool,
}

/// Whether a type is one pilot serves, and whether its default subscription is wildcard.
fn is_wildcard_type(type_url: &str) -> bool {
    type_url == CLUSTER_TYPE || type_url == LISTENER_TYPE || type_url == NAME_TABLE_TYPE
}

fn served(type_url: &str) -> bool {
    SERVED_TYPES.contains(&type_url)
}

/// How much of a type a state-of-the-world response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sotw {
    /// Everything the client wants (a request, or a push that must be complete).
    All,
    /// A push: nothing when nothing changed; else everything for types whose responses must
    /// be complete (listeners, clusters, the name table), and only what changed for the others
    /// (endpoints, routes), as the xDS protocol allows and Istio does.
    Changed,
}

/// The version of a response: the previous version and what the response carries, hashed.
fn next_version<'a>(
    previous: &str,
    resources: impl Iterator<Item = &'a Arc<XdsResource>>,
) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    previous.hash(&mut hasher);
    for resource in resources {
        resource.name.hash(&mut hasher);
        resource.version.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

fn set_version(resources: &TypeResources, state: &TypeState) -> String {
    next_version("", resources.values().filter(|r| state.wants(&r.name)))
}

impl Connection {
    fn new(id: u64, context: Arc<PushContext>, registry: Arc<SyncRegistry>, delta: bool) -> Self {
        Connection {
            id,
            node: None,
            context,
            resources: Arc::new(ProxyResources::default()),
            types: BTreeMap::new(),
            nonce: 0,
            registry,
            delta,
        }
    }

    /// Reads the node from the first request; every later request may omit it.
    fn identify(
        &mut self,
        node: Option<&bosun_xds::pb::envoy::config::core::v3::Node>,
    ) -> Result<(), tonic::Status> {
        if self.node.is_some() {
            return Ok(());
        }
        let proxy = ProxyNode::from_node(node)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        self.resources = Arc::new(generate(&self.context, &proxy));
        self.registry.connect(
            self.id,
            proxy.clone(),
            self.delta,
            self.resources.clone(),
            self.context.revision,
        );
        tracing::info!(proxy = %proxy.id, delta = self.delta, "proxy connected");
        self.node = Some(proxy);
        Ok(())
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        format!("{}-{}", self.id, self.nonce)
    }

    /// Records an ACK or NACK. Returns false for a response to an outdated nonce, which is
    /// ignored as Envoy's protocol asks.
    fn record_reply(&mut self, type_url: &str, nonce: &str, error: Option<String>) -> bool {
        let Some(state) = self.types.get(type_url) else {
            return nonce.is_empty();
        };
        if nonce.is_empty() {
            return true;
        }
        if nonce != state.nonce {
            return false;
        }
        if let Some(message) = &error {
            tracing::warn!(
                proxy = self.node.as_ref().map_or("", |n| n.id.as_str()),
                type_url,
                error = %message,
                "proxy rejected a push"
            );
        }
        self.registry.reply(self.id, type_url, nonce, error);
        true
    }

    /// Regenerates for a new context. Returns whether anything the proxy holds changed.
    fn update_context(&mut self, context: Arc<PushContext>) {
        self.context = context;
        if let Some(node) = &self.node {
            self.resources = Arc::new(generate(&self.context, node));
            self.registry
                .update_resources(self.id, self.resources.clone(), self.context.revision);
        }
    }

    /// A state-of-the-world response of one type, or `None` when a push finds nothing new
    /// for the client.
    fn sotw_response(&mut self, type_url: &str, scope: Sotw) -> Option<EncodedDiscoveryResponse> {
        let resources = self.resources.clone();
        let current = resources.of_type(type_url)?;
        let state = self.types.get_mut(type_url)?;
        let previous = state.sent.replace(current.clone());
        let partial_allowed = type_url == ENDPOINT_TYPE || type_url == ROUTE_TYPE;
        let carried: Vec<&Arc<XdsResource>> = match (scope, &previous) {
            (Sotw::Changed, Some(previous)) if previous.same_as(current) => return None,
            (Sotw::Changed, Some(previous)) if partial_allowed => {
                let changed: Vec<_> = current
                    .changed_since(previous)
                    .filter(|r| state.wants(&r.name))
                    .collect();
                if changed.is_empty() {
                    return None;
                }
                changed
            }
            _ => current.values().filter(|r| state.wants(&r.name)).collect(),
        };
        let version = match scope {
            Sotw::All => set_version(current, state),
            Sotw::Changed => next_version(&state.version, carried.iter().copied()),
        };
        self.nonce += 1;
        let nonce = format!("{}-{}", self.id, self.nonce);
        state.version.clone_from(&version);
        state.nonce.clone_from(&nonce);
        let response = EncodedDiscoveryResponse {
            version_info: version.clone(),
            resources: carried.iter().map(|r| r.encoded_any.clone()).collect(),
            type_url: type_url.to_owned(),
            nonce: nonce.clone(),
        };
        self.registry.sent(self.id, type_url, &nonce, &version);
        Some(response)
    }

    /// A delta response with what changed since what the client holds, or `None` when
    /// nothing did (and `always` is false).
    fn delta_response(&mut self, type_url: &str, always: bool) -> Option<DeltaDiscoveryResponse> {
        let resources = self.resources.clone();
        let map = resources.of_type(type_url)?;
        let nonce = self.next_nonce();
        let state = self.types.get_mut(type_url)?;
        let mut updated = Vec::new();
        for (name, resource) in map.iter() {
            if state.wants(name) && state.held.get(name) != Some(&resource.version) {
                updated.push(Resource {
                    name: name.clone(),
                    version: resource.version.clone(),
                    resource: Some(resource.any()),
                    ..Default::default()
                });
                state.held.insert(name.clone(), resource.version.clone());
            }
        }
        let removed: Vec<String> = state
            .held
            .keys()
            .filter(|name| !map.contains_key(name) || !state.wants(name))
            .cloned()
            .collect();
        for name in &removed {
            state.held.remove(name);
        }
        if updated.is_empty() && removed.is_empty() && !always {
            return None;
        }
        state.nonce.clone_from(&nonce);
        let version = set_version(map, state);
        state.version.clone_from(&version);
        self.registry.sent(self.id, type_url, &nonce, &version);
        Some(DeltaDiscoveryResponse {
            system_version_info: version,
            resources: updated,
            type_url: type_url.to_owned(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }

    /// Handles a state-of-the-world request; returns the response to send, if any.
    fn on_sotw_request(
        &mut self,
        request: DiscoveryRequest,
    ) -> Result<Option<EncodedDiscoveryResponse>, tonic::Status> {
        self.identify(request.node.as_ref())?;
        let type_url = request.type_url.as_str();
        if !served(type_url) {
            return Ok(None);
        }
        let error = request.error_detail.as_ref().map(|e| e.message.clone());
        let nacked = error.is_some();
        if !self.record_reply(type_url, &request.response_nonce, error) {
            return Ok(None);
        }
        let state = self.types.entry(type_url.to_owned()).or_default();
        // Every ACK repeats the subscription, a thousand names for EDS: when it comes sorted
        // (as from bosun's proxy) and unchanged, it is compared without building a set.
        let names_changed = if request.resource_names.iter().eq(state.names.iter()) {
            false
        } else {
            let names: BTreeSet<String> = request.resource_names.iter().cloned().collect();
            let differ = names != state.names;
            state.names = names;
            differ
        };
        let wildcard =
            state.names.is_empty() && is_wildcard_type(type_url) || state.names.contains("*");
        let first = !state.requested;
        let changed = names_changed || state.wildcard != wildcard;
        state.requested = true;
        state.wildcard = wildcard;
        if nacked && !changed {
            // The proxy keeps its last good config; nothing new to send until a change.
            return Ok(None);
        }
        if first || changed || request.response_nonce.is_empty() {
            return Ok(self.sotw_response(type_url, Sotw::All));
        }
        Ok(None)
    }

    /// Handles a delta request; returns the response to send, if any.
    fn on_delta_request(
        &mut self,
        request: DeltaDiscoveryRequest,
    ) -> Result<Option<DeltaDiscoveryResponse>, tonic::Status> {
        self.identify(request.node.as_ref())?;
        let type_url = request.type_url.clone();
        if !served(&type_url) {
            return Ok(None);
        }
        let error = request.error_detail.as_ref().map(|e| e.message.clone());
        if !self.record_reply(&type_url, &request.response_nonce, error) {
            return Ok(None);
        }
        let state = self.types.entry(type_url.clone()).or_default();
        let first = !state.requested;
        if first {
            state.requested = true;
            state.wildcard =
                request.resource_names_subscribe.is_empty() && is_wildcard_type(&type_url);
            state.held = request
                .initial_resource_versions
                .clone()
                .into_iter()
                .collect();
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.names.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(name);
            }
            state.held.remove(name);
        }
        let subscription_changed = !request.resource_names_subscribe.is_empty()
            || !request.resource_names_unsubscribe.is_empty();
        if first || subscription_changed {
            return Ok(self.delta_response(&type_url, first));
        }
        Ok(None)
    }

    /// The responses of a push, in order. A cluster that changed is warmed again by Envoy,
    /// which waits for its endpoints before it ACKs: they are sent again even when they did
    /// not change (xDS protocol, "eventual consistency considerations").
    fn sotw_push(&mut self) -> Vec<EncodedDiscoveryResponse> {
        let mut responses = Vec::new();
        let mut clusters_changed = false;
        for type_url in self.requested_types() {
            let scope = if type_url == ENDPOINT_TYPE && clusters_changed {
                Sotw::All
            } else {
                Sotw::Changed
            };
            if let Some(response) = self.sotw_response(type_url, scope) {
                clusters_changed |= type_url == CLUSTER_TYPE;
                responses.push(response);
            }
        }
        responses
    }

    /// Like [`Connection::sotw_push`], over delta: the endpoints of every cluster sent are
    /// sent again.
    fn delta_push(&mut self) -> Vec<DeltaDiscoveryResponse> {
        let mut responses = Vec::new();
        for type_url in self.requested_types() {
            if let Some(response) = self.delta_response(type_url, false) {
                if type_url == CLUSTER_TYPE {
                    if let Some(endpoints) = self.types.get_mut(ENDPOINT_TYPE) {
                        for cluster in &response.resources {
                            endpoints.held.remove(&cluster.name);
                        }
                    }
                }
                responses.push(response);
            }
        }
        responses
    }

    fn requested_types(&self) -> Vec<&'static str> {
        SERVED_TYPES
            .iter()
            .copied()
            .filter(|t| self.types.get(*t).is_some_and(|s| s.requested))
            .collect()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.registry.disconnect(self.id);
        if let Some(node) = &self.node {
            tracing::info!(proxy = %node.id, "proxy disconnected");
        }
    }
}

impl AdsServer {
    /// A state-of-the-world ADS stream: the responses to `requests` and to every push.
    fn stream_aggregated_resources(
        &self,
        mut requests: tonic::Streaming<DiscoveryRequest>,
    ) -> mpsc::Receiver<Result<EncodedDiscoveryResponse, tonic::Status>> {
        let (sender, receiver) = mpsc::channel(16);
        let mut contexts = self.contexts.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let context = contexts.borrow_and_update().clone();
        let mut connection = Connection::new(id, context, self.registry.clone(), false);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    request = requests.next() => {
                        let request = match request {
                            Some(Ok(request)) => request,
                            Some(Err(status)) => {
                                tracing::debug!(%status, "xDS stream ended");
                                break;
                            }
                            None => break,
                        };
                        match connection.on_sotw_request(request) {
                            Ok(Some(response)) => {
                                if sender.send(Ok(response)).await.is_err() {
                                    break;
                                }
                            }
                            Ok(None) => {}
                            Err(status) => {
                                let _ = sender.send(Err(status)).await;
                                break;
                            }
                        }
                    }
                    changed = contexts.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let context = contexts.borrow_and_update().clone();
                        connection.update_context(context);
                        for response in connection.sotw_push() {
                            if sender.send(Ok(response)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        receiver
    }

    /// A delta ADS stream.
    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<ResponseStream<DeltaDiscoveryResponse>>, tonic::Status> {
        let mut requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let mut contexts = self.contexts.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let context = contexts.borrow_and_update().clone();
        let mut connection = Connection::new(id, context, self.registry.clone(), true);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    request = requests.next() => {
                        let request = match request {
                            Some(Ok(request)) => request,
                            Some(Err(status)) => {
                                tracing::debug!(%status, "delta xDS stream ended");
                                break;
                            }
                            None => break,
                        };
                        match connection.on_delta_request(request) {
                            Ok(Some(response)) => {
                                if sender.send(Ok(response)).await.is_err() {
                                    break;
                                }
                            }
                            Ok(None) => {}
                            Err(status) => {
                                let _ = sender.send(Err(status)).await;
                                break;
                            }
                        }
                    }
                    changed = contexts.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let context = contexts.borrow_and_update().clone();
                        connection.update_context(context);
                        for response in connection.delta_push() {
                            if sender.send(Ok(response)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            receiver,
        ))))
    }
}
