//! The admin endpoint, as Envoy's: `/ready`, `/server_info`, `/config_dump`, `/clusters`,
//! `/listeners`, `/stats`, `/stats/prometheus`, `/logging`, `/drain_listeners`, `/quitquitquit`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bosun_xds::to_json;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::format::format_time;
use crate::server::{Origin, Proxy};
use crate::upstream::circuit::Priority;
use crate::upstream::{Health, Host};

/// The version string bosun proxy reports.
pub const VERSION: &str = concat!("bosun/", env!("CARGO_PKG_VERSION"));

/// Serves the admin endpoint on `address` until the proxy shuts down; returns the bound address.
pub async fn serve(proxy: Arc<Proxy>, address: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(proxy.clone());
    tokio::spawn(async move {
        let shutdown = async move { proxy.wait_for_shutdown().await };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "admin server failed");
        }
    });
    Ok(bound)
}

fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/", get(help))
        .route("/ready", get(ready))
        .route("/server_info", get(server_info))
        .route("/config_dump", get(config_dump))
        .route("/clusters", get(clusters))
        .route("/listeners", get(listeners))
        .route("/stats", get(stats))
        .route("/stats/prometheus", get(prometheus))
        .route("/logging", post(logging).get(method_not_allowed))
        .route(
            "/drain_listeners",
            post(drain_listeners).get(method_not_allowed),
        )
        .route("/quitquitquit", post(quit).get(method_not_allowed))
        .with_state(proxy)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn json_response(value: Value) -> Response {
    let body = serde_json::to_string_pretty(&value).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn help() -> Response {
    text(
        StatusCode::OK,
        "admin commands are:\n  /clusters\n  /config_dump\n  /drain_listeners (POST)\n  /listeners\n  \
         /logging (POST)\n  /quitquitquit (POST)\n  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n"
            .to_owned(),
    )
}

async fn method_not_allowed() -> Response {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        "This endpoint requires POST\n".to_owned(),
    )
}

fn state(proxy: &Proxy) -> &'static str {
    if proxy.is_initialized() {
        "LIVE"
    } else {
        "PRE_INITIALIZING"
    }
}

async fn ready(State(proxy): State<Arc<Proxy>>) -> Response {
    let status = if proxy.is_initialized() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, format!("{}\n", state(&proxy)))
}

fn uptime(proxy: &Proxy) -> String {
    format!("{}s", proxy.started.elapsed().as_secs())
}

async fn server_info(State(proxy): State<Arc<Proxy>>) -> Response {
    // Decoded on a thread of its own, not on this one's heap (see `bosun_xds::PoolGuard`).
    let _descriptors = bosun_xds::PoolGuard::new();
    let node = to_json(&proxy.node(), "envoy.config.core.v3.Node").unwrap_or(Value::Null);
    json_response(json!({
        "version": VERSION,
        "state": state(&proxy),
        "hot_restart_version": "disabled",
        "command_line_options": {},
        "node": node,
        "uptime_current_epoch": uptime(&proxy),
        "uptime_all_epochs": uptime(&proxy),
    }))
}

fn timestamp(time: SystemTime) -> String {
    format_time(time, "%Y-%m-%dT%H:%M:%E3SZ")
}

async fn config_dump(State(proxy): State<Arc<Proxy>>) -> Response {
    json_response(config_dump_value(&proxy))
}

