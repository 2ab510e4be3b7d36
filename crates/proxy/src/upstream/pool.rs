//! Connection pools of one endpoint: HTTP/1.1 connections kept alive for reuse with a queue of
//! requests waiting for one (Envoy's pending requests), and one multiplexed HTTP/2 connection.
//!
//! As in Envoy, a connection is not tied to the request that caused it to be opened: whoever
//! waits longest gets the next connection that becomes free, new or returned. The pool's state
//! is a short critical section; configuration is never read under it.
//!
//! An endpoint has a pool per routing priority, as Envoy does, so that the connections of
//! `HIGH` requests count against the `HIGH` circuit breakers. Each protocol's pool holds a unit
//! of `max_connection_pools` from its first use until it has neither connections nor waiters
//! (Envoy deletes an idle pool and gives its unit back).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};
use tokio::sync::oneshot;

use super::circuit::{Priority, Resource, ResourceGuard};
use super::connect::ConnectError;
use crate::body::{Body, BodyEnd, BodyObserver};

/// Idle connections kept per endpoint beyond which returned ones are closed.
const MAX_IDLE_PER_HOST: usize = 1024;

/// An HTTP/1.1 connection with the number of requests it carried.
#[derive(Debug)]
pub struct H1Conn {
    /// Where requests go.
    pub sender: http1::SendRequest<Body>,
    /// Requests sent on it so far.
    pub requests: u32,
    since: Instant,
}

impl H1Conn {
    /// A fresh connection.
    pub fn new(sender: http1::SendRequest<Body>) -> Self {
        H1Conn {
            sender,
            requests: 0,
            since: Instant::now(),
        }
    }
}

type Waiter = oneshot::Sender<Result<H1Conn, ConnectError>>;

#[derive(Default)]
struct H1State {
    idle: Vec<H1Conn>,
    waiters: VecDeque<Waiter>,
    /// Connections open or being opened.
    open: usize,
    connecting: usize,
    /// The `max_connection_pools` unit this pool holds while in use.
    unit: Option<ResourceGuard>,
}

impl H1State {
    /// Gives the pool's unit back once nothing uses the pool any more.
    fn release_unit_if_unused(&mut self) {
        if self.open == 0 && self.waiters.iter().all(|w| w.is_closed()) {
            self.unit = None;
        }
    }
}

#[derive(Default)]
struct H2State {
    sender: Option<http2::SendRequest<Body>>,
    unit: Option<ResourceGuard>,
}

/// The connections of one endpoint at one routing priority.
#[derive(Default)]
pub struct Pool {
    h1: Mutex<H1State>,
    h2: Mutex<H2State>,
    /// Serializes opening the HTTP/2 connection so concurrent first requests share one.
    pub(crate) h2_connecting: tokio::sync::Mutex<()>,
}

/// The pools of one endpoint, one per routing priority (the `HIGH` one made on first use).
#[derive(Debug, Default)]
pub struct Pools {
    default: Pool,
    high: std::sync::OnceLock<Pool>,
}

impl Pools {
    /// The pool of `priority`.
    pub fn get(&self, priority: Priority) -> &Pool {
        match priority {
            Priority::Default => &self.default,
            Priority::High => self.high.get_or_init(Pool::default),
        }
    }

