//! HTTP ingest: `POST /` takes a CloudEvent in structured, binary or batch
//! mode. Beside it: `GET /healthz` (alive), `GET /readyz` (taking work; 503
//! while shutting down or while the store is down), `GET /metrics`
//! (Prometheus) and `GET /status` (the sink's own view and the store's
//! health, as JSON).
//!
//! A thin door: decode, hand the events to the dispatch (the delivered-ledger,
//! then [`Sink::arrived`]), turn the outcome into a response with `status.rs`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudevents::Event;

use crate::admission::Admission;
use crate::dispatch::Dispatch;
use crate::metrics::{self, RequestTimer};
use crate::shutdown::Readiness;
use crate::sink::{Outcome, Sink};
use crate::status;
use crate::store::StoreHealth;

/// The media type of HTTP structured mode.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The media type of HTTP batch mode.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

struct App<S> {
    dispatch: Arc<Dispatch<S>>,
    readiness: Readiness,
    store: StoreStatus,
    admission: Admission,
    max_body_bytes: usize,
}

/// The HTTP routes for `sink`. At most `admission`'s bound of requests are
/// handled at once (503 past it), each body at most `max_body_bytes` (413
/// past it), read only once the request is admitted.
pub(crate) fn router<S: Sink>(
    dispatch: Arc<Dispatch<S>>,
    readiness: Readiness,
    store: StoreStatus,
    admission: Admission,
    max_body_bytes: usize,
) -> Router {
    let app = Arc::new(App {
        dispatch,
        readiness,
        store,
        admission,
        max_body_bytes,
    });
    Router::new()
        .route("/", post(ingest::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<S>))
        .route("/metrics", get(|| async { metrics::render() }))
        .route("/status", get(status_view::<S>))
        // The body is read in `ingest`, after admission, with its own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

async fn ingest<S: Sink>(State(app): State<Arc<App<S>>>, request: Request) -> Response {
    let timer = RequestTimer::start("http");
    let _permit = match app.admission.admit() {
        Ok(permit) => permit,
        Err(outcome) => {
            timer.finish(&outcome);
            return status::http_response(&outcome);
        }
    };
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let body = match axum::body::to_bytes(body, app.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => {
            let is_too_large = std::error::Error::source(&err)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            let outcome = Outcome::rejected(if is_too_large {
                format!(
                    "the request body is over {} bytes (max_body_bytes); send smaller batches",
                    app.max_body_bytes
                )
            } else {
                format!("cannot read the request body: {err}")
            });
            timer.finish(&outcome);
            let mut response = status::http_response(&outcome);
            if is_too_large {
                // A rejection (never retried), with the more precise code.
                *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            }
            return response;
        }
    };
    let encoding = encoding(&headers);
    let outcome = match decode(encoding, &headers, body) {
        Ok(events) => {
            timer.received(encoding.as_str(), events.len());
            app.dispatch.deliver(events).await
        }
        Err(reason) => {
            tracing::debug!(%reason, "rejected an undecodable HTTP request");
            Outcome::rejected(reason)
        }
    };
    timer.finish(&outcome);
    status::http_response(&outcome)
}

/// The sink's view, with the runtime's `store` beside it.
async fn status_view<S: Sink>(State(app): State<Arc<App<S>>>) -> Response {
    let problem = app.store.health.problem();
    let store = serde_json::json!({
        "backend": app.store.backend,
        "healthy": problem.is_none(),
        "problem": problem,
    });
    let view = match app.dispatch.sink().status().await {
        Some(serde_json::Value::Object(mut view)) => {
            view.insert("store".into(), store);
            serde_json::Value::Object(view)
        }
        Some(other) => serde_json::json!({"sink": other, "store": store}),
        None => serde_json::json!({"store": store}),
    };
    axum::Json(view).into_response()
}

async fn ready<S: Sink>(State(app): State<Arc<App<S>>>) -> Response {
    if !app.readiness.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match app.store.health.problem() {
        None => "ready\n".into_response(),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is down: {problem}\n"),
        )
            .into_response(),
    }
}

/// What `/readyz` and `/status` say of the store.
#[derive(Debug, Clone)]
pub(crate) struct StoreStatus {
    /// `embedded` or `redis`.
    pub backend: &'static str,
    /// Its latest health.
    pub health: StoreHealth,
}

/// The three HTTP encodings of CloudEvents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Structured,
    Binary,
    Batch,
}

impl Encoding {
    fn as_str(self) -> &'static str {
        match self {
            Encoding::Structured => "structured",
            Encoding::Binary => "binary",
            Encoding::Batch => "batch",
        }
    }
}

fn encoding(headers: &HeaderMap) -> Encoding {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start();
    if content_type.starts_with(BATCH_CONTENT_TYPE) {
        Encoding::Batch
    } else if content_type.starts_with("application/cloudevents") {
        Encoding::Structured
    } else {
        Encoding::Binary
    }
}

/// Decodes a request into events, or says in one line why it cannot.
pub(crate) fn decode(
    encoding: Encoding,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<Event>, String> {
    if encoding == Encoding::Batch {
        // cloudevents-sdk has no server-side batch mode: a batch is a JSON
        // array of structured-mode events.
        serde_json::from_slice::<Vec<Event>>(&body)
            .map_err(|err| format!("invalid CloudEvents batch: {err}"))
    } else {
        cloudevents::binding::http::to_event(headers, Vec::from(body))
            .map(|event| vec![event])
            .map_err(|err| format!("invalid CloudEvent: {}", one_line(&err.to_string())))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use cloudevents::{AttributesReader, Data};

    fn decode_request(headers: &HeaderMap, body: Bytes) -> Result<Vec<Event>, String> {
        decode(encoding(headers), headers, body)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn structured_mode_decodes() {
        let body = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"hi","xvchatgroup":"g"}"#;
        let events = decode_request(
            &headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]),
            Bytes::from(body),
        )
        .expect("decodes");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id(), "1");
        assert_eq!(events[0].data(), Some(&Data::String("hi".into())));
    }

    #[test]
    fn binary_mode_decodes() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "2"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("ce-xvmsgtype", "markdown"),
            ("content-type", "application/json"),
        ]);
        let events = decode_request(&h, Bytes::from(r#"{"title":"x"}"#)).expect("decodes");
        assert_eq!(events[0].id(), "2");
        assert!(events[0].extension("xvmsgtype").is_some());
    }

    #[test]
    fn batch_mode_decodes_in_order() {
        let body = r#"[{"specversion":"1.0","id":"a","source":"s","type":"t"},{"specversion":"1.0","id":"b","source":"s","type":"t"}]"#;
        let events = decode_request(
            &headers(&[(
                "content-type",
                "application/cloudevents-batch+json; charset=utf-8",
            )]),
            Bytes::from(body),
        )
        .expect("decodes");
        let ids: Vec<_> = events.iter().map(|e| e.id()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn malformed_input_gives_a_one_line_reason() {
        let ct = headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]);
        for body in [
            "{not json",
            r#"{"specversion":"1.0","source":"s","type":"t"}"#,
        ] {
            let reason = decode_request(&ct, Bytes::from(body)).expect_err("rejected");
            assert!(reason.starts_with("invalid CloudEvent"), "{reason}");
            assert!(!reason.contains('\n'), "{reason}");
        }
        let batch = headers(&[("content-type", BATCH_CONTENT_TYPE)]);
        assert!(decode_request(&batch, Bytes::from("{}")).is_err());
    }
}
