//! The ready rules in `config/templates/` against real payload samples
//! (`config/templates/samples/`): each sample is picked by its rule's
//! `match` alone, and renders exactly the reviewed body beside it
//! (`<sample>.expected.json`, times in Asia/Shanghai).

use std::path::PathBuf;

use connector_sdk::Event;
use serde::Deserialize;
use serde_json::Value;
use sink_dingtalk::template::{DEFAULT_TIMEZONE, TemplateRule, Templates};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/templates")
}

#[derive(Deserialize)]
struct RuleFile {
    templates: Vec<TemplateRule>,
}

fn rules(file: &str) -> Vec<TemplateRule> {
    let text = std::fs::read_to_string(dir().join(file)).expect("rule file");
    serde_norway::from_str::<RuleFile>(&text)
        .expect("a templates: list")
        .templates
}

fn sample(name: &str) -> Event {
    let text = std::fs::read_to_string(dir().join("samples").join(format!("{name}.json")))
        .expect("sample event");
    serde_json::from_str(&text).expect("a structured-mode CloudEvent")
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join("samples").join(format!("{name}.expected.json")))
        .expect("expected body");
    serde_json::from_str(&text).expect("JSON")
}

/// Renders `sample` with the rules of `file`, checking that `rule` is the
/// one its match picks.
fn check(file: &str, rule: &str, sample_name: &str) {
    let templates = Templates::compile(&rules(file), DEFAULT_TIMEZONE)
        .unwrap_or_else(|problems| panic!("{file} compiles: {problems:?}"));
    let event = sample(sample_name);
    let picked = templates
        .pick(&event, "ops")
        .expect("no xvtemplate error")
        .and_then(|r| r.name.clone());
    assert_eq!(
        picked.as_deref(),
        Some(rule),
        "{sample_name} is matched by {rule}"
    );
    let message = templates
        .message_for(&event, "ops")
        .unwrap_or_else(|err| panic!("{sample_name} renders: {err}"));
    let mut body: Value = serde_json::from_slice(&message.body).expect("JSON body");
    body.as_object_mut().map(|b| b.remove("msgUuid"));
    assert_eq!(body, expected(sample_name), "{sample_name}");
}

#[test]
fn alertmanager_firing_group() {
    check("alertmanager.yml", "alertmanager", "alertmanager");
}

#[test]
fn alertmanager_resolved_group() {
    check("alertmanager.yml", "alertmanager", "alertmanager-resolved");
}

#[test]
fn github_push() {
    check("github.yml", "github-push", "github-push");
}

#[test]
fn github_pull_request_opened() {
    check("github.yml", "github-pull-request", "github-pull-request");
}

#[test]
fn grafana_alerts() {
    check("grafana.yml", "grafana", "grafana");
}

#[test]
fn all_ready_rules_fit_in_one_config() {
    let all: Vec<TemplateRule> = ["alertmanager.yml", "github.yml", "grafana.yml"]
        .into_iter()
        .flat_map(rules)
        .collect();
    let templates = Templates::compile(&all, DEFAULT_TIMEZONE).expect("no conflicts");
    // Each sample still finds its own rule among all of them.
    for (name, rule) in [
        ("alertmanager", "alertmanager"),
        ("github-push", "github-push"),
        ("github-pull-request", "github-pull-request"),
        ("grafana", "grafana"),
    ] {
        let picked = templates
            .pick(&sample(name), "ops")
            .expect("no error")
            .and_then(|r| r.name.clone());
        assert_eq!(picked.as_deref(), Some(rule), "{name}");
    }
}

#[test]
fn a_bigger_push_lists_ten_commits_and_counts_the_rest() {
    let templates = Templates::compile(&rules("github.yml"), DEFAULT_TIMEZONE).expect("compiles");
    let mut event = sample("github-push");
    let mut data: Value = match event.take_data().2 {
        Some(connector_sdk::cloudevents::Data::Json(json)) => json,
        other => panic!("JSON data expected, got {other:?}"),
    };
    let commit = data["commits"][0].clone();
    data["commits"] = Value::Array(vec![commit; 13]);
    event.set_data("application/json", data);
    let message = templates.message_for(&event, "ops").expect("renders");
    let body: Value = serde_json::from_slice(&message.body).expect("JSON");
    let text = body["markdown"]["text"].as_str().expect("text");
    assert!(text.contains("pushed 13 commits"), "{text}");
    assert_eq!(text.matches("- [`9e1b5f3`]").count(), 10, "{text}");
    assert!(text.contains("- … and 3 more"), "{text}");
}
