//! Load balancing, as Envoy does it: priorities with the overprovisioning factor and spill-over,
//! panic mode below `healthy_panic_threshold`, locality weights, and the policies ROUND_ROBIN,
//! LEAST_REQUEST (power of two choices), RANDOM, RING_HASH and MAGLEV.
//!
//! A [`HostSet`] is an immutable snapshot of a cluster's endpoints with everything the policies
//! need precomputed (schedules, rings, tables). It is rebuilt when membership or an endpoint's
//! health changes (EDS, outlier ejection, active health checks); choosing an endpoint only reads
//! it, plus the endpoints' active-request counters for LEAST_REQUEST.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::xxhash::xxh64;
use super::{Health, Host};

/// Envoy's default overprovisioning factor (percent).
pub const DEFAULT_OVERPROVISIONING: u32 = 140;
/// Envoy's default `minimum_ring_size`.
pub const DEFAULT_MIN_RING: u64 = 1024;
/// Envoy's default `maximum_ring_size`.
pub const DEFAULT_MAX_RING: u64 = 8 * 1024 * 1024;
/// Envoy's default Maglev table size (a prime).
pub const DEFAULT_MAGLEV_TABLE: u64 = 65537;

/// A load-balancing policy with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LbPolicy {
    /// Weighted round robin.
    RoundRobin,
    /// Power of `choice_count` choices among equal weights; weights scaled by
    /// `1 / (active + 1)^bias` otherwise.
    LeastRequest {
        /// Endpoints sampled per pick.
        choice_count: u32,
        /// `active_request_bias`.
        bias: f64,
    },
    /// Uniformly random.
    Random,
    /// Consistent hashing on a ring (ketama).
    RingHash {
        /// `minimum_ring_size`.
        min_size: u64,
        /// `maximum_ring_size`.
        max_size: u64,
    },
    /// Consistent hashing with a Maglev table.
    Maglev {
        /// `table_size` (prime).
        table_size: u64,
    },
}

impl LbPolicy {
    /// Whether the policy picks by the request's hash (Envoy's "thread aware" balancers).
    pub fn is_hashing(&self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

/// How a cluster balances, compiled from its configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbSettings {
    /// The policy.
    pub policy: LbPolicy,
    /// `healthy_panic_threshold`, percent.
    pub panic_threshold: f64,
    /// `locality_weighted_lb_config` is set.
    pub locality_weighted: bool,
    /// Consistent hashing keys endpoints by host name instead of address.
    pub hostname_keys: bool,
}

impl Default for LbSettings {
    fn default() -> Self {
        LbSettings {
            policy: LbPolicy::RoundRobin,
            panic_threshold: 50.0,
            locality_weighted: false,
            hostname_keys: false,
        }
    }
}

/// What a request brings to the choice of an endpoint.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// The request's hash (`hash_policy`), for hashing policies.
    pub hash: Option<u64>,
    /// Endpoints to avoid (retry host predicate `previous_hosts`).
    pub avoid: &'a [Arc<Host>],
    /// How many picks may be made to find one not to avoid (1 + retries of host selection).
    pub attempts: u32,
}

/// Whether traffic is aimed at healthy or degraded endpoints of a priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    Healthy,
    Degraded,
}

/// A list of endpoints and what one policy needs to pick among them.
#[derive(Debug, Default)]
struct Source {
    hosts: Vec<Arc<Host>>,
    /// Smooth weighted round-robin order (indexes into `hosts`), when weights differ.
    schedule: Vec<u32>,
    equal_weights: bool,
    next: AtomicUsize,
    /// Per locality (locality-weighted balancing): effective weight and endpoints.
    localities: Vec<(f64, Source)>,
}

impl Source {
    fn new(hosts: Vec<Arc<Host>>, policy: LbPolicy) -> Self {
        let equal_weights = hosts.windows(2).all(|w| w[0].weight == w[1].weight);
        let schedule = if policy == LbPolicy::RoundRobin && !equal_weights {
            weighted_schedule(&hosts)
        } else {
            Vec::new()
        };
        Source {
            hosts,
            schedule,
            equal_weights,
            next: AtomicUsize::new(fastrand::usize(..1 << 20)),
            localities: Vec::new(),
        }
    }

