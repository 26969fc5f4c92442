//! Turns the measurements into `BENCHMARKS.md`: the machine, the footprint,
//! one table per scenario, the logging cost, and where the project stands
//! against its targets. Hand-written notes below [`KEEP_MARKER`] in an
//! existing `BENCHMARKS.md` (the profiling findings) are kept across runs.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::attack::Attacked;
use crate::format::{mib, ms, thousands};
use crate::load::Scenario;
use crate::run::{Cell, Run, Start};

/// Everything after this line in `BENCHMARKS.md` is written by hand and kept.
pub const KEEP_MARKER: &str =
    "<!-- bench: everything below this line is written by hand and kept across runs -->";

/// The generated part of `BENCHMARKS.md`, with `kept` (hand-written notes) after it.
pub fn markdown(run: &Run, kept: Option<&str>) -> String {
    let mut md = String::new();
    let m = &run.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` (the `bench` program, `tests/bench/src/main.rs`) on {} UTC, \
         code at `{}`. The run took {:.0} s (builds excluded).\n",
        utc_date(run.started),
        run.commit,
        run.duration.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "**Machine:** {} logical cores ({}), {:.1} GiB memory, Linux {}, {}. The load generator, \
         the blackhole DingTalk and the process under test all share these cores, as they \
         would not in production: absolute numbers are a floor, the ratios to the baseline \
         are the point.\n",
        m.cores,
        m.cpu,
        m.memory_kib as f64 / 1024.0 / 1024.0,
        m.kernel,
        m.rustc
    );
    let _ = writeln!(
        md,
        "![Throughput and p99 latency against requests in flight](docs/bench.svg)\n"
    );
    method(&mut md, run);
    footprint(&mut md, run);

    let _ = writeln!(md, "## Throughput and latency\n");
    let _ = writeln!(
        md,
        "Latency is per request, as the sender sees it (for the batch scenarios one request \
         carries 32 events). \"vs baseline\" is events/s over the bare relay's events/s at the \
         same concurrency: each event costs one POST out, and the relay shows what one POST in \
         plus one POST out costs here. Peak RSS is the process's `VmHWM` (warm-up included); \
         CPU is user + system time of the process during the measured phase.\n"
    );
    for scenario in std::iter::once(Scenario::Baseline).chain(Scenario::SINK) {
        scenario_table(&mut md, run, scenario);
    }
    logging(&mut md, run);
    if let Some(cost) = &run.templates {
        crate::templates::markdown(&mut md, cost);
    }
    if let Some(storm) = &run.storm {
        let relay = run
            .cell(Scenario::Baseline, crate::storm::IN_FLIGHT)
            .map(|c| c.measured.events_per_sec());
        crate::storm::markdown(&mut md, storm, relay);
    }
    if let Some(digests) = &run.digests {
        crate::digests::markdown(&mut md, digests);
    }
    if let Some(ledger) = &run.ledger {
        crate::ledger::markdown(&mut md, ledger);
    }
    if let Some(pool) = &run.pool {
        crate::pool::markdown(&mut md, pool, run.storm.as_ref());
    }
    if let Some(replicas) = &run.replicas {
        let embedded = run
            .cell(Scenario::Structured, crate::replicas::IN_FLIGHT)
            .map(|c| &c.measured);
        crate::replicas::markdown(&mut md, replicas, embedded);
    }
    attacks(&mut md, run);
    targets(&mut md, run);
    let _ = writeln!(md, "{KEEP_MARKER}");
    if let Some(kept) = kept {
        md.push_str(kept);
    } else {
        let _ = writeln!(
            md,
            "\n## Profiling notes\n\n(Write findings here; `make bench` keeps this part.)"
        );
    }
    md
}

fn method(md: &mut String, run: &Run) {
    let levels: Vec<String> = run.levels.iter().map(ToString::to_string).collect();
    let _ = writeln!(md, "## How it is measured\n");
    let _ = writeln!(
        md,
        "- **Blackhole DingTalk**: plain hyper, in the bench process; reads each request and \
         answers `{{\"errcode\":0,\"errmsg\":\"ok\"}}` at once. It counts what it gets: every \
         event of every cell reached it (checked each run).\n\
         - **Sink**: the release `sink-dingtalk`, one webhook pointing at the blackhole with \
         `paced: false` (a per-webhook setting that logs a warning at start; pacing stays on by \
         default), `LOG_LEVEL=warn`, HTTP and gRPC on loopback.\n\
         - **Baseline**: a bare hyper relay (`bench relay`, its own process, same tokio runtime \
         as the sink) that forwards each POST body to the blackhole through a pooled client \
         and answers 200: one in, one out, nothing else.\n\
         - **Load**: in the bench process, {levels} requests in flight, each worker on its own \
         keep-alive HTTP/1.1 connection (gRPC: one shared HTTP/2 channel, as a Vanus trigger \
         has). Per cell: a warm-up of about {} events (at least one request per worker), then \
         about {} measured events (at least four requests per worker). Text events of {} bytes \
         of content, unique ids.\n\
         - **Fresh process per run, {} runs per cell**: every run of every (scenario, \
         concurrency) cell starts its own sink (or relay), so `VmHWM` is that run's peak RSS and \
         every start is a sample of the exec-to-ready time and of the idle RSS. A cell shows \
         the run with the median events/s (its latencies and CPU too) and the highest peak RSS.",
        run.warmup,
        run.events,
        crate::load::CONTENT_LEN,
        run.repeat,
        levels = levels.join(", ")
    );
    let _ = writeln!(md);
}

fn footprint(md: &mut String, run: &Run) {
    let starts: Vec<Start> = run.sink_starts().collect();
    let mut ready: Vec<Duration> = starts.iter().map(|s| s.ready).collect();
    ready.sort_unstable();
    let mut idle: Vec<u64> = starts.iter().map(|s| s.idle_rss_kib).collect();
    idle.sort_unstable();
    let _ = writeln!(md, "## Start-up and footprint\n");
    let _ = writeln!(md, "| measure | value | target |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| release binary size (`target/release/sink-dingtalk`, stripped) | {} | |",
        mib(run.binary_size / 1024)
    );
    let _ = writeln!(
        md,
        "| loads glibc's `libm.so.6` ([footprint](docs/development.md#footprint)) | {} | no |",
        if run.loads_libm { "**yes**" } else { "no" }
    );
    if let (Some(first), Some(last)) = (ready.first(), ready.last()) {
        let _ = writeln!(
            md,
            "| exec to ready (`/readyz` answers 200), median of {} starts (min, max) | {} ({}, {}) | ≤ 100 ms |",
            ready.len(),
            ms(ready[ready.len() / 2]),
            ms(*first),
            ms(*last)
        );
    }
    if let (Some(first), Some(last)) = (idle.first(), idle.last()) {
        let _ = writeln!(
            md,
            "| idle RSS 250 ms after ready, median of {} starts (min, max) | {} ({}, {}) | ≤ 15 MiB |",
            idle.len(),
            mib(idle[idle.len() / 2]),
            mib(*first),
            mib(*last)
        );
    }
    let _ = writeln!(md);
}

fn scenario_table(md: &mut String, run: &Run, scenario: Scenario) {
    let cells: Vec<&Cell> = run
        .cells
        .iter()
        .filter(|c| c.scenario == scenario)
        .collect();
    if cells.is_empty() {
        return;
    }
    let _ = writeln!(md, "### {}\n", title(scenario));
    let _ = writeln!(
        md,
        "| in flight | events/s | runs' range | vs baseline | p50 | p99 | max | peak RSS | CPU s / 10k events | failed requests (all runs) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for cell in cells {
        let ratio = run
            .ratio(cell)
            .map_or_else(|| "–".to_owned(), |r| format!("{:.0}%", r * 100.0));
        let m = &cell.measured;
        let _ = writeln!(
            md,
            "| {} | {} | {}–{} | {} | {} | {} | {} | {} | {:.2} | {} |",
            cell.concurrency,
            thousands(m.events_per_sec()),
            thousands(cell.range.0),
            thousands(cell.range.1),
            ratio,
            ms(m.percentile(0.5)),
            ms(m.percentile(0.99)),
            ms(m.percentile(1.0)),
            mib(cell.peak_rss_kib),
            run.cpu_per_10k(cell),
            cell.failed_requests
        );
    }
    let _ = writeln!(md);
    for cell in run.cells.iter().filter(|c| c.scenario == scenario) {
        if let Some(err) = &cell.first_error {
            let _ = writeln!(
                md,
                "At {} in flight, {} requests failed over all runs; the first: `{err}`\n",
                cell.concurrency, cell.failed_requests
            );
        }
        if cell.failed_requests == 0 && cell.upstream_posts != cell.expected_posts {
            let _ = writeln!(
                md,
                "At {} in flight the blackhole got {} POSTs for {} events.\n",
                cell.concurrency, cell.upstream_posts, cell.expected_posts
            );
        }
    }
}

fn title(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Baseline => "Baseline: bare hyper relay (one POST in, one POST out)",
        Scenario::Structured => "HTTP structured mode, one event a request",
        Scenario::Binary => "HTTP binary mode, one event a request",
        Scenario::Batch => "HTTP batch mode, 32 events a request",
        Scenario::Grpc => "gRPC `CloudEvents/Send`, 32 events a request",
    }
}

