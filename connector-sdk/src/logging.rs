//! Structured logs through `tracing`: `LOG_LEVEL` sets the level (or a full
//! filter such as `info,my_sink=debug`), `LOG_FORMAT=json` switches
//! from plain text to one JSON object per line.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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

/// How often a repeated error is logged at most.
pub(crate) const REPEAT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts a repeated error and says when to log it: at its first
/// occurrence, then at most once per interval, with how many happened.
#[derive(Debug, Default)]
pub(crate) struct Repeated {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Repeated {
    /// Notes one occurrence at `now`; returns how many to report when a
    /// line is due (this one included), else `None`.
    pub(crate) fn note(&mut self, now: Instant, every: Duration) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= every);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_logged_once_an_interval_with_its_count() {
        let every = Duration::from_secs(10);
        let start = Instant::now();
        let mut repeated = Repeated::default();
        assert_eq!(repeated.note(start, every), Some(1), "the first is logged");
        for n in 1..1000u64 {
            let at = start + Duration::from_millis(n);
            assert_eq!(
                repeated.note(at, every),
                None,
                "no line within the interval"
            );
        }
        assert_eq!(
            repeated.note(start + every, every),
            Some(1000),
            "one line with the count once the interval passed"
        );
        assert_eq!(repeated.note(start + every, every), None);
    }
}
