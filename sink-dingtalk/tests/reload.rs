//! Live reload on the real binary, as an operator does it: `POST /-/reload`
//! and SIGHUP after a robot's URL file changed (a Kubernetes Secret), and a
//! config file swapped by rename (a ConfigMap's symlink swap) while events
//! flow: no request fails, nothing is lost, the new robot is used from then
//! on. A bad config on reload keeps the old one and is counted `invalid`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fake_dingtalk::{FakeDingTalk, RobotSpec};

const STRUCTURED: &str = "application/cloudevents+json";

/// The body of an HTTP answer.
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Sends alert `i`; the raw answer.
fn send(port: u16, i: usize) -> String {
    request(
        port,
        "POST",
        "/",
        &[("content-type", STRUCTURED)],
        &alert(i),
    )
    .unwrap_or_default()
}

fn reload(port: u16) -> String {
    request(port, "POST", "/-/reload", &[], "").unwrap_or_default()
}

/// The running config's hash, as `/status` shows it.
fn config_hash(port: u16) -> String {
    let answer = request(port, "GET", "/status", &[], "").unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(body(&answer)).unwrap_or_default();
    status["config"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn metric(port: u16, result: &str) -> String {
    let metrics = request(port, "GET", "/metrics", &[], "").unwrap_or_default();
    let series = format!("connector_config_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or("missing")
        .to_owned()
}

/// Waits up to 15 s for `done`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not within 15 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replaces `path` as a ConfigMap update does: a new file renamed over it.
fn swap(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("written");
    std::fs::rename(&next, path).expect("renamed");
}

/// A config with chat group `ops` on the robot whose URL is in `url_file`,
/// unpaced and without digests (each event sent at once, so each is on the
/// robot of the config it arrived under).
fn config_on(url_file: &Path) -> String {
    format!(
        "digest:\n  enabled: false\nbot:\n  webhooks:\n    - chat_group: ops\n      url_file: {}\n      paced: false\n",
        url_file.display()
    )
}

/// Events sent from another thread until stopped (at most 100): how many,
/// each answered 200.
struct Flow {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(usize, String)>>,
}

impl Flow {
    fn start(port: u16, first: usize, sent: Arc<AtomicUsize>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut answers = Vec::new();
            for i in first..first + 100 {
                if flag.load(Ordering::Acquire) {
                    break;
                }
                answers.push((i, send(port, i)));
                sent.fetch_add(1, Ordering::AcqRel);
            }
            answers
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<(usize, String)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the flow ends")
    }
}

fn assert_all_delivered(answers: &[(usize, String)]) {
    for (i, answer) in answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "event {i}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_post_and_by_a_file_swap_while_events_flow_moves_to_the_new_robot() {
    let fake = FakeDingTalk::start(vec![
        RobotSpec::new("old").per_minute(1_000),
        RobotSpec::new("new").per_minute(1_000),
        RobotSpec::new("third").per_minute(1_000),
    ])
    .await
    .expect("fake starts");
    let url_file = write_config("reload-post.url", &fake.webhook_url("old"));
    let config = write_config("reload-post.yml", &config_on(&url_file));
    let third_url = write_config("reload-third.url", &fake.webhook_url("third"));
    let new_url = fake.webhook_url("new");
    let port = free_port();
    let mut child = spawn_quiet("reload-post", &config, port);
    let result = tokio::task::spawn_blocking(move || {
        wait_ready(port);
        let started_on = config_hash(port);
        assert_eq!(started_on.len(), 12, "a short hash in /status");
        assert_all_delivered(&(0..3).map(|i| (i, send(port, i))).collect::<Vec<_>>());

        // The URL's file changes (a Secret), not the config: only a reload
        // reads it. Events flow through the reload.
        std::fs::write(&url_file, &new_url).expect("written");
        let sent = Arc::new(AtomicUsize::new(0));
        let flow = Flow::start(port, 3, Arc::clone(&sent));
        until("events flow", || sent.load(Ordering::Acquire) >= 3);
        let answer = reload(port);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(body(&answer).contains(r#""result":"ok""#), "{answer}");
        let flowing = flow.stop();
        assert_all_delivered(&flowing);
        let next = 3 + flowing.len();
        let after_post: Vec<_> = (next..next + 3).map(|i| (i, send(port, i))).collect();
        assert_all_delivered(&after_post);

        // The config file swapped by rename, as a ConfigMap update: seen by
        // its content within a second or so, while events flow.
        let sent = Arc::new(AtomicUsize::new(0));
        let flow = Flow::start(port, next + 3, Arc::clone(&sent));
        until("events flow", || sent.load(Ordering::Acquire) >= 3);
        let before = config_hash(port);
        swap(
            &config,
            &format!("# the third robot\n{}", config_on(&third_url)),
        );
        until("the file change is reloaded", || {
            config_hash(port) != before
        });
        let flowing_2 = flow.stop();
        assert_all_delivered(&flowing_2);
        let last = next + 3 + flowing_2.len();
        let after_swap: Vec<_> = (last..last + 3).map(|i| (i, send(port, i))).collect();
        assert_all_delivered(&after_swap);
        (next, last, metric(port, "ok"), metric(port, "invalid"))
    })
    .await;
    terminate(child.id());
    tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(20)))
        .await
        .expect("exited");
    let (next, last, ok, invalid) = result.expect("the steps pass");
    assert_eq!((ok.as_str(), invalid.as_str()), ("2", "0"));

    let total = last + 3;
    let old = times_shown(&fake, "old", total);
    let new = times_shown(&fake, "new", total);
    let third = times_shown(&fake, "third", total);
    for i in 0..total {
        assert_eq!(old[i] + new[i] + third[i], 1, "event {i} posted once");
    }
    assert!((0..3).all(|i| old[i] == 1), "before: the old robot");
    assert!(
        (next..next + 3).all(|i| new[i] == 1),
        "after the POST: the new robot"
    );
    assert!(
        (last..total).all(|i| third[i] == 1),
        "after the swap: the third robot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_on_reload_keeps_the_old_one_and_a_runtime_key_needs_a_restart() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("kept").per_minute(1_000)])
        .await
        .expect("fake starts");
    let url_file = write_config("reload-bad.url", &fake.webhook_url("kept"));
    let good = config_on(&url_file);
    let config = write_config("reload-bad.yml", &good);
    let port = free_port();
    let mut child = spawn_quiet("reload-bad", &config, port);
    let result = tokio::task::spawn_blocking(move || {
        wait_ready(port);
        let running = config_hash(port);
        swap(
            &config,
            &format!("{good}    - chat_group: ops\n      url: \"not a url\"\n"),
        );
        let answer = reload(port);
        assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
        assert!(body(&answer).contains(r#""result":"invalid""#), "{answer}");
        assert!(body(&answer).contains("bot.webhooks.1"), "{answer}");
        assert_eq!(config_hash(port), running, "the old config still runs");
        let delivered = send(port, 0);
        // The poll saw the same bad file: counted once, by the POST or the poll.
        let invalid = metric(port, "invalid");

        swap(&config, &format!("max_in_flight: 100\n{good}"));
        let answer = reload(port);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            body(&answer).contains(r#""needs_restart":["max_in_flight"]"#),
            "{answer}"
        );
        let still_served = send(port, 1);
        (delivered, invalid, still_served)
    })
    .await;
    terminate(child.id());
    tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(20)))
        .await
        .expect("exited");
    let (delivered, invalid, still_served) = result.expect("the steps pass");
    assert!(delivered.starts_with("HTTP/1.1 200"), "{delivered}");
    assert!(still_served.starts_with("HTTP/1.1 200"), "{still_served}");
    assert!(
        invalid == "1" || invalid == "2",
        "invalid counted: {invalid}"
    );
    assert_eq!(times_shown(&fake, "kept", 2), [1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let fake = FakeDingTalk::start(vec![
        RobotSpec::new("before").per_minute(1_000),
        RobotSpec::new("after").per_minute(1_000),
    ])
    .await
    .expect("fake starts");
    let url_file = write_config("reload-hup.url", &fake.webhook_url("before"));
    let config = write_config("reload-hup.yml", &config_on(&url_file));
    let after_url = fake.webhook_url("after");
    let port = free_port();
    let mut child = spawn_quiet("reload-hup", &config, port);
    let pid = child.id();
    let answers = tokio::task::spawn_blocking(move || {
        wait_ready(port);
        let first = send(port, 0);
        // Only the URL file changes: the poll of the config file does not
        // see it, SIGHUP does.
        std::fs::write(&url_file, &after_url).expect("written");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        until("SIGHUP is reloaded", || metric(port, "ok") == "1");
        (first, send(port, 1))
    })
    .await;
    let alive = child.try_wait().expect("wait").is_none();
    terminate(child.id());
    tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(20)))
        .await
        .expect("exited");
    let (first, second) = answers.expect("the steps pass");
    assert!(alive, "SIGHUP must not stop the process");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(times_shown(&fake, "before", 2), [1, 0]);
    assert_eq!(times_shown(&fake, "after", 2), [0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_secret_applies_to_the_same_robot_on_reload() {
    let fake = FakeDingTalk::start(vec![
        RobotSpec::signed("rotated", "SECnew").per_minute(1_000),
    ])
    .await
    .expect("fake starts");
    let url_file = write_config("reload-secret.url", &fake.webhook_url("rotated"));
    let secret_file = write_config("reload-secret.sig", "SECold\n");
    let config = write_config(
        "reload-secret.yml",
        &format!(
            "digest:\n  enabled: false\nbot:\n  webhooks:\n    - chat_group: ops\n      url_file: {}\n      signature_file: {}\n      paced: false\n",
            url_file.display(),
            secret_file.display()
        ),
    );
    let port = free_port();
    let mut child = spawn_quiet("reload-secret", &config, port);
    let answers = tokio::task::spawn_blocking(move || {
        wait_ready(port);
        let refused = send(port, 0);
        std::fs::write(&secret_file, "SECnew\n").expect("written");
        let reloaded = reload(port);
        (refused, reloaded, send(port, 1))
    })
    .await;
    terminate(child.id());
    tokio::task::spawn_blocking(move || exit_within(&mut child, Duration::from_secs(20)))
        .await
        .expect("exited");
    let (refused, reloaded, signed) = answers.expect("the steps pass");
    assert!(
        !refused.starts_with("HTTP/1.1 200"),
        "the old secret: {refused}"
    );
    assert!(reloaded.starts_with("HTTP/1.1 200"), "{reloaded}");
    assert!(
        signed.starts_with("HTTP/1.1 200"),
        "the new secret: {signed}"
    );
    assert_eq!(times_shown(&fake, "rotated", 2), [0, 1]);
    assert!(!reloaded.contains("SECnew"), "no secret in the answer");
}
