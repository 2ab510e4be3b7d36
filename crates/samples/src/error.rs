//! The one error type of the crate.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What can go wrong while starting a sample or making an outbound call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },
    /// A URL could not be used for an HTTP call.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL names a scheme other than plain `http`.
    #[error("unsupported scheme {scheme:?} in {url:?}: only http is supported")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `HTTP_PROXY` (or `http_proxy`) holds something that is not an `http://host:port` proxy.
    #[error("invalid proxy {value:?}: {reason}")]
    InvalidProxy {
        /// The value of the variable.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host name did not resolve to any address.
    #[error("cannot resolve host {host:?}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// No TCP connection could be opened to a server or to the proxy.
    #[error("cannot connect to {target}")]
    Connect {
        /// What was dialled, such as `details:9080` or `proxy 127.0.0.1:15001`.
        target: String,
        /// The error of the last address tried.
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange failed after the connection was open.
    #[error("http exchange with {target} failed")]
    Http {
        /// What was dialled.
        target: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The whole call (connect, request, response body) took longer than allowed.
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout {
        /// The URL called.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// A request could not be built from the given parts.
    #[error("invalid request")]
    Request(#[source] http::Error),
    /// A command-line value could not be used.
    #[error("invalid argument {value:?}: {reason}")]
    InvalidArgument {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Local I/O failed (reading a file, writing output).
    #[error("cannot {action}")]
    Io {
        /// What was being done, such as `write to out.html`.
        action: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}
