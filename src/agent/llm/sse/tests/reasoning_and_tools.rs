//! The reader with reasoning models and tool calls: what it yields, in which order,
//! and how reasoning and tool-call fragments keep the timeouts at bay.

use futures_util::stream::BoxStream;
use serde_json::json;

use super::*;
use crate::agent::llm::ToolCall;

/// An event whose `delta` is `delta`.
fn with_delta(delta: serde_json::Value) -> String {
    let chunk = json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

fn reasoning_chunk(text: &str) -> String {
    with_delta(json!({"content": null, "reasoning_content": text}))
}

/// An event carrying tool-call fragments.
fn tool_chunk(fragments: serde_json::Value) -> String {
    with_delta(json!({ "tool_calls": fragments }))
}

fn reasoning(text: &str) -> Result<LlmEvent, AgentError> {
    Ok(LlmEvent::Reasoning(text.into()))
}

fn tool_calls(calls: &[(&str, &str, &str)]) -> Result<LlmEvent, AgentError> {
    let calls = calls
        .iter()
        .map(|&(id, name, arguments)| ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
        .collect();
    Ok(LlmEvent::ToolCalls(calls))
}

/// The fragments of one `docs` call with `{"query":"rust"}`, as a model streams them.
fn docs_call_fragments(id: &str) -> [String; 3] {
    [
        tool_chunk(json!([{"index": 0, "id": id, "type": "function",
                           "function": {"name": "docs", "arguments": ""}}])),
        tool_chunk(json!([{"index": 0, "function": {"arguments": "{\"query\":"}}])),
        tool_chunk(json!([{"index": 0, "function": {"arguments": "\"rust\"}"}}])),
    ]
}

/// Upper bound for every wait in the paced tests (on the paused test clock).
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn reasoning_deltas_are_reasoning_not_text() {
    let events = read(&[
        ROLE,
        &reasoning_chunk("Let me "),
        &reasoning_chunk("think."),
        &chunk("Answer."),
        &finish("stop"),
        DONE,
    ])
    .await;
    assert_eq!(
        events,
        vec![
            reasoning("Let me "),
            reasoning("think."),
            delta("Answer."),
            STOP
        ]
    );
}

#[tokio::test]
async fn reasoning_under_its_other_name() {
    let alias = with_delta(json!({"reasoning": "hmm"}));
    let events = read(&[&alias, &chunk("ok"), DONE]).await;
    assert_eq!(events, vec![reasoning("hmm"), delta("ok"), STOP]);
}

#[tokio::test]
async fn reasoning_and_text_in_one_event_come_in_that_order() {
    let both = with_delta(json!({"reasoning_content": "done thinking", "content": "Hi"}));
    let events = read(&[&both, &chunk("!"), DONE]).await;
    assert_eq!(
        events,
        vec![reasoning("done thinking"), delta("Hi"), delta("!"), STOP]
    );
}

#[tokio::test]
async fn tool_calls_across_events_then_finish_reason_tool_calls() {
    // Two calls whose fragments interleave; the second's arguments are cut inside
    // the escape `\"`, which the wire JSON escapes once more.
    let events = read(&[
        ROLE,
        &tool_chunk(json!([{"index": 0, "id": "call_a", "type": "function",
                            "function": {"name": "docs", "arguments": ""}}])),
        &tool_chunk(json!([{"index": 1, "id": "call_b", "type": "function",
                            "function": {"name": "wiki", "arguments": "{\"query\":\"say \\"}}])),
        &tool_chunk(json!([{"index": 0, "function": {"arguments": "{\"query\":\"actors\"}"}}])),
        &tool_chunk(json!([{"index": 1, "function": {"arguments": "\"hi\\\"\"}"}}])),
        &finish("tool_calls"),
        DONE,
    ])
    .await;
    assert_eq!(
        events,
        vec![
            tool_calls(&[
                ("call_a", "docs", r#"{"query":"actors"}"#),
                ("call_b", "wiki", r#"{"query":"say \"hi\""}"#),
            ]),
            STOP
        ]
    );
}

#[tokio::test]
async fn text_and_tool_calls_in_one_answer() {
    let [first, second, third] = docs_call_fragments("call_1");
    let events = read(&[
        &chunk("Let me look."),
        &first,
        &second,
        &third,
        &finish("tool_calls"),
        DONE,
    ])
    .await;
    assert_eq!(
        events,
        vec![
            delta("Let me look."),
            tool_calls(&[("call_1", "docs", r#"{"query":"rust"}"#)]),
            STOP
        ]
    );
}

#[tokio::test]
async fn tool_calls_count_when_the_finish_reason_says_stop() {
    let [first, second, third] = docs_call_fragments("call_1");
    let with_stop = read(&[&first, &second, &third, &finish("stop"), DONE]).await;
    let done_only = read(&[&first, &second, &third, DONE]).await;
    let expected = vec![
        tool_calls(&[("call_1", "docs", r#"{"query":"rust"}"#)]),
        STOP,
    ];
    assert_eq!(with_stop, expected);
    assert_eq!(done_only, expected);
}

#[tokio::test]
async fn tool_calls_of_a_broken_off_stream_are_not_reported() {
    let [first, second, _] = docs_call_fragments("call_1");
    let events = read(&[&first, &second]).await;
    assert!(
        matches!(&events[..], [Err(AgentError::Upstream(m))] if m.contains("ended early")),
        "{events:?}"
    );
}

#[tokio::test]
async fn tool_calls_after_a_finish_reason_without_done() {
    let [first, second, third] = docs_call_fragments("call_1");
    let body = silent_after(vec![first, second, third, finish("tool_calls")]);
    let idle = Duration::from_millis(100);
    let events: Vec<_> = SseReader::new(body, Instant::now() + LONG, LONG, idle)
        .collect()
        .await;
    assert_eq!(
        events,
        vec![
            tool_calls(&[("call_1", "docs", r#"{"query":"rust"}"#)]),
            STOP
        ]
    );
}

/// A body that sends each part after its wait.
fn paced(parts: Vec<(Duration, String)>) -> BoxStream<'static, Result<Bytes, Infallible>> {
    stream::iter(parts)
        .then(|(wait, part)| async move {
            tokio::time::sleep(wait).await;
            Ok(Bytes::from(part))
        })
        .boxed()
}

#[tokio::test(start_paused = true)]
async fn long_reasoning_does_not_hit_the_first_token_timeout() {
    let first_token = Duration::from_millis(150);
    let idle = Duration::from_millis(100);
    let step = Duration::from_millis(60);
    // Ten pieces of reasoning, 600 ms in all, before the first word of the answer.
    let mut parts: Vec<_> = (0..10).map(|_| (step, reasoning_chunk("."))).collect();
    parts.push((step, chunk("Answer")));
    parts.push((step, DONE.to_owned()));
    let reader = SseReader::new(
        paced(parts),
        Instant::now() + first_token,
        first_token,
        idle,
    );
    let events: Vec<_> = tokio::time::timeout(BOUND, reader.collect())
        .await
        .expect("the reader never ended");
    let mut expected = vec![reasoning("."); 10];
    expected.extend([delta("Answer"), STOP]);
    assert_eq!(events, expected);
}

#[tokio::test(start_paused = true)]
async fn silence_after_reasoning_hits_the_idle_timeout() {
    let idle = Duration::from_millis(100);
    let start = Instant::now();
    let reader = SseReader::new(
        silent_after(vec![reasoning_chunk("hmm")]),
        start + LONG,
        LONG,
        idle,
    );
    let events: Vec<_> = tokio::time::timeout(BOUND, reader.collect())
        .await
        .expect("no timeout fired");
    assert_eq!(events[0], reasoning("hmm"));
    assert!(
        matches!(&events[1..], [Err(AgentError::Timeout(m))] if m.contains("silent")),
        "{events:?}"
    );
    assert!(start.elapsed() < LONG);
}

#[tokio::test(start_paused = true)]
async fn silence_after_a_tool_call_fragment_hits_the_idle_timeout() {
    let [first, ..] = docs_call_fragments("call_1");
    let idle = Duration::from_millis(100);
    let start = Instant::now();
    let reader = SseReader::new(silent_after(vec![first]), start + LONG, LONG, idle);
    let events: Vec<_> = tokio::time::timeout(BOUND, reader.collect())
        .await
        .expect("no timeout fired");
    assert!(
        matches!(&events[..], [Err(AgentError::Timeout(m))] if m.contains("silent")),
        "{events:?}"
    );
    assert!(start.elapsed() < LONG);
}
