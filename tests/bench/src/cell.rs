//! One throughput cell: a scenario at one concurrency, `--repeat` runs,
//! each on a fresh process (the relay or the sink), the median shown.

use crate::format::{mib, ms, thousands};
use crate::load::{self, Measured, Plan, Scenario};
use crate::procs::{self, SinkSpec};
use crate::run::{Cell, Start};
use crate::{Args, CELL_TIMEOUT, Context};

/// The process a cell measures.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    /// The baseline relay.
    Relay,
    /// The sink, with this `LOG_LEVEL`.
    Sink(&'static str),
}

/// Measures one cell: `args.repeat` runs, each on a fresh process.
pub async fn cell(
    scenario: Scenario,
    concurrency: usize,
    process: Process,
    ctx: &Context,
    args: &Args,
) -> Result<Cell, String> {
    let plan = Plan::new(scenario, concurrency, args.events, args.warmup);
    let mut runs = Vec::new();
    let mut starts = Vec::new();
    let mut peak_rss_kib = 0;
    let before = ctx.blackhole.seen();
    for _ in 0..args.repeat.max(1) {
        let running = match process {
            Process::Relay => procs::start_relay(&ctx.work, &ctx.webhook).await?,
            Process::Sink(log_level) => {
                let spec = SinkSpec {
                    binary: &ctx.sink,
                    dir: &ctx.work,
                    webhook_url: &ctx.webhook,
                    log_level,
                    paced: false,
                    extra_yaml: procs::SINGLE_SENDS,
                };
                procs::start_sink(&spec).await?
            }
        };
        starts.push(Start {
            ready: running.ready,
            idle_rss_kib: running.idle_rss_kib,
        });
        let measured =
            tokio::time::timeout(CELL_TIMEOUT, load::run(scenario, running.target, plan))
                .await
                .map_err(|_| {
                    format!(
                        "{} at {concurrency} took over {CELL_TIMEOUT:?}",
                        scenario.name()
                    )
                })?
                .map_err(|err| {
                    format!(
                        "{} at {concurrency}: {err}\nits log ends with:\n{}",
                        scenario.name(),
                        running.log_tail()
                    )
                })?;
        peak_rss_kib = peak_rss_kib.max(running.peak_rss_kib()?);
        runs.push(measured);
        // `running` drops here: the process is killed before the next start.
    }
    let failed_requests = runs.iter().map(|m| m.errors).sum();
    let first_error = runs.iter().find_map(|m| m.first_error.clone());
    runs.sort_by(|a, b| a.events_per_sec().total_cmp(&b.events_per_sec()));
    let spread: Vec<String> = runs.iter().map(|m| thousands(m.events_per_sec())).collect();
    let range = (
        runs.first().map_or(0.0, Measured::events_per_sec),
        runs.last().map_or(0.0, Measured::events_per_sec),
    );
    let measured = runs.swap_remove(runs.len() / 2);
    let cell = Cell {
        scenario,
        concurrency,
        measured,
        peak_rss_kib,
        failed_requests,
        first_error,
        range,
        upstream_posts: ctx.blackhole.seen() - before,
        expected_posts: (plan.warmup_requests + plan.requests)
            * scenario.events_per_request()
            * starts.len() as u64,
        starts,
    };
    println!(
        "  {:<17} {:>4} in flight: {:>7} events/s  p50 {:>9}  p99 {:>9}  peak RSS {:>9}  (runs: {}){}",
        scenario.name(),
        concurrency,
        thousands(cell.measured.events_per_sec()),
        ms(cell.measured.percentile(0.5)),
        ms(cell.measured.percentile(0.99)),
        mib(cell.peak_rss_kib),
        spread.join(" / "),
        if cell.failed_requests > 0 {
            format!("  {} FAILED", cell.failed_requests)
        } else {
            String::new()
        }
    );
    Ok(cell)
}
