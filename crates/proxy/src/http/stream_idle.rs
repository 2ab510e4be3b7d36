//! The stream idle timeout (the connection manager's `stream_idle_timeout`, overridden by a
//! route's `idle_timeout`): a stream with no activity, downstream or upstream, for that long
//! ends — `408 stream timeout` before the response started, a reset after, flag SI either way.
//!
//! Activity only stamps the time in an atomic; the stream's one timer wakes at the deadline of
//! the last stamp it saw and sleeps again when there was activity since, so that a busy stream
//! never re-arms a timer per frame.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError};

/// `limit_ms` when the timeout is off.
const OFF: u64 = 0;

/// The activity clock of one stream.
#[derive(Debug)]
pub(crate) struct IdleClock {
    origin: Instant,
    /// Milliseconds from `origin` to the latest activity.
    last_ms: AtomicU64,
    /// The timeout in milliseconds, [`OFF`] when disabled.
    limit_ms: AtomicU64,
    /// Wakes the waiting timer when the limit changes (the route's overrides the manager's).
    limit_changed: Notify,
    expired: AtomicBool,
}

impl IdleClock {
    /// A clock for a stream starting now, with the connection manager's timeout.
    pub(crate) fn new(limit: Option<Duration>) -> Arc<Self> {
        Arc::new(IdleClock {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            limit_ms: AtomicU64::new(to_limit_ms(limit)),
            limit_changed: Notify::new(),
            expired: AtomicBool::new(false),
        })
    }

    /// Something happened on the stream.
    pub(crate) fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// The route's `idle_timeout` replaces the connection manager's (`None`: off).
    pub(crate) fn set_limit(&self, limit: Option<Duration>) {
        self.limit_ms.store(to_limit_ms(limit), Ordering::Relaxed);
        self.touch();
        self.limit_changed.notify_one();
    }

    /// Whether the timeout ended the stream.
    pub(crate) fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// When the stream times out if nothing happens before, `None` when the timeout is off.
    fn deadline(&self) -> Option<Instant> {
        let limit = self.limit_ms.load(Ordering::Relaxed);
        (limit != OFF).then(|| {
            self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed) + limit)
        })
    }

    /// If the deadline passed, marks the stream timed out; otherwise the deadline to wait for.
    fn check(&self) -> Result<Option<Instant>, Expired> {
        match self.deadline() {
            Some(deadline) if Instant::now() >= deadline => {
                self.expired.store(true, Ordering::Relaxed);
                Err(Expired)
            }
            deadline => Ok(deadline),
        }
    }

    /// Resolves when the stream has been idle for the timeout.
    pub(crate) async fn idle(&self) {
        loop {
            match self.check() {
                Err(Expired) => return,
                Ok(None) => self.limit_changed.notified().await,
                Ok(Some(deadline)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.limit_changed.notified() => {}
                    }
                }
            }
        }
    }
}

fn to_limit_ms(limit: Option<Duration>) -> u64 {
    // A limit under a millisecond still times out (Envoy rounds up, never to "off").
    limit.map_or(OFF, |l| (l.as_millis() as u64).max(1))
}

#[derive(Debug)]
struct Expired;

/// A body whose frames count as activity on the stream, and which fails (resetting the
/// stream) once the stream has been idle for the timeout.
pub(crate) struct IdleBody {
    inner: Body,
    clock: Arc<IdleClock>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleBody {
    pub(crate) fn new(inner: Body, clock: Arc<IdleClock>) -> Self {
        IdleBody {
            inner,
            clock,
            sleep: None,
        }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.clock.touch();
            return Poll::Ready(frame);
        }
        loop {
            let deadline = match this.clock.check() {
                Err(Expired) => return Poll::Ready(Some(Err("stream idle timeout".into()))),
                Ok(None) => return Poll::Pending,
                Ok(Some(deadline)) => deadline,
            };
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_deadline_back() {
        let clock = IdleClock::new(Some(Duration::from_millis(100)));
        let waiting = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.idle().await })
        };
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            clock.touch();
            assert!(
                !waiting.is_finished(),
                "activity every 60 ms keeps it alive"
            );
        }
        let before = Instant::now();
        waiting.await.unwrap();
        assert!(clock.expired());
        assert_eq!(before.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_route_limit_replaces_the_managers() {
        let clock = IdleClock::new(Some(Duration::from_secs(300)));
        let waiting = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.idle().await })
        };
        tokio::task::yield_now().await;
        clock.set_limit(Some(Duration::from_millis(50)));
        let before = Instant::now();
        waiting.await.unwrap();
        assert_eq!(before.elapsed(), Duration::from_millis(50));

        // Off: it never fires.
        let clock = IdleClock::new(Some(Duration::from_millis(10)));
        clock.set_limit(None);
        let idle = tokio::time::timeout(Duration::from_secs(3600), clock.idle()).await;
        assert!(idle.is_err());
        assert!(!clock.expired());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_and_one_that_flows_does_not() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let inner = Body::boxed(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ));
        let clock = IdleClock::new(Some(Duration::from_millis(100)));
        let mut body = IdleBody::new(inner, clock.clone());
        let feeding = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                if sender
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Then it stalls, holding the body open.
            std::future::pending::<()>().await;
        });
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "stream idle timeout");
        assert!(clock.expired());
        feeding.abort();
    }
}
