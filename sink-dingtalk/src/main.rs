//! The `sink-dingtalk` binary: the DingTalk sink on the connector runtime.

fn main() -> std::process::ExitCode {
    connector_sdk::run::<sink_dingtalk::DingTalkSink>()
}
