//! The template set as the sink uses it: compiling a config's rules,
//! picking one for an event, rendering within the limits, and the errors a
//! user reads.

use connector_sdk::cloudevents::{EventBuilder, EventBuilderV10};
use serde_json::{Value, json};

use super::*;

fn rules(yaml: &str) -> Vec<TemplateRule> {
    serde_norway::from_str(yaml).expect("test rules parse")
}

fn compile(yaml: &str) -> Templates {
    Templates::compile(&rules(yaml), DEFAULT_TIMEZONE).expect("compiles")
}

fn problems(yaml: &str) -> Vec<String> {
    Templates::compile(&rules(yaml), DEFAULT_TIMEZONE)
        .expect_err("problems")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn event(ty: &str, extensions: &[(&str, &str)], data: Value) -> Event {
    let mut builder = EventBuilderV10::new()
        .id("e1")
        .source("https://am.example.com")
        .ty(ty);
    for (name, value) in extensions {
        builder = builder.extension(name, *value);
    }
    builder
        .data("application/json", data)
        .build()
        .expect("valid event")
}

fn body(message: &Message) -> Value {
    let mut body: Value = serde_json::from_slice(&message.body).expect("json body");
    body.as_object_mut().map(|b| b.remove("msgUuid"));
    body
}

const ALERTS: &str = r#"
- name: am
  match: { type: "com.example.alertmanager.*" }
  msgtype: markdown
  message:
    title: "{{ data.commonLabels.alertname }} {{ data.status }}"
    text: |
      ### {{ data.commonLabels.alertname }} ({{ data.alerts | length }})
      {% for a in data.alerts %}
      - {{ a.labels.instance }}: {{ a.annotations.summary }}
      {% endfor %}
- name: everything-else-of-example
  match: { type: "com.example.*" }
  msgtype: text
  message:
    content: "{{ type }}: {{ data | tojson }}"
"#;

fn two_alerts() -> Value {
    json!({
        "status": "firing",
        "commonLabels": {"alertname": "DiskFull"},
        "alerts": [
            {"labels": {"instance": "db-1"}, "annotations": {"summary": "95% used"}},
            {"labels": {"instance": "db-2"}, "annotations": {"summary": "97% used"}},
        ]
    })
}

#[test]
fn the_first_matching_rule_renders_the_message() {
    let templates = compile(ALERTS);
    let message = templates
        .message_for(
            &event("com.example.alertmanager.firing", &[], two_alerts()),
            "ops",
        )
        .expect("renders");
    assert_eq!(
        body(&message),
        json!({"msgtype": "markdown", "markdown": {
            "title": "DiskFull firing",
            "text": "### DiskFull (2)\n- db-1: 95% used\n- db-2: 97% used\n",
        }})
    );
    let other = templates
        .message_for(&event("com.example.deploy", &[], json!({"v": 1})), "ops")
        .expect("renders");
    assert_eq!(
        body(&other),
        json!({"msgtype": "text", "text": {"content": "com.example.deploy: {\"v\": 1}"}})
    );
}

#[test]
fn an_event_no_rule_matches_is_built_exactly_as_without_templates() {
    let templates = compile(ALERTS);
    let plain = event(
        "quickstart",
        &[("xvmsgtype", "markdown")],
        json!({"title": "t", "text": "**x**"}),
    );
    assert!(templates.pick(&plain, "ops").expect("no error").is_none());
    assert_eq!(
        templates.message_for(&plain, "ops").expect("builds"),
        message::build(&plain, "ops").expect("builds")
    );
    let refused = event("quickstart", &[("xvmsgtype", "image")], json!({}));
    assert_eq!(
        templates
            .message_for(&refused, "ops")
            .expect_err("refused")
            .to_string(),
        message::build(&refused, "ops")
            .expect_err("refused")
            .to_string()
    );
}

#[test]
fn xvtemplate_picks_a_rule_by_name_whatever_its_match() {
    let templates = compile(ALERTS);
    let named = event("anything.at.all", &[("xvtemplate", "am")], two_alerts());
    let rule = templates
        .pick(&named, "ops")
        .expect("known")
        .expect("a rule");
    assert_eq!(rule.name.as_deref(), Some("am"));

    let unknown = event(
        "com.example.alertmanager.x",
        &[("xvtemplate", "grafana")],
        two_alerts(),
    );
    assert_eq!(
        templates
            .message_for(&unknown, "ops")
            .expect_err("unknown")
            .to_string(),
        "xvtemplate `grafana` names no template; named templates: `am`, `everything-else-of-example`"
    );
}

#[test]
fn a_match_can_look_at_the_source_and_the_chat_group() {
    let templates = compile(
        r#"
- match: { chat_group: "dev*", source: "https://am.example.com" }
  msgtype: text
  message: { content: "dev: {{ id }}" }
"#,
    );
    let e = event("t", &[], json!({}));
    assert!(templates.pick(&e, "dev-team").expect("ok").is_some());
    assert!(templates.pick(&e, "ops").expect("ok").is_none());
}

#[test]
fn nested_fields_lists_and_literals_are_rendered_in_place() {
    let templates = compile(
        r#"
- name: card
  match: { type: "*" }
  msgtype: actionCard
  message:
    title: "{{ data.repo }}"
    text: "{{ data.count }} builds"
    btnOrientation: 1
    btns:
      - { title: "Logs", actionURL: "https://ci.example.com/{{ data.repo }}/logs" }
      - { title: "Retry", actionURL: "https://ci.example.com/{{ data.repo }}/retry" }
    at:
      atMobiles: ["{{ data.oncall }}"]
"#,
    );
    let e = event(
        "ci",
        &[],
        json!({"repo": "shop", "count": 3, "oncall": "13800000000"}),
    );
    let message = templates.message_for(&e, "ops").expect("renders");
    assert_eq!(
        body(&message),
        json!({
            "msgtype": "actionCard",
            "actionCard": {
                "title": "shop",
                "text": "3 builds\n\n@13800000000",
                "btnOrientation": 1,
                "btns": [
                    {"title": "Logs", "actionURL": "https://ci.example.com/shop/logs"},
                    {"title": "Retry", "actionURL": "https://ci.example.com/shop/retry"},
                ],
            },
            "at": {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": false},
        })
    );
}

#[test]
fn a_rendered_message_is_checked_like_any_other() {
    let templates = compile(
        r#"
- name: link
  match: { type: "*" }
  msgtype: link
  message: { title: "t", text: "x", messageUrl: "{{ data.url }}" }
"#,
    );
    let err = templates
        .message_for(&event("t", &[], json!({"url": "/relative"})), "ops")
        .expect_err("not a URL");
    assert_eq!(
        err.to_string(),
        "template `link` (templates.0): link.messageUrl must be an absolute http(s):// or dingtalk:// URL"
    );
}

#[test]
fn a_long_rendered_text_is_truncated_like_any_other() {
    let templates = compile(
        r#"
- match: { type: "*" }
  msgtype: markdown
  message:
    title: "many"
    text: "{% for i in range(3000) %}line {{ i }} of many\n{% endfor %}"
"#,
    );
    let message = templates
        .message_for(&event("t", &[], json!({})), "ops")
        .expect("fits after truncation");
    assert!(message.body.len() <= message::MAX_BODY_BYTES);
    assert!(
        body(&message)["markdown"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("(truncated, "))
    );
}

#[test]
fn an_undefined_value_names_the_rule_the_field_and_the_line() {
    let templates = compile(ALERTS);
    let data =
        json!({"status": "firing", "commonLabels": {"alertname": "X"}, "alerts": [{"labels": {}}]});
    let err = templates
        .message_for(&event("com.example.alertmanager.firing", &[], data), "ops")
        .expect_err("undefined");
    let text = err.to_string();
    assert!(
        text.starts_with("template `am` (templates.0): message.text line 3: undefined value"),
        "{text}"
    );
}

#[test]
fn lenient_rules_show_nothing_for_undefined_values() {
    let templates = compile(
        r#"
- match: { type: "*" }
  undefined: lenient
  msgtype: text
  message: { content: "[{{ data.missing.deeper }}]{% for x in data.nothing %}x{% endfor %}" }
"#,
    );
    let message = templates
        .message_for(&event("t", &[], json!({})), "ops")
        .expect("renders");
    assert_eq!(body(&message)["text"]["content"], "[]");
}

#[test]
fn the_runaway_template_runs_out_of_fuel() {
    let templates = compile(
        r#"
- name: runaway
  match: { type: "*" }
  msgtype: text
  message:
    content: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
"#,
    );
    let err = templates
        .message_for(&event("t", &[], json!({})), "ops")
        .expect_err("out of fuel");
    let text = err.to_string();
    assert!(
        text.starts_with("template `runaway` (templates.0): message.content line 1: the template ran past its limit of 500000 steps"),
        "{text}"
    );
}

#[test]
fn output_past_the_limit_stops_the_template() {
    let templates = compile(
        r#"
- name: flood
  match: { type: "*" }
  msgtype: text
  message:
    content: "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}"
"#,
    );
    let err = templates
        .message_for(&event("t", &[], json!({})), "ops")
        .expect_err("too much output");
    assert_eq!(
        err.to_string(),
        "template `flood` (templates.0): message.content: the message passed 262144 bytes (all fields together); loop over fewer items, e.g. data.alerts[:20]"
    );
}

#[test]
fn the_output_limit_counts_all_fields_together() {
    let templates = compile(
        r#"
- match: { type: "*" }
  msgtype: markdown
  message:
    title: "{{ 'x' * 200000 }}"
    text: "{{ 'y' * 100000 }}"
"#,
    );
    let err = templates
        .message_for(&event("t", &[], json!({})), "ops")
        .expect_err("too much output");
    // Fields render in key order: `text`, then `title`, which passes the limit.
    assert!(
        err.to_string()
            .contains("message.title: the message passed"),
        "{err}"
    );
}

#[test]
fn deep_recursion_is_stopped() {
    let templates = compile(
        r#"
- match: { type: "*" }
  msgtype: text
  message:
    content: "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}"
"#,
    );
    let err = templates
        .message_for(&event("t", &[], json!({})), "ops")
        .expect_err("too deep");
    assert!(err.to_string().contains("recursion"), "{err}");
}

#[test]
fn a_syntax_error_is_a_problem_at_its_key_with_its_line() {
    let found = problems(
        r#"
- match: { type: "*" }
  msgtype: actionCard
  message:
    title: "ok"
    text: "line one\n{% for a in data.alerts %}\nno end"
    btns:
      - { title: "{{ broken", actionURL: "https://x.example" }
"#,
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("templates.0.message.btns.0.title: line 1: syntax error: "),
        "{}",
        found[0]
    );
    assert!(
        found[1].starts_with("templates.0.message.text: line 3: syntax error: "),
        "{}",
        found[1]
    );
}

#[test]
fn every_rule_problem_is_reported_with_its_path() {
    let found = problems(
        r#"
- msgtype: text
  message: { content: "never used" }
- name: ""
  match: {}
  msgtype: image
  message: { content: "x" }
- name: twice
  match: { type: "a[" }
  msgtype: text
  message: { content: "x" }
- name: twice
  match: { type: "*" }
  msgtype: markdown
  message: { text: "{{ data }}" }
- match: { type: "*" }
  msgtype: link
  message: { title: "t", text: "x", messageUrl: "not a url" }
"#,
    );
    let paths: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        [
            "templates.0",
            "templates.1.name",
            "templates.1.match",
            "templates.1.msgtype",
            "templates.2.match.type",
            "templates.3.message",
            "templates.4.message",
            "templates.3.name",
        ],
        "{found:#?}"
    );
    assert!(
        found[5].contains("markdown.title is required"),
        "{}",
        found[5]
    );
    assert!(
        found[6].contains("link.messageUrl must be an absolute"),
        "{}",
        found[6]
    );
}

#[test]
fn an_unknown_time_zone_is_a_problem() {
    let err = Templates::compile(&[], "Beijing").expect_err("not a zone");
    assert_eq!(err[0].path, "templates_timezone");
    assert!(
        err[0].to_string().contains("`Beijing` is not a time zone"),
        "{}",
        err[0]
    );
    // IANA names are case-sensitive; the problem names the right spelling.
    let err = Templates::compile(&[], "asia/shanghai").expect_err("miscased");
    assert!(
        err[0].to_string().contains("case-sensitive: Asia/Shanghai"),
        "{}",
        err[0]
    );
    assert!(Templates::compile(&[], "UTC").is_ok());
}

#[test]
fn times_are_shown_in_the_configured_zone() {
    let rules = rules(
        r#"
- match: { type: "*" }
  msgtype: text
  message: { content: "{{ data.at | datetime('%H:%M') }}" }
"#,
    );
    let e = event("t", &[], json!({"at": "2024-05-01T10:30:00Z"}));
    for (zone, shown) in [("Asia/Shanghai", "18:30"), ("Europe/Berlin", "12:30")] {
        let templates = Templates::compile(&rules, zone).expect("compiles");
        let message = templates.message_for(&e, "ops").expect("renders");
        assert_eq!(body(&message)["text"]["content"], shown);
    }
}
