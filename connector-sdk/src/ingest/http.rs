//! HTTP ingest: `POST /` takes a CloudEvent in structured, binary or batch
//! mode. Beside it: `GET /healthz` (alive; 503 once the store has been down
//! for `store.unhealthy_after_secs`, so the orchestrator restarts the
//! process), `GET /readyz` (taking work; 503
//! while shutting down, while admission is saturated, or while the store is
//! down), `GET /metrics` (Prometheus) and `GET /status` (the sink's own view
//! and the store's health, as JSON).
//!
//! A thin door: admit and read the body (`admission/`), decode and
//! validate (`validate.rs`), hand the events to the dispatch (the
//! delivered-ledger, then [`Sink::arrived`]), turn the outcome into a
//! response with `answer.rs`. Every answer has a body that
//! says what happened, unknown paths and methods included.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudevents::Event;

use super::admission::{Admission, Admitted, SATURATED_AFTER};
use super::error::DecodeError;
use super::refusal::Refusal;
use super::{answer, codec, decoded, validate};
use crate::dispatch::Dispatch;
use crate::metrics::{self, RequestTimer};
use crate::reload::{Reloader, Trigger as ReloadTrigger};
use crate::shutdown::Readiness;
use crate::sink::{Outcome, Sink};
use crate::store::StoreHealth;
use crate::text::{REASON_BYTES, shorten};

/// The media type of HTTP structured mode: what a sender writes (the
/// testing kit's); any `application/cloudevents...` type is read as one.
#[cfg(any(test, feature = "testing"))]
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The media type of HTTP batch mode.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

struct App<S> {
    dispatch: Arc<Dispatch<S>>,
    readiness: Readiness,
    store: StoreStatus,
    admission: Admission,
    reload: Option<Arc<Reloader<S>>>,
}

/// The peer address of the connection a request came on (the connection
/// layer puts it in the request's extensions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub std::net::SocketAddr);

/// What the HTTP port serves.
const ENDPOINTS: &str = "POST / takes CloudEvents; GET /healthz, /readyz, /metrics and /status answer probes; POST /-/reload reloads the config";

