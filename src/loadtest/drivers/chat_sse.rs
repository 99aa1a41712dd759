//! `--mode sse`: the seed-compatible `POST /chat` (SPEC §3). The first turn makes
//! a session; later turns pass its `sessionId` and send only the new message.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::sse_events::EventReader;
use super::{Failure, http_failure, http_status_failure};
use crate::loadtest::probe::TurnProbe;

#[derive(Serialize)]
struct ChatRequest<'a> {
    #[serde(rename = "userId")]
    user_id: &'a str,
    messages: [SeedMessage<'a>; 1],
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
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
    ) -> Result<(), Failure> {
        let request = ChatRequest {
            user_id: probe.token().as_str(),
            messages: [SeedMessage {
                role: "user",
                content: text,
            }],
            session_id: self.session_id.as_deref(),
        };
        let mut response = client
            .post(url)
            .json(&request)
            .send()
            .await
            .map_err(http_failure)?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(http_status_failure(status, &body));
        }
        self.events.clear();
        let ended = loop {
            let Some(bytes) = response.chunk().await.map_err(http_failure)? else {
                break Err(Failure::new("closed", "the stream ended without `end`"));
            };
            self.events
                .push(&bytes)
                .map_err(|_| Failure::new("protocol", "an endless event"))?;
            if let Some(ended) = self.read_events(probe)? {
                break ended;
            }
        };
        // Read the body to its end so the connection goes back to the pool.
        while let Ok(Some(_)) = response.chunk().await {}
        ended
    }

    /// Handles the complete events received so far; `Some` once the turn ended.
    fn read_events(
        &mut self,
        probe: &mut TurnProbe,
    ) -> Result<Option<Result<(), Failure>>, Failure> {
        let ChatSession { session_id, events } = self;
        while let Some(event) = events.next_event() {
            let data: SeedEvent<'_> = serde_json::from_str(&event.data).map_err(|e| {
                Failure::new("protocol", format!("bad event data: {e}: {}", event.data))
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
            if !event.name.is_empty() {
                continue;
            }
            let message = data.message.unwrap_or_default();
            if let Some(reason) = message.strip_prefix("[error] ") {
                return Ok(Some(Err(Failure::new("stream_error", reason))));
            }
            if message.starts_with("[reset] ") {
                probe.reset();
                continue;
            }
            probe.chunk(&message);
        }
        Ok(None)
    }
}
