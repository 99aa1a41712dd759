use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::{AgentLocation, BrokerEngine, ModelEndpoint, SourceKind, StorageUrl};

fn load_from(
    toml: &str,
    env: &[(&str, &str)],
    overrides: Overrides,
) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    // Env values are read through a prefix unique to each test, so parallel
    // tests never see each other's variables.
    let prefix = format!("PARLOR_TEST_{}_", uuid::Uuid::new_v4().simple());
    for (key, value) in env {
        // SAFETY: the variable names are unique to this test (random prefix).
        unsafe { std::env::set_var(format!("{prefix}{key}"), value) };
    }
    Config::load_with_env(Some(&path), overrides, Env::prefixed(&prefix))
}

fn load_toml(toml: &str) -> Result<Config, ConfigError> {
    load_from(toml, &[], Overrides::default())
}

/// The error of loading `toml`, as the user reads it.
fn toml_error(toml: &str) -> String {
    load_toml(toml).unwrap_err().to_string()
}

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

// The tests of addresses, URLs and the keys read from them; and of the knowledge
// and storage sections.
mod endpoints;
mod knowledge_and_storage;

#[test]
fn defaults_need_no_file() {
    let mut config = load_toml("").unwrap();
    // The one default that depends on the environment (OPENAI_API_KEY).
    config.llm.api_key = None;
    assert_eq!(config, Config::default());
    assert_eq!(config.http.bind, address("127.0.0.1:8080"));
    assert_eq!(config.http.max_message_bytes, 65_536);
    assert_eq!(config.broker.url, BrokerEngine::Embedded);
    assert_eq!(config.broker.question_queue, "question_queue");
    assert_eq!(config.workers.count, 1024);
    assert_eq!(config.workers.threads, 0, "one per core");
    assert!(config.workers.threads() >= 1);
    assert_eq!(config.agent.url, AgentLocation::InProcess);
    assert_eq!(config.llm.base_url, ModelEndpoint::Demo);
    assert_eq!(config.session.idle_timeout(), Duration::from_secs(300));
    assert_eq!(config.admin.token, None);
}

#[test]
fn layers_apply_in_order_file_env_flags() {
    let toml = "[http]\nbind = \"127.0.0.1:1000\"\nmax_message_bytes = 100\n[workers]\ncount = 3\n";
    let env = [("HTTP__MAX_MESSAGE_BYTES", "200"), ("WORKERS__COUNT", "5")];
    let flags = Overrides::default().set("workers.count", Some(7));
    let config = load_from(toml, &env, flags).unwrap();
    assert_eq!(
        config.http.bind,
        address("127.0.0.1:1000"),
        "file beats default"
    );
    assert_eq!(config.http.max_message_bytes, 200, "env beats file");
    assert_eq!(config.workers.count, 7, "flag beats env");
}

#[test]
fn unknown_keys_are_named() {
    let error = toml_error("[http]\nbnd = \"x\"\n");
    assert!(
        error.contains("unknown key `http.bnd` (from TOML file)"),
        "{error}"
    );
    let error = toml_error("[htp]\n");
    assert!(error.contains("unknown key `htp`"), "{error}");
    let error = load_from("", &[("BROKER__URLL", "amqp://x")], Overrides::default()).unwrap_err();
    assert!(
        error.to_string().contains("unknown key `broker.urll`"),
        "{error}"
    );
}

#[test]
fn agent_bind_is_where_parlor_agent_listens() {
    assert_eq!(Config::default().agent.bind.to_string(), "127.0.0.1:8090");
    let error = toml_error("[agent]\nbind = \"somewhere\"\n");
    assert!(error.contains("agent.bind"), "{error}");
}

#[test]
fn invalid_counts_name_the_key() {
    let error = toml_error("[workers]\ncount = 0\n");
    assert!(error.contains("workers.count"), "{error}");
    let error = toml_error("[workers]\nthreads = 257\n");
    assert!(error.contains("workers.threads"), "{error}");
    let error = toml_error("[agent]\nmax_tool_rounds = 17\n");
    assert!(
        error.contains("agent.max_tool_rounds: must be between 0 and 16"),
        "{error}"
    );
    let error = toml_error("[agent]\nmax_running_tasks = 0\n");
    assert!(
        error.contains("agent.max_running_tasks: must be at least 1"),
        "{error}"
    );
    let error = toml_error("[agent]\nmax_answer_bytes = 0\n");
    assert!(
        error.contains("agent.max_answer_bytes: must be at least 1"),
        "{error}"
    );
}

#[test]
fn debug_of_a_config_shows_no_secret() {
    let toml = "[broker]\nurl = \"amqp://parlor:broker-pass@rabbit:5672/%2f\"\n\
                [llm]\napi_key = \"sk-model-key\"\n[admin]\ntoken = \"admin-token\"\n";
    let config = load_toml(toml).unwrap();
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        for secret in ["broker-pass", "sk-model-key", "admin-token"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert!(
            shown.contains("amqp://parlor:***@rabbit:5672/%2f"),
            "{shown}"
        );
    }
    assert_eq!(config.llm.api_key.unwrap().expose(), "sk-model-key");
    assert_eq!(config.admin.token.unwrap().expose(), "admin-token");
}

