//! `bot.apps[]` read into the plan: each app once, its secret read (from
//! the config or a file), its OpenAPI address parsed; and the chat groups of
//! `bot.webhooks[]` that name an app. Every problem with its key path, as
//! for webhooks.

use connector_sdk::ConfigProblem;

use super::config::{DEFAULT_API_BASE, MAX_APP_PER_MINUTE};
use crate::config::{DingTalkConfig, WebhookConfig};
use crate::secret::Secret;

/// One app, as the sink runs it.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// Its name.
    pub name: String,
    /// Its AppKey.
    pub app_key: String,
    /// Its AppSecret.
    pub app_secret: Secret,
    /// Its robot's code.
    pub robot_code: String,
    /// The OpenAPI's base address.
    pub api_base: url::Url,
    /// Messages a minute per conversation.
    pub per_minute: u32,
    /// Messages a minute over all of them.
    pub app_per_minute: u32,
}

/// A chat group of an app robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppGroupPlan {
    /// Its app: an index into the plan's apps.
    pub app: usize,
    /// The group's `openConversationId`.
    pub open_conversation_id: String,
}

/// Reads `bot.apps[]`, reporting every problem.
pub fn apps(config: &DingTalkConfig, problems: &mut Vec<ConfigProblem>) -> Vec<AppPlan> {
    let mut apps: Vec<AppPlan> = Vec::new();
    for (i, app) in config.bot.apps.iter().enumerate() {
        let path = format!("bot.apps.{i}");
        let mut problem = |key: &str, reason: String| {
            problems.push(ConfigProblem::new(format!("{path}.{key}"), reason));
        };
        if app.name.trim().is_empty() {
            problem("name", "must not be empty".into());
        } else if let Some(first) = config.bot.apps[..i].iter().position(|a| a.name == app.name) {
            problem(
                "name",
                format!("app `{}` is already defined at bot.apps.{first}", app.name),
            );
        }
        if app.app_key.trim().is_empty() {
            problem(
                "app_key",
                "must not be empty; paste the app's AppKey".into(),
            );
        }
        if app.robot_code.trim().is_empty() {
            problem(
                "robot_code",
                "must not be empty; paste the robot's code (often the AppKey)".into(),
            );
        }
        let secret = match (&app.app_secret, &app.app_secret_file) {
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(file)) => match std::fs::read_to_string(file) {
                Ok(text) => Some(Secret::new(text.trim())),
                Err(err) => {
                    problem(
                        "app_secret_file",
                        format!("cannot read {}: {err}", file.display()),
                    );
                    None
                }
            },
            (Some(_), Some(_)) => {
                problem(
                    "app_secret",
                    "is set beside app_secret_file; give one of them".into(),
                );
                None
            }
            (None, None) => {
                problem(
                    "app_secret",
                    "is missing; give the app's AppSecret, or app_secret_file".into(),
                );
                None
            }
        };
        let secret = secret.filter(|secret| {
            let empty = secret.expose().trim().is_empty();
            if empty {
                problem("app_secret", "is empty".into());
            }
            !empty
        });
        let api_base = match url::Url::parse(app.api_base.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            Ok(_) => {
                problem(
                    "api_base",
                    "must be an http or https URL with a host".into(),
                );
                None
            }
            Err(err) => {
                problem(
                    "api_base",
                    format!("is not a valid URL ({err}); the default is {DEFAULT_API_BASE}"),
                );
                None
            }
        };
        if !(1..=MAX_APP_PER_MINUTE).contains(&app.per_minute) {
            problem(
                "per_minute",
                format!(
                    "is {}; it must be between 1 and {MAX_APP_PER_MINUTE}",
                    app.per_minute
                ),
            );
        } else if !(1..=MAX_APP_PER_MINUTE).contains(&app.app_per_minute) {
            problem(
                "app_per_minute",
                format!(
                    "is {}; it must be between 1 and {MAX_APP_PER_MINUTE}",
                    app.app_per_minute
                ),
            );
        } else if config.digest.enabled && config.digest.reserved >= app.per_minute {
            problems.push(ConfigProblem::new(
                "digest.reserved",
                format!(
                    "is {}, which leaves nothing of the {} a minute of {path} for events sent on their own; lower it below per_minute",
                    config.digest.reserved, app.per_minute
                ),
            ));
        }
        if let (Some(app_secret), Some(api_base)) = (secret, api_base) {
            apps.push(AppPlan {
                name: app.name.clone(),
                app_key: app.app_key.trim().to_owned(),
                app_secret,
                robot_code: app.robot_code.trim().to_owned(),
                api_base,
                per_minute: app.per_minute,
                app_per_minute: app.app_per_minute,
            });
        }
    }
    apps
}

