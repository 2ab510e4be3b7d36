//! Istio's semantic rules for the kinds its shared test data does not cover.

use test_case::test_case;

use crate::load::{Source, load_source};

/// The problems of one document, as `bosun validate` prints them (without the file name).
fn problems(yaml: &str) -> Vec<String> {
    let result = load_source(&Source::new("t.yaml", yaml));
    result
        .problems
        .iter()
        .map(|p| p.to_string().trim_start_matches("t.yaml:").to_owned())
        .collect()
}

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n{}",
        indent(spec)
    )
}

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\nspec:\n{}",
        indent(spec)
    )
}

fn gw(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: g\nspec:\n{}",
        indent(spec)
    )
}

fn indent(spec: &str) -> String {
    spec.lines().map(|l| format!("  {l}\n")).collect()
}

const ROUTE: &str = "http:\n- route:\n  - destination:\n      host: reviews\n";

#[test]
fn a_plain_virtual_service_is_valid() {
    assert_eq!(
        problems(&vs(&format!("hosts: [reviews]\n{ROUTE}"))),
        Vec::<String>::new()
    );
}

#[test_case("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n    weight: 120\n", "weight must be in range [0, 100]"; "weight out of range")]
#[test_case("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n      subset: v1\n    weight: 0\n  - destination:\n      host: reviews\n      subset: v2\n    weight: 0\n", "total destination weight = 0"; "weights sum to zero")]
#[test_case("hosts: [reviews]\nhttp:\n- match:\n  - uri:\n      regex: '(unclosed'\n  route:\n  - destination:\n      host: reviews\n", "not a valid regular expression"; "bad regex")]
#[test_case("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n      subset: V_1\n", "must be a valid DNS label"; "bad subset name")]
#[test_case("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n  redirect:\n    uri: /x\n", "both route and redirect"; "route and redirect")]
#[test_case("hosts: [reviews]\nhttp:\n- directResponse:\n    status: 200\n  redirect:\n    uri: /x\n", "both redirect and direct response"; "redirect and direct response")]
#[test_case("hosts: [reviews]\nhttp:\n- match:\n  - uri:\n      prefix: /\n", "HTTP route, redirect or direct response is required"; "no action")]
#[test_case("hosts: ['*']\nhttp:\n- route:\n  - destination:\n      host: reviews\n", "wildcard host * is not allowed"; "star host for mesh")]
#[test_case("hosts: [reviews]\nhttp:\n- timeout: 0.0001s\n  route:\n  - destination:\n      host: reviews\n", "greater than 1ms"; "tiny timeout")]
#[test_case("hosts: [reviews]\nhttp:\n- retries:\n    attempts: 3\n    retryOn: 5xx,connect-failur\n  route:\n  - destination:\n      host: reviews\n", "did you mean \"connect-failure\""; "bad retryOn")]
#[test_case("hosts: [reviews]\nhttp:\n- fault:\n    abort:\n      httpStatus: 700\n      percentage:\n        value: 100\n  route:\n  - destination:\n      host: reviews\n", "invalid abort http status 700"; "abort status")]
#[test_case("hosts: [reviews]\nhttp:\n- fault:\n    delay:\n      fixedDelay: 5s\n      percentage:\n        value: 101\n  route:\n  - destination:\n      host: reviews\n", "out of range [0, 100]"; "delay percentage")]
#[test_case("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n      port:\n        number: 70000\n", "port must be between 1-65535"; "port range")]
#[test_case("hosts: [reviews]\nhttp:\n- redirect:\n    uri: /new\n    redirectCode: 200\n", "not a valid redirect code"; "redirect code")]
#[test_case("hosts: [reviews]\nhttp:\n- match:\n  - headers:\n      end-user:\n        exact: jason\n        prefix: j\n  route:\n  - destination:\n      host: reviews\n", "only one of exact, prefix or regex"; "string match oneof")]
#[test_case("hosts: [reviews]\ngateways: ['bad/gw/name']\nhttp:\n- route:\n  - destination:\n      host: reviews\n", "invalid gateway"; "gateway reference")]
#[test_case("hosts: [reviews]\n", "http, tcp or tls must be provided"; "no routes")]
#[test_case("hosts: [reviews]\ntcp:\n- route: []\n", "route is required"; "tcp without route")]
#[test_case("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n  rewrite: {}\n", "rewrite must specify"; "empty rewrite")]
fn virtual_service_rules(spec: &str, expected: &str) {
    let found = problems(&vs(spec));
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got {found:#?}"
    );
}

