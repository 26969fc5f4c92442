//! The contract between a sink and the runtime: the [`Sink`] trait and the
//! [`Outcome`] a sink reports for the events it was handed.
//!
//! The outcome is the sink's promise to the sender. The runtime turns it into
//! a status code in exactly one place (`ingest/answer.rs`), so a sink never thinks
//! about HTTP or gRPC.

use std::time::Duration;

use async_trait::async_trait;
use cloudevents::Event;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SinkConfig;
use crate::store::Store;

/// Any error a sink reports from [`Sink::initialize`]; printed once and the
/// process exits non-zero.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A Vanus Connect sink: what to do with the CloudEvents that arrive.
///
/// The life of a sink, as the runtime drives it:
///
/// 1. [`Sink::initialize`], once, with the validated configuration and the
///    [`Context`] (the store), before any server listens.
/// 2. [`Sink::arrived`], once per request, concurrently from many tasks,
///    while the servers run; [`Sink::status`] whenever `/status` is asked.
/// 3. [`Sink::destroy`], once, after the servers have stopped and in-flight
///    requests have drained (or been cut off at the shutdown timeout).
///
/// The sink never sees HTTP or gRPC: it answers each request with an
/// [`Outcome`], and the runtime turns that into the status code the sender
/// acts on.
#[async_trait]
pub trait Sink: Send + Sync + Sized + 'static {
    /// The sink's own configuration: the whole config file is deserialized
    /// into it (runtime keys such as `port` are simply not part of it), and
    /// [`SinkConfig::validate`] has passed before [`Sink::initialize`] sees it.
    type Config: SinkConfig;

    /// A short name for logs and start-up errors, e.g. `"sink-http"`.
    fn name() -> &'static str;

    /// Builds the sink from its configuration, before anything is served.
    ///
    /// It may do slow or fallible set-up: open files and clients, check that
    /// a remote service answers, register metrics, read what it kept in the
    /// [`Context::store`] before a restart. An error stops start-up: the
    /// process prints `error: <name> could not start: <error>` and exits 1,
    /// so make the message say what to fix. It is not retried.
    async fn initialize(config: Self::Config, context: Context) -> Result<Self, BoxError>;

    /// Handles the events of one request and reports an outcome for each,
    /// in the order given.
    ///
    /// HTTP structured and binary mode carry one event; HTTP batch mode and
    /// gRPC carry many, in the sender's order. Events are already decoded
    /// and valid CloudEvents 1.0, by the same rule whichever way they came:
    /// non-empty `id`, `source` and `type`, and no data where the sender
    /// sent `"data": null`. Checking their content is the sink's job; values
    /// a sink quotes back (in reasons, logs) may be of any length:
    /// [`shorten`](crate::shorten) them. Calls run concurrently, so shared
    /// state needs a lock or an atomic.
    ///
    /// The runtime hands each event to the sink at most once: it remembers
    /// every event answered [`Outcome::Delivered`] or [`Outcome::Queued`]
    /// (by `source` and `id`, for `ledger_ttl_secs`) and answers a
    /// redelivery itself. So both are a promise: the event reached its
    /// destination (`Delivered`), or is durably queued for it (`Queued`). The other outcomes tell the sender what to do
    /// with the request: [`Outcome::Rejected`] — never send it again (Vanus
    /// dead-letters it); [`Outcome::Throttled`] and
    /// [`Outcome::Unavailable`] — send it again later; the runtime answers
    /// with the most retry-worthy outcome of the batch
    /// ([`Outcome::most_retryable`]), and only the events not yet accepted
    /// reach the sink again. An outcome missing from the list counts as
    /// `Unavailable` (fail closed). Answer within the sender's timeout (5 s
    /// for a Vanus trigger).
    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome>;

    /// Releases resources: flush buffers, close connections. Runs once, after
    /// the servers have stopped and no more events can arrive, when the
    /// process shuts down on SIGTERM or SIGINT. It does not run when start-up
    /// fails or the process is killed. The default does nothing.
    async fn destroy(&self) {}

    /// A view of the sink's state for humans, served as JSON on
    /// `GET /status` with the runtime's `store` health beside it: an object
    /// gets a `store` key, any other value is served under `sink`, and
    /// `None` (the default) leaves `{"store": ...}` alone. Must hold no
    /// secret.
    async fn status(&self) -> Option<serde_json::Value> {
        None
    }

    /// Applies a new configuration while the servers run (a live reload:
    /// SIGHUP, `POST /-/reload`, or the config file changed). `new` has
    /// passed [`SinkConfig::validate`], read by the same loader as at
    /// start. Requests already in flight must finish on the configuration
    /// they started with: build the new state aside and swap it in (an
    /// `Arc`), never mutate it in place. An error leaves the running
    /// configuration in place and is the reload's answer. The default
    /// refuses: this sink needs a restart to change its configuration.
    async fn reload(&self, new: Self::Config) -> Result<(), BoxError> {
        drop(new);
        Err(format!(
            "{} does not reload its configuration; restart it",
            Self::name()
        )
        .into())
    }
}

