//! One compiled rule: its templates in their own engine, with the limits
//! that keep a runaway template from hurting anything, and the rendering of
//! a message's fields from an event's model.
//!
//! Limits, per event: each field's template may run [`FUEL`] engine steps
//! and nest [`RECURSION_LIMIT`] deep, and all fields together may write
//! [`MAX_OUTPUT_BYTES`]; past any of them the event is answered 400 naming
//! the template. A loop over `range(100000)` nested twice stops after
//! [`FUEL`] steps, in milliseconds.

use std::io;

use connector_sdk::ConfigProblem;
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value as Json};

use super::config::{TemplateRule, Undefined};
use super::filters;
use super::matching::Matcher;
use crate::message::{self, MsgType};
use crate::zone::Zone;

/// Engine steps one field's template may take for one event.
pub const FUEL: u64 = 500_000;

/// How deep a template may nest (macros, loops, includes) at run time.
pub const RECURSION_LIMIT: usize = 64;

/// What one event's templates may write, all fields together: room for a
/// message DingTalk's 20,000-byte limit then truncates, but not for a
/// runaway loop.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// A rule, checked and compiled.
#[derive(Debug)]
pub struct CompiledRule {
    /// Its position in `templates`.
    pub index: usize,
    /// Its `name`, for `xvtemplate`.
    pub name: Option<String>,
    /// Its `match`; `None` for a rule applied only by name.
    pub matcher: Option<Matcher>,
    /// The message type it makes.
    pub msgtype: MsgType,
    env: Environment<'static>,
    message: Vec<(String, Node)>,
    /// The name of its `group_by` template in `env`, if it has one.
    group_by: Option<String>,
    /// The name of its `users` template in `env`, if it has one.
    users: Option<String>,
}

/// The shape of `message`, with a template where each string was.
#[derive(Debug)]
enum Node {
    /// A string: its template's name in the engine, which is its key path
    /// (`templates.0.message.text`), and the field it fills
    /// (`message.text`), for errors.
    Template {
        name: String,
        field: String,
    },
    /// A number, boolean or null: kept as it is.
    Literal(Json),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

/// Why a rule's template failed for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    /// The field, e.g. `message.text`.
    pub field: String,
    /// The line in the template, when known.
    pub line: Option<usize>,
    /// What went wrong and what to do.
    pub reason: String,
}

impl CompiledRule {
    /// Checks and compiles `rule`, the `index`th of `templates`; every
    /// problem has its key path (`templates.0.message.text`) and line.
    pub fn compile(
        index: usize,
        rule: &TemplateRule,
        timezone: Zone,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let path = format!("templates.{index}");
        let mut problems = Vec::new();

        if let Some(name) = &rule.name
            && name.trim().is_empty()
        {
            problems.push(ConfigProblem::new(
                format!("{path}.name"),
                "must not be empty",
            ));
        }
        let matcher = match &rule.matches {
            Some(matches) => Matcher::compile(matches, &format!("{path}.match"))
                .map_err(|found| problems.extend(found))
                .ok(),
            None => None,
        };
        if rule.matches.is_none() && rule.name.is_none() {
            problems.push(ConfigProblem::new(
                path.as_str(),
                "has neither `match` nor `name`, so it never applies; add match: {type: \"...\"} or a name events pick with xvtemplate",
            ));
        }
        let msgtype = rule
            .msgtype
            .parse::<MsgType>()
            .map_err(|_| {
                problems.push(ConfigProblem::new(
                    format!("{path}.msgtype"),
                    format!(
                        "`{}` is not a DingTalk message type; use text, link, markdown, actionCard or feedCard",
                        rule.msgtype
                    ),
                ));
            })
            .ok();

        let mut env = environment(rule.undefined, timezone);
        let message_path = format!("{path}.message");
        let message = compile_object(&mut env, &rule.message, &message_path, &mut problems);
        let group_by = rule.group_by.as_ref().map(|source| {
            let name = format!("{path}.group_by");
            if let Err(err) = env.add_template_owned(name.clone(), source.clone()) {
                problems.push(ConfigProblem::new(name.as_str(), explain(&err)));
            }
            name
        });
        let users = rule.users.as_ref().map(|source| {
            let name = format!("{path}.users");
            if let Err(err) = env.add_template_owned(name.clone(), source.clone()) {
                problems.push(ConfigProblem::new(name.as_str(), explain(&err)));
            }
            name
        });
        if let Some(msgtype) = msgtype
            && problems.is_empty()
            && let Err(err) = check_shape(msgtype, &rule.message)
        {
            problems.push(ConfigProblem::new(
                message_path,
                format!("{err} (a {msgtype} message needs it)"),
            ));
        }

        match msgtype {
            Some(msgtype) if problems.is_empty() => Ok(CompiledRule {
                index,
                name: rule.name.clone(),
                matcher,
                msgtype,
                env,
                message,
                group_by,
                users,
            }),
            _ => Err(problems),
        }
    }

