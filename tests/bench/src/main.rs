//! `bench`: the DingTalk sink's benchmark, run by `make bench`.
//!
//! On this one machine it starts a blackhole DingTalk, the release
//! `sink-dingtalk` configured to it (pacing off for its one webhook) and a
//! bare hyper relay as the baseline, drives each with a fixed number of
//! requests at a few concurrency levels, and writes `BENCHMARKS.md` and
//! `docs/bench.svg` at the repository root. See `report.rs` for what each
//! figure means.
//!
//! ```text
//! cargo build --release -p sink-dingtalk      # alone: see below
//! cargo build --release -p bench
//! target/release/bench                     # the full run (about a minute)
//! target/release/bench --out /tmp/b        # write the report elsewhere
//! ```
//!
//! `bench ledger` runs only the ledger row (an empty ledger, then one filled
//! with 1,000,000 records by a bench-only path) and prints it.
//!
//! `bench attacks` runs only the hostile-client attacks (each on a fresh
//! sink, about 15 s each) and prints their table; `--only NAME` picks one.
//!
//! For profiling, the pieces run alone: `bench blackhole` (prints its webhook
//! URL), `bench templates` (the in-process template costs), `bench relay
//! --listen ADDR --upstream URL`, and
//! `bench load --scenario structured --http ADDR [--grpc ADDR] [--pid PID]`
//! against a sink started by hand (under `perf`, `heaptrack`, `valgrind`...).
//! `BENCHMARKS.md` says how its profiling notes were made.
//!
//! The two builds are separate cargo calls on purpose: built together, cargo
//! unifies features and compiles connector-sdk with `testing` (which the tests
//! need) into `target/release/sink-dingtalk`, a binary different from the one
//! `make build` and the Dockerfile produce.

mod alone;
mod attack;
mod blackhole;
mod cell;
mod digests;
mod format;
mod http;
mod ledger;
mod load;
mod plot;
mod pool;
mod procs;
mod relay;
mod replicas;
mod report;
mod run;
mod storm;
mod templates;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use crate::attack::{Attack, Attacked};
use crate::blackhole::Blackhole;
use crate::cell::{Process, cell};
use crate::load::{Scenario, Target};
use crate::procs::SinkSpec;
use crate::run::{Machine, Run};
use clap::{Parser, Subcommand};

/// No cell may take longer than this: the run always ends by itself.
const CELL_TIMEOUT: Duration = Duration::from_secs(120);

