//! Typed, layered configuration (SPEC §1): defaults, then `config.toml` (or
//! `--config PATH`), then `PARLOR_<SECTION>__<KEY>` environment variables, then
//! command-line flags. Unknown keys are rejected by name; values are checked by
//! [`Config::validate`] before anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub broker: BrokerConfig,
    pub workers: WorkersConfig,
    pub agent: AgentConfig,
    pub llm: LlmConfig,
    pub session: SessionConfig,
    pub admin: AdminConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Gateway listen address.
    pub bind: String,
    /// Largest accepted user message or WebSocket frame, in bytes.
    pub max_message_bytes: usize,
    /// Origins allowed to call `POST /chat` from a browser; `"*"` allows any.
    pub cors_origins: Vec<String>,
    /// On SIGTERM/SIGINT, how long running turns may take to finish, in seconds.
    pub shutdown_grace_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_message_bytes: 65_536,
            cors_origins: vec!["*".into()],
            shutdown_grace_s: 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Empty: the embedded in-process broker. Otherwise an `amqp://` URL.
    pub url: String,
    /// Name of the work queue; other queue names derive from it.
    pub question_queue: String,
    /// Questions that may wait for a worker before new ones are refused with `busy`.
    pub max_queued_questions: usize,
    /// Deliveries of one question before it counts as poison: dead-lettered, and its
    /// session gets an `error` (RabbitMQ only; the embedded broker never redelivers).
    pub max_deliveries: u32,
    /// Longest wait for RabbitMQ to confirm a publish.
    pub publish_timeout_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            question_queue: "question_queue".into(),
            max_queued_questions: 10_000,
            max_deliveries: 3,
            publish_timeout_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// AgentWorker actors per worker process.
    pub count: usize,
    /// How long a worker may hold answer text to send it together with what follows,
    /// in milliseconds. 0: text that is already there goes out together, nothing waits.
    pub chunk_window_ms: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            count: 16,
            chunk_window_ms: 0,
        }
    }
}

impl WorkersConfig {
    pub fn chunk_window(&self) -> Duration {
        Duration::from_millis(self.chunk_window_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Empty: the knowledge agent runs in-process. Otherwise a remote A2A agent's URL.
    pub url: String,
    /// Listen address of `parlor agent`.
    pub bind: String,
    /// The system prompt put before every conversation.
    pub system_prompt: String,
    /// How many earlier messages of a conversation the model sees (user and assistant
    /// messages both count). Older ones are left out so prompts stay bounded.
    pub max_history_messages: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            bind: "127.0.0.1:8090".into(),
            system_prompt: "You are a helpful knowledge assistant. Answer clearly and concisely."
                .into(),
            max_history_messages: 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Empty: the built-in demo model. Otherwise an OpenAI-compatible `/v1` base URL.
    pub base_url: String,
    pub model: String,
    /// API key; when empty, `OPENAI_API_KEY` is used if set.
    pub api_key: String,
    pub connect_timeout_ms: u64,
    /// Longest wait from sending the request to the first answer token.
    pub first_token_timeout_ms: u64,
    /// Longest silence between two chunks of a streaming answer.
    pub idle_timeout_ms: u64,
    /// Retries on connect errors, 429 and 5xx, only before the first token.
    pub max_retries: u32,
    /// First retry delay; doubled on every further retry.
    pub retry_backoff_ms: u64,
    /// Pacing of the built-in demo model (used when `base_url` is empty).
    pub demo_ttft_ms: u64,
    pub demo_token_ms: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: "parlor-demo".into(),
            api_key: String::new(),
            connect_timeout_ms: 5_000,
            first_token_timeout_ms: 60_000,
            idle_timeout_ms: 30_000,
            max_retries: 2,
            retry_backoff_ms: 200,
            demo_ttft_ms: 150,
            demo_token_ms: 40,
        }
    }
}

impl HttpConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
}

