//! The HTTP side of a robot: sign a request, POST the body, read the answer.
//!
//! The other side is trusted no more than a client: redirects are not
//! followed (a webhook never redirects; following one would post the
//! message, token and all, somewhere else), at most `MAX_ANSWER_BYTES` of
//! an answer are read, and what is quoted from it goes through
//! [`mask::quote`](super::mask::quote).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::answer::{SendError, classify};
use super::mask::{QUOTED_BYTES, quote};
use super::proxy::ProxyPlan;
use super::sign::sign;
use super::webhook::Webhook;
use crate::secret::Secret;

/// The most of DingTalk's answer that is read: its JSON answer is tens of
/// bytes; anything much larger is not DingTalk.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The body DingTalk answers with.
#[derive(Debug, Deserialize)]
struct Reply {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Posts one message body to `webhook`, signed afresh with `secret` when
/// given, and waits at most `timeout`.
pub async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    secret: Option<&Secret>,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut request = client
        .post(webhook.expose().clone())
        .timeout(timeout)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body);
    let mut signature = None;
    if let Some(secret) = secret {
        // DingTalk rejects a timestamp more than an hour off: a fresh one per request.
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let signed = signature.insert(sign(secret, timestamp));
        request = request.query(&[
            ("timestamp", timestamp.to_string().as_str()),
            ("sign", signed.as_str()),
        ]);
    }
    let quoted = |text: &[u8]| {
        let mut secrets = webhook.secrets();
        if let Some(signature) = &signature {
            secrets.push(url::form_urlencoded::byte_serialize(signature.as_bytes()).collect());
            secrets.push(signature.clone());
        }
        quote(text, secrets)
    };

    let response = request
        .send()
        .await
        .map_err(|err| transport_error(err, timeout))?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(SendError::HttpThrottled {
            retry_after: retry_after(response.headers()),
        });
    }
    if !status.is_success() {
        return Err(SendError::HttpStatus(status.as_u16()));
    }
    let (bytes, whole) = read_answer(response, timeout).await?;
    if !whole {
        return Err(SendError::BadAnswer(format!(
            "the answer is over {} KiB (DingTalk answers with a short JSON object); it starts with \"{}\"",
            MAX_ANSWER_BYTES / 1024,
            quoted(&bytes)
        )));
    }
    let reply: Reply = serde_json::from_slice(&bytes).map_err(|err| {
        SendError::BadAnswer(format!("{err}; it starts with \"{}\"", quoted(&bytes)))
    })?;
    if reply.errcode == 0 {
        return Ok(());
    }
    classify(reply.errcode, quoted(reply.errmsg.as_bytes()))
}

/// The answer's body, and whether it is whole: past `MAX_ANSWER_BYTES`,
/// reading stops.
pub(crate) async fn read_answer(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), SendError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| transport_error(err, timeout))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            bytes.extend_from_slice(&chunk[..chunk.len().min(QUOTED_BYTES)]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

/// A reqwest failure without its URL (the URL carries the access token):
/// one that never connected sent nothing; a timeout or a failure after the
/// connection opened may have reached DingTalk.
pub(crate) fn transport_error(err: reqwest::Error, timeout: Duration) -> SendError {
    let connect = err.is_connect();
    if err.is_timeout() && !connect {
        return SendError::Timeout(timeout);
    }
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if connect {
        SendError::Unreachable(text)
    } else {
        SendError::Broken(text)
    }
}

/// Why the robots' HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up TLS for DingTalk: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client for DingTalk: {0}")]
    Build(#[from] reqwest::Error),
}

/// The one HTTP client every robot shares: pooled connections, rustls
/// (the system's roots, read at the first handshake), a connect timeout
/// (each request sets its own total timeout), no redirects followed, and
/// `proxy`'s proxies.
pub fn http_client(
    connect_timeout: Duration,
    proxy: &ProxyPlan,
) -> Result<reqwest::Client, ClientError> {
    Ok(proxy.apply(builder(connect_timeout)?)?.build()?)
}

fn builder(connect_timeout: Duration) -> Result<reqwest::ClientBuilder, ClientError> {
    // reqwest is built without a default crypto provider (ring builds far
    // faster than aws-lc). The robots' TLS carries its own (tls.rs); the
    // process-wide default is for any other rustls user that asks for it.
    // A second install is a no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        // All of the TLS set-up: reqwest's own TLS options (extra roots,
        // ALPN choices, key logging) no longer apply to this client.
        .tls_backend_preconfigured(super::tls::client_config()?)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("sink-dingtalk/", env!("CARGO_PKG_VERSION"))))
}

