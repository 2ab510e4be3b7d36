//! bosun proxy: Bosun's data plane, an Envoy-compatible L4/L7 proxy driven by an Envoy v3
//! bootstrap and xDS.

// Envoy still honours many fields its API marks deprecated (`append`, `total_weight`,
// `http2_protocol_options`, …), and configurations in the wild use them: so do we.
#![allow(deprecated)]

pub mod body;
pub mod config;
pub mod format;
pub mod headers;
pub mod route;
pub mod stats;
pub mod support;
pub mod tls;
pub mod upstream;
