//! What a run measured: the machine, each process start, each throughput
//! cell, and the rows, as the report and the plot read them.

use std::time::{Duration, SystemTime};

use crate::attack::Attacked;
use crate::format::command_line;
use crate::load::{Measured, Scenario};

/// One start of a process under test.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Exec to ready.
    pub ready: Duration,
    /// RSS right after start, KiB.
    pub idle_rss_kib: u64,
}

/// One (scenario, concurrency) measurement: the median of its runs.
#[derive(Debug, Clone)]
pub struct Cell {
    /// What was sent.
    pub scenario: Scenario,
    /// Requests in flight.
    pub concurrency: usize,
    /// The measured phase of the run with the median events/s.
    pub measured: Measured,
    /// Peak RSS of the process under test over its life (warm-up included),
    /// the highest of the runs, KiB.
    pub peak_rss_kib: u64,
    /// Each run's start.
    pub starts: Vec<Start>,
    /// Requests not answered with success, all runs together.
    pub failed_requests: u64,
    /// The first failure of any run.
    pub first_error: Option<String>,
    /// The lowest and the highest events/s of the runs.
    pub range: (f64, f64),
    /// POSTs the blackhole got during the runs (warm-up included).
    pub upstream_posts: u64,
    /// POSTs it should have got.
    pub expected_posts: u64,
}

/// The machine the run was on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// CPU model.
    pub cpu: String,
    /// Total memory, KiB.
    pub memory_kib: u64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
}

impl Machine {
    /// Reads `/proc` and asks rustc.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = fake_dingtalk::process::kib_field(&meminfo, "MemTotal:").unwrap_or(0);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_kib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned()),
            rustc: command_line("rustc", &["--version"])
                .unwrap_or_else(|| "rustc (unknown)".into()),
        }
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Where.
    pub machine: Machine,
    /// When it started.
    pub started: SystemTime,
    /// How long it took, builds excluded.
    pub duration: Duration,
    /// `git describe`-ish name of the code measured.
    pub commit: String,
    /// Clock ticks per second of the CPU counters.
    pub ticks_per_sec: u64,
    /// Size of the release sink binary, bytes.
    pub binary_size: u64,
    /// Whether the release sink needs glibc's `libm.so.6`.
    pub loads_libm: bool,
    /// Concurrency levels.
    pub levels: Vec<usize>,
    /// Measured events asked per cell.
    pub events: u64,
    /// Warm-up events asked per cell.
    pub warmup: u64,
    /// Runs per cell, each on a fresh process.
    pub repeat: usize,
    /// Baseline and sink cells, `LOG_LEVEL=warn`.
    pub cells: Vec<Cell>,
    /// HTTP structured with `LOG_LEVEL=info`, when measured.
    pub info_cell: Option<Cell>,
    /// Template rendering cost per event, when measured.
    pub templates: Option<crate::templates::Cost>,
    /// The storm row, when measured.
    pub storm: Option<crate::storm::Storm>,
    /// The digests row, when measured.
    pub digests: Option<crate::digests::Digests>,
    /// The ledger row, when measured.
    pub ledger: Option<crate::ledger::Ledger>,
    /// The pool row, when measured.
    pub pool: Option<crate::pool::Pool>,
    /// The replicas row, when measured.
    pub replicas: Option<crate::replicas::Replicas>,
    /// The hostile-client attacks, when run.
    pub attacks: Vec<Attacked>,
}

impl Run {
    /// The cell of `scenario` at `concurrency`.
    pub fn cell(&self, scenario: Scenario, concurrency: usize) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.scenario == scenario && c.concurrency == concurrency)
    }

    pub fn sink_cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .filter(|c| c.scenario != Scenario::Baseline)
    }

    pub fn sink_starts(&self) -> impl Iterator<Item = Start> + '_ {
        self.sink_cells()
            .chain(self.info_cell.as_ref())
            .flat_map(|c| c.starts.iter().copied())
    }

    /// Sink events/s divided by baseline events/s at the same concurrency.
    pub fn ratio(&self, cell: &Cell) -> Option<f64> {
        let base = self.cell(Scenario::Baseline, cell.concurrency)?;
        Some(cell.measured.events_per_sec() / base.measured.events_per_sec())
    }

    pub fn cpu_per_10k(&self, cell: &Cell) -> f64 {
        cell.measured.cpu_per_10k(self.ticks_per_sec)
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every usual Linux).
pub fn ticks_per_second() -> u64 {
    command_line("getconf", &["CLK_TCK"])
        .and_then(|text| text.parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}
