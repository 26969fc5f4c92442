//! What an operator types: `--check-config`, `send` against a (fake)
//! DingTalk, and the logs of a run with failures, which must never show the
//! access token or the signing secret.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fake_dingtalk::{Failure, FakeDingTalk, RobotSpec};
use tokio::io::AsyncReadExt;

const TOKEN: &str = "opsTOKEN0123456789abcdef";
const SECRET: &str = "SECopsSECRETvalue9876";

fn config_for(fake: &FakeDingTalk, port: u16) -> String {
    format!(
        "port: {port}\nbot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\n      signature: {SECRET}\n",
        fake.webhook_url(TOKEN)
    )
}

/// Runs the binary with `args` and a fresh store named `store`, without
/// blocking the runtime the fake DingTalk answers on.
async fn run(store: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::from(sink_binary(store))
        .args(args)
        .env("LOG_LEVEL", "warn")
        .output()
        .await
        .expect("binary runs");
    said(&output)
}

/// Starts the sink on `config` (its HTTP port `port`) with its log at
/// `level` collected: the log is the task's output once the sink exits.
async fn start_logging(
    store: &str,
    config: &Path,
    level: &str,
    port: u16,
) -> (tokio::process::Child, tokio::task::JoinHandle<String>) {
    let mut child = tokio::process::Command::from(sink_binary(store))
        .env("CONNECTOR_CONFIG", config)
        .env("LOG_LEVEL", level)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .expect("ready");
    (child, log)
}

