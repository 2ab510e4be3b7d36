//! Connection pools of one endpoint: idle HTTP/1.1 connections kept alive for reuse, and one
//! multiplexed HTTP/2 connection.
//!
//! Taking a connection out of the pool is a short critical section on the endpoint's pool, the
//! only lock on the request path; configuration is never read under it.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};

use crate::body::{Body, BodyEnd, BodyObserver};

/// Idle connections kept per endpoint beyond which returned ones are closed.
const MAX_IDLE_PER_HOST: usize = 1024;

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// The connections of one endpoint.
#[derive(Default)]
pub struct Pool {
    h1_idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    /// Serializes opening the HTTP/2 connection so concurrent first requests share one.
    pub(crate) h2_connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Pool state stays consistent even if a holder panicked: entries are independent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// An idle HTTP/1.1 connection younger than `idle_timeout`, most recently used first.
    pub fn take_h1(&self, idle_timeout: Option<Duration>) -> Option<http1::SendRequest<Body>> {
        let mut idle = lock(&self.h1_idle);
        while let Some(entry) = idle.pop() {
            let expired = idle_timeout.is_some_and(|t| entry.since.elapsed() >= t);
            if !expired && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns an HTTP/1.1 connection for reuse.
    pub fn put_h1(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.h1_idle);
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Number of idle HTTP/1.1 connections.
    pub fn idle_h1(&self) -> usize {
        lock(&self.h1_idle).len()
    }

    /// The HTTP/2 connection, if open.
    pub fn h2(&self) -> Option<http2::SendRequest<Body>> {
        let mut slot = lock(&self.h2);
        match slot.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// Stores a newly opened HTTP/2 connection.
    pub fn set_h2(&self, sender: http2::SendRequest<Body>) {
        *lock(&self.h2) = Some(sender);
    }

    /// Closes every idle connection (the endpoint left the cluster).
    pub fn clear(&self) {
        lock(&self.h1_idle).clear();
        *lock(&self.h2) = None;
    }
}

/// Returns an HTTP/1.1 connection to its pool once the response body has been read to the end.
#[derive(Debug)]
pub struct ReturnToPool {
    pool: Weak<super::Host>,
    sender: Option<http1::SendRequest<Body>>,
}

impl ReturnToPool {
    /// Watches a response read over `sender`, which goes back to `host`'s pool at the end.
    pub fn new(host: &Arc<super::Host>, sender: http1::SendRequest<Body>) -> Self {
        ReturnToPool {
            pool: Arc::downgrade(host),
            sender: Some(sender),
        }
    }
}

impl BodyObserver for ReturnToPool {
    fn on_end(&mut self, end: BodyEnd) {
        if end != BodyEnd::Complete {
            // The connection is mid-message; it cannot carry another request.
            return;
        }
        if let (Some(host), Some(sender)) = (self.pool.upgrade(), self.sender.take()) {
            host.pool.put_h1(sender);
        }
    }
}
