//! `--mode sse`: the seed-compatible `POST /chat` (docs/protocol.md). The first turn makes
//! a session; later turns pass its `sessionId` and send only the new message.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::sse_events::EventReader;
use super::{EventsRead, TurnFailure, post_for_events};
use crate::probe::TurnProbe;

#[derive(Serialize)]
struct ChatRequest<'a> {
    #[serde(rename = "userId")]
    user_id: &'a str,
    messages: [SeedMessage<'a>; 1],
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    attachment: Attachment,
}

/// `{"tools":[]}`: see [`crate::drivers`] on why turns use no tools.
#[derive(Serialize)]
struct Attachment {
    tools: [&'static str; 0],
}

#[derive(Serialize)]
struct SeedMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// An answer-text event's data (and the `end` event's, which has only the id).
#[derive(Deserialize)]
struct SeedEvent<'a> {
    #[serde(rename = "sessionId", default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    /// 4 for answer text (and reasoning, with an empty `message`); 5 and 6 for
    /// tool status and references, which are not answer text.
    #[serde(rename = "type", default)]
    kind: Option<u32>,
}

#[derive(Default)]
pub struct ChatSession {
    session_id: Option<String>,
    events: EventReader,
}

impl ChatSession {
    pub async fn turn(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        text: &str,
        probe: &mut TurnProbe,
    ) -> Result<(), TurnFailure> {
        let request = ChatRequest {
            user_id: probe.token().as_str(),
            messages: [SeedMessage {
                role: "user",
                content: text,
            }],
            session_id: self.session_id.as_deref(),
            attachment: Attachment { tools: [] },
        };
        let body = serde_json::to_vec(&request).expect("a chat request serializes");
        let ChatSession { session_id, events } = self;
        let unended = "the stream ended without `end`";
        post_for_events(client, url, body, events, unended, |events| {
            read_events(events, session_id, probe)
        })
        .await
    }
}

/// Handles the complete events received so far; `Some` once the turn ended. The
/// first event names the session, which later turns continue.
fn read_events(
    events: &mut EventReader,
    session_id: &mut Option<String>,
    probe: &mut TurnProbe,
) -> EventsRead {
    while let Some(event) = events.next_event() {
        let data: SeedEvent<'_> = serde_json::from_str(&event.data).map_err(|e| {
            TurnFailure::new("protocol", format!("bad event data: {e}: {}", event.data))
        })?;
        match (&data.session_id, session_id.as_deref()) {
            (Some(theirs), None) => *session_id = Some(theirs.to_string()),
            (Some(theirs), Some(ours)) if theirs != ours => {
                // An event of another session in this stream.
                probe.stray_chunk();
                continue;
            }
            _ => {}
        }
        if event.name == "end" {
            return Ok(Some(Ok(())));
        }
        if !event.name.is_empty() || data.kind.is_some_and(|kind| kind != 4) {
            continue;
        }
        let message = data.message.unwrap_or_default();
        if let Some(reason) = message.strip_prefix("[error] ") {
            return Ok(Some(Err(TurnFailure::new("stream_error", reason))));
        }
        if message.starts_with("[reset] ") {
            probe.reset();
            continue;
        }
        probe.chunk(&message);
    }
    Ok(None)
}