/// The `/config_dump` document.
pub fn config_dump_value(proxy: &Proxy) -> Value {
    let _descriptors = bosun_xds::PoolGuard::new();
    let started = SystemTime::now() - proxy.started.elapsed();
    let bootstrap = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": to_json(&proxy.bootstrap, "envoy.config.bootstrap.v3.Bootstrap").unwrap_or(Value::Null),
        "last_updated": timestamp(started),
    });

    let mut static_clusters = Vec::new();
    let mut dynamic_clusters = Vec::new();
    let mut warming_clusters = Vec::new();
    let mut static_endpoints = Vec::new();
    let mut dynamic_endpoints = Vec::new();
    for view in proxy.cluster_views() {
        let cluster = to_json(
            view.cluster.config.as_ref(),
            "envoy.config.cluster.v3.Cluster",
        )
        .unwrap_or(Value::Null);
        let updated = timestamp(view.cluster.last_updated);
        match view.origin {
            Origin::Static => {
                static_clusters.push(json!({"cluster": cluster, "last_updated": updated}))
            }
            Origin::Dynamic if view.warming => warming_clusters.push(json!({
                "version_info": view.version, "cluster": cluster, "last_updated": updated,
            })),
            Origin::Dynamic => dynamic_clusters.push(json!({
                "version_info": view.version, "cluster": cluster, "last_updated": updated,
            })),
        }
        let assignment = match (&view.assignment, &view.cluster.config.load_assignment) {
            (Some((cla, version, updated)), _) => Some((cla.clone(), version.clone(), *updated)),
            (None, Some(cla)) => {
                Some((cla.clone(), view.version.clone(), view.cluster.last_updated))
            }
            (None, None) => None,
        };
        if let Some((cla, version, updated)) = assignment {
            let endpoint = to_json(&cla, "envoy.config.endpoint.v3.ClusterLoadAssignment")
                .unwrap_or(Value::Null);
            match view.origin {
                Origin::Static => static_endpoints.push(json!({"endpoint_config": endpoint, "last_updated": timestamp(updated)})),
                Origin::Dynamic => dynamic_endpoints.push(json!({
                    "version_info": version, "endpoint_config": endpoint, "last_updated": timestamp(updated),
                })),
            }
        }
    }
    let clusters = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        "version_info": proxy.version("cds"),
        "static_clusters": static_clusters,
        "dynamic_active_clusters": dynamic_clusters,
        "dynamic_warming_clusters": warming_clusters,
    });

    let mut static_listeners = Vec::new();
    let mut dynamic_listeners = Vec::new();
    for view in proxy.listener_views() {
        let state = |l: &crate::listener::ListenerConfig| {
            json!({
                "version_info": l.version,
                "listener": to_json(&l.config, "envoy.config.listener.v3.Listener").unwrap_or(Value::Null),
                "last_updated": timestamp(l.last_updated),
            })
        };
        match view.origin {
            Origin::Static => {
                if let Some(active) = &view.active {
                    let mut entry = state(active);
                    if let Value::Object(o) = &mut entry {
                        o.remove("version_info");
                    }
                    static_listeners.push(entry);
                }
            }
            Origin::Dynamic => {
                let mut entry = serde_json::Map::new();
                entry.insert("name".into(), Value::String(view.name.clone()));
                if let Some(active) = &view.active {
                    entry.insert("active_state".into(), state(active));
                }
                if let Some(warming) = &view.warming {
                    entry.insert("warming_state".into(), state(warming));
                }
                dynamic_listeners.push(Value::Object(entry));
            }
        }
    }
    let listeners = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
        "version_info": proxy.version("lds"),
        "static_listeners": static_listeners,
        "dynamic_listeners": dynamic_listeners,
    });

    let mut static_routes = Vec::new();
    let mut dynamic_routes = Vec::new();
    for (origin, version, updated, table) in proxy.route_views() {
        let route_config = to_json(&table.config, "envoy.config.route.v3.RouteConfiguration")
            .unwrap_or(Value::Null);
        match origin {
            Origin::Static => static_routes.push(json!({"route_config": route_config, "last_updated": timestamp(updated)})),
            Origin::Dynamic => dynamic_routes.push(json!({
                "version_info": version, "route_config": route_config, "last_updated": timestamp(updated),
            })),
        }
    }
    let routes = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        "static_route_configs": static_routes,
        "dynamic_route_configs": dynamic_routes,
    });
    let endpoints = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
        "static_endpoint_configs": static_endpoints,
        "dynamic_endpoint_configs": dynamic_endpoints,
    });
    json!({"configs": [bootstrap, clusters, listeners, routes, endpoints]})
}

#[derive(Debug, Deserialize)]
struct FormatQuery {
    format: Option<String>,
    filter: Option<String>,
    level: Option<String>,
}

