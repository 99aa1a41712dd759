//! The command line: `parlor <command> [--config PATH]` (docs/protocol.md#commands-and-configuration).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "parlor",
    version,
    about = "Streaming LLM chat backend built as an actor system"
)]
pub struct Cli {
    /// Configuration file [default: ./config.toml if present]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: gateway, worker pool and knowledge agent
    Serve(ServeArgs),
    /// The HTTP/WebSocket front only (needs RabbitMQ: broker.url)
    Gateway(GatewayArgs),
    /// The question consumer with its agent worker pool (needs RabbitMQ: broker.url)
    Worker(WorkerArgs),
    /// The knowledge agent alone, as an A2A 1.0 server (JSON-RPC over HTTP)
    Agent(AgentArgs),
    /// An OpenAI-compatible mock model server, for development and tests
    MockLlm(parlor_mock_llm::MockLlmArgs),
    /// The load-testing harness: drives chat sessions and checks every answer
    Loadtest(parlor_loadtest::LoadtestArgs),
    /// A running gateway's admin stats as a table (`--watch` refreshes it)
    Stats(crate::admin_view::StatsArgs),
    /// Builds the search index of every knowledge source ahead of time
    Index(IndexArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Gateway listen address (overrides http.bind)
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// AgentWorker actors in the pool (overrides workers.count)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// OpenAI-compatible /v1 base URL of the model (overrides llm.base_url)
    #[arg(long, value_name = "URL")]
    pub llm_base_url: Option<String>,
    /// RabbitMQ URL (overrides broker.url; default: the embedded broker)
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway listen address (overrides http.bind)
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// RabbitMQ URL (overrides broker.url)
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// AgentWorker actors in the pool (overrides workers.count)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// RabbitMQ URL (overrides broker.url)
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
    /// OpenAI-compatible /v1 base URL of the model (overrides llm.base_url)
    #[arg(long, value_name = "URL")]
    pub llm_base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A2A listen address (overrides agent.bind)
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// OpenAI-compatible /v1 base URL of the model (overrides llm.base_url)
    #[arg(long, value_name = "URL")]
    pub llm_base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Where the indexes are written, under indexes/ (overrides storage.data_dir)
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
}

impl ServeArgs {
    pub fn load_config(&self, file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let overrides = Overrides::default()
            .set("http.bind", self.bind.clone())
            .set("workers.count", self.workers)
            .set("llm.base_url", self.llm_base_url.clone())
            .set("broker.url", self.broker_url.clone());
        Config::load(file, overrides)
    }
}

impl GatewayArgs {
    pub fn load_config(&self, file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let overrides = Overrides::default()
            .set("http.bind", self.bind.clone())
            .set("broker.url", self.broker_url.clone());
        Config::load(file, overrides)
    }
}

impl WorkerArgs {
    pub fn load_config(&self, file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let overrides = Overrides::default()
            .set("workers.count", self.workers)
            .set("broker.url", self.broker_url.clone())
            .set("llm.base_url", self.llm_base_url.clone());
        Config::load(file, overrides)
    }
}

impl AgentArgs {
    pub fn load_config(&self, file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let overrides = Overrides::default()
            .set("agent.bind", self.bind.clone())
            .set("llm.base_url", self.llm_base_url.clone());
        Config::load(file, overrides)
    }
}

impl IndexArgs {
    pub fn load_config(&self, file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let overrides = Overrides::default().set("storage.data_dir", self.data_dir.clone());
        Config::load(file, overrides)
    }
}
