use super::*;
use crate::store::Store;
use bosun_api::load::Source;

fn registry(yaml: &str) -> ServiceRegistry {
    let store = Store::in_memory();
    store
        .apply_sources(&[Source::new("test.yaml", yaml)], None)
        .unwrap();
    ServiceRegistry::build(&store.snapshot())
}

fn pod(name: &str, labels: &str, ip: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n  serviceAccountName: sa-{name}\n  containers:\n  - name: app\n    image: x\n    ports:\n    - {{name: web, containerPort: 8081}}\nstatus:\n  podIP: {ip}\n  phase: Running\n{extra}---\n"
    )
}

#[test]
fn protocols_come_from_names_and_app_protocol() {
    let port = |name: &str, app: Option<&str>| core::ServicePort {
        name: Some(name.to_owned()),
        app_protocol: app.map(str::to_owned),
        port: 80,
        ..Default::default()
    };
    assert_eq!(
        Protocol::of_kubernetes_port(&port("http", None)),
        Protocol::Http
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("http-web", None)),
        Protocol::Http
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("grpc-api", None)),
        Protocol::Grpc
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("grpc-web", None)),
        Protocol::GrpcWeb
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("tcp-db", None)),
        Protocol::Tcp
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("mongo", None)),
        Protocol::Opaque
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("web", None)),
        Protocol::Unknown
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("web", Some("kubernetes.io/h2c"))),
        Protocol::Http2
    );
    assert_eq!(
        Protocol::of_kubernetes_port(&port("tcp", Some("http"))),
        Protocol::Http
    );
    let mut udp = port("dns", None);
    udp.protocol = Some("UDP".to_owned());
    assert_eq!(Protocol::of_kubernetes_port(&udp), Protocol::Udp);
}

#[test]
fn bookinfo_services_select_their_pods() {
    let bookinfo = std::fs::read_to_string(bosun_api::testing::istio_path(
        "samples/bookinfo/platform/kube/bookinfo.yaml",
    ))
    .unwrap();
    let yaml = format!(
        "{bookinfo}\n---\n{}{}{}",
        pod(
            "reviews-v1-a",
            "{app: reviews, version: v1}",
            "10.0.0.1",
            ""
        ),
        pod(
            "reviews-v2-a",
            "{app: reviews, version: v2}",
            "10.0.0.2",
            ""
        ),
        pod(
            "reviews-v3-a",
            "{app: reviews, version: v3}",
            "10.0.0.3",
            "  conditions: [{type: Ready, status: \"False\"}]\n"
        ),
    );
    let registry = registry(&yaml);
    let hosts: Vec<&str> = registry
        .services
        .iter()
        .map(|s| s.id.hostname.as_str())
        .collect();
    assert_eq!(
        hosts,
        [
            "details.default.svc.cluster.local",
            "productpage.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            "reviews.default.svc.cluster.local"
        ]
    );
    let reviews = registry
        .service_for("reviews.default.svc.cluster.local", "default")
        .unwrap();
    assert_eq!(reviews.ports[0].port, 9080);
    assert_eq!(reviews.ports[0].protocol, Protocol::Http);
    let endpoints = registry.endpoints_of(&reviews.id, 9080);
    let addresses: Vec<&str> = endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(
        addresses,
        ["10.0.0.1", "10.0.0.2"],
        "the unready pod is left out"
    );
    assert_eq!(endpoints[0].labels["version"], "v1");
    assert_eq!(endpoints[0].service_account, "sa-reviews-v1-a");
    assert_eq!(endpoints[0].workload, "default/reviews-v1-a");
    assert_eq!(
        reviews.short_names("default"),
        ["reviews", "reviews.default", "reviews.default.svc"]
    );
    assert_eq!(
        reviews.short_names("other"),
        ["reviews.default", "reviews.default.svc"]
    );
}

