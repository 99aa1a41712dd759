//! HTTP routes, one file per group. Handlers hold no state of their own: they
//! translate requests into messages for the actors in [`AppState`]. A gateway
//! serves them all ([`routes`]); a `parlor worker` only the operations routes
//! ([`operations`]).

pub mod admin;
pub mod chat;
pub mod data_source;
pub mod health;
pub mod metrics;
pub mod ws;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use metrics_exporter_prometheus::PrometheusHandle;
use uuid::Uuid;

use crate::actors::agent_pool::AgentPool;
use crate::actors::registry::Lookup;
use crate::actors::session::{SessionActor, SessionDeps};
use crate::actors::stats::{ActorDirectory, Tracked};
use crate::agent::knowledge::DataSource;
use crate::broker::Broker;
use crate::config::Config;
use health::Readiness;

/// What the routes reach: the actors and the few facts they answer from.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sessions: Arc<SessionDeps>,
    pub broker: Arc<dyn Broker>,
    /// The in-process worker pool, when this process runs one.
    pub pool: Option<Tracked<AgentPool>>,
    pub data_sources: Arc<Vec<DataSource>>,
    /// Every tracked actor, for `/admin/stats`.
    pub actors: ActorDirectory,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The bearer token `/admin/*` requires.
    pub admin_token: Arc<str>,
}

impl AppState {
    /// The live session a client names (by its id as text), if there is one.
    pub async fn live_session(&self, asked: Option<&str>) -> Option<(Uuid, Addr<SessionActor>)> {
        let session_id = Uuid::parse_str(asked?).ok()?;
        let session = self
            .sessions
            .registry
            .send(Lookup { session_id })
            .await
            .ok()??;
        Some((session_id, session))
    }
}

/// Registers every route of a gateway.
pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    operations(config, Arc::new(state.clone()), state.metrics.clone());
    config
        .app_data(web::Data::new(state.clone()))
        .configure(admin::routes)
        .configure(ws::routes)
        .configure(|c| chat::routes(c, state))
        .configure(|c| data_source::routes(c, state));
}

/// Registers `/healthz`, `/readyz` (answered by `readiness`) and `/metrics`.
pub fn operations(
    config: &mut web::ServiceConfig,
    readiness: Arc<dyn Readiness>,
    metrics: PrometheusHandle,
) {
    health::routes(config, readiness);
    metrics::routes(config, metrics);
}
