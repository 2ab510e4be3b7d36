//! Bosun's control plane: a durable config store, a local service registry, the
//! translation of Istio configuration into Envoy v3 xDS resources, and an ADS server —
//! istiod's job, on one machine or many.
//!
//! The flow is one way: the [`store`] publishes revisions; each becomes a
//! [`context::PushContext`] (the [`model`] registry plus indexed Istio config); the
//! [`translate`] step turns it into resources per connected proxy ([`node`]); the [`xds`]
//! server pushes what changed.

pub mod api;
pub mod bootstrap;
pub mod client;
pub mod context;
pub mod model;
pub mod node;
pub mod server;
pub mod store;
pub mod translate;
pub mod xds;

pub use server::{Pilot, PilotError, PilotOptions};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
