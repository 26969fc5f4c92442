//! Helpers for tests that run the `sink-dingtalk` binary as an operator
//! would: config files, free ports, and a tiny HTTP client.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use fake_dingtalk::FakeDingTalk;
use fake_dingtalk::events::{self, Alerts};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_sink-dingtalk");

/// Writes `yaml` to a fresh file named `name` and returns its path.
pub fn write_config(name: &str, yaml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sink-dingtalk-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// A fresh, empty store directory named `name` for one run of the binary
/// (never the default `/vanus-connect/data`).
pub fn store_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("sink-dingtalk-test-{}", std::process::id()))
        .join(format!("store-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The environment variable naming the store directory.
pub const STORE_ENV: &str = "CONNECTOR_STORE__PATH";

/// The binary, with a fresh store directory named `store`: a test never
/// touches the default `/vanus-connect/data`.
pub fn sink_binary(store: &str) -> std::process::Command {
    let mut command = std::process::Command::new(BINARY);
    command.env(STORE_ENV, store_dir(store));
    command
}

/// Starts the sink on `config`, HTTP on `port`, with a fresh store named
/// `store`, its output discarded.
pub fn spawn_quiet(store: &str, config: &Path, port: u16) -> Child {
    sink_binary(store)
        .env("CONNECTOR_CONFIG", config)
        .env("CONNECTOR_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts")
}

/// Waits for `child` to exit, at most `within`.
pub fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(started.elapsed() < within, "did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a command-line run said: success, stdout, stderr.
pub fn said(output: &Output) -> (bool, String, String) {
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How these tests' alerts look: from Alertmanager, "disk full".
pub const ALERTS: Alerts = Alerts::new("alert-", "alertmanager", "alert");

/// Alert `i` as a structured-mode CloudEvent; its text carries
/// `events::marker(i)`.
pub fn alert(i: usize) -> String {
    ALERTS.structured(i)
}

/// How many of the messages DingTalk accepted for `token` show each of the
/// alerts `0..alerts`.
pub fn times_shown(fake: &FakeDingTalk, token: &str, alerts: usize) -> Vec<usize> {
    events::posts_showing(&fake.accepted_for(token), alerts)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One HTTP/1.1 request; the raw answer, or `None` if nothing listens.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(stream, "{head}\r\n{body}").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// Waits up to 10 s for `/readyz` to answer 200.
pub fn wait_ready(port: u16) {
    let started = Instant::now();
    loop {
        if request(port, "GET", "/readyz", &[], "").is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to a process.
pub fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}