#[test]
fn named_target_ports_resolve_per_pod_and_headless_services_pass_through() {
    let yaml = format!(
        "{}apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: web}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  clusterIP: None\n  selector: {{app: db}}\n  ports:\n  - {{name: tcp, port: 5432}}\n",
        pod("web-1", "{app: web}", "10.0.0.9", "")
    );
    let registry = registry(&yaml);
    let web = registry
        .service_for("web.default.svc.cluster.local", "default")
        .unwrap();
    assert_eq!(web.ports[0].target_port, TargetPort::Name("web".to_owned()));
    assert_eq!(registry.endpoints_of(&web.id, 80)[0].port, 8081);
    let db = registry
        .service_for("db.default.svc.cluster.local", "default")
        .unwrap();
    assert_eq!(db.resolution, Resolution::Passthrough);
    assert_eq!(db.vip, None);
}

#[test]
fn service_entries_give_one_service_per_host() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [api.example.com, www.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: https, protocol: HTTPS}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms}
spec:
  hosts: [vm.internal]
  addresses: [240.0.0.10]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP, targetPort: 9090}
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}, ports: {http: 7070}, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: selected}
spec:
  hosts: [selected.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: legacy}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: legacy-vm}
spec:
  address: 10.2.0.1
  labels: {app: legacy}
  serviceAccount: legacy
";
    let registry = registry(yaml);
    let api = registry.service_for("api.example.com", "default").unwrap();
    assert!(api.mesh_external);
    assert_eq!(api.resolution, Resolution::Dns);
    assert_eq!(api.ports[0].protocol, Protocol::Https);
    assert_eq!(
        registry.endpoints_of(&api.id, 443)[0].address,
        "api.example.com",
        "a DNS entry without endpoints resolves its host"
    );
    assert!(registry.service_for("www.example.com", "default").is_some());

    let vm = registry.service_for("vm.internal", "default").unwrap();
    assert_eq!(vm.vip, Some("240.0.0.10".parse().unwrap()));
    let endpoints = registry.endpoints_of(&vm.id, 8080);
    assert_eq!((endpoints[0].port, endpoints[0].weight), (9090, 1));
    assert_eq!((endpoints[1].port, endpoints[1].weight), (7070, 3));

    let selected = registry
        .service_for("selected.internal", "default")
        .unwrap();
    let endpoints = registry.endpoints_of(&selected.id, 80);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].address, "10.2.0.1");
    assert_eq!(endpoints[0].service_account, "legacy");
}

#[test]
fn services_without_selectors_take_endpoint_slices() {
    let yaml = "apiVersion: v1
kind: Service
metadata: {name: legacy}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: legacy-abc
  labels: {kubernetes.io/service-name: legacy}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.3.0.1]
- addresses: [10.3.0.2]
  conditions: {ready: false}
";
    let registry = registry(yaml);
    let legacy = registry
        .service_for("legacy.default.svc.cluster.local", "default")
        .unwrap();
    let endpoints = registry.endpoints_of(&legacy.id, 80);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        (endpoints[0].address.as_str(), endpoints[0].port),
        ("10.3.0.1", 8080)
    );
}

#[test]
fn export_to_limits_who_sees_a_service() {
    let yaml = "apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: team-a
  annotations: {networking.istio.io/exportTo: \".\"}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shared, namespace: team-b}
spec:
  hosts: [shared.example.com]
  exportTo: [team-b, team-c]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
";
    let registry = registry(yaml);
    let private = "private.team-a.svc.cluster.local";
    assert!(registry.service_for(private, "team-a").is_some());
    assert!(registry.service_for(private, "default").is_none());
    assert!(
        registry
            .service_for("shared.example.com", "team-c")
            .is_some()
    );
    assert!(
        registry
            .service_for("shared.example.com", "team-a")
            .is_none()
    );
    assert_eq!(registry.visible_services("default").count(), 0);
}

#[test]
fn short_names_resolve_in_the_writer_namespace() {
    assert_eq!(
        resolve_short_name("reviews", "prod"),
        "reviews.prod.svc.cluster.local"
    );
    assert_eq!(
        resolve_short_name("reviews.prod", "default"),
        "reviews.prod.svc.cluster.local"
    );
    assert_eq!(
        resolve_short_name("api.example.com", "default"),
        "api.example.com"
    );
    assert_eq!(
        resolve_short_name("*.example.com", "default"),
        "*.example.com"
    );
}