async fn clusters(State(proxy): State<Arc<Proxy>>, Query(query): Query<FormatQuery>) -> Response {
    if query.format.as_deref() == Some("json") {
        let statuses: Vec<Value> = proxy
            .registry
            .clusters()
            .iter()
            .map(|cluster| {
                let hosts: Vec<Value> = cluster
                    .hosts()
                    .hosts
                    .iter()
                    .map(|h| {
                        json!({
                            "address": {"socket_address": {"address": h.address.ip().to_string(), "port_value": h.address.port()}},
                            "stats": [
                                {"name": "cx_active", "type": "GAUGE", "value": h.stats.cx_active.get().to_string()},
                                {"name": "cx_total", "value": h.stats.cx_total.get().to_string()},
                                {"name": "rq_total", "value": h.stats.rq_total.get().to_string()},
                                {"name": "rq_success", "value": h.stats.rq_success.get().to_string()},
                                {"name": "rq_error", "value": h.stats.rq_error.get().to_string()},
                            ],
                            "health_status": health_status_json(h),
                            "weight": h.weight,
                            "priority": h.priority,
                        })
                    })
                    .collect();
                json!({"name": cluster.name.as_ref(), "host_statuses": hosts})
            })
            .collect();
        return json_response(json!({"cluster_statuses": statuses}));
    }
    let mut out = String::new();
    // Envoy lists the clusters that take traffic.
    for view in proxy.cluster_views().into_iter().filter(|v| !v.warming) {
        let cluster = &view.cluster;
        let name = cluster.name.as_ref();
        let _ = writeln!(out, "{name}::observability_name::{name}");
        if cluster.outlier.is_some() {
            let _ = writeln!(out, "{name}::outlier::success_rate_average::-1");
            let _ = writeln!(out, "{name}::outlier::success_rate_ejection_threshold::-1");
            let _ = writeln!(
                out,
                "{name}::outlier::local_origin_success_rate_average::-1"
            );
            let _ = writeln!(
                out,
                "{name}::outlier::local_origin_success_rate_ejection_threshold::-1"
            );
        }
        for (label, priority) in [
            ("default_priority", Priority::Default),
            ("high_priority", Priority::High),
        ] {
            let t = cluster.breakers.thresholds(priority);
            let _ = writeln!(
                out,
                "{name}::{label}::max_connections::{}",
                t.connections.max()
            );
            let _ = writeln!(
                out,
                "{name}::{label}::max_pending_requests::{}",
                t.pending.max()
            );
            let _ = writeln!(out, "{name}::{label}::max_requests::{}", t.requests.max());
            let _ = writeln!(out, "{name}::{label}::max_retries::{}", t.retries.max());
        }
        let _ = writeln!(
            out,
            "{name}::added_via_api::{}",
            view.origin == Origin::Dynamic
        );
        for host in &cluster.hosts().hosts {
            let h = format!("{name}::{}", host.address);
            let s = &host.stats;
            for (stat, value) in [
                ("cx_active", s.cx_active.get().to_string()),
                ("cx_connect_fail", s.cx_connect_fail.get().to_string()),
                ("cx_total", s.cx_total.get().to_string()),
                ("rq_active", s.rq_active.get().to_string()),
                ("rq_error", s.rq_error.get().to_string()),
                ("rq_pending_active", s.rq_pending_active.get().to_string()),
                ("rq_success", s.rq_success.get().to_string()),
                ("rq_timeout", s.rq_timeout.get().to_string()),
                ("rq_total", s.rq_total.get().to_string()),
            ] {
                let _ = writeln!(out, "{h}::{stat}::{value}");
            }
            let (region, zone, sub_zone) = {
                let mut parts = host.locality.splitn(3, '/');
                (
                    parts.next().unwrap_or("").to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                )
            };
            let _ = writeln!(
                out,
                "{h}::hostname::{}",
                host.hostname.as_deref().unwrap_or("")
            );
            let _ = writeln!(out, "{h}::health_flags::{}", health_flags(host));
            let _ = writeln!(out, "{h}::weight::{}", host.weight);
            let _ = writeln!(out, "{h}::region::{region}");
            let _ = writeln!(out, "{h}::zone::{zone}");
            let _ = writeln!(out, "{h}::sub_zone::{sub_zone}");
            let _ = writeln!(out, "{h}::canary::false");
            let _ = writeln!(out, "{h}::priority::{}", host.priority);
            let (success_rate, local_success_rate) = host.outlier.success_rates();
            let _ = writeln!(out, "{h}::success_rate::{success_rate}");
            let _ = writeln!(out, "{h}::local_origin_success_rate::{local_success_rate}");
        }
    }
    text(StatusCode::OK, out)
}

