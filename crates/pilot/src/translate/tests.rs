//! Golden tests: Istio's sample YAML in, Envoy resources out, compared with reviewed JSON
//! snapshots under `crates/pilot/tests/golden/`. `BOSUN_UPDATE_GOLDEN=1` rewrites them
//! (review the diff before committing).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::api::config_dump_json;
use crate::testing::{
    PodSpec, context_of, ingress_gateway, istio_file, pods_for_deployments, router,
};

const BOOKINFO: &str = "samples/bookinfo/platform/kube/bookinfo.yaml";
const NETWORKING: &str = "samples/bookinfo/networking";

/// Bookinfo with a Pod per Deployment, the ingress gateway, and `extra` files.
fn bookinfo(extra: &[&str]) -> (PushContext, Vec<PodSpec>, PodSpec) {
    let platform = istio_file(BOOKINFO);
    let pods = pods_for_deployments(&platform, Ipv4Addr::new(10, 0, 0, 1));
    let (gateway_yaml, gateway) = ingress_gateway(Ipv4Addr::new(10, 0, 1, 1));
    let mut texts = vec![platform, gateway_yaml];
    texts.extend(pods.iter().map(PodSpec::yaml));
    texts.extend(extra.iter().map(|f| istio_file(f)));
    (context_of(&texts), pods, gateway)
}

fn pod<'a>(pods: &'a [PodSpec], name: &str) -> &'a PodSpec {
    pods.iter()
        .find(|p| p.name.starts_with(name))
        .unwrap_or_else(|| panic!("no pod {name}"))
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"))
}

/// Compares `actual` with the stored snapshot (or rewrites it when asked).
fn golden(name: &str, actual: &Value) {
    let path = golden_path(name);
    let text = format!("{}\n", serde_json::to_string_pretty(actual).unwrap());
    if std::env::var_os("BOSUN_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with BOSUN_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != text {
        let actual_path = path.with_extension("actual.json");
        std::fs::write(&actual_path, &text).unwrap();
        panic!(
            "{} differs from the golden snapshot; see {} (BOSUN_UPDATE_GOLDEN=1 accepts it)",
            name,
            actual_path.display()
        );
    }
}

/// The config dump restricted to some resource types (and, for routes, some names).
fn dump(resources: &ProxyResources, types: &[&str], routes: Option<&[&str]>) -> Value {
    let mut picked = ProxyResources::default();
    for type_url in types {
        let all = resources.of_type(type_url).cloned().unwrap_or_default();
        let map: ResourceMap = all
            .iter()
            .filter(|(n, _)| match (*type_url, routes) {
                (ROUTE_TYPE, Some(names)) => names.contains(&n.as_str()),
                _ => true,
            })
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let map = TypeResources::from(map);
        match *type_url {
            CLUSTER_TYPE => picked.clusters = map,
            ENDPOINT_TYPE => picked.endpoints = map,
            LISTENER_TYPE => picked.listeners = map,
            _ => picked.routes = map,
        }
    }
    let mut value = config_dump_json(&picked).unwrap();
    if let Some(configs) = value["configs"].as_array_mut() {
        configs.retain(|c| {
            c.as_object().is_some_and(|o| {
                o.values()
                    .any(|v| v.as_array().is_some_and(|a| !a.is_empty()))
            })
        });
    }
    value
}

const ALL: [&str; 4] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

#[test]
fn bookinfo_sidecar_with_destination_rules() {
    let (context, pods, _) = bookinfo(&[&format!("{NETWORKING}/destination-rule-all.yaml")]);
    let productpage = pod(&pods, "productpage").sidecar(Capture::Iptables);
    golden(
        "bookinfo-productpage-sidecar",
        &dump(&generate(&context, &productpage), &ALL, None),
    );
}

#[test]
fn bookinfo_sidecar_without_capture() {
    let (context, pods, _) = bookinfo(&[&format!("{NETWORKING}/destination-rule-all.yaml")]);
    let reviews = pod(&pods, "reviews-v2").sidecar(Capture::None {
        http_proxy_port: 15080,
        app_address: "127.0.0.1".parse().unwrap(),
    });
    let resources = generate(&context, &reviews);
    golden(
        "bookinfo-reviews-v2-sidecar-no-capture",
        &dump(
            &resources,
            &[LISTENER_TYPE, ROUTE_TYPE],
            Some(&["http_proxy"]),
        ),
    );
}

