//! The `sink-dingtalk` binary as an operator runs it: bad config exits
//! non-zero naming every bad key; a good config serves until SIGTERM and
//! exits 0.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn run_to_exit(config: &PathBuf) -> Output {
    sink_binary(&config.file_stem().unwrap_or_default().to_string_lossy())
        .env("CONNECTOR_CONFIG", config)
        .env("CONNECTOR_PORT", "0")
        .output()
        .expect("binary runs")
}

#[test]
fn an_invalid_config_exits_non_zero_naming_every_key() {
    let config = write_config(
        "bad.yml",
        r#"
bot:
  default: nowhere
  webhooks:
    - chat_group: ops
      url: "not a url?access_token=hidden-token"
      signature: SECsecret
    - chat_group: ops
      url: https://oapi.dingtalk.com/robot/send?access_token=t2
      per_minute: 30
"#,
    );
    let output = run_to_exit(&config);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "bot.webhooks.0.url",
        "bot.webhooks.1.chat_group",
        "bot.webhooks.1.per_minute",
        "bot.default",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
    assert!(
        !stderr.contains("hidden-token") && !stderr.contains("SECsecret"),
        "{stderr}"
    );
}

#[test]
fn a_missing_key_and_a_missing_file_are_explained() {
    let config = write_config("empty.yml", "port: 8080\n");
    let output = run_to_exit(&config);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing field `bot`"), "{stderr}");

    let output = run_to_exit(&PathBuf::from("/nonexistent/config.yml"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CONNECTOR_CONFIG"), "{stderr}");
}

#[test]
fn a_store_path_that_cannot_be_written_stops_start_up_naming_it() {
    let config = write_config(
        "unwritable.yml",
        "store:\n  path: /proc/sink-dingtalk-cannot-write-here\nbot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n",
    );
    let output = Command::new(BINARY)
        .env("CONNECTOR_CONFIG", &config)
        .env("CONNECTOR_PORT", "0")
        .output()
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("store.path /proc/sink-dingtalk-cannot-write-here")
            && stderr.contains("writable"),
        "{stderr}"
    );
}

#[test]
fn a_valid_config_serves_until_sigterm_then_exits_zero() {
    let port = free_port();
    let config = write_config(
        "good.yml",
        "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n",
    );
    let mut child = sink_binary("sigterm")
        .env("CONNECTOR_CONFIG", &config)
        .env("CONNECTOR_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    wait_ready(port);

    terminate(child.id());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
}
