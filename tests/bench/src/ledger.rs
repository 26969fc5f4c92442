//! The ledger row (`bench ledger`): the release sink on an unpaced robot
//! against the blackhole, HTTP structured events each with its own id, at
//! 16 and 128 in flight; once on an empty ledger and once on a ledger
//! holding `store.max_records` (1,000,000) records. Events/s, p99, peak
//! RSS and the size of `connector.redb` for each.
//!
//! The full ledger is filled by a bench-only path, not by load: before the
//! sink starts, this program opens the store directory with connector-sdk's
//! embedded store and writes [`FILLED`] records under the ledger's scope
//! exactly as the ledger writes an accepted event's record (keys of the
//! same shape, the default time to live), then closes it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_sdk::Store;
use connector_sdk::store::{Backend, Embedded};

use crate::format::{mib, ms, thousands};
use crate::load::{self, Measured, Plan, Scenario};
use crate::procs::{self, SinkSpec};
use crate::{Args, CELL_TIMEOUT, Context};

/// Records in the full ledger: the default `store.max_records`.
pub const FILLED: u64 = 1_000_000;
/// The ledger's scope in the store (connector-sdk's runtime.rs).
const LEDGER_SCOPE: &str = "ledger";
/// The ledger's default time to live (`ledger_ttl_secs`).
const LEDGER_TTL: Duration = Duration::from_secs(86_400);
/// Records written concurrently while filling.
const FILL_CHUNK: u64 = 4_096;
/// The whole row may take this long at most (the fill included).
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// Requests in flight of the row's cells.
const LEVELS: [usize; 2] = [16, 128];

/// One cell of the row.
#[derive(Debug, Clone)]
pub struct LedgerCell {
    /// Records in the ledger when the sink started.
    pub records: u64,
    pub concurrency: usize,
    pub measured: Measured,
    pub peak_rss_kib: u64,
    /// CPU seconds per 10,000 events (user + system, measured phase).
    pub cpu_per_10k: f64,
    /// `connector.redb` after the cell, in bytes.
    pub file_bytes: u64,
}

/// The row.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub cells: Vec<LedgerCell>,
    /// `connector.redb` right after the fill, in bytes.
    pub filled_bytes: u64,
    /// `connector.redb` of an empty store (opened and closed), in bytes.
    pub empty_bytes: u64,
    /// How long the fill took.
    pub fill_time: Duration,
}

impl Ledger {
    /// Bytes on disk per remembered event, from the fill.
    pub fn bytes_per_record(&self) -> f64 {
        self.filled_bytes.saturating_sub(self.empty_bytes) as f64 / FILLED as f64
    }
}

/// Measures the row: the fill, then `--repeat` rounds of each cell, the
/// empty ledger's and the full one's side by side (so that a change in the
/// machine's speed during the row shows in both); each cell the median run
/// by events/s.
pub async fn measure(ctx: &Context, args: &Args) -> Result<Ledger, String> {
    let empty_dir = ctx.work.join("ledger-empty");
    let full_dir = ctx.work.join("ledger-full");
    for dir in [&empty_dir, &full_dir] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    fill(&empty_dir.join("store"), 0).await?;
    let empty_bytes = file_bytes(&empty_dir)?;
    let started = Instant::now();
    fill(&full_dir.join("store"), FILLED).await?;
    let fill_time = started.elapsed();
    let filled_bytes = file_bytes(&full_dir)?;
    println!(
        "  filled the ledger with {} records in {:.1} s: connector.redb {:.1} MB",
        thousands(FILLED as f64),
        fill_time.as_secs_f64(),
        filled_bytes as f64 / 1e6
    );
    let mut runs: Vec<Vec<LedgerCell>> = vec![Vec::new(); 2 * LEVELS.len()];
    let mut first_worker = 0;
    for _ in 0..args.repeat.max(1) {
        for (level, concurrency) in LEVELS.into_iter().enumerate() {
            for (side, (records, dir)) in [(0, &empty_dir), (FILLED, &full_dir)]
                .into_iter()
                .enumerate()
            {
                let run = cell(ctx, args, dir, records, concurrency, first_worker).await?;
                runs[side * LEVELS.len() + level].push(run);
                // Ids never repeat between the runs that share a store.
                first_worker += concurrency;
            }
        }
    }
    let cells = runs
        .into_iter()
        .filter_map(|mut runs| {
            runs.sort_by(|a, b| {
                a.measured
                    .events_per_sec()
                    .total_cmp(&b.measured.events_per_sec())
            });
            let middle = runs.len() / 2;
            runs.into_iter().nth(middle)
        })
        .collect();
    Ok(Ledger {
        cells,
        filled_bytes,
        empty_bytes,
        fill_time,
    })
}

/// Writes `records` ledger records into the store in `dir`, as the ledger
/// writes an accepted event's, and closes it.
pub async fn fill(dir: &Path, records: u64) -> Result<(), String> {
    let embedded = Arc::new(
        Embedded::open(dir, FILLED).map_err(|err| format!("cannot open the store: {err}"))?,
    );
    let backend: Arc<dyn Backend> = embedded.clone();
    let ledger = Store::new(backend).scope(LEDGER_SCOPE);
    let mut next = 0;
    while next < records {
        let end = (next + FILL_CHUNK).min(records);
        let writes = (next..end).map(|i| {
            let key = identity(i);
            let ledger = &ledger;
            async move { remember(ledger, &key).await }
        });
        for written in futures_util::future::join_all(writes).await {
            written.map_err(|err| format!("cannot fill the ledger: {err}"))?;
        }
        next = end;
    }
    embedded.close().await;
    Ok(())
}

