//! Bosun agrees with Istio on Istio's own data: every document of Istio's validation test data
//! is accepted or rejected as Istio does, and every sample loads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly.

use std::path::Path;

use bosun_api::load::{Source, load_source, read_sources};
use bosun_api::testing::istio_path;

/// Splits a file of Istio's validation test data into documents, each with its `_err`
/// expectation (test metadata, removed before loading).
fn expectations(text: &str) -> Vec<Option<String>> {
    let mut expected = Vec::new();
    let mut current: Option<String> = None;
    let mut has_content = false;
    for line in text.lines() {
        if line.starts_with("---") {
            if has_content {
                expected.push(current.take());
            }
            current = None;
            has_content = false;
        } else if let Some(err) = line.strip_prefix("_err:") {
            current = Some(err.trim().trim_matches(['\'', '"']).to_owned());
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            has_content = true;
        }
    }
    if has_content {
        expected.push(current);
    }
    expected
}

fn without_err_lines(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("_err:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn agrees_with_istio_on_every_validation_document() {
    let dir = istio_path("pkg/config/validation/testdata/crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected Istio's validation data in {}",
        dir.display()
    );

    let mut mismatches = Vec::new();
    let mut checked = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let invalid = name.ends_with("-invalid.yaml");
        let expected = expectations(&text);
        let result = load_source(&Source::new(name.as_str(), without_err_lines(&text)));
        let documents = result.loaded.len()
            + result.skipped.len()
            + result
                .problems
                .iter()
                .map(|p| p.origin.document)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
        assert_eq!(
            documents,
            expected.len(),
            "{name}: read {documents} documents, the file has {}",
            expected.len()
        );
        for (index, err) in expected.iter().enumerate() {
            let document = index + 1;
            checked += 1;
            let problems: Vec<String> = result
                .problems
                .iter()
                .filter(|p| p.origin.document == document)
                .map(|p| p.to_string())
                .collect();
            if invalid && problems.is_empty() {
                mismatches.push(format!(
                    "{name} document {document}: accepted, Istio rejects it: {}",
                    err.as_deref().unwrap_or("?")
                ));
            }
            if !invalid && !problems.is_empty() {
                mismatches.push(format!(
                    "{name} document {document}: rejected, Istio accepts it: {}",
                    problems.join("; ")
                ));
            }
        }
    }
    assert!(checked > 80, "only {checked} documents checked");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_sample_loads_and_validates() {
    let samples = istio_path("samples");
    let sources = read_sources(std::slice::from_ref(&samples)).unwrap();
    assert!(
        sources.len() >= 60,
        "expected Istio's samples in {}",
        samples.display()
    );
    let mut problems = Vec::new();
    let mut loaded = 0;
    for source in &sources {
        let result = load_source(source);
        loaded += result.loaded.len();
        problems.extend(result.problems.iter().map(|p| p.to_string()));
        for skipped in &result.skipped {
            assert!(
                skipped.api_version.starts_with("certmanager.k8s.io"),
                "{}: unexpected skip of {} {}",
                source.name,
                skipped.api_version,
                skipped.kind
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(loaded > 150, "only {loaded} resources loaded");
    assert!(Path::new(&*sources[0].name).exists());
}

#[test]
fn every_resource_round_trips_through_yaml() {
    let mut sources = read_sources(&[istio_path("samples")]).unwrap();
    for file in [
        "serviceentry-valid.yaml",
        "telemetry-valid.yaml",
        "wasm-valid.yaml",
        "authz-valid.yaml",
        "envoyfilter-valid.yaml",
        "reqauth-valid.yaml",
        "workloadgroup-valid.yaml",
        "destinationrule-valid.yaml",
        "peerauth-valid.yaml",
        "proxyconfig-valid.yaml",
        "workloadentry-valid.yaml",
    ] {
        sources.extend(
            read_sources(&[istio_path(&format!(
                "pkg/config/validation/testdata/crds/{file}"
            ))])
            .unwrap(),
        );
    }
    let mut checked = 0;
    for source in &sources {
        for loaded in load_source(source).loaded {
            let yaml = loaded.resource.to_yaml().unwrap();
            let again = load_source(&Source::new("again.yaml", yaml.clone()));
            assert!(
                again.problems.is_empty(),
                "{}: {:?}\n{yaml}",
                source.name,
                again.problems
            );
            assert_eq!(again.loaded.len(), 1, "{yaml}");
            assert_eq!(
                again.loaded[0].resource, loaded.resource,
                "{}:\n{yaml}",
                source.name
            );
            checked += 1;
        }
    }
    assert!(checked > 170, "only {checked} round trips");
}