    fn pick(&self, policy: LbPolicy) -> Option<&Arc<Host>> {
        if self.hosts.is_empty() {
            return None;
        }
        match policy {
            LbPolicy::RoundRobin => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                if self.schedule.is_empty() {
                    self.hosts.get(n % self.hosts.len())
                } else {
                    self.hosts
                        .get(self.schedule[n % self.schedule.len()] as usize)
                }
            }
            LbPolicy::LeastRequest { choice_count, bias } => {
                if self.equal_weights {
                    least_request_p2c(&self.hosts, choice_count)
                } else {
                    least_request_weighted(&self.hosts, bias)
                }
            }
            // Envoy's random balancer ignores weights; so do the hashing ones without a hash.
            LbPolicy::Random | LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => {
                self.hosts.get(fastrand::usize(..self.hosts.len()))
            }
        }
    }

    /// A locality chosen by effective weight, when locality weighting applies.
    fn locality(&self) -> Option<&Source> {
        let total: f64 = self.localities.iter().map(|(w, _)| *w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut point = fastrand::f64() * total;
        for (weight, source) in &self.localities {
            if point < *weight {
                return Some(source);
            }
            point -= weight;
        }
        self.localities
            .iter()
            .rev()
            .find(|(w, _)| *w > 0.0)
            .map(|(_, s)| s)
    }
}

/// Envoy's unweighted least-request pick: `choice_count` samples with replacement, the one
/// with the fewest active requests wins, the first drawn on ties.
fn least_request_p2c(hosts: &[Arc<Host>], choice_count: u32) -> Option<&Arc<Host>> {
    let mut best: Option<&Arc<Host>> = None;
    for _ in 0..choice_count.max(1) {
        let sampled = &hosts[fastrand::usize(..hosts.len())];
        best = match best {
            Some(current) if sampled.active_requests() >= current.active_requests() => {
                Some(current)
            }
            _ => Some(sampled),
        };
    }
    best
}

/// Envoy's weighted least request: weights divided by `(active + 1)^bias`. Envoy walks an EDF
/// schedule; a weighted random pick gives the same shares.
fn least_request_weighted(hosts: &[Arc<Host>], bias: f64) -> Option<&Arc<Host>> {
    let weight = |host: &Host| {
        let active = host.active_requests() as f64 + 1.0;
        let divisor = if bias == 1.0 {
            active
        } else {
            active.powf(bias)
        };
        f64::from(host.weight) / divisor
    };
    let total: f64 = hosts.iter().map(|h| weight(h)).sum();
    let mut point = fastrand::f64() * total;
    for host in hosts {
        let w = weight(host);
        if point < w {
            return Some(host);
        }
        point -= w;
    }
    hosts.last()
}

/// A consistent-hashing structure over some endpoints.
#[derive(Debug)]
enum HashTable {
    Ring(Vec<(u64, u32)>),
    Maglev(Vec<u32>),
}

/// One priority level.
#[derive(Debug, Default)]
struct Level {
    all: Source,
    healthy: Source,
    degraded: Source,
    panic: bool,
    /// Hashing policies: the table and the endpoints it indexes.
    table: Option<(HashTable, Vec<Arc<Host>>)>,
}

/// The endpoints of a cluster at one moment, ready for choosing.
#[derive(Debug)]
pub struct HostSet {
    /// Every endpoint, in configuration order.
    pub hosts: Vec<Arc<Host>>,
    levels: Vec<Level>,
    healthy_load: Vec<u32>,
    degraded_load: Vec<u32>,
    policy: LbPolicy,
    healthy: usize,
}

impl Default for HostSet {
    fn default() -> Self {
        HostSet::new(Vec::new(), &LbSettings::default(), DEFAULT_OVERPROVISIONING)
    }
}

