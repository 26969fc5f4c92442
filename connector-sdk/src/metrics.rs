//! Prometheus metrics through the `metrics` facade: the runtime counts what
//! arrives and how each request ended; sinks add their own with the same
//! macros (`metrics::counter!` ...), and `GET /metrics` renders them all.
//!
//! Labels are bounded: transport, encoding and outcome class. Never an
//! event id or anything secret.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::ingest::Refusal;
use crate::sink::Outcome;

/// Events received, by `transport` (http, grpc) and `encoding`
/// (structured, binary, batch, protobuf).
pub(crate) const EVENTS_RECEIVED: &str = "connector_events_received_total";
/// Requests answered, by `transport` and `outcome` class.
pub(crate) const REQUESTS: &str = "connector_requests_total";
/// Requests refused before they were handled, by `transport` and `reason`
/// (too_large, over_capacity, over_budget, slow_body, broken_body,
/// malformed); also counted in [`REQUESTS`].
pub(crate) const REQUESTS_REFUSED: &str = "connector_requests_refused_total";
/// Requests being handled right now (admitted, not yet answered).
pub(crate) const IN_FLIGHT: &str = "connector_requests_in_flight";
/// Bytes of the memory budget in use right now: request bodies and what
/// they decode into.
pub(crate) const BUFFERED_BYTES: &str = "connector_buffered_bytes";
/// Time to answer a request, by `transport`.
pub(crate) const REQUEST_SECONDS: &str = "connector_request_duration_seconds";
/// Connections open right now, by `transport`.
pub(crate) const CONNECTIONS_OPEN: &str = "connector_connections_open";
/// Connections closed at once because `max_connections` were open, each
/// with a request in flight, by `transport`.
pub(crate) const CONNECTIONS_REFUSED: &str = "connector_connections_refused_total";
/// Connections closed past their time, by `transport` and `reason`
/// (header_timeout, idle, evicted: closed with no request open to make
/// room for a new connection).
pub(crate) const CONNECTIONS_EXPIRED: &str = "connector_connections_expired_total";

/// Events looked up in the delivered-ledger, by `result`: `fresh` (handed
/// to the sink), `redelivered` (accepted before; answered without the
/// sink), `busy` (being handled by another request), `repeated` (twice in
/// one batch).
pub(crate) const LEDGER: &str = "connector_ledger_events_total";

/// 1 while the store answers, 0 while it is down.
pub(crate) const STORE_UP: &str = "connector_store_up";

/// Histogram buckets in seconds, from 1 ms to the 5 s a Vanus trigger waits.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const TRANSPORTS: [&str; 2] = ["http", "grpc"];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Handles of one metric by its label values, each registered with the
/// recorder once and then kept. The `counter!` macros look the handle up
/// on every call (the key built, labels and all, hashed, a lock taken):
/// on the per-event path that costs more than the count itself. Label
/// values are bounded by design, so the memo is too.
pub struct Memo<K, H> {
    register: fn(&K) -> H,
    handles: RwLock<HashMap<K, H, foldhash::fast::RandomState>>,
}

impl<K: Hash + Eq + Clone, H: Clone> Memo<K, H> {
    /// A memo that registers a missing handle with `register`.
    pub fn new(register: fn(&K) -> H) -> Self {
        Self {
            register,
            handles: RwLock::default(),
        }
    }

    /// The handle for `key`. Until the recorder is installed, handles are
    /// not kept (they would count nowhere for ever).
    pub fn get(&self, key: &K) -> H {
        let known = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        if let Some(handle) = known {
            return handle;
        }
        // Asked before registering: a handle registered before the
        // recorder was installed counts nowhere, and must not be kept.
        let keep = installed();
        let handle = (self.register)(key);
        if keep {
            self.handles
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone(), handle.clone());
        }
        handle
    }
}

/// Whether the recorder is installed (and handles count somewhere).
fn installed() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

