//! Templates: any CloudEvent becomes a message people can read.
//!
//! The `templates:` rules turn an event (an Alertmanager, GitHub or Grafana
//! payload, say) into DingTalk's fields of a message type; the result then
//! goes through the same validation, mentions, size limit and `msgUuid` as
//! any message ([`message::build_from_fields`]).
//!
//! Which rule applies: the one named by the event's `xvtemplate` extension
//! (an unknown name is a 400); else the first rule whose `match` matches;
//! else none, and the event's own data is the message, as without templates
//! ([`message::build`]).
//!
//! Every template compiles at start-up; rendering is bounded in steps,
//! depth and output (see `rule.rs`), so a runaway template costs one 400, in
//! milliseconds. A template sees the event's model ([`model`]) and may use
//! the engine's filters and ours (`filters.rs`).

use connector_sdk::ConfigProblem;
use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::cloudevents::{AttributesReader, Event};

use crate::message::{self, Message, MessageError};
use crate::zone::Zone;

mod config;
pub mod digest;
mod filters;
mod matching;
pub mod model;
mod rule;

pub use config::{DEFAULT_TIMEZONE, MatchRule, TemplateRule, Undefined};
pub use digest::{DigestExpressions, DigestRules, Meta};
use matching::Subject;
pub use rule::CompiledRule;

/// The extension naming the template an event wants.
pub(crate) const TEMPLATE_EXTENSION: &str = "xvtemplate";

/// Why an event cannot become a message. Every one is permanent: a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `xvtemplate` names no rule.
    #[error("xvtemplate `{asked}` names no template; {known}")]
    Unknown {
        /// The name asked for.
        asked: String,
        /// The names there are, as a sentence.
        known: String,
    },
    /// A rule's template failed for this event.
    #[error("template {rule}: {field}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Render {
        /// The rule, e.g. `` `alertmanager` (templates.0) ``.
        rule: String,
        /// The field, e.g. `message.text`.
        field: String,
        /// The template's line, when known.
        line: Option<usize>,
        /// What went wrong.
        reason: String,
    },
    /// A rule's `users` failed for this event.
    #[error("{reason}")]
    Users {
        /// The rule and what went wrong.
        reason: String,
    },
    /// A rule's rendered fields are not a message DingTalk would take.
    #[error("template {rule}: {source}")]
    Built {
        /// The rule.
        rule: String,
        /// What is wrong with the message.
        source: MessageError,
    },
    /// Without a template, the event's own data is not a message.
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// Every rule, compiled, in config order.
#[derive(Debug, Default)]
pub struct Templates {
    rules: Vec<CompiledRule>,
    /// What a digest is told of each event.
    digest: DigestRules,
}

impl Templates {
    /// Compiles `rules` with `timezone` (an IANA name) for `datetime`.
    /// Every problem has its key path; syntax errors have their line.
    pub fn compile(rules: &[TemplateRule], timezone: &str) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let tz = timezone
            .parse::<Zone>()
            .map_err(|err| {
                problems.push(ConfigProblem::new("templates_timezone", err.to_string()));
            })
            .unwrap_or(Zone::UTC);
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            match CompiledRule::compile(index, rule, tz) {
                Ok(rule) => compiled.push(rule),
                Err(found) => problems.extend(found),
            }
        }
        for (index, rule) in rules.iter().enumerate() {
            let Some(name) = &rule.name else { continue };
            if let Some(first) = rules[..index]
                .iter()
                .position(|earlier| earlier.name.as_ref() == Some(name))
            {
                problems.push(ConfigProblem::new(
                    format!("templates.{index}.name"),
                    format!(
                        "`{name}` is already the name of templates.{first}; names must be unique"
                    ),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self {
                rules: compiled,
                digest: DigestRules::default(),
            })
        } else {
            Err(problems)
        }
    }

    /// The same templates, with the `digest` expressions compiled (times
    /// in `timezone`).
    pub fn with_digest(
        mut self,
        expressions: &DigestExpressions,
        timezone: Zone,
    ) -> Result<Self, Vec<ConfigProblem>> {
        self.digest = DigestRules::compile(expressions, timezone)?;
        Ok(self)
    }

    /// The message for `event` in `chat_group`, as [`Templates::message_for`]
    /// makes it, and what a digest is told of it.
    pub fn prepare(
        &self,
        event: &Event,
        chat_group: &str,
    ) -> Result<(Message, Meta), TemplateError> {
        let rule = self.pick(event, chat_group)?;
        // Built only for what reads it: an event without a rule or digest
        // expressions (most of a storm) skips the template engine.
        let model = if rule.is_some() || self.digest.reads_the_model() {
            model::of(event)
        } else {
            minijinja::Value::UNDEFINED
        };
        let message = match rule {
            None => message::build(event, chat_group)?,
            Some(rule) => self.render(rule, event, &model, chat_group)?,
        };
        let data = model::data_json(event);
        let mut meta = self.digest.meta(
            &model,
            data.as_deref(),
            rule.and_then(|rule| rule.group_key(&model)),
        );
        if let Some(rule) = rule {
            meta.users = rule
                .users(&model)
                .map_err(|reason| TemplateError::Users { reason })?;
        }
        Ok((message, meta))
    }

    /// The rule for `event` going to `chat_group`, or `None` when the
    /// event's own data is the message.
    pub fn pick(
        &self,
        event: &Event,
        chat_group: &str,
    ) -> Result<Option<&CompiledRule>, TemplateError> {
        if let Some(asked) = event.extension(TEMPLATE_EXTENSION) {
            let asked = match asked {
                ExtensionValue::String(name) => name.clone(),
                other => other.to_string(),
            };
            return self
                .rules
                .iter()
                .find(|rule| rule.name.as_deref() == Some(asked.as_str()))
                .map(Some)
                .ok_or_else(|| TemplateError::Unknown {
                    known: self.known_names(),
                    asked,
                });
        }
        let source = event.source().as_str();
        let subject = Subject {
            event_type: event.ty(),
            source,
            chat_group,
        };
        Ok(self
            .rules
            .iter()
            .find(|rule| rule.matcher.as_ref().is_some_and(|m| m.matches(subject))))
    }

    /// The message for `event` in `chat_group`: rendered by its rule, or,
    /// when none applies, built from the event's own data.
    pub fn message_for(&self, event: &Event, chat_group: &str) -> Result<Message, TemplateError> {
        let Some(rule) = self.pick(event, chat_group)? else {
            return Ok(message::build(event, chat_group)?);
        };
        self.render(rule, event, &model::of(event), chat_group)
    }

    fn render(
        &self,
        rule: &CompiledRule,
        event: &Event,
        model: &minijinja::Value,
        chat_group: &str,
    ) -> Result<Message, TemplateError> {
        let fields = rule
            .render(model)
            .map_err(|failure| TemplateError::Render {
                rule: rule.label(),
                field: failure.field,
                line: failure.line,
                reason: failure.reason,
            })?;
        message::build_from_fields(event, rule.msgtype, fields, chat_group).map_err(|source| {
            TemplateError::Built {
                rule: rule.label(),
                source,
            }
        })
    }

    fn known_names(&self) -> String {
        let names: Vec<String> = self
            .rules
            .iter()
            .filter_map(|rule| rule.name.as_ref())
            .map(|name| format!("`{name}`"))
            .collect();
        if names.is_empty() {
            "no template has a name".to_owned()
        } else {
            format!("named templates: {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests;
