//! A blackhole DingTalk: answers every request at once with DingTalk's
//! success body, `{"errcode":0,"errmsg":"ok"}`, after reading the request
//! body, and counts the requests so the run can check every event got out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::BodyExt;
use hyper::StatusCode;
use tokio::net::TcpListener;

use crate::http::{response, serve};

/// DingTalk's answer to a delivered message.
pub const ANSWER: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

/// A running blackhole.
pub struct Blackhole {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    seen: Arc<AtomicU64>,
}

impl Blackhole {
    /// Starts one on a free loopback port, on the current runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        tokio::spawn(serve(listener, move |request| {
            let counter = Arc::clone(&counter);
            async move {
                // Read the body, as DingTalk does; its content does not matter.
                let _ = request.into_body().collect().await;
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(response(StatusCode::OK, "application/json", ANSWER))
            }
        }));
        Ok(Self { addr, seen })
    }

    /// The webhook URL a robot should post to.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/robot/send?access_token=bench", self.addr)
    }

    /// Requests answered so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}