/// The app of a `bot.webhooks[]` entry that names one (`None` for a
/// webhook robot's entry), its problems reported.
pub fn group(
    webhook: &WebhookConfig,
    path: &str,
    apps: &[AppPlan],
    config: &DingTalkConfig,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Option<AppGroupPlan>> {
    let Some(name) = &webhook.app else {
        if webhook.open_conversation_id.is_some() {
            problems.push(ConfigProblem::new(
                format!("{path}.open_conversation_id"),
                "is set without `app`; name the app robot of this group in `app`",
            ));
        }
        return None;
    };
    if webhook.url.is_some() || !webhook.robots.is_empty() || webhook.signature.is_some() {
        problems.push(ConfigProblem::new(
            format!("{path}.app"),
            "is set beside url, robots or signature; a chat group is served by webhook robots or by an app robot, not both",
        ));
    }
    let conversation = webhook
        .open_conversation_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty());
    let Some(conversation) = conversation else {
        problems.push(ConfigProblem::new(
            format!("{path}.open_conversation_id"),
            "is missing; give the group's openConversationId (cid...)",
        ));
        return Some(None);
    };
    match apps.iter().position(|app| &app.name == name) {
        Some(app) => Some(Some(AppGroupPlan {
            app,
            open_conversation_id: conversation.to_owned(),
        })),
        None => {
            // An app with problems of its own is reported there.
            if !config.bot.apps.iter().any(|app| &app.name == name) {
                let mut known: Vec<&str> =
                    config.bot.apps.iter().map(|a| a.name.as_str()).collect();
                known.sort_unstable();
                problems.push(ConfigProblem::new(
                    format!("{path}.app"),
                    format!(
                        "names app `{name}`, which bot.apps does not define; defined: {}",
                        known.join(", ")
                    ),
                ));
            }
            Some(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::DingTalkConfig;
    use crate::plan::Plan;

    fn parse(yaml: &str) -> DingTalkConfig {
        serde_norway::from_str(yaml).expect("test config parses")
    }

    fn problems(yaml: &str) -> Vec<String> {
        Plan::build(&parse(yaml))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn an_app_group_beside_a_webhook_group_makes_a_plan() {
        let plan = Plan::build(&parse(
            r#"
bot:
  apps:
    - { name: oncall, app_key: k, app_secret: s, robot_code: r }
  webhooks:
    - { chat_group: ops, url: "https://x.test/robot/send?access_token=t" }
    - { chat_group: room, app: oncall, open_conversation_id: cid1 }
"#,
        ))
        .expect("valid");
        assert_eq!(plan.apps.len(), 1);
        assert_eq!(plan.apps[0].api_base.as_str(), "https://api.dingtalk.com/");
        assert_eq!(plan.apps[0].per_minute, 20);
        assert!(plan.groups[0].app.is_none());
        let app = plan.groups[1].app.as_ref().expect("app group");
        assert_eq!((app.app, app.open_conversation_id.as_str()), (0, "cid1"));
        assert!(plan.groups[1].robots.is_empty());
    }

    #[test]
    fn every_app_problem_names_its_key() {
        let found = problems(
            r#"
bot:
  apps:
    - { name: a, app_key: "", robot_code: r, api_base: "ftp://x", per_minute: 0 }
    - { name: a, app_key: k, app_secret: s, app_secret_file: /nonexistent, robot_code: "" }
    - { name: b, app_key: k, app_secret_file: /nonexistent/secret, robot_code: r }
  webhooks:
    - { chat_group: g1, app: nobody, open_conversation_id: c }
    - { chat_group: g2, app: a }
    - { chat_group: g3, app: a, open_conversation_id: c, url: "https://x.test/?access_token=t" }
    - { chat_group: g4, url: "https://x.test/?access_token=u", open_conversation_id: c }
"#,
        );
        let paths: Vec<&str> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            paths,
            [
                "bot.apps.0.app_key",
                "bot.apps.0.app_secret",
                "bot.apps.0.api_base",
                "bot.apps.0.per_minute",
                "bot.apps.1.name",
                "bot.apps.1.robot_code",
                "bot.apps.1.app_secret",
                "bot.apps.2.app_secret_file",
                "bot.webhooks.0.app",
                "bot.webhooks.1.open_conversation_id",
                "bot.webhooks.2.app",
                "bot.webhooks.3.open_conversation_id",
            ],
            "{found:#?}"
        );
        assert!(found[8].contains("names app `nobody`"), "{}", found[8]);
    }

    #[test]
    fn a_secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").expect("written");
        let plan = Plan::build(&parse(&format!(
            "bot:\n  apps:\n    - {{ name: a, app_key: k, app_secret_file: {}, robot_code: r }}\n  webhooks:\n    - {{ chat_group: g, app: a, open_conversation_id: c }}\n",
            file.display()
        )))
        .expect("valid");
        assert_eq!(plan.apps[0].app_secret.expose(), "s3cret");
        assert_eq!(plan.default_group, "g");
    }
}
