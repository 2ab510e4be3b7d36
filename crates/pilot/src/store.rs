//! The config store: every resource pilot knows, validated at the door, kept in a directory
//! (one file per resource, written atomically) so that a restart loses nothing.
//!
//! Readers take a [`Snapshot`] — an immutable map shared by `Arc` — and never wait on a
//! writer. Writers are serialized; each write is all-or-nothing: every document is validated
//! and every file written before the new snapshot is published.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bosun_api::load::{self, Source};
use bosun_api::{Kind, Problem, Resource};
use tokio::sync::watch;

#[cfg(test)]
mod tests;

/// The events kept for watchers that fall behind.
const EVENT_HISTORY: usize = 10_000;

/// Identifies a resource: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace; empty for cluster-scoped kinds.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ResourceKey {
    /// The key of a resource (its namespace defaulted to `default`).
    pub fn of(resource: &Resource) -> Self {
        ResourceKey {
            kind: resource.kind(),
            namespace: resource.namespace_or_default().unwrap_or("").to_owned(),
            name: resource.name().to_owned(),
        }
    }

    /// The file that holds the resource, relative to the store's directory:
    /// `<plural>.<group>/<namespace>/<name>.yaml` (`_cluster` for cluster-scoped kinds).
    fn relative_path(&self) -> PathBuf {
        let info = self.kind.info();
        let kind_dir = if info.group.is_empty() {
            info.plural.to_owned()
        } else {
            format!("{}.{}", info.plural, info.group)
        };
        let namespace = if self.namespace.is_empty() {
            "_cluster"
        } else {
            &self.namespace
        };
        PathBuf::from(kind_dir)
            .join(namespace)
            .join(format!("{}.yaml", self.name))
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A resource as stored, with the revision that last changed it.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The resource (namespace filled in, `metadata.resourceVersion` set).
    pub resource: Arc<Resource>,
    /// The store revision of its last change.
    pub revision: u64,
}

/// What the store holds at one revision.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The revision: it grows by one with every change.
    pub revision: u64,
    /// Every resource.
    pub resources: Arc<BTreeMap<ResourceKey, Stored>>,
}

impl Snapshot {
    /// The resources of one kind, in key order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ResourceKey, &Stored)> + '_ {
        self.resources
            .iter()
            .filter(move |(key, _)| key.kind == kind)
    }

    /// One resource.
    pub fn get(&self, key: &ResourceKey) -> Option<&Stored> {
        self.resources.get(key)
    }
}

/// What happened to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// It was created.
    Added,
    /// It was changed.
    Modified,
    /// It was deleted.
    Deleted,
}

/// One change, as a watcher sees it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The revision the change made.
    pub revision: u64,
    /// What happened.
    pub event_type: EventType,
    /// The resource after the change (before it, for a deletion).
    pub resource: Arc<Resource>,
}

/// What an apply did to one resource, as kubectl reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyAction {
    /// It did not exist.
    Created,
    /// It existed and changed.
    Configured,
    /// It existed and is the same.
    Unchanged,
}

/// Why a write was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Some documents are invalid.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
    /// A document's namespace differs from the one the request is for.
    #[error(
        "{resource}: the namespace from the provided object \"{written}\" does not match the namespace \"{requested}\""
    )]
    NamespaceMismatch {
        /// The resource.
        resource: String,
        /// The namespace in the document.
        written: String,
        /// The namespace asked for.
        requested: String,
    },
    /// Deleting something that does not exist.
    #[error("{0} not found")]
    NotFound(ResourceKey),
    /// A name that cannot be a file name.
    #[error("{0}: invalid name")]
    InvalidName(ResourceKey),
    /// The directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A resource could not be serialized.
    #[error("serializing {key}: {message}")]
    Serialize {
        /// The resource.
        key: ResourceKey,
        /// Why.
        message: String,
    },
    /// Every address of the Service range is taken.
    #[error("no cluster IP left in {0}")]
    ClusterIpsExhausted(ipnet::Ipv4Net),
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A file found in the store's directory that could not be loaded at start.
#[derive(Clone, Debug)]
pub struct LoadWarning {
    /// The file.
    pub path: PathBuf,
    /// Why it was not loaded.
    pub message: String,
}

