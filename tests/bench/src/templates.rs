//! What a template costs per event, in process, beside the plain path: the
//! ready Alertmanager and GitHub push rules (`config/templates/`) on their
//! samples, against `message::build` on DingTalk-shaped data of the same
//! size; and how long the runaway template takes to be refused.
//!
//! Each path runs in [`BATCHES`] batches (interleaved, so they share the
//! machine's state), and the median batch gives the time per event. Bounded:
//! a fixed count of events, and no batch is repeated.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use connector_sdk::Event;
use connector_sdk::cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use serde::Deserialize;
use serde_json::{Value, json};
use sink_dingtalk::message;
use sink_dingtalk::template::{DEFAULT_TIMEZONE, TemplateRule, Templates, model};

/// Batches per path; the median is shown.
const BATCHES: usize = 7;

/// Events per batch.
const EVENTS_PER_BATCH: usize = 2_000;

/// Times the runaway template is refused; the median is shown.
const RUNAWAY_TRIES: usize = 5;

/// One row: what ran and what it cost.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// The body DingTalk would get, bytes.
    pub body_bytes: usize,
    /// Median time per event.
    pub per_event: Duration,
}

/// The template costs of one run.
#[derive(Debug, Clone)]
pub struct Cost {
    /// Plain and templated paths.
    pub rows: Vec<Row>,
    /// Median time to refuse the runaway template (its fuel runs out).
    pub runaway: Duration,
    /// Its answer.
    pub runaway_reason: String,
}

#[derive(Deserialize)]
struct RuleFile {
    templates: Vec<TemplateRule>,
}

fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/templates")
}

