//! The filters templates need beyond the engine's own: times in the
//! reader's time zone, markdown escaping, and truncation.
//!
//! - `datetime(format="%Y-%m-%d %H:%M:%S", tz=templates_timezone)`: an RFC 3339
//!   time (`2024-05-01T10:30:00Z`, `...+02:00`) or Unix seconds, shown in a
//!   time zone with a strftime format.
//! - `markdown_escape`: a value shown literally in markdown: `*`, `_`, `` ` ``,
//!   `[`, `]`, `<`, `>`, `|`, `~` and `\` escaped anywhere, `#`, `-`, `+`, `>`
//!   and `1.` at the start of a line.
//! - `truncate(length=255, end="...", killwords=false, leeway=5)`: at most
//!   about `length` characters, as Jinja2's filter (keyword arguments but the
//!   length).

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

use crate::zone::Zone;

/// The default `datetime` format: `2024-05-01 18:30:00`.
pub const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Adds the filters to `env`; `timezone` is `datetime`'s default.
pub fn register(env: &mut Environment<'_>, timezone: Zone) {
    env.add_filter(
        "datetime",
        move |state: &State, value: Value, format: Option<String>, kwargs: Kwargs| {
            datetime(state, &value, format.as_deref(), &kwargs, timezone)
        },
    );
    env.add_filter("markdown_escape", markdown_escape);
    env.add_filter("truncate", truncate);
}

fn datetime(
    state: &State,
    value: &Value,
    format: Option<&str>,
    kwargs: &Kwargs,
    default_tz: Zone,
) -> Result<String, Error> {
    let tz = match kwargs.get::<Option<String>>("tz")? {
        Some(name) => name
            .parse::<Zone>()
            .map_err(|err| invalid(format!("datetime: {err}")))?,
        None => default_tz,
    };
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return match state.undefined_behavior() {
            UndefinedBehavior::Strict | UndefinedBehavior::SemiStrict => Err(Error::new(
                ErrorKind::UndefinedError,
                "datetime of an undefined value",
            )),
            _ => Ok(String::new()),
        };
    }
    let instant = instant(value)?;
    let format = format.unwrap_or(DEFAULT_TIME_FORMAT);
    let mut shown = String::new();
    // An unknown specifier makes chrono's Display fail: report it, never panic.
    write!(shown, "{}", instant.with_timezone(&tz).format(format)).map_err(|_| {
        invalid(format!(
            "datetime: `{format}` is not a valid strftime format"
        ))
    })?;
    Ok(shown)
}

/// The instant a value means: an RFC 3339 string, or Unix seconds.
fn instant(value: &Value) -> Result<DateTime<Utc>, Error> {
    let unrecognized = || {
        invalid(format!(
            "datetime: `{value}` is not an RFC 3339 time (2024-05-01T10:30:00Z) nor Unix seconds"
        ))
    };
    match value.kind() {
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim();
            DateTime::<FixedOffset>::parse_from_rfc3339(text)
                .map(|t| t.to_utc())
                .or_else(|_| text.parse::<f64>().map_err(drop).and_then(from_seconds))
                .map_err(|()| unrecognized())
        }
        ValueKind::Number => f64::try_from(value.clone())
            .map_err(drop)
            .and_then(from_seconds)
            .map_err(|()| unrecognized()),
        _ => Err(unrecognized()),
    }
}

fn from_seconds(seconds: f64) -> Result<DateTime<Utc>, ()> {
    if !seconds.is_finite() {
        return Err(());
    }
    let whole = seconds.floor();
    // In range for i64 once checked by chrono below; the cast saturates.
    let nanos = ((seconds - whole) * 1e9) as u32;
    Utc.timestamp_opt(whole as i64, nanos).single().ok_or(())
}

fn markdown_escape(text: String) -> String {
    let mut escaped = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            escaped.push('\n');
        }
        let body = line.trim_start();
        escaped.push_str(&line[..line.len() - body.len()]);
        // Block syntax only counts at the start of a line.
        let mut rest = body;
        if let Some(first) = body.chars().next()
            && matches!(first, '#' | '-' | '+')
        {
            escaped.push('\\');
            escaped.push(first);
            rest = &body[1..];
        } else {
            let digits = body.len() - body.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 && body[digits..].starts_with('.') {
                escaped.push_str(&body[..digits]);
                escaped.push_str("\\.");
                rest = &body[digits + 1..];
            }
        }
        for c in rest.chars() {
            if matches!(
                c,
                '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~'
            ) {
                escaped.push('\\');
            }
            escaped.push(c);
        }
    }
    escaped
}

