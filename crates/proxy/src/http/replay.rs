//! A request body that can be read more than once: retries resend it, mirrors copy it. The
//! downstream body is read once, by whichever reader is furthest ahead; what was read is kept
//! (up to a limit) so that later readers replay it. Past the limit nothing more is kept and no
//! new reader can start, as Envoy abandons retries and shadows of bodies beyond its buffer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};

#[derive(Clone, Debug)]
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

#[derive(Debug)]
struct State {
    source: Body,
    kept: Vec<Kept>,
    /// Frames read from the source so far.
    read: usize,
    bytes: usize,
    limit: usize,
    overflowed: bool,
    ended: bool,
    failed: bool,
    /// Readers waiting for frames another reader pulls.
    waiting: Vec<Waker>,
}

/// The shared body; hand out [`Replay::reader`]s.
#[derive(Debug, Clone)]
pub(super) struct Replay {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panicking reader leaves frames consistent (they are only appended).
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replay {
    /// Wraps `source`, keeping at most `limit` bytes for replays.
    pub(super) fn new(source: Body, limit: usize) -> Self {
        Replay {
            state: Arc::new(Mutex::new(State {
                source,
                kept: Vec::new(),
                read: 0,
                bytes: 0,
                limit,
                overflowed: false,
                ended: false,
                failed: false,
                waiting: Vec::new(),
            })),
        }
    }

    /// A reader from the start, unless the body outgrew the limit.
    pub(super) fn reader(&self) -> Option<Body> {
        if lock(&self.state).overflowed {
            return None;
        }
        Some(Body::boxed(ReplayBody {
            state: self.state.clone(),
            position: 0,
        }))
    }

    /// Whether the body outgrew the limit (no replay possible any more).
    pub(super) fn overflowed(&self) -> bool {
        lock(&self.state).overflowed
    }
}

/// One reading of a [`Replay`].
#[derive(Debug)]
struct ReplayBody {
    state: Arc<Mutex<State>>,
    position: usize,
}

impl Drop for ReplayBody {
    fn drop(&mut self) {
        // This reader may have been the one the source would wake; let the others poll it.
        let waiting = std::mem::take(&mut lock(&self.state).waiting);
        for waker in waiting {
            waker.wake();
        }
    }
}

fn replay_error() -> BoxError {
    Box::new(std::io::Error::other(
        "request body exceeded the buffer limit and cannot be replayed",
    ))
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut state = lock(&this.state);
        if this.position < state.read {
            if state.overflowed {
                return Poll::Ready(Some(Err(replay_error())));
            }
            let frame = state.kept[this.position].clone();
            this.position += 1;
            return Poll::Ready(Some(Ok(match frame {
                Kept::Data(data) => Frame::data(data),
                Kept::Trailers(trailers) => Frame::trailers(trailers),
            })));
        }
        if state.failed {
            return Poll::Ready(Some(Err(Box::new(std::io::Error::other(
                "request body failed",
            )))));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut state.source).poll_frame(cx) {
            Poll::Pending => {
                if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                state.ended = true;
                wake_all(&mut state);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                state.failed = true;
                wake_all(&mut state);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                state.read += 1;
                this.position = state.read;
                if !state.overflowed {
                    let kept = if let Some(data) = frame.data_ref() {
                        state.bytes += data.len();
                        Some(Kept::Data(data.clone()))
                    } else {
                        frame.trailers_ref().map(|t| Kept::Trailers(t.clone()))
                    };
                    if state.bytes > state.limit {
                        state.overflowed = true;
                        state.kept = Vec::new();
                    } else if let Some(kept) = kept {
                        state.kept.push(kept);
                    } else {
                        // An unknown frame kind cannot be replayed faithfully.
                        state.overflowed = true;
                        state.kept = Vec::new();
                    }
                }
                wake_all(&mut state);
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = lock(&self.state);
        state.ended && self.position >= state.read
    }

    fn size_hint(&self) -> SizeHint {
        let state = lock(&self.state);
        if self.position == 0 && state.read == 0 {
            state.source.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

fn wake_all(state: &mut State) {
    for waker in state.waiting.drain(..) {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn every_reader_sees_the_whole_body() {
        let replay = Replay::new(Body::full("hello world"), 1024);
        let first = replay.reader().unwrap().collect().await.unwrap().to_bytes();
        let second = replay.reader().unwrap().collect().await.unwrap().to_bytes();
        assert_eq!(first, "hello world");
        assert_eq!(second, "hello world");
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_source() {
        let (sender, incoming) = {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            (
                tx,
                Body::boxed(http_body_util::StreamBody::new(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )),
            )
        };
        let replay = Replay::new(incoming, 1024);
        let a = tokio::spawn(replay.reader().unwrap().collect());
        let b = tokio::spawn(replay.reader().unwrap().collect());
        for chunk in ["one ", "two ", "three"] {
            sender
                .send(Ok(Frame::data(Bytes::from(chunk))))
                .await
                .unwrap();
        }
        drop(sender);
        let a = a.await.unwrap().unwrap().to_bytes();
        let b = b.await.unwrap().unwrap().to_bytes();
        assert_eq!(a, "one two three");
        assert_eq!(b, "one two three");
    }

    #[tokio::test]
    async fn bodies_beyond_the_limit_cannot_be_replayed() {
        let replay = Replay::new(Body::full(vec![7u8; 100]), 10);
        let first = replay.reader().unwrap().collect().await.unwrap().to_bytes();
        assert_eq!(first.len(), 100);
        assert!(replay.overflowed());
        assert!(replay.reader().is_none());
    }
}