#[test]
fn bookinfo_ingress_gateway() {
    let (context, _, gateway) = bookinfo(&[
        &format!("{NETWORKING}/bookinfo-gateway.yaml"),
        &format!("{NETWORKING}/destination-rule-all.yaml"),
    ]);
    let resources = generate(&context, &router(&gateway, Capture::Iptables));
    golden(
        "bookinfo-ingress-gateway",
        &dump(&resources, &[LISTENER_TYPE, ROUTE_TYPE], None),
    );
    assert!(
        resources.listeners.contains_key("0.0.0.0_8080"),
        "port 80 maps to 8080"
    );
    assert!(resources.routes.contains_key("http.8080"));
}

/// Every Bookinfo networking file: the sidecar's route table for 9080 (and clusters when
/// the file shapes them), and the gateway's routes.
#[test]
fn bookinfo_networking_files() {
    let directory = bosun_api::testing::istio_path(NETWORKING);
    let mut files: Vec<String> = std::fs::read_dir(&directory)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let path = format!("{NETWORKING}/{file}");
        let mut extra = vec![path.clone(), format!("{NETWORKING}/bookinfo-gateway.yaml")];
        if !file.starts_with("destination-rule") {
            extra.push(format!("{NETWORKING}/destination-rule-all.yaml"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (context, pods, gateway) = bookinfo(&extra);
        let productpage = pod(&pods, "productpage").sidecar(Capture::Iptables);
        let sidecar = generate(&context, &productpage);
        let shapes_clusters = file.starts_with("destination-rule") || file.starts_with("egress");
        let types: &[&str] = if shapes_clusters {
            &[CLUSTER_TYPE, ROUTE_TYPE]
        } else {
            &[ROUTE_TYPE]
        };
        let gateway = generate(&context, &router(&gateway, Capture::Iptables));
        let value = serde_json::json!({
            "sidecar": dump(&sidecar, types, None),
            "gateway": dump(&gateway, &[ROUTE_TYPE], None),
        });
        let name = format!("bookinfo-{}", file.trim_end_matches(".yaml"));
        if let Err(e) = std::panic::catch_unwind(|| golden(&name, &value)) {
            failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The other samples with networking files: helloworld, httpbin (HTTP gateways) and
/// tcp-echo (a TCP gateway and a TCP weighted split).
#[test]
fn other_samples() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "helloworld",
            &[
                "samples/helloworld/helloworld.yaml",
                "samples/helloworld/helloworld-gateway.yaml",
            ],
        ),
        (
            "httpbin",
            &[
                "samples/httpbin/httpbin.yaml",
                "samples/httpbin/httpbin-gateway.yaml",
            ],
        ),
        (
            "tcp-echo-all-v1",
            &[
                "samples/tcp-echo/tcp-echo.yaml",
                "samples/tcp-echo/tcp-echo-all-v1.yaml",
            ],
        ),
        (
            "tcp-echo-20-v2",
            &[
                "samples/tcp-echo/tcp-echo.yaml",
                "samples/tcp-echo/tcp-echo-all-v1.yaml",
                "samples/tcp-echo/tcp-echo-20-v2.yaml",
            ],
        ),
    ];
    for (name, files) in cases {
        let mut texts: Vec<String> = files.iter().map(|f| istio_file(f)).collect();
        let pods = pods_for_deployments(&texts[0], Ipv4Addr::new(10, 0, 2, 1));
        let (gateway_yaml, gateway) = ingress_gateway(Ipv4Addr::new(10, 0, 1, 1));
        texts.push(gateway_yaml);
        texts.extend(pods.iter().map(PodSpec::yaml));
        // A client in the namespace, to see the outbound side.
        let client = PodSpec {
            name: "client-0".to_owned(),
            namespace: "default".to_owned(),
            labels: [("app".to_owned(), "client".to_owned())].into(),
            service_account: "client".to_owned(),
            ip: Ipv4Addr::new(10, 0, 3, 1),
        };
        texts.push(client.yaml());
        let context = context_of(&texts);
        let value = serde_json::json!({
            "sidecar": dump(&generate(&context, &client.sidecar(Capture::Iptables)), &[CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE], None),
            "gateway": dump(&generate(&context, &router(&gateway, Capture::Iptables)), &[LISTENER_TYPE, ROUTE_TYPE], None),
        });
        golden(&format!("sample-{name}"), &value);
    }
}

#[test]
fn resources_are_shared_between_proxies_of_one_namespace() {
    let (context, pods, _) = bookinfo(&[]);
    let a = generate(
        &context,
        &pod(&pods, "reviews-v1").sidecar(Capture::Iptables),
    );
    let b = generate(
        &context,
        &pod(&pods, "reviews-v2").sidecar(Capture::Iptables),
    );
    let name = "outbound|9080||ratings.default.svc.cluster.local";
    assert!(
        Arc::ptr_eq(&a.clusters[name], &b.clusters[name]),
        "built once per push"
    );
    assert!(Arc::ptr_eq(&a.routes["9080"], &b.routes["9080"]));
}

#[test]
fn versions_change_only_with_content() {
    let (first, pods, _) = bookinfo(&[]);
    let (second, _, _) = bookinfo(&[]);
    let (third, _, _) = bookinfo(&[&format!("{NETWORKING}/virtual-service-all-v1.yaml")]);
    let proxy = pod(&pods, "productpage").sidecar(Capture::Iptables);
    let (a, b, c) = (
        generate(&first, &proxy),
        generate(&second, &proxy),
        generate(&third, &proxy),
    );
    assert_eq!(a.routes["9080"].version, b.routes["9080"].version);
    assert_ne!(a.routes["9080"].version, c.routes["9080"].version);
    assert_eq!(
        a.listeners, c.listeners,
        "a VirtualService changes routes only"
    );
}

#[test]
fn bosun_proxy_accepts_every_generated_resource() {
    // The support table of bosun proxy is the contract: decode every resource against it.
    let (context, pods, gateway) = bookinfo(&[
        &format!("{NETWORKING}/bookinfo-gateway.yaml"),
        &format!("{NETWORKING}/destination-rule-all.yaml"),
        &format!("{NETWORKING}/virtual-service-reviews-jason-v2-v3.yaml"),
        &format!("{NETWORKING}/virtual-service-ratings-test-delay.yaml"),
        &format!("{NETWORKING}/egress-rule-google-apis.yaml"),
    ]);
    let _pool = bosun_xds::PoolGuard::new();
    for proxy in [
        pod(&pods, "productpage").sidecar(Capture::Iptables),
        pod(&pods, "productpage").sidecar(Capture::None {
            http_proxy_port: 15080,
            app_address: "127.0.0.1".parse().unwrap(),
        }),
        router(&gateway, Capture::Iptables),
    ] {
        let resources = generate(&context, &proxy);
        for type_url in PUSH_ORDER {
            for resource in resources.of_type(type_url).unwrap().values() {
                let full_name = type_url.rsplit_once('/').unwrap().1;
                bosun_xds::check_binary(
                    &resource.any().value,
                    full_name,
                    bosun_proxy::support::support(),
                )
                .unwrap_or_else(|e| panic!("{} {}: {e}", proxy.id, resource.name));
            }
        }
    }
}

/// Bookinfo's store, a context of it with productpage's resources generated, and the
/// productpage sidecar.
fn bookinfo_store() -> (crate::store::Store, PushContext, ProxyNode, ProxyResources) {
    let platform = istio_file(BOOKINFO);
    let pods = pods_for_deployments(&platform, Ipv4Addr::new(10, 0, 0, 1));
    let mut texts = vec![
        platform,
        istio_file(&format!("{NETWORKING}/destination-rule-all.yaml")),
    ];
    texts.extend(pods.iter().map(PodSpec::yaml));
    let store = crate::testing::store_of(&texts);
    let context = PushContext::build(&store.snapshot(), Default::default());
    let proxy = pod(&pods, "productpage").sidecar(Capture::Iptables);
    let resources = generate(&context, &proxy);
    (store, context, proxy, resources)
}

/// What a context built from scratch gives `proxy`: what carried contexts must equal.
fn fresh_build(store: &crate::store::Store, proxy: &ProxyNode) -> ProxyResources {
    generate(
        &PushContext::build(&store.snapshot(), Default::default()),
        proxy,
    )
}

fn apply(store: &crate::store::Store, yaml: &str) {
    store
        .apply_sources(&[bosun_api::load::Source::new("change.yaml", yaml)], None)
        .unwrap();
}

#[test]
fn an_endpoint_change_reencodes_only_the_assignments_it_touches() {
    let (store, first, proxy, before) = bookinfo_store();
    apply(
        &store,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: reviews-v9, labels: {app: reviews, version: v1}}\nspec: {containers: [{name: app, image: x}]}\nstatus: {podIP: 10.0.9.9, phase: Running}\n",
    );
    let second = PushContext::build_after(&first, &store.snapshot(), Default::default());
    let after = generate(&second, &proxy);
    for (what, a, b) in [
        ("clusters", &before.clusters, &after.clusters),
        ("listeners", &before.listeners, &after.listeners),
        ("routes", &before.routes, &after.routes),
        ("name tables", &before.name_tables, &after.name_tables),
    ] {
        assert!(
            Arc::ptr_eq(a.shared(), b.shared()),
            "{what} are carried over"
        );
    }
    let mut changed: Vec<&str> = after
        .endpoints
        .changed_since(&before.endpoints)
        .map(|r| r.name.as_str())
        .collect();
    changed.sort_unstable();
    assert_eq!(
        changed,
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
        ],
        "the new pod is a v1 of reviews"
    );
    let ratings = "outbound|9080||ratings.default.svc.cluster.local";
    assert!(Arc::ptr_eq(
        &before.endpoints[ratings],
        &after.endpoints[ratings]
    ));
    // What was carried is what a fresh build makes.
    let fresh = fresh_build(&store, &proxy);
    assert_eq!(fresh.endpoints, after.endpoints);
    assert_eq!(fresh.clusters, after.clusters);
}

