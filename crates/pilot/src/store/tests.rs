use super::*;
use bosun_api::load::Source;

const REVIEWS_VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
";

const RATINGS_DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
  namespace: prod
spec:
  host: ratings
  subsets:
  - name: v1
    labels: {version: v1}
";

fn source(text: &str) -> Source {
    Source::new("test.yaml", text)
}

fn key(kind: Kind, namespace: &str, name: &str) -> ResourceKey {
    ResourceKey {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

#[test]
fn applies_and_reports_created_configured_unchanged() {
    let store = Store::in_memory();
    let outcome = store.apply_sources(&[source(REVIEWS_VS)], None).unwrap();
    assert_eq!(
        outcome,
        vec![(
            key(Kind::VirtualService, "default", "reviews"),
            ApplyAction::Created
        )]
    );
    let again = store.apply_sources(&[source(REVIEWS_VS)], None).unwrap();
    assert_eq!(again[0].1, ApplyAction::Unchanged);
    assert_eq!(
        store.snapshot().revision,
        1,
        "an unchanged apply is no revision"
    );
    let changed = REVIEWS_VS.replace("subset: v1", "subset: v2");
    let configured = store.apply_sources(&[source(&changed)], None).unwrap();
    assert_eq!(configured[0].1, ApplyAction::Configured);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.revision, 2);
    let stored = snapshot
        .get(&key(Kind::VirtualService, "default", "reviews"))
        .unwrap();
    assert_eq!(stored.revision, 2);
    assert_eq!(
        stored.resource.metadata().resource_version.as_deref(),
        Some("2")
    );
}

#[test]
fn an_invalid_document_changes_nothing() {
    let store = Store::in_memory();
    store.apply_sources(&[source(REVIEWS_VS)], None).unwrap();
    let before = store.snapshot();
    let bad = format!(
        "{RATINGS_DR}---\n{}",
        REVIEWS_VS.replace("subset: v1}", "subset: v1}\n      weight: 150")
    );
    let error = store.apply_sources(&[source(&bad)], None).unwrap_err();
    let StoreError::Invalid(problems) = &error else {
        panic!("{error}")
    };
    assert!(
        problems[0].to_string().starts_with("test.yaml:"),
        "{}",
        problems[0]
    );
    assert!(error.to_string().contains("weight"), "{error}");
    let after = store.snapshot();
    assert_eq!(after.revision, before.revision);
    assert_eq!(
        after.resources.len(),
        1,
        "the valid DestinationRule was not stored either"
    );
}

#[test]
fn namespaces_default_and_must_agree() {
    let store = Store::in_memory();
    store
        .apply_sources(&[source(REVIEWS_VS)], Some("staging"))
        .unwrap();
    assert!(
        store
            .snapshot()
            .get(&key(Kind::VirtualService, "staging", "reviews"))
            .is_some()
    );
    let error = store
        .apply_sources(&[source(RATINGS_DR)], Some("staging"))
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NamespaceMismatch { .. }),
        "{error}"
    );
}

#[test]
fn survives_a_restart_with_every_resource() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, warnings) = Store::open(dir.path()).unwrap();
        assert!(warnings.is_empty());
        store
            .apply_sources(&[source(&format!("{REVIEWS_VS}---\n{RATINGS_DR}"))], None)
            .unwrap();
        store
            .apply_sources(
                &[source(&REVIEWS_VS.replace("subset: v1", "subset: v3"))],
                None,
            )
            .unwrap();
    }
    let file = dir
        .path()
        .join("virtualservices.networking.istio.io/default/reviews.yaml");
    assert!(
        file.is_file(),
        "one file per resource at {}",
        file.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "reviews.yaml")
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );

    let (reopened, warnings) = Store::open(dir.path()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let snapshot = reopened.snapshot();
    assert_eq!(snapshot.resources.len(), 2);
    assert_eq!(snapshot.revision, 3, "the revision carries on");
    let Resource::VirtualService(vs) = &*snapshot
        .get(&key(Kind::VirtualService, "default", "reviews"))
        .unwrap()
        .resource
    else {
        panic!("not a VirtualService")
    };
    assert_eq!(
        vs.spec.http[0].route[0].destination.subset.as_deref(),
        Some("v3")
    );
}

#[test]
fn deletes_all_or_nothing_and_removes_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store
        .apply_sources(&[source(&format!("{REVIEWS_VS}---\n{RATINGS_DR}"))], None)
        .unwrap();
    let vs = key(Kind::VirtualService, "default", "reviews");
    let missing = key(Kind::VirtualService, "default", "nope");
    let error = store.delete(&[vs.clone(), missing]).unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    assert_eq!(store.snapshot().resources.len(), 2);
    store.delete(std::slice::from_ref(&vs)).unwrap();
    assert!(store.snapshot().get(&vs).is_none());
    assert!(
        !dir.path()
            .join("virtualservices.networking.istio.io/default/reviews.yaml")
            .exists()
    );
    let (reopened, _) = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.snapshot().resources.len(), 1);
}

