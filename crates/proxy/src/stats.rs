//! Envoy-named counters and gauges (`cluster.<name>.upstream_rq_total`, …).
//!
//! Handles are looked up by name once, when configuration is built; the request path only
//! touches atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Increments a gauge for as long as the guard lives.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<String, Counter>,
    gauges: BTreeMap<String, Gauge>,
}

/// All stats of a proxy, by name.
#[derive(Debug, Default)]
pub struct Stats {
    registry: Mutex<Registry>,
}

/// A stat's value, for the admin endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatValue {
    /// A counter.
    Counter(u64),
    /// A gauge.
    Gauge(i64),
}

impl Stats {
    /// A new, empty set of stats.
    pub fn new() -> Arc<Self> {
        Arc::new(Stats::default())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counter named `name`, created at zero if new.
    pub fn counter(&self, name: &str) -> Counter {
        self.registry()
            .counters
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The gauge named `name`, created at zero if new.
    pub fn gauge(&self, name: &str) -> Gauge {
        self.registry()
            .gauges
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Every stat, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, StatValue)> {
        let registry = self.registry();
        let mut all: Vec<(String, StatValue)> = registry
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), StatValue::Counter(v.get())))
            .chain(
                registry
                    .gauges
                    .iter()
                    .map(|(k, v)| (k.clone(), StatValue::Gauge(v.get()))),
            )
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Envoy's `/stats` text: `name: value` per line.
    pub fn render_text(&self, filter: Option<&str>) -> String {
        let mut out = String::new();
        for (name, value) in self.snapshot() {
            if filter.is_some_and(|f| !name.contains(f)) {
                continue;
            }
            match value {
                StatValue::Counter(v) => {
                    let _ = writeln!(out, "{name}: {v}");
                }
                StatValue::Gauge(v) => {
                    let _ = writeln!(out, "{name}: {v}");
                }
            }
        }
        out
    }

    /// Envoy's `/stats/prometheus` text, with Envoy's tag extraction for cluster, HTTP and
    /// listener stats (`envoy_cluster_upstream_rq_total{envoy_cluster_name="x"}`).
    pub fn render_prometheus(&self) -> String {
        let mut families: BTreeMap<String, (bool, Vec<(String, String)>)> = BTreeMap::new();
        for (name, value) in self.snapshot() {
            let (family, labels) = prometheus_name(&name);
            let (is_counter, text) = match value {
                StatValue::Counter(v) => (true, v.to_string()),
                StatValue::Gauge(v) => (false, v.to_string()),
            };
            families
                .entry(family)
                .or_insert_with(|| (is_counter, Vec::new()))
                .1
                .push((labels, text));
        }
        let mut out = String::new();
        for (family, (is_counter, samples)) in families {
            let kind = if is_counter { "counter" } else { "gauge" };
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{family}{labels} {value}");
            }
        }
        out
    }
}

/// Splits an Envoy stat name into a Prometheus family and labels, as Envoy's default tag
/// extractors do for the prefixes Bosun emits.
fn prometheus_name(name: &str) -> (String, String) {
    let sanitize = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let tagged = |prefix: &str, tag: &str, rest: &str| -> Option<(String, String)> {
        let (value, stat) = split_tag_value(rest)?;
        Some((
            format!("envoy_{prefix}_{}", sanitize(stat)),
            format!("{{{tag}=\"{}\"}}", value.replace('"', "\\\"")),
        ))
    };
    let found = if let Some(rest) = name.strip_prefix("cluster.") {
        tagged("cluster", "envoy_cluster_name", rest)
    } else if let Some(rest) = name.strip_prefix("http.") {
        tagged("http", "envoy_http_conn_manager_prefix", rest)
    } else if let Some(rest) = name.strip_prefix("listener.") {
        tagged("listener", "envoy_listener_address", rest)
    } else if let Some(rest) = name.strip_prefix("tcp.") {
        tagged("tcp", "envoy_tcp_prefix", rest)
    } else {
        None
    };
    found.unwrap_or_else(|| (format!("envoy_{}", sanitize(name)), String::new()))
}

