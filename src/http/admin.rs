//! `GET /admin/stats`: what the process is doing, for operators. Requires
//! `Authorization: Bearer <admin.token>`; never reachable cross-origin (no CORS).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use super::auth::bearer_token;
use crate::actors::stats::ActorSnapshot;
use crate::agent::mcp::ServerStatus;
use crate::auth::constant_time_eq;
use crate::counters::TurnTotals;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/admin/stats", web::get().to(admin_stats));
}

/// The body of `/admin/stats` (docs/protocol.md#admin-stats); `/metrics` reports the same numbers.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub sessions: SessionTotals,
    pub turns: TurnTotals,
    pub workers: WorkerTotals,
    pub broker: BrokerTotals,
    pub actors: Vec<ActorSnapshot>,
    /// The MCP servers and how their connections stand.
    pub mcp_servers: Vec<ServerStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionTotals {
    pub active: u64,
    pub created_total: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkerTotals {
    pub size: u64,
    pub busy: u64,
    pub restarts_total: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokerTotals {
    pub kind: &'static str,
    pub connected: bool,
    pub published_total: u64,
    pub consumed_total: u64,
    pub redelivered_total: u64,
}

/// Reads the numbers from the counters (the same that `/metrics` renders) and the
/// actors' mailbox counts.
fn collect(state: &AppState) -> Stats {
    let totals = state.sessions.counters.totals();
    Stats {
        sessions: SessionTotals {
            active: totals.sessions_active,
            created_total: totals.sessions_created,
        },
        turns: totals.turns,
        workers: WorkerTotals {
            size: totals.workers_size,
            busy: totals.workers_busy,
            restarts_total: totals.worker_restarts,
        },
        broker: BrokerTotals {
            kind: state.broker.kind(),
            connected: totals.broker_connected,
            published_total: totals.questions_published,
            consumed_total: totals.questions_consumed,
            redelivered_total: totals.questions_redelivered,
        },
        actors: state.actors.snapshot(),
        mcp_servers: state.mcp.statuses(),
    }
}

async fn admin_stats(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !is_authorized(&request, &state.admin_token) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer"))
            .json(json!({ "detail": "a valid admin bearer token is required" }));
    }
    HttpResponse::Ok().json(collect(&state))
}

fn is_authorized(request: &HttpRequest, token: &str) -> bool {
    let presented = request
        .headers()
        .get("Authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    presented.is_some_and(|presented| constant_time_eq(presented.as_bytes(), token.as_bytes()))
}