fn logging(md: &mut String, run: &Run) {
    let Some(info) = &run.info_cell else { return };
    let Some(warn) = run.cell(Scenario::Structured, info.concurrency) else {
        return;
    };
    let _ = writeln!(md, "### Logging: `LOG_LEVEL=info` against `warn`\n");
    let _ = writeln!(
        md,
        "HTTP structured at {} in flight with one `event handled` line per event (stderr to a \
         file): {} events/s against {} with `warn` ({:+.0}%), p99 {} against {}, CPU {:.2} s \
         against {:.2} s per 10k events.\n",
        info.concurrency,
        thousands(info.measured.events_per_sec()),
        thousands(warn.measured.events_per_sec()),
        (info.measured.events_per_sec() / warn.measured.events_per_sec() - 1.0) * 100.0,
        ms(info.measured.percentile(0.99)),
        ms(warn.measured.percentile(0.99)),
        run.cpu_per_10k(info),
        run.cpu_per_10k(warn)
    );
}

fn targets(md: &mut String, run: &Run) {
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | where we stand | met |\n|---|---|---|");
    let mut row = |target: &str, stand: String, met: Option<bool>| {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {target} | {stand} | {met} |");
    };

    let mut stand = Vec::new();
    let mut met = None;
    for scenario in [Scenario::Structured, Scenario::Binary] {
        let ratios: Vec<String> = run
            .cells
            .iter()
            .filter(|c| c.scenario == scenario)
            .filter_map(|c| {
                let r = run.ratio(c)?;
                met = Some(met.unwrap_or(true) && r >= 0.9);
                Some(format!("{:.0}% at {}", r * 100.0, c.concurrency))
            })
            .collect();
        stand.push(format!("{}: {}", short(scenario), ratios.join(", ")));
    }
    row(
        "HTTP relay throughput ≥ 90% of the bare baseline at every concurrency",
        stand.join("; "),
        met,
    );

    let mut stand = Vec::new();
    let mut met = None;
    for &level in &run.levels {
        if let (Some(grpc), Some(single)) = (
            run.cell(Scenario::Grpc, level),
            run.cell(Scenario::Structured, level),
        ) {
            let times = grpc.measured.events_per_sec() / single.measured.events_per_sec();
            met = Some(met.unwrap_or(true) && times >= 5.0);
            stand.push(format!("{times:.1}× at {level}"));
        }
    }
    row(
        "gRPC batch events/s ≥ 5× HTTP single-event events/s",
        stand.join(", "),
        met,
    );

    let mut stand = Vec::new();
    let mut met = None;
    if let Some(base) = run.cell(Scenario::Baseline, 16) {
        for scenario in [Scenario::Structured, Scenario::Binary] {
            if let Some(cell) = run.cell(scenario, 16) {
                let base_p99 = base.measured.percentile(0.99).as_secs_f64();
                let added = cell.measured.percentile(0.99).as_secs_f64() - base_p99;
                met = Some(met.unwrap_or(true) && added <= 0.001);
                stand.push(format!("{}: {:+.2} ms", short(scenario), added * 1000.0));
            }
        }
    }
    row(
        "p99 added latency over the baseline ≤ 1 ms at 16 in flight",
        stand.join("; "),
        met,
    );

    let idle = run.sink_starts().map(|s| s.idle_rss_kib).max();
    row(
        "idle RSS ≤ 15 MiB",
        idle.map_or_else(String::new, |kib| format!("{} at most", mib(kib))),
        idle.map(|kib| kib <= 15 * 1024),
    );

    let at_128: Vec<&Cell> = run.sink_cells().filter(|c| c.concurrency == 128).collect();
    let stand: Vec<String> = at_128
        .iter()
        .map(|c| format!("{}: {}", short(c.scenario), mib(c.peak_rss_kib)))
        .collect();
    row(
        "peak RSS ≤ 40 MiB at 128 in flight",
        stand.join("; "),
        (!at_128.is_empty()).then(|| at_128.iter().all(|c| c.peak_rss_kib <= 40 * 1024)),
    );

    let worst = run.attacks.iter().map(|a| a.peak_rss_kib).max();
    row(
        &format!("peak RSS ≤ {RSS_BOUND_MIB} MiB under every attack, default limits"),
        worst.map_or_else(String::new, |kib| format!("{} at most", mib(kib))),
        worst.map(|kib| kib <= RSS_BOUND_MIB * 1024),
    );

    let ready = run.sink_starts().map(|s| s.ready).max();
    row(
        "ready ≤ 100 ms after exec",
        ready.map_or_else(String::new, |d| format!("{} at most", ms(d))),
        ready.map(|d| d <= Duration::from_millis(100)),
    );
    let _ = writeln!(md);
}

