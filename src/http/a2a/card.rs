//! The agent card: at `/.well-known/agent-card.json` for 1.0 clients, and at
//! `/.well-known/agent.json` in the 0.3 shape, each cacheable.

use std::hash::{Hash, Hasher};

use a2a::AgentCard;
use actix_web::http::header::{CACHE_CONTROL, ETAG, HttpDate, LAST_MODIFIED};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::A2aState;

/// The card, naming the URL it was asked at as the JSON-RPC endpoint.
pub(super) async fn card(request: HttpRequest, state: web::Data<A2aState>) -> HttpResponse {
    let card = serde_json::to_value(card_at(&request, &state).1).unwrap_or_default();
    cacheable(&request, &state, &card)
}

/// `body` with what caches need: its lifetime, an `ETag` of its content (a
/// request that names it is answered 304) and its `Last-Modified`.
fn cacheable(request: &HttpRequest, state: &A2aState, body: &Value) -> HttpResponse {
    let body = body.to_string();
    let etag = {
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        format!("\"{:016x}\"", hasher.finish())
    };
    let matched = crate::http::etag::already_has(request, &etag);
    let mut response = if matched {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((CACHE_CONTROL, "public, max-age=300"))
        .insert_header((ETAG, etag))
        .insert_header((LAST_MODIFIED, HttpDate::from(state.card_since)));
    if matched {
        return response.finish();
    }
    response.content_type("application/json").body(body)
}

/// The card as asked at `request`'s URL, and that URL.
fn card_at(request: &HttpRequest, state: &A2aState) -> (String, AgentCard) {
    let url = {
        let info = request.connection_info();
        format!("{}://{}/", info.scheme(), info.host())
    };
    let mut card = AgentCard::clone(&state.card);
    for interface in &mut card.supported_interfaces {
        interface.url.clone_from(&url);
    }
    (url, card)
}

/// The card as 0.3 clients read it.
pub(super) async fn card_v03(request: HttpRequest, state: web::Data<A2aState>) -> HttpResponse {
    let (url, card) = card_at(&request, &state);
    let skills: Vec<Value> = card
        .skills
        .iter()
        .map(|skill| {
            serde_json::json!({
                "id": skill.id, "name": skill.name,
                "description": skill.description, "tags": skill.tags,
            })
        })
        .collect();
    let card = serde_json::json!({
            "name": card.name,
            "description": card.description,
            "url": url,
            "version": card.version,
            "protocolVersion": "0.3.0",
            "preferredTransport": "JSONRPC",
            "capabilities": {"streaming": true, "pushNotifications": false},
            "defaultInputModes": card.default_input_modes,
            "defaultOutputModes": card.default_output_modes,
            "skills": skills,
    });
    cacheable(&request, &state, &card)
}
