//! Reading the layers into a [`Config`], and the errors that name the key at fault.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;

use super::{Config, Secret};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

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
    /// Sets `key` (a dotted path such as `http.bind`) when `value` is given. The
    /// value is parsed like the same key in a file.
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
        if config.llm.api_key.is_none() {
            config.llm.api_key = std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|key| !key.is_empty())
                .map(Secret::new);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what parsing each key alone cannot: ranges of counts, and keys that
    /// must agree with each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        if !(1..=16 * 1024 * 1024).contains(&self.http.max_message_bytes) {
            return Err(invalid(
                "http.max_message_bytes",
                "must be between 1 and 16777216",
            ));
        }
        let ws_origins = self.http.ws_allowed_origins.iter();
        let origins = (self
            .http
            .cors_origins
            .iter()
            .map(|o| ("http.cors_origins", o)))
        .chain(ws_origins.map(|o| ("http.ws_allowed_origins", o)));
        for (key, origin) in origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    key,
                    format!("{origin:?} is neither \"*\" nor an http(s) origin"),
                ));
            }
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
        if self.workers.threads > 256 {
            return Err(invalid("workers.threads", "must be between 0 and 256"));
        }
        if self.session.max_sessions == 0 {
            return Err(invalid("session.max_sessions", "must be at least 1"));
        }
        if self.session.max_unsent_bytes == 0 {
            return Err(invalid("session.max_unsent_bytes", "must be at least 1"));
        }
        if self.session.max_in_memory == 0 {
            return Err(invalid("session.max_in_memory", "must be at least 1"));
        }
        if self.agent.max_history_messages == 0 {
            return Err(invalid("agent.max_history_messages", "must be at least 1"));
        }
        if self.agent.max_tool_rounds > super::AgentConfig::MAX_TOOL_ROUNDS {
            return Err(invalid(
                "agent.max_tool_rounds",
                format!(
                    "must be between 0 and {}",
                    super::AgentConfig::MAX_TOOL_ROUNDS
                ),
            ));
        }
        if self.agent.max_answer_bytes == 0 {
            return Err(invalid("agent.max_answer_bytes", "must be at least 1"));
        }
        if self.agent.max_running_tasks == 0 {
            return Err(invalid("agent.max_running_tasks", "must be at least 1"));
        }
        if let Some(id) = self.knowledge.duplicate_id() {
            return Err(invalid(
                "knowledge.sources",
                format!(
                    "two sources have the id {:?}; ids name tools and must differ",
                    id.as_str()
                ),
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        if !(1..=super::StorageConfig::MAX_POOL_SIZE).contains(&self.storage.pool_size) {
            return Err(invalid(
                "storage.pool_size",
                format!(
                    "must be between 1 and {}",
                    super::StorageConfig::MAX_POOL_SIZE
                ),
            ));
        }
        if let Some((key, problem)) = self.mcp.problem() {
            return Err(invalid(key, problem));
        }
        if let Some((key, problem)) = self.auth.problem() {
            return Err(invalid(key, problem));
        }
        if self.session.client_timeout() <= self.session.heartbeat_interval() {
            return Err(invalid(
                "session.client_timeout_s",
                "must be longer than session.heartbeat_interval_s",
            ));
        }
        Ok(())
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
mod tests;
