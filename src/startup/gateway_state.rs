//! The actors and shared state behind a gateway's routes: storage and its writer,
//! the session registry, the broker actor on this gateway's reply queue, and the
//! actor that hands sessions over between gateways.

use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;

use super::Bookkeeping;
use crate::actors::agent_pool::AgentPool;
use crate::actors::broker::BrokerActor;
use crate::actors::handover::HandoverActor;
use crate::actors::registry::SessionRegistry;
use crate::actors::session::{ClientTurns, SessionDeps, SessionLimits};
use crate::actors::stats::{ActorStats, Tracked};
use crate::agent::knowledge::DataSource;
use crate::agent::mcp::McpServers;
use crate::auth::Authenticator;
use crate::broker::{Broker, ReplyQueue};
use crate::config::{AuthMode, Config};
use crate::conversation::KnownTools;
use crate::draining::Draining;
use crate::http::AppState;
use crate::http::admission::Admission;
use crate::storage::{self, Recorder, spawn_purger};

/// Starts the gateway's actors: the session registry and the broker actor on this
/// gateway's reply queue.
pub(super) async fn gateway_state(
    config: &Config,
    broker: Arc<dyn Broker>,
    pool: Option<Tracked<AgentPool>>,
    mcp: McpServers,
    bookkeeping: &Bookkeeping,
) -> anyhow::Result<AppState> {
    // The sources come from the configuration, which the workers share, so a
    // gateway lists them and checks a turn's choice without asking a worker.
    let data_sources: Vec<DataSource> = super::data_sources(config);
    let tools = KnownTools::new(data_sources.iter().map(|source| source.id.clone()))
        .with_mcp_servers(config.mcp.servers.iter().map(|server| server.name.clone()));
    let storage = storage::open(&config.storage)
        .await
        .context("cannot open the conversation storage")?;
    tracing::info!(storage = %config.storage.url.describe(), "conversations are stored");
    let recorder = Recorder::start(storage.clone());
    let retention = Arc::new(spawn_purger(storage.clone(), config.storage.retention_days));
    let registry_stats = ActorStats::new("session_registry", "0");
    bookkeeping.directory.register(&registry_stats);
    let heartbeat_interval = config.session.heartbeat_interval();
    let registry = SessionRegistry::new(
        heartbeat_interval,
        config.session.max_in_memory,
        config.session.max_idle_bytes,
    );
    let admission = Arc::new(Admission::new(&config.session, registry.live_sessions()));
    let registry = registry.start();

    let ReplyQueue {
        address: reply_to,
        answers,
        notices,
    } = broker
        .open_reply_queue()
        .await
        .context("cannot open the reply queue")?;
    let broker_stats = ActorStats::new("broker", reply_to.clone());
    // The reply queue's name is unique to this gateway process: it names the
    // gateway holding a session.
    let gateway_id = reply_to.clone();
    bookkeeping.directory.register(&broker_stats);
    let counters = bookkeeping.counters.clone();
    let broker_actor = BrokerActor::new(
        broker.clone(),
        reply_to,
        answers,
        broker_stats.clone(),
        counters.clone(),
    )
    .start();

    let registry = Tracked::new(registry, registry_stats);
    let handover = HandoverActor::new(
        broker.clone(),
        storage.clone(),
        recorder.clone(),
        registry.clone(),
        gateway_id.clone(),
        notices,
    )
    .start();
    let sessions = SessionDeps {
        client_turns: ClientTurns::new(config.session.max_turns_per_client),
        registry,
        broker: Tracked::new(broker_actor, broker_stats),
        counters,
        limits: SessionLimits::from_config(config),
        tools,
        storage,
        recorder,
        gateway_id,
        draining: Draining::default(),
    };
    Ok(AppState {
        config: Arc::new(config.clone()),
        sessions: Arc::new(sessions),
        handover,
        broker,
        pool,
        data_sources: Arc::new(data_sources),
        actors: bookkeeping.directory.clone(),
        metrics: bookkeeping.metrics.clone(),
        admin_token: admin_token(config).into(),
        retention,
        admission,
        auth: Arc::new(authenticator(config)?),
        mcp,
        a2a: None,
    })
}

/// The checker of `[auth]`, announced in the log (never a token).
fn authenticator(config: &Config) -> anyhow::Result<Authenticator> {
    let auth = &config.auth;
    match auth.mode {
        AuthMode::None => {}
        AuthMode::Token => tracing::info!(
            users = auth.users.len(),
            "chat requests need a user's bearer token"
        ),
        AuthMode::Jwt => tracing::info!(
            jwks_url = auth.jwks_url.as_ref().map(|url| url.as_str()),
            "chat requests need a JSON Web Token"
        ),
    }
    Authenticator::from_config(auth).context("cannot set up [auth]")
}

/// `admin.token`, or a random one (logged once, so an operator can use it).
fn admin_token(config: &Config) -> String {
    if let Some(token) = &config.admin.token {
        return token.expose().to_owned();
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    tracing::warn!(%token, "admin.token is not set; /admin/* takes this generated bearer token");
    token
}