impl HostSet {
    /// Builds the set for `hosts` under `settings`; `overprovisioning` is the assignment's
    /// overprovisioning factor (percent).
    pub fn new(hosts: Vec<Arc<Host>>, settings: &LbSettings, overprovisioning: u32) -> Self {
        let levels_count = hosts
            .iter()
            .map(|h| h.priority as usize + 1)
            .max()
            .unwrap_or(1);
        let mut per_level: Vec<Vec<Arc<Host>>> = vec![Vec::new(); levels_count];
        for host in &hosts {
            per_level[host.priority as usize].push(host.clone());
        }
        let factor = u64::from(overprovisioning);
        let mut health = Vec::with_capacity(levels_count);
        let mut degraded_health = Vec::with_capacity(levels_count);
        let mut levels = Vec::with_capacity(levels_count);
        let mut healthy_total = 0;
        for members in per_level {
            let healthy: Vec<Arc<Host>> = members
                .iter()
                .filter(|h| h.current_health() == Health::Healthy)
                .cloned()
                .collect();
            let degraded: Vec<Arc<Host>> = members
                .iter()
                .filter(|h| h.current_health() == Health::Degraded)
                .cloned()
                .collect();
            healthy_total += healthy.len();
            let total = members.len() as u64;
            let scaled = |count: usize| {
                (factor * count as u64)
                    .checked_div(total)
                    .map_or(0, |v| v.min(100) as u32)
            };
            let (h, d) = (scaled(healthy.len()), scaled(degraded.len()));
            health.push(h);
            degraded_health.push(d);
            let available_percent = if total == 0 {
                0.0
            } else {
                100.0 * (healthy.len() + degraded.len()) as f64 / total as f64
            };
            let mut level = Level {
                all: Source::new(members.clone(), settings.policy),
                healthy: Source::new(healthy, settings.policy),
                degraded: Source::new(degraded, settings.policy),
                panic: available_percent < settings.panic_threshold,
                table: None,
            };
            if settings.locality_weighted {
                for (source, filter) in [
                    (&mut level.healthy, Some(Health::Healthy)),
                    (&mut level.degraded, Some(Health::Degraded)),
                    (&mut level.all, None),
                ] {
                    source.localities =
                        localities(&members, filter, overprovisioning, settings.policy);
                }
            }
            levels.push(level);
        }
        let sizes = per_level_sizes(&levels);
        let (healthy_load, degraded_load) =
            priority_loads(&health, &degraded_health, &mut levels, settings, &sizes);
        if settings.policy.is_hashing() {
            for level in &mut levels {
                let source = if level.panic {
                    &level.all
                } else {
                    &level.healthy
                };
                let weighted = normalized_weights(source, settings.locality_weighted);
                let keys: Vec<String> = weighted
                    .iter()
                    .map(|(host, _)| hash_key(host, settings.hostname_keys))
                    .collect();
                let hosts: Vec<Arc<Host>> = weighted.iter().map(|(h, _)| h.clone()).collect();
                let weights: Vec<f64> = weighted.iter().map(|(_, w)| *w).collect();
                let table = match settings.policy {
                    LbPolicy::RingHash { min_size, max_size } => {
                        HashTable::Ring(build_ring(&keys, &weights, min_size, max_size))
                    }
                    LbPolicy::Maglev { table_size } => {
                        HashTable::Maglev(build_maglev(&keys, &weights, table_size))
                    }
                    _ => continue,
                };
                level.table = Some((table, hosts));
            }
        }
        HostSet {
            hosts,
            levels,
            healthy_load,
            degraded_load,
            policy: settings.policy,
            healthy: healthy_total,
        }
    }

    /// Endpoints that are healthy now (configured health, outlier ejection, health checks).
    pub fn healthy_count(&self) -> usize {
        self.healthy
    }