/// What the runtime hands a sink at start-up, beside its configuration:
/// its part of the store, and what it needs to stop cleanly.
#[derive(Debug, Clone)]
pub struct Context {
    store: Store,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Context {
    /// A context over `store`: what the runtime builds; tests and command
    /// line tools that run a sink outside the runtime build their own, and
    /// stop its tasks with [`Context::stop_tasks`].
    pub fn new(store: Store) -> Self {
        Self {
            store,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The sink's own part of the connector's store: durable across
    /// restarts (and shared by every replica, with a shared backend). The
    /// runtime's own keys live elsewhere.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Cancelled when the connector shuts down, after the servers stopped
    /// and the last request was answered: a sink's background tasks (a
    /// flusher, a refresher) stop on it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Where a sink spawns its background tasks: the runtime waits for them
    /// (up to `shutdown_timeout_secs`) after cancelling
    /// [`Context::shutdown`], before [`Sink::destroy`] and before the store
    /// closes, so none writes to a closed store.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Cancels [`Context::shutdown`] and waits up to `grace` for the tasks
    /// of [`Context::tasks`] to finish: what the runtime does at shutdown.
    /// False when some were still running at the end of `grace`.
    pub async fn stop_tasks(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

/// What happened to one event, and so what the sender should
/// do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event reached its destination: the sender is done with it.
    /// HTTP 200 `delivered`, gRPC OK.
    Delivered,
    /// The event is durably queued for its destination (an outbox), which
    /// gets it later: the sender is done with it just the same. HTTP 200
    /// `queued`, gRPC OK.
    Queued,
    /// Retrying can never help: the event is malformed or the destination
    /// refuses it for good, so the sender must not send it again. HTTP 400
    /// (a Vanus trigger dead-letters it at once), gRPC `InvalidArgument`.
    Rejected {
        /// What was wrong, for the sender; one line.
        reason: String,
    },
    /// The destination's rate limit is exhausted; the sender should send
    /// the events again after `retry_after`. HTTP 429 with `Retry-After`
    /// (whole seconds, rounded up), gRPC `ResourceExhausted` with
    /// `retry-after` metadata.
    Throttled {
        /// How long until sending can succeed again.
        retry_after: Duration,
        /// Why, for the sender; one line.
        reason: String,
    },
    /// The destination is failing or unreachable; the sender should send
    /// the events again later, with backoff. HTTP 502, 503 or 504, gRPC
    /// `Unavailable` or `DeadlineExceeded`.
    Unavailable {
        /// Which kind of failure, which picks the status code.
        kind: Unavailable,
        /// Why, for the sender; one line.
        reason: String,
    },
}

/// The kinds of transient failure, named after the status code each gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The destination answered with something that is not a valid answer (502).
    BadGateway,
    /// The destination is unreachable or says it is failing (503).
    ServiceUnavailable,
    /// The destination did not answer in time (504).
    GatewayTimeout,
}

impl Outcome {
    /// A permanent failure with a reason.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Outcome::Rejected {
            reason: reason.into(),
        }
    }

    /// A rate-limit answer: retry after `retry_after`.
    pub fn throttled(retry_after: Duration, reason: impl Into<String>) -> Self {
        Outcome::Throttled {
            retry_after,
            reason: reason.into(),
        }
    }

    /// A transient failure of the given kind.
    pub fn unavailable(kind: Unavailable, reason: impl Into<String>) -> Self {
        Outcome::Unavailable {
            kind,
            reason: reason.into(),
        }
    }

    /// True when the sender is done with the event: delivered or durably
    /// queued.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Delivered | Outcome::Queued)
    }