/// The resident memory the sink stays under, with its default limits,
/// whatever clients do (the README states it).
pub const RSS_BOUND_MIB: u64 = 64;

fn attacks(md: &mut String, run: &Run) {
    if run.attacks.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Under attack
"
    );
    let _ = writeln!(
        md,
        "Hostile and broken clients on loopback, each attack against a fresh sink with its \
         default limits (`max_connections` 1024, `max_in_flight` 512, `max_buffered_bytes` \
         16 MiB, `max_body_bytes` 4 MiB, `max_header_bytes` 16 KiB, header / body / idle \
         timeouts 5 s / 10 s / 30 s), held for 12 s at most. Peak RSS is the sink's `VmHWM`; \
         \"after\" is its RSS 1 s after the attackers hung up. Meanwhile a probe asks \
         `/healthz` and POSTs one small event every 100 ms, each on a fresh connection (2 s \
         to answer): a POST refused with 503 is the sink telling a sender to retry, which is \
         what it should do while it is full.\n"
    );
    md.push_str(&attack_table(&run.attacks));
    let _ = writeln!(md);
}

/// The attack table, on its own (also printed by `bench attacks`).
pub fn attack_table(attacks: &[Attacked]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| attack | peak RSS | RSS after | `/healthz` answered | `/healthz` p50 / max | small POSTs: 200 / 503 / no answer |\n|---|---:|---:|---:|---:|---:|"
    );
    for a in attacks {
        let latency = match (a.health.p50(), a.health.max()) {
            (Some(p50), Some(max)) => format!("{} / {}", ms(p50), ms(max)),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} of {} | {} | {} / {} / {} |",
            a.name,
            mib(a.peak_rss_kib),
            mib(a.after_rss_kib),
            a.health.ok,
            a.health.asked,
            latency,
            a.posts.ok,
            a.posts.refused,
            a.posts.unanswered()
        );
    }
    md
}

fn short(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Baseline => "baseline",
        Scenario::Structured => "structured",
        Scenario::Binary => "binary",
        Scenario::Batch => "batch",
        Scenario::Grpc => "gRPC",
    }
}

/// `2026-11-03 14:05`, UTC.
fn utc_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn dates_are_civil() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_date(t), "2023-11-14 22:13");
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01 00:00");
    }
}