    /// Closes every idle connection of every priority (the endpoint left the cluster).
    pub fn clear(&self) {
        self.default.clear();
        if let Some(high) = self.high.get() {
            high.clear();
        }
    }
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

/// What [`Pool::wait`] decided.
#[derive(Debug)]
pub struct Queued {
    /// Resolves with a connection (or the failure of the one opened for the queue).
    pub ticket: oneshot::Receiver<Result<H1Conn, ConnectError>>,
    /// Whether the caller must open a connection for the queue.
    pub connect: bool,
}

impl Pool {
    /// Makes sure the pool of the protocol (`h2` or HTTP/1.1) holds a unit of `units`
    /// (`max_connection_pools`), taking one if it does not; false when none is free (Envoy
    /// then answers `503 no healthy upstream` and counts `upstream_cx_pool_overflow`).
    ///
    /// When the HTTP/2 pool finds no unit, an HTTP/1.1 pool of the same endpoint without
    /// requests in flight is given up for it, as Envoy frees an unused pool of the endpoint.
    pub fn claim(&self, h2: bool, units: &Arc<Resource>) -> bool {
        if h2 {
            let mut state = lock(&self.h2);
            if state.unit.is_some() {
                return true;
            }
            let unit = units.try_acquire().or_else(|| {
                let mut h1 = lock(&self.h1);
                let unused = h1.open == h1.idle.len() && h1.connecting == 0;
                if unused && h1.unit.is_some() {
                    h1.idle.clear();
                    h1.unit.take()
                } else {
                    None
                }
            });
            state.unit = unit;
            state.unit.is_some()
        } else {
            let mut state = lock(&self.h1);
            if state.unit.is_none() {
                state.unit = units.try_acquire();
            }
            state.unit.is_some()
        }
    }

    /// Gives the HTTP/1.1 pool's unit back if no connection or waiter uses it (a request
    /// claimed it and then went no further).
    pub fn release_h1_unit_if_unused(&self) {
        lock(&self.h1).release_unit_if_unused();
    }

    /// An idle HTTP/1.1 connection younger than `idle_timeout`, most recently used first.
    pub fn take_h1(&self, idle_timeout: Option<Duration>) -> Option<H1Conn> {
        let mut state = lock(&self.h1);
        while let Some(entry) = state.idle.pop() {
            let expired = idle_timeout.is_some_and(|t| entry.since.elapsed() >= t);
            if !expired && !entry.sender.is_closed() {
                return Some(entry);
            }
        }
        None
    }

    /// Queues a request for a connection. `may_open(open)` says whether a new connection may
    /// be opened given the endpoint's open ones (circuit breakers); one is asked for only when
    /// the queue outgrows the connections being opened.
    pub fn wait(
        &self,
        idle_timeout: Option<Duration>,
        may_open: impl FnOnce(usize) -> bool,
    ) -> Queued {
        let (sender, ticket) = oneshot::channel();
        let mut state = lock(&self.h1);
        // A connection may have come back since the caller looked: take it rather than wait
        // for an event that may never come.
        while let Some(entry) = state.idle.pop() {
            let expired = idle_timeout.is_some_and(|t| entry.since.elapsed() >= t);
            if !expired && !entry.sender.is_closed() {
                let _ = sender.send(Ok(entry));
                return Queued {
                    ticket,
                    connect: false,
                };
            }
        }
        state.waiters.retain(|w| !w.is_closed());
        state.waiters.push_back(sender);
        let connect = state.waiters.len() > state.connecting && may_open(state.open);
        if connect {
            state.open += 1;
            state.connecting += 1;
        }
        Queued { ticket, connect }
    }

    /// The outcome of a connection opened for the queue: it goes to the longest waiter; a
    /// failure fails every waiter (Envoy purges pending requests on a connect failure).
    pub fn opened(&self, result: Result<H1Conn, ConnectError>) {
        let mut state = lock(&self.h1);
        state.connecting = state.connecting.saturating_sub(1);
        match result {
            Ok(conn) => hand_over(&mut state, conn),
            Err(error) => {
                state.open = state.open.saturating_sub(1);
                for waiter in state.waiters.drain(..) {
                    let _ = waiter.send(Err(error.duplicate()));
                }
                state.release_unit_if_unused();
            }
        }
    }

    /// Gives back a connection whose response ended: to the longest waiter, else idle.
    pub fn release(&self, conn: H1Conn) {
        if conn.sender.is_closed() {
            return;
        }
        hand_over(&mut lock(&self.h1), conn);
    }

    /// A connection closed; returns whether waiters need a new one, which is then counted as
    /// being opened when `may_open(open)` allows it.
    pub fn closed(&self, may_open: impl FnOnce(usize) -> bool) -> bool {
        let mut state = lock(&self.h1);
        state.open = state.open.saturating_sub(1);
        state.waiters.retain(|w| !w.is_closed());
        let connect = state.waiters.len() > state.connecting && may_open(state.open);
        if connect {
            state.open += 1;
            state.connecting += 1;
        }
        state.release_unit_if_unused();
        connect
    }