#[derive(Debug)]
struct Inner {
    snapshot: Snapshot,
    events: VecDeque<Event>,
}

/// The store. Cheap to clone; clones share it.
#[derive(Clone, Debug)]
pub struct Store {
    directory: Option<Arc<PathBuf>>,
    inner: Arc<Mutex<Inner>>,
    revisions: watch::Sender<u64>,
    cluster_ips: Option<ipnet::Ipv4Net>,
}

impl Store {
    /// A store kept only in memory (tests, `bosun validate`-like uses).
    pub fn in_memory() -> Self {
        let (revisions, _) = watch::channel(0);
        Store {
            directory: None,
            inner: Arc::new(Mutex::new(Inner {
                snapshot: Snapshot::default(),
                events: VecDeque::new(),
            })),
            revisions,
            cluster_ips: None,
        }
    }

    /// Gives every Service stored without a `clusterIP` one from `range`, as the Kubernetes
    /// API server does (pilot is the API server of a local mesh). A Service keeps the
    /// address it got when it is applied again; headless and `ExternalName` Services get
    /// none.
    pub fn with_cluster_ips(mut self, range: ipnet::Ipv4Net) -> Self {
        self.cluster_ips = Some(range);
        self
    }

    /// Opens (creating it if needed) a store kept in `directory`, loading every resource in
    /// it. Files that no longer load are reported and left in place, untouched.
    pub fn open(directory: &Path) -> Result<(Store, Vec<LoadWarning>), StoreError> {
        std::fs::create_dir_all(directory).map_err(io_error(directory))?;
        let mut files = Vec::new();
        collect_yaml_files(directory, &mut files)?;
        files.sort();
        let mut resources = BTreeMap::new();
        let mut warnings = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    warnings.push(LoadWarning {
                        path,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let result = load::load_source(&Source::new(path.display().to_string(), text));
            if let Some(problem) = result.problems.first() {
                warnings.push(LoadWarning {
                    path,
                    message: problem.to_string(),
                });
                continue;
            }
            for loaded in result.loaded {
                let revision = resource_version(&loaded.resource);
                let key = ResourceKey::of(&loaded.resource);
                if directory.join(key.relative_path()) != path {
                    warnings.push(LoadWarning {
                        path: path.clone(),
                        message: format!("holds {key}, which belongs elsewhere; ignored"),
                    });
                    continue;
                }
                resources.insert(
                    key,
                    Stored {
                        resource: Arc::new(loaded.resource),
                        revision,
                    },
                );
            }
        }
        let revision = resources.values().map(|s| s.revision).max().unwrap_or(0);
        let (revisions, _) = watch::channel(revision);
        let store = Store {
            directory: Some(Arc::new(directory.to_owned())),
            inner: Arc::new(Mutex::new(Inner {
                snapshot: Snapshot {
                    revision,
                    resources: Arc::new(resources),
                },
                events: VecDeque::new(),
            })),
            revisions,
            cluster_ips: None,
        };
        Ok((store, warnings))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the store holds now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// A receiver that sees every new revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revisions.subscribe()
    }

    /// The changes after `revision`, or `None` when they are no longer all kept (the watcher
    /// must list again).
    pub fn events_since(&self, revision: u64) -> Option<Vec<Event>> {
        let inner = self.lock();
        if revision >= inner.snapshot.revision {
            return Some(Vec::new());
        }
        let oldest_kept = inner.events.front()?.revision;
        if revision + 1 < oldest_kept {
            return None;
        }
        Some(
            inner
                .events
                .iter()
                .filter(|e| e.revision > revision)
                .cloned()
                .collect(),
        )
    }

    /// Validates the documents of `sources` and stores them all, or none. Resources without
    /// a namespace get `namespace` (or `default`); ones with another namespace than a given
    /// `namespace` are refused, as kubectl does.
    pub fn apply_sources(
        &self,
        sources: &[Source],
        namespace: Option<&str>,
    ) -> Result<Vec<(ResourceKey, ApplyAction)>, StoreError> {
        let result = load::load_sources(sources);
        if !result.problems.is_empty() {
            return Err(StoreError::Invalid(result.problems));
        }
        let resources = result.loaded.into_iter().map(|l| l.resource).collect();
        self.apply(resources, namespace)
    }

    /// Stores already validated resources, all or none.
    pub fn apply(
        &self,
        resources: Vec<Resource>,
        namespace: Option<&str>,
    ) -> Result<Vec<(ResourceKey, ApplyAction)>, StoreError> {
        let mut resources = resources;
        for resource in &mut resources {
            set_namespace(resource, namespace)?;
        }
        let mut inner = self.lock();
        let revision = inner.snapshot.revision;
        let mut next = (*inner.snapshot.resources).clone();
        let mut outcome = Vec::new();
        let mut events = Vec::new();
        let mut writes = Vec::new();
        let mut next_revision = revision;
        for mut resource in resources {
            let key = ResourceKey::of(&resource);
            check_name(&key)?;
            if let Some(range) = self.cluster_ips {
                assign_cluster_ip(&mut resource, next.get(&key), &next, range)?;
            }
            let previous = next.get(&key);
            let action = match previous {
                None => ApplyAction::Created,
                Some(stored) if same_content(&stored.resource, &resource) => ApplyAction::Unchanged,
                Some(_) => ApplyAction::Configured,
            };
            outcome.push((key.clone(), action));
            if action == ApplyAction::Unchanged {
                continue;
            }
            next_revision += 1;
            resource.metadata_mut().resource_version = Some(next_revision.to_string());
            let resource = Arc::new(resource);
            writes.push((key.clone(), Some(resource.clone())));
            events.push(Event {
                revision: next_revision,
                event_type: if action == ApplyAction::Created {
                    EventType::Added
                } else {
                    EventType::Modified
                },
                resource: resource.clone(),
            });
            next.insert(
                key,
                Stored {
                    resource,
                    revision: next_revision,
                },
            );
        }
        self.write_files(&writes)?;
        publish(&mut inner, next, next_revision, events, &self.revisions);
        Ok(outcome)
    }

    /// Deletes resources, all or none: every one must exist.
    pub fn delete(&self, keys: &[ResourceKey]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let mut next = (*inner.snapshot.resources).clone();
        let mut revision = inner.snapshot.revision;
        let mut events = Vec::new();
        let mut writes = Vec::new();
        for key in keys {
            let Some(stored) = next.remove(key) else {
                return Err(StoreError::NotFound(key.clone()));
            };
            revision += 1;
            writes.push((key.clone(), None));
            events.push(Event {
                revision,
                event_type: EventType::Deleted,
                resource: stored.resource,
            });
        }
        self.write_files(&writes)?;
        publish(&mut inner, next, revision, events, &self.revisions);
        Ok(())
    }

    /// Writes (or removes) the files of a change. Every new file is written to a temporary
    /// name and synced before any is renamed into place, so a failure leaves the old files.
    fn write_files(
        &self,
        writes: &[(ResourceKey, Option<Arc<Resource>>)],
    ) -> Result<(), StoreError> {
        let Some(directory) = &self.directory else {
            return Ok(());
        };
        let mut staged = Vec::new();
        let result = (|| {
            for (key, resource) in writes {
                let path = directory.join(key.relative_path());
                let Some(resource) = resource else {
                    staged.push((None, path));
                    continue;
                };
                let text = resource.to_yaml().map_err(|e| StoreError::Serialize {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                let parent = path.parent().unwrap_or(directory);
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
                let mut temp = tempfile::NamedTempFile::new_in(parent).map_err(io_error(parent))?;
                temp.write_all(text.as_bytes()).map_err(io_error(&path))?;
                temp.as_file().sync_all().map_err(io_error(&path))?;
                staged.push((Some(temp), path));
            }
            Ok(())
        })();
        result?;
        for (temp, path) in staged {
            match temp {
                Some(temp) => {
                    temp.persist(&path).map_err(|e| StoreError::Io {
                        path: path.clone(),
                        source: e.error,
                    })?;
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path)(e)),
                },
            }
            if let Some(parent) = path.parent() {
                // The rename is durable only once the directory entry is.
                if let Ok(dir) = std::fs::File::open(parent) {
                    let _ = dir.sync_all();
                }
            }
        }
        Ok(())
    }
}

fn publish(
    inner: &mut Inner,
    next: BTreeMap<ResourceKey, Stored>,
    revision: u64,
    events: Vec<Event>,
    revisions: &watch::Sender<u64>,
) {
    if events.is_empty() {
        return;
    }
    inner.snapshot = Snapshot {
        revision,
        resources: Arc::new(next),
    };
    inner.events.extend(events);
    while inner.events.len() > EVENT_HISTORY {
        inner.events.pop_front();
    }
    revisions.send_replace(revision);
}

fn set_namespace(resource: &mut Resource, requested: Option<&str>) -> Result<(), StoreError> {
    if !resource.kind().info().namespaced {
        resource.metadata_mut().namespace = None;
        return Ok(());
    }
    match (resource.namespace().map(str::to_owned), requested) {
        (Some(written), Some(requested)) if written != requested => {
            Err(StoreError::NamespaceMismatch {
                resource: format!("{} {}", resource.kind(), resource.name()),
                written,
                requested: requested.to_owned(),
            })
        }
        (Some(_), _) => Ok(()),
        (None, requested) => {
            resource.metadata_mut().namespace = Some(requested.unwrap_or("default").to_owned());
            Ok(())
        }
    }
}

/// Names become file names: refuse what could escape the directory.
fn check_name(key: &ResourceKey) -> Result<(), StoreError> {
    let fine = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && !s.starts_with('_')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    };
    if fine(&key.name) && (key.namespace.is_empty() || fine(&key.namespace)) {
        Ok(())
    } else {
        Err(StoreError::InvalidName(key.clone()))
    }
}