#[test_case("host: reviews\nsubsets:\n- name: v1\n  labels: {version: v1}\n- name: v1\n  labels: {version: v2}\n", "duplicate subset name"; "duplicate subsets")]
#[test_case("host: reviews\ntrafficPolicy: {}\n", "at least one field"; "empty traffic policy")]
#[test_case("host: reviews\ntrafficPolicy:\n  loadBalancer:\n    simple: ROUND_ROBIN\n    consistentHash:\n      useSourceIp: true\n", "only one of simple or consistentHash"; "lb oneof")]
#[test_case("host: reviews\ntrafficPolicy:\n  loadBalancer:\n    simple: ROUND_ROBN\n", "did you mean \"ROUND_ROBIN\""; "lb hint")]
#[test_case("host: reviews\ntrafficPolicy:\n  outlierDetection:\n    maxEjectionPercent: 150\n", "out of range [0, 100]"; "ejection percent")]
#[test_case("host: reviews\ntrafficPolicy:\n  connectionPool:\n    tcp:\n      maxConnections: -1\n", "must be non-negative"; "negative connections")]
#[test_case("host: reviews\ntrafficPolicy:\n  tls:\n    mode: MUTUAL\n", "client certificate required"; "mutual needs certs")]
#[test_case("host: reviews\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpCookie:\n        ttl: 0s\n", "name required for HttpCookie"; "cookie name")]
#[test_case("host: reviews\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n    loadBalancer: {simple: RANDOM}\n  - port: {number: 80}\n    loadBalancer: {simple: RANDOM}\n", "more than one port level setting"; "duplicate port settings")]
fn destination_rule_rules(spec: &str, expected: &str) {
    let found = problems(&dr(spec));
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got {found:#?}"
    );
}

#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: []\n", "at least one host"; "no hosts")]
#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 80, name: http, protocol: HTTPX}\n  hosts: ['*']\n", "invalid protocol"; "bad protocol")]
#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n", "must have TLS settings"; "https without tls")]
#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE}\n", "require a server certificate"; "simple without cert")]
#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: ['*']\n", "port names in servers must be unique"; "duplicate port names")]
#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['bad ns/*']\n", "invalid namespace"; "bad host namespace")]
#[test_case("selector: {istio: ingressgateway}\nservers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']\n  tls: {mode: PASSTHROUGH}\n", "only valid for the TLS protocol"; "passthrough on http")]
fn gateway_rules(spec: &str, expected: &str) {
    let found = problems(&gw(spec));
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got {found:#?}"
    );
}

#[test]
fn problems_name_file_line_kind_name_and_field() {
    let found = problems(&vs(
        "hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n      subset: Bad_Subset\n",
    ));
    assert_eq!(
        found,
        [
            "11:17: VirtualService default/r: spec.http[0].route[0].destination.subset: \
          subset name \"Bad_Subset\" must be a valid DNS label"
        ]
    );
}

#[test]
fn unknown_fields_are_refused_with_a_hint() {
    let found = problems(&vs(
        "hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n      subst: v1\n",
    ));
    assert_eq!(
        found,
        [
            "11:9: VirtualService default/r: spec.http[0].route[0].destination.subst: \
          unknown field \"subst\", did you mean \"subset\"?"
        ]
    );
}

