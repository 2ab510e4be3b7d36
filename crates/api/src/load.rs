//! Reading resources from files, directories and stdin.
//!
//! Every document is parsed into a position-keeping [`node::Node`] tree, identified by its
//! `apiVersion` and `kind`, typed, then validated. Whatever goes wrong is a [`Problem`]
//! naming the file, the document, the line and column and the field path.

pub(crate) mod de;
pub mod node;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::path::FieldPath;
use crate::resource::{Kind, KindLookup, Resource};
use crate::validate::{self, FieldError};
use node::{Location, Node, Value};

/// The largest file read (Istio's own limit on a config is far smaller).
pub const MAX_SOURCE_BYTES: usize = 8 * 1024 * 1024;

/// A problem reading the inputs themselves (not their contents).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_SOURCE_BYTES`].
    #[error("{path}: file is {size} bytes, more than the {MAX_SOURCE_BYTES} bytes allowed")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: usize,
    },
    /// A file is not UTF-8 text.
    #[error("{path}: not UTF-8 text")]
    NotText {
        /// The path.
        path: String,
    },
}

/// The text of one input file (or stdin, named `-`).
#[derive(Clone, Debug)]
pub struct Source {
    /// The path as the user gave it, or `-`.
    pub name: Arc<str>,
    /// The text.
    pub text: String,
}

impl Source {
    /// A source from text in memory.
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Reads files, directories (recursively: `.yaml`, `.yml`, `.json`, in name order) and `-`
/// (stdin).
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, SourceError> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_SOURCE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| SourceError::Io {
                    path: "-".to_owned(),
                    source,
                })?;
            sources.push(source_from_bytes("-", bytes)?);
        } else if path.is_dir() {
            let mut files = Vec::new();
            collect_config_files(path, &mut files)?;
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn collect_config_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let io_error = |source| SourceError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_config_files(&entry, files)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(entry);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Source, SourceError> {
    let name = path.display().to_string();
    let io_error = |source| SourceError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    source_from_bytes(&name, bytes)
}

fn source_from_bytes(name: &str, bytes: Vec<u8>) -> Result<Source, SourceError> {
    if bytes.len() > MAX_SOURCE_BYTES {
        return Err(SourceError::TooLarge {
            path: name.to_owned(),
            size: bytes.len(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SourceError::NotText {
        path: name.to_owned(),
    })?;
    Ok(Source::new(name, text))
}

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file (or `-`).
    pub file: Arc<str>,
    /// The document's number in the file, from 1 (empty documents are not counted).
    pub document: usize,
    /// Where the document starts.
    pub location: Location,
}

/// Something wrong with a document, pinned to a place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The document.
    pub origin: Origin,
    /// Where in the file the problem is.
    pub location: Location,
    /// The resource's kind, when known.
    pub kind: Option<String>,
    /// The resource's `namespace/name`, when known.
    pub name: Option<String>,
    /// The field, `spec.http[0].route` (empty for the whole document).
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `file:line:col: Kind namespace/name: field.path: message`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.origin.file)?;
        if self.location.is_known() {
            write!(f, "{}:", self.location)?;
        }
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " {kind} {name}:")?,
            (Some(kind), None) => write!(f, " {kind}:")?,
            _ => write!(f, " document {}:", self.origin.document)?,
        }
        if !self.path.is_root() {
            write!(f, " {}:", self.path)?;
        }
        write!(f, " {}", self.message)
    }
}

/// A document that was read and is valid.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The resource.
    pub resource: Resource,
    /// Where it came from.
    pub origin: Origin,
    positions: Positions,
}

impl Loaded {
    /// Where the field at `path` (or its nearest written ancestor) is in the file.
    pub fn location_of(&self, path: &FieldPath) -> Location {
        self.positions.find(path).unwrap_or(self.origin.location)
    }
}

/// A document that is not for Bosun (another API group), read past.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where it came from.
    pub origin: Origin,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// Everything read from a set of sources.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Valid resources.
    pub loaded: Vec<Loaded>,
    /// Documents for other API groups.
    pub skipped: Vec<Skipped>,
    /// Problems, in file order.
    pub problems: Vec<Problem>,
}

impl LoadResult {
    /// Adds what another load read.
    pub fn extend(&mut self, other: LoadResult) {
        self.loaded.extend(other.loaded);
        self.skipped.extend(other.skipped);
        self.problems.extend(other.problems);
    }
}

/// Parses, types and validates every document of every source.
pub fn load_sources(sources: &[Source]) -> LoadResult {
    let mut result = LoadResult::default();
    for source in sources {
        result.extend(load_source(source));
    }
    result
}