    /// The rule's label in messages: `alertmanager (templates.0)`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("`{name}` (templates.{})", self.index),
            None => format!("templates.{}", self.index),
        }
    }

    /// The group key its `group_by` gives an event whose model is `model`;
    /// `None` without one, or when it renders empty or fails.
    pub fn group_key(&self, model: &minijinja::Value) -> Option<String> {
        let name = self.group_by.as_ref()?;
        let rendered = self
            .env
            .get_template(name)
            .and_then(|t| t.render(model))
            .map_err(|err| {
                tracing::debug!(rule = %self.label(), %err, "a template's group_by failed for an event; the digest groups it by its headline");
            })
            .ok()?;
        known(&rendered)
    }

    /// The people its `users` names for an event whose model is `model`, as
    /// written (comma-separated user ids); `None` without one or when it
    /// renders empty; a failure to render is the event's fault.
    pub fn users(&self, model: &minijinja::Value) -> Result<Option<String>, String> {
        let Some(name) = self.users.as_ref() else {
            return Ok(None);
        };
        let rendered = self
            .env
            .get_template(name)
            .and_then(|t| t.render(model))
            .map_err(|err| format!("template {}: users: {}", self.label(), explain(&err)))?;
        let trimmed = rendered.trim();
        Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
    }

    /// Renders the message's fields for an event whose model is `model`.
    pub fn render(&self, model: &minijinja::Value) -> Result<Map<String, Json>, RenderFailure> {
        let mut budget = MAX_OUTPUT_BYTES;
        self.render_fields(&self.message, model, &mut budget)
    }

    fn render_fields(
        &self,
        fields: &[(String, Node)],
        model: &minijinja::Value,
        budget: &mut usize,
    ) -> Result<Map<String, Json>, RenderFailure> {
        let mut map = Map::with_capacity(fields.len());
        for (key, node) in fields {
            map.insert(key.clone(), self.render_node(node, model, budget)?);
        }
        Ok(map)
    }

    fn render_node(
        &self,
        node: &Node,
        model: &minijinja::Value,
        budget: &mut usize,
    ) -> Result<Json, RenderFailure> {
        Ok(match node {
            Node::Template { name, field } => {
                Json::String(self.render_one(name, field, model, budget)?)
            }
            Node::Literal(value) => value.clone(),
            Node::Object(fields) => Json::Object(self.render_fields(fields, model, budget)?),
            Node::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|node| self.render_node(node, model, budget))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn render_one(
        &self,
        name: &str,
        field: &str,
        model: &minijinja::Value,
        budget: &mut usize,
    ) -> Result<String, RenderFailure> {
        let failure = |line, reason| RenderFailure {
            field: field.to_owned(),
            line,
            reason,
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|err| failure(None, err.to_string()))?;
        let mut out = Bounded {
            written: Vec::new(),
            budget,
            overflowed: false,
        };
        let result = template.render_captured_to(model, &mut out).map(drop);
        if out.overflowed {
            return Err(failure(
                None,
                format!(
                    "the message passed {MAX_OUTPUT_BYTES} bytes (all fields together); loop over fewer items, e.g. data.alerts[:20]"
                ),
            ));
        }
        if let Err(err) = result {
            return Err(failure(err.line(), explain(&err)));
        }
        // The engine writes whole `str`s: the bytes are UTF-8.
        String::from_utf8(out.written).map_err(|err| failure(None, err.to_string()))
    }
}

/// The engine for one rule: its undefined behaviour, the limits, no HTML
/// escaping, block tags that leave no blank lines, our filters.
pub(super) fn environment(undefined: Undefined, timezone: Zone) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(match undefined {
        Undefined::Strict => UndefinedBehavior::SemiStrict,
        Undefined::Lenient => UndefinedBehavior::Chainable,
    });
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    filters::register(&mut env, timezone);
    env
}

