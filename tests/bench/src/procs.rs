//! Starting the processes under test — the release sink and the baseline
//! relay — on free loopback ports, timing exec to ready, and stopping them.
//!
//! Each (scenario, concurrency) cell gets a fresh process, so that `VmHWM`
//! is that cell's peak RSS, and every start is one more sample of the
//! exec-to-ready time and of the idle RSS.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::http::get_readyz;
use crate::load::Target;
use fake_dingtalk::process;

/// How long a process may take to become ready before the run gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a fresh process is left alone before its idle RSS is read.
const SETTLE: Duration = Duration::from_millis(250);

/// A process under test; killed when dropped.
pub struct Running {
    child: Child,
    /// Where it serves.
    pub target: Target,
    /// From just before exec to the first `200` from its readiness probe.
    pub ready: Duration,
    /// Resident memory after start-up and a short settle, in KiB.
    pub idle_rss_kib: u64,
    log: PathBuf,
}

impl Running {
    /// The peak resident memory of its whole life so far, in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64, String> {
        let pid = self.child.id();
        process::memory(pid)
            .map(|m| m.peak_kib)
            .map_err(|err| format!("cannot read the memory of pid {pid}: {err}"))
    }

    /// The end of its log, to explain a failure.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Our own child, by its handle: SIGKILL and reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start the sink.
pub struct SinkSpec<'a> {
    /// The release binary.
    pub binary: &'a Path,
    /// Where to write its config and log.
    pub dir: &'a Path,
    /// The blackhole's webhook URL.
    pub webhook_url: &'a str,
    /// `LOG_LEVEL`.
    pub log_level: &'a str,
    /// Whether the robot keeps DingTalk's budget (off: a stand-in with no
    /// limit, to measure the sink itself).
    pub paced: bool,
    /// More YAML for the config (a `digest:` section, say).
    pub extra_yaml: &'a str,
}

/// `extra_yaml` for a sink measured on single sends: no storm detection,
/// so every event is a POST of its own (the storm and digests rows measure
/// storms, on paced robots).
pub const SINGLE_SENDS: &str = "digest:\n  burst: 0\n";

/// Starts the sink with its one webhook, HTTP and gRPC on, and a fresh
/// store: a run never finds the ledger or outbox of another.
pub async fn start_sink(spec: &SinkSpec<'_>) -> Result<Running, String> {
    start_sink_with_bot(spec, &one_bot(spec)).await
}

/// The `bot:` section of [`start_sink`]: the one webhook of `spec`.
pub fn one_bot(spec: &SinkSpec<'_>) -> String {
    format!(
        "bot:\n  webhooks:\n    - chat_group: bench\n      url: \"{url}\"\n      paced: {paced}\n",
        url = spec.webhook_url,
        paced = spec.paced,
    )
}

/// As [`start_sink`], with `bot` as the config's whole `bot:` section
/// (several robots, say); `spec.webhook_url` and `spec.paced` unused.
pub async fn start_sink_with_bot(spec: &SinkSpec<'_>, bot: &str) -> Result<Running, String> {
    let _ = std::fs::remove_dir_all(spec.dir.join("store"));
    start_sink_on_store(spec, bot).await
}

/// As [`start_sink_with_bot`], on the store already in `spec.dir/store`
/// (a ledger filled beforehand, say): nothing is removed.
pub async fn start_sink_on_store(spec: &SinkSpec<'_>, bot: &str) -> Result<Running, String> {
    let http = free_port()?;
    let grpc = free_port()?;
    let config = spec.dir.join("config.yml");
    let store = spec.dir.join("store");
    let yaml = format!(
        "# Written by the benchmark (tests/bench/src/main.rs).\n\
         port: {http}\n\
         grpc_port: {grpc}\n\
         bind: 127.0.0.1\n\
         store:\n  path: \"{store}\"\n\
         {bot}\
         delivery:\n  deadline_ms: 3000\n{extra}",
        store = store.display(),
        extra = spec.extra_yaml,
    );
    std::fs::write(&config, yaml)
        .map_err(|err| format!("cannot write {}: {err}", config.display()))?;
    let mut command = Command::new(spec.binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONNECTOR_") {
            command.env_remove(name);
        }
    }
    command
        .env("CONNECTOR_CONFIG", &config)
        .env("LOG_LEVEL", spec.log_level)
        .env_remove("LOG_FORMAT");
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    start(
        command,
        spec.dir.join("sink.log"),
        addr(http),
        Some(addr(grpc)),
    )
    .await
}

/// Starts the baseline relay (this program, `relay` subcommand).
pub async fn start_relay(dir: &Path, upstream: &str) -> Result<Running, String> {
    let exe = std::env::current_exe().map_err(|err| format!("cannot find this program: {err}"))?;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut command = Command::new(exe);
    command
        .arg("relay")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--upstream")
        .arg(upstream);
    start(command, dir.join("relay.log"), listen, None).await
}

async fn start(
    mut command: Command,
    log: PathBuf,
    http: SocketAddr,
    grpc: Option<SocketAddr>,
) -> Result<Running, String> {
    let stderr =
        File::create(&log).map_err(|err| format!("cannot create {}: {err}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let exec = Instant::now();
    let child = command
        .spawn()
        .map_err(|err| format!("cannot start {:?}: {err}", command.get_program()))?;
    let pid = child.id();
    let mut running = Running {
        child,
        target: Target {
            http,
            grpc,
            pid: Some(pid),
        },
        ready: Duration::ZERO,
        idle_rss_kib: 0,
        log,
    };
    loop {
        if matches!(get_readyz(http).await, Ok(StatusCode::OK)) {
            running.ready = exec.elapsed();
            break;
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "{:?} exited during start-up ({status}):\n{}",
                command.get_program(),
                running.log_tail()
            ));
        }
        if exec.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{:?} was not ready within {READY_TIMEOUT:?}:\n{}",
                command.get_program(),
                running.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if let Some(grpc) = grpc {
        tokio::net::TcpStream::connect(grpc)
            .await
            .map_err(|err| format!("ready, but gRPC on {grpc} does not accept: {err}"))?;
    }
    tokio::time::sleep(SETTLE).await;
    running.idle_rss_kib = process::memory(pid)
        .map(|m| m.rss_kib)
        .map_err(|err| format!("cannot read the memory of pid {pid}: {err}"))?;
    Ok(running)
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// What the report says of the release sink's file.
pub struct SinkBinary {
    /// Its size, bytes.
    pub size: u64,
    /// Whether it names glibc's `libm.so.6` among the libraries it loads
    /// (the name is then in its dynamic string table).
    pub loads_libm: bool,
}

impl SinkBinary {
    /// Reads `binary`; warns when it loads libm again.
    pub fn inspect(binary: &Path) -> Result<SinkBinary, String> {
        let bytes = std::fs::read(binary).map_err(|err| {
            format!(
                "cannot read {}: {err}; build it first: cargo build --release -p sink-dingtalk",
                binary.display()
            )
        })?;
        let name = b"libm.so.6";
        let loads_libm = bytes.windows(name.len()).any(|window| window == name);
        if loads_libm {
            println!(
                "bench: warning: {} needs glibc's libm.so.6 again (0.5 MiB a process): a dependency calls a C math function sink-dingtalk/src/c_math.rs does not define",
                binary.display()
            );
        }
        Ok(SinkBinary {
            size: bytes.len() as u64,
            loads_libm,
        })
    }
}