/// Parses, types and validates every document of one source.
pub fn load_source(source: &Source) -> LoadResult {
    let mut result = LoadResult::default();
    let documents: Vec<Result<Node, (String, Location)>> = match parse_documents(&source.text) {
        Ok(documents) => documents.into_iter().map(Ok).collect(),
        // A syntax error: the documents are read one by one, so that the error names its
        // document and the others are still read.
        Err(_) if source.text.len() <= MAX_SOURCE_BYTES => documents_one_by_one(&source.text),
        Err((message, location)) => {
            result.problems.push(Problem {
                origin: Origin {
                    file: source.name.clone(),
                    document: 1,
                    location,
                },
                location,
                kind: None,
                name: None,
                path: FieldPath::root(),
                message,
            });
            return result;
        }
    };
    for (index, document) in documents.iter().enumerate() {
        let node = match document {
            Ok(node) => node,
            Err((message, location)) => {
                result.problems.push(Problem {
                    origin: Origin {
                        file: source.name.clone(),
                        document: index + 1,
                        location: *location,
                    },
                    location: *location,
                    kind: None,
                    name: None,
                    path: FieldPath::root(),
                    message: message.clone(),
                });
                continue;
            }
        };
        let origin = Origin {
            file: source.name.clone(),
            document: index + 1,
            location: node.location,
        };
        match load_document(node, origin) {
            DocumentOutcome::Loaded(loaded) => result.loaded.push(*loaded),
            DocumentOutcome::Skipped(skipped) => result.skipped.push(skipped),
            DocumentOutcome::Invalid(problems) => result.problems.extend(problems),
        }
    }
    result
}

/// Parses text holding one or more YAML (or JSON) documents into trees. Empty documents are
/// dropped. Hostile input (alias bombs, deep nesting, huge scalars) is refused.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, (String, Location)> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err((
            format!(
                "input is {} bytes, more than the {MAX_SOURCE_BYTES} bytes allowed",
                text.len()
            ),
            Location::default(),
        ));
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_aliases: 10_000,
            max_anchors: 10_000,
            max_nodes: 250_000,
            max_documents: 10_000,
            max_total_scalar_bytes: MAX_SOURCE_BYTES,
        },
    };
    serde_saphyr::from_multiple_with_options::<Node>(text, options).map_err(|e| {
        let location = e
            .location()
            .map(|l| Location {
                line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                column: u32::try_from(l.column()).unwrap_or(u32::MAX),
            })
            .unwrap_or_default();
        (first_line(&e.without_snippet().to_string()), location)
    })
}

/// Each document of a stream parsed on its own (positions still those of the whole text).
fn documents_one_by_one(text: &str) -> Vec<Result<Node, (String, Location)>> {
    let mut documents = Vec::new();
    for (first_line, part) in split_documents(text) {
        // Blank lines in front keep line numbers those of the whole text.
        let padded = format!("{}{part}", "\n".repeat(first_line.saturating_sub(1)));
        match parse_documents(&padded) {
            Ok(nodes) => documents.extend(nodes.into_iter().map(Ok)),
            Err(error) => documents.push(Err(error)),
        }
    }
    documents
}

/// A stream cut at its document markers: `---` at the start of a line, which YAML allows in
/// no scalar, so a cut never falls inside one. Each part with the number of its first line.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut parts = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if marker && offset > start {
            parts.push((start_line, &text[start..offset]));
            start = offset;
            start_line = index + 1;
        }
        offset += line.len();
    }
    parts.push((start_line, &text[start..]));
    parts
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

enum DocumentOutcome {
    Loaded(Box<Loaded>),
    Skipped(Skipped),
    Invalid(Vec<Problem>),
}

