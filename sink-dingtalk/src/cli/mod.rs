//! The command line beside the server: `--check-config` validates a config
//! file and summarizes it; `send` posts one message through the same code
//! path an event takes, the first thing to try after creating a robot;
//! `render` shows what an event would become, sending nothing, the first
//! thing to try while writing a template.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use connector_sdk::cloudevents::{EventBuilder, EventBuilderV10};
use connector_sdk::config::{self, Loaded};
use connector_sdk::store::{self, Embedded, OpenError, Opened};
use connector_sdk::{ConfigError, Outcome};

use crate::config::DingTalkConfig;
use crate::message::MSGTYPE_EXTENSION;
use crate::plan::Plan;
use crate::sink::{CHAT_GROUP_EXTENSION, DingTalkSink};

mod render;

pub use render::{render, render_digest, rendered, rendered_digests};

/// Delivers CloudEvents to DingTalk group chats (a Vanus Connect sink).
///
/// Without a command it runs the sink: HTTP on `port`, gRPC on `grpc_port`,
/// configured by the YAML file at $CONNECTOR_CONFIG
/// (default /vanus-connect/config/config.yml).
#[derive(Debug, Parser)]
#[command(name = "sink-dingtalk", version, about, long_about)]
pub struct Cli {
    /// Validate the config file (default: $CONNECTOR_CONFIG), print every
    /// problem or a summary, and exit.
    #[arg(long, value_name = "PATH")]
    #[allow(clippy::option_option)] // absent / `--check-config` / `--check-config PATH`
    pub check_config: Option<Option<PathBuf>>,

    /// What to do instead of running the sink.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one message to a chat group and print DingTalk's answer.
    Send {
        /// The chat group (default: the configured default group).
        #[arg(long)]
        group: Option<String>,
        /// The message type: text, link, markdown, actionCard or feedCard.
        #[arg(long = "type", default_value = "text")]
        msgtype: String,
        /// The config file (default: $CONNECTOR_CONFIG).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The message: plain text for text, the type's JSON object otherwise.
        data: String,
    },
    /// Print the chat group, message type and exact body the sink would
    /// POST for a CloudEvent, sending nothing; with `--digest`, the
    /// digests a file of events would become.
    Render {
        /// The config file (default: $CONNECTOR_CONFIG).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Read one CloudEvent a line (JSON Lines) and print the digest, or
        /// digests, they would be merged into if all were queued, per chat
        /// group, with the config's digest rules.
        #[arg(long)]
        digest: bool,
        /// A CloudEvent in structured-mode JSON (`-` reads standard input);
        /// with `--digest`, a file of them, one a line.
        event: PathBuf,
    },
}

/// The config path given, or the one the runtime would use.
fn path_or_default(path: Option<&Path>) -> PathBuf {
    path.map_or_else(config::config_path, Path::to_owned)
}

fn load(path: &Path) -> Result<Loaded<DingTalkConfig>, ConfigError> {
    config::load::<DingTalkConfig>(path)
}

/// The config a command runs with (`config`, else the runtime's), its
/// unknown keys warned of; or, said on stderr, why there is none.
fn load_for_command(config: Option<&Path>) -> Result<Loaded<DingTalkConfig>, ExitCode> {
    let loaded = load(&path_or_default(config)).map_err(|err| {
        eprintln!("{err}");
        ExitCode::FAILURE
    })?;
    warn_unknown_keys(&loaded);
    Ok(loaded)
}

/// `--check-config`: prints the problems (exit 1) or a summary (exit 0).
pub fn check_config(path: Option<&Path>) -> ExitCode {
    let path = path_or_default(path);
    match load(&path) {
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
        Ok(loaded) => {
            println!("{} is valid.", path.display());
            println!("{}", summary(&loaded));
            warn_unknown_keys(&loaded);
            ExitCode::SUCCESS
        }
    }
}

/// Unknown keys, on stderr: the server logs them; a command says them.
fn warn_unknown_keys(loaded: &Loaded<DingTalkConfig>) {
    for key in &loaded.unknown_keys {
        eprintln!("warning: {key}");
    }
}

