//! An app's access token: fetched once, cached, refreshed before it expires
//! and once more when DingTalk says it is invalid, one fetch at a time.
//! DingTalk asks callers not to fetch tokens often, so:
//!
//! - in one process, a mutex makes every caller wait for the one fetch in
//!   flight (single flight) and then use its token;
//! - with a shared store (replicas), the token is kept in the store with
//!   its expiry, and a lease in the store lets one replica fetch while the
//!   others wait for its token there;
//! - a refused key or secret is remembered for [`REFUSED_FOR`], so a storm
//!   of events does not become a storm of token requests.
//!
//! The token is a [`Secret`]: never logged, never in `/status`, masked in
//! any answer quoted.

use std::time::Duration;

use connector_sdk::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::api::{Api, CallError, Failure};
use crate::robot::SendError;
use crate::secret::Secret;

/// How long a refused key or secret is answered from memory.
pub const REFUSED_FOR: Duration = Duration::from_secs(10);

/// The token endpoint.
pub const TOKEN_PATH: &str = "/v1.0/oauth2/accessToken";

/// Refresh this long before expiry at most (a fifth of its life at least).
const MAX_MARGIN: Duration = Duration::from_secs(300);

/// How long one replica's right to fetch lasts.
const LEASE: Duration = Duration::from_secs(10);

/// How often a replica waiting for another's token looks in the store.
const POLL: Duration = Duration::from_millis(50);

/// What DingTalk answers a token request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    access_token: String,
    expire_in: u64,
}

/// A token as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Stored {
    token: String,
    /// When to stop using it (refresh margin taken off), ms since the epoch.
    use_until_ms: i64,
}

#[derive(Default)]
struct Cache {
    /// The token and when to stop using it.
    token: Option<(Secret, Instant)>,
    /// A refusal of the key or secret, and when it came.
    refused: Option<(Instant, SendError)>,
}