#[test]
fn a_virtual_service_change_rebuilds_routes_and_keeps_clusters() {
    let (store, first, proxy, before) = bookinfo_store();
    apply(
        &store,
        &istio_file(&format!("{NETWORKING}/virtual-service-all-v1.yaml")),
    );
    let second = PushContext::build_after(&first, &store.snapshot(), Default::default());
    let after = generate(&second, &proxy);
    assert!(Arc::ptr_eq(
        before.clusters.shared(),
        after.clusters.shared()
    ));
    assert!(Arc::ptr_eq(
        before.endpoints.shared(),
        after.endpoints.shared()
    ));
    assert!(
        Arc::ptr_eq(before.listeners.shared(), after.listeners.shared()),
        "rebuilt, but equal: the same Arc"
    );
    assert!(!after.routes.same_as(&before.routes));
    let fresh = fresh_build(&store, &proxy);
    assert_eq!(fresh.routes, after.routes);

    // A DestinationRule change reaches the clusters.
    apply(
        &store,
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n  host: ratings\n  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n  subsets: [{name: v1, labels: {version: v1}}]\n",
    );
    let third = PushContext::build_after(&second, &store.snapshot(), Default::default());
    let latest = generate(&third, &proxy);
    let changed: Vec<&str> = latest
        .clusters
        .changed_since(&after.clusters)
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        changed.contains(&"outbound|9080||ratings.default.svc.cluster.local"),
        "{changed:?}"
    );
    assert!(
        !changed.iter().any(|n| n.contains("reviews")),
        "{changed:?}"
    );
}

#[test]
fn a_delegate_change_reaches_the_routes_of_its_root() {
    let (store, first, proxy, _) = bookinfo_store();
    apply(
        &store,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-root}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /reviews}}]\n    delegate: {name: reviews-child}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-child}\nspec:\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n",
    );
    let second = PushContext::build_after(&first, &store.snapshot(), Default::default());
    let before = generate(&second, &proxy);
    apply(
        &store,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-child}\nspec:\n  http:\n  - route: [{destination: {host: reviews, subset: v3}}]\n",
    );
    let third = PushContext::build_after(&second, &store.snapshot(), Default::default());
    let after = generate(&third, &proxy);
    assert!(!after.routes.same_as(&before.routes));
    let fresh = fresh_build(&store, &proxy);
    assert_eq!(
        fresh.routes, after.routes,
        "the child's v3 is in the root's routes"
    );
}