    /// Counts a connection opened outside the queue (a stale pooled one being replaced).
    pub fn opening_direct(&self) {
        lock(&self.h1).open += 1;
    }

    /// Number of idle HTTP/1.1 connections.
    pub fn idle_h1(&self) -> usize {
        lock(&self.h1).idle.len()
    }

    /// Requests waiting for an HTTP/1.1 connection.
    pub fn waiting(&self) -> usize {
        lock(&self.h1)
            .waiters
            .iter()
            .filter(|w| !w.is_closed())
            .count()
    }

    /// The HTTP/2 connection, if open.
    pub fn h2(&self) -> Option<http2::SendRequest<Body>> {
        let mut slot = lock(&self.h2);
        match slot.sender.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                slot.sender = None;
                None
            }
            None => None,
        }
    }

    /// Stores a newly opened HTTP/2 connection.
    pub fn set_h2(&self, sender: http2::SendRequest<Body>) {
        lock(&self.h2).sender = Some(sender);
    }

    /// The HTTP/2 connection closed or could not be opened: the HTTP/2 pool is unused unless
    /// another connection took its place.
    pub fn h2_gone(&self) {
        let mut slot = lock(&self.h2);
        if slot.sender.as_ref().is_none_or(|s| s.is_closed()) {
            slot.sender = None;
            slot.unit = None;
        }
    }

    /// Closes every idle connection (the endpoint left the cluster).
    pub fn clear(&self) {
        lock(&self.h1).idle.clear();
        lock(&self.h2).sender = None;
    }
}

fn hand_over(state: &mut H1State, mut conn: H1Conn) {
    while let Some(waiter) = state.waiters.pop_front() {
        match waiter.send(Ok(conn)) {
            Ok(()) => return,
            Err(Ok(back)) => conn = back,
            Err(Err(_)) => return,
        }
    }
    if state.idle.len() < MAX_IDLE_PER_HOST && !conn.sender.is_closed() {
        conn.since = Instant::now();
        state.idle.push(conn);
    }
}

/// Returns an HTTP/1.1 connection to its pool once the response body has been read to the end.
#[derive(Debug)]
pub struct ReturnToPool {
    pool: Weak<super::Host>,
    priority: Priority,
    conn: Option<H1Conn>,
}

impl ReturnToPool {
    /// Watches a response read over `conn`, which goes back to `host`'s pool of `priority` at
    /// the end.
    pub fn new(host: &Arc<super::Host>, priority: Priority, conn: H1Conn) -> Self {
        ReturnToPool {
            pool: Arc::downgrade(host),
            priority,
            conn: Some(conn),
        }
    }
}

impl BodyObserver for ReturnToPool {
    fn on_end(&mut self, end: BodyEnd) {
        if end != BodyEnd::Complete {
            // The connection is mid-message; it cannot carry another request.
            return;
        }
        if let (Some(host), Some(conn)) = (self.pool.upgrade(), self.conn.take()) {
            host.pools.get(self.priority).release(conn);
        }
    }
}

/// Keeps something (a circuit-breaker unit, a gauge guard) until a body ends.
#[derive(Debug)]
pub struct Hold<T: Send + 'static>(pub Option<T>);