    /// Chooses an endpoint for a request.
    pub fn choose(&self, selection: &Selection<'_>) -> Option<Arc<Host>> {
        let attempts = selection.attempts.max(1);
        let avoided = |host: &Arc<Host>| selection.avoid.iter().any(|a| Arc::ptr_eq(a, host));
        if self.policy.is_hashing() {
            let hash = selection.hash.unwrap_or_else(|| fastrand::u64(..));
            let (priority, _) = self.choose_priority(hash);
            let (table, hosts) = self.levels.get(priority)?.table.as_ref()?;
            let mut chosen = None;
            for attempt in 0..attempts {
                let host = pick_from_table(table, hosts, hash, attempt)?;
                if !avoided(host) {
                    return Some(host.clone());
                }
                chosen = Some(host.clone());
            }
            return chosen;
        }
        let mut chosen = None;
        for _ in 0..attempts {
            let host = self.choose_once()?;
            if !avoided(host) {
                return Some(host.clone());
            }
            chosen = Some(host.clone());
        }
        chosen
    }

    fn choose_once(&self) -> Option<&Arc<Host>> {
        let (priority, availability) = self.choose_priority(fastrand::u64(..));
        let level = self.levels.get(priority)?;
        if level.panic {
            return level.all.pick(self.policy);
        }
        let source = match availability {
            Availability::Healthy => &level.healthy,
            Availability::Degraded => &level.degraded,
        };
        match source.locality() {
            Some(locality) => locality.pick(self.policy),
            None => source.pick(self.policy),
        }
    }

    /// Envoy's `choosePriority`: a point in 1..=100 walks the healthy loads, then the
    /// degraded ones.
    fn choose_priority(&self, hash: u64) -> (usize, Availability) {
        let point = (hash % 100 + 1) as u32;
        let mut sum = 0;
        for (i, load) in self.healthy_load.iter().enumerate() {
            sum += load;
            if point <= sum {
                return (i, Availability::Healthy);
            }
        }
        for (i, load) in self.degraded_load.iter().enumerate() {
            sum += load;
            if point <= sum {
                return (i, Availability::Degraded);
            }
        }
        (0, Availability::Healthy)
    }

    /// The share of traffic (percent) each priority gets, healthy and degraded, for tests and
    /// the admin output.
    pub fn priority_loads(&self) -> (&[u32], &[u32]) {
        (&self.healthy_load, &self.degraded_load)
    }
}

fn per_level_sizes(levels: &[Level]) -> Vec<usize> {
    levels.iter().map(|l| l.all.hosts.len()).collect()
}

/// Envoy's `recalculatePerPriorityState` and `recalculatePerPriorityPanic`: loads per priority
/// from each level's health (already scaled by the overprovisioning factor), and panic flags.
fn priority_loads(
    health: &[u32],
    degraded: &[u32],
    levels: &mut [Level],
    settings: &LbSettings,
    sizes: &[usize],
) -> (Vec<u32>, Vec<u32>) {
    let n = health.len();
    let mut healthy_load = vec![0u32; n];
    let mut degraded_load = vec![0u32; n];
    let normalized_total: u32 = health
        .iter()
        .zip(degraded)
        .map(|(h, d)| h + d)
        .sum::<u32>()
        .min(100);
    if normalized_total > 0 {
        let distribute = |load: &mut [u32], availability: &[u32], mut total: u32| {
            let mut first = None;
            for i in 0..availability.len() {
                if first.is_none() && availability[i] > 0 {
                    first = Some(i);
                }
                load[i] = total.min(availability[i] * 100 / normalized_total);
                total -= load[i];
            }
            (first, total)
        };
        let (first_healthy, remaining) = distribute(&mut healthy_load, health, 100);
        let (first_degraded, remaining) = distribute(&mut degraded_load, degraded, remaining);
        if remaining > 0 {
            if let Some(i) = first_healthy {
                healthy_load[i] += remaining;
            } else if let Some(i) = first_degraded {
                degraded_load[i] += remaining;
            }
        }
    }
    let threshold = settings.panic_threshold.min(100.0);
    if threshold <= 0.0 && normalized_total == 0 {
        // Panic disabled and nothing available: the loads must still add up to 100.
        for level in levels.iter_mut() {
            level.panic = false;
        }
        if let Some(first) = healthy_load.first_mut() {
            *first = 100;
        }
        return (healthy_load, degraded_load);
    }
    if threshold <= 0.0 {
        for level in levels.iter_mut() {
            level.panic = false;
        }
    } else if normalized_total == 0 {
        for level in levels.iter_mut() {
            level.panic = true;
        }
    }
    if levels.iter().all(|l| l.panic) {
        // Total panic: traffic spreads over priorities by their number of endpoints.
        let total: usize = sizes.iter().sum();
        if total == 0 {
            healthy_load = vec![0; n];
            healthy_load[0] = 100;
            return (healthy_load, vec![0; n]);
        }
        let mut remaining = 100u32;
        let mut first = None;
        for (i, size) in sizes.iter().enumerate() {
            if first.is_none() && *size > 0 {
                first = Some(i);
            }
            healthy_load[i] = (100 * size / total) as u32;
            degraded_load[i] = 0;
            remaining -= healthy_load[i];
        }
        if let Some(i) = first {
            healthy_load[i] += remaining;
        }
    }
    (healthy_load, degraded_load)
}

