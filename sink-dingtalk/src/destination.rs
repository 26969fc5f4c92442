//! The sink's destinations for the delivery kit: DingTalk's two kinds of
//! robot, behind one type, so chat groups of either kind share the kit's
//! routing, outboxes, digests, ledger and budgets. Both send the same
//! [`Post`]; an app robot turns it into its `msgKey` and `msgParam`.

use std::time::Duration;

use connector_sdk::async_trait;
use connector_sdk::deliver::{Answer, Destination, Digest, SharedBudget};
use connector_sdk::store::Window;

use crate::app::AppBot;
use crate::robot::{Post, Robot};

/// A webhook robot, or a destination of an app robot.
#[derive(Debug, Clone)]
pub enum Bot {
    /// A custom (webhook) robot.
    Webhook(Robot),
    /// One of an app robot's groups, or its one-to-one messages.
    App(AppBot),
}

#[async_trait]
impl Destination for Bot {
    type Payload = Post;

    fn key(&self) -> &str {
        match self {
            Bot::Webhook(robot) => robot.key(),
            Bot::App(app) => app.key(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Bot::Webhook(robot) => robot.name(),
            Bot::App(app) => app.name(),
        }
    }

    fn windows(&self) -> &[Window] {
        match self {
            Bot::Webhook(robot) => robot.windows(),
            Bot::App(app) => app.windows(),
        }
    }

    fn paced(&self) -> bool {
        match self {
            Bot::Webhook(robot) => robot.paced(),
            Bot::App(_) => true,
        }
    }

    fn shared_budget(&self) -> Option<SharedBudget> {
        match self {
            Bot::Webhook(_) => None,
            Bot::App(app) => Some(app.shared_budget()),
        }
    }

    async fn send(&self, post: &Post, timeout: Duration) -> Answer {
        match self {
            Bot::Webhook(robot) => robot.send(post, timeout).await,
            Bot::App(app) => app.send(post, timeout).await,
        }
    }

    fn digest(&self, queued: &[&Post], seed: &str) -> Option<Digest<Post>> {
        match self {
            Bot::Webhook(robot) => robot.digest(queued, seed),
            Bot::App(app) => app.digest(queued, seed),
        }
    }

    fn describe(&self) -> serde_json::Value {
        match self {
            Bot::Webhook(robot) => robot.describe(),
            Bot::App(app) => app.describe(),
        }
    }

    fn adopt(&self, newer: Self) {
        // An app robot's credentials live in its app, which a reload keeps.
        if let (Bot::Webhook(robot), Bot::Webhook(newer)) = (self, &newer) {
            robot.adopt(newer);
        }
    }
}
