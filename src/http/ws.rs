//! `GET /ws`: the WebSocket chat (docs/protocol.md#websocket-chat). A connection is one session;
//! `?session_id=` re-attaches to a live one, or brings a stored one back.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::Addr;
use actix_web::{Error, FromRequest, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;

use super::frame_guard::guard_frames;
use super::{AppState, Found};
use crate::actors::session::{Attach, Opening, SessionActor, SocketInput};
use crate::auth::Caller;

/// Frames above `http.max_message_bytes` get a `too_large` error and the connection
/// stays; only frames beyond this many times the limit (or 1 MiB, if larger) break
/// the WebSocket framing and close it with 1009.
const HARD_FRAME_LIMIT_FACTOR: usize = 4;
const MIN_HARD_FRAME_LIMIT: usize = 1024 * 1024;

/// Tells one connection's frames from another's within a session.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/ws", web::get().to(chat_socket));
}

#[derive(Deserialize)]
struct SocketQuery {
    session_id: Option<String>,
}

/// `caller` comes first: without a valid credential the answer is 401 and the
/// connection is never upgraded.
async fn chat_socket(
    caller: Caller,
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<SocketQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    if !origin_allowed(&request, state.config.http.ws_origins()) {
        // Another site's page must not open a socket with its visitor's browser.
        return Ok(HttpResponse::Forbidden()
            .json(serde_json::json!({ "detail": "this origin may not open a WebSocket" })));
    }
    let hard_limit =
        (state.config.http.max_message_bytes * HARD_FRAME_LIMIT_FACTOR).max(MIN_HARD_FRAME_LIMIT);
    let mut guarded = guard_frames(body, hard_limit);
    let body = web::Payload::from_request(&request, &mut guarded).await?;
    let (response, socket, frames) = actix_ws::handle(&request, body)?;
    let frames = frames
        .max_frame_size(hard_limit)
        .aggregate_continuations()
        .max_continuation_size(hard_limit);

    let connection_id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let asked = query.into_inner().session_id;
    let sessions = state.sessions.clone();
    let peer = request.peer_addr().map(|address| address.ip());
    let client = state.client_key(&caller, peer);
    let found = match state.admit_and_find(asked, &caller, peer).await {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal.response()),
    };
    let opening = match found {
        Found::Live(_, session) => {
            // A re-attached session handles only its own client's frames and
            // answers: its mailbox is all but empty.
            session.do_send(Attach {
                socket,
                connection_id,
                client,
            });
            actix_web::rt::spawn(pass_frames_on(frames, session, connection_id));
            return Ok(response);
        }
        Found::Nothing => Opening::New,
        Found::Unknown(asked) => Opening::Unknown(asked),
        Found::Stored(stored) => Opening::Stored(stored),
    };
    let owner = caller.user_id().map(str::to_owned);
    SessionActor::start_connected(
        sessions,
        socket,
        frames,
        connection_id,
        opening,
        owner,
        client,
    );
    Ok(response)
}

/// Whether the page that opens this WebSocket may: no `Origin` (not a browser),
/// the gateway's own origin, or one of `allowed` (`"*"`: any).
fn origin_allowed(request: &HttpRequest, allowed: &[String]) -> bool {
    let Some(origin) = request.headers().get("Origin") else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = request.connection_info().host().to_owned();
    let same_origin = origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host));
    same_origin
        || allowed
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
}

/// Reads a re-attached client's frames and hands them to its session one at a
/// time, waiting for each to be handled: a client that floods frames is slowed
/// down by TCP rather than filling the session's mailbox.
async fn pass_frames_on(
    mut frames: actix_ws::AggregatedMessageStream,
    session: Addr<SessionActor>,
    connection_id: u64,
) {
    while let Some(item) = frames.next().await {
        let broken = item.is_err();
        if session
            .send(SocketInput::Frame {
                connection_id,
                item,
            })
            .await
            .is_err()
            || broken
        {
            break;
        }
    }
    let _ = session.send(SocketInput::Closed { connection_id }).await;
}
