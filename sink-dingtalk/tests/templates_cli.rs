//! Templates as an operator meets them: `render` shows the exact body and
//! sends nothing; a broken template stops start-up (and `--check-config`)
//! naming its key and line; a mistyped key is a warning, not a stop.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fake_dingtalk::{FakeDingTalk, RobotSpec};
use serde_json::Value;

const TOKEN: &str = "renderTOKEN42";

fn ready_rules(file: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../config/templates/{file}")),
    )
    .expect("ready rule file")
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../config/templates/samples/{name}.json"))
}

/// Runs the binary with `args` and a fresh store named `store`.
fn run(store: &str, args: &[&str]) -> (bool, String, String) {
    said(&sink_binary(store).args(args).output().expect("binary runs"))
}

#[tokio::test]
async fn render_prints_group_type_and_exact_body_and_sends_nothing() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new(TOKEN)])
        .await
        .expect("fake starts");
    let config = write_config(
        "render.yml",
        &format!(
            "bot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\n{}",
            fake.webhook_url(TOKEN),
            ready_rules("alertmanager.yml")
        ),
    );
    let config = config.to_str().expect("utf-8 path");
    let event = sample("alertmanager");
    let (ok, stdout, stderr) = run(
        "render-alertmanager",
        &["render", "--config", config, event.to_str().expect("path")],
    );
    assert!(ok, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "chat group: ops",
            "msgtype: markdown",
            "template: `alertmanager` (templates.0)"
        ]
    );
    let mut body: Value = serde_json::from_str(lines[3]).expect("the body, as JSON");
    assert!(
        body["msgUuid"].is_string(),
        "the exact body has its msgUuid"
    );
    body.as_object_mut().map(|b| b.remove("msgUuid"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(sample("alertmanager.expected")).expect("expected body"),
    )
    .expect("JSON");
    assert_eq!(body, expected);

    // An event the sink would refuse: exit 1 with the 400's reason.
    let plain = write_config(
        "render-event.json",
        r#"{"specversion":"1.0","id":"r1","source":"s","type":"quickstart","xvchatgroup":"nowhere","data":"hi"}"#,
    );
    let (ok, stdout, _) = run(
        "render-plain",
        &["render", "--config", config, plain.to_str().expect("path")],
    );
    assert!(!ok);
    assert!(
        stdout.contains("answers 400")
            && stdout.contains("xvchatgroup `nowhere` is not configured"),
        "{stdout}"
    );

    assert_eq!(fake.requests_for(TOKEN), 0, "render sent nothing");
}

#[test]
fn render_without_a_matching_rule_shows_the_plain_message() {
    let config = write_config(
        "render-plain.yml",
        &format!(
            "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n{}",
            ready_rules("github.yml")
        ),
    );
    let event = write_config(
        "render-plain.json",
        r#"{"specversion":"1.0","id":"p1","source":"s","type":"quickstart","xvmsgtype":"markdown","datacontenttype":"application/json","data":{"title":"t","text":"**hi**"}}"#,
    );
    let (ok, stdout, stderr) = run(
        "render-plain-data",
        &[
            "render",
            "--config",
            config.to_str().expect("path"),
            event.to_str().expect("path"),
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("template: none (the event's data is the message)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""markdown":{"text":"**hi**","title":"t"}"#),
        "{stdout}"
    );
}

#[test]
fn render_digest_shows_what_a_storm_becomes_grouped() {
    let config = write_config(
        "render-digest.yml",
        "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n",
    );
    let mut lines = String::new();
    for i in 1..=30 {
        lines.push_str(&format!(
            r#"{{"specversion":"1.0","id":"storm-{i}","source":"alertmanager","type":"alert","time":"2026-11-21T01:14:{i:02}Z","datacontenttype":"text/plain","data":"[FIRING] DiskFull on db-{i}: /var/lib is 97% full"}}"#
        ));
        lines.push('\n');
    }
    lines.push_str(r#"{"specversion":"1.0","id":"bad","source":"s","type":"t","xvchatgroup":"nowhere","data":"x"}"#);
    let events = write_config("render-digest.jsonl", &lines);
    let (ok, stdout, stderr) = run(
        "render-digest",
        &[
            "render",
            "--digest",
            "--config",
            config.to_str().expect("path"),
            events.to_str().expect("path"),
        ],
    );
    assert!(
        !ok,
        "an event it would refuse makes the exit 1: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("chat group: ops, digest 1: 30 events"),
        "{stdout}"
    );
    let hosts: Vec<String> = (1..=30).map(|i| format!("db-{i}")).collect();
    assert!(
        stdout.contains(&format!(
            "**30 ×** [FIRING] DiskFull on …: /var/lib is 97% full — {}",
            hosts.join(", ")
        )),
        "one section, every host: {stdout}"
    );
    assert!(
        stdout.contains("not sendable (the sink answers 400): event bad: "),
        "{stdout}"
    );
}

const BROKEN: &str = r#"
bot:
  webhooks:
    - chat_group: ops
      url: http://127.0.0.1:9/robot/send?access_token=t
templates:
  - name: broken
    match: { type: "*" }
    msgtype: markdown
    message:
      title: "ok"
      text: |
        ### {{ data.title }}
        {% for a in data.alerts %}
        - {{ a.name }
        {% endfor %}
"#;

#[test]
fn a_broken_template_stops_start_up_naming_its_key_and_line() {
    let config = write_config("broken-template.yml", BROKEN);
    let output = sink_binary("broken-template")
        .env("CONNECTOR_CONFIG", &config)
        .env("CONNECTOR_PORT", "0")
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("templates.0.message.text: line 3: syntax error"),
        "{stderr}"
    );

    let (ok, _, stderr) = run(
        "check-broken",
        &["--check-config", config.to_str().expect("path")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("templates.0.message.text: line 3: syntax error"),
        "{stderr}"
    );
}

#[test]
fn check_config_lists_the_templates_and_warns_of_unknown_keys() {
    let config = write_config(
        "check-templates.yml",
        &format!(
            "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n      signiture: SECx\n{}",
            ready_rules("github.yml")
        ),
    );
    let (ok, stdout, stderr) = run(
        "check-templates",
        &["--check-config", config.to_str().expect("path")],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("templates (times in Asia/Shanghai):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("templates.0 `github-push`: type com.github.push -> markdown"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "warning: bot.webhooks.0.signiture: unknown key, ignored; did you mean `signature`?"
        ),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_is_a_warning_at_start_up_not_a_stop() {
    let port = free_port();
    let config = write_config(
        "typo.yml",
        "bot:\n  webhooks:\n    - chat_group: ops\n      url: http://127.0.0.1:9/robot/send?access_token=t\n      signiture: SECx\ndelivery:\n  deadline_msec: 2000\n",
    );
    let log = write_config("typo.log", "");
    let mut child = sink_binary("typo")
        .env("CONNECTOR_CONFIG", &config)
        .env("CONNECTOR_PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("binary starts");
    wait_ready(port);
    terminate(child.id());
    exit_within(&mut child, Duration::from_secs(20));
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains("unknown config key, ignored")
            && log.contains("key=bot.webhooks.0.signiture")
            && log.contains("did_you_mean=\"signature\""),
        "{log}"
    );
    assert!(
        log.contains("key=delivery.deadline_msec") && log.contains("did_you_mean=\"deadline_ms\""),
        "{log}"
    );
}