#[test]
fn every_typing_mistake_of_a_document_is_reported_in_order() {
    let found = problems(&vs("hosts: [reviews]
htp:
- route:
  - destination: {host: reviews}
tcp:
- route:
  - destination: {host: reviews, port: {number: eighty}}
    wieght: 10
tls: nope
"));
    assert_eq!(
        found,
        [
            "7:3: VirtualService default/r: spec.htp: unknown field \"htp\", did you mean \"http\"?",
            "12:51: VirtualService default/r: spec.tcp[0].route[0].destination.port.number: \
             type conversion error from string \"eighty\" to integer",
            "13:7: VirtualService default/r: spec.tcp[0].route[0].wieght: \
             unknown field \"wieght\", did you mean \"weight\"?",
            "14:8: VirtualService default/r: spec.tls: must be of type array: \"string\"",
        ]
    );
}

#[test]
fn a_required_field_of_the_wrong_type_is_not_also_missing() {
    let found = problems(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: http\n    protocl: TCP\n",
    );
    assert_eq!(
        found,
        [
            "7:11: Service default/s: spec.ports[0].port: type conversion error from string \"http\" to integer",
            "8:5: Service default/s: spec.ports[0].protocl: unknown field \"protocl\", did you mean \"protocol\"?",
        ]
    );
}

#[test]
fn unknown_fields_in_kubernetes_kinds_are_refused_too() {
    let found = problems(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n    targetPrt: 8080\n",
    );
    assert_eq!(
        found,
        [
            "8:5: Service default/s: spec.ports[0].targetPrt: unknown field \"targetPrt\", did you mean \"targetPort\"?"
        ]
    );
}

#[test]
fn unknown_kinds_in_managed_groups_are_errors_with_a_hint() {
    let found =
        problems("apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata:\n  name: x\n");
    assert_eq!(
        found,
        [
            "2:7: document 1: kind: unknown kind \"VirtualServce\" in networking.istio.io, did you mean \"VirtualService\"?"
        ]
    );
    let found = problems(
        "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata:\n  name: x\n",
    );
    assert!(
        found[0].contains("unknown apiVersion \"networking.istio.io/v2\" for VirtualService"),
        "{found:?}"
    );
    let found = problems("apiVersion: apps/v1\nkind: Deploymnet\nmetadata:\n  name: x\n");
    assert!(
        found[0].contains("did you mean \"Deployment\""),
        "{found:?}"
    );
}

#[test]
fn other_api_groups_are_skipped() {
    let result = load_source(&Source::new(
        "t.yaml",
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: c\nspec:\n  anything: goes\n",
    ));
    assert!(result.problems.is_empty());
    assert_eq!(result.skipped.len(), 1);
    assert_eq!(result.skipped[0].kind, "Certificate");
}

#[test]
fn yaml_bombs_are_refused() {
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut previous = 'a';
    for name in 'b'..='j' {
        bomb.push_str(&format!(
            "{name}: &{name} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]\n"
        ));
        previous = name;
    }
    let started = std::time::Instant::now();
    let found = problems(&bomb);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn huge_inputs_are_refused() {
    let huge = "#".repeat(crate::load::MAX_SOURCE_BYTES + 1);
    let found = problems(&huge);
    assert!(found[0].contains("more than the"), "{found:?}");
}

#[test]
fn syntax_errors_have_a_position() {
    let found = problems("apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(|c: char| c.is_ascii_digit()),
        "{found:?}"
    );
}

#[test]
fn a_syntax_error_names_its_document_and_the_others_still_load() {
    let result = load_source(&Source::new(
        "t.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n# a comment\n---\napiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: b}\n---\nfoo: [\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n",
    ));
    let found: Vec<String> = result.problems.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("t.yaml:8:7: document 2: kind: unknown kind \"VirtualServce\"")
            && found[0].contains("did you mean"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("t.yaml:11:6: document 3: unclosed bracket"),
        "{found:?}"
    );
    assert_eq!(result.loaded.len(), 2, "the Service and the Namespace");
}

#[test]
fn json_documents_load() {
    let result = load_source(&Source::new(
        "t.json",
        r#"{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews"}, "spec": {"host": "reviews",
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}"#,
    ));
    assert!(result.problems.is_empty(), "{:?}", result.problems);
    assert_eq!(result.loaded.len(), 1);
}

fn object(api_version: &str, kind: &str, body: &str) -> String {
    format!("apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: x\n{body}")
}

/// The kinds neither Istio's validation data nor its samples exercise: one valid document
/// each, and one mistake each that must be found where it was written.
#[test_case("networking.istio.io/v1", "Sidecar",
    "spec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n",
    "spec:\n  ingress:\n  - defaultEndpoint: 127.0.0.1:8080\n",
    "7:5: Sidecar default/x: spec.ingress[0].port: sidecar: port is required for ingress listeners"
    ; "sidecar")]
#[test_case("gateway.networking.k8s.io/v1", "GatewayClass",
    "spec:\n  controllerName: istio.io/gateway-controller\n",
    "spec:\n  description: no controller\n",
    "5:1: GatewayClass x: spec.controllerName: Required value"
    ; "gateway class")]
