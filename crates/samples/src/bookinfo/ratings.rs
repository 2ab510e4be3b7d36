//! Bookinfo's `ratings` service (`examples-bookinfo-ratings-v1`): stars per reviewer, held
//! in memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::server::{self, Response};

/// Ratings posted with `POST /ratings/{id}`, which replace the built-in ones for that id.
type Posted = Arc<Mutex<HashMap<i64, Value>>>;

/// Serves `ratings` on `listener` until the future is dropped:
/// `GET /ratings/{id}` → `{"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}`,
/// `POST /ratings/{id}` with a JSON object → replaces them, `GET /health` → 200.
pub async fn serve(listener: TcpListener) {
    let posted = Posted::default();
    server::serve(listener, move |request, _peer: SocketAddr| {
        let posted = posted.clone();
        async move { handle(&posted, request).await }
    })
    .await;
}

async fn handle(posted: &Posted, request: Request<Incoming>) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == "/health" && method == Method::GET {
        return server::json(StatusCode::OK, &json!({"status": "Ratings is healthy"}));
    }
    let Some(rest) = path.strip_prefix("/ratings/") else {
        return not_found();
    };
    // The real service matches `^/ratings/[0-9]*` and reads the id with `parseInt` from
    // the last segment: leading digits count, anything else is not numeric.
    let id = parse_int(rest.rsplit('/').next().unwrap_or(""));
    let Some(id) = id else {
        return server::json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "please provide numeric product ID"}),
        );
    };
    match method {
        Method::GET => server::json(StatusCode::OK, &ratings(posted, id)),
        Method::POST => {
            let body = server::read_body(request.into_body()).await;
            let Some(ratings_posted) = body
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
                .filter(Value::is_object)
            else {
                return server::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "please provide valid ratings JSON"}),
                );
            };
            posted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, json!({"id": id, "ratings": ratings_posted}));
            server::json(StatusCode::OK, &ratings(posted, id))
        }
        _ => not_found(),
    }
}

fn ratings(posted: &Posted, id: i64) -> Value {
    posted
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .cloned()
        .unwrap_or_else(|| json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}))
}

/// JavaScript's `parseInt` on a decimal string: optional sign, then leading digits.
fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim_start();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().ok().map(|n| sign * n)
}

fn not_found() -> Response {
    server::text(StatusCode::NOT_FOUND, "Not Found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_like_parse_int() {
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("12abc"), Some(12));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int(""), None);
    }
}
