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
    assert_eq!(config.workers.count, 16);
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
    let error = toml_error("[agent]\nmax_tool_rounds = 17\n");
    assert!(
        error.contains("agent.max_tool_rounds: must be between 0 and 16"),
        "{error}"
    );
    let error = toml_error("[agent]\nmax_answer_bytes = 0\n");
    assert!(
        error.contains("agent.max_answer_bytes: must be at least 1"),
        "{error}"
    );
}

#[test]
fn a_listen_address_must_be_ip_and_port() {
    let config = load_toml("[http]\nbind = \"[::1]:0\"\n").unwrap();
    assert_eq!(config.http.bind, address("[::1]:0"));
    for bad in ["nowhere", "localhost:8080", "127.0.0.1", "127.0.0.1:99999"] {
        let error = toml_error(&format!("[http]\nbind = \"{bad}\"\n"));
        assert!(
            error.contains(&format!("`http.bind`: \"{bad}\" is not an IP:PORT address")),
            "{error}"
        );
    }
    let error = toml_error("[worker]\nbind = \"0.0.0.0\"\n");
    assert!(
        error.contains("`worker.bind`: \"0.0.0.0\" is not an IP:PORT address"),
        "{error}"
    );
}

#[test]
fn a_flag_still_takes_the_address_as_text() {
    let flags = Overrides::default().set("http.bind", Some("0.0.0.0:9999".to_owned()));
    let config = load_from("", &[], flags).unwrap();
    assert_eq!(config.http.bind, address("0.0.0.0:9999"));
    let flags = Overrides::default().set("http.bind", Some("nowhere".to_owned()));
    let error = load_from("", &[], flags).unwrap_err().to_string();
    assert!(error.contains("`http.bind`: \"nowhere\""), "{error}");
}

#[test]
fn broker_url_empty_or_amqp() {
    let config = load_toml("[broker]\nurl = \"\"\n").unwrap();
    assert_eq!(config.broker.url, BrokerEngine::Embedded);
    let config = load_toml("[broker]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n").unwrap();
    assert!(matches!(config.broker.url, BrokerEngine::RabbitMq(_)));
    let error = toml_error("[broker]\nurl = \"redis://x\"\n");
    assert!(
        error.contains("`broker.url`: must be empty (the embedded broker) or an amqp://"),
        "{error}"
    );
}

#[test]
fn llm_base_url_empty_or_http() {
    let config = load_toml("[llm]\nbase_url = \"\"\n").unwrap();
    assert_eq!(config.llm.base_url, ModelEndpoint::Demo);
    let config = load_toml("[llm]\nbase_url = \"https://api.openai.com/v1\"\n").unwrap();
    assert!(
        matches!(&config.llm.base_url, ModelEndpoint::OpenAiCompatible(url) if url.as_str() == "https://api.openai.com/v1")
    );
    let error = toml_error("[llm]\nbase_url = \"api.openai.com/v1\"\n");
    assert!(
        error.contains("`llm.base_url`: must be empty (the built-in demo model) or an http(s):// URL; \"api.openai.com/v1\""),
        "{error}"
    );
}

#[test]
fn agent_url_empty_or_http() {
    let config = load_toml("[agent]\nurl = \"\"\n").unwrap();
    assert_eq!(config.agent.url, AgentLocation::InProcess);
    let config = load_toml("[agent]\nurl = \"http://127.0.0.1:8090\"\n").unwrap();
    assert!(matches!(config.agent.url, AgentLocation::Remote(_)));
    let error = toml_error("[agent]\nurl = \"amqp://x\"\n");
    assert!(
        error.contains("`agent.url`: must be empty (the in-process agent) or an http(s):// URL"),
        "{error}"
    );
}

