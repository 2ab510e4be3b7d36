use super::*;
use crate::load::{Source, load_sources, read_sources};
use crate::testing::istio_path;

fn analyze_files(files: &[&str], extra: &str) -> Vec<String> {
    let paths: Vec<_> = files.iter().map(|f| istio_path(f)).collect();
    let mut sources = read_sources(&paths).unwrap();
    if !extra.is_empty() {
        sources.push(Source::new("extra.yaml", extra));
    }
    let result = load_sources(&sources);
    assert!(result.problems.is_empty(), "{:?}", result.problems);
    analyze(&result.loaded)
        .iter()
        .map(|m| {
            let text = m.to_string();
            // Drop the directory part of the file name for stable assertions.
            match text.find("samples/") {
                Some(i) => text[i..].to_owned(),
                None => text,
            }
        })
        .collect()
}

const BOOKINFO: &str = "samples/bookinfo/platform/kube/bookinfo.yaml";
const DESTINATION_RULES: &str = "samples/bookinfo/networking/destination-rule-all.yaml";
const GATEWAY: &str = "samples/bookinfo/networking/bookinfo-gateway.yaml";

#[test]
fn bookinfo_with_its_rules_is_clean() {
    let found = analyze_files(
        &[
            BOOKINFO,
            DESTINATION_RULES,
            GATEWAY,
            "samples/bookinfo/networking/virtual-service-all-v1.yaml",
        ],
        "",
    );
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn a_route_to_a_missing_subset_is_ist0101_with_file_and_line() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v4\n";
    let found = analyze_files(&[BOOKINFO, DESTINATION_RULES], vs);
    assert_eq!(
        found,
        [
            "extra.yaml:11:17: Error [IST0101] (VirtualService default/reviews) \
          Referenced host+subset in destinationrule not found: \"reviews+v4\""
        ]
    );
}

#[test]
fn missing_hosts_gateways_and_selectors_are_ist0101() {
    let extra = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
spec:
  hosts: [example.com]
  gateways: [no-such-gateway]
  http:
  - route:
    - destination:
        host: nowhere
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: egressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dr
spec:
  host: unknown-service
";
    let found = analyze_files(&[BOOKINFO], extra);
    let expected = [
        "Referenced gateway not found: \"no-such-gateway\"",
        "Referenced host not found: \"nowhere\"",
        "Referenced selector not found: \"istio=egressgateway\"",
        "Referenced host not found: \"unknown-service\"",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (line, text) in found.iter().zip(expected) {
        assert!(
            line.contains("[IST0101]") && line.ends_with(text),
            "{line} / {text}"
        );
    }
}

#[test]
fn two_virtual_services_for_one_host_conflict() {
    let found = analyze_files(
        &[
            BOOKINFO,
            DESTINATION_RULES,
            "samples/bookinfo/networking/virtual-service-reviews-v3.yaml",
            "samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml",
        ],
        "",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|m| m.contains("[IST0109]") && m.contains("reviews.default.svc.cluster.local"))
    );
}

#[test]
fn port_names_without_protocol_are_ist0118() {
    let extra = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n    name: web\n  - port: 81\n    name: http-alt\n";
    let found = analyze_files(&[], extra);
    assert_eq!(
        found,
        [
            "extra.yaml:7:5: Info [IST0118] (Service default/s) Port name web (port: 80, targetPort: 80) \
          doesn't follow the naming convention of Istio port."
        ]
    );
}

#[test]
fn hosts_are_qualified_as_istio_does() {
    assert_eq!(
        fqdn("reviews", "default"),
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(
        fqdn("reviews.prod", "default"),
        "reviews.prod.svc.cluster.local"
    );
    assert_eq!(
        fqdn("reviews.prod.svc.cluster.local", "x"),
        "reviews.prod.svc.cluster.local"
    );
    assert_eq!(fqdn("*.example.com", "x"), "*.example.com");
}