/// Endpoints of one health (or all) grouped by locality, each with Envoy's effective locality
/// weight: the locality's weight times its availability scaled by the overprovisioning factor.
fn localities(
    members: &[Arc<Host>],
    health: Option<Health>,
    overprovisioning: u32,
    policy: LbPolicy,
) -> Vec<(f64, Source)> {
    let mut groups: BTreeMap<&str, (u32, usize, Vec<Arc<Host>>)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for host in members {
        let entry = groups.entry(host.locality.as_str()).or_insert_with(|| {
            order.push(host.locality.as_str());
            (host.locality_weight, 0, Vec::new())
        });
        entry.1 += 1;
        if health.is_none_or(|h| host.current_health() == h) {
            entry.2.push(host.clone());
        }
    }
    order
        .into_iter()
        .filter_map(|name| groups.remove(name))
        .map(|(weight, total, eligible)| {
            let ratio = if health.is_none() {
                1.0
            } else {
                (f64::from(overprovisioning) / 100.0 * eligible.len() as f64 / total as f64)
                    .min(1.0)
            };
            (f64::from(weight) * ratio, Source::new(eligible, policy))
        })
        .collect()
}

/// Envoy's normalized host weights for hashing tables: each endpoint's share of its list (or,
/// with locality weighting, of its locality times the locality's share).
fn normalized_weights(source: &Source, locality_weighted: bool) -> Vec<(Arc<Host>, f64)> {
    let mut out = Vec::new();
    let mut push = |hosts: &[Arc<Host>], scale: f64| {
        let sum: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
        if sum == 0 {
            return;
        }
        for host in hosts {
            out.push((host.clone(), f64::from(host.weight) * scale / sum as f64));
        }
    };
    if locality_weighted && !source.localities.is_empty() {
        // Raw locality weights (not effective ones), as Envoy's normalizeLocalityWeights.
        let weights: Vec<u32> = source
            .localities
            .iter()
            .map(|(_, s)| s.hosts.first().map_or(0, |h| h.locality_weight))
            .collect();
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return out;
        }
        for ((_, locality), weight) in source.localities.iter().zip(weights) {
            if weight > 0 {
                push(&locality.hosts, f64::from(weight) / total as f64);
            }
        }
    } else {
        push(&source.hosts, 1.0);
    }
    out
}

/// The string an endpoint is hashed by: its address (`127.0.0.1:80`, `[::1]:80`) or host name.
fn hash_key(host: &Host, hostname: bool) -> String {
    match (&host.hostname, hostname) {
        (Some(name), true) if !name.is_empty() => name.clone(),
        _ => host.address.to_string(),
    }
}

/// Envoy's ketama ring: `scale × weight` points per endpoint (running sums keep it stable),
/// each the XXH64 of `<key>_<i>`, sorted by hash.
fn build_ring(keys: &[String], weights: &[f64], min_size: u64, max_size: u64) -> Vec<(u64, u32)> {
    if keys.is_empty() {
        return Vec::new();
    }
    let min_weight = weights.iter().copied().fold(f64::INFINITY, f64::min);
    let scale = ((min_weight * min_size as f64).ceil() / min_weight).min(max_size as f64);
    let mut ring = Vec::with_capacity(scale.ceil() as usize);
    let mut current = 0.0f64;
    let mut target = 0.0f64;
    let mut buffer = String::new();
    for (index, (key, weight)) in keys.iter().zip(weights).enumerate() {
        target += scale * weight;
        let mut i = 0u64;
        while current < target {
            buffer.clear();
            buffer.push_str(key);
            buffer.push('_');
            buffer.push_str(&i.to_string());
            ring.push((xxh64(buffer.as_bytes(), 0), index as u32));
            i += 1;
            current += 1.0;
        }
    }
    ring.sort_by_key(|(hash, _)| *hash);
    ring
}

