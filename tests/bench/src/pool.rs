//! The pool row: one chat group served by three robots, each with
//! DingTalk's own budget of 20 a minute, and the same 1,000 alerts as the
//! storm row's single robot. How many posts that took, how long until the
//! last alert was visible, and that no robot went over its budget.
//!
//! Bounded: fixed counts, the storm row's deadline on the wait for
//! visibility, and [`TIMEOUT`] on the whole row (the caller's).

use std::path::Path;
use std::time::{Duration, Instant};

use fake_dingtalk::{FakeDingTalk, RobotSpec, most_in_any_minute};

use super::procs::{self, SinkSpec};
use super::storm::{self, ALERTS, IN_FLIGHT};

/// The pool's robots, as the fake DingTalk knows them.
pub const ROBOTS: [&str; 3] = ["pool-1", "pool-2", "pool-3"];
/// The longest the whole row may take: the wait for visibility and the start-up.
pub const TIMEOUT: Duration = Duration::from_secs(storm::VISIBLE_WITHIN.as_secs() + 30);

/// What one pool run measured.
#[derive(Debug, Clone)]
pub struct Pool {
    /// From the first alert sent to the last one visible.
    pub last_visible: Duration,
    /// Alerts visible at the end (all of them, unless the wait ran out).
    pub visible: usize,
    /// POSTs DingTalk accepted, over all the robots.
    pub posts: usize,
    /// Of those, digests.
    pub digests: usize,
    /// POSTs accepted per robot, in [`ROBOTS`] order.
    pub per_robot: Vec<usize>,
    /// The most POSTs any one robot made in any 60 s.
    pub most_in_a_minute: usize,
    /// POSTs DingTalk refused as too fast, over all the robots.
    pub throttled: usize,
    /// Answers other than 200.
    pub refused: usize,
}

/// Runs the pool row against a fresh fake DingTalk with DingTalk's limits.
pub async fn measure(binary: &Path, work: &Path) -> Result<Pool, String> {
    let fake = FakeDingTalk::start(ROBOTS.iter().map(|r| RobotSpec::new(r)).collect())
        .await
        .map_err(|err| format!("cannot start the fake DingTalk: {err}"))?;
    let robots: String = ROBOTS
        .iter()
        .map(|r| format!("        - {{ url: \"{}\" }}\n", fake.webhook_url(r)))
        .collect();
    let bot = format!("bot:\n  webhooks:\n    - chat_group: bench\n      robots:\n{robots}");
    let spec = SinkSpec {
        binary,
        dir: work,
        webhook_url: "",
        log_level: "warn",
        paced: true,
        // Every event on its own while the pool's budget lasts: what the
        // digest docs advise for a pool (a storm's start is spread over
        // three robots, not held for the digest).
        extra_yaml: procs::SINGLE_SENDS,
    };
    let running = procs::start_sink_with_bot(&spec, &bot).await?;
    let first = Instant::now();
    let refused = storm::send_alerts(running.target.http).await;
    let (visible, last_visible) = storm::wait_visible(&fake, &ROBOTS, first).await;
    drop(running);
    let accepted: Vec<_> = ROBOTS.iter().map(|r| fake.accepted_for(r)).collect();
    Ok(Pool {
        last_visible,
        visible,
        posts: accepted.iter().map(Vec::len).sum(),
        digests: accepted.iter().map(|a| storm::digests_in(a)).sum(),
        per_robot: accepted.iter().map(Vec::len).collect(),
        most_in_a_minute: ROBOTS
            .iter()
            .map(|r| most_in_any_minute(&fake.posted_at(r)))
            .max()
            .unwrap_or(0),
        throttled: ROBOTS.iter().map(|r| fake.throttled_for(r)).sum(),
        refused,
    })
}

/// The pool section of BENCHMARKS.md, beside the storm row's single robot.
pub fn markdown(md: &mut String, pool: &Pool, single: Option<&storm::Storm>) {
    use std::fmt::Write;
    let _ = writeln!(md, "## Pool: one chat group on three robots\n");
    let _ = writeln!(
        md,
        "The storm row's {ALERTS} alerts at {IN_FLIGHT} in flight, sent to a chat group served by \
         {} robots (`robots:`), each with DingTalk's budget of 20 a minute, against the fake \
         DingTalk. Messages go to the robots with budget left.\n",
        ROBOTS.len()
    );
    let single_cell = |f: &dyn Fn(&storm::Storm) -> String| single.map_or("-".to_owned(), f);
    let _ = writeln!(
        md,
        "| measure | 3 robots | 1 robot (storm row) |\n|:--|--:|--:|"
    );
    let _ = writeln!(
        md,
        "| the last alert visible after | {:.1} s | {} |",
        pool.last_visible.as_secs_f64(),
        single_cell(&|s| format!("{:.1} s", s.last_visible.as_secs_f64()))
    );
    let _ = writeln!(
        md,
        "| alerts visible | {} of {ALERTS} | {} |",
        pool.visible,
        single_cell(&|s| format!("{} of {ALERTS}", s.visible))
    );
    let _ = writeln!(
        md,
        "| posts used (digests among them) | {} ({}) | {} |",
        pool.posts,
        pool.digests,
        single_cell(&|s| format!("{} ({})", s.posts, s.digests))
    );
    let per_robot: Vec<String> = pool.per_robot.iter().map(usize::to_string).collect();
    let _ = writeln!(md, "| posts per robot | {} | - |", per_robot.join(" / "));
    let _ = writeln!(
        md,
        "| most posts by one robot in any 60 s | {} | {} |",
        pool.most_in_a_minute,
        single_cell(&|s| s.most_in_a_minute.to_string())
    );
    let _ = writeln!(
        md,
        "| throttled by DingTalk | {} | {} |",
        pool.throttled,
        single_cell(&|s| s.throttled.to_string())
    );
    let _ = writeln!(
        md,
        "| alerts not answered 200 | {} | {} |\n",
        pool.refused,
        single_cell(&|s| s.refused.to_string())
    );
}
