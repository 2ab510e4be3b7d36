use super::*;

fn cluster(yaml: &str) -> Cluster {
    let config: ClusterProto = bosun_xds::from_yaml(
        yaml,
        "envoy.config.cluster.v3.Cluster",
        crate::support::support(),
    )
    .unwrap();
    Cluster::compile(config, &Stats::new()).unwrap()
}

#[test]
fn original_destination_endpoints_unused_for_a_cleanup_interval_are_dropped() {
    let passthrough = cluster(
        "name: passthrough
type: ORIGINAL_DST
lb_policy: CLUSTER_PROVIDED
connect_timeout: 1s
cleanup_interval: 2s",
    );
    assert_eq!(passthrough.cleanup_interval, Some(Duration::from_secs(2)));
    let (a, b): (SocketAddr, SocketAddr) = (
        "10.0.0.1:80".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    let selection = Selection {
        hash: None,
        avoid: &[],
        attempts: 1,
    };
    let first = passthrough.choose_host(Some(a), &selection).unwrap();
    assert_eq!(first.address, a);
    passthrough.choose_host(Some(b), &selection).unwrap();
    // Both were used since the last cleanup: both stay, and must be used again to stay on.
    assert_eq!(passthrough.clean_up_original_dst(), 2);
    let again = passthrough.choose_host(Some(a), &selection).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "a kept endpoint keeps its pools"
    );
    assert_eq!(passthrough.clean_up_original_dst(), 1);
    assert_eq!(passthrough.clean_up_original_dst(), 0);

    // Envoy's default interval; other cluster types have none.
    let default =
        cluster("name: d\ntype: ORIGINAL_DST\nlb_policy: CLUSTER_PROVIDED\nconnect_timeout: 1s");
    assert_eq!(default.cleanup_interval, Some(Duration::from_secs(5)));
    let eds = cluster(
        "name: e\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {eds_config: {ads: {}}}",
    );
    assert_eq!(eds.cleanup_interval, None);
}