/// The HTTP routes for the sink behind `dispatch`. A request to `POST /` is
/// handled only once `admission` admits it (503 past `max_in_flight` or the
/// memory budget, 413 past `max_body_bytes`, 408 when its body is too slow).
pub(crate) fn router<S: Sink>(
    dispatch: Arc<Dispatch<S>>,
    readiness: Readiness,
    store: StoreStatus,
    admission: Admission,
    reload: Option<Arc<Reloader<S>>>,
) -> Router {
    let app = Arc::new(App {
        dispatch,
        readiness,
        store,
        admission,
        reload,
    });
    Router::new()
        .route("/", post(ingest::<S>))
        .route("/healthz", get(alive::<S>))
        .route("/readyz", get(ready::<S>))
        .route("/metrics", get(|| async { metrics::render() }))
        .route("/status", get(status_view::<S>))
        .route("/-/reload", post(reload_config::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The body is read in `ingest`, after admission, with its own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

async fn ingest<S: Sink>(State(app): State<Arc<App<S>>>, request: Request) -> Response {
    let timer = RequestTimer::start("http");
    let (admitted, encoding) = match admit(&app.admission, request).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let response = answer::http_refusal(&refusal);
            timer.refused(&refusal);
            return response;
        }
    };
    let outcome = match decode(encoding, &admitted.headers, admitted.body) {
        Ok(events) => {
            timer.received(encoding.as_str(), events.len());
            app.dispatch.deliver(events).await
        }
        Err(err) => {
            let reason = err.to_string();
            tracing::debug!(reason = %shorten(&reason, REASON_BYTES), "rejected an invalid HTTP request");
            Outcome::rejected(reason)
        }
    };
    drop(admitted.ticket);
    timer.finish(&outcome);
    answer::http_response(&outcome)
}

/// Admits a request, reads its body, and reserves what it will decode into.
async fn admit(admission: &Admission, request: Request) -> Result<(Admitted, Encoding), Refusal> {
    let mut admitted = admission.admit_http(request).await?;
    let body = &admitted.body;
    let encoding = encoding(&admitted.headers);
    let decoded = match encoding {
        Encoding::Structured | Encoding::Batch => decoded::maybe_json(body),
        Encoding::Binary => {
            let content_type = admitted.headers.get(header::CONTENT_TYPE);
            let content_type = content_type.and_then(|v| v.to_str().ok());
            if content_type.is_some_and(codec::is_json_content_type) {
                // Sinks parse JSON data.
                decoded::maybe_json(body)
            } else {
                body.len()
            }
        }
    };
    admitted.ticket.charge_decoded(decoded)?;
    Ok((admitted, encoding))
}

async fn not_found(uri: Uri) -> Response {
    let path = shorten(uri.path(), 64);
    let body = format!("no endpoint at {path}: {ENDPOINTS}\n");
    (StatusCode::NOT_FOUND, body).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let path = shorten(uri.path(), 64);
    let body = format!("{method} is not allowed on {path}: {ENDPOINTS}\n");
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

/// The sink's view, with the runtime's `store` beside it.
async fn status_view<S: Sink>(State(app): State<Arc<App<S>>>) -> Response {
    let problem = app.store.health.problem();
    let store = serde_json::json!({
        "backend": app.store.backend,
        "healthy": problem.is_none(),
        "problem": problem,
    });
    let mut view = match app.dispatch.sink().status().await {
        Some(serde_json::Value::Object(mut view)) => {
            view.insert("store".into(), store);
            serde_json::Value::Object(view)
        }
        Some(other) => serde_json::json!({"sink": other, "store": store}),
        None => serde_json::json!({"store": store}),
    };
    if let Some(reload) = &app.reload {
        view["config"] = reload.status();
    }
    axum::Json(view).into_response()
}

/// `POST /-/reload`: from loopback, or with `Authorization: Bearer
/// <reload.token>`; answers the reload's report as JSON: 200 when applied,
/// 422 when the new config is invalid, 500 when the sink could not apply it.
async fn reload_config<S: Sink>(
    State(app): State<Arc<App<S>>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let Some(reloader) = &app.reload else {
        return (
            StatusCode::NOT_FOUND,
            "live reload is off: this server was not started from a config file\n",
        )
            .into_response();
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !may_reload(
        peer.map(|peer| peer.0.0),
        reloader.token().as_deref(),
        bearer,
    ) {
        return (
            StatusCode::FORBIDDEN,
            "POST /-/reload is taken from loopback, or with Authorization: Bearer <reload.token>\n",
        )
            .into_response();
    }
    let report = reloader.reload(ReloadTrigger::Http).await;
    let status = match report.result {
        "ok" => StatusCode::OK,
        "invalid" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(report)).into_response()
}

/// True when a reload may be asked from `peer` with the `Authorization`
/// header `authorization`: from loopback, or with the token.
fn may_reload(
    peer: Option<std::net::SocketAddr>,
    token: Option<&str>,
    authorization: Option<&str>,
) -> bool {
    if peer.is_some_and(|peer| peer.ip().to_canonical().is_loopback()) {
        return true;
    }
    let given = authorization.and_then(|v| v.strip_prefix("Bearer "));
    match (token, given) {
        (Some(token), Some(given)) => equal_in_constant_time(token.as_bytes(), given.as_bytes()),
        _ => false,
    }
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn alive<S: Sink>(State(app): State<Arc<App<S>>>) -> Response {
    let limit = app.store.unhealthy_after;
    match (app.store.health.down_for(), limit) {
        (Some((problem, down)), Some(limit)) if down >= limit => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the store has been down for {} s (store.unhealthy_after_secs: {}): {}\n",
                down.as_secs(),
                limit.as_secs(),
                shorten(&problem, REASON_BYTES)
            ),
        )
            .into_response(),
        _ => "ok\n".into_response(),
    }
}

async fn ready<S: Sink>(State(app): State<Arc<App<S>>>) -> Response {
    if !app.readiness.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if let Some(problem) = app.store.health.problem() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is down: {}\n", shorten(&problem, REASON_BYTES)),
        )
            .into_response();
    }
    match app.admission.saturated_for() {
        Some(saturated) if saturated >= SATURATED_AFTER => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "over capacity for {:.1} s: every request slot is taken or the memory budget is full; new requests are refused\n",
                saturated.as_secs_f64()
            ),
        )
            .into_response(),
        _ => "ready\n".into_response(),
    }
}

