//! Bookinfo's `details` service (`examples-bookinfo-details-v1`): the book's details.

use std::net::SocketAddr;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use crate::server::{self, Response};

/// Serves `details` on `listener` until the future is dropped:
/// `GET /details/{id}` → the book's details, `GET /health` → 200.
pub async fn serve(listener: TcpListener) {
    server::serve(listener, |request, _peer: SocketAddr| async move {
        handle(&request)
    })
    .await;
}

fn handle(request: &Request<Incoming>) -> Response {
    let path = request.uri().path();
    if path == "/health" {
        return server::json(StatusCode::OK, &json!({"status": "Details is healthy"}));
    }
    // Like the real server, `/details` answers any method on the path and its sub-paths
    // and takes the last path segment as the id.
    if path == "/details" || path.starts_with("/details/") {
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        return match last.trim().parse::<i64>() {
            Ok(id) => server::json(StatusCode::OK, &book_details(id)),
            Err(_) => server::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "please provide numeric product id"}),
            ),
        };
    }
    server::html(
        StatusCode::NOT_FOUND,
        format!(
            "<HTML><HEAD><TITLE>Not Found</TITLE></HEAD><BODY><H1>Not Found</H1>`{}' not found.</BODY></HTML>",
            server::escape_html(path)
        ),
    )
}

/// The details of book `id`, in the real service's key order.
fn book_details(id: i64) -> serde_json::Value {
    json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    })
}
