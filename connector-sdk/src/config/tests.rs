// figment::Jail's closures must return figment::Error, which is large.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use super::load::CONFIG_PATH_ENV;
use super::*;

#[derive(Debug, Deserialize)]
struct Demo {
    greeting: String,
    #[serde(default)]
    times: u32,
}

impl SinkConfig for Demo {
    fn validate(&self) -> Vec<ConfigProblem> {
        if self.greeting.is_empty() {
            vec![ConfigProblem::new("greeting", "must not be empty")]
        } else {
            Vec::new()
        }
    }
}

#[test]
fn runtime_defaults_and_sink_keys_come_from_one_file() {
    figment::Jail::expect_with(|_| {
        let loaded: Loaded<Demo> = load_from_str("greeting: hi\ntimes: 3\nunknown: 1\n", "test")
            .map_err(|e| e.to_string())?;
        assert_eq!(loaded.sink.greeting, "hi");
        assert_eq!(loaded.sink.times, 3);
        assert_eq!(loaded.runtime, RuntimeConfig::default());
        assert_eq!(loaded.runtime.grpc_addr(), None);
        Ok(())
    });
}

#[test]
fn environment_overrides_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONNECTOR_PORT", "9090");
        jail.set_env("CONNECTOR_GREETING", "from env");
        jail.set_env("CONNECTOR_CONFIG", "/somewhere/config.yml");
        let loaded: Loaded<Demo> =
            load_from_str("greeting: hi\nport: 1234\ngrpc_port: 0\n", "test")
                .map_err(|e| e.to_string())?;
        assert_eq!(loaded.runtime.port, 9090);
        assert_eq!(loaded.runtime.grpc_addr(), None, "grpc_port 0 means off");
        assert_eq!(loaded.sink.greeting, "from env");
        Ok(())
    });
}

#[test]
fn problems_carry_their_key_path() {
    figment::Jail::expect_with(|_| {
        let err = load_from_str::<Demo>("greeting: ''\nport: not-a-port\n", "cfg.yml")
            .err()
            .ok_or("expected an error")?;
        assert_eq!(err.problems.len(), 2, "{err}");
        assert_eq!(err.problems[0].path, "port");
        assert_eq!(
            err.problems[1],
            ConfigProblem::new("greeting", "must not be empty")
        );
        let text = err.to_string();
        assert!(text.contains("cfg.yml") && text.contains("port:"), "{text}");
        Ok(())
    });
}

#[test]
fn a_value_of_the_wrong_type_is_not_repeated() {
    figment::Jail::expect_with(|_| {
        let err = load_from_str::<Demo>("greeting: hi\ntimes: SEC-not-a-number\n", "cfg.yml")
            .err()
            .ok_or("expected an error")?;
        let text = err.to_string();
        assert!(text.contains("times:"), "{text}");
        assert!(text.contains("found a string, expected u32"), "{text}");
        assert!(!text.contains("SEC-not-a-number"), "{text}");
        Ok(())
    });
}

