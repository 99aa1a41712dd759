//! The A2A 1.0 JSON-RPC binding (docs/a2a.md): the agent card at
//! `GET /.well-known/agent-card.json`, and every method at `POST /`.
//!
//! The version a request speaks is its `A2A-Version` header (or query
//! parameter). This server speaks 1.0; a version it does not speak is refused with
//! -32009. A request without one is 0.3 by the specification, but the 1.0 and 0.3
//! method names differ (`SendMessage`, `message/send`), so a 1.0 method without
//! the header is served as 1.0 rather than refused.

mod card;
mod jsonrpc;
mod stream;
mod v03;

use std::sync::Arc;

use a2a::{
    AgentCard, CancelTaskRequest, GetTaskRequest, ListTasksRequest, SendMessageRequest,
    SendMessageResponse, SubscribeToTaskRequest,
};
use std::time::SystemTime;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::a2a::{A2aError, A2aServer, trim_history};
use crate::auth::{Authenticator, Caller};
use jsonrpc::{RpcError, RpcRequest, code, error_response, success};
use stream::Start;

/// Which version's names and shapes a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    V1,
    V03,
}

/// The largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the A2A routes reach.
#[derive(Clone)]
pub struct A2aState {
    pub server: Arc<A2aServer>,
    /// The agent card; its interfaces' URLs are replaced by the one it is asked at.
    pub card: Arc<AgentCard>,
    /// The longest text a message may carry (`http.max_message_bytes`).
    pub max_message_bytes: usize,
    /// Who may call (on `parlor serve`, the gateway's `[auth]`). With
    /// authentication on, each user sees only their own tasks.
    pub auth: Arc<Authenticator>,
    /// When the card took its content (the process's start): its `Last-Modified`.
    card_since: SystemTime,
}

impl A2aState {
    pub fn new(
        server: Arc<A2aServer>,
        card: AgentCard,
        max_message_bytes: usize,
        auth: Arc<Authenticator>,
    ) -> Self {
        Self {
            server,
            card: Arc::new(card),
            max_message_bytes,
            auth,
            card_since: SystemTime::now(),
        }
    }
}

pub fn routes(config: &mut web::ServiceConfig, state: A2aState) {
    config
        .app_data(web::Data::from(state.auth.clone()))
        .app_data(web::Data::new(state))
        .route("/.well-known/agent-card.json", web::get().to(card::card))
        .route("/.well-known/agent.json", web::get().to(card::card_v03))
        .route("/", web::post().to(rpc));
}

async fn rpc(
    request: HttpRequest,
    caller: Caller,
    mut payload: web::Payload,
    state: web::Data<A2aState>,
) -> HttpResponse {
    if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
            let error = RpcError::new(
                code::CONTENT_TYPE_NOT_SUPPORTED,
                format!("requests are application/json, not {essence:?}"),
            );
            return error_response(&Value::Null, &error);
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().finish();
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            let error = RpcError::new(
                code::INVALID_REQUEST,
                format!("the request is larger than {MAX_BODY_BYTES} bytes"),
            );
            return HttpResponse::PayloadTooLarge().json(jsonrpc::failure(&Value::Null, &error));
        }
        body.extend_from_slice(&chunk);
    }
    let RpcRequest { id, method, params } = match jsonrpc::parse(&body) {
        Ok(request) => request,
        Err((id, error)) => return error_response(&id, &error),
    };
    let dialect = match v03::method(&method) {
        Some(_) => Dialect::V03,
        None => Dialect::V1,
    };
    if let Err(error) = check_version(&request, &method, dialect) {
        return error_response(&id, &error);
    }
    let caller = &caller;
    if dialect == Dialect::V03 {
        return rpc_v03(&state, caller, id, &method, params).await;
    }
    let answered = match method.as_str() {
        "SendMessage" => send_message(&state, caller, params).await,
        "SendStreamingMessage" => return send_streaming_message(&state, caller, id, params),
        "SubscribeToTask" => return subscribe_to_task(&state, caller, id, params, Dialect::V1),
        "GetTask" => get_task(&state, caller, params),
        "CancelTask" => cancel_task(&state, caller, params).await,
        "ListTasks" => jsonrpc::params::<ListTasksRequest>(params).map(|request| {
            serde_json::to_value(state.server.list(&request, caller)).unwrap_or_default()
        }),
        "GetExtendedAgentCard" => Err(RpcError::new(
            code::EXTENDED_CARD_NOT_CONFIGURED,
            "this agent has no extended card",
        )),
        "CreateTaskPushNotificationConfig"
        | "GetTaskPushNotificationConfig"
        | "ListTaskPushNotificationConfigs"
        | "DeleteTaskPushNotificationConfig" => Err(RpcError::new(
            code::PUSH_NOTIFICATION_NOT_SUPPORTED,
            "push notifications are not supported; use SendStreamingMessage or SubscribeToTask",
        )),
        other => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("there is no method {other:?}"),
        )),
    };
    match answered {
        Ok(result) => HttpResponse::Ok().json(success(&id, result)),
        Err(error) => error_response(&id, &error),
    }
}

/// A 0.3 request: translated to 1.0, answered, and the answer translated back.
async fn rpc_v03(
    state: &A2aState,
    caller: &Caller,
    id: Value,
    method: &str,
    params: Value,
) -> HttpResponse {
    let answered = match method {
        "message/send" => match v03::send_params(params) {
            Ok(request) => send(state, caller, continued(state, caller, request)).await,
            Err(error) => Err(error),
        },
        "message/stream" => {
            let started = v03::send_params(params).and_then(|request| {
                check_length(state, &request)?;
                let request = continued(state, caller, request);
                state.server.send(request, caller).map_err(RpcError::from)
            });
            return match started {
                Ok(cell) => stream::events(id, &cell, Dialect::V03, Start::New),
                Err(error) => error_response(&id, &error),
            };
        }
        "tasks/resubscribe" => {
            return subscribe_to_task(state, caller, id, params, Dialect::V03);
        }
        "tasks/get" => get_task(state, caller, params),
        _ => cancel_task(state, caller, params).await,
    };
    match answered {
        Ok(result) => HttpResponse::Ok().json(success(&id, v03::to_v03(result))),
        Err(error) => error_response(&id, &error),
    }
}

