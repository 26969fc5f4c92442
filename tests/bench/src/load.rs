//! The load generator: a fixed number of workers (the concurrency), each
//! with its own keep-alive HTTP/1.1 connection (or a clone of one shared
//! gRPC channel, as a Vanus trigger has), sending requests back to back.
//!
//! A run has two phases over the same connections: a warm-up (connections,
//! pools and allocators settle; not measured) and a fixed number of measured
//! requests. The target's CPU time is read between the phases and at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
use connector_sdk::testing::proto::cloud_event::{CloudEventAttributeValue, Data};
use connector_sdk::testing::proto::cloud_events_client::CloudEventsClient;
use connector_sdk::testing::proto::{BatchEvent, CloudEvent, CloudEventBatch};
use hyper::StatusCode;
use hyper::body::Bytes;
use tokio::sync::Barrier;
use tonic::transport::Channel;

use crate::http::{Connection, post};
use fake_dingtalk::process;

/// Events in one batch (HTTP batch mode and gRPC).
pub const BATCH: usize = 32;

/// The text every event carries: a typical alert line.
const CONTENT: &str = "disk usage on host db-17 is above 90% (91.4%), check /var/lib";

/// The length of [`CONTENT`], for the report.
pub const CONTENT_LEN: usize = CONTENT.len();

/// What is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Structured events to the bare relay.
    Baseline,
    /// HTTP structured mode, one event a request.
    Structured,
    /// HTTP binary mode, one event a request.
    Binary,
    /// HTTP batch mode, [`BATCH`] events a request.
    Batch,
    /// gRPC `CloudEvents/Send`, [`BATCH`] events a request.
    Grpc,
}

impl Scenario {
    /// The sink scenarios, in report order.
    pub const SINK: [Scenario; 4] = [
        Scenario::Structured,
        Scenario::Binary,
        Scenario::Batch,
        Scenario::Grpc,
    ];

    /// A short name for the console and the plot legend.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline relay",
            Scenario::Structured => "HTTP structured",
            Scenario::Binary => "HTTP binary",
            Scenario::Batch => "HTTP batch of 32",
            Scenario::Grpc => "gRPC batch of 32",
        }
    }

    /// Events carried by one request.
    pub fn events_per_request(self) -> u64 {
        match self {
            Scenario::Batch | Scenario::Grpc => BATCH as u64,
            _ => 1,
        }
    }
}

/// How much load.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests in flight at once (one worker each).
    pub concurrency: usize,
    /// Requests before measuring.
    pub warmup_requests: u64,
    /// Requests measured.
    pub requests: u64,
    /// The number of the first worker: event ids carry it, so concurrent
    /// runs against replicas sharing one ledger never repeat an id.
    pub first_worker: usize,
}

impl Plan {
    /// About `events` measured events (at least 4 requests per worker) and
    /// `warmup_events` of warm-up (at least one request per worker).
    pub fn new(scenario: Scenario, concurrency: usize, events: u64, warmup_events: u64) -> Self {
        let per_request = scenario.events_per_request();
        let workers = concurrency as u64;
        Self {
            concurrency,
            warmup_requests: warmup_events.div_ceil(per_request).max(workers),
            requests: events.div_ceil(per_request).max(4 * workers),
            first_worker: 0,
        }
    }
}

/// Where the load goes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// HTTP address (all scenarios but gRPC).
    pub http: SocketAddr,
    /// gRPC address.
    pub grpc: Option<SocketAddr>,
    /// The process serving it, whose CPU time is measured (none: not measured).
    pub pid: Option<u32>,
}

/// What the measured phase gave.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Requests sent.
    pub requests: u64,
    /// Events in them.
    pub events: u64,
    /// Requests not answered with success.
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Latency of each successful request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Target CPU time used during the phase, in clock ticks.
    pub cpu_ticks: u64,
}

