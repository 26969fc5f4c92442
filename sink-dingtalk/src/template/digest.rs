//! What a digest needs to know of an event, worked out once when the event
//! arrives and kept with it in the outbox: its group key, its stable
//! identity and status (so a firing and its resolved become one line), and
//! its severity (so the worst comes first).
//!
//! Each is a template expression of `digest` (`group_by`, `identity`,
//! `status`, `severity`), or a rule's own `group_by`; rendered leniently (a
//! missing field is empty, and an empty result means "not known"). Without
//! them, Alertmanager's payload speaks for itself: `status`, the alerts'
//! `fingerprint`s, a `severity` label. A failing expression never rejects
//! an event: the digest then does without.

use connector_sdk::ConfigProblem;
use minijinja::Environment;
use serde_json::Value as Json;

use super::config::Undefined;
use super::rule::{environment, known};
use crate::zone::Zone;

/// The `digest` expressions as configured.
#[derive(Debug, Clone, Default)]
pub struct DigestExpressions {
    /// `digest.group_by`.
    pub group_by: Option<String>,
    /// `digest.identity`.
    pub identity: Option<String>,
    /// `digest.status`.
    pub status: Option<String>,
    /// `digest.severity`.
    pub severity: Option<String>,
}

/// What a digest knows of one event beyond its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Its group key, when an expression sets it (else the digest masks
    /// its headline).
    pub group: Option<String>,
    /// What stays the same from its firing to its resolved.
    pub identity: Option<String>,
    /// `firing`, `resolved`, or another word, lowercase.
    pub status: Option<String>,
    /// Its severity, lowercase.
    pub severity: Option<String>,
    /// Who its rule's `users` sends it to one-to-one (comma-separated user
    /// ids), for a chat group of an app robot.
    pub users: Option<String>,
}

/// The compiled expressions.
#[derive(Debug, Default)]
pub struct DigestRules {
    env: Option<Environment<'static>>,
    has: [bool; 4],
}

const NAMES: [&str; 4] = [
    "digest.group_by",
    "digest.identity",
    "digest.status",
    "digest.severity",
];

impl DigestRules {
    /// Compiles the expressions, with `timezone` for `datetime`.
    pub fn compile(
        expressions: &DigestExpressions,
        timezone: Zone,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut env = environment(Undefined::Lenient, timezone);
        let mut problems = Vec::new();
        let mut has = [false; 4];
        let sources = [
            &expressions.group_by,
            &expressions.identity,
            &expressions.status,
            &expressions.severity,
        ];
        for (at, source) in sources.into_iter().enumerate() {
            let Some(source) = source else { continue };
            has[at] = true;
            if let Err(err) = env.add_template_owned(NAMES[at], source.clone()) {
                problems.push(ConfigProblem::new(NAMES[at], err.to_string()));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            env: has.iter().any(|h| *h).then_some(env),
            has,
        })
    }

    /// True when an expression is configured: only then is an event's
    /// model read.
    pub fn reads_the_model(&self) -> bool {
        self.has.iter().any(|&has| has)
    }

    fn render(&self, at: usize, model: &minijinja::Value) -> Option<String> {
        if !self.has[at] {
            return None;
        }
        let env = self.env.as_ref()?;
        let rendered = env
            .get_template(NAMES[at])
            .and_then(|t| t.render(model))
            .map_err(|err| {
                tracing::debug!(expression = NAMES[at], %err, "a digest expression failed for an event; the digest does without it");
            })
            .ok()?;
        known(&rendered)
    }

    /// What a digest knows of the event whose model is `model` and data
    /// `data`; `rule_group` is its template rule's own `group_by`, rendered.
    pub fn meta(
        &self,
        model: &minijinja::Value,
        data: Option<&Json>,
        rule_group: Option<String>,
    ) -> Meta {
        let alertmanager = data.filter(|d| d.get("alerts").is_some_and(Json::is_array));
        Meta {
            group: rule_group.or_else(|| self.render(0, model)),
            identity: self
                .render(1, model)
                .or_else(|| alertmanager.and_then(fingerprints)),
            status: self
                .render(2, model)
                .or_else(|| alertmanager.and_then(|d| d["status"].as_str().and_then(known)))
                .map(|s| s.to_lowercase()),
            severity: self
                .render(3, model)
                .or_else(|| alertmanager.and_then(severity_label))
                .map(|s| s.to_lowercase()),
            users: None,
        }
    }
}

/// Alertmanager's alerts' fingerprints, sorted: the same for a group's
/// firing and its resolved.
fn fingerprints(data: &Json) -> Option<String> {
    let mut prints: Vec<&str> = data["alerts"]
        .as_array()?
        .iter()
        .filter_map(|alert| alert["fingerprint"].as_str())
        .collect();
    prints.sort_unstable();
    prints.dedup();
    known(&prints.join(","))
}

/// Alertmanager's `severity` label: the common one, else the first alert's.
fn severity_label(data: &Json) -> Option<String> {
    data["commonLabels"]["severity"]
        .as_str()
        .or_else(|| data["alerts"][0]["labels"]["severity"].as_str())
        .and_then(known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(data: &Json) -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(json!({ "data": data })))
    }

    #[test]
    fn alertmanager_speaks_for_itself() {
        let data = json!({
            "status": "resolved",
            "commonLabels": {"alertname": "DiskFull", "severity": "Critical"},
            "alerts": [{"fingerprint": "b2"}, {"fingerprint": "a1"}],
        });
        let rules = DigestRules::compile(&DigestExpressions::default(), Zone::UTC).expect("ok");
        let meta = rules.meta(&model(&data), Some(&data), None);
        assert_eq!(
            meta,
            Meta {
                users: None,
                group: None,
                identity: Some("a1,b2".into()),
                status: Some("resolved".into()),
                severity: Some("critical".into()),
            }
        );
        // Not Alertmanager's: nothing known.
        let other = json!({"status": "ok"});
        assert_eq!(
            rules.meta(&model(&other), Some(&other), None),
            Meta::default()
        );
    }

    #[test]
    fn expressions_win_and_an_empty_one_is_unknown() {
        let expressions = DigestExpressions {
            group_by: Some("{{ data.kind }}/{{ data.state }}".into()),
            identity: Some("{{ data.id }}".into()),
            status: Some("{{ data.state }}".into()),
            severity: Some("{{ data.missing }}".into()),
        };
        let rules = DigestRules::compile(&expressions, Zone::UTC).expect("ok");
        let data = json!({"kind": "disk", "state": "FIRING", "id": 7});
        let meta = rules.meta(&model(&data), Some(&data), None);
        assert_eq!(meta.group.as_deref(), Some("disk/FIRING"));
        assert_eq!(meta.identity.as_deref(), Some("7"));
        assert_eq!(meta.status.as_deref(), Some("firing"));
        assert_eq!(meta.severity, None);
        let ruled = rules.meta(&model(&data), Some(&data), Some("rule's".into()));
        assert_eq!(ruled.group.as_deref(), Some("rule's"));
    }

    #[test]
    fn a_broken_expression_is_a_problem_with_its_key() {
        let expressions = DigestExpressions {
            severity: Some("{{ data.x ".into()),
            ..DigestExpressions::default()
        };
        let problems = DigestRules::compile(&expressions, Zone::UTC).expect_err("broken");
        assert!(
            problems[0].to_string().starts_with("digest.severity:"),
            "{problems:?}"
        );
    }
}
