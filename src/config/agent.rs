//! The `[agent]` and `[llm]` sections: the knowledge agent, and the model it asks.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AgentLocation, Millis, ModelEndpoint, Secret, endpoints, secret};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// `""`: the knowledge agent runs in-process. Otherwise a remote A2A agent's URL.
    pub url: AgentLocation,
    /// Where `parlor agent` serves A2A.
    #[serde(with = "endpoints::socket_address")]
    pub bind: SocketAddr,
    /// The system prompt put before every conversation.
    pub system_prompt: String,
    /// How many earlier messages of a conversation the model sees (user and assistant
    /// messages both count). Older ones are left out so prompts stay bounded.
    pub max_history_messages: usize,
    /// The most text (in bytes) of those messages a session keeps and the model
    /// sees; older messages beyond it are left out (they stay stored).
    pub max_history_bytes: usize,
    /// The longest one tool call (a search) may take; a late one is an error result.
    pub tool_timeout_ms: Millis<1, 300_000>,
    /// Model calls of a turn that may call tools (at most
    /// [`AgentConfig::MAX_TOOL_ROUNDS`]); the one after them must answer.
    pub max_tool_rounds: usize,
    /// The most bytes of answer text and reasoning one turn may produce; past it
    /// the answer is cut and the turn ends with `done`/`length`, so a model that
    /// never stops cannot grow memory, the history and later prompts without bound.
    pub max_answer_bytes: usize,
    /// The most A2A messages the agent executes at once (`parlor agent`, and A2A on
    /// `parlor serve`'s port); beyond it a message is refused with HTTP 503, so a
    /// flood waits at its clients rather than in this process.
    pub max_running_tasks: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            url: AgentLocation::InProcess,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8090)),
            system_prompt: "You are a helpful knowledge assistant. Search the knowledge sources \
                            with your tools, answer from the passages you find, and cite each \
                            passage you use by its key, as [^id]. If the passages do not cover \
                            the question, say so. Answer clearly and concisely."
                .into(),
            max_history_messages: 64,
            max_history_bytes: 512 * 1024,
            tool_timeout_ms: Millis::new(10_000),
            max_tool_rounds: 4,
            max_answer_bytes: 131_072,
            max_running_tasks: 1024,
        }
    }
}

impl AgentConfig {
    /// The most `max_tool_rounds` may be: each round is a model call.
    pub const MAX_TOOL_ROUNDS: usize = 16;

    pub fn tool_timeout(&self) -> Duration {
        self.tool_timeout_ms.duration()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// `""`: the built-in demo model. Otherwise an OpenAI-compatible `/v1` base URL.
    pub base_url: ModelEndpoint,
    pub model: String,
    /// API key, written `""` for none; then `OPENAI_API_KEY` is used if set.
    #[serde(with = "secret::optional")]
    pub api_key: Option<Secret>,
    pub connect_timeout_ms: Millis<1, 300_000>,
    /// Longest wait from sending the request to the first answer token.
    pub first_token_timeout_ms: Millis<1, 3_600_000>,
    /// Longest silence between two chunks of a streaming answer.
    pub idle_timeout_ms: Millis<1, 3_600_000>,
    /// Retries on connect errors, 429 and 5xx, only before the first token.
    pub max_retries: u32,
    /// First retry delay; doubled on every further retry.
    pub retry_backoff_ms: Millis<0, 60_000>,
    /// Pacing of the built-in demo model (used when `base_url` is empty).
    pub demo_ttft_ms: Millis<0, 60_000>,
    pub demo_token_ms: Millis<0, 60_000>,
    /// The most tokens the model may write per call (its `max_tokens`); 0: not
    /// sent, the server's own limit applies.
    pub max_tokens: u32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: ModelEndpoint::Demo,
            model: "parlor-demo".into(),
            api_key: None,
            connect_timeout_ms: Millis::new(5_000),
            first_token_timeout_ms: Millis::new(60_000),
            idle_timeout_ms: Millis::new(30_000),
            max_retries: 2,
            retry_backoff_ms: Millis::new(200),
            demo_ttft_ms: Millis::new(150),
            demo_token_ms: Millis::new(40),
            max_tokens: 4096,
        }
    }
}

impl LlmConfig {
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout_ms.duration()
    }
    pub fn first_token_timeout(&self) -> Duration {
        self.first_token_timeout_ms.duration()
    }
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout_ms.duration()
    }
    pub fn retry_backoff(&self) -> Duration {
        self.retry_backoff_ms.duration()
    }
    pub fn demo_ttft(&self) -> Duration {
        self.demo_ttft_ms.duration()
    }
    pub fn demo_token_interval(&self) -> Duration {
        self.demo_token_ms.duration()
    }
}