    /// True when the sender should send the events again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Outcome::Throttled { .. } | Outcome::Unavailable { .. }
        )
    }

    /// The short class name used in logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Queued => "queued",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Unavailable { .. } => "unavailable",
        }
    }

    /// The reason given, or `"delivered"` or `"queued"`.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Queued => "queued",
            Outcome::Rejected { reason }
            | Outcome::Throttled { reason, .. }
            | Outcome::Unavailable { reason, .. } => reason,
        }
    }

    /// This outcome for each of `count` events: what a sink that handles a
    /// batch as a whole reports.
    pub fn for_each(self, count: usize) -> Vec<Outcome> {
        vec![self; count]
    }

    /// Combines the outcomes of a batch into the one answer the sender gets:
    /// the most retry-worthy. Any retryable outcome wins over a rejection so
    /// that the events that can still succeed are sent again (redelivery must
    /// be harmless); among throttles the longest wait wins. A batch of
    /// delivered and queued events is queued (200 either way: the answer
    /// says some of it is still on its way). An empty batch is delivered.
    pub fn most_retryable(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes
            .into_iter()
            .fold(Outcome::Delivered, |worst, next| {
                if next.retry_rank() > worst.retry_rank() {
                    return next;
                }
                match (&worst, &next) {
                    (
                        Outcome::Throttled { retry_after: a, .. },
                        Outcome::Throttled { retry_after: b, .. },
                    ) if b > a => next,
                    _ => worst,
                }
            })
    }

    fn retry_rank(&self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::Queued => 1,
            Outcome::Rejected { .. } => 2,
            Outcome::Unavailable { .. } => 3,
            Outcome::Throttled { .. } => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_batch_is_delivered() {
        assert_eq!(Outcome::most_retryable([]), Outcome::Delivered);
    }

    #[test]
    fn retryable_beats_rejected_and_delivered() {
        let combined = Outcome::most_retryable([
            Outcome::Delivered,
            Outcome::rejected("bad"),
            Outcome::unavailable(Unavailable::GatewayTimeout, "slow"),
            Outcome::Delivered,
        ]);
        assert_eq!(
            combined,
            Outcome::unavailable(Unavailable::GatewayTimeout, "slow")
        );
    }

    #[test]
    fn rejected_beats_delivered() {
        let combined = Outcome::most_retryable([Outcome::Delivered, Outcome::rejected("bad")]);
        assert_eq!(combined, Outcome::rejected("bad"));
    }

    #[test]
    fn longest_throttle_wins() {
        let combined = Outcome::most_retryable([
            Outcome::throttled(Duration::from_secs(3), "a"),
            Outcome::unavailable(Unavailable::ServiceUnavailable, "down"),
            Outcome::throttled(Duration::from_secs(30), "b"),
            Outcome::throttled(Duration::from_secs(10), "c"),
        ]);
        assert_eq!(combined, Outcome::throttled(Duration::from_secs(30), "b"));
    }

    #[test]
    fn delivered_and_queued_make_queued_and_both_are_accepted() {
        let combined = Outcome::most_retryable([Outcome::Delivered, Outcome::Queued]);
        assert_eq!(combined, Outcome::Queued);
        assert!(Outcome::Queued.is_accepted() && Outcome::Delivered.is_accepted());
        assert!(!Outcome::rejected("x").is_accepted());
        assert_eq!(
            Outcome::most_retryable([Outcome::Queued, Outcome::rejected("bad")]),
            Outcome::rejected("bad")
        );
    }

    #[test]
    fn only_throttled_and_unavailable_are_retryable() {
        assert!(!Outcome::Delivered.is_retryable());
        assert!(!Outcome::Queued.is_retryable());
        assert!(!Outcome::rejected("x").is_retryable());
        assert!(Outcome::throttled(Duration::ZERO, "x").is_retryable());
        assert!(Outcome::unavailable(Unavailable::BadGateway, "x").is_retryable());
    }
}
