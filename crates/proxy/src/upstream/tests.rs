use super::*;

fn host(port: u16, weight: u32, health: Health, priority: u32) -> Arc<Host> {
    Arc::new(new_host(
        SocketAddr::from(([127, 0, 0, 1], port)),
        None,
        weight,
        health,
        priority,
        String::new(),
    ))
}

fn picks(set: &HostSet, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| set.round_robin().unwrap().address.port())
        .collect()
}

#[test]
fn round_robin_visits_every_endpoint_in_turn() {
    let set = HostSet::new(vec![
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
    let set = HostSet::new(vec![
        host(1, 3, Health::Healthy, 0),
        host(2, 1, Health::Healthy, 0),
    ]);
    let seen = picks(&set, 400);
    assert_eq!(seen.iter().filter(|p| **p == 1).count(), 300);
    // Smooth: the light endpoint never comes twice in a row.
    assert!(seen.windows(2).all(|w| !(w[0] == 2 && w[1] == 2)));
}

#[test]
fn unhealthy_endpoints_and_lower_priorities_get_nothing() {
    let set = HostSet::new(vec![
        host(1, 1, Health::Unhealthy, 0),
        host(2, 1, Health::Healthy, 0),
        host(3, 1, Health::Healthy, 1),
    ]);
    assert!(picks(&set, 10).iter().all(|p| *p == 2));
    let failover = HostSet::new(vec![
        host(1, 1, Health::Unhealthy, 0),
        host(3, 1, Health::Healthy, 1),
    ]);
    assert!(picks(&failover, 10).iter().all(|p| *p == 3));
    let none = HostSet::new(vec![host(1, 1, Health::Unhealthy, 0)]);
    assert!(none.round_robin().is_none());
}

#[test]
fn huge_weights_keep_the_schedule_bounded() {
    let set = HostSet::new(vec![
        host(1, 1_000_000, Health::Healthy, 0),
        host(2, 1, Health::Healthy, 0),
    ]);
    assert!(set.schedule.len() <= 4097);
    assert!(set.schedule.contains(&1));
}
