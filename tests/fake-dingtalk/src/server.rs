//! The HTTP side of the fake: an axum server on loopback answering
//! `POST /robot/send`, and the [`FakeDingTalk`] handle that starts, queries,
//! steers and stops it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use connector_sdk::testing::ShiftedClock;

use crate::model::{Accepted, Event, Failure, RobotSpec};
use crate::openapi::{AppFailure, AppMessage, AppSpec, OpenApi};
use crate::state::State;

/// Characters left as they are in a token placed in a URL query.
const QUERY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Largest body read at all; bodies between this and
/// [`crate::MAX_BODY_BYTES`] are answered errcode 460101, larger ones get
/// HTTP 413 from axum.
const READ_LIMIT: usize = 8 * 1024 * 1024;

/// How long [`FakeDingTalk::shutdown`] waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// State shared by the handle and the request handlers.
struct Shared {
    state: Mutex<State>,
    /// The OpenAPI of app robots.
    openapi: Mutex<OpenApi>,
    /// How far the fake's clock is ahead of tokio's: a test moves it on to
    /// skip a rate-limit window, together with the sink's store clock.
    clock: Option<Arc<ShiftedClock>>,
    /// Bumped after every request has been recorded.
    changes: watch::Sender<u64>,
    listeners: Mutex<Vec<Listener>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn openapi(&self) -> MutexGuard<'_, OpenApi> {
        self.openapi.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fake's wall-clock time, for signatures and the record of what it
    /// accepted.
    fn wall(&self) -> SystemTime {
        let offset = self.clock.as_ref().map_or(Duration::ZERO, |c| c.offset());
        SystemTime::now() + offset
    }

    /// The fake's time for its rate limits.
    fn now(&self) -> Instant {
        let offset = self.clock.as_ref().map_or(Duration::ZERO, |c| c.offset());
        Instant::now() + offset
    }

    /// Tells listeners and waiters about a finished request.
    fn finish(&self, event: Option<Event>) {
        if let Some(event) = event {
            let listeners = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for listener in listeners {
                listener(&event);
            }
        }
        self.changes.send_modify(|n| *n += 1);
    }
}

