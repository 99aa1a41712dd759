//! `POST /chat`: the original design's SSE chat API (docs/protocol.md#http-chat), wire-compatible so
//! its web frontend works unchanged.

use actix_cors::Cors;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_stream::wrappers::UnboundedReceiverStream;
use uuid::Uuid;

mod seed_json;

use super::health::Readiness;
use super::{AppState, Found};
use crate::actors::session::{SessionActor, StartTurn};
use crate::auth::Caller;
use crate::conversation::{ChatMessage, ErrorCode, UserMessage};
use crate::protocol::ServerFrame;

/// The seed protocol's `functionId`, and the `type`s of its events: answer text
/// (and reasoning), tool status, references.
const FUNCTION_ID: u32 = 8;
const ANSWER_TEXT_TYPE: u32 = 4;
const TOOL_STATUS_TYPE: u32 = 5;
const REFERENCES_TYPE: u32 = 6;
/// A request carries the conversation so far, so it may be this many times larger
/// than one message.
const BODY_LIMIT_FACTOR: usize = 64;

pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    let body_limit = state
        .config
        .http
        .max_message_bytes
        .saturating_mul(BODY_LIMIT_FACTOR);
    config.service(
        web::resource("/chat")
            .app_data(web::PayloadConfig::new(body_limit))
            .wrap(cors(&state.config.http.cors_origins))
            .route(web::post().to(chat)),
    );
}

/// CORS for the browser-facing routes, per `http.cors_origins`.
pub fn cors(origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allow_any_header()
        .max_age(3600);
    if origins.iter().any(|origin| origin == "*") {
        cors.allow_any_origin()
    } else {
        origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatRequest {
    user_id: Option<String>,
    messages: Vec<SeedMessage>,
    session_id: Option<String>,
    /// Free-form in the seed protocol; parlor reads its `tools`.
    #[serde(default)]
    attachment: serde_json::Value,
    // Other fields of the seed protocol (`functionId`, ...) are accepted and unused.
}

/// The tools `attachment.tools` chooses (absent: all), or why it is not a choice.
fn chosen_tools(attachment: &serde_json::Value) -> Result<Option<Vec<String>>, String> {
    match attachment.get("tools") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(tools) => serde_json::from_value(tools.clone())
            .map(Some)
            .map_err(|_| "attachment.tools must be a list of tool ids".to_owned()),
    }
}

#[derive(Deserialize)]
struct SeedMessage {
    role: String,
    content: String,
}

fn refuse(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if status == StatusCode::TOO_MANY_REQUESTS {
        // A turn or a queue slot frees up within a turn's time: try again soon.
        response.insert_header((RETRY_AFTER, "1"));
    }
    response.json(json!({ "detail": detail.into() }))
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Busy => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BadRequest | ErrorCode::NotFound => StatusCode::BAD_REQUEST,
        ErrorCode::Unavailable | ErrorCode::Upstream | ErrorCode::Timeout => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Splits the seed's message list into the earlier conversation and the new user
/// message, or says what is wrong with it.
fn split_conversation(
    messages: Vec<SeedMessage>,
    allow_system: bool,
) -> Result<(Vec<ChatMessage>, String), (StatusCode, String)> {
    let mut conversation = Vec::with_capacity(messages.len());
    for message in messages {
        conversation.push(match message.role.as_str() {
            "user" => ChatMessage::user(message.content),
            "ai" | "assistant" => ChatMessage::assistant(message.content),
            "system" if allow_system => ChatMessage::system(message.content),
            "system" => {
                let problem = "system messages are not accepted: the instructions are the server's";
                return Err((StatusCode::BAD_REQUEST, problem.into()));
            }
            other => {
                let problem = format!("unknown role {other:?} (expected user, ai or assistant)");
                return Err((StatusCode::BAD_REQUEST, problem));
            }
        });
    }
    match conversation.pop() {
        None => Err((
            StatusCode::BAD_REQUEST,
            "Messages list cannot be empty.".into(),
        )),
        Some(last) if last.role != crate::conversation::Role::User => Err((
            StatusCode::BAD_REQUEST,
            "the last message must be the user's".into(),
        )),
        Some(last) if last.content.trim().is_empty() => Err((
            StatusCode::BAD_REQUEST,
            "the last user message is empty".into(),
        )),
        Some(last) => Ok((conversation, last.content)),
    }
}

/// `caller` comes first, so a request without a valid credential is answered 401
/// before its body is even read.
async fn chat(
    caller: Caller,
    http_request: HttpRequest,
    body: Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("Invalid JSON payload: {error}"),
            );
        }
    };
    // Authenticated, the user is who the credential says, whatever the body says.
    let named_user = match caller.user_id() {
        Some(user) => Some(user.to_owned()),
        None => request.user_id,
    };
    let user_id = named_user.clone().unwrap_or_else(|| "anonymous".into());
    let tools = match chosen_tools(&request.attachment) {
        Ok(tools) => tools,
        Err(problem) => return refuse(StatusCode::BAD_REQUEST, problem),
    };
    if let Err(refusal) = state.sessions.tools.check(tools.as_deref()) {
        return refuse(StatusCode::BAD_REQUEST, refusal.message);
    }
    let allow_system = state.config.http.allow_client_system_messages;
    let (history, text) = match split_conversation(request.messages, allow_system) {
        Ok(split) => split,
        Err((status, detail)) => return refuse(status, detail),
    };
    let limit = state.config.http.max_message_bytes;
    if text.len() > limit {
        let detail = format!(
            "message of {} bytes exceeds the limit of {limit}",
            text.len()
        );
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, detail);
    }
    if let Some(reason) = state.not_ready_because() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, reason);
    }

    // A known session remembers the conversation; otherwise the request carries it.
    let peer = http_request.peer_addr().map(|address| address.ip());
    let found = match state
        .admit_and_find(request.session_id, &caller, peer)
        .await
    {
        Ok(found) => found,
        Err(refusal) => return refusal.response(),
    };
    let (session_id, session) = match found {
        Found::Live(session_id, session) => (session_id, session),
        Found::Stored(stored) => (
            stored.record.id,
            SessionActor::restore(state.sessions.clone(), stored),
        ),
        Found::Nothing | Found::Unknown(_) => {
            SessionActor::start_for(state.sessions.clone(), history, named_user)
        }
    };

    let (listener, frames) = tokio::sync::mpsc::unbounded_channel();
    let message = UserMessage { text, tools };
    let client = state.client_key(&caller, peer);
    match session
        .send(StartTurn {
            message,
            listener,
            client,
        })
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(refusal)) => return refuse(status_for(refusal.code), refusal.message),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the session ended"),
    }
    let mut frames = UnboundedReceiverStream::new(frames);
    // Wait until the question is published, so overload and outages are still
    // answered with a status code rather than inside the stream.
    let first = match frames.next().await {
        Some(ServerFrame::Error { error, .. })
            if matches!(error.code, ErrorCode::Busy | ErrorCode::Unavailable) =>
        {
            return refuse(status_for(error.code), error.message);
        }
        Some(ServerFrame::Accepted { .. }) | None => None,
        Some(frame) => Some(frame),
    };
    let frames = futures_util::stream::iter(first).chain(frames);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(seed_events(frames, session_id, user_id))
}