/// Envoy's `health_flags` text: `healthy`, or the failing flags in Envoy's order.
fn health_flags(host: &Host) -> String {
    let mut flags = String::new();
    if host.failed_active_health_check() {
        flags.push_str("/failed_active_hc");
    }
    if host.failed_outlier_check() {
        flags.push_str("/failed_outlier_check");
    }
    match host.health {
        Health::Healthy => {}
        Health::Unhealthy => flags.push_str("/failed_eds_health"),
        Health::Degraded => flags.push_str("/degraded_eds_health"),
    }
    if flags.is_empty() {
        "healthy".to_owned()
    } else {
        flags
    }
}

/// Envoy's `health_status` object of `/clusters?format=json`.
fn health_status_json(host: &Host) -> Value {
    let mut status = json!({"eds_health_status": health_name(host.health)});
    if host.failed_active_health_check() {
        status["failed_active_health_check"] = json!(true);
    }
    if host.failed_outlier_check() {
        status["failed_outlier_check"] = json!(true);
    }
    status
}

fn health_name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "HEALTHY",
        Health::Degraded => "DEGRADED",
        Health::Unhealthy => "UNHEALTHY",
    }
}

async fn listeners(State(proxy): State<Arc<Proxy>>, Query(query): Query<FormatQuery>) -> Response {
    let views = proxy.listener_views();
    if query.format.as_deref() == Some("json") {
        let statuses: Vec<Value> = views
            .iter()
            .filter_map(|v| v.active.as_ref().map(|l| (l, v.bound.unwrap_or(l.address))))
            .map(|(l, address)| {
                json!({"name": l.name, "local_address": {"socket_address": {
                    "address": address.ip().to_string(), "port_value": address.port()}}})
            })
            .collect();
        return json_response(json!({"listener_statuses": statuses}));
    }
    let mut out = String::new();
    for view in views {
        if let Some(active) = view.active {
            let _ = writeln!(
                out,
                "{}::{}",
                view.name,
                view.bound.unwrap_or(active.address)
            );
        }
    }
    text(StatusCode::OK, out)
}

async fn stats(State(proxy): State<Arc<Proxy>>, Query(query): Query<FormatQuery>) -> Response {
    let mut out = proxy.stats.render_text(query.filter.as_deref());
    if query.filter.is_none() {
        let _ = writeln!(out, "server.uptime: {}", proxy.started.elapsed().as_secs());
        let _ = writeln!(out, "server.state: {}", u8::from(!proxy.is_initialized()));
    }
    text(StatusCode::OK, out)
}

async fn prometheus(State(proxy): State<Arc<Proxy>>) -> Response {
    let mut out = proxy.stats.render_prometheus();
    let _ = writeln!(out, "# TYPE envoy_server_uptime gauge");
    let _ = writeln!(
        out,
        "envoy_server_uptime {}",
        proxy.started.elapsed().as_secs()
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

async fn logging(State(proxy): State<Arc<Proxy>>, Query(query): Query<FormatQuery>) -> Response {
    let Some(level) = query.level else {
        return text(
            StatusCode::OK,
            "usage: POST /logging?level=<trace|debug|info|warning|error|critical|off>\n".to_owned(),
        );
    };
    let setter = proxy
        .set_log_level
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match setter.as_ref() {
        None => text(
            StatusCode::OK,
            "log level changes are not available\n".to_owned(),
        ),
        Some(set) => match set(&level) {
            Ok(()) => text(StatusCode::OK, format!("active loggers:\n  all: {level}\n")),
            Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        },
    }
}

async fn drain_listeners(State(proxy): State<Arc<Proxy>>) -> Response {
    proxy.drain_listeners();
    text(StatusCode::OK, "OK\n".to_owned())
}

async fn quit(State(proxy): State<Arc<Proxy>>) -> Response {
    proxy.request_shutdown();
    text(StatusCode::OK, "OK\n".to_owned())
}
