//! HTTP routes, one file per group. Handlers hold no state of their own: they
//! translate requests into messages for the actors in [`AppState`]. A gateway
//! serves them all ([`routes`]); a `parlor worker` only the operations routes
//! ([`operations`]).

pub mod a2a;
pub mod admin;
pub mod admission;
mod auth;
pub mod chat;
pub mod data_source;
mod etag;
mod frame_guard;
pub mod health;
pub mod metrics;
pub mod page;
pub mod tools;
pub mod validate_mcp;
pub mod ws;

use std::net::IpAddr;
use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use metrics_exporter_prometheus::PrometheusHandle;
use uuid::Uuid;

use crate::actors::agent_pool::AgentPool;
use crate::actors::handover::{Claim, HandoverActor};
use crate::actors::registry::Find;
use crate::actors::session::{ClientKey, SessionActor, SessionDeps};
use crate::actors::stats::{ActorDirectory, Tracked};
use crate::agent::knowledge::DataSource;
use crate::agent::mcp::McpServers;
use crate::auth::{Authenticator, Caller};
use crate::broker::Broker;
use crate::config::Config;
use crate::storage::{PurgerHandle, StorageError, StoredSession};
use admission::{Admission, Refusal};
use health::Readiness;

/// What the routes reach: the actors and the few facts they answer from.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sessions: Arc<SessionDeps>,
    /// Claims the stored sessions this gateway brings back.
    pub handover: Addr<HandoverActor>,
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
    /// Purges old conversations while it is kept.
    pub retention: Arc<PurgerHandle>,
    /// Whether a new session may start.
    pub admission: Arc<Admission>,
    /// Checks the credentials of chat requests (`[auth]`).
    pub auth: Arc<Authenticator>,
    /// The MCP servers whose tools turns may use, and how their connections stand.
    pub mcp: McpServers,
    /// The knowledge agent over A2A on this port (`parlor serve` only: a gateway
    /// has no agent of its own).
    pub a2a: Option<a2a::A2aState>,
}

impl AppState {
    /// Who `caller`, connecting from `peer`, counts as for the limits per client:
    /// the user when signed in, else the address (see [`Admission::client_key`]).
    pub fn client_key(&self, caller: &Caller, peer: Option<IpAddr>) -> Option<ClientKey> {
        match caller.user_id() {
            Some(user) => Some(ClientKey::User(user.to_owned())),
            None => self.admission.client_key(peer),
        }
    }

    /// Like [`AppState::find_session`], for a client at `peer` that may be about to
    /// start a session: refused when the gateway is full, or (for a new session)
    /// when the client's address starts too many.
    pub async fn admit_and_find(
        &self,
        asked: Option<String>,
        caller: &Caller,
        peer: Option<IpAddr>,
    ) -> Result<Found, Refusal> {
        let found = self.find_session(asked, caller).await;
        match found {
            Found::Live(..) => {}
            Found::Stored(_) => self.admission.has_room()?,
            Found::Nothing | Found::Unknown(_) => self.admission.admit_new(peer)?,
        }
        Ok(found)
    }

    /// The session a client names: live in this gateway, or else in storage (then
    /// claimed for this gateway, from whichever held it before). With
    /// authentication on, another user's session is, to `caller`, no session at
    /// all: nothing of it is claimed, shown or changed.
    pub async fn find_session(&self, asked: Option<String>, caller: &Caller) -> Found {
        let Some(asked) = asked else {
            return Found::Nothing;
        };
        let Some(session_id) = parse_session_id(&asked) else {
            return Found::Unknown(asked);
        };
        let live = self.sessions.registry.send(Find { session_id }).await;
        if let Ok(Some(listed)) = live {
            if !caller.may_use(listed.owner.as_deref()) {
                return Found::Unknown(asked);
            }
            return Found::Live(session_id, listed.session);
        }
        let window = self.config.agent.max_history_messages;
        let claim = Claim {
            session_id,
            caller: caller.clone(),
        };
        let claimed = match self.handover.send(claim).await {
            Ok(claimed) => claimed,
            Err(_) => Err(StorageError::Unavailable("the gateway is stopping".into())),
        };
        let loaded = match claimed {
            Ok(()) => self.sessions.storage.load_session(session_id, window).await,
            Err(StorageError::NotFound) => Ok(None),
            Err(error) => Err(error),
        };
        match loaded {
            Ok(Some(stored)) => Found::Stored(stored),
            Ok(None) => Found::Unknown(asked),
            Err(error) => {
                tracing::warn!(%session_id, %error, "could not load a session from storage");
                Found::Unknown(asked)
            }
        }
    }
}

/// A session id as parlor hands them out: a UUID in lower-case hyphenated form.
/// Other spellings of the same UUID (upper case, braces, `urn:uuid:`, no hyphens)
/// name no session, so that one session has one id wherever it is written down.
fn parse_session_id(text: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(text).ok()?;
    let mut canonical = Uuid::encode_buffer();
    (id.hyphenated().encode_lower(&mut canonical) == text).then_some(id)
}

/// What a client's session id leads to.
pub enum Found {
    /// It named none.
    Nothing,
    Live(Uuid, Addr<SessionActor>),
    /// Not in memory, but stored: to be brought back.
    Stored(StoredSession),
    /// Nowhere (or not a session id at all).
    Unknown(String),
}

/// Registers every route of a gateway.
pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    operations(config, Arc::new(state.clone()), state.metrics.clone());
    config
        .app_data(web::Data::new(state.clone()))
        .app_data(web::Data::from(state.auth.clone()))
        .configure(admin::routes)
        .configure(ws::routes)
        .configure(|c| chat::routes(c, state))
        .configure(|c| data_source::routes(c, state))
        .configure(|c| tools::routes(c, state))
        .configure(|c| validate_mcp::routes(c, state))
        .configure(page::routes);
    if let Some(a2a) = &state.a2a {
        a2a::routes(config, a2a.clone());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_names_a_session() {
        let id = Uuid::new_v4();
        let canonical = id.hyphenated().to_string();
        assert_eq!(parse_session_id(&canonical), Some(id));
        for other in [
            canonical.to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
            format!(" {canonical}"),
            "not a uuid".to_owned(),
        ] {
            assert_eq!(parse_session_id(&other), None, "{other}");
        }
    }
}