/// An answer's `Retry-After` in seconds, if it gives one.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    //! What a failed send is classed as, with real reqwest errors against
    //! loopback: reqwest does DNS, TCP and the TLS handshake in its
    //! connector, so each failure there is `is_connect()` and nothing was
    //! written; a timeout once the request is on the wire is not.

    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(2);

    async fn post_to(client: &reqwest::Client, url: &str) -> SendError {
        let webhook = Webhook::parse(url).expect("a webhook");
        post(
            client,
            &webhook,
            None,
            bytes::Bytes::from_static(b"{}"),
            TIMEOUT,
        )
        .await
        .expect_err("fails")
    }

    fn client() -> reqwest::Client {
        http_client(TIMEOUT, &ProxyPlan::default()).expect("a client")
    }

    /// A resolver that knows no name, as a DNS failure looks to reqwest.
    struct NoSuchHost;

    impl reqwest::dns::Resolve for NoSuchHost {
        fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let name = name.as_str().to_owned();
            Box::pin(
                async move { Err(std::io::Error::other(format!("no such host: {name}")).into()) },
            )
        }
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let err = post_to(
            &client(),
            &format!("http://127.0.0.1:{port}/robot/send?access_token=t"),
        )
        .await;
        assert!(matches!(err, SendError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_dns_failure_is_unreachable() {
        let client = builder(TIMEOUT)
            .expect("a builder")
            .dns_resolver(std::sync::Arc::new(NoSuchHost))
            .build()
            .expect("a client");
        let err = post_to(
            &client,
            "https://oapi.dingtalk.invalid/robot/send?access_token=t",
        )
        .await;
        assert!(matches!(err, SendError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_is_unreachable() {
        // A server that answers the ClientHello with plain HTTP.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut hello = [0_u8; 512];
            let _ = socket.read(&mut hello).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let err = post_to(
            &client(),
            &format!("https://127.0.0.1:{port}/robot/send?access_token=t"),
        )
        .await;
        assert!(matches!(err, SendError::Unreachable(_)), "{err:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_certificate_no_system_root_vouches_for_is_refused() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        // A TLS server with a self-signed certificate for 127.0.0.1.
        let cert = CertificateDer::from_pem_slice(include_bytes!("testdata/self-signed.crt"))
            .expect("the test certificate");
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/self-signed.key"))
            .expect("the test key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            acceptor.accept(socket).await.map(|_| ())
        });
        let err = post_to(
            &client(),
            &format!("https://127.0.0.1:{port}/robot/send?access_token=t"),
        )
        .await;
        let SendError::Unreachable(text) = &err else {
            panic!("not refused before sending: {err:?}");
        };
        // Refused for the certificate itself, not for want of roots to
        // check it by.
        assert!(text.contains("invalid peer certificate"), "{text}");
        let handshake = server.await.expect("the server ran");
        assert!(handshake.is_err(), "the client broke off the handshake");
    }

    #[tokio::test]
    async fn a_timeout_after_the_request_was_written_may_have_reached() {
        // A server that reads the whole request and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (read_tx, read_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !request.ends_with(b"{}") {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = read_tx.send(request.len());
            // Hold the connection open, answering nothing.
            let _ = socket.read(&mut chunk).await;
        });
        let client = client();
        let url = format!("http://127.0.0.1:{port}/robot/send?access_token=t");
        let webhook = Webhook::parse(&url).expect("a webhook");
        let err = post(
            &client,
            &webhook,
            None,
            bytes::Bytes::from_static(b"{}"),
            Duration::from_millis(300),
        )
        .await
        .expect_err("no answer");
        assert!(
            read_rx.await.expect("the server read it") > 0,
            "it was written"
        );
        assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
        match err.verdict() {
            connector_sdk::deliver::Verdict::Failed { reached, .. } => assert!(reached),
            other => panic!("{other:?}"),
        }
        server.abort();
    }
}