impl Measured {
    /// Delivered events a second.
    pub fn events_per_sec(&self) -> f64 {
        let delivered = self
            .events
            .saturating_sub(self.errors * self.events_per_request());
        delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU seconds of the target per 10,000 events, its clock ticking
    /// `ticks_per_sec` times a second.
    pub fn cpu_per_10k(&self, ticks_per_sec: u64) -> f64 {
        let secs = self.cpu_ticks as f64 / ticks_per_sec.max(1) as f64;
        secs * 10_000.0 / self.events.max(1) as f64
    }

    fn events_per_request(&self) -> u64 {
        self.events / self.requests.max(1)
    }

    /// The nearest-rank percentile `q` (0..=1) of the latencies.
    pub fn percentile(&self, q: f64) -> Duration {
        let n = self.latencies_us.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Duration::from_micros(u64::from(self.latencies_us[rank - 1]))
    }
}

/// Counts down the requests of one phase, shared by the workers.
struct Budget(AtomicU64);

impl Budget {
    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[derive(Default)]
struct WorkerResult {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl WorkerResult {
    fn record(&mut self, started: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let us = started.elapsed().as_micros();
                self.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(err) => {
                self.errors += 1;
                self.first_error.get_or_insert(err);
            }
        }
    }
}

/// One request's worth of sending, for any transport.
enum Sender {
    Http(Connection),
    Grpc(CloudEventsClient<Channel>),
}

impl Sender {
    async fn send(&mut self, scenario: Scenario, worker: usize, seq: u64) -> Result<(), String> {
        match self {
            Sender::Http(connection) => {
                let status = connection
                    .send(http_request(scenario, worker, seq)?)
                    .await?;
                if status == StatusCode::OK {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}"))
                }
            }
            Sender::Grpc(client) => client
                .send(grpc_batch(worker, seq))
                .await
                .map(|_| ())
                .map_err(|status| format!("gRPC {:?}: {}", status.code(), status.message())),
        }
    }
}

/// Runs `plan` of `scenario` against `target`.
pub async fn run(scenario: Scenario, target: Target, plan: Plan) -> Result<Measured, String> {
    let channel = match scenario {
        Scenario::Grpc => {
            let addr = target.grpc.ok_or("the target has no gRPC port")?;
            let channel = Channel::from_shared(format!("http://{addr}"))
                .map_err(|err| err.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|err| format!("cannot connect gRPC to {addr}: {err}"))?;
            Some(channel)
        }
        _ => None,
    };
    let warmup = Arc::new(Budget(AtomicU64::new(plan.warmup_requests)));
    let measured = Arc::new(Budget(AtomicU64::new(plan.requests)));
    // Everyone (workers and this coordinator) meets after the warm-up, and
    // again once the coordinator has read the CPU counters.
    let warmed = Arc::new(Barrier::new(plan.concurrency + 1));
    let go = Arc::new(Barrier::new(plan.concurrency + 1));

    let mut workers = Vec::with_capacity(plan.concurrency);
    for worker in plan.first_worker..plan.first_worker + plan.concurrency {
        let mut sender = match &channel {
            Some(channel) => Sender::Grpc(CloudEventsClient::new(channel.clone())),
            None => Sender::Http(Connection::new(target.http)),
        };
        let (warmup, measured) = (Arc::clone(&warmup), Arc::clone(&measured));
        let (warmed, go) = (Arc::clone(&warmed), Arc::clone(&go));
        workers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut warm = WorkerResult::default();
            while warmup.take() {
                let started = Instant::now();
                let result = sender.send(scenario, worker, seq).await;
                warm.record(started, result);
                seq += 1;
            }
            warmed.wait().await;
            go.wait().await;
            let mut result = WorkerResult::default();
            while measured.take() {
                let started = Instant::now();
                let outcome = sender.send(scenario, worker, seq).await;
                result.record(started, outcome);
                seq += 1;
            }
            (warm, result)
        }));
    }

    warmed.wait().await;
    let cpu_before = cpu_ticks(target.pid)?;
    let started = Instant::now();
    go.wait().await;
    let mut all = WorkerResult::default();
    let mut warmup_errors = 0;
    for worker in workers {
        let (warm, result) = worker
            .await
            .map_err(|err| format!("a load worker failed: {err}"))?;
        warmup_errors += warm.errors;
        all.latencies_us.extend(result.latencies_us);
        all.errors += result.errors;
        if all.first_error.is_none() {
            all.first_error = result.first_error.or(warm.first_error);
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_ticks(target.pid)?;
    if warmup_errors == plan.warmup_requests {
        return Err(format!(
            "every warm-up request failed: {}",
            all.first_error.unwrap_or_default()
        ));
    }
    all.latencies_us.sort_unstable();
    Ok(Measured {
        requests: plan.requests,
        events: plan.requests * scenario.events_per_request(),
        errors: all.errors,
        first_error: all.first_error,
        elapsed,
        latencies_us: all.latencies_us,
        cpu_ticks: cpu_after.saturating_sub(cpu_before),
    })
}

fn cpu_ticks(pid: Option<u32>) -> Result<u64, String> {
    pid.map_or(Ok(0), |pid| {
        process::cpu_ticks(pid)
            .map_err(|err| format!("cannot read the CPU time of pid {pid}: {err}"))
    })
}

/// A structured-mode event as JSON.
fn structured_event(id: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"bench","type":"bench.alert","datacontenttype":"text/plain","data":"{CONTENT}"}}"#
    )
}

