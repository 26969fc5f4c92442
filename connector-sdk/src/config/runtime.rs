//! The runtime's own keys, beside the sink's in the same file: the ports,
//! the limits on what a client may hold, the drain, the store, the ledger;
//! their defaults, and the checks a server needs them to pass.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::store::StoreConfig;

/// The runtime's own keys, beside the sink's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// HTTP port (`port`, or `CONNECTOR_PORT`). Default 8080.
    pub port: u16,
    /// gRPC port (`grpc_port`); gRPC is off when unset or 0.
    pub grpc_port: Option<u16>,
    /// Address to listen on. Default 0.0.0.0 (every interface).
    pub bind: IpAddr,
    /// Largest accepted request body (HTTP) or message (gRPC), in bytes.
    /// Default 4 MiB.
    pub max_body_bytes: usize,
    /// Requests handled at once, HTTP and gRPC together; more are answered
    /// 503 at once. Default 512.
    pub max_in_flight: usize,
    /// The memory budget, in bytes, HTTP and gRPC together: request bodies
    /// and what they decode into. A request is admitted only when its
    /// declared length still fits (else 503 before its body is read), and
    /// decoded only when its decoded form fits too. At least twice
    /// `max_body_bytes`. Default 16 MiB.
    pub max_buffered_bytes: usize,
    /// Open connections, HTTP and gRPC together. When all are taken, a new
    /// one evicts the connection longest without a request open, or is
    /// closed at once if every one has a request in flight. Default 1024.
    pub max_connections: usize,
    /// Largest HTTP/1 request head (request line and headers) and gRPC
    /// header list, in bytes; larger gets 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Time for a request's headers to arrive, in milliseconds, from the
    /// connection's opening (or the first byte of a later request on it).
    /// Default 5000.
    pub header_read_timeout_ms: u64,
    /// Time for a request's body to arrive once its headers are in, in
    /// milliseconds; a slower one gets 408. Default 10000.
    pub body_read_timeout_ms: u64,
    /// How long a connection may stay open with no request on it, in
    /// milliseconds (keep-alive), and how long an answer may wait for a
    /// client that does not read it. Default 30000.
    pub idle_timeout_ms: u64,
    /// Concurrent gRPC calls (HTTP/2 streams) on one connection. Default 128.
    pub grpc_max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight requests, in seconds. Default 10.
    pub shutdown_timeout_secs: u64,
    /// How long `/readyz` answers 503 before the servers stop accepting, in
    /// milliseconds, so a load balancer stops routing here first. Default 0.
    pub drain_delay_ms: u64,
    /// Where the connector keeps its state (`store.path`, ...).
    pub store: StoreConfig,
    /// How long the delivered-ledger remembers an accepted event, so that a
    /// redelivery of it is answered without reaching the sink. Default
    /// 86400 (a day: a Vanus trigger gives up after about 23 hours).
    pub ledger_ttl_secs: u64,
    /// Live reload (`reload.token`).
    pub reload: ReloadConfig,
}

/// Live reload's keys: who may ask for one over HTTP.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadConfig {
    /// With it, `POST /-/reload` is also taken from other than loopback
    /// when it carries `Authorization: Bearer <token>`; a secret (give it
    /// as `token_file` or `token_env`). Unset: loopback only.
    pub token: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            grpc_port: None,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_body_bytes: 4 * 1024 * 1024,
            max_in_flight: 512,
            max_buffered_bytes: 16 * 1024 * 1024,
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            grpc_max_concurrent_streams: 128,
            shutdown_timeout_secs: 10,
            drain_delay_ms: 0,
            store: StoreConfig::default(),
            ledger_ttl_secs: 86_400,
            reload: ReloadConfig::default(),
        }
    }
}

