//! The DingTalk sink's configuration, exactly as the original sink's README
//! has it (`bot.default`, `bot.webhooks[]`), plus optional delivery settings.
//! These are the keys as written; [`crate::plan`] reads them once into what
//! the sink runs, and is what validates them (every problem, with its key
//! path).
//!
//! ```yaml
//! bot:
//!   default: ops                 # optional; the first webhook's group otherwise
//!   webhooks:
//!     - chat_group: ops
//!       url: https://oapi.dingtalk.com/robot/send?access_token=...
//!       signature: SEC...        # optional: keyword / IP allow-list robots have none
//!       per_minute: 20           # optional send budget, 1..=20
//!       paced: true              # optional; false only for a stand-in without limits
//!     - chat_group: alerts       # a pool: several robots of one DingTalk group
//!       robots:
//!         - { url: "https://oapi.dingtalk.com/robot/send?access_token=a", signature: SECa }
//!         - { url: "https://oapi.dingtalk.com/robot/send?access_token=b" }
//! delivery:                      # optional
//!   deadline_ms: 3000            # time to answer one request, pacing and retries included
//!   cooldown_secs: 600           # hold a robot this long after DingTalk throttles it
//! digest:                        # optional: what happens past a robot's budget
//!   enabled: true                # queue and merge into digests (false: answer 429)
//!   max_queued: 10000            # per outbox; past it, 429
//!   reserved: 4                  # of each robot's per_minute, kept for digests
//!   burst: 3                     # past this many events within linger_ms, the rest waits for a digest (0: off)
//!   linger_ms: 1000              # let a burst gather before the first digest
//!   group_by: "{{ data.commonLabels.alertname }}/{{ data.status }}"  # optional; the headline masked otherwise
//!   identity: "{{ data.groupKey }}"  # optional; Alertmanager's fingerprints otherwise
//!   status: "{{ data.status }}"  # optional; Alertmanager's status otherwise
//!   severity: "{{ data.commonLabels.severity }}"  # optional; a severity label otherwise
//!   timezone: Asia/Shanghai      # for the times a digest shows; default templates_timezone
//! templates: []                  # optional; see crate::template
//! templates_timezone: Asia/Shanghai
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::robot::{DINGTALK_PER_MINUTE, WebhookUrl};
use crate::secret::Secret;
use crate::template::{DEFAULT_TIMEZONE, TemplateRule};

/// The longest `delivery.deadline_ms`: an answer must leave before a Vanus
/// trigger's 5 s timeout, with room for the network.
pub const MAX_DEADLINE_MS: u64 = 4_500;

/// The longest `delivery.cooldown_secs`: a day, ample for DingTalk's
/// 10-minute block.
pub const MAX_COOLDOWN_SECS: u64 = 86_400;

/// The whole sink configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct DingTalkConfig {
    /// The chat groups and their robots.
    pub bot: BotConfig,
    /// How hard to try for each event.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// What happens to events past a robot's budget.
    #[serde(default)]
    pub digest: DigestConfig,
    /// Rules that turn events into messages (none: the data is the message).
    #[serde(default)]
    pub templates: Vec<TemplateRule>,
    /// The time zone templates show times in (an IANA name).
    #[serde(default = "default_timezone")]
    pub templates_timezone: String,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_owned()
}

/// `bot`: the chat groups.
#[derive(Debug, Clone, Deserialize)]
pub struct BotConfig {
    /// The chat group for events without `xvchatgroup`.
    #[serde(default)]
    pub default: Option<String>,
    /// One entry per chat group.
    pub webhooks: Vec<WebhookConfig>,
    /// DingTalk app robots, which chat groups name in `app`; see
    /// [`crate::app::config`].
    #[serde(default)]
    pub apps: Vec<crate::app::config::AppConfig>,
}

/// `bot.webhooks[]`: one chat group and the robot (or robots) that post
/// to it.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    /// The name events use in `xvchatgroup`.
    pub chat_group: String,
    /// The robot's webhook URL, with its `access_token`; or, for a pool,
    /// `robots`.
    #[serde(default)]
    pub url: Option<WebhookUrl>,
    /// The robot's signing secret (`SEC...`), when it is secured by signature.
    #[serde(default)]
    pub signature: Option<Secret>,
    /// Messages a minute this robot may send (DingTalk's limit is 20); for a
    /// pool, each robot's unless it says otherwise.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// Pacing on (the default). Turn it off only for a stand-in without
    /// DingTalk's limit, such as a benchmark: real DingTalk blocks the robot.
    #[serde(default = "default_paced")]
    pub paced: bool,
    /// Several robots of the one DingTalk group, each with its own budget:
    /// the group's messages are spread over those with budget left.
    #[serde(default)]
    pub robots: Vec<RobotConfig>,
    /// The app robot (a `bot.apps[]` name) serving this group instead of
    /// webhook robots, with the group's `open_conversation_id`.
    #[serde(default)]
    pub app: Option<String>,
    /// The group's `openConversationId`, for an app robot.
    #[serde(default)]
    pub open_conversation_id: Option<String>,
    /// The robot's security keywords: a message that contains none of them
    /// gets the first one added; for a pool, each robot's unless it says
    /// otherwise.
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// `bot.webhooks[].robots[]`: one robot of a pool.
#[derive(Debug, Clone, Deserialize)]
pub struct RobotConfig {
    /// Its name in logs and `/status`; `CHAT_GROUP/N` (its place in the
    /// list, from 1) by default.
    #[serde(default)]
    pub name: Option<String>,
    /// The robot's webhook URL, with its `access_token`.
    pub url: WebhookUrl,
    /// Its signing secret, when it is secured by signature.
    #[serde(default)]
    pub signature: Option<Secret>,
    /// Its messages a minute; the chat group's `per_minute` by default.
    #[serde(default)]
    pub per_minute: Option<u32>,
    /// Its pacing; the chat group's `paced` by default.
    #[serde(default)]
    pub paced: Option<bool>,
    /// Its security keywords; the chat group's `keywords` by default.
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
}