/// A short, secret-free description of a valid config.
pub fn summary(loaded: &Loaded<DingTalkConfig>) -> String {
    let sink = &loaded.sink;
    let mut lines = vec![format!(
        "HTTP port {}, gRPC {}",
        loaded.runtime.port,
        loaded
            .runtime
            .grpc_addr()
            .map_or("off".to_owned(), |addr| format!("port {}", addr.port()))
    )];
    let store = &loaded.runtime.store;
    let where_ = match &store.redis {
        Some(redis) => format!(
            "Redis at {}, keys under `{}:` (shared by every replica)",
            redis.masked_url(),
            redis
                .key_prefix
                .as_deref()
                .unwrap_or(<crate::DingTalkSink as connector_sdk::Sink>::name())
        ),
        None => format!("{} (embedded)", store.path.display()),
    };
    lines.push(format!(
        "store: {where_}; the ledger remembers accepted events for {} s",
        loaded.runtime.ledger_ttl_secs
    ));
    lines.push(if sink.digest.enabled {
        format!(
            "past a robot's budget: queued (at most {} each) and sent in digests; {} of each robot's sends kept for them",
            sink.digest.max_queued, sink.digest.reserved
        )
    } else {
        "past a robot's budget: answered 429 (digests off)".to_owned()
    });
    lines.push(format!(
        "default chat group: {}",
        sink.default_group().unwrap_or("-")
    ));
    // A valid config always has a plan.
    if let Ok(plan) = Plan::build(sink) {
        for group in &plan.groups {
            if let Some(on) = &group.app {
                let app = &plan.apps[on.app];
                lines.push(format!(
                    "  {:<16} app robot `{}` ({}), conversation {}, {} a minute",
                    group.name, app.name, app.api_base, on.open_conversation_id, app.per_minute
                ));
            }
            for robot in plan.robots_of(group) {
                lines.push(format!(
                    "  {:<16} {} {}, {} a minute{}",
                    group.name,
                    robot.webhook.masked(),
                    if robot.secret.is_some() {
                        "signed"
                    } else {
                        "unsigned"
                    },
                    robot.per_minute,
                    if robot.paced { "" } else { ", NOT paced" }
                ));
            }
        }
    }
    if !sink.templates.is_empty() {
        lines.push(format!("templates (times in {}):", sink.templates_timezone));
    }
    for (index, rule) in sink.templates.iter().enumerate() {
        let name = rule
            .name
            .as_ref()
            .map(|name| format!(" `{name}`"))
            .unwrap_or_default();
        let applies = match &rule.matches {
            None => "only by xvtemplate".to_owned(),
            Some(m) => [
                ("type", &m.event_type),
                ("source", &m.source),
                ("chat_group", &m.chat_group),
            ]
            .into_iter()
            .filter_map(|(key, glob)| glob.as_ref().map(|glob| format!("{key} {glob}")))
            .collect::<Vec<_>>()
            .join(", "),
        };
        lines.push(format!(
            "  templates.{index}{name}: {applies} -> {}",
            rule.msgtype
        ));
    }
    lines.join("\n")
}

/// `send`: builds an event like a sender would and delivers it.
pub async fn send(
    group: Option<String>,
    msgtype: &str,
    config: Option<&Path>,
    data: String,
) -> ExitCode {
    let loaded = match load_for_command(config) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let group = group
        .or_else(|| loaded.sink.default_group().map(str::to_owned))
        .unwrap_or_default();
    let store = match send_store(&loaded) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = loaded.sink;
    // One message, now: over the budget it is refused, never queued in an
    // outbox no flusher here would empty.
    config.digest.enabled = false;
    let plan = match Plan::build(&config) {
        Ok(plan) => plan,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    let sink = match DingTalkSink::new(plan, store.sink()).await {
        Ok(sink) => sink,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let event = match test_event(&group, msgtype, data) {
        Ok(event) => event,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = sink.deliver(vec![event]).await.into_iter().next();
    store.close().await;
    let outcome = outcome.unwrap_or_else(|| Outcome::rejected("no outcome"));
    match outcome {
        Outcome::Delivered => {
            println!("delivered to chat group {group}: DingTalk answered errcode 0 (ok)");
            ExitCode::SUCCESS
        }
        Outcome::Queued => {
            println!(
                "queued in the outbox of chat group {group}: not sent yet; a running sink sharing this store sends it"
            );
            ExitCode::SUCCESS
        }
        other => {
            println!("not delivered ({}): {}", other.class(), other.reason());
            ExitCode::FAILURE
        }
    }
}

/// The sink's own store, so the message counts toward the robot's budget;
/// while the sink runs and holds it, a store of this process alone.
fn send_store(loaded: &Loaded<DingTalkConfig>) -> Result<Opened, OpenError> {
    match store::open(
        &loaded.runtime.store,
        <crate::DingTalkSink as connector_sdk::Sink>::name(),
    ) {
        Ok(store) => Ok(store),
        Err(err) => {
            eprintln!(
                "note: {err}\nnote: sending without it: this message does not count toward the running sink's budget"
            );
            Ok(Opened::new(Arc::new(Embedded::in_memory()?)))
        }
    }
}

fn test_event(group: &str, msgtype: &str, data: String) -> Result<connector_sdk::Event, String> {
    let id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let builder = EventBuilderV10::new()
        .id(format!("cli-{id}"))
        .source("sink-dingtalk/cli")
        .ty("sink-dingtalk.send")
        .extension(CHAT_GROUP_EXTENSION, group)
        .extension(MSGTYPE_EXTENSION, msgtype);
    let builder = if msgtype.eq_ignore_ascii_case("text") {
        builder.data("text/plain", data)
    } else {
        let json: serde_json::Value = serde_json::from_str(&data).map_err(|err| {
            format!("a {msgtype} message needs its fields as a JSON object: {err}")
        })?;
        builder.data("application/json", json)
    };
    builder.build().map_err(|err| err.to_string())
}
