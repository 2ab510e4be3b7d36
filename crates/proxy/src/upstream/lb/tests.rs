use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;
use crate::upstream::{Endpoint, new_host};

fn host_at(port: u16, weight: u32, health: Health, priority: u32, locality: &str) -> Arc<Host> {
    Arc::new(new_host(
        Endpoint {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            hostname: None,
            weight,
            health,
            priority,
            locality: locality.to_owned(),
            locality_weight: match locality {
                "a" => 1,
                "b" => 3,
                _ => 0,
            },
        },
        0,
    ))
}

fn host(port: u16, weight: u32, health: Health, priority: u32) -> Arc<Host> {
    host_at(port, weight, health, priority, "")
}

fn settings(policy: LbPolicy) -> LbSettings {
    LbSettings {
        policy,
        ..LbSettings::default()
    }
}

fn set(hosts: Vec<Arc<Host>>) -> HostSet {
    HostSet::new(hosts, &LbSettings::default(), DEFAULT_OVERPROVISIONING)
}

fn counts(set: &HostSet, n: usize, selection: &Selection<'_>) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let chosen = set.choose(selection).expect("an endpoint");
        *counts.entry(chosen.address.port()).or_default() += 1;
    }
    counts
}

fn picks(set: &HostSet, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| set.choose(&Selection::default()).unwrap().address.port())
        .collect()
}

/// `share` of `n` within 4.5 standard deviations of a binomial.
fn about(count: usize, n: usize, share: f64) -> bool {
    let expected = share * n as f64;
    let sd = (n as f64 * share * (1.0 - share)).sqrt().max(1.0);
    (count as f64 - expected).abs() <= 4.5 * sd
}

#[test]
fn round_robin_visits_every_endpoint_in_turn() {
    let set = set(vec![
        host(1, 1, Health::Healthy, 0),
        host(2, 1, Health::Healthy, 0),
        host(3, 1, Health::Healthy, 0),
    ]);
    let mut seen = picks(&set, 3);
    seen.sort();
    assert_eq!(seen, [1, 2, 3]);
}

#[test]
fn weights_shape_the_share_and_are_spread_out() {
    let set = set(vec![
        host(1, 3, Health::Healthy, 0),
        host(2, 1, Health::Healthy, 0),
    ]);
    let seen = picks(&set, 400);
    assert_eq!(seen.iter().filter(|p| **p == 1).count(), 300);
    // Smooth: the light endpoint never comes twice in a row.
    assert!(seen.windows(2).all(|w| !(w[0] == 2 && w[1] == 2)));
}

#[test]
fn huge_weights_keep_the_schedule_bounded() {
    let s = set(vec![
        host(1, 1_000_000, Health::Healthy, 0),
        host(2, 1, Health::Healthy, 0),
    ]);
    let healthy = &s.levels[0].healthy;
    assert!(healthy.schedule.len() <= 4097);
    assert!(healthy.schedule.contains(&1));
}

#[test]
fn lower_priorities_get_what_the_higher_ones_cannot_take() {
    // P0 is half healthy: 1.4 × 50% = 70% of the traffic stays, 30% spills to P1.
    let s = set(vec![
        host(1, 1, Health::Unhealthy, 0),
        host(2, 1, Health::Healthy, 0),
        host(3, 1, Health::Healthy, 1),
    ]);
    assert_eq!(s.priority_loads(), (&[70, 30][..], &[0, 0][..]));
    let n = 4000;
    let c = counts(&s, n, &Selection::default());
    assert_eq!(c.get(&1), None);
    assert!(about(c[&2], n, 0.7), "{c:?}");
    assert!(about(c[&3], n, 0.3), "{c:?}");
    // Two thirds healthy: 1.4 × 66% = 93%; 7% spills.
    let s = set(vec![
        host(1, 1, Health::Unhealthy, 0),
        host(2, 1, Health::Healthy, 0),
        host(4, 1, Health::Healthy, 0),
        host(3, 1, Health::Healthy, 1),
    ]);
    assert_eq!(s.priority_loads().0, &[93, 7]);
    // A fully healthy P0 takes everything.
    let s = set(vec![
        host(2, 1, Health::Healthy, 0),
        host(3, 1, Health::Healthy, 1),
    ]);
    assert_eq!(s.priority_loads().0, &[100, 0]);
}

