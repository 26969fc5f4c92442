//! Killed with SIGKILL mid-storm and restarted on the same store: every
//! event answered 200 reaches the group, whether it had been posted or was
//! still queued in the outbox.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fake_dingtalk::{FakeDingTalk, RobotSpec};

const TOKEN: &str = "crash-token";

fn start(config: &std::path::Path, store: &std::path::Path) -> Child {
    Command::new(BINARY)
        .env("CONNECTOR_CONFIG", config)
        .env(STORE_ENV, store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts")
}

/// POSTs alerts `range` from one thread each; the ids answered 200.
fn storm(port: u16, range: std::ops::Range<usize>) -> Vec<std::thread::JoinHandle<Option<usize>>> {
    range
        .map(|i| {
            std::thread::spawn(move || {
                let answer = request(
                    port,
                    "POST",
                    "/",
                    &[("Content-Type", "application/cloudevents+json")],
                    &alert(i),
                )?;
                answer.starts_with("HTTP/1.1 200").then_some(i)
            })
        })
        .collect()
}

/// The alerts of `answered` the group has not seen yet.
fn unseen(fake: &FakeDingTalk, answered: &[usize]) -> Vec<usize> {
    let shown = times_shown(fake, TOKEN, 50);
    answered
        .iter()
        .copied()
        .filter(|i| shown[*i] == 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_answered_200_is_shown_after_a_kill_and_a_restart() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new(TOKEN)])
        .await
        .expect("fake starts");
    let port = free_port();
    let config = write_config(
        "crash.yml",
        &format!(
            "port: {port}\nbot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\n# The flusher waits: the kill finds events queued.\ndigest:\n  linger_ms: 3000\n",
            fake.webhook_url(TOKEN)
        ),
    );
    let store = store_dir("crash");
    let mut sink = start(&config, &store);
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .expect("ready");

    // 40 alerts: 16 go out at once, the rest are queued; then 10 more are
    // in flight when the process is killed.
    let first: Vec<usize> = tokio::task::spawn_blocking(move || {
        storm(port, 0..40)
            .into_iter()
            .filter_map(|t| t.join().ok().flatten())
            .collect()
    })
    .await
    .expect("first wave");
    assert_eq!(first.len(), 40, "all accepted");
    let second = tokio::task::spawn_blocking(move || storm(port, 40..50))
        .await
        .expect("second wave starts");
    tokio::time::sleep(Duration::from_millis(5)).await;
    sink.kill().expect("SIGKILL");
    sink.wait().expect("reaped");
    let answered: Vec<usize> = first
        .into_iter()
        .chain(second.into_iter().filter_map(|t| t.join().ok().flatten()))
        .collect();
    // Posts alone cannot tell (the fake never takes more than 20 a
    // minute): alerts answered 200 but not yet shown are what the restart
    // must deliver.
    let unseen_at_kill = unseen(&fake, &answered);
    assert!(
        !unseen_at_kill.is_empty(),
        "the kill came before the outbox was sent"
    );

    let mut sink = start(&config, &store);
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .expect("ready again");
    let started = Instant::now();
    let missing = loop {
        let missing = unseen(&fake, &answered);
        if missing.is_empty() || started.elapsed() > Duration::from_secs(20) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    terminate(sink.id());
    sink.wait().expect("exits");
    assert!(
        missing.is_empty(),
        "answered 200 but never shown: {missing:?}"
    );
    assert_eq!(fake.throttled_for(TOKEN), 0, "the restart kept the budget");
}
