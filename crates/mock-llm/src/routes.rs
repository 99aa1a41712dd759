//! The mock's HTTP routes: chat completions (streamed or not), the model list and
//! the counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use tokio::time::Instant;

use crate::events::{deltas, event_head, stream_batches};
use crate::fault::InjectedFault;
use crate::more_words::MoreWords;
use crate::plan::{End, Plan};
use crate::reply::Reply;
use crate::request::{CompletionRequest, last_user_and_turn};
use crate::stats::MockStats;
use crate::stream::{Then, WordStream};
use crate::whole::complete;
use crate::{MOCK_MODEL_ID, MockLlmOptions};

/// What every request of one server shares.
pub(crate) struct MockState {
    pub(crate) options: MockLlmOptions,
    pub(crate) stats: Arc<MockStats>,
}

/// Registers the routes (pass to `App::configure`).
pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/chat/completions", web::post().to(chat_completions))
        .route("/v1/models", web::get().to(models))
        .route("/stats", web::get().to(stats_route));
}

async fn models() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "object": "list",
        "data": [{"id": MOCK_MODEL_ID, "object": "model", "owned_by": "parlor"}],
    }))
}

async fn stats_route(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats.snapshot())
}

fn error_response(status: StatusCode, message: &str, kind: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}
    }))
}

async fn chat_completions(state: web::Data<MockState>, body: web::Bytes) -> HttpResponse {
    let received = Instant::now();
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("invalid request body: {e}");
            return error_response(StatusCode::BAD_REQUEST, &message, "invalid_request_error");
        }
    };
    let (last_user, turn) = last_user_and_turn(&request.messages);
    let fault = InjectedFault::find(&last_user);
    if let Some(InjectedFault::Status(status)) = fault {
        let message = format!("mock failure: status {}", status.as_u16());
        return error_response(status, &message, "mock_error");
    }
    let reply = Reply::decide(&request, &last_user, turn, state.options.call_tools);
    let plan = Plan::new(&reply, deltas(&reply).len(), fault, request.max_tokens);
    let model = request.model.unwrap_or_else(|| MOCK_MODEL_ID.to_owned());
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if request.stream {
        let options = state.options;
        let head = event_head(&id, created, &model);
        let batches = stream_batches(&head, &reply, &plan, options);
        let then = match plan.end {
            End::Finish(_) => Then::End,
            End::Silence => Then::Stall,
            End::MoreWords(left) => {
                // Word `n` of a reply is due at ttft + n intervals; these follow
                // the reply's own.
                let first = options.ttft + options.token_interval * (plan.deltas as u32);
                Then::More(MoreWords::new(
                    &head,
                    left,
                    received + first,
                    options.token_interval,
                ))
            }
        };
        let body = WordStream::new(batches, then, received, state.stats.clone());
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/event-stream"))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .streaming(body)
    } else {
        complete(id, created, model, &reply, plan, state.options).await
    }
}