fn truncate(text: String, length: Option<usize>, kwargs: Kwargs) -> Result<String, Error> {
    let length = length.unwrap_or(255);
    let end: String = kwargs
        .get::<Option<String>>("end")?
        .unwrap_or_else(|| "...".into());
    let killwords: bool = kwargs.get::<Option<bool>>("killwords")?.unwrap_or(false);
    let leeway: usize = kwargs.get::<Option<usize>>("leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    let end_chars = end.chars().count();
    if length < end_chars {
        return Err(invalid(format!(
            "truncate: the length {length} is shorter than the end marker `{end}`"
        )));
    }
    if text.chars().count() <= length + leeway {
        return Ok(text);
    }
    let keep = length - end_chars;
    let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    let mut kept = &text[..cut];
    if !killwords && let Some(space) = kept.rfind(' ') {
        kept = &kept[..space];
    }
    Ok(format!("{kept}{end}"))
}

fn invalid(detail: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn env(undefined: UndefinedBehavior) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(undefined);
        register(&mut env, Zone::shanghai());
        env
    }

    fn render(template: &str) -> Result<String, Error> {
        env(UndefinedBehavior::SemiStrict).render_str(
            template,
            context! { t => "2024-05-01T10:30:05Z", offset => "2024-05-01T12:30:05+02:00", secs => 1714559405, text => "a *b* [c](d)" },
        )
    }

    #[test]
    fn datetime_shows_the_configured_zone_by_default() {
        assert_eq!(render("{{ t | datetime }}").unwrap(), "2024-05-01 18:30:05");
        assert_eq!(
            render("{{ offset | datetime }}").unwrap(),
            "2024-05-01 18:30:05"
        );
        assert_eq!(
            render("{{ secs | datetime }}").unwrap(),
            "2024-05-01 18:30:05"
        );
        assert_eq!(
            render("{{ '1714559405.5' | datetime('%S%.3f') }}").unwrap(),
            "05.500"
        );
    }

    #[test]
    fn datetime_takes_a_format_and_a_zone() {
        assert_eq!(
            render("{{ t | datetime('%m-%d %H:%M %Z', tz='UTC') }}").unwrap(),
            "05-01 10:30 UTC"
        );
        assert_eq!(
            render("{{ t | datetime(tz='America/New_York') }}").unwrap(),
            "2024-05-01 06:30:05"
        );
    }

    #[test]
    fn datetime_names_what_it_cannot_read() {
        let err = render("{{ 'yesterday' | datetime }}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`yesterday` is not an RFC 3339 time"), "{err}");
        let err = render("{{ t | datetime(tz='Mars/Base') }}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`Mars/Base` is not a time zone"), "{err}");
        let err = render("{{ t | datetime('%Q') }}").unwrap_err().to_string();
        assert!(err.contains("`%Q` is not a valid strftime format"), "{err}");
        let err = render("{{ t | datetime(zone='UTC') }}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown keyword argument 'zone'"), "{err}");
    }

    #[test]
    fn datetime_of_an_undefined_value_follows_the_rule() {
        let err = render("{{ nothing | datetime }}").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
        let lenient = env(UndefinedBehavior::Chainable);
        assert_eq!(
            lenient.render_str("[{{ a.b | datetime }}]", ()).unwrap(),
            "[]"
        );
    }

    #[test]
    fn markdown_escape_neutralizes_inline_and_line_start_syntax() {
        assert_eq!(
            render("{{ text | markdown_escape }}").unwrap(),
            r"a \*b\* \[c\](d)"
        );
        assert_eq!(
            markdown_escape(
                "# title\n- item\n  12. step\nv1.2 is #1 - ok\n<b>a_b</b> `x` | ~y~ \\".into()
            ),
            "\\# title\n\\- item\n  12\\. step\nv1.2 is #1 - ok\n\\<b\\>a\\_b\\</b\\> \\`x\\` \\| \\~y\\~ \\\\"
        );
    }

    #[test]
    fn truncate_behaves_like_jinja() {
        let long = "The quick brown fox jumps over the lazy dog";
        let t = |args: &str| {
            env(UndefinedBehavior::SemiStrict)
                .render_str(
                    &format!("{{{{ s | truncate({args}) }}}}"),
                    context! { s => long },
                )
                .unwrap()
        };
        assert_eq!(t("9"), "The...");
        assert_eq!(t("9, killwords=true"), "The qu...");
        assert_eq!(t("9, end='…'"), "The…");
        assert_eq!(t("40"), long, "within the leeway");
        assert_eq!(t("40, leeway=0"), "The quick brown fox jumps over the...");
        assert_eq!(t(""), long);
        let chinese = "告警：磁盘使用率超过百分之九十";
        let cut = env(UndefinedBehavior::SemiStrict)
            .render_str("{{ s | truncate(6, leeway=0) }}", context! { s => chinese })
            .unwrap();
        assert_eq!(cut, "告警：...", "counts characters, not bytes");
    }

    #[test]
    fn truncate_of_an_undefined_value_is_an_error_when_strict() {
        let err = render("{{ nothing | truncate(3) }}").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }
}
