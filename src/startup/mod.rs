//! Wiring: builds the actors and servers each command runs, and stops them well.
//! Every command's wiring side by side here; the knowledge agent's is in `agent.rs`.
//!
//! # Which thread runs what
//!
//! `main` runs [`run`] on the System arbiter, a single-threaded runtime; actix-web
//! adds one HTTP worker thread per core.
//!
//! - **HTTP worker threads** accept and serve the sockets (`/ws`, `POST /chat`, the
//!   operations routes), and each runs the `SessionActor`s its requests start: a
//!   session's frames, history and turn queue stay on the thread that owns its
//!   socket, with no hop per frame.
//! - **The turn threads** (`parlor-turns-N`, one per core, `workers.threads`) run
//!   the `AgentWorker`s, dealt round-robin, with their turns' tasks: the model
//!   client's requests and stream parsing (each thread has its own connection
//!   pool, so a connection's I/O stays on the thread that reads it), the knowledge
//!   searches' hand-off, the publishing of answers.
//! - **The System arbiter** runs the rest of what is started here: the
//!   `SessionRegistry`, the `BrokerActor` that routes answers back to sessions, and
//!   the `AgentPool` that hands questions to workers. RabbitMQ's socket I/O runs on
//!   lapin's own thread; its reconnecting and consuming tasks, and the task that
//!   joins answers into messages, run here; so does the conversation `Recorder`,
//!   whose SQLite statements run on sqlx's thread per connection. The built-in
//!   demo model, when `llm.base_url` is empty, adds one HTTP worker thread.
//! - **`parlor worker`** serves only its operations routes, on one HTTP worker
//!   thread: they are asked for now and then, and the cores are for the turns.
//! - **`parlor agent`** serves A2A on one HTTP worker thread per core; each task
//!   runs as a Tokio task on the thread of the request that started it.
//!
//! Why: a turn is the work that grows with the load, so it must use every core —
//! with the workers on the System arbiter, that one thread did half of the
//! process's work at saturation, and a bigger machine gained little. The actors
//! that serve every session stay on one arbiter, which exists before the HTTP
//! server starts and outlives it while the process drains. Each crossing between
//! threads is one message (a question out, an answer in), never a lock. Measured
//! in docs/benchmarks.md §14: at saturation on two cores no thread does more than
//! a fifth of the work (the System arbiter did half), at the same turns per second,
//! for about 7 % more CPU per turn (each answer crosses one more thread).

mod agent;
mod gateway_state;
mod http_server;
mod index;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;

use self::gateway_state::gateway_state;
use self::http_server::HttpService;
use crate::actors::agent_pool::{
    AgentPool, PoolSettings, PoolStatusWatch, WatchPoolStatus, WorkerThreads,
};
use crate::actors::stats::{ActorDirectory, Tracked};
use crate::agent::Agent;
use crate::agent::mcp::McpServers;
use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::broker::embedded::EmbeddedBroker;
use crate::broker::rabbitmq::RabbitBroker;
use crate::cli::{Cli, Command};
use crate::config::{AgentLocation, BrokerEngine, Config};
use crate::counters::Counters;
use crate::draining::Draining;
use crate::http::health::{AgentReadiness, WorkerReadiness};
use crate::http::{self, AppState};
use crate::{shutdown, storage};

/// Runs the command the user asked for until it ends (or is signalled to).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Every command holds sockets: the gateway its clients, the load tester its
    // sessions, the mock its requests.
    crate::open_files::raise_and_report();
    let file = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => serve(args.load_config(file)?).await,
        Command::Gateway(args) => gateway(args.load_config(file)?).await,
        Command::Worker(args) => worker(args.load_config(file)?).await,
        Command::Agent(args) => a2a_agent(args.load_config(file)?).await,
        Command::MockLlm(args) => Ok(parlor_mock_llm::run(&args.bind, args.options()).await?),
        Command::Loadtest(args) => parlor_loadtest::run(args).await,
        Command::Stats(args) => crate::admin_view::run(args).await,
        Command::Index(args) => index::run(args.load_config(file)?).await,
    }
}