#[test]
fn below_the_panic_threshold_every_endpoint_takes_traffic() {
    let hosts = vec![
        host(1, 1, Health::Healthy, 0),
        host(2, 1, Health::Unhealthy, 0),
        host(3, 1, Health::Unhealthy, 0),
    ];
    let s = set(hosts.clone());
    let n = 3000;
    let c = counts(&s, n, &Selection::default());
    for port in [1, 2, 3] {
        assert!(about(c[&port], n, 1.0 / 3.0), "{c:?}");
    }
    // With the threshold at 0 there is no panic: only the healthy endpoint.
    let strict = HostSet::new(
        hosts,
        &LbSettings {
            panic_threshold: 0.0,
            ..LbSettings::default()
        },
        DEFAULT_OVERPROVISIONING,
    );
    assert!(picks(&strict, 20).iter().all(|p| *p == 1));
    // Nothing healthy, no panic: no endpoint at all.
    let none = HostSet::new(
        vec![host(1, 1, Health::Unhealthy, 0)],
        &LbSettings {
            panic_threshold: 0.0,
            ..LbSettings::default()
        },
        DEFAULT_OVERPROVISIONING,
    );
    assert!(none.choose(&Selection::default()).is_none());
    // Nothing healthy with the default threshold: panic, the endpoint is used anyway.
    let all_down = set(vec![host(1, 1, Health::Unhealthy, 0)]);
    assert_eq!(picks(&all_down, 3), [1, 1, 1]);
    assert!(set(Vec::new()).choose(&Selection::default()).is_none());
}

#[test]
fn degraded_endpoints_take_traffic_only_when_healthy_ones_fall_short() {
    let s = set(vec![
        host(1, 1, Health::Degraded, 0),
        host(2, 1, Health::Healthy, 0),
    ]);
    // Healthy: 1.4 × 50% = 70%; degraded 1.4 × 50% = 70%, capped by what is left: 30%.
    assert_eq!(s.priority_loads(), (&[70][..], &[30][..]));
}

#[test]
fn least_request_prefers_idle_endpoints() {
    let busy = host(1, 1, Health::Healthy, 0);
    let idle = host(2, 1, Health::Healthy, 0);
    for _ in 0..10 {
        busy.stats.rq_active.inc();
    }
    let s = HostSet::new(
        vec![busy, idle],
        &settings(LbPolicy::LeastRequest {
            choice_count: 2,
            bias: 1.0,
        }),
        DEFAULT_OVERPROVISIONING,
    );
    // Two samples with replacement: the busy one wins only when drawn twice (1/4).
    let n = 4000;
    let c = counts(&s, n, &Selection::default());
    assert!(about(c[&1], n, 0.25), "{c:?}");
    // More choices push it further away.
    let s = HostSet::new(
        s.hosts.clone(),
        &settings(LbPolicy::LeastRequest {
            choice_count: 4,
            bias: 1.0,
        }),
        DEFAULT_OVERPROVISIONING,
    );
    let c = counts(&s, n, &Selection::default());
    assert!(
        about(c.get(&1).copied().unwrap_or(0), n, 1.0 / 16.0),
        "{c:?}"
    );
}

#[test]
fn weighted_least_request_divides_weights_by_active_requests() {
    let heavy = host(1, 4, Health::Healthy, 0);
    let light = host(2, 1, Health::Healthy, 0);
    for _ in 0..3 {
        heavy.stats.rq_active.inc();
    }
    // 4 / (3 + 1) = 1 against 1 / 1 = 1: an even split.
    let s = HostSet::new(
        vec![heavy, light],
        &settings(LbPolicy::LeastRequest {
            choice_count: 2,
            bias: 1.0,
        }),
        DEFAULT_OVERPROVISIONING,
    );
    let n = 4000;
    let c = counts(&s, n, &Selection::default());
    assert!(about(c[&1], n, 0.5), "{c:?}");
}

#[test]
fn random_ignores_weights() {
    let s = HostSet::new(
        vec![
            host(1, 9, Health::Healthy, 0),
            host(2, 1, Health::Healthy, 0),
        ],
        &settings(LbPolicy::Random),
        DEFAULT_OVERPROVISIONING,
    );
    let n = 4000;
    let c = counts(&s, n, &Selection::default());
    assert!(about(c[&1], n, 0.5), "{c:?}");
}

#[test]
fn locality_weights_split_traffic_between_localities() {
    let s = HostSet::new(
        vec![
            host_at(1, 1, Health::Healthy, 0, "a"),
            host_at(2, 1, Health::Healthy, 0, "b"),
            host_at(3, 1, Health::Healthy, 0, "b"),
        ],
        &LbSettings {
            locality_weighted: true,
            ..LbSettings::default()
        },
        DEFAULT_OVERPROVISIONING,
    );
    let n = 4000;
    let c = counts(&s, n, &Selection::default());
    assert!(about(c[&1], n, 0.25), "{c:?}");
    assert!(about(c[&2] + c[&3], n, 0.75), "{c:?}");
}

fn hashing(policy: LbPolicy, hosts: Vec<Arc<Host>>) -> HostSet {
    HostSet::new(hosts, &settings(policy), DEFAULT_OVERPROVISIONING)
}

