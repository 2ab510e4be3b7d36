//! The HTTP server loop shared by every sample, and small helpers to build answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::Error;

/// The body of every answer: the samples build whole answers in memory.
pub(crate) type Body = Full<Bytes>;
/// An answer of a sample.
pub(crate) type Response = http::Response<Body>;

/// Largest request body a sample reads; the samples only take small forms and JSON.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// Opens a listening socket on `addr`, for the `serve` functions of the samples.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener`, one task per connection,
/// until the returned future is dropped. Connections live in a [`JoinSet`] owned by this
/// future so that dropping it also closes every open connection.
pub(crate) async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let handler = handler.clone();
                    let builder = builder.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let answer = handler(request, peer);
                            async move { Ok::<_, Infallible>(answer.await) }
                        });
                        if let Err(error) = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Accept fails transiently (out of file descriptors, aborted handshakes);
                    // a short pause keeps a persistent failure from spinning the CPU.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// An answer with `status`, a content type and a body.
pub(crate) fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A compact JSON answer, as the Bookinfo services write them.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    answer(status, "application/json", value.to_string())
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    answer(status, "text/plain; charset=utf-8", body)
}

/// An HTML answer.
pub(crate) fn html(status: StatusCode, body: impl Into<Bytes>) -> Response {
    answer(status, "text/html; charset=utf-8", body)
}

/// A body-less answer.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Reads a request body, or `None` when it is larger than the samples accept or broken.
pub(crate) async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .ok()
        .map(|collected| collected.to_bytes())
}

/// The query string pairs of `request`, decoded, in order.
pub(crate) fn query_pairs<B>(request: &Request<B>) -> Vec<(String, String)> {
    request
        .uri()
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<B>(request: &Request<B>, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&#34;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let request = Request::builder()
            .header("cookie", "a=1; session=jason")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        assert_eq!(cookie(&request, "session").as_deref(), Some("jason"));
        assert_eq!(cookie(&request, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&request, "missing"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&#34;Tom&#34; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