#[test_case("gateway.networking.k8s.io/v1", "Gateway",
    "spec:\n  gatewayClassName: istio\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n",
    "spec:\n  gatewayClassName: istio\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n  - {name: http, port: 81, protocol: HTTP}\n",
    "9:12: Gateway default/x: spec.listeners[1].name: Duplicate value: \"http\""
    ; "kubernetes gateway")]
#[test_case("gateway.networking.k8s.io/v1", "GRPCRoute",
    "spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{method: {service: helloworld.Greeter}}]\n    backendRefs: [{name: greeter, port: 50051}]\n",
    "spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{method: {type: Exact}}]\n    backendRefs: [{name: greeter, port: 50051}]\n",
    "8:16: GRPCRoute default/x: spec.rules[0].matches[0].method: One or both of 'service' or 'method' must be specified"
    ; "grpc route")]
#[test_case("gateway.networking.k8s.io/v1alpha2", "TLSRoute",
    "spec:\n  parentRefs: [{name: gw}]\n  hostnames: [foo.example.com]\n  rules:\n  - backendRefs: [{name: foo, port: 443}]\n",
    "spec:\n  parentRefs: [{name: gw}]\n  hostnames: [foo.example.com]\n  rules:\n  - backendRefs: [{name: foo}]\n",
    "9:19: TLSRoute default/x: spec.rules[0].backendRefs[0].port: Must have port for Service reference"
    ; "tls route")]
#[test_case("gateway.networking.k8s.io/v1beta1", "ReferenceGrant",
    "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]\n  to: [{group: \"\", kind: Service}]\n",
    "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]\n",
    "5:1: ReferenceGrant default/x: spec.to: Required value"
    ; "reference grant")]
#[test_case("v1", "Pod",
    "spec:\n  containers:\n  - {name: app, image: docker.io/istio/examples-bookinfo-ratings-v1:1.20.3}\n",
    "spec:\n  containers:\n  - {name: App_1, image: busybox}\n",
    "7:12: Pod default/x: spec.containers[0].name: invalid container name \"App_1\""
    ; "pod")]
#[test_case("v1", "Endpoints",
    "subsets:\n- addresses: [{ip: 10.0.0.1}]\n  ports: [{port: 9080, name: http}]\n",
    "subsets:\n- addresses: [{ip: 10.0.0.1}]\n  prots: [{port: 9080}]\n",
    "7:3: Endpoints default/x: subsets[0].prots: unknown field \"prots\", did you mean \"ports\"?"
    ; "endpoints")]
#[test_case("discovery.k8s.io/v1", "EndpointSlice",
    "addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\nports: [{port: 9080, name: http}]\n",
    "addressType: IPv4\nendpoints:\n- adresses: [10.0.0.1]\n",
    "7:3: EndpointSlice default/x: endpoints[0].adresses: unknown field \"adresses\", did you mean \"addresses\"?"
    ; "endpoint slice")]
#[test_case("v1", "ConfigMap",
    "data:\n  mesh: |\n    defaultConfig: {}\n",
    "data: [mesh]\n",
    "5:7: ConfigMap default/x: data: must be of type object: \"array\""
    ; "config map")]
#[test_case("v1", "Secret",
    "type: kubernetes.io/tls\nstringData:\n  tls.crt: cert\n  tls.key: key\n",
    "stringdata:\n  tls.crt: cert\n",
    "5:1: Secret default/x: stringdata: unknown field \"stringdata\", did you mean \"stringData\"?"
    ; "secret")]
#[test_case("v1", "ServiceAccount",
    "automountServiceAccountToken: false\n",
    "automountServiceAccountToken: sometimes\n",
    "5:31: ServiceAccount default/x: automountServiceAccountToken: must be of type boolean: \"string\""
    ; "service account")]
#[test_case("networking.k8s.io/v1", "Ingress",
    "spec:\n  rules:\n  - host: bookinfo.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: productpage, port: {number: 9080}}}}\n",
    "spec:\n  rule: []\n",
    "6:3: Ingress default/x: spec.rule: unknown field \"rule\", did you mean \"rules\"?"
    ; "ingress")]
fn kinds_without_shared_test_data(
    api_version: &str,
    kind: &str,
    valid: &str,
    invalid: &str,
    expected: &str,
) {
    let found = problems(&object(api_version, kind, valid));
    assert!(found.is_empty(), "{kind}: {found:?}");
    assert_eq!(problems(&object(api_version, kind, invalid)), [expected]);
}