/// Turns each AgentWorker runs at once. One: `workers.count` is the number of
/// turns a process runs at once, and its default (1024) is sized for that.
const TURNS_PER_WORKER: usize = 1;

/// HTTP worker threads of `parlor worker`, which serves only the operations routes.
const OPERATIONS_THREADS: Option<usize> = Some(1);

/// `parlor serve`: gateway, worker pool and knowledge agent in one process, over
/// the embedded broker or, with `broker.url`, RabbitMQ.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = bind(config.http.bind, "http.bind")?;
    let bookkeeping = Bookkeeping::new()?;
    let broker = connect_broker(&config, &bookkeeping).await?;
    let mcp = McpServers::start(&config.mcp);
    let (agent, _demo_model) = agent::turn_agent(&config, mcp.clone()).await?;
    let pool = start_pool(&config, agent.clone(), broker.clone(), &bookkeeping);
    let mut state = gateway_state(&config, broker, Some(pool.clone()), mcp, &bookkeeping).await?;
    let storage = state.sessions.storage.clone();
    state.a2a = Some(agent::a2a_state(
        &config,
        agent,
        state.auth.clone(),
        storage,
    ));
    // One process, one grace: the gateway's turns are the pool's turns.
    let pool = pool_to_drain(&config, pool, config.http.shutdown_grace());
    run_gateway(state, listener, Some(pool)).await
}

/// `parlor gateway`: the HTTP/WebSocket front alone; workers run elsewhere.
pub async fn gateway(config: Config) -> anyhow::Result<()> {
    require_rabbitmq(&config, "gateway")?;
    let listener = bind(config.http.bind, "http.bind")?;
    let bookkeeping = Bookkeeping::new()?;
    let broker = connect_broker(&config, &bookkeeping).await?;
    // Only to list the servers' tools (`GET /tools`): the workers call them.
    let mcp = McpServers::start(&config.mcp);
    let state = gateway_state(&config, broker, None, mcp, &bookkeeping).await?;
    run_gateway(state, listener, None).await
}

/// `parlor worker`: consumes questions with a pool of agent workers, and serves
/// `/healthz`, `/readyz` and `/metrics` on `worker.bind`, until signalled; then
/// drains the pool (see [`shutdown::drain`]) within `worker.shutdown_grace_s`.
pub async fn worker(config: Config) -> anyhow::Result<()> {
    require_rabbitmq(&config, "worker")?;
    let listener = bind(config.worker.bind, "worker.bind")?;
    let bookkeeping = Bookkeeping::new()?;
    let broker = connect_broker(&config, &bookkeeping).await?;
    let mcp = McpServers::start(&config.mcp);
    let (agent, _demo_model) = agent::turn_agent(&config, mcp.clone()).await?;
    let pool = start_pool(&config, agent, broker.clone(), &bookkeeping);
    let PoolStatusWatch(status) = pool
        .send(WatchPoolStatus)
        .await
        .context("the worker pool did not start")?;
    let draining = Draining::default();
    let readiness = Arc::new(WorkerReadiness {
        draining: draining.clone(),
        broker,
        pool: status,
        mcp: mcp.clone(),
    });
    let metrics = bookkeeping.metrics.clone();
    let mut http = HttpService::start(listener, OPERATIONS_THREADS, move |routes| {
        http::operations(routes, readiness.clone(), metrics.clone());
    })?;
    tracing::info!(
        queue = %config.broker.question_queue,
        workers = config.workers.count,
        turns_per_worker = TURNS_PER_WORKER,
        "worker ready: consuming questions"
    );
    tracing::info!("worker listening on http://{}", http.address);
    let Some(signal) = http.until_signalled().await? else {
        return Ok(());
    };
    let pool = pool_to_drain(&config, pool, config.worker.shutdown_grace());
    tracing::info!(
        signal,
        grace_s = pool.grace.as_secs(),
        "stopping: taking no more questions"
    );
    shutdown::drain(shutdown::Work {
        draining,
        sessions: None,
        pool: Some(pool),
    })
    .await;
    mcp.stop().await;
    http.stop().await
}

