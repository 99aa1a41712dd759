//! Reading a chat completion's server-sent events: a reader that turns a response
//! body into [`LlmEvent`]s under the first-token and idle timeouts. What a single
//! event means is [`super::chunk`]'s business; putting tool calls together is
//! [`super::tool_calls`]'s.

use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::Stream;
use tokio::time::{Instant, Sleep};

use super::LlmEvent;
use super::chunk::{Chunk, SseItem, parse_event};
use super::tool_calls::ToolCallAssembler;
use crate::agent::AgentError;
use crate::conversation::FinishReason;
use decoder::DecodeError;
pub(crate) use decoder::EventDecoder;
pub(super) use decoder::SseEvent;

/// Turns a response body (a stream of byte chunks) into [`LlmEvent`]s, enforcing the
/// first-token and idle timeouts. Independent of HTTP, so it can be fed canned bytes.
///
/// Answer text and reasoning are yielded as they come. Tool calls are gathered and
/// yielded whole, as one `ToolCalls` event just before `Finished`: a call is only
/// usable once its arguments are complete, and a stream that breaks off does not
/// leave half a call behind.
///
/// The finish reason is reported when `[DONE]` (or the end of the body) follows it,
/// so the body is read to its end and the connection can be reused.
pub(super) struct SseReader<S> {
    events: EventDecoder<Pin<Box<S>>>,
    /// Fires at `deadline`; only re-armed when the reader is about to wait, so a burst
    /// of buffered events costs no timer operations.
    timer: Pin<Box<Sleep>>,
    deadline: Instant,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    /// Whether the model has begun to answer: with text, reasoning or a tool call.
    /// From then on the idle timeout applies instead of the first-token one, so a
    /// model that thinks at length before its first word of answer is not cut off.
    answering: bool,
    finish: Option<FinishReason>,
    tool_calls: ToolCallAssembler,
    /// An event due right after the one just yielded: one event of the server can
    /// mean two of ours (reasoning and text; tool calls and the end).
    queued: Option<Result<LlmEvent, AgentError>>,
    ended: bool,
}

impl<S, B, E> SseReader<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: Display,
{
    /// `first_token_deadline`: when the model must have begun to answer.
    pub(super) fn new(
        body: S,
        first_token_deadline: Instant,
        first_token_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            events: EventDecoder::new(Box::pin(body)),
            timer: Box::pin(tokio::time::sleep_until(first_token_deadline)),
            deadline: first_token_deadline,
            first_token_timeout,
            idle_timeout,
            answering: false,
            finish: None,
            tool_calls: ToolCallAssembler::default(),
            queued: None,
            ended: false,
        }
    }

    /// Takes in one chunk; returns the event it yields now, if any, and queues the
    /// event that must follow it.
    fn take_chunk(&mut self, chunk: Chunk) -> Option<LlmEvent> {
        let Chunk {
            content,
            reasoning,
            tool_calls,
            finish,
        } = chunk;
        if finish.is_some() {
            self.finish = finish;
        }
        let answered = content.is_some() || reasoning.is_some() || !tool_calls.is_empty();
        if answered && !self.answering {
            self.answering = true;
            self.deadline = Instant::now() + self.idle_timeout;
        }
        for fragment in tool_calls {
            self.tool_calls.push(fragment);
        }
        match (reasoning, content) {
            // The thinking came first, so it is reported first.
            (Some(reasoning), Some(text)) => {
                self.queued = Some(Ok(LlmEvent::Delta(text)));
                Some(LlmEvent::Reasoning(reasoning))
            }
            (Some(reasoning), None) => Some(LlmEvent::Reasoning(reasoning)),
            (None, Some(text)) => Some(LlmEvent::Delta(text)),
            (None, None) => None,
        }
    }

    fn end(
        &mut self,
        item: Result<LlmEvent, AgentError>,
    ) -> Poll<Option<Result<LlmEvent, AgentError>>> {
        self.ended = true;
        Poll::Ready(Some(item))
    }

    /// The end of the stream, by `[DONE]` or by the end of the body.
    fn finished(
        &mut self,
        cx: &mut Context<'_>,
        saw_done: bool,
    ) -> Poll<Option<Result<LlmEvent, AgentError>>> {
        if saw_done {
            // The body's terminator usually arrives with `[DONE]`: reading it lets the
            // connection go back to the pool instead of being closed.
            let _ = Pin::new(&mut self.events).poll_next(cx);
        }
        match (self.finish, saw_done) {
            (Some(reason), _) => self.complete(reason),
            (None, true) => self.complete(FinishReason::Stop),
            (None, false) => self.end(Err(AgentError::Upstream(
                "the model's stream ended early (no finish reason, no [DONE])".into(),
            ))),
        }
    }

    /// The answer is complete: its tool calls, if it made any, then `Finished`. Calls
    /// count whatever the finish reason says: some servers say `stop` after them.
    fn complete(&mut self, reason: FinishReason) -> Poll<Option<Result<LlmEvent, AgentError>>> {
        let calls = std::mem::take(&mut self.tool_calls).finish();
        if calls.is_empty() {
            return self.end(Ok(LlmEvent::Finished(reason)));
        }
        self.queued = Some(Ok(LlmEvent::Finished(reason)));
        self.end(Ok(LlmEvent::ToolCalls(calls)))
    }
}

impl<S, B, E> Stream for SseReader<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: Display,
{
    type Item = Result<LlmEvent, AgentError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the event stream and the timer are boxed).
        let this = Pin::into_inner(self);
        if let Some(item) = this.queued.take() {
            return Poll::Ready(Some(item));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.events).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    if this.answering {
                        this.deadline = Instant::now() + this.idle_timeout;
                    }
                    match parse_event(&event) {
                        Ok(SseItem::Done) => return this.finished(cx, true),
                        Ok(SseItem::Chunk(chunk)) => {
                            if let Some(event) = this.take_chunk(chunk) {
                                return Poll::Ready(Some(Ok(event)));
                            }
                        }
                        Err(error) => return this.end(Err(error)),
                    }
                }
                Poll::Ready(Some(Err(DecodeError::Body(error)))) => {
                    return this.end(Err(AgentError::Upstream(format!(
                        "the model's stream broke: {error}"
                    ))));
                }
                Poll::Ready(Some(Err(error @ DecodeError::TooLong))) => {
                    return this.end(Err(AgentError::Upstream(error.to_string())));
                }
                Poll::Ready(None) => return this.finished(cx, false),
                Poll::Pending => {
                    if this.timer.deadline() != this.deadline {
                        this.timer.as_mut().reset(this.deadline);
                    }
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if let Some(reason) = this.finish {
                        // The answer is complete; only `[DONE]` is missing.
                        return this.complete(reason);
                    }
                    let message = if this.answering {
                        format!(
                            "the model went silent for {} ms in the middle of its answer",
                            this.idle_timeout.as_millis()
                        )
                    } else {
                        format!(
                            "no answer token from the model within {} ms",
                            this.first_token_timeout.as_millis()
                        )
                    };
                    return this.end(Err(AgentError::Timeout(message)));
                }
            }
        }
    }
}

mod decoder;

#[cfg(test)]
mod tests;
