//! The `sink-dingtalk` binary as an operator runs it: bad config exits
//! non-zero naming every bad key; a good config serves until SIGTERM and
//! exits 0, or non-zero when a drain had to cut requests off or a second
//! signal cut it short; `/metrics` has its families before the first event.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use fake_dingtalk::{Failure, FakeDingTalk, RobotSpec};

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

/// glibc's libm costs every replica about half a MiB at start
/// (docs/development.md#footprint); the few math functions the program
/// calls are its own (`src/c_math.rs`), so the binary must not load it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_does_not_load_glibcs_libm() {
    let binary = std::fs::read(BINARY).expect("the binary is readable");
    let needs_libm = binary
        .windows(b"libm.so.6".len())
        .any(|window| window == b"libm.so.6");
    assert!(
        !needs_libm,
        "{BINARY} needs libm.so.6 again: a dependency calls a C math function \
         src/c_math.rs does not define; `objdump -T {BINARY} | grep GLIBC` names \
         it among the imports; define it there"
    );
}

/// The binary allocates with jemalloc and one arena (`src/allocator.rs`):
/// jemalloc prints the options it read when asked to print its statistics.
#[cfg(not(target_env = "msvc"))]
#[test]
fn the_binary_allocates_with_jemalloc_on_one_arena() {
    let output = Command::new(BINARY)
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("binary runs");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("opt.narenas: 1\n"),
        "jemalloc did not print `opt.narenas: 1` at exit: is it the global \
         allocator, and is `_rjem_malloc_conf` still the name its build reads? {stderr}"
    );
}

#[test]
fn a_valid_config_serves_until_sigterm_then_exits_zero() {
    let port = free_port();
    let config = write_config(
        "good.yml",
        "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n",
    );
    let mut child = spawn_quiet("sigterm", &config, port);
    wait_ready(port);

    terminate(child.id());
    let status = exit_within(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn metrics_have_their_families_before_the_first_event() {
    let port = free_port();
    let config = write_config(
        "metrics.yml",
        "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n",
    );
    let mut child = spawn_quiet("metrics", &config, port);
    wait_ready(port);
    let metrics = request(port, "GET", "/metrics", &[], "").expect("an answer");
    terminate(child.id());
    exit_within(&mut child, Duration::from_secs(20));
    for family in [
        "connector_requests_total{",
        "connector_requests_refused_total{",
        "connector_connections_open{",
        "connector_buffered_bytes",
        "dingtalk_events_total{",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(r#"dingtalk_events_total{outcome="delivered",chat_group="ops"} 0"#)
            || metrics.contains(r#"dingtalk_events_total{chat_group="ops",outcome="delivered"} 0"#),
        "{metrics}"
    );
}

/// A sink whose one robot answers after `delay`, with `runtime` keys; a
/// request to it in flight. The fake must outlive the child.
async fn sink_with_a_request_in_flight(
    name: &str,
    runtime: &str,
) -> (FakeDingTalk, std::process::Child, u16) {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("slow")])
        .await
        .expect("fake starts");
    fake.fail_next("slow", Failure::Delay(Duration::from_secs(30)), 1);
    let port = free_port();
    let config = write_config(
        name,
        &format!(
            "{runtime}bot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\ndelivery:\n  deadline_ms: 4500\n",
            fake.webhook_url("slow")
        ),
    );
    let child = spawn_quiet(name, &config, port);
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .expect("ready");
    let body = r#"{"specversion":"1.0","id":"slow-1","source":"test","type":"t","data":"slow"}"#;
    tokio::task::spawn_blocking(move || {
        request(
            port,
            "POST",
            "/",
            &[(
                "content-type",
                connector_sdk::testing::STRUCTURED_CONTENT_TYPE,
            )],
            body,
        )
    });
    let started = Instant::now();
    while fake.requests_for("slow") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the request never reached DingTalk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (fake, child, port)
}

#[tokio::test]
async fn a_drain_that_cuts_requests_off_exits_non_zero() {
    let (_fake, mut child, _) =
        sink_with_a_request_in_flight("cut-off.yml", "shutdown_timeout_secs: 1\n").await;
    terminate(child.id());
    let status =
        tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(20)))
            .await
            .expect("waited");
    assert!(!status.success(), "cut off, yet {status:?}");
}