#[test]
fn an_empty_secret_is_none() {
    let config = load_toml("[admin]\ntoken = \"\"\n").unwrap();
    assert_eq!(config.admin.token, None);
    let env = [("ADMIN__TOKEN", "s3cret")];
    let config = load_from("", &env, Overrides::default()).unwrap();
    assert_eq!(config.admin.token, Some(Secret::new("s3cret")));
}

#[test]
fn durations_are_bounded_by_key() {
    // Either would overflow `Instant::now() + grace` at shutdown.
    let error = toml_error("[http]\nshutdown_grace_s = 9223372036854775807\n");
    assert!(
        error.contains(
            "`http.shutdown_grace_s`: must be between 0 and 3600 seconds, not 9223372036854775807 (from TOML file)"
        ),
        "{error}"
    );
    let huge = [("WORKER__SHUTDOWN_GRACE_S", "18446744073709551615")];
    let error = load_from("", &huge, Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`worker.shutdown_grace_s`: must be between 0 and 3600 seconds"),
        "{error}"
    );
    let error = toml_error("[llm]\nconnect_timeout_ms = 0\n");
    assert!(
        error.contains("`llm.connect_timeout_ms`: must be between 1 and 300000 milliseconds"),
        "{error}"
    );
    let error = toml_error("[workers]\nchunk_window_ms = 1001\n");
    assert!(error.contains("`workers.chunk_window_ms`"), "{error}");
    let error = load_from(
        "",
        &[("SESSION__TURN_TIMEOUT_S", "86401")],
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("`session.turn_timeout_s`"), "{error}");

    let config =
        load_toml("[http]\nshutdown_grace_s = 0\n[llm]\nidle_timeout_ms = 1500\n").unwrap();
    assert_eq!(config.http.shutdown_grace(), Duration::ZERO);
    assert_eq!(config.llm.idle_timeout(), Duration::from_millis(1_500));
}

#[test]
fn keys_that_must_agree_are_checked_together() {
    let toml = "[session]\nheartbeat_interval_s = 60\nclient_timeout_s = 60\n";
    let error = toml_error(toml);
    assert!(error.contains("session.client_timeout_s"), "{error}");
}

#[test]
fn the_worker_section_has_its_own_address_and_grace() {
    let config = load_toml("").unwrap();
    assert_eq!(config.worker.bind, address("127.0.0.1:8081"));
    assert_eq!(config.worker.shutdown_grace(), Duration::from_secs(30));

    let toml =
        "[http]\nshutdown_grace_s = 5\n[worker]\nbind = \"0.0.0.0:9100\"\nshutdown_grace_s = 0\n";
    let config = load_toml(toml).unwrap();
    assert_eq!(config.worker.bind, address("0.0.0.0:9100"));
    assert_eq!(config.worker.shutdown_grace(), Duration::ZERO);
    assert_eq!(config.http.shutdown_grace(), Duration::from_secs(5));

    let env = [("WORKER__SHUTDOWN_GRACE_S", "7")];
    let config = load_from("", &env, Overrides::default()).unwrap();
    assert_eq!(config.worker.shutdown_grace(), Duration::from_secs(7));
    let error = toml_error("[worker]\nshutdown_grace_s = 3601\n");
    assert!(error.contains("`worker.shutdown_grace_s`"), "{error}");
    let error = toml_error("[worker]\nbnd = \"x\"\n");
    assert!(error.contains("unknown key `worker.bnd`"), "{error}");
}

/// `section.key` of every key in `value`, a dictionary of sections.
fn key_names(value: figment::value::Value) -> Vec<String> {
    let sections = value.into_dict().expect("sections");
    let mut names: Vec<String> = sections
        .into_iter()
        .flat_map(|(section, keys)| {
            let keys = keys.into_dict().expect("keys");
            keys.into_keys().map(move |key| format!("{section}.{key}"))
        })
        .collect();
    names.sort();
    names
}

#[test]
fn the_annotated_file_lists_every_key_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
    let listed: figment::value::Value = Figment::from(Toml::file_exact(&path)).extract().unwrap();
    let every_key = figment::value::Value::serialize(Config::default()).unwrap();
    assert_eq!(key_names(listed), key_names(every_key));

    let no_env = Env::prefixed("PARLOR_TEST_NONE_");
    let mut config = Config::load_with_env(Some(&path), Overrides::default(), no_env).unwrap();
    config.llm.api_key = None;
    assert_eq!(config, Config::default());
}

#[test]
fn explicit_missing_file_is_an_error() {
    let error = Config::load(
        Some(Path::new("/nonexistent/parlor.toml")),
        Overrides::default(),
    )
    .unwrap_err();
    assert!(matches!(error, ConfigError::MissingFile(_)));
}