fn resource_version(resource: &Resource) -> u64 {
    resource
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether two resources are the same, ignoring what the store itself sets.
/// Keeps a Service's earlier `clusterIP`, or gives it the first free one of `range` (after
/// the addresses Kubernetes reserves: `.1` for the API server, `.10` for cluster DNS).
fn assign_cluster_ip(
    resource: &mut Resource,
    previous: Option<&Stored>,
    stored: &BTreeMap<ResourceKey, Stored>,
    range: ipnet::Ipv4Net,
) -> Result<(), StoreError> {
    let Resource::Service(service) = resource else {
        return Ok(());
    };
    let Some(spec) = service.spec.as_mut() else {
        return Ok(());
    };
    if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        || spec.type_.as_deref() == Some("ExternalName")
    {
        return Ok(());
    }
    let kept = previous.and_then(|p| match &*p.resource {
        Resource::Service(s) => s.spec.as_ref()?.cluster_ip.clone(),
        _ => None,
    });
    let address = match kept {
        Some(address) => address,
        None => {
            let used: std::collections::BTreeSet<String> = stored
                .values()
                .filter_map(|s| match &*s.resource {
                    Resource::Service(s) => s.spec.as_ref()?.cluster_ip.clone(),
                    _ => None,
                })
                .collect();
            let network = u32::from(range.network());
            range
                .hosts()
                .filter(|ip| !matches!(u32::from(*ip) - network, 1 | 10))
                .map(|ip| ip.to_string())
                .find(|ip| !used.contains(ip))
                .ok_or(StoreError::ClusterIpsExhausted(range))?
        }
    };
    spec.cluster_ips = Some(vec![address.clone()]);
    spec.cluster_ip = Some(address);
    Ok(())
}

fn same_content(stored: &Resource, new: &Resource) -> bool {
    let mut stored = stored.clone();
    stored.metadata_mut().resource_version = None;
    let mut new = new.clone();
    new.metadata_mut().resource_version = None;
    stored == new
}

fn collect_yaml_files(directory: &Path, files: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(directory).map_err(io_error(directory))? {
        let entry = entry.map_err(io_error(directory))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_dir() {
            collect_yaml_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    Ok(())
}
