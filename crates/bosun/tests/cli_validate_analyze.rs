//! `bosun validate` and `bosun analyze` as a user runs them, and how the CLI reports errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use bosun_api::testing::istio_path;

fn bosun(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bosun runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("bosun finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const THREE_MISTAKES: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subst: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBBIN
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80000
      name: http
      protocol: HTTP
    hosts: [\"*\"]
";

#[test]
fn validate_prints_one_precise_line_per_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mistakes.yaml");
    std::fs::write(&file, THREE_MISTAKES).unwrap();
    let output = bosun(&["validate", "-f", file.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    let file = file.display().to_string();
    assert_eq!(
        lines,
        [
            format!(
                "{file}:12:9: VirtualService default/reviews: spec.http[0].route[0].destination.subst: \
                 unknown field \"subst\", did you mean \"subset\"?"
            ),
            format!(
                "{file}:22:15: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.simple: \
                 Unsupported value: \"ROUND_ROBBIN\": supported values: \"UNSPECIFIED\", \"LEAST_CONN\", \
                 \"RANDOM\", \"PASSTHROUGH\", \"ROUND_ROBIN\", \"LEAST_REQUEST\" (did you mean \"ROUND_ROBIN\"?)"
            ),
            format!(
                "{file}:33:15: Gateway default/gw: spec.servers[0].port.number: port must be between 1-65535, got 80000"
            ),
        ]
    );
}

#[test]
fn validate_accepts_all_of_istios_samples() {
    let samples = istio_path("samples");
    let output = bosun(&["validate", "-f", samples.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let out = stdout(&output);
    assert!(
        out.trim_end().ends_with("resources valid, 2 skipped"),
        "{out}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipped certmanager.k8s.io/v1alpha1 Certificate"),
        "{stderr}"
    );
}

#[test]
fn validate_reads_stdin() {
    let output = bosun(&["validate", "-f", "-"], Some(THREE_MISTAKES));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output).lines().count(), 3);
    assert!(stdout(&output).starts_with("-:12:9: VirtualService"));
}

#[test]
fn analyze_reports_a_missing_subset_as_ist0101() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reviews-v4.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v4\n",
    )
    .unwrap();
    let bookinfo = istio_path("samples/bookinfo/platform/kube/bookinfo.yaml");
    let rules = istio_path("samples/bookinfo/networking/destination-rule-all.yaml");
    let output = bosun(
        &[
            "analyze",
            "-f",
            bookinfo.to_str().unwrap(),
            rules.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(79));
    assert_eq!(
        stdout(&output).trim_end(),
        format!(
            "{}:11:17: Error [IST0101] (VirtualService default/reviews) \
             Referenced host+subset in destinationrule not found: \"reviews+v4\"",
            file.display()
        )
    );
}

#[test]
fn analyze_of_clean_bookinfo_succeeds() {
    let bookinfo = istio_path("samples/bookinfo/platform/kube/bookinfo.yaml");
    let networking = istio_path("samples/bookinfo/networking/destination-rule-all.yaml");
    let gateway = istio_path("samples/bookinfo/networking/bookinfo-gateway.yaml");
    let output = bosun(
        &[
            "analyze",
            "-f",
            bookinfo.to_str().unwrap(),
            networking.to_str().unwrap(),
            gateway.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("No validation issues found"));
}

#[test]
fn version_and_help() {
    let output = bosun(&["--version"], None);
    assert!(stdout(&output).starts_with("bosun "));
    let output = bosun(&["help"], None);
    assert!(stdout(&output).contains("validate"));
    assert!(stdout(&output).contains("analyze"));
}

#[test]
fn an_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.yaml");
    std::fs::write(
        &bootstrap,
        "static_resources:\n  clusters:\n  - name: a\n    type: STATIC\n    lrs_server: {self: {}}\n",
    )
    .unwrap();
    let output = bosun(&["proxy", "-c", bootstrap.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let field = "field \"lrs_server\" of envoy.config.cluster.v3.Cluster is not supported";
    assert_eq!(stderr.matches(field).count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("bootstrap.yaml"), "{stderr}");
}