#[test]
fn a_file_that_no_longer_loads_is_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir
        .path()
        .join("virtualservices.networking.istio.io/default");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("broken.yaml"), "kind: VirtualService\nspec: [").unwrap();
    let (store, warnings) = Store::open(dir.path()).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].path.ends_with("broken.yaml"));
    assert!(store.snapshot().resources.is_empty());
    assert!(bad.join("broken.yaml").exists());
}

#[test]
fn refuses_names_that_escape_the_directory() {
    let store = Store::in_memory();
    let evil = REVIEWS_VS.replace("name: reviews", "name: ../../etc");
    // Validation refuses it first; the store would too.
    assert!(store.apply_sources(&[source(&evil)], None).is_err());
    assert!(check_name(&key(Kind::VirtualService, "default", "..")).is_err());
    assert!(check_name(&key(Kind::VirtualService, "default", "a/b")).is_err());
    assert!(check_name(&key(Kind::VirtualService, "default", "reviews-v1.x")).is_ok());
}

#[test]
fn watchers_see_events_in_order_and_learn_when_history_is_gone() {
    let store = Store::in_memory();
    let mut revisions = store.subscribe();
    store.apply_sources(&[source(REVIEWS_VS)], None).unwrap();
    store.apply_sources(&[source(RATINGS_DR)], None).unwrap();
    store
        .delete(&[key(Kind::VirtualService, "default", "reviews")])
        .unwrap();
    assert!(revisions.has_changed().unwrap());
    assert_eq!(*revisions.borrow_and_update(), 3);
    let events = store.events_since(0).unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.revision, e.event_type)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, EventType::Added),
            (2, EventType::Added),
            (3, EventType::Deleted)
        ]
    );
    assert_eq!(store.events_since(2).unwrap().len(), 1);
    assert!(store.events_since(3).unwrap().is_empty());

    // A store reopened from disk has no history before its revision.
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path()).unwrap();
        store.apply_sources(&[source(REVIEWS_VS)], None).unwrap();
    }
    let (reopened, _) = Store::open(dir.path()).unwrap();
    assert!(reopened.events_since(0).is_none());
    assert!(reopened.events_since(1).unwrap().is_empty());
}

fn service(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 9080}}]\n{extra}"
    )
}

fn cluster_ip(store: &Store, name: &str) -> Option<String> {
    let snapshot = store.snapshot();
    let stored = snapshot.get(&key(Kind::Service, "default", name))?;
    match &*stored.resource {
        Resource::Service(s) => s.spec.as_ref()?.cluster_ip.clone(),
        _ => None,
    }
}

#[test]
fn services_get_cluster_ips_as_from_an_api_server() {
    let store = Store::in_memory().with_cluster_ips("10.96.0.0/16".parse().unwrap());
    store
        .apply_sources(
            &[
                source(&service("details", "")),
                source(&service("ratings", "")),
                source(&service("fixed", "  clusterIP: 10.96.0.11\n")),
                source(&service("headless", "  clusterIP: None\n")),
                source(&service(
                    "external",
                    "  type: ExternalName\n  externalName: example.com\n",
                )),
            ],
            None,
        )
        .unwrap();
    // .1 (API server) and .10 (DNS) are reserved; .11 is taken by `fixed`.
    assert_eq!(cluster_ip(&store, "details").as_deref(), Some("10.96.0.2"));
    assert_eq!(cluster_ip(&store, "ratings").as_deref(), Some("10.96.0.3"));
    assert_eq!(cluster_ip(&store, "fixed").as_deref(), Some("10.96.0.11"));
    assert_eq!(cluster_ip(&store, "headless").as_deref(), Some("None"));
    assert_eq!(cluster_ip(&store, "external"), None);
    // Applied again without an address, a Service keeps its own: nothing changes.
    let again = store
        .apply_sources(&[source(&service("ratings", ""))], None)
        .unwrap();
    assert_eq!(again[0].1, ApplyAction::Unchanged);
    assert_eq!(cluster_ip(&store, "ratings").as_deref(), Some("10.96.0.3"));

    let tiny = Store::in_memory().with_cluster_ips("10.0.0.0/30".parse().unwrap());
    let error = tiny
        .apply_sources(
            &[
                source(&service("a", "")),
                source(&service("b", "")),
                source(&service("c", "")),
            ],
            None,
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no cluster IP left in 10.0.0.0/30"),
        "{error}"
    );
    assert!(tiny.snapshot().resources.is_empty(), "all or nothing");
}