/// 0.3 clients (the original design's among them) send a follow-up with the
/// `taskId` of the finished task: it continues that task's conversation.
fn continued(
    state: &A2aState,
    caller: &Caller,
    mut request: SendMessageRequest,
) -> SendMessageRequest {
    let earlier = request
        .message
        .task_id
        .as_deref()
        .and_then(|task_id| state.server.task(task_id, caller).ok())
        .filter(|earlier| earlier.state().is_terminal());
    if let Some(earlier) = earlier {
        request.message.task_id = None;
        request.message.context_id = Some(earlier.snapshot().context_id);
    }
    request
}

/// The `A2A-Version` the request speaks, if this server speaks it (see the module doc).
fn check_version(request: &HttpRequest, method: &str, dialect: Dialect) -> Result<(), RpcError> {
    let from_query = || {
        web::Query::<std::collections::HashMap<String, String>>::from_query(request.query_string())
            .ok()
            .and_then(|query| query.get("A2A-Version").cloned())
    };
    let version = request
        .headers()
        .get("A2A-Version")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(from_query);
    let spoken = match dialect {
        Dialect::V1 => ["1.0", "1"],
        Dialect::V03 => ["0.3", "0.3.0"],
    };
    match version.as_deref().map(str::trim) {
        None => Ok(()),
        Some(version) if spoken.contains(&version) => Ok(()),
        Some(other) => Err(RpcError::new(
            code::VERSION_NOT_SUPPORTED,
            format!(
                "A2A-Version {other:?} is not supported for {method}: this agent speaks 1.0, \
                 and 0.3 under the 0.3 method names"
            ),
        )),
    }
}

async fn send_message(state: &A2aState, caller: &Caller, params: Value) -> Result<Value, RpcError> {
    send(state, caller, jsonrpc::params(params)?).await
}

async fn send(
    state: &A2aState,
    caller: &Caller,
    request: SendMessageRequest,
) -> Result<Value, RpcError> {
    check_length(state, &request)?;
    let configuration = request.configuration.clone();
    let cell = state.server.send(request, caller)?;
    let wait = !configuration
        .as_ref()
        .and_then(|configuration| configuration.return_immediately)
        .unwrap_or(false);
    if wait {
        // Until the task ends, or waits for the client.
        cell.settled().await;
    }
    if let Some(message) = cell.replied() {
        return Ok(
            serde_json::to_value(SendMessageResponse::Message(message.clone())).unwrap_or_default(),
        );
    }
    let mut task = cell.snapshot();
    trim_history(
        &mut task,
        configuration.and_then(|configuration| configuration.history_length),
    );
    Ok(serde_json::to_value(SendMessageResponse::Task(task)).unwrap_or_default())
}

fn send_streaming_message(
    state: &A2aState,
    caller: &Caller,
    id: Value,
    params: Value,
) -> HttpResponse {
    let started = jsonrpc::params::<SendMessageRequest>(params)
        .and_then(|request| check_length(state, &request).map(|()| request))
        .and_then(|request| state.server.send(request, caller).map_err(RpcError::from));
    match started {
        Ok(cell) => stream::events(id, &cell, Dialect::V1, Start::New),
        Err(error) => error_response(&id, &error),
    }
}

fn subscribe_to_task(
    state: &A2aState,
    caller: &Caller,
    id: Value,
    params: Value,
    dialect: Dialect,
) -> HttpResponse {
    let found = jsonrpc::params::<SubscribeToTaskRequest>(params).and_then(|request| {
        state
            .server
            .task(&request.id, caller)
            .map_err(RpcError::from)
    });
    match found {
        Ok(cell) if cell.state().is_terminal() => {
            let error = A2aError::Unsupported(format!(
                "task {} has finished; GetTask answers it",
                cell.snapshot().id
            ));
            error_response(&id, &error.into())
        }
        Ok(cell) => stream::events(id, &cell, dialect, Start::Subscribed),
        Err(error) => error_response(&id, &error),
    }
}

fn get_task(state: &A2aState, caller: &Caller, params: Value) -> Result<Value, RpcError> {
    let request: GetTaskRequest = jsonrpc::params(params)?;
    let mut task = state.server.task(&request.id, caller)?.snapshot();
    trim_history(&mut task, request.history_length);
    Ok(serde_json::to_value(task).unwrap_or_default())
}

async fn cancel_task(state: &A2aState, caller: &Caller, params: Value) -> Result<Value, RpcError> {
    let request: CancelTaskRequest = jsonrpc::params(params)?;
    let task = state.server.cancel(&request.id, caller).await?;
    Ok(serde_json::to_value(task).unwrap_or_default())
}

/// Refuses a question longer than `http.max_message_bytes`.
fn check_length(state: &A2aState, request: &SendMessageRequest) -> Result<(), RpcError> {
    let bytes: usize = request
        .message
        .parts
        .iter()
        .filter_map(|part| part.as_text())
        .map(str::len)
        .sum();
    if bytes > state.max_message_bytes {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            format!(
                "the message's text is {bytes} bytes; the limit is {}",
                state.max_message_bytes
            ),
        ));
    }
    Ok(())
}