/// `parlor agent`: the knowledge agent alone, as an A2A server on `agent.bind`
/// (with `/healthz`, `/readyz` and `/metrics`), until signalled; then running tasks
/// get `http.shutdown_grace_s` to finish.
pub async fn a2a_agent(config: Config) -> anyhow::Result<()> {
    if let AgentLocation::Remote(url) = &config.agent.url {
        anyhow::bail!(
            "agent.url is {url}, but `parlor agent` is the agent: leave agent.url empty for it"
        );
    }
    let listener = bind(config.agent.bind, "agent.bind")?;
    let bookkeeping = Bookkeeping::new()?;
    let mcp = McpServers::start(&config.mcp);
    let (agent, _demo_model) = agent::knowledge_agent(&config, mcp.clone()).await?;
    let storage = storage::open(&config.storage)
        .await
        .context("cannot open the conversation storage")?;
    tracing::info!(storage = %config.storage.url.describe(), "conversations of contexts are stored");
    let _retention = storage::spawn_purger(storage.clone(), config.storage.retention_days);
    // Open to whoever reaches `agent.bind`: docs/security.md says where to put it.
    let auth = Arc::new(Authenticator::Off);
    let state = agent::a2a_state(&config, Arc::new(agent), auth, storage);
    let draining = Draining::default();
    let readiness = Arc::new(AgentReadiness {
        draining: draining.clone(),
        mcp: mcp.clone(),
    });
    let metrics = bookkeeping.metrics.clone();
    let routes_state = state.clone();
    let mut http = HttpService::start(listener, None, move |routes| {
        http::operations(routes, readiness.clone(), metrics.clone());
        http::a2a::routes(routes, routes_state.clone());
    })?;
    tracing::info!("agent listening on http://{}", http.address);
    let Some(signal) = http.until_signalled().await? else {
        return Ok(());
    };
    draining.begin();
    state.server.stop_accepting();
    let grace = config.http.shutdown_grace();
    tracing::info!(
        signal,
        grace_s = grace.as_secs(),
        "stopping: running tasks may finish"
    );
    if tokio::time::timeout(grace, state.server.all_finished())
        .await
        .is_err()
    {
        tracing::warn!("stopping with tasks still running: the grace period ended");
    }
    mcp.stop().await;
    http.stop().await
}

/// The knowledge sources as `GET /get_data_source` and the agent card list them.
pub(crate) fn data_sources(config: &Config) -> Vec<crate::agent::knowledge::DataSource> {
    crate::agent::knowledge::KnowledgeSource::configured(&config.knowledge)
        .iter()
        .map(crate::agent::knowledge::KnowledgeSource::data_source)
        .collect()
}

fn pool_to_drain(config: &Config, pool: Tracked<AgentPool>, grace: Duration) -> shutdown::Pool {
    shutdown::Pool {
        pool,
        // With RabbitMQ, other workers can take what this one leaves.
        shares_queue: matches!(config.broker.url, BrokerEngine::RabbitMq(_)),
        grace,
    }
}

fn require_rabbitmq(config: &Config, command: &str) -> anyhow::Result<()> {
    match &config.broker.url {
        BrokerEngine::RabbitMq(_) => Ok(()),
        BrokerEngine::Embedded => anyhow::bail!(
            "`parlor {command}` talks to the other processes through RabbitMQ: set broker.url \
             (e.g. PARLOR_BROKER__URL=amqp://guest:guest@127.0.0.1:5672/%2f)"
        ),
    }
}

/// Listens on `address`, the value of the configuration key `key`.
fn bind(address: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).with_context(|| format!("cannot listen on {address} ({key})"))
}

/// What every part of one process counts into: totals, the actor directory and
/// the metrics recorder.
struct Bookkeeping {
    counters: Arc<Counters>,
    directory: ActorDirectory,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
}

impl Bookkeeping {
    fn new() -> anyhow::Result<Self> {
        // First the recorder, then the counters that register their series with it.
        let metrics = crate::telemetry::install_metrics()?;
        Ok(Self {
            counters: Arc::default(),
            directory: ActorDirectory::default(),
            metrics,
        })
    }
}

