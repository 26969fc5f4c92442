//! The sink's wiring of a [`Plan`]: its robots and app robots as the
//! delivery kit's routes, and the part of the plan the sink itself keeps
//! ([`Live`]). The same at start and on a live reload.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use connector_sdk::deliver::{Delivery, Route};
use connector_sdk::{BoxError, Store};
use serde_json::Value;

use crate::app::config::one_to_one_target;
use crate::app::{App, AppBot};
use crate::destination::Bot;
use crate::plan::Plan;
use crate::robot::{Robot, http_client};
use crate::template::Templates;

/// The sink's part of the config, which a reload replaces whole (the kit
/// renews its routing itself).
#[derive(Debug)]
pub(crate) struct Live {
    pub templates: Templates,
    pub default_group: Arc<str>,
    /// Each chat group of an app robot, with the target of its app's
    /// one-to-one messages.
    pub app_groups: HashMap<Arc<str>, Arc<str>>,
    /// The targets of one-to-one messages: no event names them.
    pub one_to_one: HashSet<Arc<str>>,
    pub apps: Vec<Arc<App>>,
    /// The proxies in use, masked, for `/status`.
    pub proxies: Value,
}

/// What [`wire`] made beside the routes.
pub(crate) struct Wired {
    app_groups: HashMap<String, String>,
    apps: Vec<Arc<App>>,
    proxies: Value,
}

/// The kit's routes for `plan`, each robot logged.
pub(crate) fn wire(plan: &Plan, store: &Store) -> Result<(Vec<Route<Bot>>, Wired), BoxError> {
    let client = http_client(plan.connect_timeout, &plan.proxy)?;
    let proxies = plan.proxy.describe();
    if let Some(proxies) = proxies.as_array().filter(|p| !p.is_empty()) {
        for proxy in proxies {
            tracing::info!(
                url = %proxy["url"].as_str().unwrap_or_default(),
                from = %proxy["from"].as_str().unwrap_or_default(),
                no_proxy = proxy["no_proxy"].as_str(),
                "requests to DingTalk go through a proxy"
            );
        }
    }
    let robots: Vec<Bot> = plan
        .robots
        .iter()
        .map(|robot| {
            Bot::Webhook(
                Robot::new(
                    robot.name.clone(),
                    robot.webhook.clone(),
                    robot.secret.clone(),
                    client.clone(),
                    robot.per_minute,
                    robot.paced,
                    plan.timezone,
                )
                .with_keywords(robot.keywords.clone()),
            )
        })
        .collect();
    let apps: Vec<Arc<App>> = plan
        .apps
        .iter()
        .map(|app| Arc::new(App::new(app, client.clone(), store)))
        .collect();
    for app in &plan.apps {
        tracing::info!(app = %app.name, api_base = %app.api_base, per_minute = app.per_minute, "app robot configured");
    }
    for robot in &plan.robots {
        tracing::info!(
            robot = %robot.name,
            chat_groups = ?robot.chat_groups,
            url = %robot.webhook,
            signed = robot.secret.is_some(),
            keywords = robot.keywords.len(),
            per_minute = robot.per_minute,
            "robot configured"
        );
    }
    let mut routes: Vec<Route<Bot>> = Vec::new();
    let mut app_groups = HashMap::new();
    let mut users_of_app: Vec<Option<String>> = vec![None; apps.len()];
    for group in &plan.groups {
        let members = match &group.app {
            Some(on) => {
                let app = &apps[on.app];
                let target =
                    users_of_app[on.app].get_or_insert_with(|| one_to_one_target(app.name()));
                app_groups.insert(group.name.clone(), target.clone());
                vec![Bot::App(AppBot::group(
                    Arc::clone(app),
                    group.name.clone(),
                    on.open_conversation_id.clone(),
                    plan.timezone,
                ))]
            }
            None => group.robots.iter().map(|&at| robots[at].clone()).collect(),
        };
        routes.push(Route::new(group.name.clone(), members));
    }
    for (app, target) in apps.iter().zip(&users_of_app) {
        if let Some(target) = target {
            let users = AppBot::users(Arc::clone(app), target.clone(), store, plan.timezone);
            routes.push(Route::new(target.clone(), vec![Bot::App(users)]));
        }
    }
    Ok((
        routes,
        Wired {
            app_groups,
            apps,
            proxies,
        },
    ))
}

impl Live {
    /// The sink's part of `plan`, its names shared with `delivery`'s routing.
    pub(crate) fn of(plan: Plan, delivery: &Delivery<Bot>, wired: Wired) -> Result<Self, BoxError> {
        let shared = |name: &str| delivery.target(name).ok_or("a target is not routed");
        let app_groups = wired
            .app_groups
            .iter()
            .map(|(group, users)| Ok((shared(group)?, shared(users)?)))
            .collect::<Result<HashMap<_, _>, &str>>()?;
        let one_to_one = app_groups.values().cloned().collect();
        let default_group = delivery
            .target(&plan.default_group)
            .ok_or("bot.webhooks is empty; configure at least one chat group")?;
        Ok(Self {
            templates: plan.templates,
            default_group,
            app_groups,
            one_to_one,
            apps: wired.apps,
            proxies: wired.proxies,
        })
    }
}
