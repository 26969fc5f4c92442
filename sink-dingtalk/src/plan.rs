//! The configuration read once into what the sink runs: each robot once
//! (however many chat groups and spellings of its URL name it), each chat
//! group with its robots, the compiled templates, and the delivery kit's
//! settings. Validation, the sink and the command line all build this one
//! plan, so they cannot disagree; every problem is reported with its key
//! path, all at once.

use std::collections::HashMap;

use connector_sdk::deliver::{OutboxSettings, SettingNames, Settings};
use connector_sdk::{ConfigProblem, SinkConfig};

use crate::app::config::one_to_one_target;
use crate::app::plan::{AppGroupPlan, AppPlan};
use crate::config::{DingTalkConfig, MAX_COOLDOWN_SECS, MAX_DEADLINE_MS, WebhookConfig};
use crate::robot::proxy::ProxyPlan;
use crate::robot::{DINGTALK_PER_MINUTE, RobotId, Webhook, WebhookUrl};
use crate::secret::Secret;
use crate::template::Templates;
use crate::zone::Zone;

/// What the sink runs.
#[derive(Debug)]
pub struct Plan {
    /// The chat group of events without `xvchatgroup`.
    pub default_group: String,
    /// Each chat group, in config order.
    pub groups: Vec<GroupPlan>,
    /// Each robot once, in the order the config first names it.
    pub robots: Vec<RobotPlan>,
    /// Each app robot (`bot.apps[]`), in config order.
    pub apps: Vec<AppPlan>,
    /// How events become messages.
    pub templates: Templates,
    /// The delivery kit's settings.
    pub settings: Settings,
    /// The time zone of the times a digest shows.
    pub timezone: Zone,
    /// The TCP connect timeout for DingTalk.
    pub connect_timeout: std::time::Duration,
    /// The proxies to DingTalk.
    pub proxy: ProxyPlan,
}

/// One chat group.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// Its name in `xvchatgroup`.
    pub name: String,
    /// Its robots: indexes into [`Plan::robots`]; none for an app's group.
    pub robots: Vec<usize>,
    /// Its app robot, for a group served by one.
    pub app: Option<AppGroupPlan>,
}

/// One robot.
#[derive(Debug, Clone)]
pub struct RobotPlan {
    /// Its name in logs and `/status`: the chat group of a lone robot, else
    /// its `name`, else `CHAT_GROUP/N`.
    pub name: String,
    /// Its webhook.
    pub webhook: Webhook,
    /// Its signing secret.
    pub secret: Option<Secret>,
    /// Its messages a minute.
    pub per_minute: u32,
    /// Whether its budget is enforced.
    pub paced: bool,
    /// Its security keywords (one is added to a message without any).
    pub keywords: Vec<String>,
    /// The chat groups it serves, in config order.
    pub chat_groups: Vec<String>,
}

/// One robot as one place in the config names it.
struct Named<'a> {
    name: String,
    path: String,
    url: &'a WebhookUrl,
    signature: Option<&'a Secret>,
    per_minute: u32,
    paced: bool,
    keywords: &'a [String],
}

/// DingTalk lets a robot have at most this many keywords.
const MAX_KEYWORDS: usize = 10;

/// A config is valid when it makes a plan.
impl SinkConfig for DingTalkConfig {
    fn validate(&self) -> Vec<ConfigProblem> {
        Plan::build(self).err().unwrap_or_default()
    }
}

/// The time zone of the times a digest shows: `digest.timezone`, else
/// `templates_timezone` (which validation checks), else Shanghai's.
pub fn digest_timezone(config: &DingTalkConfig) -> Zone {
    config.digest.timezone.unwrap_or_else(|| {
        config
            .templates_timezone
            .parse()
            .unwrap_or_else(|_| Zone::shanghai())
    })
}

