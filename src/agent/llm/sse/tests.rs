//! The reader's tests: framing, how a stream ends, and timeouts. Reasoning and
//! tool calls have theirs in `reasoning_and_tools`.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::*;

mod reasoning_and_tools;

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
async fn content_and_finish_reason_in_one_event() {
    let both =
        "data: {\"choices\":[{\"delta\":{\"content\":\"end\"},\"finish_reason\":\"length\"}]}\n\n";
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
