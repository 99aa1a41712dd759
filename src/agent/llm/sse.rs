//! Reading a chat completion's server-sent events: what each event means, and a
//! reader that turns a response body into [`LlmEvent`]s under the first-token and
//! idle timeouts.

use std::fmt::{self, Display};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use eventsource_stream::{Event, EventStream, Eventsource};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use tokio::time::{Instant, Sleep};

use super::LlmEvent;
use super::error_text::{error_message, excerpt};
use crate::agent::AgentError;
use crate::conversation::FinishReason;

/// What one server-sent event of a chat completion stream means.
#[derive(Debug, PartialEq, Eq)]
enum SseItem {
    /// `data: [DONE]`: the stream is over.
    Done,
    /// A `chat.completion.chunk`: maybe some text, maybe the finish reason.
    Chunk {
        content: Option<String>,
        finish: Option<FinishReason>,
    },
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default, deserialize_with = "first_choice")]
    choices: Option<StreamChoice>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<StreamDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct StreamDelta {
    #[serde(default)]
    content: Option<String>,
}

/// Deserializes only the first element of `choices` (parlor asks for one), so the
/// per-chunk path allocates nothing but the text itself.
fn first_choice<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StreamChoice>, D::Error> {
    struct FirstChoice;

    impl<'de> Visitor<'de> for FirstChoice {
        type Value = Option<StreamChoice>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of choices")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<StreamChoice>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }

    deserializer.deserialize_any(FirstChoice)
}

/// Interprets one event. Role-only, empty and `null` deltas carry no content.
fn parse_event(event: &Event) -> Result<SseItem, AgentError> {
    let data = event.data.trim();
    if event.event == "error" {
        let message = match serde_json::from_str::<serde_json::Value>(data) {
            Ok(value) => error_message(&value),
            Err(_) => data.to_owned(),
        };
        return Err(AgentError::Upstream(format!(
            "the model sent an error: {}",
            excerpt(&message)
        )));
    }
    parse_data(data)
}

/// Interprets the `data` of one event.
fn parse_data(data: &str) -> Result<SseItem, AgentError> {
    if data == "[DONE]" {
        return Ok(SseItem::Done);
    }
    let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
        AgentError::Upstream(format!(
            "the model sent an unreadable event ({e}): {}",
            excerpt(data)
        ))
    })?;
    if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
        return Err(AgentError::Upstream(format!(
            "the model sent an error: {}",
            excerpt(&error_message(&serde_json::json!({ "error": error })))
        )));
    }
    let Some(choice) = chunk.choices else {
        return Ok(SseItem::Chunk {
            content: None,
            finish: None,
        });
    };
    let content = choice
        .delta
        .and_then(|d| d.content)
        .filter(|c| !c.is_empty());
    let finish = match choice.finish_reason.as_deref() {
        None | Some("") => None,
        Some("length") => Some(FinishReason::Length),
        Some(_) => Some(FinishReason::Stop),
    };
    Ok(SseItem::Chunk { content, finish })
}

/// Turns a response body (a stream of byte chunks) into [`LlmEvent`]s, enforcing the
/// first-token and idle timeouts. Independent of HTTP, so it can be fed canned bytes.
///
/// The finish reason is reported when `[DONE]` (or the end of the body) follows it,
/// so the body is read to its end and the connection can be reused.
pub(super) struct SseReader<S> {
    events: Pin<Box<EventStream<S>>>,
    /// Fires at `deadline`; only re-armed when the reader is about to wait, so a burst
    /// of buffered events costs no timer operations.
    timer: Pin<Box<Sleep>>,
    deadline: Instant,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    got_content: bool,
    finish: Option<FinishReason>,
    ended: bool,
}