#[test]
fn no_config_accepts_any_file() {
    figment::Jail::expect_with(|_| {
        let loaded: Loaded<NoConfig> =
            load_from_str("port: 9000\nanything: [1, 2]\n", "test").map_err(|e| e.to_string())?;
        assert_eq!(loaded.runtime.port, 9000);
        load_from_str::<NoConfig>("", "empty").map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn limits_no_server_can_run_with_are_reported() {
    figment::Jail::expect_with(|_| {
        let err = load_from_str::<NoConfig>(
            "max_connections: 0\nmax_header_bytes: 100\nmax_body_bytes: 2048\nmax_buffered_bytes: 4000\n",
            "cfg.yml",
        )
        .err()
        .ok_or("expected an error")?;
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["max_connections", "max_header_bytes", "max_buffered_bytes"],
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn limits_come_from_their_keys() {
    figment::Jail::expect_with(|_| {
        let loaded: Loaded<NoConfig> = load_from_str(
            "header_read_timeout_ms: 250\nidle_timeout_ms: 1500\ngrpc_max_concurrent_streams: 4\n",
            "test",
        )
        .map_err(|e| e.to_string())?;
        let limits = loaded.runtime.limits();
        assert_eq!(limits.header_read_timeout, Duration::from_millis(250));
        assert_eq!(limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(limits.grpc_max_concurrent_streams, 4);
        assert_eq!(limits.max_body_bytes, Limits::default().max_body_bytes);
        Ok(())
    });
}

#[test]
fn a_missing_key_is_named() {
    figment::Jail::expect_with(|_| {
        let err = load_from_str::<Demo>("times: 2\n", "cfg.yml")
            .err()
            .ok_or("expected an error")?;
        assert!(
            err.to_string().contains("missing field `greeting`"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_are_reported_without_stopping_the_load() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CONNECTOR_GRPC_PORTT", "1");
        let loaded: Loaded<Demo> = load_from_str("greeting: hi\ngreting: typo\nport: 1\n", "t")
            .map_err(|e| e.to_string())?;
        let found: Vec<String> = loaded
            .unknown_keys
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "greting: unknown key, ignored; did you mean `greeting`?",
                "grpc_portt: unknown key, ignored; did you mean `grpc_port`?",
            ]
        );
        Ok(())
    });
}

#[test]
fn an_error_notes_the_unknown_keys_that_may_explain_it() {
    figment::Jail::expect_with(|_| {
        let err = load_from_str::<Demo>("greetings: hi\n", "cfg.yml")
            .err()
            .ok_or("expected an error")?;
        let text = err.to_string();
        assert!(
            text.contains("missing field `greeting`")
                && text.contains("note: greetings: unknown key, ignored; did you mean `greeting`?"),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn a_missing_file_says_which_variable_to_set() {
    let err = load::<Demo>(Path::new("/no/such/config.yml")).err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("/no/such/config.yml") && text.contains(CONFIG_PATH_ENV),
        "{text}"
    );
}

#[derive(Debug, Deserialize)]
struct WithTargets {
    greeting: String,
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    url: String,
    #[serde(default)]
    token: Option<String>,
}

impl SinkConfig for WithTargets {}

#[test]
fn any_key_may_come_from_a_file_or_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("url-0", "https://a.test/?token=zero\n")?;
        jail.create_file("token-1", "t-one\r\n")?;
        jail.create_file("redis", "redis://:pw@127.0.0.1:1/0")?;
        jail.set_env("GREETING_FROM", "hello from env");
        jail.set_env("URL_1", "https://b.test/");
        jail.set_env("CONNECTOR_STORE__REDIS__URL_FILE", "redis");
        let yaml = "greeting_env: GREETING_FROM\ntargets:\n  - url_file: url-0\n  - { url_env: URL_1, token_file: token-1 }\n";
        let loaded: Loaded<WithTargets> = load_from_str(yaml, "test").map_err(|e| e.to_string())?;
        assert_eq!(loaded.sink.greeting, "hello from env");
        assert_eq!(loaded.sink.targets[0].url, "https://a.test/?token=zero");
        assert_eq!(loaded.sink.targets[0].token, None);
        assert_eq!(loaded.sink.targets[1].url, "https://b.test/");
        assert_eq!(loaded.sink.targets[1].token.as_deref(), Some("t-one"));
        let redis = loaded.runtime.store.redis.expect("redis");
        assert_eq!(redis.url, "redis://:pw@127.0.0.1:1/0");
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        Ok(())
    });
}

#[test]
fn a_missing_file_or_variable_names_the_key_and_never_shows_a_value() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("empty", "\n")?;
        jail.create_file("secret", "s3cr3t-value")?;
        let yaml = "greeting_file: /nowhere/greeting\ntargets:\n  - url_env: NOT_SET_ANYWHERE\n  - url_file: empty\n  - { url: u, url_file: secret }\n";
        let err = load_from_str::<WithTargets>(yaml, "cfg.yml")
            .err()
            .ok_or("must fail")?;
        let text = err.to_string();
        for expected in [
            "greeting_file: cannot read `/nowhere/greeting`",
            "mount the secret there",
            "targets.0.url_env: the environment variable `NOT_SET_ANYWHERE` is not set",
            "targets.1.url_file: `empty` is empty",
            "targets.2.url_file: `url` is given as well",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        assert!(!text.contains("s3cr3t"), "{text}");
        Ok(())
    });
}

#[test]
fn a_key_of_that_name_that_is_a_field_is_left_alone() {
    #[derive(Debug, Deserialize)]
    struct Files {
        log_file: String,
    }
    impl SinkConfig for Files {}
    figment::Jail::expect_with(|_| {
        let loaded: Loaded<Files> =
            load_from_str("log_file: /var/log/x\n", "test").map_err(|e| e.to_string())?;
        assert_eq!(loaded.sink.log_file, "/var/log/x");
        Ok(())
    });
}
