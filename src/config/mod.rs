//! Typed, layered configuration: defaults, then `config.toml` (or `--config PATH`),
//! then `PARLOR_<SECTION>__<KEY>` environment variables, then command-line flags.
//!
//! Every value is parsed when it is loaded — addresses into `SocketAddr`, URLs into
//! URLs, "empty means the built-in one" keys into enums, durations into bounded
//! types — so an error names its key before anything starts, and the rest of the
//! program never interprets a string. Each key is still written as before.
//! Secrets never show in `Debug`.

mod agent;
mod auth;
mod duration;
mod endpoints;
mod knowledge;
mod load;
mod mcp;
mod secret;
mod storage;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use agent::{AgentConfig, LlmConfig};
pub use auth::{AuthConfig, AuthMode, AuthUser};
pub use duration::{BoundedDuration, Millis, Milliseconds, Seconds, Secs, TimeUnit};
pub use endpoints::{AgentLocation, AmqpUrl, BrokerEngine, ModelEndpoint};
pub use knowledge::{KnowledgeConfig, KnowledgeSourceConfig, SourceId, SourceKind};
pub use load::{ConfigError, DEFAULT_CONFIG_FILE, Overrides};
pub use mcp::{McpConfig, McpServerConfig, McpTransport};
pub use secret::Secret;
pub use storage::{StorageConfig, StorageUrl};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub broker: BrokerConfig,
    pub workers: WorkersConfig,
    pub worker: WorkerConfig,
    pub agent: AgentConfig,
    pub llm: LlmConfig,
    pub session: SessionConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub knowledge: KnowledgeConfig,
    pub auth: AuthConfig,
    pub mcp: McpConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Gateway listen address.
    #[serde(with = "endpoints::socket_address")]
    pub bind: SocketAddr,
    /// Largest accepted user message or WebSocket frame, in bytes.
    pub max_message_bytes: usize,
    /// Origins allowed to call `POST /chat` from a browser; `"*"` allows any.
    pub cors_origins: Vec<String>,
    /// Origins whose pages may open `GET /ws` (checked against the `Origin` header
    /// browsers send); empty: the same as `cors_origins`. A page of the gateway's
    /// own origin, and a client that sends no `Origin`, are always let in.
    pub ws_allowed_origins: Vec<String>,
    /// On SIGTERM/SIGINT, how long running turns may take to finish.
    pub shutdown_grace_s: Secs<0, 3_600>,
    /// Whether `POST /chat` may carry `system` messages. Off: a client could
    /// otherwise rewrite the agent's instructions (prompt injection by design).
    pub allow_client_system_messages: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            max_message_bytes: 65_536,
            cors_origins: vec!["*".into()],
            ws_allowed_origins: Vec::new(),
            shutdown_grace_s: Secs::new(30),
            allow_client_system_messages: false,
        }
    }
}

impl HttpConfig {
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace_s.duration()
    }

    /// The origins whose pages may open a WebSocket (`"*"`: any).
    pub fn ws_origins(&self) -> &[String] {
        if self.ws_allowed_origins.is_empty() {
            &self.cors_origins
        } else {
            &self.ws_allowed_origins
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `""`: the embedded in-process broker. An `amqp://` URL: RabbitMQ.
    pub url: BrokerEngine,
    /// Name of the work queue; other queue names derive from it.
    pub question_queue: String,
    /// Questions that may wait for a worker before new ones are refused with `busy`.
    pub max_queued_questions: usize,
    /// Deliveries of one question before it counts as poison: dead-lettered, and its
    /// session gets an `error` (RabbitMQ only; the embedded broker never redelivers).
    pub max_deliveries: u32,
    /// Longest wait for RabbitMQ to confirm a publish.
    pub publish_timeout_ms: Millis<1, 300_000>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: BrokerEngine::Embedded,
            question_queue: "question_queue".into(),
            max_queued_questions: 10_000,
            max_deliveries: 3,
            publish_timeout_ms: Millis::new(5_000),
        }
    }
}

