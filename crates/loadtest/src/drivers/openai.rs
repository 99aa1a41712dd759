//! `--mode openai`: straight at an OpenAI-compatible server (`POST
//! /chat/completions`, `stream: true`), the client keeping the conversation and
//! resending it every turn — what the model alone costs.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::sse_events::EventReader;
use super::{EventsRead, TurnFailure, post_for_events};
use crate::probe::TurnProbe;

#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    stream: bool,
    messages: Vec<RequestMessage<'a>>,
}

#[derive(Serialize)]
struct RequestMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct CompletionChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Default)]
pub struct OpenaiSession {
    /// The conversation so far: user and assistant texts, alternating.
    history: Vec<(&'static str, String)>,
    events: EventReader,
}

impl OpenaiSession {
    pub async fn turn(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        model: &str,
        text: &str,
        probe: &mut TurnProbe,
    ) -> Result<(), TurnFailure> {
        let mut messages: Vec<RequestMessage<'_>> = self
            .history
            .iter()
            .map(|(role, content)| RequestMessage { role, content })
            .collect();
        messages.push(RequestMessage {
            role: "user",
            content: text,
        });
        let request = CompletionRequest {
            model,
            stream: true,
            messages,
        };
        let body = serde_json::to_vec(&request).expect("a completion request serializes");
        let unended = "the stream ended without [DONE]";
        let ended = post_for_events(client, url, body, &mut self.events, unended, |events| {
            read_events(events, probe)
        })
        .await;
        if ended.is_ok() {
            self.history.push(("user", text.to_owned()));
            let answer = probe.answer().unwrap_or_default().to_owned();
            self.history.push(("assistant", answer));
        }
        ended
    }
}

/// Handles the complete events received so far; `Some` once the answer ended.
fn read_events(events: &mut EventReader, probe: &mut TurnProbe) -> EventsRead {
    while let Some(event) = events.next_event() {
        if event.data == "[DONE]" {
            return Ok(Some(Ok(())));
        }
        let chunk: CompletionChunk<'_> = serde_json::from_str(&event.data)
            .map_err(|e| TurnFailure::new("protocol", format!("bad event: {e}: {}", event.data)))?;
        if let Some(error) = chunk.error {
            return Ok(Some(Err(TurnFailure::new("stream_error", error))));
        }
        for choice in chunk.choices {
            if let Some(content) = choice.delta.and_then(|delta| delta.content)
                && !content.is_empty()
            {
                probe.chunk(&content);
            }
        }
    }
    Ok(None)
}
