//! bosun proxy: Bosun's data plane, an Envoy-compatible L4/L7 proxy driven by an Envoy v3
//! bootstrap and xDS.

// Envoy still honours many fields its API marks deprecated (`append`, `total_weight`,
// `http2_protocol_options`, …), and configurations in the wild use them: so do we.
#![allow(deprecated)]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod bootstrap;
pub mod config;
pub mod dns;
pub mod format;
pub mod headers;
pub mod http;
pub mod listener;
pub mod registry;
pub mod route;
pub mod server;
pub mod stats;
pub mod support;
pub mod tcp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod upstream;
pub mod xds;
