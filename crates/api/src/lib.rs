//! Bosun's model of what Istio users write: Istio's APIs, the Kubernetes Gateway API and the
//! Kubernetes kinds needed to run workloads, read from YAML or JSON with every position kept,
//! validated as Istio validates them, and analysed across resources as `istioctl analyze` does.
//!
//! The flow is one way: [`load::read_sources`] → [`load::load_sources`] (parse, type,
//! [`validate`]) → [`analyze::analyze`] on what loaded.

pub mod analyze;
pub mod extensions;
pub mod gateway_api;
pub mod load;
pub mod networking;
pub mod path;
pub mod resource;
pub mod security;
pub mod telemetry;
pub mod types;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use load::{LoadResult, Loaded, Problem, Source};
pub use path::FieldPath;
pub use resource::{Kind, Object, Resource};