fn default_paced() -> bool {
    true
}

fn default_per_minute() -> u32 {
    DINGTALK_PER_MINUTE
}

/// `digest`: events past a robot's budget are queued durably and sent as
/// merged markdown digests instead of being refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DigestConfig {
    /// Queue and merge (true), or answer 429 past the budget (false).
    pub enabled: bool,
    /// Events queued per outbox at most; past it the sink answers 429.
    pub max_queued: u64,
    /// Of each robot's `per_minute`, the sends kept for digests, so a
    /// summary goes out within seconds when a storm starts.
    pub reserved: u32,
    /// Once more than this many events for a robot arrive within
    /// `linger_ms`, the rest of the burst waits for the digest; 0 turns it
    /// off (every event on its own while the budget lasts).
    pub burst: u32,
    /// How long the first digest of a storm waits for more events.
    pub linger_ms: u64,
    /// A template whose value groups events in a digest; by default the
    /// headline with its variable parts masked.
    pub group_by: Option<String>,
    /// A template whose value stays the same from an event's firing to its
    /// resolved; Alertmanager's fingerprints by default.
    pub identity: Option<String>,
    /// A template whose value is an event's status (`firing`, `resolved`);
    /// Alertmanager's `status` by default.
    pub status: Option<String>,
    /// A template whose value is an event's severity, to order a digest's
    /// sections by; a `severity` label by default.
    pub severity: Option<String>,
    /// The time zone of the times a digest shows; `templates_timezone`
    /// when unset.
    pub timezone: Option<crate::zone::Zone>,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_queued: 10_000,
            reserved: 4,
            burst: 3,
            linger_ms: 1_000,
            group_by: None,
            identity: None,
            status: None,
            severity: None,
            timezone: None,
        }
    }
}

impl DigestConfig {
    /// The first digest's wait for more events.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// The expressions that tell a digest about each event.
    pub fn expressions(&self) -> crate::template::DigestExpressions {
        crate::template::DigestExpressions {
            group_by: self.group_by.clone(),
            identity: self.identity.clone(),
            status: self.status.clone(),
            severity: self.severity.clone(),
        }
    }
}

