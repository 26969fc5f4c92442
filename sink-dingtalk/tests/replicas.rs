//! Three sink processes sharing one robot through a real Redis, a storm of
//! alerts spread over them, and one killed with SIGKILL mid-storm: every
//! alert reaches the group, none twice unless its request was in flight on
//! the killed one, DingTalk throttles none, and no 60 s sees more than 20
//! posts.

mod common;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use connector_sdk::testing::RedisServer;
use fake_dingtalk::{FakeDingTalk, RobotSpec, most_in_any_minute};

const TOKEN: &str = "replicas-token";
const ALERTS: usize = 150;

/// One alert, sent as a trigger behind a load balancer would: to its
/// replica, and on any failure again to the next one, after a trigger's
/// backoff (1 s, 5 s, 10 s, 30 s, 60 s). Returns whether the first attempt
/// failed (its request may have been in flight on the killed replica,
/// whose claim on it lapses after 30 s).
fn deliver(i: usize, ports: &[u16]) -> bool {
    for (attempt, backoff) in [1, 5, 10, 30, 60].into_iter().enumerate() {
        let port = ports[(i + attempt) % ports.len()];
        let answer = request(
            port,
            "POST",
            "/",
            &[("Content-Type", "application/cloudevents+json")],
            &alert(i),
        );
        if answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
            return attempt > 0;
        }
        std::thread::sleep(Duration::from_secs(backoff));
    }
    panic!("alert {i} was never accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_over_three_replicas_one_killed_shows_every_alert_within_the_budget() {
    let redis = RedisServer::start();
    let fake = FakeDingTalk::start(vec![RobotSpec::new(TOKEN)])
        .await
        .expect("fake starts");
    let config = write_config(
        "replicas.yml",
        &format!(
            "store:\n  redis:\n    url: \"{}\"\nbot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\n",
            redis.url(),
            fake.webhook_url(TOKEN)
        ),
    );
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut sinks: Vec<Child> = ports
        .iter()
        .enumerate()
        .map(|(n, port)| spawn_quiet(&format!("replica-{n}"), &config, *port))
        .collect();
    for &port in &ports {
        tokio::task::spawn_blocking(move || wait_ready(port))
            .await
            .expect("ready");
    }

    // The storm: 16 in flight, round robin; replica 1 dies a third of the way.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (next, answered, ports) = (Arc::clone(&next), Arc::clone(&answered), ports.clone());
            std::thread::spawn(move || {
                let mut retried = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ALERTS {
                        return retried;
                    }
                    if deliver(i, &ports) {
                        retried.push(i);
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < ALERTS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sinks[1].kill().expect("SIGKILL");
    sinks[1].wait().expect("reaped");
    let retried: Vec<usize> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();

    let mut shown = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        shown = times_shown(&fake, TOKEN, ALERTS);
        if shown.iter().all(|n| *n > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (n, sink) in sinks.iter_mut().enumerate() {
        if n != 1 {
            terminate(sink.id());
            sink.wait().expect("exits");
        }
    }
    let missing: Vec<usize> = (0..ALERTS).filter(|i| shown[*i] == 0).collect();
    assert!(
        missing.is_empty(),
        "never shown within two minutes: {missing:?}"
    );
    let twice: Vec<usize> = (0..ALERTS).filter(|i| shown[*i] > 1).collect();
    assert!(
        twice.iter().all(|i| retried.contains(i)),
        "shown twice though never in flight on the killed replica: {twice:?} (retried: {retried:?})"
    );
    assert_eq!(fake.throttled_for(TOKEN), 0, "DingTalk throttled nothing");
    let accepted = fake.accepted_for(TOKEN);
    let most = most_in_any_minute(&fake.posted_at(TOKEN));
    assert!(most <= 20, "{most} posts within 60 s");
    println!(
        "{ALERTS} alerts over 3 replicas, one killed: all shown after {:.1} s in {} posts; {} retried after the kill, {} shown twice",
        started.elapsed().as_secs_f64(),
        accepted.len(),
        retried.len(),
        twice.len()
    );
}
