//! `GET /healthz` (the process runs) and `GET /readyz` (it can take chats).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match not_ready_because(&state) {
        None => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "reason": reason })),
    }
}

/// Why chats cannot be taken now, if they cannot.
pub fn not_ready_because(state: &AppState) -> Option<&'static str> {
    if state.sessions.draining.is_draining() {
        return Some("parlor is shutting down");
    }
    if !state.broker.is_connected() {
        return Some("the broker is not connected");
    }
    if state.pool.as_ref().is_some_and(|pool| !pool.connected()) {
        return Some("the worker pool is not running");
    }
    None
}