/// The HTTP request number `seq` of `worker` in `scenario`.
pub fn http_request(
    scenario: Scenario,
    worker: usize,
    seq: u64,
) -> Result<hyper::Request<crate::http::Body>, String> {
    let id = format!("w{worker}-{seq}");
    match scenario {
        Scenario::Baseline | Scenario::Structured | Scenario::Grpc => post(
            &[(
                "content-type",
                connector_sdk::testing::STRUCTURED_CONTENT_TYPE.into(),
            )],
            Bytes::from(structured_event(&id)),
        ),
        Scenario::Binary => post(
            &[
                ("ce-specversion", "1.0".into()),
                ("ce-id", id),
                ("ce-source", "bench".into()),
                ("ce-type", "bench.alert".into()),
                ("content-type", "text/plain".into()),
            ],
            Bytes::from_static(CONTENT.as_bytes()),
        ),
        Scenario::Batch => {
            let events: Vec<String> = (0..BATCH)
                .map(|i| structured_event(&format!("{id}-{i}")))
                .collect();
            post(
                &[(
                    "content-type",
                    connector_sdk::testing::BATCH_CONTENT_TYPE.to_owned(),
                )],
                Bytes::from(format!("[{}]", events.join(","))),
            )
        }
    }
}

/// The gRPC batch number `seq` of `worker`: [`BATCH`] text events.
pub fn grpc_batch(worker: usize, seq: u64) -> BatchEvent {
    let events = (0..BATCH)
        .map(|i| CloudEvent {
            id: format!("w{worker}-{seq}-{i}"),
            source: "bench".into(),
            spec_version: "1.0".into(),
            r#type: "bench.alert".into(),
            attributes: HashMap::from([(
                "datacontenttype".to_owned(),
                CloudEventAttributeValue {
                    attr: Some(Attr::CeString("text/plain".into())),
                },
            )]),
            data: Some(Data::TextData(CONTENT.into())),
        })
        .collect();
    BatchEvent {
        eventbus_name: "bench".into(),
        events: Some(CloudEventBatch { events }),
        eventbus_id: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_give_every_worker_work() {
        let plan = Plan::new(Scenario::Batch, 128, 6_000, 300);
        assert_eq!(plan.requests, 512);
        assert_eq!(plan.warmup_requests, 128);
        let plan = Plan::new(Scenario::Structured, 1, 6_000, 300);
        assert_eq!((plan.requests, plan.warmup_requests), (6_000, 300));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let measured = Measured {
            requests: 100,
            events: 100,
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(1),
            latencies_us: (1..=100).collect(),
            cpu_ticks: 0,
        };
        assert_eq!(measured.percentile(0.5), Duration::from_micros(50));
        assert_eq!(measured.percentile(0.99), Duration::from_micros(99));
        assert_eq!(measured.percentile(1.0), Duration::from_micros(100));
    }
}
