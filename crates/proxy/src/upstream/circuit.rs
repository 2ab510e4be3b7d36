//! Circuit breakers (`circuit_breakers.thresholds`): per routing priority, limits on a
//! cluster's connections, pending requests, requests, retries and connection pools. Each limit
//! is an atomic counter; taking a unit returns a guard that gives it back when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_xds::pb::envoy::config::cluster::v3::CircuitBreakers as CircuitBreakersProto;
use bosun_xds::pb::envoy::config::core::v3::RoutingPriority;

use crate::config::ConfigError;
use crate::stats::{Gauge, Stats};

/// One limited resource.
#[derive(Debug)]
pub struct Resource {
    max: u64,
    current: AtomicU64,
    open: Gauge,
    remaining: Option<Gauge>,
}

impl Resource {
    pub(crate) fn new(max: u64, open: Gauge, remaining: Option<Gauge>) -> Arc<Self> {
        if let Some(remaining) = &remaining {
            remaining.set(i64::try_from(max).unwrap_or(i64::MAX));
        }
        Arc::new(Resource {
            max,
            current: AtomicU64::new(0),
            open,
            remaining,
        })
    }

    /// Whether one more unit fits (Envoy's `canCreate`).
    pub fn can_create(&self) -> bool {
        self.current.load(Ordering::Relaxed) < self.max
    }

    /// Units in use.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether units need counting at all: a limit below Envoy's "unlimited" (`u32::MAX`),
    /// or a `remaining_*` gauge to keep.
    pub fn is_counted(&self) -> bool {
        self.max < u64::from(u32::MAX) || self.remaining.is_some()
    }

    /// Takes a unit if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ResourceGuard> {
        let mut current = self.current.load(Ordering::Relaxed);
        loop {
            if current >= self.max {
                return None;
            }
            match self.current.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.publish(current + 1);
                    return Some(ResourceGuard(self.clone()));
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a unit even beyond the limit (a host with no connection always gets one).
    pub fn acquire(self: &Arc<Self>) -> ResourceGuard {
        let now = self.current.fetch_add(1, Ordering::AcqRel) + 1;
        self.publish(now);
        ResourceGuard(self.clone())
    }

    fn publish(&self, now: u64) {
        self.open.set(i64::from(now >= self.max));
        if let Some(remaining) = &self.remaining {
            remaining.set(i64::try_from(self.max.saturating_sub(now)).unwrap_or(i64::MAX));
        }
    }
}

/// A unit of a [`Resource`], given back on drop.
#[derive(Debug)]
pub struct ResourceGuard(Arc<Resource>);

impl Drop for ResourceGuard {
    fn drop(&mut self) {
        let now = self
            .0
            .current
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        self.0.publish(now);
    }
}

/// The limits of one routing priority.
#[derive(Debug)]
pub struct Thresholds {
    /// The priority they are the limits of.
    pub priority: Priority,
    /// `max_connections`.
    pub connections: Arc<Resource>,
    /// `max_pending_requests`.
    pub pending: Arc<Resource>,
    /// `max_requests`.
    pub requests: Arc<Resource>,
    /// `max_retries`.
    pub retries: Arc<Resource>,
    /// `max_connection_pools`.
    pub pools: Arc<Resource>,
}

/// A cluster's circuit breakers.
#[derive(Debug)]
pub struct CircuitBreakers {
    default: Thresholds,
    high: Thresholds,
}

/// A routing priority (`RouteAction.priority`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// `DEFAULT`.
    #[default]
    Default,
    /// `HIGH`.
    High,
}

