//! Bosun's built-in sample applications: Istio's Bookinfo (productpage, details, reviews
//! v1/v2/v3, ratings) and the small test apps of Istio's samples (httpbin, helloworld,
//! tcp-echo, sleep, curl), so the local mesh runs them as processes without containers.
//!
//! The Bookinfo services answer exactly as Istio's images do (paths, JSON bodies, HTML
//! markers, timeouts, propagated headers), so built-in and real services can be mixed in one
//! mesh. Each server is an async function that serves until its future is dropped; it takes
//! an already bound [`tokio::net::TcpListener`] so callers (and tests) choose the address.
//! Every outbound call goes through [`HttpClient`], which honours `HTTP_PROXY` and `NO_PROXY`
//! because without root the mesh reaches apps' traffic only as their HTTP proxy.
//!
//! [`cli`] holds the `bosun sample <app>` subcommands.

pub mod bookinfo;
pub mod cli;
pub mod curl;
mod error;
pub mod helloworld;
pub mod http_client;
pub mod httpbin;
mod propagation;
mod server;
pub mod sleep;
pub mod tcp_echo;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
pub use http_client::{HttpClient, ProxySettings};
pub use server::bind;
