//! The body type of every request and response the proxy handles, with observers that learn
//! how many bytes went through and how the body ended (access logs, stats, connection reuse).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

/// Boxed error of a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// All frames were read.
    Complete,
    /// Reading failed (a reset).
    Error,
    /// The body was dropped before its end (the reader went away).
    Dropped,
}

/// Learns about a body as it is read.
pub trait BodyObserver: Send + 'static {
    /// A data frame of `len` bytes went through.
    fn on_data(&mut self, _len: usize) {}
    /// Trailers went through.
    fn on_trailers(&mut self, _trailers: &HeaderMap) {}
    /// The body ended; called exactly once.
    fn on_end(&mut self, end: BodyEnd);
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    Boxed(Pin<Box<dyn HttpBody<Data = Bytes, Error = BoxError> + Send>>),
}

/// A request or response body.
pub struct Body {
    kind: Kind,
    observers: Vec<Box<dyn BodyObserver>>,
    ended: bool,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Incoming(_) => "incoming",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Body {
    fn new(kind: Kind) -> Self {
        Body {
            kind,
            observers: Vec::new(),
            ended: false,
        }
    }

    /// No body.
    pub fn empty() -> Self {
        Body::new(Kind::Empty)
    }

    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::empty()
        } else {
            Body::new(Kind::Full(Some(bytes)))
        }
    }

    /// A body streamed from a peer.
    pub fn incoming(incoming: Incoming) -> Self {
        Body::new(Kind::Incoming(incoming))
    }

    /// Any other body.
    pub fn boxed<B>(body: B) -> Self
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        Body::new(Kind::Boxed(Box::pin(body.map_err(Into::into))))
    }

    /// Adds an observer.
    pub fn observe(mut self, observer: impl BodyObserver) -> Self {
        if self.ended {
            let mut observer = observer;
            observer.on_end(BodyEnd::Complete);
        } else {
            self.observers.push(Box::new(observer));
        }
        self
    }

    fn end(&mut self, end: BodyEnd) {
        if !self.ended {
            self.ended = true;
            for observer in &mut self.observers {
                observer.on_end(end);
            }
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let end = if self.is_end_stream() {
            BodyEnd::Complete
        } else {
            BodyEnd::Dropped
        };
        self.end(end);
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(incoming) => Pin::new(incoming)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Kind::Boxed(body) => body.as_mut().poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    for observer in &mut this.observers {
                        observer.on_data(data.len());
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    for observer in &mut this.observers {
                        observer.on_trailers(trailers);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(BodyEnd::Error),
            Poll::Ready(None) => this.end(BodyEnd::Complete),
            Poll::Pending => {}
        }
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && this.is_end_stream() {
            this.end(BodyEnd::Complete);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Incoming(incoming) => incoming.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(incoming) => incoming.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<(usize, Vec<BodyEnd>)>>);

    impl BodyObserver for Seen {
        fn on_data(&mut self, len: usize) {
            self.0.lock().unwrap().0 += len;
        }

        fn on_end(&mut self, end: BodyEnd) {
            self.0.lock().unwrap().1.push(end);
        }
    }

    #[tokio::test]
    async fn observers_see_bytes_and_one_end() {
        let seen = Seen::default();
        let body = Body::full("hello").observe(seen.clone());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!(*seen.0.lock().unwrap(), (5, vec![BodyEnd::Complete]));
    }

    #[test]
    fn dropping_an_unread_body_is_seen() {
        let seen = Seen::default();
        drop(Body::full("hello").observe(seen.clone()));
        assert_eq!(seen.0.lock().unwrap().1, vec![BodyEnd::Dropped]);
    }
}