static RECEIVED: LazyLock<Memo<(&'static str, &'static str), Counter>> = LazyLock::new(|| {
    Memo::new(
        |&(transport, encoding)| metrics::counter!(EVENTS_RECEIVED, "transport" => transport, "encoding" => encoding),
    )
});
static ANSWERED: LazyLock<Memo<(&'static str, &'static str), Counter>> = LazyLock::new(|| {
    Memo::new(
        |&(transport, outcome)| metrics::counter!(REQUESTS, "transport" => transport, "outcome" => outcome),
    )
});
static ANSWER_SECONDS: LazyLock<Memo<&'static str, Histogram>> = LazyLock::new(|| {
    Memo::new(|&transport| metrics::histogram!(REQUEST_SECONDS, "transport" => transport))
});
static LEDGER_RESULTS: LazyLock<Memo<&'static str, Counter>> =
    LazyLock::new(|| Memo::new(|&result| metrics::counter!(LEDGER, "result" => result)));
static GAUGES: LazyLock<Memo<&'static str, Gauge>> =
    LazyLock::new(|| Memo::new(|&name| metrics::gauge!(name)));

/// Installs the process-wide Prometheus recorder once. `None` if another
/// recorder was installed first (metrics then go there, and `/metrics`
/// says so).
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(|err| tracing::warn!(%err, "metrics recorder not installed; /metrics will be empty"))
                .ok()?;
            describe();
            export_from_the_start();
            Some(recorder)
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets. The recorder
/// keeps each sample (24 bytes) until then, or until `/metrics` is scraped:
/// without this, a sink nobody scrapes grows by every request it answers.
/// Twice a second holds at most half a second of them (0.5 MiB at 45,000
/// requests a second; the exporter's own 5 s would hold ten times that).
const UPKEEP_EVERY: Duration = Duration::from_millis(500);

/// Starts folding histogram samples into their buckets every
/// [`UPKEEP_EVERY`], on the current runtime, until aborted.
pub(crate) fn spawn_upkeep() -> Option<tokio::task::AbortHandle> {
    let handle = install()?;
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
    Some(task.abort_handle())
}

/// The Prometheus text exposition of every metric.
pub(crate) fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

fn describe() {
    metrics::describe_counter!(
        EVENTS_RECEIVED,
        "CloudEvents received, by transport and encoding"
    );
    metrics::describe_counter!(REQUESTS, "Requests answered, by transport and outcome");
    metrics::describe_counter!(
        REQUESTS_REFUSED,
        "Requests refused before they were handled, by transport and reason"
    );
    metrics::describe_gauge!(IN_FLIGHT, "Requests being handled");
    metrics::describe_counter!(
        LEDGER,
        "Events looked up in the delivered-ledger, by result"
    );
    metrics::describe_gauge!(STORE_UP, "1 while the store answers, 0 while it is down");
    metrics::describe_gauge!(
        BUFFERED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of request bodies held in memory"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a request"
    );
    metrics::describe_gauge!(CONNECTIONS_OPEN, "Connections open, by transport");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed at once because max_connections were open"
    );
    metrics::describe_counter!(
        CONNECTIONS_EXPIRED,
        "Connections closed past their time, by transport and reason"
    );
    metrics::describe_counter!(
        crate::reload::RELOADS,
        "Live reloads of the config, by result: ok, invalid (the new config did not load), failed (the sink could not apply it)"
    );
}