impl Plan {
    /// Reads `config` into a plan, or says every problem in it.
    pub fn build(config: &DingTalkConfig) -> Result<Plan, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let webhooks = &config.bot.webhooks;
        if webhooks.is_empty() {
            problems.push(ConfigProblem::new(
                "bot.webhooks",
                "no webhooks configured; add at least one chat_group with its robot url",
            ));
        }
        let mut robots: Vec<RobotPlan> = Vec::new();
        // Each robot's first definition: the ones after it must agree.
        let mut first_of_robot: HashMap<RobotId, (usize, String)> = HashMap::new();
        let mut group_at: HashMap<&str, usize> = HashMap::new();
        let mut groups = Vec::new();
        let apps = crate::app::plan::apps(config, &mut problems);
        for (i, webhook) in webhooks.iter().enumerate() {
            let path = format!("bot.webhooks.{i}");
            let name = webhook.chat_group.as_str();
            if name.trim().is_empty() {
                problems.push(ConfigProblem::new(
                    format!("{path}.chat_group"),
                    "must not be empty",
                ));
            } else if let Some(first) = group_at.get(name) {
                problems.push(ConfigProblem::new(
                    format!("{path}.chat_group"),
                    format!(
                        "chat group `{name}` is already defined at bot.webhooks.{first}; chat group names must be unique"
                    ),
                ));
            } else {
                group_at.insert(name, i);
            }
            if apps.iter().any(|app| one_to_one_target(&app.name) == name) {
                problems.push(ConfigProblem::new(
                    format!("{path}.chat_group"),
                    format!("`{name}` is the name of an app's one-to-one messages; choose another"),
                ));
            }
            if let Some(app) = crate::app::plan::group(webhook, &path, &apps, config, &mut problems)
            {
                groups.push(GroupPlan {
                    name: name.to_owned(),
                    robots: Vec::new(),
                    app,
                });
                continue;
            }
            let mut members = Vec::new();
            for named in robots_of(webhook, &path, &mut problems) {
                let Some(at) = robot(
                    &named,
                    config,
                    &mut robots,
                    &mut first_of_robot,
                    &mut problems,
                ) else {
                    continue;
                };
                if !members.contains(&at) {
                    members.push(at);
                    robots[at].chat_groups.push(name.to_owned());
                }
            }
            groups.push(GroupPlan {
                name: name.to_owned(),
                robots: members,
                app: None,
            });
        }

        let default_group = config.default_group().unwrap_or_default().to_owned();
        if let Some(default) = &config.bot.default
            && !webhooks.is_empty()
            && !group_at.contains_key(default.as_str())
        {
            problems.push(ConfigProblem::new(
                "bot.default",
                format!("names chat group `{default}`, which no webhook defines"),
            ));
        }
        problems.extend(delivery_problems(config));
        let templates = Templates::compile(&config.templates, &config.templates_timezone)
            .and_then(|t| t.with_digest(&config.digest.expressions(), digest_timezone(config)))
            .map_err(|found| problems.extend(found))
            .ok();
        match templates {
            Some(templates) if problems.is_empty() => Ok(Plan {
                default_group,
                groups,
                robots,
                apps,
                templates,
                settings: settings(config),
                timezone: digest_timezone(config),
                connect_timeout: config.delivery.connect_timeout(),
                proxy: proxy_plan(config),
            }),
            _ => Err(problems),
        }
    }

    /// The robots of chat group `group`.
    pub fn robots_of(&self, group: &GroupPlan) -> impl Iterator<Item = &RobotPlan> {
        group.robots.iter().map(|&at| &self.robots[at])
    }
}

/// The robots one `bot.webhooks[]` entry names: its `url`, or its `robots`.
fn robots_of<'a>(
    webhook: &'a WebhookConfig,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<Named<'a>> {
    match (&webhook.url, webhook.robots.is_empty()) {
        (Some(url), true) => vec![Named {
            name: webhook.chat_group.clone(),
            path: path.to_owned(),
            url,
            signature: webhook.signature.as_ref(),
            per_minute: webhook.per_minute,
            paced: webhook.paced,
            keywords: &webhook.keywords,
        }],
        (None, false) => {
            if webhook.signature.is_some() {
                problems.push(ConfigProblem::new(
                    format!("{path}.signature"),
                    "is set beside `robots`; give each robot its own signature in robots[]",
                ));
            }
            webhook
                .robots
                .iter()
                .enumerate()
                .map(|(r, robot)| Named {
                    name: robot
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("{}/{}", webhook.chat_group, r + 1)),
                    path: format!("{path}.robots.{r}"),
                    url: &robot.url,
                    signature: robot.signature.as_ref(),
                    per_minute: robot.per_minute.unwrap_or(webhook.per_minute),
                    paced: robot.paced.unwrap_or(webhook.paced),
                    keywords: robot.keywords.as_deref().unwrap_or(&webhook.keywords),
                })
                .collect()
        }
        (Some(_), false) => {
            problems.push(ConfigProblem::new(
                format!("{path}.url"),
                "is set beside `robots`; give a chat group either one robot's `url` or a list of `robots`",
            ));
            Vec::new()
        }
        (None, true) => {
            problems.push(ConfigProblem::new(
                format!("{path}.url"),
                "is missing; paste the robot's webhook, https://oapi.dingtalk.com/robot/send?access_token=..., or list several under `robots`",
            ));
            Vec::new()
        }
    }
}

