//! The HTTP side of an app robot: POST JSON to DingTalk's OpenAPI (with the
//! access token in `x-acs-dingtalk-access-token`), read its answer. The
//! other side is trusted no more than a webhook's: no redirects followed (the
//! shared client), at most `MAX_ANSWER_BYTES` read, what is quoted from it
//! masked.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::robot::SendError;
use crate::robot::client::{MAX_ANSWER_BYTES, read_answer, retry_after, transport_error};
use crate::robot::mask::quote;
use crate::secret::Secret;

/// The header carrying the access token.
pub const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// An OpenAPI error's body.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// One app's OpenAPI: its address and the shared HTTP client.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base: url::Url,
}

/// An OpenAPI answer that is not a success: its status, and its body's
/// `code` and `message` (masked) when it had them.
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Why a call did not succeed: an error answer, or no usable answer.
pub enum CallError {
    /// An error answer.
    Answer(Failure),
    /// No answer, or one that is not the OpenAPI's.
    Send(SendError),
}

impl Api {
    /// The OpenAPI at `base`, through `client`.
    pub fn new(client: reqwest::Client, base: url::Url) -> Self {
        Self { client, base }
    }

    /// The base address, for `/status`.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// POSTs `body` to `path`, with `token` when given, waiting at most
    /// `timeout`; `secrets` are masked in whatever is quoted.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&Secret>,
        body: &Value,
        timeout: Duration,
        secrets: &[&Secret],
    ) -> Result<Value, CallError> {
        let url = endpoint(&self.base, path);
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token.expose());
        }
        let quoted = |text: &[u8]| {
            let secrets = secrets.iter().map(|s| s.expose().to_owned()).collect();
            quote(text, secrets)
        };
        let response = request
            .send()
            .await
            .map_err(|err| CallError::Send(transport_error(err, timeout)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let (bytes, whole) = read_answer(response, timeout)
            .await
            .map_err(CallError::Send)?;
        if status.is_success() {
            if !whole {
                return Err(CallError::Send(SendError::BadAnswer(format!(
                    "the answer is over {} KiB; it starts with \"{}\"",
                    MAX_ANSWER_BYTES / 1024,
                    quoted(&bytes)
                ))));
            }
            return serde_json::from_slice(&bytes).map_err(|err| {
                CallError::Send(SendError::BadAnswer(format!(
                    "{err}; it starts with \"{}\"",
                    quoted(&bytes)
                )))
            });
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(error) if whole && !error.code.is_empty() => Err(CallError::Answer(Failure {
                status: status.as_u16(),
                code: quoted(error.code.as_bytes()),
                message: quoted(error.message.as_bytes()),
            })),
            // Not the OpenAPI's answer: a gateway's, a proxy's.
            _ if status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                Err(CallError::Send(SendError::HttpThrottled { retry_after }))
            }
            _ => Err(CallError::Send(SendError::HttpStatus(status.as_u16()))),
        }
    }
}

/// `path` under `base`: appended, not joined, as a proxy's base may have a
/// path of its own.
fn endpoint(base: &url::Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

impl From<CallError> for SendError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Send(err) => err,
            CallError::Answer(Failure {
                status,
                code,
                message,
            }) => SendError::App {
                status,
                code,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxys_path_is_kept() {
        let at = |base: &str| endpoint(&url::Url::parse(base).expect("url"), "/v1.0/x");
        assert_eq!(
            at("https://api.dingtalk.com"),
            "https://api.dingtalk.com/v1.0/x"
        );
        assert_eq!(
            at("https://proxy.test/dingtalk/"),
            "https://proxy.test/dingtalk/v1.0/x"
        );
    }
}
