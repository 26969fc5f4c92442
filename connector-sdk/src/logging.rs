//! Structured logs through `tracing`: `LOG_LEVEL` sets the level (or a full
//! filter such as `info,my_sink=debug`), `LOG_FORMAT=json` switches
//! from plain text to one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
    let (filter, bad_level) = match EnvFilter::try_new(&level) {
        Ok(filter) => (filter, None),
        Err(err) => (EnvFilter::new("info"), Some(err)),
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok()
        && let Some(err) = bad_level
    {
        tracing::warn!(%level, %err, "LOG_LEVEL is not a valid level or filter; using info");
    }
}
