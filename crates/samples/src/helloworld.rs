//! Istio's helloworld sample (`examples-helloworld-v1`, `-v2`): says which version and
//! instance answered.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::net::TcpListener;

use crate::server;

/// The port helloworld listens on.
pub const PORT: u16 = 5000;

/// What helloworld reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloworldConfig {
    /// The version, such as `v1` (`SERVICE_VERSION`).
    pub version: String,
    /// The instance, the pod's name (`HOSTNAME`).
    pub instance: String,
}

/// Serves helloworld on `listener` until the future is dropped:
/// `GET /hello` → `Hello version: v1, instance: <instance>\n`, `GET /health` → 200.
pub async fn serve(listener: TcpListener, config: HelloworldConfig) {
    let config = Arc::new(config);
    server::serve(listener, move |request, _peer: SocketAddr| {
        let config = config.clone();
        async move {
            if request.method() != Method::GET {
                return server::empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            match request.uri().path() {
                "/hello" => server::html(
                    StatusCode::OK,
                    format!(
                        "Hello version: {}, instance: {}\n",
                        config.version, config.instance
                    ),
                ),
                "/health" => server::html(StatusCode::OK, "Helloworld is healthy"),
                _ => server::empty(StatusCode::NOT_FOUND),
            }
        }
    })
    .await;
}