impl<S, B, E> SseReader<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: Display,
{
    /// `first_token_deadline`: when the first text must have arrived.
    pub(super) fn new(
        body: S,
        first_token_deadline: Instant,
        first_token_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            events: Box::pin(body.eventsource()),
            timer: Box::pin(tokio::time::sleep_until(first_token_deadline)),
            deadline: first_token_deadline,
            first_token_timeout,
            idle_timeout,
            got_content: false,
            finish: None,
            ended: false,
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
            let _ = self.events.as_mut().poll_next(cx);
        }
        match (self.finish, saw_done) {
            (Some(reason), _) => self.end(Ok(LlmEvent::Finished(reason))),
            (None, true) => self.end(Ok(LlmEvent::Finished(FinishReason::Stop))),
            (None, false) => self.end(Err(AgentError::Upstream(
                "the model's stream ended early (no finish reason, no [DONE])".into(),
            ))),
        }
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
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match this.events.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    if this.got_content {
                        this.deadline = Instant::now() + this.idle_timeout;
                    }
                    match parse_event(&event) {
                        Ok(SseItem::Done) => return this.finished(cx, true),
                        Ok(SseItem::Chunk { content, finish }) => {
                            if finish.is_some() {
                                this.finish = finish;
                            }
                            if let Some(text) = content {
                                if !this.got_content {
                                    this.got_content = true;
                                    this.deadline = Instant::now() + this.idle_timeout;
                                }
                                return Poll::Ready(Some(Ok(LlmEvent::Delta(text))));
                            }
                        }
                        Err(error) => return this.end(Err(error)),
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    return this.end(Err(AgentError::Upstream(format!(
                        "the model's stream broke: {error}"
                    ))));
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
                        return this.end(Ok(LlmEvent::Finished(reason)));
                    }
                    let message = if this.got_content {
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use futures_util::stream::{self, StreamExt};

    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(content).unwrap()
        )
    }

    fn finish(reason: &str) -> String {
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{reason}\"}}]}}\n\n"
        )
    }

    const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    /// Runs the reader over `parts` (the network chunks) and collects what it yields.
    async fn read(parts: &[&str]) -> Vec<Result<LlmEvent, AgentError>> {
        let parts: Vec<Result<Bytes, Infallible>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
            .collect();
        SseReader::new(stream::iter(parts), Instant::now() + LONG, LONG, LONG)
            .collect()
            .await
    }

    fn delta(text: &str) -> Result<LlmEvent, AgentError> {
        Ok(LlmEvent::Delta(text.into()))
    }

    const STOP: Result<LlmEvent, AgentError> = Ok(LlmEvent::Finished(FinishReason::Stop));

    #[tokio::test]
    async fn several_events_in_one_network_chunk() {
        let all = [
            ROLE,
            &chunk("Hello "),
            &chunk("world"),
            &finish("stop"),
            DONE,
        ]
        .concat();
        assert_eq!(
            read(&[&all]).await,
            vec![delta("Hello "), delta("world"), STOP]
        );
    }

    #[tokio::test]
    async fn one_event_split_across_chunks() {
        let event = chunk("split \"quoted\" é");
        let (a, b) = event.split_at(20);
        let (b, c) = b.split_at(b.len() - 1);
        let done = [finish("stop"), DONE.into()].concat();
        assert_eq!(
            read(&[a, b, c, &done]).await,
            vec![delta("split \"quoted\" é"), STOP]
        );
    }

    #[tokio::test]
    async fn done_without_finish_reason_is_stop() {
        assert_eq!(read(&[&chunk("hi"), DONE]).await, vec![delta("hi"), STOP]);
    }

    #[tokio::test]
    async fn end_without_done_or_finish_reason_is_an_error() {
        let events = read(&[ROLE, &chunk("hi")]).await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], delta("hi"));
        assert!(
            matches!(&events[1], Err(AgentError::Upstream(m)) if m.contains("ended early")),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn end_after_finish_reason_without_done_is_fine() {
        assert_eq!(
            read(&[&chunk("hi"), &finish("stop")]).await,
            vec![delta("hi"), STOP]
        );
    }

    #[tokio::test]
    async fn role_only_empty_and_null_deltas_are_skipped() {
        let empty = chunk("");
        let null = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}\n\n";
        let no_choices = "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n";
        let events = read(&[ROLE, &empty, null, no_choices, &chunk("x"), DONE]).await;
        assert_eq!(events, vec![delta("x"), STOP]);
    }

    #[tokio::test]
    async fn finish_reason_length() {
        let events = read(&[&chunk("a"), &finish("length"), DONE]).await;
        assert_eq!(
            events,
            vec![delta("a"), Ok(LlmEvent::Finished(FinishReason::Length))]
        );
    }

    #[tokio::test]
    async fn other_finish_reasons_are_stop() {
        let events = read(&[&chunk("a"), &finish("content_filter"), DONE]).await;
        assert_eq!(events, vec![delta("a"), STOP]);
    }

    #[tokio::test]
    async fn content_and_finish_reason_in_one_event() {
        let both = "data: {\"choices\":[{\"delta\":{\"content\":\"end\"},\"finish_reason\":\"length\"}]}\n\n";
        let events = read(&[both, DONE]).await;
        assert_eq!(
            events,
            vec![delta("end"), Ok(LlmEvent::Finished(FinishReason::Length))]
        );
    }

    #[tokio::test]
    async fn error_object_is_upstream() {
        let error = "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
        let events = read(&[&chunk("a"), error, &chunk("never")]).await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            matches!(&events[1], Err(AgentError::Upstream(m)) if m.contains("overloaded")),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn error_event_type_is_upstream() {
        let events = read(&["event: error\ndata: {\"message\":\"boom\"}\n\n"]).await;
        assert!(
            matches!(&events[..], [Err(AgentError::Upstream(m))] if m.contains("boom")),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn unreadable_data_is_upstream() {
        let events = read(&["data: {not json\n\n"]).await;
        assert!(
            matches!(&events[..], [Err(AgentError::Upstream(_))]),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn crlf_line_endings() {
        let crlf = [ROLE, &chunk("a b"), &finish("stop"), DONE]
            .concat()
            .replace('\n', "\r\n");
        // Split between CR and LF too.
        let middle = crlf.find("\r\n").unwrap() + 1;
        let (first, rest) = crlf.split_at(middle);
        assert_eq!(read(&[first, rest]).await, vec![delta("a b"), STOP]);
    }

    #[tokio::test]
    async fn comments_and_keep_alives_are_ignored() {
        let events = read(&[
            ": ping\n\n",
            &chunk("a"),
            ":keep-alive\n\n",
            &chunk("b"),
            DONE,
        ])
        .await;
        assert_eq!(events, vec![delta("a"), delta("b"), STOP]);
    }

    #[tokio::test]
    async fn more_than_one_choice_uses_the_first() {
        let two = "data: {\"choices\":[{\"delta\":{\"content\":\"one\"}},{\"delta\":{\"content\":\"two\"}}]}\n\n";
        assert_eq!(read(&[two, DONE]).await, vec![delta("one"), STOP]);
    }

    #[tokio::test]
    async fn transport_error_is_upstream() {
        let parts: Vec<Result<Bytes, String>> =
            vec![Ok(Bytes::from(chunk("a"))), Err("connection reset".into())];
        let events: Vec<_> = SseReader::new(stream::iter(parts), Instant::now() + LONG, LONG, LONG)
            .collect()
            .await;
        assert_eq!(events[0], delta("a"));
        assert!(
            matches!(&events[1], Err(AgentError::Upstream(m)) if m.contains("connection reset")),
            "{events:?}"
        );
    }

    /// A body that yields `parts` and then stays silent forever.
    fn silent_after(parts: Vec<String>) -> impl Stream<Item = Result<Bytes, Infallible>> {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).chain(stream::pending())
    }

    #[tokio::test]
    async fn first_token_timeout() {
        let body = silent_after(vec![ROLE.into()]);
        let timeout = Duration::from_millis(150);
        let events: Vec<_> = SseReader::new(body, Instant::now() + timeout, timeout, LONG)
            .collect()
            .await;
        assert!(
            matches!(&events[..], [Err(AgentError::Timeout(m))] if m.contains("150 ms")),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn idle_timeout_after_first_token() {
        let body = silent_after(vec![chunk("a"), chunk("b")]);
        let idle = Duration::from_millis(100);
        let start = Instant::now();
        let events: Vec<_> = SseReader::new(body, start + LONG, LONG, idle)
            .collect()
            .await;
        assert_eq!(&events[..2], &[delta("a"), delta("b")]);
        assert!(
            matches!(&events[2..], [Err(AgentError::Timeout(m))] if m.contains("silent")),
            "{events:?}"
        );
        assert!(
            start.elapsed() < LONG,
            "the idle timeout, not the first-token one, fired"
        );
    }

    #[tokio::test]
    async fn missing_done_after_finish_reason_still_finishes() {
        let body = silent_after(vec![chunk("a"), finish("length")]);
        let idle = Duration::from_millis(100);
        let events: Vec<_> = SseReader::new(body, Instant::now() + LONG, LONG, idle)
            .collect()
            .await;
        assert_eq!(
            events,
            vec![delta("a"), Ok(LlmEvent::Finished(FinishReason::Length))]
        );
    }
}