/// Checks one robot's settings and finds or adds it in `robots`; `None`
/// when it has a problem that leaves nothing to send to.
fn robot(
    named: &Named<'_>,
    config: &DingTalkConfig,
    robots: &mut Vec<RobotPlan>,
    first_of_robot: &mut HashMap<RobotId, (usize, String)>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<usize> {
    let path = &named.path;
    if let Some(secret) = named.signature
        && secret.expose().trim().is_empty()
    {
        problems.push(ConfigProblem::new(
            format!("{path}.signature"),
            "is empty; remove the key for a robot without signature, or paste its SEC... secret",
        ));
    }
    if !(1..=DINGTALK_PER_MINUTE).contains(&named.per_minute) {
        problems.push(ConfigProblem::new(
            format!("{path}.per_minute"),
            format!(
                "is {}; it must be between 1 and {DINGTALK_PER_MINUTE} (DingTalk blocks a robot for 10 minutes above 20 a minute)",
                named.per_minute
            ),
        ));
    } else if config.digest.enabled && config.digest.reserved >= named.per_minute {
        problems.push(ConfigProblem::new(
            "digest.reserved",
            format!(
                "is {}, which leaves nothing of the {} a minute of {path} for events sent on their own; lower it below per_minute",
                config.digest.reserved, named.per_minute
            ),
        ));
    }
    if named.keywords.len() > MAX_KEYWORDS {
        problems.push(ConfigProblem::new(
            format!("{path}.keywords"),
            format!(
                "lists {}; a DingTalk robot has at most {MAX_KEYWORDS}: list the robot's own",
                named.keywords.len()
            ),
        ));
    }
    if let Some(at) = named.keywords.iter().position(|k| k.trim().is_empty()) {
        problems.push(ConfigProblem::new(
            format!("{path}.keywords.{at}"),
            "is empty; list the robot's keywords as its security settings show them",
        ));
    }
    let webhook = match named.url.webhook() {
        Ok(webhook) => webhook,
        Err(reason) => {
            problems.push(ConfigProblem::new(format!("{path}.url"), reason));
            return None;
        }
    };
    let Some((at, first)) = first_of_robot.get(webhook.robot()).cloned() else {
        first_of_robot.insert(webhook.robot().clone(), (robots.len(), path.clone()));
        robots.push(RobotPlan {
            name: named.name.clone(),
            webhook: webhook.clone(),
            secret: named.signature.cloned(),
            per_minute: named.per_minute,
            paced: named.paced,
            keywords: named.keywords.to_vec(),
            chat_groups: Vec::new(),
        });
        return Some(robots.len() - 1);
    };
    // Chat groups on one robot share its budget and its secret.
    let earlier = &robots[at];
    if earlier.secret.as_ref() != named.signature {
        problems.push(ConfigProblem::new(
            format!("{path}.signature"),
            format!(
                "differs from {first}, which posts through the same robot; one robot has one secret"
            ),
        ));
    }
    if earlier.keywords != named.keywords {
        problems.push(ConfigProblem::new(
            format!("{path}.keywords"),
            format!(
                "differ from {first}, which posts through the same robot; one robot has one list of keywords"
            ),
        ));
    }
    if earlier.per_minute != named.per_minute || earlier.paced != named.paced {
        problems.push(ConfigProblem::new(
            format!("{path}.per_minute"),
            format!(
                "differs from {first}, which posts through the same robot (same host, path and access_token); the robot has one budget, so give both the same per_minute and paced"
            ),
        ));
    }
    Some(at)
}

fn delivery_problems(config: &DingTalkConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let delivery = &config.delivery;
    if !(500..=MAX_DEADLINE_MS).contains(&delivery.deadline_ms) {
        problems.push(ConfigProblem::new(
            "delivery.deadline_ms",
            format!(
                "is {}; it must be between 500 and {MAX_DEADLINE_MS}, so every answer leaves before a Vanus trigger's 5000 ms timeout",
                delivery.deadline_ms
            ),
        ));
    }
    if delivery.cooldown_secs > MAX_COOLDOWN_SECS {
        problems.push(ConfigProblem::new(
            "delivery.cooldown_secs",
            format!(
                "is {}; it must be at most {MAX_COOLDOWN_SECS} (a day): DingTalk blocks a throttled robot for 10 minutes",
                delivery.cooldown_secs
            ),
        ));
    }
    if let Some(problem) = proxy_plan(config).problem() {
        problems.push(ConfigProblem::new("delivery.proxy", problem));
    }
    if delivery.connect_timeout_ms == 0 {
        problems.push(ConfigProblem::new(
            "delivery.connect_timeout_ms",
            "must be above 0",
        ));
    }
    let digest = &config.digest;
    if digest.enabled && digest.max_queued == 0 {
        problems.push(ConfigProblem::new(
            "digest.max_queued",
            "must be above 0; set digest.enabled: false to answer 429 past the budget instead",
        ));
    }
    if digest.linger_ms > 60_000 {
        problems.push(ConfigProblem::new(
            "digest.linger_ms",
            "must be at most 60000: a storm's first summary should arrive within seconds",
        ));
    }
    problems
}

/// The kit's settings from `delivery` and `digest`.
fn settings(config: &DingTalkConfig) -> Settings {
    let digest = &config.digest;
    Settings {
        deadline: config.delivery.deadline(),
        cooldown: config.delivery.cooldown(),
        outbox: digest.enabled.then(|| OutboxSettings {
            max_queued: digest.max_queued,
            reserved: digest.reserved,
            burst: digest.burst,
            linger: digest.linger(),
        }),
        names: SettingNames {
            max_queued: "digest.max_queued",
            deadline: "delivery.deadline_ms",
        },
    }
}

/// `delivery.proxy` and `delivery.no_proxy`.
fn proxy_plan(config: &DingTalkConfig) -> ProxyPlan {
    ProxyPlan {
        proxy: config.delivery.proxy.clone(),
        no_proxy: config.delivery.no_proxy.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_robot_named_by_two_chat_groups_and_a_pool_is_one_robot() {
        let plan = Plan::build(&parse(
            r#"
bot:
  webhooks:
    - { chat_group: a, url: "https://x.test/robot/send?access_token=one" }
    - chat_group: pool
      robots:
        - { url: "https://X.TEST:443/robot/send?access_token=one" }
        - { url: "https://x.test/robot/send?access_token=two", signature: SEC2, per_minute: 10 }
"#,
        ))
        .expect("valid");
        assert_eq!(plan.robots.len(), 2);
        assert_eq!(plan.robots[0].chat_groups, ["a", "pool"]);
        assert_eq!(plan.groups[1].robots, [0, 1]);
        assert_eq!(plan.robots[1].per_minute, 10);
        assert!(plan.robots[1].secret.is_some());
        assert_eq!(plan.default_group, "a");
    }

    #[test]
    fn a_chat_group_has_either_a_url_or_robots() {
        let found = problems(
            r#"
bot:
  webhooks:
    - { chat_group: both, url: "https://x.test/?access_token=1", robots: [{ url: "https://x.test/?access_token=2" }] }
    - { chat_group: neither }
    - { chat_group: pool, signature: SEC1, robots: [{ url: "https://x.test/?access_token=3" }] }
"#,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("bot.webhooks.0.url: is set beside `robots`"));
        assert!(found[1].starts_with("bot.webhooks.1.url: is missing"));
        assert!(found[2].starts_with("bot.webhooks.2.signature: is set beside `robots`"));
    }

    #[test]
    fn a_pools_robots_are_checked_each_with_its_path() {
        let found = problems(
            r#"
bot:
  webhooks:
    - chat_group: pool
      robots:
        - { url: "not a url" }
        - { url: "https://x.test/?access_token=t", per_minute: 30 }
"#,
        );
        assert!(
            found[0].starts_with("bot.webhooks.0.robots.0.url:"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("bot.webhooks.0.robots.1.per_minute: is 30"),
            "{found:?}"
        );
    }
}