fn load_document(node: &Node, origin: Origin) -> DocumentOutcome {
    let problem = |location: Location, path: FieldPath, message: String| Problem {
        origin: origin.clone(),
        location,
        kind: None,
        name: None,
        path,
        message,
    };
    let Value::Map(_) = &node.value else {
        return DocumentOutcome::Invalid(vec![problem(
            node.location,
            FieldPath::root(),
            format!(
                "a document must be an object with apiVersion and kind, found {}",
                node.value.type_name()
            ),
        )]);
    };
    let name = node
        .get("metadata")
        .and_then(|m| m.get_str("name"))
        .unwrap_or("")
        .to_owned();
    let namespace = node.get("metadata").and_then(|m| m.get_str("namespace"));
    let (Some(api_version), Some(kind_name)) = (node.get_str("apiVersion"), node.get_str("kind"))
    else {
        let missing = if node.get_str("apiVersion").is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        let location = node.get(missing).map_or(node.location, |n| n.location);
        return DocumentOutcome::Invalid(vec![problem(
            location,
            FieldPath::root().key(missing),
            "Required value".to_owned(),
        )]);
    };
    let kind = match Kind::lookup(api_version, kind_name) {
        KindLookup::Known(kind) => kind,
        KindLookup::Skipped => {
            return DocumentOutcome::Skipped(Skipped {
                origin,
                api_version: api_version.to_owned(),
                kind: kind_name.to_owned(),
                name,
            });
        }
        KindLookup::Unknown {
            message,
            in_api_version,
        } => {
            let field = if in_api_version { "apiVersion" } else { "kind" };
            let location = node.get(field).map_or(node.location, |n| n.location);
            return DocumentOutcome::Invalid(vec![problem(
                location,
                FieldPath::root().key(field),
                message,
            )]);
        }
    };
    let display_name = if kind.info().namespaced {
        format!("{}/{name}", namespace.unwrap_or("default"))
    } else {
        name
    };
    let with_identity = |mut p: Problem| {
        p.kind = Some(kind.info().name.to_owned());
        p.name = Some(display_name.clone());
        p
    };
    if kind.info().spec_required && node.get("spec").is_none() {
        return DocumentOutcome::Invalid(vec![with_identity(problem(
            node.location,
            FieldPath::root().key("spec"),
            "Required value".to_owned(),
        ))]);
    }
    let resource = match Resource::from_node_as(kind, node) {
        Ok(resource) => resource,
        Err(error) => {
            return DocumentOutcome::Invalid(
                typing_errors(kind, node, error)
                    .into_iter()
                    .map(|error| {
                        let location = error.location().unwrap_or(node.location);
                        let path = error.path().cloned().unwrap_or_default();
                        with_identity(problem(location, path, error.message().to_owned()))
                    })
                    .collect(),
            );
        }
    };
    let positions = Positions::of(node);
    let errors = validate::validate(&resource);
    if !errors.is_empty() {
        return DocumentOutcome::Invalid(
            errors
                .into_iter()
                .map(|FieldError { path, message }| {
                    let location = positions.find(&path).unwrap_or(node.location);
                    with_identity(problem(location, path, message))
                })
                .collect(),
        );
    }
    DocumentOutcome::Loaded(Box::new(Loaded {
        resource,
        origin,
        positions,
    }))
}

/// At most this many typing errors are reported for one document.
const MAX_TYPING_ERRORS: usize = 50;

/// Every typing error of a document, not just the first: typing stops at a problem, so the
/// offending field is taken out of a copy of the document and typing starts again, until it
/// succeeds or a problem cannot be taken out (a sequence element, a missing field).
fn typing_errors(kind: Kind, node: &Node, first: de::DeError) -> Vec<de::DeError> {
    let mut errors = vec![first];
    let mut repaired = node.clone();
    let mut removed: Vec<FieldPath> = Vec::new();
    while errors.len() < MAX_TYPING_ERRORS {
        let Some(path) = errors.last().and_then(|e| e.path()).cloned() else {
            break;
        };
        if path.is_root() || !repaired.remove_path(path.as_str()) {
            break;
        }
        removed.push(path);
        match Resource::from_node_as(kind, &repaired) {
            Ok(_) => break,
            // A field taken out for being wrong is not also missing.
            Err(next) if next.path().is_some_and(|p| removed.contains(p)) => break,
            Err(next) => errors.push(next),
        }
    }
    errors.sort_by_key(|e| e.location().unwrap_or(node.location));
    errors
}

/// The line and column of every field of a document, by path.
#[derive(Clone, Debug, Default)]
struct Positions(Arc<HashMap<FieldPath, Location>>);

impl Positions {
    fn of(root: &Node) -> Self {
        let mut map = HashMap::new();
        fn walk(node: &Node, path: FieldPath, map: &mut HashMap<FieldPath, Location>) {
            match &node.value {
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, path.index(i), map);
                    }
                }
                Value::Map(entries) => {
                    for (key, value) in entries {
                        let child = path.key(&key.text);
                        // Point at the value for scalars (what is wrong is usually the value),
                        // at the key for collections (which start on the next line).
                        let location = match value.value {
                            Value::Seq(_) | Value::Map(_) => key.location,
                            _ => value.location,
                        };
                        map.insert(child.clone(), location);
                        walk(value, child, map);
                    }
                }
                _ => {}
            }
            map.entry(path).or_insert(node.location);
        }
        walk(root, FieldPath::root(), &mut map);
        Positions(Arc::new(map))
    }

    fn find(&self, path: &FieldPath) -> Option<Location> {
        path.ancestors().find_map(|p| self.0.get(&p).copied())
    }
}
