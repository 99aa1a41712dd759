//! The tool loop: asks the model, runs the tools it calls, gives it their results,
//! and asks again, until it answers without calling any.
//!
//! A round is one model call that ends in tool calls. The calls of a round run at
//! once, each within the tool timeout; each is shown as a `working` tool event when
//! it starts and a `done` or `error` one when it ends, and the passages they found
//! follow as one `references` event. A call that cannot be made or fails — a tool
//! the turn does not offer, arguments that are not JSON or not the tool's schema,
//! a tool error, a timeout — becomes an error result the model reads, so it can try
//! again or answer without it; the turn goes on. After the last round allowed, the
//! model is asked once more with no tools offered, so it has to answer.
//!
//! The model's answer text and reasoning pass on as they stream. A model error
//! ends the turn with that error. Dropping the stream drops everything the turn
//! was doing, the model's request and running tool calls included.

mod calls;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, FutureExt};
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::llm::{ChatModel, LlmEvent, ModelRequest, PromptMessage, ToolCall, ToolSpec};
use super::tools::Toolbox;
use super::{AgentError, AgentEvent, AgentStream};
use crate::config::AgentConfig;
use crate::conversation::{FinishReason, TurnEvent};

/// Events the turn may run ahead of its reader. Small: the reader is a worker
/// forwarding them at once, and the model's stream is paced by it.
const EVENT_BUFFER: usize = 16;

/// How far a turn may go with tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolLimits {
    /// The longest a tool call may take before it is abandoned as an error.
    pub tool_timeout: Duration,
    /// Model calls that may end in tool calls; the one after them offers no tools.
    pub max_rounds: usize,
}

impl ToolLimits {
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            tool_timeout: config.tool_timeout(),
            max_rounds: config.max_tool_rounds,
        }
    }
}

/// Answers turns with a model and tools.
pub struct ToolLoop<M: ChatModel + ?Sized> {
    model: Arc<M>,
    limits: ToolLimits,
}

impl<M: ChatModel + ?Sized> Clone for ToolLoop<M> {
    fn clone(&self) -> Self {
        Self {
            model: self.model.clone(),
            limits: self.limits,
        }
    }
}

impl<M: ChatModel + ?Sized> ToolLoop<M> {
    pub fn new(model: Arc<M>, limits: ToolLimits) -> Self {
        Self { model, limits }
    }

    /// Streams the answer to `messages`, offering the model `tools`. The stream
    /// ends with the last model call's `Finished`, or with the first model error.
    pub fn answer(&self, messages: Vec<PromptMessage>, tools: Toolbox) -> AgentStream {
        let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
        let turn = Turn {
            model: self.model.clone(),
            limits: self.limits,
            tools,
            messages,
            emit: Emitter(sender),
        };
        // The turn runs inside the stream, polled by its reader: dropping the
        // stream drops the turn. Its own end yields nothing; its events come
        // through the channel, which closes when the turn (its sender) is gone.
        let driver = turn
            .run()
            .into_stream()
            .filter_map(|()| future::ready(None));
        stream::select(ReceiverStream::new(receiver), driver).boxed()
    }
}

/// Hands the turn's events to its stream.
struct Emitter(mpsc::Sender<Result<AgentEvent, AgentError>>);

impl Emitter {
    async fn send(&self, event: Result<AgentEvent, AgentError>) {
        // The receiver lives as long as the stream, which owns this turn: a send
        // can only fail while both are being dropped.
        let _ = self.0.send(event).await;
    }
}

/// One turn in progress.
struct Turn<M: ChatModel + ?Sized> {
    model: Arc<M>,
    limits: ToolLimits,
    tools: Toolbox,
    /// The prompt, growing by each round's tool calls and results.
    messages: Vec<PromptMessage>,
    emit: Emitter,
}

/// What one model call came to.
struct Reply {
    /// The answer text it wrote (already passed on).
    text: String,
    calls: Vec<ToolCall>,
    finish: FinishReason,
}

impl<M: ChatModel + ?Sized> Turn<M> {
    async fn run(mut self) {
        let specs = self.tools.specs();
        let mut rounds = 0;
        loop {
            let offered = if rounds < self.limits.max_rounds {
                specs.clone()
            } else {
                Vec::new()
            };
            let tools_offered = !offered.is_empty();
            let Some(reply) = self.ask(offered).await else {
                return;
            };
            if reply.calls.is_empty() || !tools_offered {
                if !reply.calls.is_empty() {
                    // Offered nothing, it has nothing to call: what it wrote is
                    // its answer.
                    tracing::warn!(
                        calls = reply.calls.len(),
                        "the model called tools it was not offered; they are ignored"
                    );
                }
                self.emit.send(Ok(AgentEvent::Finished(reply.finish))).await;
                return;
            }
            rounds += 1;
            tracing::debug!(
                round = rounds,
                calls = reply.calls.len(),
                "running tool calls"
            );
            let results = calls::run_round(
                &reply.calls,
                &self.tools,
                self.limits.tool_timeout,
                &self.emit,
            )
            .await;
            self.messages.push(PromptMessage::ToolCalls {
                text: reply.text,
                calls: reply.calls,
            });
            self.messages.extend(results);
        }
    }

    /// Streams one model call, passing its text and reasoning on. `None` when it
    /// failed (the error has been passed on).
    async fn ask(&mut self, tools: Vec<ToolSpec>) -> Option<Reply> {
        let mut events = self.model.stream(ModelRequest {
            messages: self.messages.clone(),
            tools,
        });
        let mut text = String::new();
        let mut calls = Vec::new();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(LlmEvent::Delta(delta)) => {
                    text.push_str(&delta);
                    AgentEvent::Text(delta)
                }
                Ok(LlmEvent::Reasoning(text)) => AgentEvent::Event(TurnEvent::Reasoning { text }),
                Ok(LlmEvent::ToolCalls(more)) => {
                    calls.extend(more);
                    continue;
                }
                Ok(LlmEvent::Finished(finish)) => {
                    return Some(Reply {
                        text,
                        calls,
                        finish,
                    });
                }
                Err(error) => {
                    self.emit.send(Err(error)).await;
                    return None;
                }
            };
            self.emit.send(Ok(event)).await;
        }
        self.emit
            .send(Err(AgentError::Upstream(
                "the model's answer ended before it finished".into(),
            )))
            .await;
        None
    }
}
