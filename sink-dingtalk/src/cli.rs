//! The command line beside the server: `--check-config` validates a config
//! file and summarizes it; `send` posts one message through the same code
//! path an event takes, the first thing to try after creating a robot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use connector_sdk::cloudevents::{EventBuilder, EventBuilderV10};
use std::sync::Arc;

use connector_sdk::config::{self, Loaded};
use connector_sdk::store::{Embedded, OpenError};
use connector_sdk::{ConfigError, Outcome, SINK_SCOPE, Store, open_store};

use crate::config::DingTalkConfig;
use crate::message::MSGTYPE_EXTENSION;
use crate::sink::{CHAT_GROUP_EXTENSION, DingTalkSink};

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
}

/// The config path given, or the one the runtime would use.
fn path_or_default(path: Option<&Path>) -> PathBuf {
    path.map_or_else(config::config_path, Path::to_owned)
}

fn load(path: &Path) -> Result<Loaded<DingTalkConfig>, ConfigError> {
    config::load::<DingTalkConfig>(path)
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
            ExitCode::SUCCESS
        }
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
    lines.push(format!(
        "default chat group: {}",
        sink.default_group().unwrap_or("-")
    ));
    for webhook in &sink.bot.webhooks {
        let url = webhook
            .url
            .webhook()
            .map(crate::webhook::Webhook::masked)
            .unwrap_or_default();
        lines.push(format!(
            "  {:<16} {} {}, {} a minute{}",
            webhook.chat_group,
            url,
            if webhook.signature.is_some() {
                "signed"
            } else {
                "unsigned"
            },
            webhook.per_minute,
            if webhook.paced { "" } else { ", NOT paced" }
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
    let path = path_or_default(config);
    let loaded = match load(&path) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
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
    let sink = match DingTalkSink::new(config, store.scope(SINK_SCOPE)).await {
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
        other => {
            println!("not delivered ({}): {}", other.class(), other.reason());
            ExitCode::FAILURE
        }
    }
}

/// The sink's own store, so the message counts toward the robot's budget;
/// while the sink runs and holds it, a store of this process alone.
fn send_store(loaded: &Loaded<DingTalkConfig>) -> Result<Store, OpenError> {
    match open_store(&loaded.runtime) {
        Ok(store) => Ok(store),
        Err(err) => {
            eprintln!(
                "note: {err}\nnote: sending without it: this message does not count toward the running sink's budget"
            );
            Ok(Store::new(Arc::new(Embedded::in_memory()?)))
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
