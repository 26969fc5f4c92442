//! The `sink-dingtalk` binary: the DingTalk sink on the connector runtime,
//! plus `--check-config`, `send` and `render` for operators.

use std::process::ExitCode;

use clap::Parser;
use sink_dingtalk::DingTalkSink;
use sink_dingtalk::cli::{self, Cli, Command};

#[cfg(not(target_env = "msvc"))]
mod allocator;
mod c_math;

fn main() -> ExitCode {
    let args = Cli::parse();
    if let Some(path) = &args.check_config {
        return cli::check_config(path.as_deref());
    }
    match args.command {
        None => connector_sdk::run::<DingTalkSink>(),
        Some(Command::Render {
            config,
            digest: false,
            event,
        }) => cli::render(config.as_deref(), &event),
        Some(Command::Render {
            config,
            digest: true,
            event,
        }) => cli::render_digest(config.as_deref(), &event),
        Some(Command::Send {
            group,
            msgtype,
            config,
            data,
        }) => {
            connector_sdk::init_logging();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    runtime.block_on(cli::send(group, &msgtype, config.as_deref(), data))
                }
                Err(err) => {
                    eprintln!("error: cannot start the async runtime: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