/// The store's health, as its probe last saw it (`store/health.rs`).
pub(crate) fn store_up(up: bool) {
    metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// One event looked up in the ledger, by its result (`Entry::label`).
pub(crate) fn ledger(result: &'static str) {
    LEDGER_RESULTS.get(&result).increment(1);
}

/// Every family with a series at zero, so a scrape before the first
/// request (or the first refusal) already sees them: a dashboard or an
/// alert on `rate(...)` needs the series to exist.
fn export_from_the_start() {
    for transport in TRANSPORTS {
        for outcome in ["delivered", "rejected", "throttled", "unavailable"] {
            metrics::counter!(REQUESTS, "transport" => transport, "outcome" => outcome).absolute(0);
        }
        let encodings: &[&'static str] = if transport == "http" {
            &["structured", "binary", "batch"]
        } else {
            &["protobuf"]
        };
        for &encoding in encodings {
            metrics::counter!(EVENTS_RECEIVED, "transport" => transport, "encoding" => encoding)
                .absolute(0);
        }
        for reason in [
            "too_large",
            "over_capacity",
            "over_budget",
            "slow_body",
            "broken_body",
            "malformed",
        ] {
            metrics::counter!(REQUESTS_REFUSED, "transport" => transport, "reason" => reason)
                .absolute(0);
        }
        metrics::gauge!(CONNECTIONS_OPEN, "transport" => transport).set(0.0);
        metrics::counter!(CONNECTIONS_REFUSED, "transport" => transport).absolute(0);
        for reason in ["header_timeout", "idle", "evicted"] {
            metrics::counter!(CONNECTIONS_EXPIRED, "transport" => transport, "reason" => reason)
                .absolute(0);
        }
        // A histogram appears with its first sample; register its series.
        let _ = metrics::histogram!(REQUEST_SECONDS, "transport" => transport);
    }
    metrics::gauge!(IN_FLIGHT).set(0.0);
    metrics::gauge!(BUFFERED_BYTES).set(0.0);
    for result in ["fresh", "redelivered", "busy", "repeated"] {
        metrics::counter!(LEDGER, "result" => result).absolute(0);
    }
}

/// Tracks one request from its arrival: records how it ended and how long
/// it took. Cheap to clone (the gRPC door hands it from admission to the
/// handler).
#[derive(Debug, Clone)]
pub(crate) struct RequestTimer {
    transport: &'static str,
    started: Instant,
}

impl RequestTimer {
    pub(crate) fn start(transport: &'static str) -> Self {
        Self {
            transport,
            started: Instant::now(),
        }
    }

    pub(crate) fn received(&self, encoding: &'static str, events: usize) {
        RECEIVED
            .get(&(self.transport, encoding))
            .increment(events as u64);
    }

    pub(crate) fn finish(self, outcome: &Outcome) {
        self.finish_as(outcome.class());
    }

    /// Counts the request as answered with an outcome of `class`.
    fn finish_as(self, class: &'static str) {
        ANSWERED.get(&(self.transport, class)).increment(1);
        ANSWER_SECONDS
            .get(&self.transport)
            .record(self.started.elapsed().as_secs_f64());
    }

    /// The request was refused before it was handled.
    pub(crate) fn refused(self, refusal: &Refusal) {
        metrics::counter!(REQUESTS_REFUSED, "transport" => self.transport, "reason" => refusal.kind())
            .increment(1);
        self.finish_as(refusal.class());
    }
}

/// A request was admitted (`+1`) or answered (`-1`).
pub(crate) fn in_flight(delta: f64) {
    GAUGES.get(&IN_FLIGHT).increment(delta);
}

/// Request body bytes were reserved (positive) or given back (negative).
pub(crate) fn buffered_bytes(delta: f64) {
    GAUGES.get(&BUFFERED_BYTES).increment(delta);
}

/// A connection was closed at once: `max_connections` were open.
pub(crate) fn connection_refused(transport: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED, "transport" => transport).increment(1);
}

/// A connection was closed past its time.
pub(crate) fn connection_expired(transport: &'static str, reason: &'static str) {
    metrics::counter!(CONNECTIONS_EXPIRED, "transport" => transport, "reason" => reason)
        .increment(1);
}

/// Counts one open connection until dropped.
pub(crate) struct OpenConnection(&'static str);

impl OpenConnection {
    pub(crate) fn new(transport: &'static str) -> Self {
        metrics::gauge!(CONNECTIONS_OPEN, "transport" => transport).increment(1.0);
        Self(transport)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN, "transport" => self.0).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_counts_through_one_kept_handle_a_label_value() {
        install();
        static COUNTS: LazyLock<Memo<&'static str, Counter>> = LazyLock::new(|| {
            Memo::new(|&kind| metrics::counter!("memo_test_total", "kind" => kind))
        });
        COUNTS.get(&"a").increment(2);
        COUNTS.get(&"a").increment(3);
        COUNTS.get(&"b").increment(1);
        let shown = render();
        assert!(shown.contains("memo_test_total{kind=\"a\"} 5"), "{shown}");
        assert!(shown.contains("memo_test_total{kind=\"b\"} 1"), "{shown}");
        let kept = COUNTS.handles.read().expect("not poisoned").len();
        assert_eq!(kept, 2);
    }
}