#[tokio::test]
async fn a_second_signal_exits_at_once_and_non_zero() {
    let (_fake, mut child, port) =
        // A drain delay keeps /readyz reachable (503) while it drains.
        sink_with_a_request_in_flight(
            "second-signal.yml",
            "shutdown_timeout_secs: 60\ndrain_delay_ms: 30000\n",
        )
        .await;
    terminate(child.id());
    // Draining: not ready, still up.
    let draining = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let ready = request(port, "GET", "/readyz", &[], "");
            if ready
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 503"))
            {
                return true;
            }
            if started.elapsed() > Duration::from_secs(10) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("probed");
    assert!(draining, "the first signal starts the drain");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the drain waits for the request"
    );
    terminate(child.id());
    let status =
        tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(5)))
            .await
            .expect("waited");
    assert!(!status.success(), "cut short, yet {status:?}");
}

/// Runs the sink with `env` set, one robot on a fake DingTalk, sends one
/// event, and returns how many requests `proxy` forwarded and whether the
/// fake accepted the event.
async fn one_event_with_env(name: &str, env: &[(&str, String)], delivery: &str) -> (usize, usize) {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("envbot")])
        .await
        .expect("fake starts");
    let proxy = fake_dingtalk::proxy::ForwardProxy::start()
        .await
        .expect("proxy starts");
    let port = free_port();
    let config = write_config(
        name,
        &format!(
            "bot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\ndelivery:\n  deadline_ms: 3000\n{delivery}",
            fake.webhook_url("envbot")
        ),
    );
    let mut command = sink_binary(name);
    command
        .env("CONNECTOR_CONFIG", &config)
        .env("CONNECTOR_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(var);
    }
    for (var, value) in env {
        let value = value.replace("PROXY", &proxy.url());
        command.env(var, value);
    }
    let mut child = command.spawn().expect("binary starts");
    let answer = tokio::task::spawn_blocking(move || {
        wait_ready(port);
        request(
            port,
            "POST",
            "/",
            &[(
                "content-type",
                connector_sdk::testing::STRUCTURED_CONTENT_TYPE,
            )],
            &alert(1),
        )
    })
    .await
    .expect("sent");
    terminate(child.id());
    tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(20)))
        .await
        .expect("exited");
    let answer = answer.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    (proxy.forwarded().len(), fake.accepted_for("envbot").len())
}

#[tokio::test]
async fn http_proxy_from_the_environment_carries_the_requests() {
    let (through_proxy, accepted) =
        one_event_with_env("env-proxy.yml", &[("HTTP_PROXY", "PROXY".into())], "").await;
    assert_eq!((through_proxy, accepted), (1, 1));
}

#[tokio::test]
async fn no_proxy_from_the_environment_bypasses_it() {
    let (through_proxy, accepted) = one_event_with_env(
        "env-no-proxy.yml",
        &[
            ("HTTP_PROXY", "PROXY".into()),
            ("NO_PROXY", "127.0.0.1".into()),
        ],
        "",
    )
    .await;
    assert_eq!((through_proxy, accepted), (0, 1));
}

#[tokio::test]
async fn delivery_no_proxy_bypasses_the_environment_s_proxy() {
    let (through_proxy, accepted) = one_event_with_env(
        "config-no-proxy.yml",
        &[("HTTP_PROXY", "PROXY".into())],
        "  no_proxy: 127.0.0.1\n",
    )
    .await;
    assert_eq!((through_proxy, accepted), (0, 1));
}
