//! A robot's webhook URL, parsed once when the config is read: where to
//! POST, how to show it without its token, and which robot it is.
//!
//! Two spellings of one URL (another query order, an upper-case host, an
//! explicit default port) are one robot with one budget: DingTalk counts per
//! access token, so a robot is known by its host, port, path and token.

use std::fmt;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

/// A parsed webhook URL. `Debug` and `Display` mask every query value.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    url: url::Url,
    robot: RobotId,
}

/// Which robot a webhook posts as: host, port, path and access token.
/// Printing it shows the host and path only; [`RobotId::key`] is a hash, safe
/// for store keys that operators can read.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RobotId {
    identity: String,
    shown: String,
}

impl RobotId {
    /// A short hash of the identity: the robot's name in the store.
    pub fn key(&self) -> String {
        let digest = Sha256::digest(self.identity.as_bytes());
        hex::encode(&digest[..12])
    }
}

impl fmt::Debug for RobotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RobotId({})", self.shown)
    }
}

impl fmt::Display for RobotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Webhook {
    /// Parses a webhook URL: absolute http(s) with a host. The error never
    /// repeats the URL, which carries the access token.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw.trim()).map_err(|err| {
            format!("is not a valid URL ({err}); paste the robot's webhook, https://oapi.dingtalk.com/robot/send?access_token=...")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "must be an http or https URL, not `{}:`",
                url.scheme()
            ));
        }
        let Some(host) = url.host_str() else {
            return Err("has no host".to_owned());
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or_default();
        let token = url
            .query_pairs()
            .find(|(key, _)| key == "access_token")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        let path = url.path().trim_end_matches('/');
        let robot = RobotId {
            identity: format!("{host}\n{port}\n{path}\n{token}"),
            shown: format!("{host}{path}"),
        };
        Ok(Self { url, robot })
    }

    /// Which robot this is.
    pub fn robot(&self) -> &RobotId {
        &self.robot
    }

    /// The URL to POST to, token included. Never log or show it.
    pub(crate) fn expose(&self) -> &url::Url {
        &self.url
    }

    /// The secrets in the URL (the access token, a password), as written in
    /// it and decoded: what a quoted answer must never repeat.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let raw_token = self
            .url
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.strip_prefix("access_token="));
        let token = self
            .url
            .query_pairs()
            .filter(|(key, _)| key == "access_token")
            .map(|(_, value)| value.into_owned());
        let mut secrets: Vec<String> = raw_token.map(str::to_owned).chain(token).collect();
        secrets.extend(self.url.password().map(str::to_owned));
        secrets.retain(|secret| !secret.is_empty());
        secrets
    }

    /// The URL with every query value masked: safe to log and to show.
    pub fn masked(&self) -> String {
        let mut masked = self.url.clone();
        if self.url.query().is_some() {
            let pairs: Vec<String> = self
                .url
                .query_pairs()
                .map(|(key, _)| format!("{key}=***"))
                .collect();
            masked.set_query(Some(&pairs.join("&")));
        }
        masked.set_password(None).ok();
        masked.set_username("").ok();
        masked.to_string()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({})", self.masked())
    }
}

impl fmt::Display for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A webhook as read from the config: parsed there, once; a URL that does
/// not parse is kept as its problem, for the config's validation to report
/// with its key path beside every other problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(Result<Webhook, String>);

impl WebhookUrl {
    /// The parsed webhook, or what is wrong with the URL.
    pub fn webhook(&self) -> Result<&Webhook, &str> {
        self.0.as_ref().map_err(String::as_str)
    }
}

impl From<&str> for WebhookUrl {
    fn from(raw: &str) -> Self {
        Self(Webhook::parse(raw))
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|raw| Self::from(raw.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot(raw: &str) -> RobotId {
        Webhook::parse(raw).expect("parses").robot().clone()
    }

    #[test]
    fn spellings_of_one_robot_are_one_robot() {
        let plain = robot("https://oapi.dingtalk.com/robot/send?access_token=abc");
        for same in [
            "https://OAPI.DingTalk.com/robot/send?access_token=abc",
            "https://oapi.dingtalk.com:443/robot/send?access_token=abc",
            "https://oapi.dingtalk.com/robot/send?x=1&access_token=abc",
            "https://oapi.dingtalk.com/robot/send/?access_token=abc",
            " https://oapi.dingtalk.com/robot/send?access_token=abc ",
        ] {
            assert_eq!(robot(same), plain, "{same}");
        }
        for other in [
            "https://oapi.dingtalk.com/robot/send?access_token=abd",
            "http://oapi.dingtalk.com/robot/send?access_token=abc",
            "https://oapi.dingtalk.com:8443/robot/send?access_token=abc",
        ] {
            assert_ne!(robot(other), plain, "{other}");
        }
        assert_eq!(plain.key().len(), 24);
    }

    #[test]
    fn nothing_printed_shows_the_token() {
        let webhook =
            Webhook::parse("https://u:pw@oapi.dingtalk.com/robot/send?access_token=deadbeef")
                .expect("parses");
        for shown in [
            webhook.to_string(),
            format!("{webhook:?}"),
            webhook.robot().to_string(),
            format!("{:?}", webhook.robot()),
            webhook.robot().key(),
        ] {
            assert!(
                !shown.contains("deadbeef") && !shown.contains("pw"),
                "{shown}"
            );
        }
        assert_eq!(
            webhook.masked(),
            "https://oapi.dingtalk.com/robot/send?access_token=***"
        );
    }

    #[test]
    fn the_secrets_are_the_token_and_the_password_as_written_and_decoded() {
        let webhook = Webhook::parse("https://u:pw@h.test/robot/send?x=1&access_token=dead%2Bbeef")
            .expect("parses");
        assert_eq!(webhook.secrets(), ["dead%2Bbeef", "dead+beef", "pw"]);
    }

    #[test]
    fn problems_say_what_to_paste_without_echoing_the_url() {
        let err = Webhook::parse("not a url?access_token=topsecret").expect_err("invalid");
        assert!(err.contains("paste the robot's webhook") && !err.contains("topsecret"));
        let err = Webhook::parse("ftp://h/x?access_token=topsecret").expect_err("scheme");
        assert_eq!(err, "must be an http or https URL, not `ftp:`");
    }
}