fn by_hash(set: &HostSet, keys: u64) -> Vec<u16> {
    (0..keys)
        .map(|k| {
            let selection = Selection {
                hash: Some(xxh64(&k.to_le_bytes(), 0)),
                ..Selection::default()
            };
            set.choose(&selection).unwrap().address.port()
        })
        .collect()
}

/// Checks determinism, balance, and that keys of remaining endpoints mostly stay when one
/// leaves (at least `stable` of them).
fn check_consistent_hashing(policy: LbPolicy, stable: f64) {
    let hosts: Vec<Arc<Host>> = (1..=4).map(|p| host(p, 1, Health::Healthy, 0)).collect();
    let full = hashing(policy, hosts.clone());
    let keys = 4000;
    let before = by_hash(&full, keys);
    // Deterministic.
    assert_eq!(before, by_hash(&full, keys));
    // Spread evenly.
    for port in 1..=4 {
        let n = before.iter().filter(|p| **p == port).count();
        assert!(
            (n as f64 - 1000.0).abs() < 200.0,
            "{policy:?}: endpoint {port} got {n} of {keys}"
        );
    }
    // Endpoint 4 leaves: its keys move, almost all others stay.
    let without = hashing(policy, hosts[..3].to_vec());
    let after = by_hash(&without, keys);
    let mut stayed = 0;
    let mut kept_total = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(*a, 4);
        if *b != 4 {
            kept_total += 1;
            if a == b {
                stayed += 1;
            }
        }
    }
    assert!(
        stayed as f64 >= stable * kept_total as f64,
        "{policy:?}: only {stayed} of {kept_total} keys stayed"
    );
}

#[test]
fn ring_hash_is_consistent_balanced_and_stable() {
    // The remaining endpoints each get more points (the ring keeps its size), and those new
    // points take some keys from the others: about a tenth move, as in Envoy.
    check_consistent_hashing(
        LbPolicy::RingHash {
            min_size: DEFAULT_MIN_RING,
            max_size: DEFAULT_MAX_RING,
        },
        0.85,
    );
}

#[test]
fn maglev_is_consistent_balanced_and_stable() {
    check_consistent_hashing(
        LbPolicy::Maglev {
            table_size: DEFAULT_MAGLEV_TABLE,
        },
        0.95,
    );
}

#[test]
fn ring_sizes_follow_envoys_scaling() {
    let keys = vec!["a".to_owned(), "b".to_owned()];
    // Equal weights: each gets ceil(0.5 × 1024) / 0.5 × 0.5 = 512 points.
    assert_eq!(build_ring(&keys, &[0.5, 0.5], 1024, 8 << 20).len(), 1024);
    // One third / two thirds: scale = ceil(1024 / 3) × 3 = 1026; a third of it, and the rest.
    let ring = build_ring(&keys, &[1.0 / 3.0, 2.0 / 3.0], 1024, 8 << 20);
    let a = ring.iter().filter(|(_, i)| *i == 0).count();
    assert!((342..=343).contains(&a), "{a}");
    assert!((1026..=1027).contains(&ring.len()), "{}", ring.len());
    // The maximum caps the ring.
    assert_eq!(build_ring(&keys, &[0.5, 0.5], 1024, 100).len(), 100);
}

#[test]
fn maglev_tables_follow_weights() {
    let keys: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:80")).collect();
    let table = build_maglev(&keys, &[0.5, 0.25, 0.25], 65537);
    assert!(table.iter().all(|i| *i < 3));
    let first = table.iter().filter(|i| **i == 0).count();
    assert!((first as f64 / 65537.0 - 0.5).abs() < 0.01, "{first}");
}

#[test]
fn retries_avoid_previous_hosts_within_the_attempts() {
    let hosts: Vec<Arc<Host>> = (1..=3).map(|p| host(p, 1, Health::Healthy, 0)).collect();
    let s = set(hosts.clone());
    let avoid = [hosts[0].clone(), hosts[1].clone()];
    let selection = Selection {
        avoid: &avoid,
        attempts: 10,
        ..Selection::default()
    };
    assert!(picks_with(&s, &selection, 30).iter().all(|p| *p == 3));
    // With one attempt there is no second pick.
    let once = Selection {
        avoid: &avoid,
        attempts: 1,
        ..Selection::default()
    };
    assert!(picks_with(&s, &once, 30).iter().any(|p| *p != 3));
    // Hashing policies step to the next ring entries.
    let ring = hashing(
        LbPolicy::RingHash {
            min_size: 64,
            max_size: 64,
        },
        hosts.clone(),
    );
    let first = ring
        .choose(&Selection {
            hash: Some(42),
            ..Selection::default()
        })
        .unwrap();
    let avoid = [first.clone()];
    let second = ring
        .choose(&Selection {
            hash: Some(42),
            avoid: &avoid,
            attempts: 10,
        })
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
}

fn picks_with(set: &HostSet, selection: &Selection<'_>, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| set.choose(selection).unwrap().address.port())
        .collect()
}