/// Stops the server when the last handle goes away.
struct Guard {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Guard {
    fn signal(&self) {
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            // The server may already be gone; nothing to do then.
            let _ = stop.send(());
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.signal();
    }
}

/// A running fake DingTalk robot server on loopback.
///
/// Cheap to clone; every clone controls the same server. The server stops
/// when [`FakeDingTalk::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct FakeDingTalk {
    addr: SocketAddr,
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for FakeDingTalk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDingTalk")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeDingTalk {
    /// Starts a server for `robots` on `127.0.0.1` with a free port.
    pub async fn start(robots: Vec<RobotSpec>) -> std::io::Result<FakeDingTalk> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), robots).await
    }

    /// Starts a server for `robots` on `127.0.0.1` with a free port, its
    /// rate limits following `clock` (which a test can move a minute on,
    /// with the sink's store clock).
    pub async fn start_with_clock(
        robots: Vec<RobotSpec>,
        clock: Arc<ShiftedClock>,
    ) -> std::io::Result<FakeDingTalk> {
        Self::serve(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            robots,
            Some(clock),
        )
        .await
    }

    /// Starts a server for `robots` on `addr`. Fails if the address cannot
    /// be bound or two robots share a token.
    pub async fn start_on(
        addr: SocketAddr,
        robots: Vec<RobotSpec>,
    ) -> std::io::Result<FakeDingTalk> {
        Self::serve(addr, robots, None).await
    }

    async fn serve(
        addr: SocketAddr,
        robots: Vec<RobotSpec>,
        clock: Option<Arc<ShiftedClock>>,
    ) -> std::io::Result<FakeDingTalk> {
        let state = State::new(robots)?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            openapi: Mutex::new(OpenApi::default()),
            clock,
            changes: watch::Sender::new(0),
            listeners: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/robot/send", post(send))
            .route("/v1.0/oauth2/accessToken", post(openapi))
            .route("/v1.0/robot/groupMessages/send", post(openapi))
            .route("/v1.0/robot/oToMessages/batchSend", post(openapi))
            .layer(DefaultBodyLimit::max(READ_LIMIT))
            .with_state(Arc::clone(&shared));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            // Either an explicit stop or the sender being dropped.
            let _ = stop_rx.await;
        });
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake DingTalk server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake DingTalk listening");
        Ok(FakeDingTalk {
            addr,
            shared,
            guard: Arc::new(Guard {
                stop: Mutex::new(Some(stop_tx)),
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook URL of the robot with `token`:
    /// `http://127.0.0.1:PORT/robot/send?access_token=TOKEN`.
    pub fn webhook_url(&self, token: &str) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        format!(
            "http://{addr}/robot/send?access_token={}",
            utf8_percent_encode(token, QUERY_SAFE)
        )
    }

    #[cfg(test)]
    /// [`Self::webhook_url`] plus a `timestamp` and `sign` valid now, when
    /// the robot has a secret; the plain webhook URL otherwise.
    pub fn signed_webhook_url(&self, token: &str) -> String {
        let url = self.webhook_url(token);
        match self.shared.state().secret_for(token) {
            Some(secret) => {
                url + &crate::sign::signed_query(
                    secret,
                    crate::sign::unix_millis(SystemTime::now()),
                )
            }
            None => url,
        }
    }

    /// The OpenAPI's base address, for an app's `api_base`.
    pub fn api_base(&self) -> String {
        self.webhook_url("")
            .split("/robot/")
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Knows app `app` (its key, secret and robot code) from now on.
    pub fn add_app(&self, app: AppSpec) {
        self.shared.openapi().add_app(app);
    }

    /// App tokens handed out from now on expire after `ttl`.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.openapi().set_token_ttl(ttl);
    }

    /// Every app token handed out so far expires now.
    pub fn expire_tokens(&self) {
        self.shared.openapi().expire_tokens();
    }

    /// Token requests for app `app_key`, whatever their answer.
    pub fn token_fetches(&self, app_key: &str) -> usize {
        self.shared.openapi().token_fetches(app_key)
    }

    /// Every app-robot message accepted, in arrival order.
    pub fn app_messages(&self) -> Vec<AppMessage> {
        self.shared.openapi().messages().to_vec()
    }

    /// App-robot message requests (group or one-to-one), whatever their
    /// answer.
    pub fn app_requests(&self) -> usize {
        self.shared.openapi().requests()
    }

    /// These user ids are answered as invalid by one-to-one sends.
    pub fn set_invalid_users(&self, users: &[&str]) {
        self.shared.openapi().set_invalid_users(users);
    }

    /// The next `times` one-to-one sends to `user` hold it back for flow
    /// control.
    pub fn flow_control_next(&self, user: &str, times: usize) {
        self.shared.openapi().flow_control_next(user, times);
    }

    /// The next app-robot message request is answered `status` with `code`.
    pub fn app_fail_next(&self, status: u16, code: &str) {
        self.shared.openapi().fail_next(AppFailure {
            status,
            code: code.to_owned(),
        });
    }

    /// Waits until at least `n` app-robot message requests have arrived, or
    /// `timeout` has passed, and returns the count either way.
    pub async fn wait_for_app_requests(&self, n: usize, timeout: Duration) -> usize {
        let mut changes = self.shared.changes.subscribe();
        let wait = changes.wait_for(|_| self.shared.openapi().requests() >= n);
        // Timing out is an answer too: callers look at what there is.
        let _ = tokio::time::timeout(timeout, wait).await;
        self.app_requests()
    }

    /// Every accepted message, all robots, in arrival order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.shared.state().accepted().to_vec()
    }

    /// The accepted messages of the robot with `token`, in arrival order.
    pub fn accepted_for(&self, token: &str) -> Vec<Accepted> {
        self.shared
            .state()
            .accepted()
            .iter()
            .filter(|a| a.token == token)
            .cloned()
            .collect()
    }

    /// Every request that named `token`, whatever the answer (unknown
    /// tokens included; requests naming none count under `""`).
    pub fn requests_for(&self, token: &str) -> usize {
        self.shared.state().requests_for(token)
    }

    /// The body of every request naming `token`, in arrival order, whatever
    /// the answer (injected failures included), parsed as JSON where it is.
    pub fn bodies_for(&self, token: &str) -> Vec<serde_json::Value> {
        self.shared
            .state()
            .bodies_for(token)
            .iter()
            .map(|b| {
                serde_json::from_slice(b)
                    .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned().into())
            })
            .collect()
    }

    /// When each request naming `token` arrived (the fake's wall clock), in
    /// arrival order, whatever the answer: accepted or refused, every POST
    /// counts toward DingTalk's per-minute limit. Feed it to
    /// [`crate::most_in_any_minute`].
    pub fn posted_at(&self, token: &str) -> Vec<SystemTime> {
        self.shared.state().posted_at(token)
    }

    /// Requests naming `token` answered errcode 410100.
    pub fn throttled_for(&self, token: &str) -> usize {
        self.shared.state().throttled_for(token)
    }

    /// Requests naming `token` that repeated an accepted `msgUuid`.
    pub fn duplicates_for(&self, token: &str) -> usize {
        self.shared.state().duplicates_for(token)
    }

    /// Every non-zero errcode answered, as `(token, errcode, errmsg)`, in
    /// order (the token is empty when the request named none).
    pub fn rejections(&self) -> Vec<(String, i64, String)> {
        self.shared.state().rejections().to_vec()
    }

    /// Makes the next `times` requests naming `token` fail with `failure`.
    /// Calls queue up: a second call applies after the first is used up.
    pub fn fail_next(&self, token: &str, failure: Failure, times: usize) {
        self.shared.state().fail_next(token, failure, times);
    }

    /// Calls `f` for every [`Event`], as it happens, from the task serving
    /// the request. `f` must not block for long.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.shared
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(f));
    }

    /// Waits until at least `n` messages have been accepted in all, or
    /// `timeout` has passed, and returns the accepted messages either way
    /// (check the length to tell which).
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> Vec<Accepted> {
        self.wait_until(timeout, |s| s.accepted().len() >= n).await;
        self.accepted()
    }

    /// Waits until at least `n` requests have named `token`, or `timeout`
    /// has passed, and returns the count either way.
    pub async fn wait_for_requests(&self, token: &str, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |s| s.requests_for(token) >= n)
            .await;
        self.requests_for(token)
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) {
        let mut changes = self.shared.changes.subscribe();
        let wait = changes.wait_for(|_| done(&self.shared.state()));
        // Timing out is an answer too: callers look at what there is.
        let _ = tokio::time::timeout(timeout, wait).await;
    }

    /// Stops the server — for every clone of this handle — letting
    /// in-flight requests finish (for at most 5 s).
    pub async fn shutdown(self) {
        self.guard.signal();
        let task = self
            .guard
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut task) = task
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

mod handlers;

use handlers::{openapi, send};

#[cfg(test)]
mod tests;