impl BrokerConfig {
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout_ms.duration()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// AgentWorker actors per worker process.
    pub count: usize,
    /// Threads the workers are spread over; 0: one per core.
    pub threads: usize,
    /// How long a worker may hold answer text to send it together with what follows.
    /// 0: text that is already there goes out together, nothing waits.
    pub chunk_window_ms: Millis<0, 1_000>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            // A turn waiting on the model costs almost nothing: the default must
            // not be what caps a machine (docs/benchmarks.md §13).
            count: 1024,
            threads: 0,
            chunk_window_ms: Millis::new(0),
        }
    }
}

impl WorkersConfig {
    /// The threads to spread the workers over (`threads`, or one per core).
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => crate::actors::agent_pool::one_per_core(),
            threads => threads,
        }
    }

    pub fn chunk_window(&self) -> Duration {
        self.chunk_window_ms.duration()
    }
}

/// The `parlor worker` process itself (its pool is `[workers]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Where `parlor worker` serves `/healthz`, `/readyz` and `/metrics`.
    #[serde(with = "endpoints::socket_address")]
    pub bind: SocketAddr,
    /// On SIGTERM/SIGINT, how long running turns may take to finish before the
    /// rest are given back to the queue.
    pub shutdown_grace_s: Secs<0, 3_600>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8081)),
            shutdown_grace_s: Secs::new(30),
        }
    }
}

impl WorkerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace_s.duration()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// How long a session outlives its last connection.
    pub idle_timeout_s: Secs<1, 86_400>,
    /// Messages that may wait behind a running turn before new ones get `busy`.
    pub max_queued_turns: usize,
    /// A turn that has not ended after this long ends with `timeout`.
    pub turn_timeout_s: Secs<1, 86_400>,
    /// Time between WebSocket pings to the client.
    pub heartbeat_interval_s: Secs<1, 3_600>,
    /// A client silent this long (no frame, no pong) is disconnected.
    pub client_timeout_s: Secs<1, 86_400>,
    /// Whether a client leaving (its socket closing, a `POST /chat` client going
    /// away) stops its turns. Off: they finish and join the history.
    pub cancel_on_disconnect: bool,
    /// Sessions a gateway holds in memory; beyond it, the ones idle the longest
    /// leave memory (they stay stored, and come back when their client does).
    pub max_in_memory: usize,
    /// Bytes of frames that may wait for a WebSocket client that does not read;
    /// beyond them it is disconnected (1008) and finds its turns when it comes back.
    pub max_unsent_bytes: usize,
    /// The most bytes of conversation the idle sessions in memory may hold together;
    /// beyond it, the ones idle the longest leave memory (they stay stored).
    pub max_idle_bytes: usize,
    /// Sessions a gateway may hold in memory at all (busy ones included); beyond
    /// it, new sessions are refused with 429.
    pub max_sessions: usize,
    /// New sessions one client address may start per minute (0: no limit); beyond
    /// it, 429.
    pub max_new_per_address_per_minute: u32,
    /// Turns one client (a user; without auth, an address) may run at once across
    /// its sessions (0: no limit); beyond it, `busy`.
    pub max_turns_per_client: usize,
    /// Whether the per-address limits apply to loopback clients too. Off, so load
    /// tests and a reverse proxy on the same machine are not limited as one client.
    pub limit_loopback: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_s: Secs::new(300),
            max_queued_turns: 8,
            turn_timeout_s: Secs::new(300),
            heartbeat_interval_s: Secs::new(20),
            client_timeout_s: Secs::new(60),
            cancel_on_disconnect: false,
            max_in_memory: 100_000,
            max_unsent_bytes: 1024 * 1024,
            max_idle_bytes: 64 * 1024 * 1024,
            max_sessions: 100_000,
            max_new_per_address_per_minute: 600,
            max_turns_per_client: 8,
            limit_loopback: false,
        }
    }
}

impl SessionConfig {
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout_s.duration()
    }
    pub fn turn_timeout(&self) -> Duration {
        self.turn_timeout_s.duration()
    }
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval_s.duration()
    }
    pub fn client_timeout(&self) -> Duration {
        self.client_timeout_s.duration()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/*`, written `""` for none: then a random one is
    /// generated at start.
    #[serde(with = "secret::optional")]
    pub token: Option<Secret>,
}
