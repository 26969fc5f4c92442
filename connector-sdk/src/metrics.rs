//! Prometheus metrics through the `metrics` facade: the runtime counts what
//! arrives and how each request ended; sinks add their own with the same
//! macros (`metrics::counter!` ...), and `GET /metrics` renders them all.
//!
//! Labels are bounded: transport, encoding and outcome class. Never an
//! event id or anything secret.

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::ledger::Entry;
use crate::sink::Outcome;

/// Events received, by `transport` (http, grpc) and `encoding`
/// (structured, binary, batch, protobuf).
pub const EVENTS_RECEIVED: &str = "connector_events_received_total";
/// Requests answered, by `transport` and `outcome` class.
pub const REQUESTS: &str = "connector_requests_total";
/// Requests being handled right now.
pub const IN_FLIGHT: &str = "connector_requests_in_flight";
/// Time to answer a request, by `transport`.
pub const REQUEST_SECONDS: &str = "connector_request_duration_seconds";

/// Events looked up in the delivered-ledger, by `result`: `fresh` (handed
/// to the sink), `redelivered` (accepted before; answered without the
/// sink), `busy` (being handled by another request), `repeated` (twice in
/// one batch).
pub const LEDGER: &str = "connector_ledger_events_total";

/// 1 while the store answers, 0 while it is down.
pub const STORE_UP: &str = "connector_store_up";

/// Histogram buckets in seconds, from 1 ms to the 5 s a Vanus trigger waits.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

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
            Some(recorder)
        })
        .as_ref()
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
    metrics::describe_gauge!(IN_FLIGHT, "Requests being handled");
    metrics::describe_counter!(
        LEDGER,
        "Events looked up in the delivered-ledger, by result"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a request"
    );
}

/// The store's health, as the watch last saw it.
pub(crate) fn store_up(up: bool) {
    metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// One event looked up in the ledger.
pub(crate) fn ledger(entry: &Entry) {
    let result = match entry {
        Entry::Fresh => "fresh",
        Entry::Done => "redelivered",
        Entry::Busy => "busy",
        Entry::SameAs(_) => "repeated",
    };
    metrics::counter!(LEDGER, "result" => result).increment(1);
}

/// Tracks one request: counts it in flight until dropped, then records its
/// outcome and duration.
pub(crate) struct RequestTimer {
    transport: &'static str,
    started: Instant,
}

impl RequestTimer {
    pub(crate) fn start(transport: &'static str) -> Self {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        Self {
            transport,
            started: Instant::now(),
        }
    }

    pub(crate) fn received(&self, encoding: &'static str, events: usize) {
        metrics::counter!(EVENTS_RECEIVED, "transport" => self.transport, "encoding" => encoding)
            .increment(events as u64);
    }

    pub(crate) fn finish(self, outcome: &Outcome) {
        metrics::counter!(REQUESTS, "transport" => self.transport, "outcome" => outcome.class())
            .increment(1);
        metrics::histogram!(REQUEST_SECONDS, "transport" => self.transport)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        // Also runs when the client hung up and the request was cancelled.
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}
