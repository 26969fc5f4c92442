//! One connection's clock: whether a request is being handled on it, and
//! if not, by when the next one must come (or its headers finish) before
//! the connection is closed.
//!
//! - No request open on a new HTTP/1 connection: the request's headers
//!   must be in within `header_read_timeout` of the connection opening.
//! - No request open after one was answered: the connection may stay idle
//!   (keep-alive) for `idle_timeout`; once the first byte of a next HTTP/1
//!   request arrives, its headers must be in within `header_read_timeout`.
//! - HTTP/2 (gRPC) carries pings and settings between calls, so bytes say
//!   nothing there: with no call open it may stay for `idle_timeout`.
//! - A request open: no deadline here; the body's read timeout
//!   (`ingest/admission/`) and the sink's own deadline bound it.
//!
//! A connection with no request open may also be evicted, at once, to make
//! room for a new one when every connection slot is taken (`mod.rs`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The two protocols the servers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1, on the HTTP port.
    Http1,
    /// HTTP/2, on the gRPC port.
    Http2,
}

/// Why a connection is past its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A request's headers did not arrive in time.
    HeaderTimeout,
    /// No request came for the idle timeout.
    Idle,
    /// Closed, with no request open, to make room for a new connection.
    Evicted,
}

impl Expiry {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expiry::HeaderTimeout => "header_timeout",
            Expiry::Idle => "idle",
            Expiry::Evicted => "evicted",
        }
    }
}

/// The two timeouts a connection's clock runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
}

/// One connection's clock: what is happening on it, and so when it must
/// close; shared by its IO, its service and the task that drives it.
#[derive(Debug)]
pub(crate) struct ConnectionClock {
    protocol: Protocol,
    timeouts: Timeouts,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// Requests being handled.
    open: usize,
    /// Requests seen so far.
    seen: u64,
    /// When the connection opened, or its last request was answered.
    since: Instant,
    /// When the first byte of the next HTTP/1 request arrived.
    head_started: Option<Instant>,
    /// Asked to close to make room for another connection.
    evicted: bool,
}

/// Counts one request as open until dropped.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<ConnectionClock>);

impl ConnectionClock {
    pub(crate) fn new(protocol: Protocol, timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            protocol,
            timeouts,
            state: Mutex::new(State {
                open: 0,
                seen: 0,
                since: Instant::now(),
                head_started: None,
                evicted: false,
            }),
            changed: Notify::new(),
        })
    }

    /// A request's headers are in and it is being handled.
    pub(crate) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.update(|state| {
            state.open += 1;
            state.seen += 1;
            state.head_started = None;
        });
        RequestGuard(Arc::clone(self))
    }

    /// Bytes arrived on the connection (HTTP/1): when no request is open
    /// they start the next request's head, and its header deadline.
    pub(crate) fn bytes_arrived(&self) {
        if self.protocol != Protocol::Http1 {
            return;
        }
        let mut state = self.lock();
        if state.open == 0 && state.seen > 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Since when this connection has had no request open, if it has none
    /// and is not already being evicted: the oldest such is evicted first.
    pub(crate) fn evictable_since(&self) -> Option<Instant> {
        let state = self.lock();
        (state.open == 0 && !state.evicted).then_some(state.since)
    }

    /// Asks the connection to close now, if it still has no request open.
    /// True when it will.
    pub(crate) fn evict(&self) -> bool {
        let mut state = self.lock();
        if state.open > 0 || state.evicted {
            return false;
        }
        state.evicted = true;
        drop(state);
        self.changed.notify_one();
        true
    }

    /// When the connection must be closed unless something happens first,
    /// and why; `None` while a request is open.
    pub(crate) fn deadline(&self) -> Option<(Instant, Expiry)> {
        let state = self.lock();
        if state.open > 0 {
            return None;
        }
        if state.evicted {
            return Some((state.since, Expiry::Evicted));
        }
        let header = |from: Instant| Some((from + self.timeouts.header, Expiry::HeaderTimeout));
        match (self.protocol, state.seen, state.head_started) {
            (Protocol::Http1, 0, _) => header(state.since),
            (Protocol::Http1, _, Some(started)) => header(started),
            _ => Some((state.since + self.timeouts.idle, Expiry::Idle)),
        }
    }

    /// Resolves once the connection is past its time.
    pub(crate) async fn expired(&self) -> Expiry {
        loop {
            // Registered before the state is read: a change in between is
            // not missed (`notify_one` keeps a permit for one waiter).
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.update(|state| {
            state.open -= 1;
            if state.open == 0 {
                state.since = Instant::now();
                state.head_started = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_secs(5),
        idle: Duration::from_secs(30),
    };

    async fn expires_after(clock: &ConnectionClock) -> (Duration, Expiry) {
        let start = Instant::now();
        let why = clock.expired().await;
        (start.elapsed(), why)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_http1_connection_must_send_its_headers_in_time() {
        let clock = ConnectionClock::new(Protocol::Http1, TIMEOUTS);
        assert_eq!(
            expires_after(&clock).await,
            (TIMEOUTS.header, Expiry::HeaderTimeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_answer_it_may_idle_then_the_next_head_has_its_own_deadline() {
        let clock = ConnectionClock::new(Protocol::Http1, TIMEOUTS);
        drop(clock.request_started());
        assert_eq!(expires_after(&clock).await, (TIMEOUTS.idle, Expiry::Idle));

        let clock = ConnectionClock::new(Protocol::Http1, TIMEOUTS);
        drop(clock.request_started());
        tokio::time::sleep(Duration::from_secs(10)).await;
        clock.bytes_arrived();
        assert_eq!(
            expires_after(&clock).await,
            (TIMEOUTS.header, Expiry::HeaderTimeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_has_no_deadline_and_its_end_restarts_the_clock() {
        let clock = ConnectionClock::new(Protocol::Http1, TIMEOUTS);
        let guard = clock.request_started();
        assert_eq!(clock.deadline(), None);
        let waiter = {
            let clock = Arc::clone(&clock);
            tokio::spawn(async move { expires_after(&clock).await })
        };
        tokio::time::sleep(Duration::from_secs(100)).await;
        drop(guard);
        let (waited, why) = waiter.await.expect("waiter");
        assert_eq!(why, Expiry::Idle);
        assert_eq!(waited, Duration::from_secs(100) + TIMEOUTS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_connection_without_an_open_request_is_evicted() {
        let clock = ConnectionClock::new(Protocol::Http1, TIMEOUTS);
        let open = clock.request_started();
        assert_eq!(clock.evictable_since(), None);
        assert!(!clock.evict(), "a request is being handled");
        drop(open);
        assert!(clock.evictable_since().is_some());
        assert!(clock.evict());
        assert!(!clock.evict(), "once is enough");
        assert_eq!(
            expires_after(&clock).await,
            (Duration::ZERO, Expiry::Evicted)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_only_idle_whatever_bytes_come() {
        let clock = ConnectionClock::new(Protocol::Http2, TIMEOUTS);
        clock.bytes_arrived();
        assert_eq!(expires_after(&clock).await, (TIMEOUTS.idle, Expiry::Idle));
    }
}