/// Benchmark the DingTalk sink against a bare relay and write BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "bench", about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where BENCHMARKS.md and docs/bench.svg go (default: the repository root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The sink binary (default: sink-dingtalk beside this program).
    #[arg(long)]
    sink: Option<PathBuf>,
    /// Measured events per cell (more when a cell needs four requests per worker).
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Warm-up events per cell (more when a cell needs one request per worker).
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Requests in flight, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    levels: Vec<usize>,
    /// Runs per cell, each on a fresh process; the median by events/s is shown.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Leave out the attacks (about two minutes).
    #[arg(long)]
    skip_attacks: bool,
    /// Only the throughput cells (baseline and sink scenarios, the logging
    /// cell): no templates, storm, pool, replicas or attacks. For comparing
    /// two sink binaries (`--sink`), an older one included.
    #[arg(long)]
    throughput_only: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the baseline relay alone (the full run starts it by itself).
    Relay {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Where to forward each POST body.
        #[arg(long)]
        upstream: hyper::Uri,
    },
    /// Run a blackhole DingTalk alone, until killed; prints its webhook URL.
    Blackhole,
    /// Measure the template rendering cost per event, in process, and print it.
    Templates,
    /// Run the storm row alone (outbox appends, 1,000 alerts) and print it.
    Storm,
    /// Run the digests row alone (a burst of 30, 1,000 of five kinds) and print it.
    Digests,
    /// Run the replicas row alone (three sinks and one Redis) and print it.
    Replicas,
    /// Run the ledger row alone (empty, then filled with 1,000,000 records) and print it.
    Ledger,
    /// Fill the store in `--dir` with the full ledger's 1,000,000 records (the
    /// ledger row's bench-only path), for profiling a sink on it.
    FillLedger {
        /// The store directory (`store.path`).
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Run the pool row alone (one chat group on three robots, 1,000 alerts) and print it.
    Pool,
    /// Run the hostile-client attacks only, and print their table.
    Attacks {
        /// Only this attack.
        #[arg(long, value_enum)]
        only: Option<Attack>,
    },
    /// Drive one scenario against a running sink or relay, and print the figures.
    Load {
        /// What to send.
        #[arg(long, value_enum)]
        scenario: Scenario,
        /// The HTTP address.
        #[arg(long)]
        http: SocketAddr,
        /// The gRPC address (for --scenario grpc).
        #[arg(long)]
        grpc: Option<SocketAddr>,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Measured events.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// The target's pid, to report its CPU time.
        #[arg(long)]
        pid: Option<u32>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The same runtime the connector SDK builds, so the relay is comparable.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts (threads and epoll are available)");
    let result = runtime.block_on(async {
        match args.command {
            Some(Command::Relay { listen, upstream }) => relay::run(listen, upstream)
                .await
                .map_err(|err| format!("relay on {listen}: {err}")),
            Some(Command::Blackhole) => alone::blackhole_alone().await,
            Some(Command::Templates) => alone::templates_alone(),
            Some(Command::Storm) => alone::storm_alone(&args).await,
            Some(Command::Digests) => alone::digests_alone(&args).await,
            Some(Command::Replicas) => alone::replicas_alone(&args).await,
            Some(Command::Pool) => alone::pool_alone(&args).await,
            Some(Command::Ledger) => alone::ledger_alone(&args).await,
            Some(Command::FillLedger { dir }) => ledger::fill(&dir, ledger::FILLED).await,
            Some(Command::Attacks { only }) => alone::attacks_alone(&args, only).await,
            Some(Command::Load {
                scenario,
                http,
                grpc,
                concurrency,
                events,
                pid,
            }) => {
                alone::load_alone(scenario, Target { http, grpc, pid }, concurrency, events).await
            }
            None => run_all(&args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs each attack on a fresh sink.
async fn attacks(ctx: &Context, chosen: &[Attack]) -> Result<Vec<Attacked>, String> {
    let spec = SinkSpec {
        binary: &ctx.sink,
        dir: &ctx.work,
        webhook_url: &ctx.webhook,
        log_level: "warn",
        paced: false,
        extra_yaml: procs::SINGLE_SENDS,
    };
    let mut attacked = Vec::new();
    for &which in chosen {
        let what = format!("the attack {which:?}");
        let row = within(CELL_TIMEOUT, &what, attack::run(which, &spec)).await?;
        println!(
            "  attack {:<18} peak RSS {:>9}  after {:>9}  /healthz {}/{} answered  POSTs {} ok, {} refused, {} unanswered",
            format!("{which:?}"),
            format::mib(row.peak_rss_kib),
            format::mib(row.after_rss_kib),
            row.health.ok,
            row.health.asked,
            row.posts.ok,
            row.posts.refused,
            row.posts.unanswered()
        );
        attacked.push(row);
    }
    Ok(attacked)
}

/// The storm row, bounded in time.
async fn storm(ctx: &Context) -> Result<storm::Storm, String> {
    let row = storm::measure(&ctx.sink, &ctx.work, &ctx.webhook);
    within(storm::TIMEOUT, "the storm row", row).await
}

/// The digests row, bounded in time.
async fn digests(ctx: &Context) -> Result<digests::Digests, String> {
    let row = digests::measure(&ctx.sink, &ctx.work);
    within(digests::TIMEOUT, "the digests row", row).await
}

/// The replicas row, bounded in time.
async fn replicas(ctx: &Context) -> Result<replicas::Replicas, String> {
    let row = replicas::measure(&ctx.sink, &ctx.work, &ctx.webhook);
    within(replicas::TIMEOUT, "the replicas row", row).await
}

/// The pool row, bounded in time.
async fn pool(ctx: &Context) -> Result<pool::Pool, String> {
    let row = pool::measure(&ctx.sink, &ctx.work);
    within(pool::TIMEOUT, "the pool row", row).await
}

/// `future`'s result, or an error naming `what` once `limit` has passed
/// (the future is dropped then: the processes it started are killed).
async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("{what} took over {limit:?}"))?
}

/// The full run: baseline, every sink scenario at every level, logging cost,
/// the attacks, then the report and the plot.
async fn run_all(args: &Args) -> Result<(), String> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let ctx = Context::prepare(args).await?;
    let sink = ctx.sink.clone();
    let procs::SinkBinary {
        size: binary_size,
        loads_libm,
    } = procs::SinkBinary::inspect(&sink)?;
    let out = args.out.clone().unwrap_or_else(repo_root);
    println!(
        "bench: about {} measured events per run, {} runs per cell, levels {:?}, sink {}",
        args.events,
        args.repeat,
        args.levels,
        sink.display()
    );

    let mut cells = Vec::new();
    for &level in &args.levels {
        cells.push(cell(Scenario::Baseline, level, Process::Relay, &ctx, args).await?);
    }
    for scenario in Scenario::SINK {
        for &level in &args.levels {
            cells.push(cell(scenario, level, Process::Sink("warn"), &ctx, args).await?);
        }
    }
    let info_level = if args.levels.contains(&16) {
        16
    } else {
        args.levels.first().copied().unwrap_or(1)
    };
    println!("bench: once more with LOG_LEVEL=info");
    let info_cell = cell(
        Scenario::Structured,
        info_level,
        Process::Sink("info"),
        &ctx,
        args,
    )
    .await?;

    let rows = if args.throughput_only {
        Rows::default()
    } else {
        rows(&ctx, args).await?
    };

    let attacked = if args.skip_attacks || args.throughput_only {
        Vec::new()
    } else {
        println!("bench: the hostile-client attacks, each on a fresh sink");
        attacks(&ctx, &Attack::ALL).await?
    };

    let run = Run {
        machine: Machine::detect(),
        started,
        duration: clock.elapsed(),
        commit: commit(),
        ticks_per_sec: run::ticks_per_second(),
        binary_size,
        loads_libm,
        levels: args.levels.clone(),
        events: args.events,
        warmup: args.warmup,
        repeat: args.repeat.max(1),
        cells,
        info_cell: Some(info_cell),
        templates: rows.templates,
        storm: rows.storm,
        digests: rows.digests,
        ledger: rows.ledger,
        pool: rows.pool,
        replicas: rows.replicas,
        attacks: attacked,
    };
    drop(ctx);
    write_outputs(&run, &out)
}

/// The rows after the throughput cells.
#[derive(Default)]
struct Rows {
    templates: Option<templates::Cost>,
    storm: Option<storm::Storm>,
    digests: Option<digests::Digests>,
    ledger: Option<ledger::Ledger>,
    pool: Option<pool::Pool>,
    replicas: Option<replicas::Replicas>,
}

async fn rows(ctx: &Context, args: &Args) -> Result<Rows, String> {
    println!("bench: template rendering cost, in process");
    let templates = templates::measure()?;

    println!(
        "bench: storm: outbox appends, then {} alerts against DingTalk's limits (about a minute)",
        storm::ALERTS
    );
    let storm = storm(ctx).await?;

    println!(
        "bench: digests: a burst of {}, then {} alerts of five kinds over {} s",
        digests::BURST,
        digests::MIXED,
        digests::MIXED_OVER.as_secs()
    );
    let digests = digests(ctx).await?;

    println!(
        "bench: pool: {} alerts to a chat group on three robots",
        storm::ALERTS
    );
    let pool = pool(ctx).await?;

    println!("bench: ledger: empty, then filled with 1,000,000 records (a few minutes)");
    let ledger = within(
        ledger::TIMEOUT,
        "the ledger row",
        ledger::measure(ctx, args),
    )
    .await?;

    println!("bench: replicas: three sinks and one redis-server");
    let replicas = replicas(ctx).await?;
    Ok(Rows {
        templates: Some(templates),
        storm: Some(storm),
        digests: Some(digests),
        ledger: Some(ledger),
        pool: Some(pool),
        replicas: Some(replicas),
    })
}

/// What the benchmark shares between cells.
struct Context {
    blackhole: Blackhole,
    webhook: String,
    sink: PathBuf,
    work: PathBuf,
}

impl Context {
    /// The sink binary (`--sink`, else beside this program), a fresh work
    /// directory, and a blackhole DingTalk.
    async fn prepare(args: &Args) -> Result<Self, String> {
        let sink = match &args.sink {
            Some(path) => path.clone(),
            None => beside_this_program("sink-dingtalk")?,
        };
        let work = std::env::temp_dir().join(format!("dingtalk-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work)
            .map_err(|err| format!("cannot create {}: {err}", work.display()))?;
        let blackhole = Blackhole::start()
            .await
            .map_err(|err| format!("cannot start the blackhole: {err}"))?;
        Ok(Self {
            webhook: blackhole.webhook_url(),
            blackhole,
            sink,
            work,
        })
    }
}

impl Drop for Context {
    /// Removes the work directory, on every way out (an early `?` included).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn write_outputs(run: &Run, out: &Path) -> Result<(), String> {
    let md_path = out.join("BENCHMARKS.md");
    let svg_path = out.join("docs").join("bench.svg");
    std::fs::create_dir_all(out.join("docs"))
        .map_err(|err| format!("cannot create {}/docs: {err}", out.display()))?;
    plot::write(run, &svg_path)?;
    let existing = std::fs::read_to_string(&md_path).ok();
    let kept = existing
        .as_deref()
        .and_then(|text| text.split_once(report::KEEP_MARKER))
        .map(|(_, kept)| kept.trim_start_matches(['\r', '\n']));
    let kept = kept.map(|k| format!("\n{k}"));
    let markdown = report::markdown(run, kept.as_deref());
    std::fs::write(&md_path, &markdown)
        .map_err(|err| format!("cannot write {}: {err}", md_path.display()))?;
    let generated = markdown
        .split_once(report::KEEP_MARKER)
        .map_or(markdown.as_str(), |(generated, _)| generated);
    println!("\n{generated}");
    println!(
        "bench: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
    Ok(())
}

fn beside_this_program(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|err| format!("cannot find this program: {err}"))?;
    Ok(exe.with_file_name(name))
}

/// The workspace root: two levels above this package (`tests/bench`).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The commit measured, `+dirty` when the tree has changes.
fn commit() -> String {
    let root = repo_root();
    let root = root.to_string_lossy();
    let head = format::command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "unknown".into());
    let dirty = format::command_line("git", &["-C", &root, "status", "--porcelain"])
        .is_some_and(|first| !first.is_empty());
    if dirty { format!("{head}+dirty") } else { head }
}