#[test]
fn the_enum_keys_still_come_from_the_environment() {
    let env = [
        ("BROKER__URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ("LLM__BASE_URL", "http://127.0.0.1:9000/v1"),
        ("AGENT__URL", "http://127.0.0.1:8090"),
    ];
    let config = load_from("", &env, Overrides::default()).unwrap();
    assert!(matches!(config.broker.url, BrokerEngine::RabbitMq(_)));
    assert!(matches!(
        config.llm.base_url,
        ModelEndpoint::OpenAiCompatible(_)
    ));
    assert!(matches!(config.agent.url, AgentLocation::Remote(_)));

    // An empty variable brings the built-in one back over the file.
    let toml = "[broker]\nurl = \"amqp://127.0.0.1\"\n";
    let config = load_from(toml, &[("BROKER__URL", "")], Overrides::default()).unwrap();
    assert_eq!(config.broker.url, BrokerEngine::Embedded);

    let error = load_from("", &[("LLM__BASE_URL", "ftp://x")], Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("`llm.base_url`"), "{error}");
}

#[test]
fn the_enum_keys_round_trip_as_the_same_strings() {
    let toml = "[broker]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n\
                [llm]\nbase_url = \"http://127.0.0.1:9000/v1\"\napi_key = \"sk-1\"\n";
    let config = load_toml(toml).unwrap();
    let written = figment::value::Value::serialize(&config).unwrap();
    let dict = written.as_dict().unwrap();
    let key = |section: &str, key: &str| {
        dict[section].as_dict().unwrap()[key]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        key("broker", "url"),
        "amqp://guest:guest@127.0.0.1:5672/%2f"
    );
    assert_eq!(key("llm", "base_url"), "http://127.0.0.1:9000/v1");
    assert_eq!(key("llm", "api_key"), "sk-1");
    assert_eq!(key("agent", "url"), "");
    assert_eq!(key("admin", "token"), "");
    assert_eq!(key("http", "bind"), "127.0.0.1:8080");
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

const SOURCE: &str = "[[knowledge.sources]]\nid = \"handbook\"\nname = \"Handbook\"\n\
                      description = \"How we work\"\ntype = \"knowledge_base\"\npath = \"docs\"\n";

#[test]
fn knowledge_sources_are_typed_tables() {
    let config = load_toml(SOURCE).unwrap();
    let [source] = &config.knowledge.sources[..] else {
        panic!("one source: {:?}", config.knowledge.sources);
    };
    assert_eq!(source.id.as_str(), "handbook");
    assert_eq!(source.name, "Handbook");
    assert_eq!(source.description, "How we work");
    assert_eq!(source.kind, SourceKind::KnowledgeBase);
    assert_eq!(source.path, Path::new("docs"));
    assert!(load_toml("").unwrap().knowledge.sources.is_empty());

    let literature = SOURCE.replace("knowledge_base", "literature");
    let config = load_toml(&literature).unwrap();
    assert_eq!(config.knowledge.sources[0].kind, SourceKind::Literature);
    let error = toml_error(&SOURCE.replace("knowledge_base", "wiki"));
    assert!(error.contains("wiki"), "{error}");
}

#[test]
fn a_source_id_must_be_a_tool_name() {
    for bad in ["Handbook", "hand-book", "", &"x".repeat(65), "ünï"] {
        let error = toml_error(&SOURCE.replace("\"handbook\"", &format!("{bad:?}")));
        assert!(
            error.contains("`knowledge.sources.0.id`: a source id is 1 to 64 characters"),
            "{bad}: {error}"
        );
    }
    let longest = "a_9".repeat(21) + "z";
    let config = load_toml(&SOURCE.replace("handbook", &longest)).unwrap();
    assert_eq!(config.knowledge.sources[0].id.as_str(), longest);
}

#[test]
fn source_ids_are_unique() {
    let error = toml_error(&format!("{SOURCE}{SOURCE}"));
    assert!(
        error.contains("knowledge.sources: two sources have the id \"handbook\""),
        "{error}"
    );
}

#[test]
fn a_source_has_no_unknown_or_missing_keys() {
    let error = toml_error(&format!("{SOURCE}folder = \"x\"\n"));
    assert!(
        error.contains("unknown key `knowledge.sources.0.folder`")
            || error.contains("unknown key") && error.contains("folder"),
        "{error}"
    );
    let error = toml_error(&SOURCE.replace("path = \"docs\"\n", ""));
    assert!(error.contains("path"), "{error}");
    let error = toml_error("[knowledge]\nsourcs = []\n");
    assert!(error.contains("unknown key `knowledge.sourcs`"), "{error}");
    let config = load_toml(&SOURCE.replace("description = \"How we work\"\n", "")).unwrap();
    assert_eq!(config.knowledge.sources[0].description, "");
}

#[test]
fn the_data_dir_comes_from_every_layer() {
    assert_eq!(
        load_toml("").unwrap().storage.data_dir,
        Path::new("parlor-data")
    );
    let config = load_from(
        "[storage]\ndata_dir = \"/var/lib/parlor\"\n",
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.storage.data_dir, Path::new("/var/lib/parlor"));
    let env = [("STORAGE__DATA_DIR", "/srv/parlor")];
    let config = load_from(SOURCE, &env, Overrides::default()).unwrap();
    assert_eq!(config.storage.data_dir, Path::new("/srv/parlor"));
    assert_eq!(
        config.knowledge.sources.len(),
        1,
        "env keeps the file's sources"
    );
    let error = toml_error("[storage]\ndata_dir = \"\"\n");
    assert!(error.contains("storage.data_dir"), "{error}");
    let error = toml_error("[storage]\ndatadir = \"x\"\n");
    assert!(error.contains("unknown key `storage.datadir`"), "{error}");
}

#[test]
fn the_storage_engine_is_chosen_by_url() {
    let config = load_toml("").unwrap();
    assert_eq!(config.storage.url, StorageUrl::Sqlite);
    assert_eq!(config.storage.retention_days, 30);
    assert_eq!(config.storage.pool_size, 8);

    let toml = "[storage]\nurl = \"memory\"\nretention_days = 0\npool_size = 2\n";
    let config = load_toml(toml).unwrap();
    assert_eq!(config.storage.url, StorageUrl::Memory);
    assert_eq!(config.storage.retention_days, 0);
    assert_eq!(config.storage.pool_size, 2);

    let env = [
        (
            "STORAGE__URL",
            "postgres://parlor:hunter2@127.0.0.1:5432/parlor",
        ),
        ("STORAGE__RETENTION_DAYS", "7"),
    ];
    let config = load_from("", &env, Overrides::default()).unwrap();
    assert!(matches!(config.storage.url, StorageUrl::Postgres(_)));
    assert_eq!(config.storage.retention_days, 7);
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let error = toml_error("[storage]\nurl = \"mysql://root:hunter2@x/db\"\n");
    assert!(error.contains("`storage.url`: must be empty"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    let error = toml_error("[storage]\npool_size = 0\n");
    assert!(
        error.contains("storage.pool_size: must be between 1 and 1000"),
        "{error}"
    );
    let error = toml_error("[storage]\nretention_days = -1\n");
    assert!(error.contains("`storage.retention_days`"), "{error}");
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