fn compile_object(
    env: &mut Environment<'static>,
    object: &Map<String, Json>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(String, Node)> {
    object
        .iter()
        .map(|(key, value)| {
            (
                key.clone(),
                compile_value(env, value, &format!("{path}.{key}"), problems),
            )
        })
        .collect()
}

fn compile_value(
    env: &mut Environment<'static>,
    value: &Json,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Node {
    match value {
        Json::String(source) => {
            if let Err(err) = env.add_template_owned(path.to_owned(), source.clone()) {
                let line = err
                    .line()
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                problems.push(ConfigProblem::new(path, format!("{line}{}", explain(&err))));
            }
            Node::Template {
                name: path.to_owned(),
                // `templates.N.` off the front.
                field: path.splitn(3, '.').nth(2).unwrap_or(path).to_owned(),
            }
        }
        Json::Object(object) => Node::Object(compile_object(env, object, path, problems)),
        Json::Array(items) => Node::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| compile_value(env, item, &format!("{path}.{i}"), problems))
                .collect(),
        ),
        literal => Node::Literal(literal.clone()),
    }
}

/// Checks at start-up what can be checked before any event: the fields the
/// type requires, and literal URLs. Each template stands in for a URL, so
/// only the rendered value is checked later.
fn check_shape(msgtype: MsgType, message: &Map<String, Json>) -> Result<(), message::MessageError> {
    fn stand_in(value: &Json) -> Json {
        match value {
            Json::String(s) if s.contains("{{") || s.contains("{%") => {
                Json::String("https://stand-in.example/".into())
            }
            Json::Object(map) => {
                Json::Object(map.iter().map(|(k, v)| (k.clone(), stand_in(v))).collect())
            }
            Json::Array(items) => Json::Array(items.iter().map(stand_in).collect()),
            other => other.clone(),
        }
    }
    let Json::Object(mut fields) = stand_in(&Json::Object(message.clone())) else {
        return Ok(());
    };
    fields.remove("at");
    message::validate(msgtype, &fields)
}

/// An engine error as a user reads it: what, without the engine's own
/// "(in template:line)", which we say our way.
fn explain(err: &minijinja::Error) -> String {
    match err.kind() {
        ErrorKind::OutOfFuel => format!(
            "the template ran past its limit of {FUEL} steps; loop over fewer items (e.g. data.alerts[:20]) or simplify it"
        ),
        kind => match err.detail() {
            Some(detail) => format!("{kind}: {detail}"),
            None => kind.to_string(),
        },
    }
}

/// A writer that refuses to grow past the event's output budget.
struct Bounded<'a> {
    written: Vec<u8>,
    budget: &'a mut usize,
    overflowed: bool,
}

impl io::Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > *self.budget {
            self.overflowed = true;
            return Err(io::Error::other("the template output limit is reached"));
        }
        *self.budget -= buf.len();
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Characters of a rendered digest key at most.
const KEY_CHARS: usize = 200;

/// A rendered digest key (`group_by`, `identity`...), trimmed and
/// shortened; `None` when empty (not known).
pub(crate) fn known(rendered: &str) -> Option<String> {
    let trimmed = rendered.trim();
    (!trimmed.is_empty()).then(|| connector_sdk::shorten(trimmed, KEY_CHARS).into_owned())
}
