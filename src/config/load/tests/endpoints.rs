//! Addresses, URLs and the keys parsed from them.

use super::*;

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
