use std::sync::atomic::AtomicBool;

use bosun_xds::pb::google::protobuf::{BoolValue, Duration as ProtoDuration, UInt32Value};

use super::*;

/// An endpoint for the detector alone.
#[derive(Debug, Default)]
struct TestHost {
    monitor: HostMonitor,
    ejected: AtomicBool,
}

impl Monitored for TestHost {
    fn monitor(&self) -> &HostMonitor {
        &self.monitor
    }

    fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Relaxed);
    }
}

impl TestHost {
    fn ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }
}

fn secs(s: i64) -> Option<ProtoDuration> {
    Some(ProtoDuration {
        seconds: s,
        nanos: 0,
    })
}

fn u(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

fn detector(config: OutlierProto) -> OutlierDetector {
    let stats = Stats::new();
    OutlierDetector::new(
        OutlierConfig::compile(&config).unwrap(),
        OutlierStats::new(&stats, "c"),
    )
}

/// Reports `n` responses with `status` to `host`, ejecting as the cluster would.
fn respond(d: &OutlierDetector, host: &TestHost, all: &[&TestHost], status: u16, n: usize) {
    for _ in 0..n {
        if let Some(kind) = host.monitor.record(&d.config, Outcome::Response(status)) {
            d.on_consecutive(host, all, kind, Instant::now());
        }
    }
}

fn istio_s7() -> OutlierProto {
    // The DestinationRule of Istio's circuit-breaking task.
    OutlierProto {
        consecutive_5xx: u(1),
        interval: secs(1),
        base_ejection_time: secs(180),
        max_ejection_percent: u(100),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_ejects_and_the_host_returns_after_the_ejection_time() {
    let d = detector(istio_s7());
    let (a, b) = (TestHost::default(), TestHost::default());
    let all = [&a, &b];
    respond(&d, &a, &all, 200, 3);
    assert!(!a.ejected());
    respond(&d, &a, &all, 503, 1);
    assert!(a.ejected());
    assert_eq!(d.stats.ejections_active.get(), 1);
    assert_eq!(d.stats.ejections_enforced_total.get(), 1);
    assert_eq!(
        d.stats.enforced[EjectionType::Consecutive5xx.index()].get(),
        1
    );
    // Ticks before the ejection time leave it out.
    tokio::time::advance(Duration::from_secs(179)).await;
    d.on_interval(&all, Instant::now());
    assert!(a.ejected());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(d.on_interval(&all, Instant::now()));
    assert!(!a.ejected());
    assert_eq!(d.stats.ejections_active.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_each_ejection_up_to_the_maximum() {
    let d = detector(OutlierProto {
        consecutive_5xx: u(2),
        interval: secs(10),
        base_ejection_time: secs(30),
        max_ejection_time: secs(70),
        max_ejection_percent: u(100),
        ..Default::default()
    });
    let a = TestHost::default();
    let all = [&a];
    let mut ejected_for = Vec::new();
    for _ in 0..4 {
        respond(&d, &a, &all, 500, 2);
        assert!(a.ejected());
        let start = Instant::now();
        while a.ejected() {
            tokio::time::advance(Duration::from_secs(10)).await;
            d.on_interval(&all, Instant::now());
        }
        ejected_for.push(Instant::now().duration_since(start).as_secs());
    }
    // 30 s, 60 s, then capped at 70 s (returned at the next 10 s tick).
    assert_eq!(ejected_for, [30, 60, 70, 70]);
    assert_eq!(a.monitor.num_ejections(), 4);
}

#[tokio::test(start_paused = true)]
async fn clean_intervals_shrink_the_next_ejection() {
    let d = detector(OutlierProto {
        consecutive_5xx: u(1),
        interval: secs(10),
        base_ejection_time: secs(30),
        max_ejection_percent: u(100),
        ..Default::default()
    });
    let a = TestHost::default();
    let all = [&a];
    for _ in 0..2 {
        respond(&d, &a, &all, 500, 1);
        while a.ejected() {
            tokio::time::advance(Duration::from_secs(10)).await;
            d.on_interval(&all, Instant::now());
        }
    }
    // Back-off is 2 now; two clean intervals bring it to 0, so the next ejection is 30 s.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(10)).await;
        d.on_interval(&all, Instant::now());
    }
    respond(&d, &a, &all, 500, 1);
    let start = Instant::now();
    while a.ejected() {
        tokio::time::advance(Duration::from_secs(10)).await;
        d.on_interval(&all, Instant::now());
    }
    assert_eq!(Instant::now().duration_since(start).as_secs(), 30);
}

#[test]
fn max_ejection_percent_caps_ejections_unless_one_host_may_always_go() {
    // Default 10%: with three endpoints not even one may be ejected.
    let d = detector(OutlierProto {
        consecutive_5xx: u(1),
        ..Default::default()
    });
    let hosts: Vec<TestHost> = (0..3).map(|_| TestHost::default()).collect();
    let all: Vec<&TestHost> = hosts.iter().collect();
    respond(&d, &hosts[0], &all, 503, 1);
    assert!(!hosts[0].ejected());
    assert_eq!(d.stats.ejections_overflow.get(), 1);
    let d = detector(OutlierProto {
        consecutive_5xx: u(1),
        always_eject_one_host: Some(BoolValue { value: true }),
        ..Default::default()
    });
    respond(&d, &hosts[0], &all, 503, 1);
    assert!(hosts[0].ejected());
    respond(&d, &hosts[1], &all, 503, 1);
    assert!(!hosts[1].ejected());
}

#[test]
fn gateway_failures_count_separately_and_are_not_enforced_by_default() {
    let d = detector(OutlierProto {
        consecutive_5xx: u(10),
        consecutive_gateway_failure: u(2),
        max_ejection_percent: u(100),
        ..Default::default()
    });
    let a = TestHost::default();
    let all = [&a];
    respond(&d, &a, &all, 502, 2);
    assert!(!a.ejected());
    assert_eq!(
        d.stats.detected[EjectionType::ConsecutiveGatewayFailure.index()].get(),
        1
    );
    let d = detector(OutlierProto {
        consecutive_5xx: u(10),
        consecutive_gateway_failure: u(2),
        enforcing_consecutive_gateway_failure: u(100),
        max_ejection_percent: u(100),
        ..Default::default()
    });
    let a = TestHost::default();
    let all = [&a];
    // A 500 in between breaks the run of gateway failures.
    respond(&d, &a, &all, 502, 1);
    respond(&d, &a, &all, 500, 1);
    respond(&d, &a, &all, 503, 1);
    assert!(!a.ejected());
    respond(&d, &a, &all, 504, 1);
    assert!(a.ejected());
}

#[test]
fn local_origin_failures_eject_only_when_split() {
    let config = |split| OutlierProto {
        consecutive_5xx: u(3),
        consecutive_local_origin_failure: u(2),
        split_external_local_origin_errors: split,
        max_ejection_percent: u(100),
        ..Default::default()
    };
    let record = |d: &OutlierDetector, host: &TestHost, outcome| {
        if let Some(kind) = host.monitor.record(&d.config, outcome) {
            d.on_consecutive(host, &[host], kind, Instant::now());
        }
    };
    // Not split: connect failures are 503s for the 5xx counter.
    let d = detector(config(false));
    let a = TestHost::default();
    record(&d, &a, Outcome::ConnectFailed);
    record(&d, &a, Outcome::ConnectSuccess);
    record(&d, &a, Outcome::Timeout);
    assert!(!a.ejected());
    record(&d, &a, Outcome::ConnectFailed);
    assert!(a.ejected());
    // Split: they count as local-origin failures, and a connection resets the run.
    let d = detector(config(true));
    let b = TestHost::default();
    record(&d, &b, Outcome::ConnectFailed);
    record(&d, &b, Outcome::ConnectSuccess);
    record(&d, &b, Outcome::ConnectFailed);
    assert!(!b.ejected());
    record(&d, &b, Outcome::Timeout);
    assert!(b.ejected());
    assert_eq!(
        d.stats.enforced[EjectionType::ConsecutiveLocalOriginFailure.index()].get(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_the_outlier() {
    let d = detector(OutlierProto {
        consecutive_5xx: u(1000),
        interval: secs(10),
        max_ejection_percent: u(50),
        ..Default::default()
    });
    let hosts: Vec<TestHost> = (0..5).map(|_| TestHost::default()).collect();
    let all: Vec<&TestHost> = hosts.iter().collect();
    for (i, host) in hosts.iter().enumerate() {
        // Four endpoints at 100%, one at 50%, 200 requests each.
        let failures = if i == 4 { 100 } else { 0 };
        respond(&d, host, &all, 500, failures);
        respond(&d, host, &all, 200, 200 - failures);
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    d.on_interval(&all, Instant::now());
    assert!(hosts[4].ejected());
    assert!(hosts[..4].iter().all(|h| !h.ejected()));
    assert_eq!(d.stats.enforced[EjectionType::SuccessRate.index()].get(), 1);
    assert_eq!(hosts[0].monitor.success_rates().0, 100.0);
}

#[tokio::test(start_paused = true)]
async fn failure_percentage_ejects_when_enforced() {
    let d = detector(OutlierProto {
        consecutive_5xx: u(1000),
        interval: secs(10),
        max_ejection_percent: u(50),
        enforcing_success_rate: u(0),
        enforcing_failure_percentage: u(100),
        failure_percentage_minimum_hosts: u(2),
        ..Default::default()
    });
    let hosts: Vec<TestHost> = (0..2).map(|_| TestHost::default()).collect();
    let all: Vec<&TestHost> = hosts.iter().collect();
    respond(&d, &hosts[0], &all, 200, 60);
    respond(&d, &hosts[1], &all, 500, 55);
    respond(&d, &hosts[1], &all, 200, 5);
    tokio::time::advance(Duration::from_secs(10)).await;
    d.on_interval(&all, Instant::now());
    assert!(hosts[1].ejected());
    assert!(!hosts[0].ejected());
}

#[test]
fn max_below_base_is_refused() {
    let error = OutlierConfig::compile(&OutlierProto {
        base_ejection_time: secs(60),
        max_ejection_time: secs(30),
        ..Default::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("max_ejection_time"), "{error}");
}
