//! `render`: what an event would become (`render EVENT`), or what a file of
//! events would become as digests (`render --digest EVENTS`), sending
//! nothing.

use std::path::Path;
use std::process::ExitCode;

use connector_sdk::Event;
use connector_sdk::cloudevents::AttributesReader;

use super::load_for_command;
use crate::config::DingTalkConfig;
use crate::message::digest::{self, Summary};
use crate::plan::{Plan, digest_timezone};
use crate::route::{asked_group, not_configured};

/// `render`: what the sink would POST for the event in `event_path`, and
/// where; nothing is sent. Exit 1 when the sink would answer 400.
pub fn render(config: Option<&Path>, event_path: &Path) -> ExitCode {
    let loaded = match load_for_command(config) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let event = match read_event(event_path) {
        Ok(event) => event,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rendered(&loaded.sink, &event) {
        Ok(lines) => {
            println!("{lines}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!(
                "not sendable (the sink answers 400): event {}: {reason}",
                event.id()
            );
            ExitCode::FAILURE
        }
    }
}

/// The lines `render` prints, or why the sink would refuse the event.
pub fn rendered(config: &DingTalkConfig, event: &Event) -> Result<String, String> {
    let plan = Plan::build(config).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        problems.join("; ")
    })?;
    let group = chat_group_of(&plan, event)?;
    let rule = plan
        .templates
        .pick(event, &group)
        .map_err(|err| err.to_string())?
        .map_or_else(
            || "none (the event's data is the message)".to_owned(),
            |r| r.label(),
        );
    let message = plan
        .templates
        .message_for(event, &group)
        .map_err(|err| err.to_string())?;
    Ok(format!(
        "chat group: {group}\nmsgtype: {}\ntemplate: {rule}\n{}",
        message.msgtype,
        String::from_utf8_lossy(&message.body)
    ))
}

/// The chat group the sink sends `event` to: `xvchatgroup`, else the
/// default; it must be configured.
fn chat_group_of(plan: &Plan, event: &Event) -> Result<String, String> {
    let asked = asked_group(event);
    let asked = asked.as_deref().unwrap_or(&plan.default_group);
    let configured = || plan.groups.iter().map(|g| g.name.as_str());
    if configured().any(|group| group == asked) {
        Ok(asked.to_owned())
    } else {
        Err(not_configured(asked, configured()))
    }
}

/// `render --digest`: the digests the events in `events_path` (JSON
/// Lines) would become; nothing is sent. Exit 1 when an event would be
/// answered 400 (the rest are still shown).
pub fn render_digest(config: Option<&Path>, events_path: &Path) -> ExitCode {
    let loaded = match load_for_command(config) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let events = match read_events(events_path) {
        Ok(events) => events,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rendered_digests(&loaded.sink, &events) {
        Ok((text, refused)) => {
            println!("{text}");
            for reason in &refused {
                println!("not sendable (the sink answers 400): {reason}");
            }
            if refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What `render --digest` prints for `events`: per chat group, in the
/// order first seen, each digest's markdown as the group reads it; and the
/// events the sink would refuse, each with why.
pub fn rendered_digests(
    config: &DingTalkConfig,
    events: &[Event],
) -> Result<(String, Vec<String>), String> {
    let plan = Plan::build(config).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        problems.join("; ")
    })?;
    let timezone = digest_timezone(config);
    let mut groups: Vec<(String, Vec<Summary>)> = Vec::new();
    let mut refused = Vec::new();
    for event in events {
        let prepared = chat_group_of(&plan, event).and_then(|group| {
            plan.templates
                .prepare(event, &group)
                .map(|prepared| (group, prepared))
                .map_err(|err| err.to_string())
        });
        let (group, (message, meta)) = match prepared {
            Ok(prepared) => prepared,
            Err(reason) => {
                refused.push(format!("event {}: {reason}", event.id()));
                continue;
            }
        };
        let at_ms = event
            .time()
            .map_or_else(connector_sdk::deliver::now_ms, |t| t.timestamp_millis());
        let summary = Summary::of_json(&message.json, at_ms).with(meta);
        match groups.iter_mut().find(|(name, _)| *name == group) {
            Some((_, summaries)) => summaries.push(summary),
            None => groups.push((group, vec![summary])),
        }
    }
    let mut out = Vec::new();
    for (group, summaries) in &groups {
        let mut rest = summaries.as_slice();
        let mut number = 0;
        while !rest.is_empty() {
            number += 1;
            let Some(packed) = digest::pack(rest, timezone, "render") else {
                out.push(format!(
                    "chat group: {group}, digest {number}: the next event does not fit in a digest; it is sent on its own"
                ));
                rest = &rest[1..];
                continue;
            };
            let body: serde_json::Value = serde_json::from_slice(&packed.body).unwrap_or_default();
            out.push(format!(
                "chat group: {group}, digest {number}: {} events, {} bytes\n---\n{}\n---",
                packed.count,
                packed.body.len(),
                body["markdown"]["text"].as_str().unwrap_or_default()
            ));
            rest = &rest[packed.count.max(1)..];
        }
    }
    Ok((out.join("\n"), refused))
}

/// The text of `path` (`-`: standard input).
fn read_text(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|err| format!("cannot read {}: {err}", path.display()))
}

/// The events of a JSON Lines file (`-`: standard input); blank lines skipped.
fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|err| {
                format!(
                    "{} line {}: not a CloudEvent in structured-mode JSON ({err}); one event a line, with specversion, id, source and type",
                    path.display(),
                    number + 1
                )
            })
        })
        .collect()
}

fn read_event(path: &Path) -> Result<Event, String> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|err| {
        format!(
            "{} is not a CloudEvent in structured-mode JSON ({err}); with specversion, id, source and type",
            path.display()
        )
    })
}