#[tokio::test]
async fn check_config_summarizes_a_good_file_and_lists_problems_in_a_bad_one() {
    let good = write_config(
        "check-good.yml",
        &format!(
            "bot:\n  default: dev\n  webhooks:\n    - {{ chat_group: ops, url: 'https://oapi.dingtalk.com/robot/send?access_token={TOKEN}', signature: {SECRET} }}\n    - {{ chat_group: dev, url: 'https://oapi.dingtalk.com/robot/send?access_token=other' }}\n"
        ),
    );
    let (ok, stdout, _) = run(
        "check-good",
        &["--check-config", good.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("is valid") && stdout.contains("default chat group: dev"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ops") && stdout.contains("signed") && stdout.contains("unsigned"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(TOKEN) && !stdout.contains(SECRET),
        "{stdout}"
    );

    let bad = write_config(
        "check-bad.yml",
        "bot:\n  default: x\n  webhooks:\n    - { chat_group: a, url: 'nope' }\n",
    );
    let (ok, _, stderr) = run(
        "check-bad",
        &["--check-config", bad.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("bot.webhooks.0.url") && stderr.contains("bot.default"),
        "{stderr}"
    );
}

#[tokio::test]
async fn send_posts_one_message_and_prints_dingtalks_answer() {
    let fake = FakeDingTalk::start(vec![RobotSpec::signed(TOKEN, SECRET)])
        .await
        .expect("fake starts");
    let config = write_config("send.yml", &config_for(&fake, 0));
    let config = config.to_str().expect("utf-8 path");

    let (ok, stdout, stderr) = run(
        "send-ok",
        &[
            "send",
            "--group",
            "ops",
            "--config",
            config,
            "hello from the CLI",
        ],
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("delivered to chat group ops"), "{stdout}");
    let accepted = fake.accepted_for(TOKEN);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].body["text"]["content"], "hello from the CLI");

    let (ok, stdout, _) = run(
        "send-markdown",
        &[
            "send",
            "--type",
            "markdown",
            "--config",
            config,
            r#"{"title":"t","text":"**bold**"}"#,
        ],
    )
    .await;
    assert!(ok, "{stdout}");
    assert_eq!(
        fake.accepted_for(TOKEN)[1].body["markdown"]["text"],
        "**bold**"
    );

    fake.fail_next(
        TOKEN,
        Failure::ErrCode(310000, "keywords not in content".into()),
        1,
    );
    let (ok, stdout, _) = run("send-keyword", &["send", "--config", config, "no keyword"]).await;
    assert!(!ok);
    assert!(
        stdout.contains("310000") && stdout.contains("keywords not in content"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_log_of_a_failing_run_holds_no_token_or_secret() {
    let fake = FakeDingTalk::start(vec![RobotSpec::signed(TOKEN, SECRET)])
        .await
        .expect("fake starts");
    let port = free_port();
    let config = write_config(
        "logs.yml",
        &format!("{}delivery:\n  deadline_ms: 800\n", config_for(&fake, port)),
    );
    let (mut child, log) = start_logging("logs", &config, "trace", port).await;

    fake.fail_next(TOKEN, Failure::Http(500), 2);
    fake.fail_next(TOKEN, Failure::ErrCode(310000, "sign not match".into()), 1);
    fake.fail_next(TOKEN, Failure::Delay(Duration::from_secs(3)), 1);
    fake.fail_next(TOKEN, Failure::ErrCode(410100, "send too fast".into()), 1);
    let mut statuses = Vec::new();
    for i in 0..4 {
        let body = format!(
            r#"{{"specversion":"1.0","id":"log-{i}","source":"test","type":"t","data":"event {i}"}}"#
        );
        let answer = tokio::task::spawn_blocking(move || {
            request(
                port,
                "POST",
                "/",
                &[(
                    "content-type",
                    connector_sdk::testing::STRUCTURED_CONTENT_TYPE,
                )],
                &body,
            )
        })
        .await
        .expect("request")
        .expect("answer");
        statuses.push(answer[9..12].to_owned());
    }
    terminate(child.id().expect("pid"));
    assert!(child.wait().await.expect("exits").success());
    let log = log.await.expect("log read");

    // 500, 500, then 310000: 400; a hang: 504; a throttle: the robot is
    // held and the event queued (200), then the next queued behind it (200).
    assert_eq!(
        statuses,
        ["400", "504", "200", "200"],
        "the failures really happened"
    );
    assert!(
        log.contains("event handled") && log.contains("errcode=310000"),
        "{log}"
    );
    assert!(log.contains("THROTTLED"), "the throttle is logged loudly");
    assert!(!log.contains(TOKEN), "the access token leaked into the log");
    assert!(!log.contains(SECRET), "the secret leaked into the log");
    assert!(!log.contains("&sign="), "a signature leaked into the log");
}

#[tokio::test]
async fn hostile_events_make_short_logs() {
    let fake = FakeDingTalk::start(vec![RobotSpec::signed(TOKEN, SECRET)])
        .await
        .expect("fake starts");
    let port = free_port();
    let config = write_config("short-logs.yml", &config_for(&fake, port));
    let (mut child, log) = start_logging("short-logs", &config, "info", port).await;

    // A batch of 500 events no robot can take, and one event with a 3 MB id.
    let batch: Vec<String> = (0..500)
        .map(|i| {
            format!(
                r#"{{"specversion":"1.0","id":"bad-{i}","source":"test","type":"t","xvmsgtype":"image","data":"x"}}"#
            )
        })
        .collect();
    let batch = format!("[{}]", batch.join(","));
    let long_id = "i".repeat(3_000_000);
    let single = format!(
        r#"{{"specversion":"1.0","id":"{long_id}","source":"test","type":"t","xvmsgtype":"image","data":"x"}}"#
    );
    let answers = tokio::task::spawn_blocking(move || {
        let batch = request(
            port,
            "POST",
            "/",
            &[("content-type", connector_sdk::testing::BATCH_CONTENT_TYPE)],
            &batch,
        );
        let single = request(
            port,
            "POST",
            "/",
            &[(
                "content-type",
                connector_sdk::testing::STRUCTURED_CONTENT_TYPE,
            )],
            &single,
        );
        (batch, single)
    })
    .await
    .expect("requests");
    for answer in [answers.0, answers.1] {
        let answer = answer.expect("an answer");
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{}",
            &answer[..200.min(answer.len())]
        );
        assert!(
            answer.len() < 4096,
            "a short answer: {} bytes",
            answer.len()
        );
    }
    terminate(child.id().expect("pid"));
    assert!(child.wait().await.expect("exits").success());
    let log = log.await.expect("log read");

    let handled = log.lines().filter(|l| l.contains("event handled")).count();
    assert_eq!(handled, 11, "10 of the batch and the single one:\n{log}");
    assert!(
        log.contains("rejected=500") && log.contains("logged at debug"),
        "one summary line for the rest:\n{log}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
}
