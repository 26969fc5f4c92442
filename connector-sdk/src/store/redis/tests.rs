use super::*;
use crate::store::Store;
use crate::testing::RedisServer;
use std::sync::Arc;

fn backend(server: &RedisServer, prefix: &str) -> Arc<Redis> {
    let config = RedisConfig {
        url: server.url(),
        ..RedisConfig::default()
    };
    Arc::new(Redis::connect(&config, prefix).expect("connects"))
}

fn store(server: &RedisServer, prefix: &str) -> Store {
    Store::new(backend(server, prefix))
}

#[tokio::test]
async fn keeps_the_store_contract() {
    let server = RedisServer::start();
    crate::store::contract::check_all(&store(&server, "t")).await;
}

#[tokio::test]
async fn replicas_share_one_budget_and_one_hold() {
    let server = RedisServer::start();
    let (one, two) = (store(&server, "bot"), store(&server, "bot"));
    let window = Duration::from_secs(60);
    // 40 sends race for a budget of 20 from two replicas: exactly 20 pass.
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        racing.spawn(async move { store.pass("g", 20, window).await });
    }
    let mut open = 0;
    while let Some(passage) = racing.join_next().await {
        match passage.expect("joins").expect("answers") {
            Passage::Open { .. } => open += 1,
            Passage::Wait(wait) => assert!(wait > Duration::from_secs(58), "{wait:?}"),
            Passage::Held(_) => panic!("not held"),
        }
    }
    assert_eq!(open, 20);
    assert_eq!(one.gate_state("g", window).await.expect("state").used, 20);

    one.hold("h", Duration::from_secs(600)).await.expect("hold");
    assert!(matches!(
        two.pass("h", 20, window).await,
        Ok(Passage::Held(held)) if held > Duration::from_secs(599)
    ));
    let state = two.gate_state("h", window).await.expect("state");
    assert!(state.held_for.is_some() && state.used == 0);
    // Another prefix is another connector.
    assert!(matches!(
        store(&server, "other").pass("h", 20, window).await,
        Ok(Passage::Open { used: 1 })
    ));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_in_time_not_a_hang() {
    let mut server = RedisServer::start();
    let redis = backend(&server, "t");
    let store = Store::new(Arc::clone(&redis) as Arc<dyn Backend>);
    redis.health().await.expect("up");
    server.stop();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        store.pass("g", 1, Duration::from_secs(60)),
    )
    .await
    .expect("an error in time, not a hang")
    .expect_err("down");
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(redis.health().await.is_err());
    server.restart();
    let mut healthy = false;
    for _ in 0..50 {
        if redis.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "reconnected by itself");
}

/// A server speaking just enough of Redis's protocol to answer every
/// script call with `reply` (and any other command `+OK`); its URL.
async fn answering_scripts_with(reply: &'static str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    async fn number(socket: &mut BufReader<tokio::net::TcpStream>, kind: char) -> Option<usize> {
        let mut line = String::new();
        socket.read_line(&mut line).await.ok()?;
        line.trim_end().strip_prefix(kind)?.parse().ok()
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("redis://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                // A command: `*<args>`, then each as `$<len>` and its bytes.
                while let Some(args) = number(&mut socket, '*').await {
                    let mut name = Vec::new();
                    for at in 0..args {
                        let Some(len) = number(&mut socket, '$').await else {
                            return;
                        };
                        let mut arg = vec![0; len + 2];
                        if socket.read_exact(&mut arg).await.is_err() {
                            return;
                        }
                        if at == 0 {
                            name = arg[..len].to_ascii_uppercase();
                        }
                    }
                    let answer = if name.starts_with(b"EVAL") {
                        reply
                    } else {
                        "+OK\r\n"
                    };
                    if socket.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_reply_no_script_gives_is_an_error_not_a_default() {
    let connect = |url: String| {
        let config = RedisConfig {
            url,
            ..RedisConfig::default()
        };
        Store::new(Arc::new(Redis::connect(&config, "t").expect("connects")))
    };
    let window = Duration::from_secs(60);
    let not_a_pair = connect(answering_scripts_with(":5\r\n").await);
    let passed = not_a_pair.pass("g", 1, window).await;
    assert!(
        matches!(passed, Err(StoreError::Unavailable { .. })),
        "{passed:?}"
    );
    let unknown_code = connect(answering_scripts_with("*2\r\n:7\r\n:1\r\n").await);
    let pushed = unknown_code.push("q", b"x".to_vec(), 10, None).await;
    assert!(
        matches!(pushed, Err(StoreError::Unavailable { .. })),
        "{pushed:?}"
    );
    let passed = unknown_code.pass("g", 1, window).await;
    assert!(
        matches!(passed, Err(StoreError::Unavailable { .. })),
        "{passed:?}"
    );
    let too_short = connect(answering_scripts_with("*2\r\n:1\r\n:2\r\n").await);
    let state = too_short.gate_state("g", window).await;
    assert!(
        matches!(state, Err(StoreError::Unavailable { .. })),
        "{state:?}"
    );
}

#[test]
fn the_password_never_shows() {
    let config = RedisConfig {
        url: "redis://:hunter2@10.0.0.1:6379/2".into(),
        ..RedisConfig::default()
    };
    assert!(!format!("{config:?}").contains("hunter2"));
    assert_eq!(config.masked_url(), "redis://:***@10.0.0.1:6379/2");
    let socket = RedisConfig {
        url: "redis+unix:///run/redis.sock?db=1&pass=hunter2".into(),
        ..RedisConfig::default()
    };
    assert_eq!(
        socket.masked_url(),
        "redis+unix:///run/redis.sock?db=1&pass=***"
    );
    let bad = RedisConfig {
        url: "http://:hunter2@x".into(),
        ..RedisConfig::default()
    };
    let err = Redis::connect(&bad, "p").expect_err("not redis");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().starts_with("store.redis.url"), "{err}");
}
