//! One destination as the kit drives it: the destination, its budget, and
//! what it last said. [`Endpoint::send`] is the one send step, the same for
//! an arriving event and for the flusher: it times the send, remembers the
//! answer, and does what the verdict asks of the destination itself (give
//! an unsent slot back, hold it after "too fast", remember a refusal of its
//! own). What happens to the event is the caller's.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::budget::Budget;
use super::destination::{Answer, Blame, Destination, Verdict};
use super::metrics;

/// How long a destination that refused for a reason of its own (its token,
/// its signature) is passed over while others of its pool can send; then it
/// is tried again. Alone in its pool, it is always tried.
pub(crate) const REFUSING_RECHECK: Duration = Duration::from_secs(60);

/// A send may overrun its timeout by this much before the kit gives up on
/// it: a destination that ignores its timeout must not hold up a request.
/// Less than the deadline's answer reserve, so the answer stays in time.
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);
const _: () = assert!(TIMEOUT_SLACK.as_millis() < super::ANSWER_RESERVE.as_millis());

/// One destination and its state.
pub(crate) struct Endpoint<D> {
    pub destination: D,
    pub budget: Budget,
    /// Its name in logs ([`Destination::name`]).
    pub name: Arc<str>,
    /// The targets it serves, for `/status`.
    pub targets: Mutex<Vec<Arc<str>>>,
    /// How long to hold it after "too fast" without a time of its own.
    pub cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_answer: Option<LastAnswer>,
    /// A refusal of its own, and until when it is passed over.
    refusing: Option<(String, Instant)>,
}

/// What a destination said last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastAnswer {
    pub code: Option<i64>,
    pub reason: String,
    pub at: SystemTime,
}

impl<D: Destination> Endpoint<D> {
    pub(crate) fn new(
        destination: D,
        budget: Budget,
        target: Arc<str>,
        cooldown: Duration,
    ) -> Self {
        Self {
            name: Arc::from(destination.name()),
            destination,
            budget,
            targets: Mutex::new(vec![target]),
            cooldown,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `payload` (its slot already taken from the budget) and acts on
    /// what the answer says about the destination.
    pub(crate) async fn send(&self, payload: &D::Payload, timeout: Duration) -> Answer {
        let started = Instant::now();
        let answer = match tokio::time::timeout(
            timeout + TIMEOUT_SLACK,
            self.destination.send(payload, timeout),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => Answer::from(Verdict::Failed {
                kind: crate::Unavailable::GatewayTimeout,
                retry: super::Retry::Soon,
                reached: true,
                reason: format!("no answer within {timeout:?}"),
            }),
        };
        metrics::sent(started.elapsed(), answer.verdict.class());
        self.remember(&answer);
        match &answer.verdict {
            Verdict::Failed { reached: false, .. } => {
                // Nothing left this process: the slot is not spent.
                if let Err(err) = self.budget.refund().await {
                    tracing::debug!(destination = %self.name, %err, "cannot give an unsent send's slot back; it frees with its window");
                }
            }
            Verdict::Throttled { hold, reason } => {
                self.hold(self.hold_for(*hold), reason).await;
            }
            Verdict::Refused {
                blame: Blame::Destination,
                reason,
            } => {
                self.state().refusing = Some((reason.clone(), Instant::now() + REFUSING_RECHECK));
            }
            Verdict::Delivered => self.state().refusing = None,
            Verdict::Refused { .. } | Verdict::Failed { .. } => {}
        }
        answer
    }

    fn remember(&self, answer: &Answer) {
        self.state().last_answer = Some(LastAnswer {
            code: answer.code,
            reason: answer.verdict.reason().to_owned(),
            at: SystemTime::now(),
        });
    }

    /// How long to hold it: what it asked for, within reason, else the
    /// configured cool-down.
    pub(crate) fn hold_for(&self, asked: Option<Duration>) -> Duration {
        asked.map_or(self.cooldown, |asked| {
            asked.clamp(
                Duration::from_secs(1),
                self.cooldown.max(Duration::from_secs(1)),
            )
        })
    }

    /// Holds every send to it, and says so once, loudly.
    async fn hold(&self, hold: Duration, reason: &str) {
        tracing::error!(
            destination = %self.name,
            key = %self.destination.key(),
            hold_secs = hold.as_secs(),
            %reason,
            "the destination THROTTLED us (another sender may share it); holding all its messages"
        );
        if let Err(store) = self.budget.hold(hold).await {
            tracing::error!(destination = %self.name, %store, "cannot record the hold in the store");
        }
    }

    /// True while it is passed over for a refusal of its own.
    pub(crate) fn is_refusing(&self) -> bool {
        self.state()
            .refusing
            .as_ref()
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// Its latest refusal of its own, if it still refuses.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.state()
            .refusing
            .as_ref()
            .filter(|(_, until)| *until > Instant::now())
            .map(|(reason, _)| reason.clone())
    }

    /// True when it may be asked for a slot now: not held, as far as this
    /// process knows, and not passed over for a refusal.
    pub(crate) fn is_usable(&self) -> bool {
        self.budget.local_hold().is_none() && !self.is_refusing()
    }

    pub(crate) fn last_answer(&self) -> Option<LastAnswer> {
        self.state().last_answer.clone()
    }
}