impl<T: Send + 'static> BodyObserver for Hold<T> {
    fn on_end(&mut self, _end: BodyEnd) {
        self.0.take();
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::rt::TokioIo;

    use super::*;

    /// A connection over an in-memory pipe (HTTP/1.1 needs no answer to hand-shake).
    async fn conn() -> H1Conn {
        let (client, _server) = tokio::io::duplex(1024);
        let (sender, connection) = http1::handshake(TokioIo::new(client)).await.unwrap();
        tokio::spawn(connection);
        // Keep the far end open for the test's duration.
        std::mem::forget(_server);
        H1Conn::new(sender)
    }

    #[tokio::test]
    async fn a_returned_connection_goes_to_the_longest_waiter() {
        let pool = Pool::default();
        let first = pool.wait(None, |_| true);
        assert!(first.connect);
        // A second waiter needs a second connection; a third is refused one by the breakers.
        let second = pool.wait(None, |_| true);
        assert!(second.connect);
        let third = pool.wait(None, |_| false);
        assert!(!third.connect);
        assert_eq!(pool.waiting(), 3);
        pool.opened(Ok(conn().await));
        assert!(first.ticket.await.unwrap().is_ok());
        // The third gave up: the next connection skips it.
        drop(third.ticket);
        pool.release(conn().await);
        assert!(second.ticket.await.unwrap().is_ok());
        assert_eq!(pool.waiting(), 0);
        // Nobody waits: it is kept for the next request.
        pool.release(conn().await);
        assert_eq!(pool.idle_h1(), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_is_taken_instead_of_waiting() {
        let pool = Pool::default();
        pool.release(conn().await);
        let queued = pool.wait(None, |_| true);
        assert!(!queued.connect);
        assert!(queued.ticket.await.unwrap().is_ok());
        assert_eq!(pool.idle_h1(), 0);
    }

    fn units(max: u64) -> Arc<Resource> {
        let stats = crate::stats::Stats::new();
        Resource::new(max, stats.gauge("open"), None)
    }

    #[tokio::test]
    async fn a_pool_holds_its_unit_while_it_has_connections() {
        let units = units(1);
        let (a, b) = (Pool::default(), Pool::default());
        assert!(a.claim(false, &units));
        // Claiming again is free: the pool already holds its unit.
        assert!(a.claim(false, &units));
        assert!(!b.claim(false, &units), "the only unit is a's");
        let queued = a.wait(None, |_| true);
        assert!(queued.connect);
        a.opened(Ok(conn().await));
        let conn = queued.ticket.await.unwrap().unwrap();
        a.release(conn);
        assert!(!b.claim(false, &units), "an idle connection keeps the pool");
        // The connection closes and nobody waits: the pool is gone and its unit free.
        assert!(!a.closed(|_| true));
        assert_eq!(units.current(), 0);
        assert!(b.claim(false, &units));
    }

    #[tokio::test]
    async fn a_pool_that_went_no_further_gives_its_unit_back() {
        let units = units(1);
        let pool = Pool::default();
        assert!(pool.claim(false, &units));
        pool.release_h1_unit_if_unused();
        assert_eq!(units.current(), 0);
        // A failed connect leaves the pool unused too.
        assert!(pool.claim(false, &units));
        let queued = pool.wait(None, |_| true);
        pool.opened(Err(ConnectError::Timeout));
        assert!(queued.ticket.await.unwrap().is_err());
        assert_eq!(units.current(), 0);
    }

    #[tokio::test]
    async fn an_http2_pool_takes_the_unit_of_an_unused_http1_pool() {
        let units = units(1);
        let pool = Pool::default();
        assert!(pool.claim(false, &units));
        let queued = pool.wait(None, |_| true);
        pool.opened(Ok(conn().await));
        let conn = queued.ticket.await.unwrap().unwrap();
        // A request in flight on HTTP/1.1: its pool is in use and keeps the unit.
        assert!(!pool.claim(true, &units));
        pool.release(conn);
        assert!(pool.claim(true, &units));
        assert_eq!(
            pool.idle_h1(),
            0,
            "the unused pool's connections are closed"
        );
        assert_eq!(units.current(), 1);
        pool.h2_gone();
        assert_eq!(units.current(), 0);
    }

    #[tokio::test]
    async fn a_failed_connect_fails_every_waiter() {
        let pool = Pool::default();
        let a = pool.wait(None, |_| true);
        let b = pool.wait(None, |_| false);
        pool.opened(Err(ConnectError::Timeout));
        assert!(matches!(
            a.ticket.await.unwrap(),
            Err(ConnectError::Timeout)
        ));
        assert!(matches!(
            b.ticket.await.unwrap(),
            Err(ConnectError::Timeout)
        ));
        // Nothing is open any more: a host with no connection may always open one.
        assert!(pool.wait(None, |open| open == 0).connect);
    }
}
