//! `fake-dingtalk`: runs the fake DingTalk robot server on its own, printing
//! each accepted message and each rejection to stdout as it happens.
//!
//! ```text
//! fake-dingtalk --listen 127.0.0.1:9000 --robot bot-token-1 --robot bot-2:SECxyz
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_dingtalk::{Event, FakeDingTalk, RobotSpec};
use tracing_subscriber::EnvFilter;

/// A fake DingTalk custom-robot webhook server.
#[derive(Debug, Parser)]
#[command(name = "fake-dingtalk", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,

    /// A robot, as TOKEN or TOKEN:SECRET (signed robot). Repeatable.
    #[arg(long = "robot", value_name = "TOKEN[:SECRET]", required = true, value_parser = parse_robot)]
    robots: Vec<RobotSpec>,

    /// Messages each robot accepts per minute.
    #[arg(long, default_value_t = fake_dingtalk::DEFAULT_PER_MINUTE)]
    per_minute: u32,

    /// Seconds a robot stays blocked after exceeding its limit.
    #[arg(long, default_value_t = fake_dingtalk::DEFAULT_BLOCK_FOR.as_secs())]
    block_secs: u64,

    /// Answer a repeated msgUuid ok without showing or counting it again
    /// (DingTalk documents no such thing: by default every POST counts).
    #[arg(long)]
    honour_msguuid: bool,
}

/// One `--robot` value; `--per-minute` and `--block-secs` apply later.
fn parse_robot(s: &str) -> Result<RobotSpec, String> {
    let (token, secret) = match s.split_once(':') {
        Some((token, secret)) => (token, Some(secret)),
        None => (s, None),
    };
    if token.is_empty() {
        return Err("the token must not be empty".into());
    }
    if secret.is_some_and(str::is_empty) {
        return Err("the secret after ':' must not be empty".into());
    }
    Ok(match secret {
        Some(secret) => RobotSpec::signed(token, secret),
        None => RobotSpec::new(token),
    })
}

/// The stdout line for an event, if it gets one.
fn line(event: &Event) -> String {
    match event {
        Event::Accepted(a) => format!("[{}] {}: {}", a.token, a.msgtype, a.body),
        Event::Duplicate { token, msg_uuid } => {
            format!("[{token}] duplicate msgUuid={msg_uuid} (answered ok, not recorded)")
        }
        Event::Rejected {
            token,
            errcode,
            errmsg,
        } => format!("[{token}] rejected errcode={errcode} errmsg={errmsg}"),
        Event::HttpFailure { token, status } => {
            format!("[{token}] injected failure HTTP {status}")
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let robots: Vec<RobotSpec> = args
        .robots
        .iter()
        .map(|spec| {
            let spec = spec
                .clone()
                .per_minute(args.per_minute)
                .block_for(Duration::from_secs(args.block_secs));
            if args.honour_msguuid {
                spec.honour_msg_uuid()
            } else {
                spec
            }
        })
        .collect();

    let fake = match FakeDingTalk::start_on(args.listen, robots).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-dingtalk: cannot start on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    fake.on_event(|event| println!("{}", line(event)));

    eprintln!("fake-dingtalk listening on http://{}", fake.addr());
    for r in &args.robots {
        let kind = if r.secret.is_some() {
            "signed"
        } else {
            "unsigned"
        };
        eprintln!("  {kind} robot: {}", fake.webhook_url(&r.token));
    }

    match shutdown_signal().await {
        Ok(()) => eprintln!("fake-dingtalk: shutting down"),
        Err(e) => eprintln!("fake-dingtalk: cannot wait for Ctrl-C ({e}); shutting down"),
    }
    fake.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_args() {
        let r = parse_robot("bot-1").unwrap();
        assert_eq!((r.token.as_str(), r.secret), ("bot-1", None));
        let r = parse_robot("bot-2:SECa:b").unwrap();
        assert_eq!(r.token, "bot-2");
        assert_eq!(r.secret.as_deref(), Some("SECa:b"));
        assert!(parse_robot(":SEC").is_err());
        assert!(parse_robot("bot:").is_err());
    }

    #[test]
    fn cli_parses() {
        let args = Args::try_parse_from([
            "fake-dingtalk",
            "--listen",
            "127.0.0.1:0",
            "--robot",
            "a",
            "--robot",
            "b:SECx",
            "--per-minute",
            "5",
        ])
        .unwrap();
        assert_eq!(args.robots.len(), 2);
        assert_eq!(args.per_minute, 5);
        assert_eq!(args.block_secs, 600);
        assert!(Args::try_parse_from(["fake-dingtalk"]).is_err());
    }

    #[test]
    fn event_lines() {
        let body = serde_json::json!({"msgtype": "text", "text": {"content": "Hello dingtalk"}});
        let accepted = fake_dingtalk::Accepted {
            token: "bot-token-1".into(),
            msgtype: "text".into(),
            body,
            at: std::time::SystemTime::now(),
        };
        assert_eq!(
            line(&Event::Accepted(accepted)),
            r#"[bot-token-1] text: {"msgtype":"text","text":{"content":"Hello dingtalk"}}"#
        );
        let rejected = Event::Rejected {
            token: "t".into(),
            errcode: 310_000,
            errmsg: "sign not match".into(),
        };
        assert_eq!(
            line(&rejected),
            "[t] rejected errcode=310000 errmsg=sign not match"
        );
    }
}