/// One app's token.
pub struct Tokens {
    app: String,
    app_key: String,
    app_secret: Secret,
    api: Api,
    store: Store,
    /// This process's name in the store's lease.
    holder: String,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// When to stop using a token that lives `expire_in` from `now`.
pub fn use_until(now: Instant, expire_in: Duration) -> Instant {
    now + expire_in - (expire_in / 5).min(MAX_MARGIN)
}

impl Tokens {
    /// The token of app `app` (`app_key`, `app_secret`) from `api`, shared
    /// through `store` when it is shared.
    pub fn new(app: String, app_key: String, app_secret: Secret, api: Api, store: Store) -> Self {
        let key = hex::encode(&Sha256::digest(app_key.as_bytes())[..12]);
        Self {
            app,
            app_key,
            app_secret,
            api,
            store: store.scope(&format!("app-token-{key}")),
            holder: format!("{}-{:08x}", std::process::id(), fastrand::u32(..)),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// A token valid for a while yet, by `until`.
    pub async fn get(&self, until: Instant) -> Result<Secret, SendError> {
        let mut cache = tokio::time::timeout_at(until, self.cache.lock())
            .await
            .map_err(|_| SendError::Timeout(until.saturating_duration_since(Instant::now())))?;
        let now = Instant::now();
        if let Some((token, valid_until)) = &cache.token
            && now < *valid_until
        {
            return Ok(token.clone());
        }
        if let Some((at, refused)) = &cache.refused
            && now.duration_since(*at) < REFUSED_FOR
        {
            return Err(refused.clone());
        }
        match self.shared_or_fetch(until).await {
            Ok((token, valid_until)) => {
                cache.token = Some((token.clone(), valid_until));
                cache.refused = None;
                Ok(token)
            }
            Err(err) => {
                if matches!(err, SendError::AppCredentials { status, .. } if status < 500) {
                    cache.refused = Some((Instant::now(), err.clone()));
                }
                Err(err)
            }
        }
    }

    /// A token other than `stale`, which DingTalk refused, by `until`.
    pub async fn refresh(&self, stale: &Secret, until: Instant) -> Result<Secret, SendError> {
        {
            let mut cache = tokio::time::timeout_at(until, self.cache.lock())
                .await
                .map_err(|_| SendError::Timeout(Duration::ZERO))?;
            if cache
                .token
                .as_ref()
                .is_some_and(|(token, _)| token == stale)
            {
                cache.token = None;
                if self.store.is_shared()
                    && let Ok(Some(stored)) = self.read_stored().await
                    && stored.0 == *stale
                {
                    // Best effort: a replica that still reads it refreshes on its 401.
                    let _ = self.store.remove("token").await;
                }
            }
        }
        self.get(until).await
    }

    /// With a shared store: the replicas' token, or this replica fetches it
    /// under the lease while the others wait for it. Alone: a fetch.
    async fn shared_or_fetch(&self, until: Instant) -> Result<(Secret, Instant), SendError> {
        if !self.store.is_shared() {
            return self.fetch(until).await;
        }
        loop {
            if let Ok(Some(stored)) = self.read_stored().await {
                return Ok(stored);
            }
            match self.store.lease("fetching", &self.holder, LEASE).await {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
            if Instant::now() + POLL >= until {
                return Err(SendError::Timeout(Duration::ZERO));
            }
            tokio::time::sleep(POLL).await;
        }
        let (token, valid_until) = self.fetch(until).await?;
        let life = valid_until.saturating_duration_since(Instant::now());
        let stored = Stored {
            token: token.expose().to_owned(),
            use_until_ms: connector_sdk::deliver::now_ms()
                + i64::try_from(life.as_millis()).unwrap_or(i64::MAX),
        };
        if let Ok(bytes) = serde_json::to_vec(&stored)
            && let Err(err) = self.store.put("token", bytes, life).await
        {
            tracing::warn!(app = %self.app, %err, "cannot share the app's access token through the store; the other replicas fetch their own");
        }
        Ok((token, valid_until))
    }

    /// The token in the store, if there is one still to use.
    async fn read_stored(&self) -> Result<Option<(Secret, Instant)>, SendError> {
        let Some(bytes) = self
            .store
            .get("token")
            .await
            .map_err(|err| SendError::Unreachable(err.to_string()))?
        else {
            return Ok(None);
        };
        let Ok(stored) = serde_json::from_slice::<Stored>(&bytes) else {
            return Ok(None);
        };
        let left = stored.use_until_ms - connector_sdk::deliver::now_ms();
        if left <= 0 {
            return Ok(None);
        }
        let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
        Ok(Some((Secret::new(stored.token), Instant::now() + left)))
    }

    /// Asks DingTalk for a token.
    async fn fetch(&self, until: Instant) -> Result<(Secret, Instant), SendError> {
        let timeout = until.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(SendError::Timeout(timeout));
        }
        let body = json!({"appKey": self.app_key, "appSecret": self.app_secret.expose()});
        let answer = self
            .api
            .post(TOKEN_PATH, None, &body, timeout, &[&self.app_secret])
            .await
            .map_err(|err| match err {
                CallError::Answer(Failure {
                    status,
                    code,
                    message,
                }) => SendError::AppCredentials {
                    app: self.app.clone(),
                    status,
                    code,
                    message,
                },
                CallError::Send(err) => err,
            })?;
        let answer: Answer = serde_json::from_value(answer).map_err(|err| {
            SendError::BadAnswer(format!(
                "the token answer lacks accessToken or expireIn: {err}"
            ))
        })?;
        tracing::info!(app = %self.app, expire_in_secs = answer.expire_in, "fetched the app's access token");
        let valid_until = use_until(Instant::now(), Duration::from_secs(answer.expire_in));
        Ok((Secret::new(answer.access_token), valid_until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_before_it_expires() {
        let now = Instant::now();
        // DingTalk's two hours: five minutes early.
        assert_eq!(
            use_until(now, Duration::from_secs(7200)),
            now + Duration::from_secs(6900)
        );
        // A short life: a fifth of it early.
        assert_eq!(
            use_until(now, Duration::from_secs(100)),
            now + Duration::from_secs(80)
        );
        assert_eq!(use_until(now, Duration::ZERO), now);
    }
}
