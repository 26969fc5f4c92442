//! The replicas row: what sharing state through Redis costs.
//!
//! One `redis-server` and three sinks on this machine, sharing it (pacing
//! off, against the blackhole, as in the scenario tables), fed HTTP
//! structured events at 16 in flight in all, spread over the three; then one
//! sink on that Redis alone at 16 in flight, beside one sink with the
//! embedded store (the scenario tables' cell, same run). Redis's own count
//! of commands gives the round trips per event.
//!
//! Bounded: fixed counts, one run each, and [`TIMEOUT`] on the whole row
//! (the caller's).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use connector_sdk::testing::RedisServer;

use crate::load::{self, Measured, Plan, Scenario};
use crate::procs::{self, SinkSpec};

/// Requests in flight, in all.
pub const IN_FLIGHT: usize = 16;
/// Measured events per run.
const EVENTS: u64 = 20_000;
/// The longest the whole row may take (it takes about 10 s).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// What the replicas row measured.
#[derive(Debug, Clone)]
pub struct Replicas {
    /// Three sinks sharing Redis, [`IN_FLIGHT`] in all: events/s summed,
    /// and the slowest replica's p50 and p99.
    pub three: (f64, Duration, Duration),
    /// One sink on Redis, [`IN_FLIGHT`] in flight.
    pub one: Measured,
    /// Redis commands per event, for the one sink.
    pub commands_per_event: f64,
    /// Peak RSS of the redis-server, KiB.
    pub redis_peak_rss_kib: u64,
}

/// Runs both parts.
pub async fn measure(binary: &Path, work: &Path, blackhole_url: &str) -> Result<Replicas, String> {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .map_err(|err| format!("cannot start redis-server: {err}"))?;
    let yaml = format!(
        "{}store:\n  redis:\n    url: \"{}\"\n",
        procs::SINGLE_SENDS,
        redis.url()
    );
    let dirs: Vec<_> = (0..3).map(|n| work.join(format!("replica-{n}"))).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let spec = |dir| SinkSpec {
        binary,
        dir,
        webhook_url: blackhole_url,
        log_level: "warn",
        paced: false,
        extra_yaml: &yaml,
    };

    let mut running = Vec::new();
    for dir in &dirs {
        running.push(procs::start_sink(&spec(dir)).await?);
    }
    let shares = [6, 5, 5];
    let runs = running
        .iter()
        .zip(shares)
        .enumerate()
        .map(|(n, (sink, share))| {
            let mut plan = Plan::new(
                Scenario::Structured,
                share,
                EVENTS * share as u64 / IN_FLIGHT as u64,
                300,
            );
            plan.first_worker = n * 1_000;
            load::run(Scenario::Structured, sink.target, plan)
        });
    let measured: Vec<Measured> = futures_util::future::try_join_all(runs).await?;
    let three = (
        measured.iter().map(Measured::events_per_sec).sum(),
        measured
            .iter()
            .map(|m| m.percentile(0.5))
            .max()
            .unwrap_or_default(),
        measured
            .iter()
            .map(|m| m.percentile(0.99))
            .max()
            .unwrap_or_default(),
    );
    drop(running);

    let sink = procs::start_sink(&spec(&dirs[0])).await?;
    let before = commands_processed(redis.port())?;
    let mut plan = Plan::new(Scenario::Structured, IN_FLIGHT, EVENTS, 300);
    plan.first_worker = 10_000;
    let one = load::run(Scenario::Structured, sink.target, plan).await?;
    let after = commands_processed(redis.port())?;
    drop(sink);
    let events = (plan.warmup_requests + plan.requests) as f64;
    let redis_peak_rss_kib = redis_peak_rss(redis.port())?;
    Ok(Replicas {
        three,
        one,
        commands_per_event: after.saturating_sub(before) as f64 / events,
        redis_peak_rss_kib,
    })
}

/// Redis's `INFO` line `name:value` as a number.
fn info_field(port: u16, section: &str, name: &str) -> Result<u64, String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|err| format!("cannot reach redis-server: {err}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .map_err(|err| format!("cannot ask redis-server: {err}"))?;
    let mut answer = vec![0_u8; 64 * 1024];
    let mut read = 0;
    // The answer is one bulk string; read until its lines are all in.
    while read < answer.len() {
        match stream.read(&mut answer[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => break,
        }
        if String::from_utf8_lossy(&answer[..read]).contains(&format!("{name}:"))
            && answer[..read].ends_with(b"\r\n\r\n")
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer[..read]);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("redis-server's INFO has no {name}"))
}

fn commands_processed(port: u16) -> Result<u64, String> {
    info_field(port, "stats", "total_commands_processed")
}

fn redis_peak_rss(port: u16) -> Result<u64, String> {
    info_field(port, "memory", "used_memory_peak").map(|bytes| bytes / 1024)
}

/// The replicas section of BENCHMARKS.md, beside the embedded store's cell.
pub fn markdown(md: &mut String, replicas: &Replicas, embedded: Option<&Measured>) {
    use crate::format::{mib, ms, thousands};
    use std::fmt::Write;
    let _ = writeln!(md, "## Replicas: the store in Redis\n");
    let _ = writeln!(
        md,
        "One `redis-server` and the sinks on this machine, pacing off, against the blackhole: three \
         sinks sharing Redis, fed HTTP structured events at {IN_FLIGHT} in flight in all (6 + 5 + 5); \
         then one sink on that Redis alone, beside one with the embedded store (the HTTP structured \
         cell at {IN_FLIGHT} in flight above). With Redis every event takes the ledger's claim and \
         record, and the robot's hold check, as round trips to Redis; the embedded store does the \
         same in process. Five processes share 2 cores here: three sinks are not meant to be \
         faster than one on this machine, only correct together.\n"
    );
    let _ = writeln!(md, "| setup | events/s | p50 | p99 |\n|:--|--:|--:|--:|");
    let (rate, p50, p99) = replicas.three;
    let _ = writeln!(
        md,
        "| three sinks, one Redis (p50/p99 of the slowest) | {} | {} | {} |",
        thousands(rate),
        ms(p50),
        ms(p99)
    );
    let one = &replicas.one;
    let _ = writeln!(
        md,
        "| one sink, Redis | {} | {} | {} |",
        thousands(one.events_per_sec()),
        ms(one.percentile(0.5)),
        ms(one.percentile(0.99))
    );
    let added = embedded.map(|embedded| {
        let _ = writeln!(
            md,
            "| one sink, embedded store | {} | {} | {} |",
            thousands(embedded.events_per_sec()),
            ms(embedded.percentile(0.5)),
            ms(embedded.percentile(0.99))
        );
        one.percentile(0.5).saturating_sub(embedded.percentile(0.5))
    });
    let _ = writeln!(
        md,
        "\nRedis round trips: {:.1} commands per event{}. Redis's peak memory in the run: {}.\n",
        replicas.commands_per_event,
        added.map_or(String::new(), |added| format!(
            "; they add {} to the median answer at {IN_FLIGHT} in flight",
            ms(added)
        )),
        mib(replicas.redis_peak_rss_kib)
    );
}