/// The embedded broker when `broker.url` is empty, else RabbitMQ; its connection
/// is counted as it comes and goes.
async fn connect_broker(
    config: &Config,
    bookkeeping: &Bookkeeping,
) -> anyhow::Result<Arc<dyn Broker>> {
    let broker: Arc<dyn Broker> = match &config.broker.url {
        BrokerEngine::Embedded => Arc::new(EmbeddedBroker::new(config.broker.max_queued_questions)),
        BrokerEngine::RabbitMq(url) => {
            // RabbitMQ hands this process at most as many questions as its pool can run.
            let prefetch = u16::try_from(pool_settings(config).turn_slots()).unwrap_or(u16::MAX);
            let broker = RabbitBroker::connect(&config.broker, prefetch)
                .await
                .with_context(|| format!("cannot connect to RabbitMQ at {url} (broker.url)"))?;
            Arc::new(broker)
        }
    };
    count_connection(broker.as_ref(), bookkeeping.counters.clone());
    Ok(broker)
}

/// Tells `counters` of the broker's connection now and at each change.
fn count_connection(broker: &dyn Broker, counters: Arc<Counters>) {
    let mut connection = broker.connection_state();
    counters.broker_connection(connection.borrow_and_update().connected);
    actix::spawn(async move {
        while connection.changed().await.is_ok() {
            counters.broker_connection(connection.borrow_and_update().connected);
        }
    });
}

fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        workers: config.workers.count,
        turns_per_worker: TURNS_PER_WORKER,
        max_deliveries: config.broker.max_deliveries,
        chunk_window: config.workers.chunk_window(),
        max_answer_bytes: config.agent.max_answer_bytes,
    }
}

fn start_pool(
    config: &Config,
    agent: Arc<dyn Agent>,
    broker: Arc<dyn Broker>,
    bookkeeping: &Bookkeeping,
) -> Tracked<AgentPool> {
    AgentPool::new(
        pool_settings(config),
        WorkerThreads::start(config.workers.threads()),
        agent,
        broker,
        bookkeeping.counters.clone(),
        bookkeeping.directory.clone(),
    )
    .start_tracked()
}

/// Serves HTTP until the server fails or a signal asks it to stop, then drains the
/// sessions (and `pool`, in `parlor serve`) and stops the server.
async fn run_gateway(
    state: AppState,
    listener: TcpListener,
    pool: Option<shutdown::Pool>,
) -> anyhow::Result<()> {
    let routes_state = state.clone();
    let mut http = HttpService::start(listener, None, move |routes| {
        http::routes(routes, &routes_state);
    })?;
    crate::memory::trim_periodically();
    tracing::info!("listening on http://{}", http.address);
    let Some(signal) = http.until_signalled().await? else {
        return Ok(());
    };
    let sessions = shutdown::Sessions {
        counters: state.sessions.counters.clone(),
        registry: state.sessions.registry.clone(),
        grace: state.config.http.shutdown_grace(),
    };
    tracing::info!(
        signal,
        grace_s = sessions.grace.as_secs(),
        "stopping: no new turns; running turns may finish"
    );
    let grace = sessions.grace;
    if let Some(a2a) = &state.a2a {
        a2a.server.stop_accepting();
    }
    shutdown::drain(shutdown::Work {
        draining: state.sessions.draining.clone(),
        sessions: Some(sessions),
        pool,
    })
    .await;
    if let Some(a2a) = &state.a2a {
        // They ran alongside the turns drained above, within the same grace.
        let _ = tokio::time::timeout(grace, a2a.server.all_finished()).await;
    }
    // What the turns said is stored before the process goes.
    if !state.sessions.recorder.flush(STORAGE_FLUSH_GRACE).await {
        tracing::warn!("stopping with conversation writes not stored: the storage is unavailable");
    }
    state.mcp.stop().await;
    http.stop().await
}

/// How long a stopping gateway waits for its last conversation writes.
const STORAGE_FLUSH_GRACE: Duration = Duration::from_secs(10);