/// What the ledger writes for an accepted event.
async fn remember(ledger: &Store, key: &str) -> Result<(), connector_sdk::store::StoreError> {
    ledger.remember(key, LEDGER_TTL, true).await
}

/// A ledger key of the ledger's shape (32 hex digits, a hash of source and
/// id), distinct for each `i` and from every id the load sends.
fn identity(i: u64) -> String {
    // splitmix64, twice: two well-mixed 64-bit halves.
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    format!("{:016x}{:016x}", mix(i), mix(i ^ 0x5555_5555_5555_5555))
}

/// The size of `connector.redb` in the store of `dir`.
fn file_bytes(dir: &Path) -> Result<u64, String> {
    let file = dir.join("store").join("connector.redb");
    std::fs::metadata(&file)
        .map(|m| m.len())
        .map_err(|err| format!("cannot read {}: {err}", file.display()))
}

/// One run of the sink on the store in `dir` as it is (its records kept).
async fn cell(
    ctx: &Context,
    args: &Args,
    dir: &Path,
    records: u64,
    concurrency: usize,
    first_worker: usize,
) -> Result<LedgerCell, String> {
    let scenario = Scenario::Structured;
    let mut plan = Plan::new(scenario, concurrency, args.events, args.warmup);
    plan.first_worker = first_worker;
    let spec = SinkSpec {
        binary: &ctx.sink,
        dir,
        webhook_url: &ctx.webhook,
        log_level: "warn",
        paced: false,
        extra_yaml: procs::SINGLE_SENDS,
    };
    let running = procs::start_sink_on_store(&spec, &procs::one_bot(&spec)).await?;
    let measured = tokio::time::timeout(CELL_TIMEOUT, load::run(scenario, running.target, plan))
        .await
        .map_err(|_| format!("the ledger cell at {concurrency} took over {CELL_TIMEOUT:?}"))?
        .map_err(|err| {
            format!(
                "the ledger cell at {concurrency}: {err}\nits log ends with:\n{}",
                running.log_tail()
            )
        })?;
    let peak_rss_kib = running.peak_rss_kib()?;
    drop(running);
    let cpu_per_10k = measured.cpu_per_10k(crate::run::ticks_per_second());
    let cell = LedgerCell {
        records,
        concurrency,
        measured,
        peak_rss_kib,
        cpu_per_10k,
        file_bytes: file_bytes(dir)?,
    };
    println!(
        "  ledger {:>9} records {:>4} in flight: {:>7} events/s  p99 {:>9}  peak RSS {:>9}  connector.redb {:.1} MB{}",
        thousands(records as f64),
        concurrency,
        thousands(cell.measured.events_per_sec()),
        ms(cell.measured.percentile(0.99)),
        mib(cell.peak_rss_kib),
        cell.file_bytes as f64 / 1e6,
        if cell.measured.errors > 0 {
            format!(
                "  {} FAILED (first: {})",
                cell.measured.errors,
                cell.measured.first_error.as_deref().unwrap_or("?")
            )
        } else {
            String::new()
        }
    );
    Ok(cell)
}

/// The row's section of the report.
pub fn markdown(md: &mut String, row: &Ledger) {
    use std::fmt::Write;
    let _ = writeln!(md, "## Ledger: empty and at 1,000,000 records\n");
    let _ = writeln!(
        md,
        "The release sink (`LOG_LEVEL=warn`, `digest.burst: 0`) on an unpaced robot against the \
         blackhole, HTTP structured events each \
         with its own id, on a fresh process a run; the store kept between the runs of one \
         ledger. Each cell is the median by events/s of 3 runs (`--repeat`), the empty and the \
         full ledger's run side by side, so that a change in the machine's speed shows in both. The full ledger is filled before the sink starts by a bench-only path (`bench \
         ledger` opens the store directory with connector-sdk's embedded store and writes \
         {} records as the ledger writes an accepted event's: {:.1} s), not by load. \
         `connector.redb` after the cell.\n",
        thousands(FILLED as f64),
        row.fill_time.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| ledger | in flight | events/s | p99 | peak RSS | CPU s / 10k events | `connector.redb` |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
    for cell in &row.cells {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1} MB |",
            thousands(cell.records as f64),
            cell.concurrency,
            thousands(cell.measured.events_per_sec()),
            ms(cell.measured.percentile(0.99)),
            mib(cell.peak_rss_kib),
            cell.cpu_per_10k,
            cell.file_bytes as f64 / 1e6
        );
    }
    let empty = |c: usize| {
        row.cells
            .iter()
            .find(|cell| cell.records == 0 && cell.concurrency == c)
            .map(|cell| cell.measured.events_per_sec())
    };
    let mut ratios = Vec::new();
    for cell in row.cells.iter().filter(|cell| cell.records > 0) {
        if let Some(base) = empty(cell.concurrency) {
            ratios.push(format!(
                "{:+.0}% at {}",
                (cell.measured.events_per_sec() / base.max(1e-9) - 1.0) * 100.0,
                cell.concurrency
            ));
        }
    }
    let _ = writeln!(
        md,
        "\nOn disk: {:.1} bytes per remembered event (`connector.redb` {:.1} MB after the fill, \
         {:.1} MB empty). Events/s full against empty: {}.\n",
        row.bytes_per_record(),
        row.filled_bytes as f64 / 1e6,
        row.empty_bytes as f64 / 1e6,
        ratios.join(", ")
    );
}
