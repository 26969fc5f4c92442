//! Which events a rule applies to: globs on the event's type and source and
//! on its chat group, all of which must match.

use connector_sdk::ConfigProblem;
use glob::Pattern;

use super::config::MatchRule;

/// A rule's compiled `match`.
#[derive(Debug, Clone)]
pub struct Matcher {
    event_type: Option<Pattern>,
    source: Option<Pattern>,
    chat_group: Option<Pattern>,
}

/// What a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The event's `type`.
    pub event_type: &'a str,
    /// The event's `source`.
    pub source: &'a str,
    /// The chat group the event goes to.
    pub chat_group: &'a str,
}

impl Matcher {
    /// Compiles `rule`; `path` is its key path (`templates.0.match`).
    pub fn compile(rule: &MatchRule, path: &str) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut glob = |key: &str, glob: &Option<String>| {
            let glob = glob.as_deref()?;
            Pattern::new(glob)
                .map_err(|err| {
                    problems.push(ConfigProblem::new(
                        format!("{path}.{key}"),
                        format!("`{glob}` is not a valid glob ({err}); use * for any run of characters, ? for one"),
                    ));
                })
                .ok()
        };
        let matcher = Matcher {
            event_type: glob("type", &rule.event_type),
            source: glob("source", &rule.source),
            chat_group: glob("chat_group", &rule.chat_group),
        };
        if rule.event_type.is_none() && rule.source.is_none() && rule.chat_group.is_none() {
            problems.push(ConfigProblem::new(
                path,
                "is empty; give at least one of type, source or chat_group (type: \"*\" matches every event)",
            ));
        }
        if problems.is_empty() {
            Ok(matcher)
        } else {
            Err(problems)
        }
    }

    /// True when every glob given matches.
    pub fn matches(&self, subject: Subject<'_>) -> bool {
        let ok = |pattern: &Option<Pattern>, value: &str| {
            pattern.as_ref().is_none_or(|p| p.matches(value))
        };
        ok(&self.event_type, subject.event_type)
            && ok(&self.source, subject.source)
            && ok(&self.chat_group, subject.chat_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(
        event_type: Option<&str>,
        source: Option<&str>,
        chat_group: Option<&str>,
    ) -> Matcher {
        let rule = MatchRule {
            event_type: event_type.map(str::to_owned),
            source: source.map(str::to_owned),
            chat_group: chat_group.map(str::to_owned),
        };
        Matcher::compile(&rule, "templates.0.match").expect("compiles")
    }

    fn subject<'a>(event_type: &'a str, source: &'a str, chat_group: &'a str) -> Subject<'a> {
        Subject {
            event_type,
            source,
            chat_group,
        }
    }

    #[test]
    fn a_type_glob_matches_any_run_of_characters() {
        let m = matcher(Some("com.example.alertmanager.*"), None, None);
        assert!(m.matches(subject("com.example.alertmanager.firing", "s", "g")));
        assert!(m.matches(subject("com.example.alertmanager.", "s", "g")));
        assert!(!m.matches(subject("com.example.grafana.firing", "s", "g")));
        assert!(
            !m.matches(subject("COM.EXAMPLE.ALERTMANAGER.x", "s", "g")),
            "case matters"
        );
    }

    #[test]
    fn every_glob_given_must_match() {
        let m = matcher(
            Some("com.github.*"),
            Some("https://github.com/acme/*"),
            Some("dev*"),
        );
        assert!(m.matches(subject(
            "com.github.push",
            "https://github.com/acme/shop",
            "dev"
        )));
        assert!(!m.matches(subject(
            "com.github.push",
            "https://github.com/other/x",
            "dev"
        )));
        assert!(!m.matches(subject(
            "com.github.push",
            "https://github.com/acme/shop",
            "ops"
        )));
        assert!(matcher(None, None, Some("ops")).matches(subject("anything", "any", "ops")));
    }

    #[test]
    fn question_marks_and_classes_work_and_star_crosses_slashes() {
        assert!(matcher(Some("v?.[ab]"), None, None).matches(subject("v1.a", "", "")));
        assert!(!matcher(Some("v?.[ab]"), None, None).matches(subject("v1.c", "", "")));
        assert!(matcher(None, Some("https://*"), None).matches(subject("", "https://a/b/c", "")));
    }

    #[test]
    fn an_empty_match_and_a_bad_glob_are_problems_with_their_paths() {
        let empty =
            Matcher::compile(&MatchRule::default(), "templates.2.match").expect_err("empty");
        assert_eq!(empty[0].path, "templates.2.match");
        let bad = MatchRule {
            event_type: Some("a[".into()),
            ..MatchRule::default()
        };
        let problems = Matcher::compile(&bad, "templates.0.match").expect_err("bad glob");
        assert_eq!(problems[0].path, "templates.0.match.type");
        assert!(
            problems[0].message.contains("`a[`"),
            "{}",
            problems[0].message
        );
    }
}