fn read(path: PathBuf) -> Result<String, String> {
    std::fs::read_to_string(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

fn rules(file: &str) -> Result<Vec<TemplateRule>, String> {
    let text = read(templates_dir().join(file))?;
    serde_norway::from_str::<RuleFile>(&text)
        .map(|f| f.templates)
        .map_err(|err| format!("{file}: {err}"))
}

fn sample(name: &str) -> Result<Event, String> {
    let text = read(templates_dir().join("samples").join(format!("{name}.json")))?;
    serde_json::from_str(&text).map_err(|err| format!("sample {name}: {err}"))
}

/// The same message as DingTalk-shaped data: what a sender without
/// templates would post for it.
fn plain_twin(event: &Event, rendered: &message::Message) -> Result<Event, String> {
    let body: Value = serde_json::from_slice(&rendered.body).map_err(|err| err.to_string())?;
    let msgtype = rendered.msgtype.as_str();
    EventBuilderV10::new()
        .id(event.id())
        .source(event.source().as_str())
        .ty("plain")
        .extension("xvmsgtype", msgtype)
        .data("application/json", body[msgtype].clone())
        .build()
        .map_err(|err| err.to_string())
}

/// One path an event can take to become a message.
enum Path {
    /// `message::build` on DingTalk-shaped data.
    Plain(Event),
    /// Only the template's model of the event.
    Model(Event),
    /// The whole templated path: pick, model, render, build.
    Template(Event),
}

impl Path {
    /// Runs the path once; the body's size (the model's: 0).
    fn run(&self, templates: &Templates) -> Result<usize, String> {
        match self {
            Path::Plain(event) => message::build(event, "ops")
                .map(|m| m.body.len())
                .map_err(|e| e.to_string()),
            Path::Model(event) => Ok(usize::from(model::of(event).is_undefined())),
            Path::Template(event) => templates
                .message_for(event, "ops")
                .map(|m| m.body.len())
                .map_err(|e| e.to_string()),
        }
    }
}

/// Measures every row. Takes a few seconds.
pub fn measure() -> Result<Cost, String> {
    let mut all = rules("alertmanager.yml")?;
    all.extend(rules("github.yml")?);
    all.push(
        serde_json::from_value(json!({
            "name": "runaway",
            "msgtype": "text",
            "message": {"content": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}
        }))
        .map_err(|err| err.to_string())?,
    );
    let templates = Templates::compile(&all, DEFAULT_TIMEZONE).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        problems.join("; ")
    })?;

    let mut paths: Vec<(String, Path)> = Vec::new();
    for (name, label) in [
        ("alertmanager", "Alertmanager rule, 2 alerts"),
        ("github-push", "GitHub push rule, 2 commits"),
    ] {
        let event = sample(name)?;
        let rendered = templates
            .message_for(&event, "ops")
            .map_err(|err| format!("{name}: {err}"))?;
        let size = serde_json::to_vec(&event)
            .map_err(|err| err.to_string())?
            .len();
        paths.push((
            format!("plain path, the same message as DingTalk-shaped data ({name})"),
            Path::Plain(plain_twin(&event, &rendered)?),
        ));
        paths.push((
            format!(
                "template path: {label} ({:.1} kB event)",
                size as f64 / 1000.0
            ),
            Path::Template(event.clone()),
        ));
        paths.push((
            "of which: the model (event to template values)".to_owned(),
            Path::Model(event),
        ));
    }

    let mut batches: Vec<Vec<Duration>> = vec![Vec::with_capacity(BATCHES); paths.len()];
    let mut bytes = vec![0; paths.len()];
    for _ in 0..BATCHES {
        for (index, (_, path)) in paths.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..EVENTS_PER_BATCH {
                bytes[index] = path.run(&templates)?;
            }
            batches[index].push(started.elapsed() / EVENTS_PER_BATCH as u32);
        }
    }
    let rows = paths
        .into_iter()
        .zip(batches)
        .zip(bytes)
        .map(|(((what, _), mut batches), body_bytes)| {
            batches.sort();
            Row {
                what,
                body_bytes,
                per_event: batches[batches.len() / 2],
            }
        })
        .collect();

    let runaway_event = EventBuilderV10::new()
        .id("runaway")
        .source("bench")
        .ty("t")
        .extension("xvtemplate", "runaway")
        .data("application/json", json!({}))
        .build()
        .map_err(|err| err.to_string())?;
    let mut tries = Vec::with_capacity(RUNAWAY_TRIES);
    let mut runaway_reason = String::new();
    for _ in 0..RUNAWAY_TRIES {
        let started = Instant::now();
        let refused = templates.message_for(&runaway_event, "ops");
        tries.push(started.elapsed());
        runaway_reason = match refused {
            Err(err) => err.to_string(),
            Ok(_) => return Err("the runaway template was not refused".into()),
        };
    }
    tries.sort();
    Ok(Cost {
        rows,
        runaway: tries[tries.len() / 2],
        runaway_reason,
    })
}

/// The section of `BENCHMARKS.md`.
pub fn markdown(md: &mut String, cost: &Cost) {
    use std::fmt::Write as _;
    let _ = writeln!(
        md,
        "### Templates: rendering cost per event
"
    );
    let _ = writeln!(
        md,
        "In process, one thread, beside the plain path in the same run: the ready rules of \
         `config/templates/` on their samples, against `message::build` on DingTalk-shaped data \
         making the same message. Median of {BATCHES} interleaved batches of {EVENTS_PER_BATCH} \
         events (`bench templates` runs this alone).\n"
    );
    let _ = writeln!(
        md,
        "| path | body | per event | events/s on one core |\n|---|---:|---:|---:|"
    );
    for row in &cost.rows {
        let body = if row.body_bytes > 1 {
            format!("{} B", row.body_bytes)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            md,
            "| {} | {body} | {:.1} µs | {} |",
            row.what,
            row.per_event.as_secs_f64() * 1e6,
            crate::format::thousands(1.0 / row.per_event.as_secs_f64().max(1e-9))
        );
    }
    let _ = writeln!(
        md,
        "\nThe runaway template (`range(100000)` nested twice) is refused in {:.1} ms (median of \
         {RUNAWAY_TRIES}): \"{}\".\n",
        cost.runaway.as_secs_f64() * 1e3,
        cost.runaway_reason
    );
}