/// `delivery`: time budgets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// How long one request may take, waiting for a send slot and retrying
    /// included; at most [`MAX_DEADLINE_MS`], under the 5 s a Vanus trigger
    /// waits.
    pub deadline_ms: u64,
    /// How long to leave a robot alone after DingTalk says "sent too fast"
    /// (DingTalk blocks it for 10 minutes).
    pub cooldown_secs: u64,
    /// The TCP connect timeout for DingTalk.
    pub connect_timeout_ms: u64,
    /// An HTTP(S) proxy every request to DingTalk goes through,
    /// `http://[user:password@]host:port`; unset, the environment's
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`.
    pub proxy: Option<Secret>,
    /// Hosts, domains and networks reached without the proxy,
    /// comma-separated as in `NO_PROXY` (which applies when this is unset).
    pub no_proxy: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 3_000,
            cooldown_secs: 600,
            connect_timeout_ms: 1_000,
            proxy: None,
            no_proxy: None,
        }
    }
}

impl DeliveryConfig {
    /// The time budget of one request.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The hold after a throttle answer.
    pub fn cooldown(&self) -> Duration {
        Duration::from_secs(self.cooldown_secs)
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl DingTalkConfig {
    /// The default chat group: `bot.default`, else the first webhook's.
    pub fn default_group(&self) -> Option<&str> {
        self.bot
            .default
            .as_deref()
            .or_else(|| self.bot.webhooks.first().map(|w| w.chat_group.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::SinkConfig;

    fn parse(yaml: &str) -> DingTalkConfig {
        serde_norway::from_str(yaml).expect("test config parses")
    }

    fn paths(config: &DingTalkConfig) -> Vec<String> {
        config.validate().into_iter().map(|p| p.path).collect()
    }

    fn timezone(config: &DingTalkConfig) -> crate::zone::Zone {
        crate::plan::digest_timezone(config)
    }

    const TWO_GROUPS: &str = r#"
bot:
  webhooks:
    - chat_group: ops
      url: https://oapi.dingtalk.com/robot/send?access_token=aaa
      signature: SECaaa
    - chat_group: dev
      url: https://oapi.dingtalk.com/robot/send?access_token=bbb
"#;

    #[test]
    fn the_original_readme_config_is_valid_and_defaults_to_the_first_group() {
        let config = parse(TWO_GROUPS);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.default_group(), Some("ops"));
        assert_eq!(config.bot.webhooks[0].per_minute, 20);
        assert!(
            config.bot.webhooks[1].signature.is_none(),
            "signature is optional"
        );
        assert_eq!(config.delivery.deadline(), Duration::from_secs(3));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let config = parse(
            r#"
bot:
  default: nobody
  webhooks:
    - chat_group: ops
      url: "not a url"
    - chat_group: ops
      url: ftp://example.com/x
      per_minute: 25
delivery:
  deadline_ms: 5000
  cooldown_secs: 18446744073709551615
"#,
        );
        assert_eq!(
            paths(&config),
            [
                "bot.webhooks.0.url",
                "bot.webhooks.1.chat_group",
                "bot.webhooks.1.per_minute",
                "bot.webhooks.1.url",
                "bot.default",
                "delivery.deadline_ms",
                "delivery.cooldown_secs",
            ]
        );
    }

    #[test]
    fn an_empty_webhook_list_is_a_problem() {
        let config = parse("bot:\n  webhooks: []\n");
        assert_eq!(paths(&config), ["bot.webhooks"]);
    }

    #[test]
    fn one_url_with_two_secrets_is_a_problem() {
        let config = parse(
            r#"
bot:
  webhooks:
    - { chat_group: a, url: "https://x.test/robot/send?access_token=t", signature: SEC1 }
    - { chat_group: b, url: "https://x.test/robot/send?access_token=t", signature: SEC2 }
"#,
        );
        assert_eq!(paths(&config), ["bot.webhooks.1.signature"]);
    }

    #[test]
    fn keywords_are_checked_and_one_robot_has_one_list() {
        let config = parse(
            r#"
bot:
  webhooks:
    - { chat_group: a, url: "https://x.test/robot/send?access_token=t", keywords: [ops] }
    - { chat_group: b, url: "https://x.test/robot/send?access_token=t", keywords: [dev] }
    - { chat_group: c, url: "https://x.test/robot/send?access_token=u", keywords: [ok, " "] }
    - { chat_group: d, url: "https://x.test/robot/send?access_token=v", keywords: [a, b, c, d, e, f, g, h, i, j, k] }
delivery:
  proxy: "socks5://alice:pw@proxy:1080"
"#,
        );
        assert_eq!(
            paths(&config),
            [
                "bot.webhooks.1.keywords",
                "bot.webhooks.2.keywords.1",
                "bot.webhooks.3.keywords",
                "delivery.proxy",
            ]
        );
    }

    #[test]
    fn one_robot_spelled_twice_must_have_one_budget() {
        let config = parse(
            r#"
bot:
  webhooks:
    - { chat_group: a, url: "https://x.test/robot/send?access_token=t&x=1", per_minute: 10 }
    - { chat_group: b, url: "https://X.TEST:443/robot/send?x=1&access_token=t" }
    - { chat_group: c, url: "https://x.test/robot/send?access_token=other" }
"#,
        );
        assert_eq!(paths(&config), ["bot.webhooks.1.per_minute"]);
    }

    #[test]
    fn digest_reserve_must_leave_room_for_direct_sends() {
        let config = parse(
            "bot:\n  webhooks:\n    - { chat_group: a, url: 'https://x.test/?access_token=t', per_minute: 4 }\ndigest:\n  timezone: Europe/Berlin\n",
        );
        assert_eq!(paths(&config), ["digest.reserved"]);
        assert_eq!(timezone(&config), "Europe/Berlin".parse().unwrap());
        let config = parse(
            "bot:\n  webhooks:\n    - { chat_group: a, url: 'https://x.test/?access_token=t' }\ntemplates_timezone: Asia/Tokyo\n",
        );
        assert_eq!(timezone(&config), "Asia/Tokyo".parse().unwrap());
        let off = parse(
            "bot:\n  webhooks:\n    - { chat_group: a, url: 'https://x.test/?access_token=t', per_minute: 4 }\ndigest:\n  enabled: false\n",
        );
        assert!(off.validate().is_empty());
    }

    #[test]
    fn problems_never_echo_the_token() {
        let config = parse(
            "bot:\n  webhooks:\n    - { chat_group: a, url: 'gopher://h/?access_token=topsecret' }\n",
        );
        let text: String = config.validate().iter().map(ToString::to_string).collect();
        assert!(!text.contains("topsecret"), "{text}");
    }
}