impl RuntimeConfig {
    /// The HTTP listen address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The gRPC listen address, when gRPC is on.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_port
            .filter(|port| *port != 0)
            .map(|port| SocketAddr::new(self.bind, port))
    }

    /// Problems with the runtime's own keys, each with its path: the
    /// ledger and the store first, then values no server can run with.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.ledger_ttl_secs == 0 {
            problems.push(ConfigProblem::new(
                "ledger_ttl_secs",
                "must be above 0 (a day, 86400, covers a Vanus trigger's retries)",
            ));
        }
        if self.store.max_records < 1_000 {
            problems.push(ConfigProblem::new(
                "store.max_records",
                "must be at least 1000: the delivered-ledger keeps a record per accepted event",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            problems.push(ConfigProblem::new(
                "store.path",
                "must name a directory the connector can write",
            ));
        }

        // Values no server can run with.
        let mut at_least = |key: &str, value: u64, min: u64, why: &str| {
            if value < min {
                problems.push(ConfigProblem::new(
                    key,
                    format!("must be at least {min}{why}"),
                ));
            }
        };
        at_least("max_body_bytes", self.max_body_bytes as u64, 1, "");
        at_least("max_in_flight", self.max_in_flight as u64, 1, "");
        at_least("max_connections", self.max_connections as u64, 1, "");
        at_least(
            "max_header_bytes",
            self.max_header_bytes as u64,
            MIN_HEADER_BYTES as u64,
            " (the smallest request buffer the HTTP server supports)",
        );
        at_least("header_read_timeout_ms", self.header_read_timeout_ms, 1, "");
        at_least("body_read_timeout_ms", self.body_read_timeout_ms, 1, "");
        at_least("idle_timeout_ms", self.idle_timeout_ms, 1, "");
        at_least(
            "grpc_max_concurrent_streams",
            u64::from(self.grpc_max_concurrent_streams),
            1,
            "",
        );
        if self.max_buffered_bytes / 2 < self.max_body_bytes {
            problems.push(ConfigProblem::new(
                "max_buffered_bytes",
                format!(
                    "must be at least twice max_body_bytes ({}): a body counts once as bytes and once decoded, or no request of the largest size could ever be admitted",
                    self.max_body_bytes
                ),
            ));
        }
        problems
    }

    /// How long the ledger remembers an accepted event.
    pub fn ledger_ttl(&self) -> Duration {
        Duration::from_secs(self.ledger_ttl_secs)
    }

    /// The bound on draining in-flight requests at shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// What a client may hold, and for how long.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
            max_buffered_bytes: self.max_buffered_bytes,
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            grpc_max_concurrent_streams: self.grpc_max_concurrent_streams,
        }
    }
}

impl std::fmt::Debug for ReloadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ReloadConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The smallest `max_header_bytes`: hyper's smallest read buffer.
pub(crate) const MIN_HEADER_BYTES: usize = 8192;

/// What one client may hold of the server, and for how long: the limits
/// that keep a hostile or broken client from taking it down or filling its
/// memory. [`RuntimeConfig::limits`] reads them from the config keys of
/// the same names; the defaults are the keys' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (HTTP) or message (gRPC); larger gets 413 /
    /// `InvalidArgument`.
    pub max_body_bytes: usize,
    /// Requests handled at once; more get 503 / `Unavailable`.
    pub max_in_flight: usize,
    /// The memory budget: bytes of request bodies and what they decode
    /// into; a request that does not fit gets 503 / `Unavailable` before
    /// its body is read (or decoded).
    pub max_buffered_bytes: usize,
    /// Open connections; when all are taken, a new one evicts the one
    /// longest without a request open, or is closed at once.
    pub max_connections: usize,
    /// Largest request head (HTTP/1) or header list (gRPC).
    pub max_header_bytes: usize,
    /// Time for a request's headers to arrive.
    pub header_read_timeout: Duration,
    /// Time for a request's body to arrive; slower gets 408.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request, or an answer may
    /// wait for a client that does not read it.
    pub idle_timeout: Duration,
    /// Concurrent gRPC calls on one connection.
    pub grpc_max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        RuntimeConfig::default().limits()
    }
}