impl CircuitBreakers {
    /// Compiles the thresholds of the cluster whose stats live under `cluster.<stat_name>.`.
    pub fn compile(
        config: Option<&CircuitBreakersProto>,
        stats: &Arc<Stats>,
        stat_name: &str,
    ) -> Result<Self, ConfigError> {
        let mut default = None;
        let mut high = None;
        if let Some(config) = config {
            if !config.per_host_thresholds.is_empty() {
                return Err(ConfigError::unsupported(
                    "circuit_breakers.per_host_thresholds",
                ));
            }
            for threshold in &config.thresholds {
                if threshold.retry_budget.is_some() {
                    return Err(ConfigError::unsupported("circuit_breakers retry_budget"));
                }
                let slot = match RoutingPriority::try_from(threshold.priority)
                    .unwrap_or(RoutingPriority::Default)
                {
                    RoutingPriority::Default => &mut default,
                    RoutingPriority::High => &mut high,
                };
                if slot.is_some() {
                    return Err(ConfigError::invalid(
                        "circuit_breakers: more than one threshold for one priority",
                    ));
                }
                *slot = Some(threshold);
            }
        }
        let build = |threshold: Option<
            &bosun_xds::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds,
        >,
                     priority: Priority| {
            let name = match priority {
                Priority::Default => "default",
                Priority::High => "high",
            };
            let value = |v: Option<u32>, default: u64| v.map_or(default, u64::from);
            let track = threshold.is_some_and(|t| t.track_remaining);
            let gauge = |stat: &str| {
                stats.gauge(&format!(
                    "cluster.{stat_name}.circuit_breakers.{name}.{stat}"
                ))
            };
            let remaining = |stat: &str| track.then(|| gauge(stat));
            Thresholds {
                priority,
                connections: Resource::new(
                    value(
                        threshold.and_then(|t| t.max_connections.map(|v| v.value)),
                        1024,
                    ),
                    gauge("cx_open"),
                    remaining("remaining_cx"),
                ),
                pending: Resource::new(
                    value(
                        threshold.and_then(|t| t.max_pending_requests.map(|v| v.value)),
                        1024,
                    ),
                    gauge("rq_pending_open"),
                    remaining("remaining_pending"),
                ),
                requests: Resource::new(
                    value(
                        threshold.and_then(|t| t.max_requests.map(|v| v.value)),
                        1024,
                    ),
                    gauge("rq_open"),
                    remaining("remaining_rq"),
                ),
                retries: Resource::new(
                    value(threshold.and_then(|t| t.max_retries.map(|v| v.value)), 3),
                    gauge("rq_retry_open"),
                    remaining("remaining_retries"),
                ),
                pools: Resource::new(
                    value(
                        threshold.and_then(|t| t.max_connection_pools.map(|v| v.value)),
                        u64::from(u32::MAX),
                    ),
                    gauge("cx_pool_open"),
                    remaining("remaining_cx_pools"),
                ),
            }
        };
        Ok(CircuitBreakers {
            default: build(default, Priority::Default),
            high: build(high, Priority::High),
        })
    }

    /// The thresholds of `priority`.
    pub fn thresholds(&self, priority: Priority) -> &Thresholds {
        match priority {
            Priority::Default => &self.default,
            Priority::High => &self.high,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_give_units_back_and_gauges_follow() {
        let stats = Stats::new();
        let resource = Resource::new(2, stats.gauge("open"), Some(stats.gauge("remaining")));
        let a = resource.try_acquire().unwrap();
        let b = resource.try_acquire().unwrap();
        assert!(resource.try_acquire().is_none());
        assert_eq!(stats.gauge("open").get(), 1);
        assert_eq!(stats.gauge("remaining").get(), 0);
        drop(a);
        assert!(resource.can_create());
        assert_eq!(stats.gauge("open").get(), 0);
        let forced = resource.acquire();
        let forced2 = resource.acquire();
        assert_eq!(resource.current(), 3);
        drop((b, forced, forced2));
        assert_eq!(resource.current(), 0);
        assert_eq!(stats.gauge("remaining").get(), 2);
    }

    #[test]
    fn defaults_are_envoys() {
        let stats = Stats::new();
        let breakers = CircuitBreakers::compile(None, &stats, "c").unwrap();
        let t = breakers.thresholds(Priority::Default);
        assert_eq!(
            (
                t.connections.max(),
                t.pending.max(),
                t.requests.max(),
                t.retries.max()
            ),
            (1024, 1024, 1024, 3)
        );
        assert_eq!(
            stats
                .gauge("cluster.c.circuit_breakers.default.cx_open")
                .get(),
            0
        );
        // Unlimited pools are not counted; a limit or a tracked remainder is.
        assert!(!t.pools.is_counted());
        assert!(t.connections.is_counted());
    }
}