/// Splits `outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total` at the last
/// dot that starts a stat name we know the shape of (a lowercase word), leaving dots in the tag.
fn split_tag_value(rest: &str) -> Option<(&str, &str)> {
    const STAT_ROOTS: &[&str] = &[
        "upstream_",
        "downstream_",
        "no_",
        "rq_",
        "membership_",
        "update_",
        "lb_",
        "max_host_",
        "internal",
        "outlier_detection.",
        "circuit_breakers.",
        "assignment_",
        "bind_errors",
        "version",
        "warming_",
        "idle_timeout",
        "on_demand",
        "original_dst",
        "retry_or_shadow",
        "tracing.",
        "init.",
        "cx_",
    ];
    rest.char_indices()
        .filter(|(_, c)| *c == '.')
        .map(|(i, _)| (&rest[..i], &rest[i + 1..]))
        .find(|(_, stat)| STAT_ROOTS.iter().any(|root| stat.starts_with(root)))
}

/// Counters of one HTTP status class (`1xx` … `5xx`) and of each exact code.
#[derive(Debug)]
pub struct StatusCounters {
    prefix: String,
    stats: Arc<Stats>,
    classes: [Counter; 5],
    codes: Box<[OnceLock<Counter>]>,
}

impl StatusCounters {
    /// Counters named `<prefix>_1xx` … `<prefix>_5xx` and `<prefix>_<code>`.
    pub fn new(stats: &Arc<Stats>, prefix: &str) -> Self {
        StatusCounters {
            prefix: prefix.to_owned(),
            stats: stats.clone(),
            classes: std::array::from_fn(|i| stats.counter(&format!("{prefix}_{}xx", i + 1))),
            codes: (0..600).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counters named `<prefix>_1xx` … `<prefix>_5xx` only (Envoy's downstream stats).
    pub fn classes_only(stats: &Arc<Stats>, prefix: &str) -> Self {
        StatusCounters {
            codes: Box::new([]),
            ..StatusCounters::new(stats, prefix)
        }
    }

    /// Counts one response with `status`.
    pub fn record(&self, status: u16) {
        let class = usize::from(status / 100);
        if (1..=5).contains(&class) {
            self.classes[class - 1].inc();
        }
        if let Some(slot) = self.codes.get(usize::from(status)) {
            slot.get_or_init(|| self.stats.counter(&format!("{}_{status}", self.prefix)))
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name() {
        let stats = Stats::new();
        stats.counter("a.b").inc();
        stats.counter("a.b").add(2);
        assert_eq!(stats.counter("a.b").get(), 3);
        assert_eq!(stats.render_text(None), "a.b: 3\n");
    }

    #[test]
    fn status_counters_count_classes_and_codes() {
        let stats = Stats::new();
        let codes = StatusCounters::new(&stats, "cluster.x.upstream_rq");
        codes.record(200);
        codes.record(204);
        codes.record(503);
        assert_eq!(stats.counter("cluster.x.upstream_rq_2xx").get(), 2);
        assert_eq!(stats.counter("cluster.x.upstream_rq_200").get(), 1);
        assert_eq!(stats.counter("cluster.x.upstream_rq_503").get(), 1);
    }

    #[test]
    fn prometheus_names_extract_envoy_tags() {
        assert_eq!(
            prometheus_name(
                "cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total"
            ),
            (
                "envoy_cluster_upstream_rq_total".to_owned(),
                "{envoy_cluster_name=\"outbound|9080||reviews.default.svc.cluster.local\"}"
                    .to_owned()
            )
        );
        assert_eq!(
            prometheus_name("http.ingress_http.downstream_rq_total").0,
            "envoy_http_downstream_rq_total"
        );
        assert_eq!(prometheus_name("server.uptime").0, "envoy_server_uptime");
    }
}
