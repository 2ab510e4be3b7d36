//! Pilot's HTTP API (loopback by default): apply, delete, get, list and watch resources —
//! every write validated first, all or nothing — and istiod's debug endpoints
//! (`/debug/syncz`, `/debug/configz`, `/debug/registryz`, `/debug/config_dump`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bosun_api::load::Source;
use bosun_api::{Kind, Resource};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::context::PushContext;
use crate::store::{Store, StoreError};
use crate::translate::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ProxyResources, ROUTE_TYPE};
use crate::xds::SyncRegistry;

/// The longest a watch waits for a change.
const MAX_WATCH: Duration = Duration::from_secs(300);

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The config store.
    pub store: Store,
    /// Connected proxies.
    pub sync: Arc<SyncRegistry>,
    /// The current push context.
    pub contexts: watch::Receiver<Arc<PushContext>>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/ready", get(|| async { "ok" }))
        .route("/apis/v1/apply", post(apply))
        .route("/apis/v1/delete", post(delete_documents))
        .route("/apis/v1/watch", get(watch_changes))
        .route("/apis/v1/resources/{kind}", get(list))
        .route(
            "/apis/v1/resources/{kind}/{namespace}/{name}",
            get(get_one).delete(delete_one),
        )
        .route("/debug/syncz", get(syncz))
        .route("/debug/configz", get(configz))
        .route("/debug/registryz", get(registryz))
        .route("/debug/config_dump", get(config_dump))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    match &e {
        StoreError::Invalid(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "error": e.to_string(),
                "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::NamespaceMismatch { .. } | StoreError::InvalidName(_) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        StoreError::ClusterIpsExhausted(_) => error(StatusCode::CONFLICT, e.to_string()),
        StoreError::Io { .. } | StoreError::Serialize { .. } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

#[derive(Debug, Deserialize)]
struct WriteQuery {
    namespace: Option<String>,
    source: Option<String>,
}

async fn apply(
    State(state): State<ApiState>,
    Query(query): Query<WriteQuery>,
    body: String,
) -> Response {
    let source = Source::new(query.source.unwrap_or_else(|| "-".to_owned()), body);
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        store.apply_sources(&[source], query.namespace.as_deref())
    })
    .await;
    match result {
        Ok(Ok(outcome)) => axum::Json(json!({
            "results": outcome.iter().map(|(key, action)| json!({
                "kind": key.kind.info().name,
                "namespace": key.namespace,
                "name": key.name,
                "action": action,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn delete_documents(
    State(state): State<ApiState>,
    Query(query): Query<WriteQuery>,
    body: String,
) -> Response {
    let source = Source::new(query.source.unwrap_or_else(|| "-".to_owned()), body);
    let loaded = bosun_api::load::load_sources(&[source]);
    if !loaded.problems.is_empty() {
        return store_error(StoreError::Invalid(loaded.problems));
    }
    let keys: Vec<_> = loaded
        .loaded
        .iter()
        .map(|l| {
            let mut resource = l.resource.clone();
            if resource.kind().info().namespaced && resource.namespace().is_none() {
                resource.metadata_mut().namespace = Some(
                    query
                        .namespace
                        .clone()
                        .unwrap_or_else(|| crate::model::DEFAULT_NAMESPACE.to_owned()),
                );
            }
            crate::store::ResourceKey::of(&resource)
        })
        .collect();
    deleted(&state, keys).await
}

async fn deleted(state: &ApiState, keys: Vec<crate::store::ResourceKey>) -> Response {
    let store = state.store.clone();
    let names: Vec<Value> = keys
        .iter()
        .map(|k| json!({"kind": k.kind.info().name, "namespace": k.namespace, "name": k.name}))
        .collect();
    match tokio::task::spawn_blocking(move || store.delete(&keys)).await {
        Ok(Ok(())) => axum::Json(json!({ "deleted": names })).into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn kind_from_path(kind: &str) -> Result<Kind, Box<Response>> {
    Kind::from_cli_name(kind).ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            format!("the server doesn't have a resource type \"{kind}\""),
        ))
    })
}

fn key(kind: Kind, namespace: &str, name: &str) -> crate::store::ResourceKey {
    crate::store::ResourceKey {
        kind,
        namespace: if kind.info().namespaced {
            namespace.to_owned()
        } else {
            String::new()
        },
        name: name.to_owned(),
    }
}

async fn delete_one(
    State(state): State<ApiState>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Response {
    let kind = match kind_from_path(&kind) {
        Ok(kind) => kind,
        Err(response) => return *response,
    };
    deleted(&state, vec![key(kind, &namespace, &name)]).await
}

fn resource_json(resource: &Resource) -> Value {
    resource.to_json().unwrap_or(Value::Null)
}

async fn get_one(
    State(state): State<ApiState>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Response {
    let kind = match kind_from_path(&kind) {
        Ok(kind) => kind,
        Err(response) => return *response,
    };
    let key = key(kind, &namespace, &name);
    match state.store.snapshot().get(&key) {
        Some(stored) => axum::Json(resource_json(&stored.resource)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("{} \"{}\" not found", kind.info().plural, name),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    namespace: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    Path(kind): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let kind = match kind_from_path(&kind) {
        Ok(kind) => kind,
        Err(response) => return *response,
    };
    let snapshot = state.store.snapshot();
    let items: Vec<Value> = snapshot
        .of_kind(kind)
        .filter(|(key, _)| {
            query
                .namespace
                .as_deref()
                .is_none_or(|ns| key.namespace == ns)
        })
        .map(|(_, stored)| resource_json(&stored.resource))
        .collect();
    axum::Json(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": snapshot.revision.to_string()},
        "items": items,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct WatchQuery {
    since: u64,
    timeout_seconds: Option<u64>,
}

/// Long poll: answers as soon as there are changes after `since` (or when the timeout
/// passes, with none). 410 Gone when the changes are no longer all kept: list again.
async fn watch_changes(State(state): State<ApiState>, Query(query): Query<WatchQuery>) -> Response {
    let timeout = Duration::from_secs(query.timeout_seconds.unwrap_or(30)).min(MAX_WATCH);
    let mut revisions = state.store.subscribe();
    let _ = tokio::time::timeout(timeout, revisions.wait_for(|r| *r > query.since)).await;
    match state.store.events_since(query.since) {
        Some(events) => axum::Json(json!({
            "revision": state.store.snapshot().revision,
            "events": events.iter().map(|e| json!({
                "type": e.event_type,
                "revision": e.revision,
                "object": resource_json(&e.resource),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => error(
            StatusCode::GONE,
            format!("changes after revision {} are no longer kept", query.since),
        ),
    }
}

async fn syncz(State(state): State<ApiState>) -> Response {
    axum::Json(
        state
            .sync
            .connections()
            .iter()
            .map(|c| c.to_json())
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn configz(State(state): State<ApiState>) -> Response {
    let snapshot = state.store.snapshot();
    let items: Vec<Value> = snapshot
        .resources
        .values()
        .map(|stored| resource_json(&stored.resource))
        .collect();
    axum::Json(items).into_response()
}

async fn registryz(State(state): State<ApiState>) -> Response {
    let context = state.contexts.borrow().clone();
    let registry = &context.registry;
    let services: Vec<Value> = registry
        .services
        .iter()
        .map(|service| {
            let mut value = serde_json::to_value(&**service).unwrap_or(Value::Null);
            let endpoints: serde_json::Map<String, Value> = registry
                .endpoints
                .get(&service.id)
                .into_iter()
                .flatten()
                .map(|(port, eps)| {
                    (
                        port.to_string(),
                        serde_json::to_value(eps).unwrap_or(Value::Null),
                    )
                })
                .collect();
            value["endpoints"] = Value::Object(endpoints);
            value
        })
        .collect();
    axum::Json(json!({
        "revision": context.revision,
        "services": services,
        "workloads": registry.workloads.iter().map(|w| serde_json::to_value(&**w).unwrap_or(Value::Null)).collect::<Vec<_>>(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct DumpQuery {
    #[serde(rename = "proxyID")]
    proxy_id: String,
}

/// What pilot last generated for a connected proxy, in the shape of Envoy's `/config_dump`.
async fn config_dump(State(state): State<ApiState>, Query(query): Query<DumpQuery>) -> Response {
    let Some(connection) = state.sync.find(&query.proxy_id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("proxy {} is not connected", query.proxy_id),
        );
    };
    match config_dump_json(&connection.resources) {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Resources as Envoy's `/config_dump` shows them.
pub fn config_dump_json(resources: &ProxyResources) -> Result<Value, bosun_xds::ConfigError> {
    let _pool = bosun_xds::PoolGuard::new();
    let section = |type_url: &str, field: &str| -> Result<Vec<Value>, bosun_xds::ConfigError> {
        let mut entries = Vec::new();
        for resource in resources
            .of_type(type_url)
            .into_iter()
            .flat_map(|m| m.values())
        {
            let json = bosun_xds::any_to_json(&resource.any())?;
            entries.push(match type_url {
                LISTENER_TYPE => json!({
                    "name": resource.name,
                    "active_state": {"version_info": resource.version, field: json},
                }),
                _ => json!({"version_info": resource.version, field: json}),
            });
        }
        Ok(entries)
    };
    Ok(json!({
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "dynamic_active_clusters": section(CLUSTER_TYPE, "cluster")?,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": section(LISTENER_TYPE, "listener")?,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": section(ROUTE_TYPE, "route_config")?,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                "dynamic_endpoint_configs": section(ENDPOINT_TYPE, "endpoint_config")?,
            },
        ]
    }))
}
