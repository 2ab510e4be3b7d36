//! Responses the proxy makes itself (`404` no route, `503 no healthy upstream`, …), shaped as
//! Envoy shapes them; gRPC requests get a trailers-only gRPC status instead.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;

/// A locally generated response.
#[derive(Debug)]
pub struct LocalReply {
    status: StatusCode,
    body: String,
    grpc_status: Option<u32>,
}

impl LocalReply {
    /// A reply with `status` and text `body`.
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        LocalReply {
            status,
            body: body.into(),
            grpc_status: None,
        }
    }

    /// Uses this gRPC status for gRPC requests instead of the one mapped from the HTTP status.
    pub fn with_grpc_status(mut self, status: u32) -> Self {
        self.grpc_status = Some(status);
        self
    }

    /// The response; for gRPC requests a trailers-only response carrying `grpc-status`.
    pub fn into_response(self, grpc: bool) -> Response<Body> {
        if grpc {
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(
                "grpc-status",
                HeaderValue::from(
                    self.grpc_status
                        .unwrap_or_else(|| grpc_status_for(self.status)),
                ),
            );
            if !self.body.is_empty() {
                if let Ok(message) = HeaderValue::from_str(&percent_encode(&self.body)) {
                    headers.insert("grpc-message", message);
                }
            }
            return response;
        }
        let length = self.body.len();
        let mut response = Response::new(Body::full(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if length > 0 {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        response
    }
}

/// Envoy's mapping from HTTP status to gRPC status for local replies.
pub fn grpc_status_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// gRPC's percent-encoding of `grpc-message`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_get_a_grpc_status() {
        let response = LocalReply::new(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
            .into_response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()["grpc-message"], "no healthy upstream");
    }

    #[test]
    fn http_requests_get_text() {
        let response = LocalReply::new(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
            .into_response(false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "19");
    }
}