/// Turns a turn's frames into the seed protocol's SSE events, ending right after
/// the turn's `done` or `error` (the frame channel itself may stay open).
fn seed_events(
    frames: impl Stream<Item = ServerFrame> + Unpin + 'static,
    session_id: Uuid,
    user_id: String,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let encoder = SeedEncoder {
        session_id,
        user_id,
    };
    futures_util::stream::unfold(Some((frames, encoder)), |state| async move {
        let (mut frames, encoder) = state?;
        loop {
            let (event, last) = encoder.encode(frames.next().await);
            if let Some(event) = event {
                let rest = (!last).then_some((frames, encoder));
                return Some((Ok(Bytes::from(event)), rest));
            }
        }
    })
}

/// The data of a seed event, its fields in the seed gateway's order (a struct
/// rather than a JSON map, too, as it is written once per chunk).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeedEvent<'a> {
    session_id: Uuid,
    user_id: &'a str,
    function_id: u32,
    message: &'a str,
    reasoning_message: &'a str,
    #[serde(rename = "type")]
    kind: u32,
}

/// Writes the seed protocol's events for one session and user.
struct SeedEncoder {
    session_id: Uuid,
    user_id: String,
}

impl SeedEncoder {
    fn event(&self, kind: u32, message: &str, reasoning_message: &str) -> String {
        let data = SeedEvent {
            session_id: self.session_id,
            user_id: &self.user_id,
            function_id: FUNCTION_ID,
            message,
            reasoning_message,
            kind,
        };
        let data = serde_json::to_string(&data).expect("seed events always serialize");
        format!("data: {data}\n\n")
    }

    fn text(&self, message: &str) -> String {
        self.event(ANSWER_TEXT_TYPE, message, "")
    }

    fn end(&self) -> String {
        format!(
            "event: end\ndata: {}\n\n",
            json!({ "sessionId": self.session_id })
        )
    }

    /// The event text for one frame (if it has one), and whether the stream ends.
    fn encode(&self, frame: Option<ServerFrame>) -> (Option<String>, bool) {
        match frame {
            Some(ServerFrame::Chunk { text, .. }) => (Some(self.text(&text)), false),
            Some(ServerFrame::Tool { activity, .. }) => {
                let status = seed_json::tool_status(&activity).to_string();
                (Some(self.event(TOOL_STATUS_TYPE, &status, "")), false)
            }
            Some(ServerFrame::References { sources, .. }) => {
                let references = seed_json::references(&sources).to_string();
                (Some(self.event(REFERENCES_TYPE, &references, "")), false)
            }
            Some(ServerFrame::Reasoning { text, .. }) => {
                (Some(self.event(ANSWER_TEXT_TYPE, "", &text)), false)
            }
            Some(ServerFrame::Reset { reason, .. }) => {
                (Some(self.text(&format!("[reset] {reason}\n"))), false)
            }
            Some(ServerFrame::Done { .. }) => (Some(self.end()), true),
            Some(ServerFrame::Error { error, .. }) => (
                Some(self.text(&format!("[error] {}", error.message)) + &self.end()),
                true,
            ),
            Some(_) => (None, false),
            None => {
                let message = "[error] the answer stream ended unexpectedly";
                (Some(self.text(message) + &self.end()), true)
            }
        }
    }
}