/// Envoy's Maglev table: endpoints sorted by key, each with an offset and skip from XXH64 of
/// its key (seeds 0 and 1), filling the table in turns weighted by normalized weight.
fn build_maglev(keys: &[String], weights: &[f64], table_size: u64) -> Vec<u32> {
    if keys.is_empty() || table_size < 2 {
        return Vec::new();
    }
    struct Entry {
        index: u32,
        offset: u64,
        skip: u64,
        weight: f64,
        target: f64,
        next: u64,
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
    let mut entries: Vec<Entry> = order
        .into_iter()
        .map(|i| Entry {
            index: i as u32,
            offset: xxh64(keys[i].as_bytes(), 0) % table_size,
            skip: xxh64(keys[i].as_bytes(), 1) % (table_size - 1) + 1,
            weight: weights[i],
            target: 0.0,
            next: 0,
        })
        .collect();
    let max_weight = weights.iter().copied().fold(0.0f64, f64::max);
    let size = table_size as usize;
    let mut table: Vec<u32> = vec![u32::MAX; size];
    let mut filled = 0usize;
    let mut iteration = 1u64;
    while filled < size {
        for entry in &mut entries {
            if filled >= size {
                break;
            }
            if (iteration as f64) * entry.weight < entry.target {
                continue;
            }
            entry.target += max_weight;
            let mut c = ((entry.offset + entry.skip * entry.next) % table_size) as usize;
            while table[c] != u32::MAX {
                entry.next += 1;
                c = ((entry.offset + entry.skip * entry.next) % table_size) as usize;
            }
            table[c] = entry.index;
            entry.next += 1;
            filled += 1;
        }
        iteration += 1;
    }
    table
}

/// A ring or table lookup; `attempt > 0` moves away from the first choice as Envoy does when a
/// retry host predicate rejected it.
fn pick_from_table<'a>(
    table: &HashTable,
    hosts: &'a [Arc<Host>],
    hash: u64,
    attempt: u32,
) -> Option<&'a Arc<Host>> {
    match table {
        HashTable::Ring(ring) => {
            if ring.is_empty() {
                return None;
            }
            // The first point at or after the hash, wrapping around.
            let mut index = ring.partition_point(|(h, _)| *h < hash);
            if index == ring.len() {
                index = 0;
            }
            if attempt > 0 {
                index = (index + attempt as usize) % ring.len();
            }
            hosts.get(ring[index].1 as usize)
        }
        HashTable::Maglev(table) => {
            if table.is_empty() {
                return None;
            }
            let mut hash = hash;
            if attempt > 0 {
                hash ^= (!0u64).wrapping_sub(u64::from(attempt)).wrapping_add(1);
            }
            hosts.get(table[(hash % table.len() as u64) as usize] as usize)
        }
    }
}

/// A round-robin schedule where each endpoint appears in proportion to its weight, spread out
/// (smooth weighted round robin), bounded in length.
fn weighted_schedule(hosts: &[Arc<Host>]) -> Vec<u32> {
    const MAX_LEN: u64 = 4096;
    if hosts.is_empty() {
        return Vec::new();
    }
    let gcd = hosts
        .iter()
        .map(|h| u64::from(h.weight.max(1)))
        .fold(0, gcd);
    let mut weights: Vec<u64> = hosts
        .iter()
        .map(|h| u64::from(h.weight.max(1)) / gcd.max(1))
        .collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_LEN {
        // Scale down, keeping every endpoint at least once.
        weights = weights
            .iter()
            .map(|w| (w * MAX_LEN / total).max(1))
            .collect();
    }
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests;
