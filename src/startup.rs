//! Wiring: builds the actors and servers each command runs.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{App, HttpServer};
use anyhow::Context as _;

use crate::actors::agent_pool::AgentPool;
use crate::actors::broker::BrokerActor;
use crate::actors::registry::SessionRegistry;
use crate::actors::session::{SessionDeps, SessionLimits};
use crate::actors::stats::{ActorDirectory, ActorStats, Tracked};
use crate::agent::knowledge::KnowledgeAgent;
use crate::agent::llm::LlmClient;
use crate::agent::mock_llm::{self, MockLlmOptions, MockLlmServer};
use crate::broker::Broker;
use crate::broker::embedded::EmbeddedBroker;
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::counters::Counters;
use crate::http::{self, AppState};

/// Runs the command the user asked for until it ends (or is signalled to).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.load_config(cli.config.as_deref())?).await,
        Command::MockLlm(args) => {
            let options = MockLlmOptions {
                ttft: std::time::Duration::from_millis(args.ttft_ms),
                token_interval: std::time::Duration::from_millis(args.token_ms),
            };
            Ok(mock_llm::run(&args.bind, options).await?)
        }
        Command::Loadtest(args) => crate::loadtest::run(args).await,
    }
}

/// `parlor serve`: gateway, worker pool and knowledge agent in one process.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    if !config.broker.url.is_empty() {
        anyhow::bail!(
            "broker.url is set, but this build of parlor has only the embedded broker; \
             leave broker.url empty"
        );
    }
    if !config.agent.url.is_empty() {
        anyhow::bail!(
            "agent.url is set, but this build of parlor runs only the in-process agent; \
             leave agent.url empty"
        );
    }
    let listener = TcpListener::bind(&config.http.bind)
        .with_context(|| format!("cannot listen on {} (http.bind)", config.http.bind))?;
    let counters = Arc::new(Counters::default());
    let directory = ActorDirectory::default();

    let (agent, _demo_model) = knowledge_agent(&config).await?;
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(config.broker.max_queued_questions));
    let pool = AgentPool::new(
        config.workers.count,
        Arc::new(agent.clone()),
        broker.clone(),
        counters.clone(),
        directory.clone(),
    )
    .start();
    let state = gateway_state(&config, broker, Some(pool), &agent, counters, &directory).await?;
    let (server, address) = gateway_server(state, listener)?;
    tracing::info!("listening on http://{address}");
    server.await.context("the HTTP server failed")
}

/// The knowledge agent over the configured model — or over the built-in demo model,
/// started here, when `llm.base_url` is empty (keep the returned server alive).
async fn knowledge_agent(
    config: &Config,
) -> anyhow::Result<(KnowledgeAgent, Option<MockLlmServer>)> {
    let mut llm_config = config.llm.clone();
    let demo_model = if llm_config.base_url.is_empty() {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot start the demo model")?;
        let options = MockLlmOptions {
            ttft: std::time::Duration::from_millis(llm_config.demo_ttft_ms),
            token_interval: std::time::Duration::from_millis(llm_config.demo_token_ms),
        };
        let server = mock_llm::start(listener, options)?;
        llm_config.base_url = server.base_url();
        tracing::info!(base_url = %llm_config.base_url, "llm.base_url is empty: answering with the built-in demo model");
        Some(server)
    } else {
        None
    };
    let llm = LlmClient::new(&llm_config).context("cannot build the model client")?;
    Ok((KnowledgeAgent::new(llm, &config.agent), demo_model))
}

/// Starts the gateway's actors: the session registry and the broker actor on this
/// gateway's reply queue.
async fn gateway_state(
    config: &Config,
    broker: Arc<dyn Broker>,
    pool: Option<Addr<AgentPool>>,
    agent: &KnowledgeAgent,
    counters: Arc<Counters>,
    directory: &ActorDirectory,
) -> anyhow::Result<AppState> {
    let registry_stats = ActorStats::new("session_registry", "0");
    directory.register(&registry_stats);
    let registry = SessionRegistry::new(registry_stats.clone()).start();

    let reply_queue = broker
        .open_reply_queue()
        .await
        .context("cannot open the reply queue")?;
    let broker_stats = ActorStats::new("broker", reply_queue.address.clone());
    directory.register(&broker_stats);
    let broker_actor = BrokerActor::new(
        broker.clone(),
        reply_queue,
        broker_stats.clone(),
        counters.clone(),
    )
    .start();

    let sessions = SessionDeps {
        registry: Tracked::new(registry, registry_stats),
        broker: Tracked::new(broker_actor, broker_stats),
        counters,
        limits: Arc::new(SessionLimits::from_config(config)),
    };
    Ok(AppState {
        config: Arc::new(config.clone()),
        sessions,
        broker,
        pool,
        data_sources: Arc::new(agent.data_sources()),
    })
}

fn gateway_server(
    state: AppState,
    listener: TcpListener,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let address = listener.local_addr()?;
    let server = HttpServer::new(move || App::new().configure(|c| http::routes(c, &state)))
        .listen(listener)?
        .run();
    Ok((server, address))
}
