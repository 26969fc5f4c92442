//! The baseline: a bare hyper relay. Each `POST` body is forwarded as is to
//! the blackhole through one pooled client, and the relay answers 200 once
//! the blackhole has answered (502 when it has not). No decoding, no
//! validation, no logging: the physical limit of one-in, one-out HTTP
//! relaying on this machine. `GET` answers 200 at once (the readiness probe).
//!
//! It runs as its own process (`bench relay ...`) on the same kind of tokio
//! runtime as the sink, so that both are measured the same way.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use crate::http::{Body, response, serve};

type Upstream = Client<HttpConnector, Body>;

/// Relays `POST`s received on `listen` to `upstream`, forever.
pub async fn run(listen: SocketAddr, upstream: Uri) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    serve(listener, move |request| {
        relay(request, client.clone(), upstream.clone())
    })
    .await;
    Ok(())
}

async fn relay(
    request: Request<Incoming>,
    client: Upstream,
    upstream: Uri,
) -> Result<Response<Body>, Infallible> {
    if request.method() != Method::POST {
        return Ok(response(StatusCode::OK, "text/plain", "ready\n"));
    }
    let Ok(body) = request.into_body().collect().await else {
        return Ok(response(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "unreadable body\n",
        ));
    };
    let mut out = Request::new(Full::new(body.to_bytes()));
    *out.method_mut() = Method::POST;
    *out.uri_mut() = upstream;
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let answered = match client.request(out).await {
        Ok(answer) if answer.status().is_success() => answer.into_body().collect().await.is_ok(),
        _ => false,
    };
    Ok(if answered {
        response(StatusCode::OK, "text/plain", "ok\n")
    } else {
        response(StatusCode::BAD_GATEWAY, "text/plain", "upstream failed\n")
    })
}
