//! `bot.apps[]` as written (how it is read into the plan, each problem with
//! its key path, is [`super::plan`]); and the chat groups of
//! `bot.webhooks[]` that name an app (`app:` and `open_conversation_id:`
//! instead of `url:`).
//!
//! ```yaml
//! bot:
//!   apps:
//!     - name: oncall                 # what chat groups name in `app:`
//!       app_key: dingxxxxxxxx        # the app's AppKey (Client ID)
//!       app_secret_file: /run/secrets/oncall   # or app_secret: ...
//!       robot_code: dingxxxxxxxx     # its robot's code (often the AppKey)
//!       api_base: https://api.dingtalk.com   # optional: a proxy, a test
//!       per_minute: 20               # optional: per conversation, and for its one-to-one sends
//!       app_per_minute: 100          # optional: over all of them together
//!   webhooks:
//!     - chat_group: oncall-room
//!       app: oncall
//!       open_conversation_id: cidXXXXXXXX==
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;

/// The OpenAPI's address.
pub const DEFAULT_API_BASE: &str = "https://api.dingtalk.com";

/// The default budget of an app robot per conversation (DingTalk does not
/// publish one for every edition: a conservative one).
pub const APP_PER_MINUTE: u32 = 20;

/// The default budget of an app robot over all its conversations and its
/// one-to-one messages together (conservative, as DingTalk publishes no
/// one figure for every edition).
pub const APP_TOTAL_PER_MINUTE: u32 = 100;

/// The highest `per_minute` an app may be given.
pub const MAX_APP_PER_MINUTE: u32 = 600;

/// The target name of an app's one-to-one messages, beside the chat groups:
/// events never name it; `xvusers` picks it.
pub fn one_to_one_target(app: &str) -> String {
    format!("{app}/one-to-one")
}

/// `bot.apps[]`: one app robot.
#[derive(Debug, Clone, Deserialize)]
pub struct AppConfig {
    /// Its name, which chat groups give in `app:`.
    pub name: String,
    /// The app's AppKey (its Client ID).
    pub app_key: String,
    /// The app's AppSecret; or `app_secret_file`.
    #[serde(default)]
    pub app_secret: Option<Secret>,
    /// A file holding the AppSecret (a mounted Kubernetes secret).
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// The robot's code.
    pub robot_code: String,
    /// The OpenAPI's base address.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Messages a minute per conversation (and for its one-to-one sends).
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// Messages a minute over all its conversations and one-to-one sends
    /// together.
    #[serde(default = "default_app_per_minute")]
    pub app_per_minute: u32,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_per_minute() -> u32 {
    APP_PER_MINUTE
}

fn default_app_per_minute() -> u32 {
    APP_TOTAL_PER_MINUTE
}