/// What `/readyz` and `/status` say of the store.
#[derive(Debug, Clone)]
pub(crate) struct StoreStatus {
    /// `embedded` or `redis`.
    pub backend: &'static str,
    /// Its latest health.
    pub health: StoreHealth,
    /// How long it may be down before `/healthz` fails; `None`: never.
    pub unhealthy_after: Option<Duration>,
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

/// Decodes a request into valid events (`validate.rs`), or says why it
/// cannot. A reason quotes at most a short piece of what was sent.
pub(crate) fn decode(
    encoding: Encoding,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<Event>, DecodeError> {
    if encoding == Encoding::Batch {
        // cloudevents-sdk has no server-side batch mode: a batch is a JSON
        // array of structured-mode events.
        let events =
            serde_json::from_slice::<Vec<Event>>(&body).map_err(|err| DecodeError::NotABatch {
                reason: one_line(&err.to_string()),
            })?;
        validate::events(events)
    } else {
        let event =
            cloudevents::binding::http::to_event(headers, Vec::from(body)).map_err(|err| {
                DecodeError::NotAnEvent {
                    reason: one_line(&err.to_string()),
                }
            })?;
        validate::one(event).map(|event| vec![event])
    }
}

/// Error text on one line, at most `REASON_BYTES` of it: serde quotes the
/// offending value whole.
fn one_line(text: &str) -> String {
    let head = shorten(text, REASON_BYTES);
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use cloudevents::{AttributesReader, Data};

    fn decode_request(headers: &HeaderMap, body: Bytes) -> Result<Vec<Event>, String> {
        decode(encoding(headers), headers, body).map_err(|err| err.to_string())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_reload_is_taken_from_loopback_or_with_the_token() {
        let at = |addr: &str| Some(addr.parse::<std::net::SocketAddr>().expect("an address"));
        assert!(may_reload(at("127.0.0.1:5000"), None, None));
        assert!(may_reload(at("[::1]:5000"), None, None));
        assert!(may_reload(at("[::ffff:127.0.0.1]:5000"), None, None));
        let remote = at("10.1.2.3:5000");
        assert!(!may_reload(remote, None, None));
        assert!(!may_reload(remote, None, Some("Bearer anything")));
        assert!(!may_reload(remote, Some("s3cret"), None));
        assert!(!may_reload(remote, Some("s3cret"), Some("Bearer s3cre")));
        assert!(!may_reload(remote, Some("s3cret"), Some("s3cret")));
        assert!(may_reload(remote, Some("s3cret"), Some("Bearer s3cret")));
        assert!(!may_reload(None, Some("s3cret"), Some("Bearer wrong")));
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

    #[test]
    fn one_rule_for_both_doors() {
        let ct = headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]);
        let reason = decode_request(
            &ct,
            Bytes::from(r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#),
        )
        .expect_err("0.3 is refused, as over gRPC");
        assert_eq!(reason, "specversion `0.3` is not supported; send 1.0");
        let reason = decode_request(
            &ct,
            Bytes::from(r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#),
        )
        .expect_err("an empty id is refused, as over gRPC");
        assert_eq!(reason, "required attribute `id` is missing or empty");
        let batch = headers(&[("content-type", BATCH_CONTENT_TYPE)]);
        let reason = decode_request(
            &batch,
            Bytes::from(r#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"1.0","id":"2","source":"s","type":""}]"#),
        )
        .expect_err("one invalid event refuses the batch");
        assert_eq!(
            reason,
            "event 1: required attribute `type` is missing or empty"
        );
    }

    #[test]
    fn null_data_is_no_data() {
        let ct = headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]);
        let events = decode_request(
            &ct,
            Bytes::from(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":null}"#),
        )
        .expect("valid");
        assert_eq!(events[0].data(), None);
    }

    #[test]
    fn a_reason_quotes_at_most_a_short_piece_of_the_input() {
        let ct = headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]);
        let body = format!(
            r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","time":"{}"}}"#,
            "9".repeat(1_000_000)
        );
        let reason = decode_request(&ct, Bytes::from(body)).expect_err("bad time");
        assert!(reason.len() <= REASON_BYTES + 64, "{} bytes", reason.len());
    }
}
