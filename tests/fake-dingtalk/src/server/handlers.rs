//! The fake's HTTP handlers: the webhook robot's `POST /robot/send` and the
//! app robots' OpenAPI, each turning a request into a call on the state.

use crate::model::Failure;
use crate::state::{Incoming, Reply};
use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

use super::Shared;

/// Query parameters of a send.
#[derive(Debug, Default)]
pub(super) struct Params {
    pub(super) access_token: Option<String>,
    pub(super) timestamp: Option<String>,
    pub(super) sign: Option<String>,
}

impl Params {
    /// Parses (and percent-decodes) a query string; the first of repeated
    /// keys wins.
    pub(super) fn parse(query: &str) -> Self {
        let mut params = Params::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "access_token" => &mut params.access_token,
                "timestamp" => &mut params.timestamp,
                "sign" => &mut params.sign,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        params
    }
}

/// The OpenAPI of app robots: `POST /v1.0/...`.
pub(super) async fn openapi(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok());
    let (status, answer) = shared
        .openapi()
        .handle(uri.path(), token, &body, shared.now());
    tracing::debug!(path = uri.path(), status, code = ?answer.get("code"), "POST OpenAPI");
    shared.finish(None);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(answer)).into_response()
}

/// `POST /robot/send`.
pub(super) async fn send(
    AxumState(shared): AxumState<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(query.as_deref().unwrap_or(""));
    let token = params.access_token.as_deref().unwrap_or("");
    let req = Incoming {
        token: params.access_token.as_deref(),
        timestamp: params.timestamp.as_deref(),
        sign: params.sign.as_deref(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &body,
    };
    let arrived = shared.wall();
    let mut failure = shared.state().begin(token, &body, arrived);
    while let Some(Failure::Delay(delay) | Failure::After(delay, _)) = &failure {
        tracing::debug!(token, ?delay, "injected delay");
        tokio::time::sleep(*delay).await;
        match failure {
            Some(Failure::After(_, then)) => failure = Some(*then),
            _ => break,
        }
    }
    let (reply, event) = shared
        .state()
        .answer(&req, failure, shared.now(), shared.wall());
    match &reply {
        Reply::Json { errcode, errmsg } => tracing::debug!(
            token,
            signed = req.sign.is_some(),
            body_len = body.len(),
            errcode,
            errmsg = errmsg.as_str(),
            "POST /robot/send"
        ),
        Reply::Http(status) => tracing::debug!(
            token,
            body_len = body.len(),
            status,
            "POST /robot/send (injected HTTP failure)"
        ),
    }
    shared.finish(event);
    match reply {
        Reply::Json { errcode, errmsg } => {
            axum::Json(json!({ "errcode": errcode, "errmsg": errmsg })).into_response()
        }
        Reply::Http(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                format!("injected failure: HTTP {}", status.as_u16()),
            )
                .into_response()
        }
    }
}