impl BrokerConfig {
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

impl LlmConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn first_token_timeout(&self) -> Duration {
        Duration::from_millis(self.first_token_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// How long a session outlives its last connection, in seconds.
    pub idle_timeout_s: u64,
    /// Messages that may wait behind a running turn before new ones get `busy`.
    pub max_queued_turns: usize,
    /// A turn that has not ended after this many seconds ends with `timeout`.
    pub turn_timeout_s: u64,
    /// Seconds between WebSocket pings to the client.
    pub heartbeat_interval_s: u64,
    /// A client silent for this many seconds (no frame, no pong) is disconnected.
    pub client_timeout_s: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_s: 300,
            max_queued_turns: 8,
            turn_timeout_s: 300,
            heartbeat_interval_s: 20,
            client_timeout_s: 60,
        }
    }
}

impl SessionConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
    pub fn turn_timeout(&self) -> Duration {
        Duration::from_secs(self.turn_timeout_s)
    }
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_s)
    }
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/*`; empty: a random one is generated at start.
    pub token: String,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// Values given on the command line; they override every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides(Vec<(&'static str, figment::value::Value)>);

impl Overrides {
    /// Sets `key` (a dotted path such as `http.bind`) when `value` is given.
    pub fn set<T: Serialize>(mut self, key: &'static str, value: Option<T>) -> Self {
        if let Some(value) = value {
            let value = figment::value::Value::serialize(value)
                .expect("command-line values are plain scalars");
            self.0.push((key, value));
        }
        self
    }
}

impl Config {
    /// Loads the layers in order. `explicit_file` is `--config PATH`, which must exist;
    /// without it `config.toml` in the working directory is read if present.
    pub fn load(explicit_file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(explicit_file, overrides, Env::prefixed("PARLOR_"))
    }

    fn load_with_env(
        explicit_file: Option<&Path>,
        overrides: Overrides,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let file = match explicit_file {
            Some(path) if !path.is_file() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
        };
        // Only `SECTION__KEY` variables are configuration; others under the prefix
        // (such as PARLOR_LOG_FORMAT) belong to other parts of the program.
        let env = env.filter(|key| key.as_str().contains("__")).split("__");
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(env);
        for (key, value) in overrides.0 {
            figment = figment.merge(Serialized::default(key, value));
        }
        let mut config: Config = figment.extract().map_err(describe_figment_error)?;
        if config.llm.api_key.is_empty()
            && let Ok(key) = std::env::var("OPENAI_API_KEY")
        {
            config.llm.api_key = key;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        check_address("http.bind", &self.http.bind)?;
        check_address("agent.bind", &self.agent.bind)?;
        if !(1..=16 * 1024 * 1024).contains(&self.http.max_message_bytes) {
            return Err(invalid(
                "http.max_message_bytes",
                "must be between 1 and 16777216",
            ));
        }
        for origin in &self.http.cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "http.cors_origins",
                    format!("{origin:?} is neither \"*\" nor an http(s) origin"),
                ));
            }
        }
        let url = &self.broker.url;
        if !(url.is_empty() || url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(invalid(
                "broker.url",
                "must be empty or an amqp:// / amqps:// URL",
            ));
        }
        let queue = &self.broker.question_queue;
        if queue.is_empty() || queue.len() > 200 || queue.chars().any(char::is_whitespace) {
            return Err(invalid(
                "broker.question_queue",
                "must be 1 to 200 characters without spaces",
            ));
        }
        if self.broker.max_queued_questions == 0 {
            return Err(invalid("broker.max_queued_questions", "must be at least 1"));
        }
        if self.broker.max_deliveries == 0 {
            return Err(invalid("broker.max_deliveries", "must be at least 1"));
        }
        if !(1..=4096).contains(&self.workers.count) {
            return Err(invalid("workers.count", "must be between 1 and 4096"));
        }
        if self.workers.chunk_window_ms > 1_000 {
            return Err(invalid("workers.chunk_window_ms", "must be at most 1000"));
        }
        check_http_url("agent.url", &self.agent.url)?;
        check_http_url("llm.base_url", &self.llm.base_url)?;
        if self.agent.max_history_messages == 0 {
            return Err(invalid("agent.max_history_messages", "must be at least 1"));
        }
        let positive = [
            ("broker.publish_timeout_ms", self.broker.publish_timeout_ms),
            ("llm.connect_timeout_ms", self.llm.connect_timeout_ms),
            (
                "llm.first_token_timeout_ms",
                self.llm.first_token_timeout_ms,
            ),
            ("llm.idle_timeout_ms", self.llm.idle_timeout_ms),
            ("session.idle_timeout_s", self.session.idle_timeout_s),
            ("session.turn_timeout_s", self.session.turn_timeout_s),
            (
                "session.heartbeat_interval_s",
                self.session.heartbeat_interval_s,
            ),
            ("session.client_timeout_s", self.session.client_timeout_s),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(key, "must be greater than 0"));
        }
        if self.session.client_timeout_s <= self.session.heartbeat_interval_s {
            return Err(invalid(
                "session.client_timeout_s",
                "must be longer than session.heartbeat_interval_s",
            ));
        }
        Ok(())
    }
}

fn check_address(key: &'static str, address: &str) -> Result<(), ConfigError> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ConfigError::Invalid {
            key,
            problem: format!("{address:?} is not HOST:PORT"),
        }),
    }
}

fn check_http_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            problem: "must be empty or an http(s):// URL".into(),
        })
    }
}

/// Names the key at fault in each of figment's errors (its path already ends with
/// an unknown key's name), and the layer it came from.
fn describe_figment_error(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            match &e.kind {
                figment::error::Kind::UnknownField(..) => format!("unknown key `{key}`{source}"),
                _ if key.is_empty() => format!("{}{source}", e.kind),
                _ => format!("`{key}`: {}{source}", e.kind),
            }
        })
        .collect();
    ConfigError::Parse(messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn defaults_need_no_file() {
        let config = Config::default();
        assert_eq!(config.http.bind, "127.0.0.1:8080");
        assert_eq!(config.http.max_message_bytes, 65_536);
        assert_eq!(config.broker.question_queue, "question_queue");
        assert_eq!(config.workers.count, 16);
        assert_eq!(config.session.idle_timeout_s, 300);
        config.validate().unwrap();
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let toml =
            "[http]\nbind = \"127.0.0.1:1000\"\nmax_message_bytes = 100\n[workers]\ncount = 3\n";
        let env = [("HTTP__MAX_MESSAGE_BYTES", "200"), ("WORKERS__COUNT", "5")];
        let flags = Overrides::default().set("workers.count", Some(7));
        let config = load_from(toml, &env, flags).unwrap();
        assert_eq!(config.http.bind, "127.0.0.1:1000", "file beats default");
        assert_eq!(config.http.max_message_bytes, 200, "env beats file");
        assert_eq!(config.workers.count, 7, "flag beats env");
    }

    #[test]
    fn unknown_keys_are_named() {
        let error = load_from("[http]\nbnd = \"x\"\n", &[], Overrides::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unknown key `http.bnd` (from TOML file)"),
            "{error}"
        );
        let error = load_from("[htp]\n", &[], Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("unknown key `htp`"), "{error}");
        let error =
            load_from("", &[("BROKER__URLL", "amqp://x")], Overrides::default()).unwrap_err();
        assert!(
            error.to_string().contains("unknown key `broker.urll`"),
            "{error}"
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        let error = load_from("[workers]\ncount = 0\n", &[], Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("workers.count"), "{error}");
        let error =
            load_from("[broker]\nurl = \"redis://x\"\n", &[], Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("broker.url"), "{error}");
        let error =
            load_from("[http]\nbind = \"nowhere\"\n", &[], Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("http.bind"), "{error}");
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
}
