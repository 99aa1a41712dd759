//! Following one turn through the logs: a gateway and a worker in separate
//! processes around the real RabbitMQ each log a turn inside its `turn` span, so
//! the turn id finds the gateway's and the worker's lines of it, in the
//! human-readable format and in JSON (`PARLOR_LOG_FORMAT=json`).

mod common;

use std::time::Duration;

use common::rabbitmq::{Cleanup, URL, unique_queue};
use common::{Client, Process, WAIT, expected_answer, mock_llm};
use parlor::protocol::ServerFrame;
use serde_json::Value;
use uuid::Uuid;

/// What the gateway logs of a turn at `info`.
const GATEWAY_LINES: [&str; 2] = ["turn accepted", "turn ended"];
/// What the worker logs of a turn at `info`.
const WORKER_LINES: [&str; 2] = ["worker started the turn", "worker ended the turn"];

/// A gateway and a worker on a question queue of their own; `json` picks each
/// one's log format.
fn deployment(model: &Process, json: [bool; 2]) -> (Process, Process, Cleanup) {
    let cleanup = Cleanup(unique_queue());
    let gateway = Process::start(&["gateway"], &settings(model, &cleanup.0, json[0]));
    let worker = start_worker(model, &cleanup.0, json[1]);
    (gateway, worker, cleanup)
}

fn start_worker(model: &Process, queue: &str, json: bool) -> Process {
    Process::start_until(&["worker"], &settings(model, queue, json), "worker ready")
}

fn settings(model: &Process, queue: &str, json: bool) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("PARLOR_BROKER__URL", URL.to_owned()),
        ("PARLOR_BROKER__QUESTION_QUEUE", queue.to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_WORKER__BIND", "127.0.0.1:0".to_owned()),
    ];
    if json {
        settings.push(("PARLOR_LOG_FORMAT", "json".to_owned()));
    }
    settings
}

/// The lines of `process`'s log that mention `turn_id`, once they include every
/// one of `expected` (at most [`WAIT`]: the worker logs a turn's end after the
/// client has seen it).
async fn lines_of_turn(process: &Process, turn_id: Uuid, expected: &[&str]) -> Vec<String> {
    let turn_id = turn_id.to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lines: Vec<String> = process
            .log()
            .lines()
            .filter(|line| line.contains(&turn_id))
            .map(str::to_owned)
            .collect();
        if expected
            .iter()
            .all(|message| lines.iter().any(|line| line.contains(message)))
        {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log never showed {expected:?} for turn {turn_id}; its lines:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that `lines` are exactly one line for each of `expected`, in order, and
/// that each carries the turn's span: `turn{session_id=… turn_id=… attempt=N}`.
fn assert_span_lines(
    lines: &[String],
    expected: &[&str],
    client: &Client,
    turn_id: Uuid,
    attempt: u32,
) {
    assert_eq!(
        lines.len(),
        expected.len(),
        "at `info` a turn logs only {expected:?} here, not a line per chunk:\n{}",
        lines.join("\n")
    );
    let span = format!(
        "turn{{session_id={} turn_id={turn_id} attempt={attempt}}}",
        client.session_id
    );
    for (line, message) in lines.iter().zip(expected) {
        assert!(line.contains(&span), "no span {span} in: {line}");
        assert!(line.contains(message), "expected {message:?} in: {line}");
    }
}

/// The JSON lines of `process`'s log whose current span is `turn_id`'s.
fn json_lines_of_turn(process: &Process, turn_id: Uuid) -> Vec<Value> {
    let turn_id = turn_id.to_string();
    process
        .log()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
        })
        .filter(|line| line["span"]["turn_id"] == turn_id.as_str())
        .collect()
}

/// Checks that the JSON lines of a turn are one for each of `expected`, in order,
/// each inside the turn's span with its session and attempt 1.
fn assert_json_lines(lines: &[Value], expected: &[&str], client: &Client) {
    let messages: Vec<&str> = lines
        .iter()
        .map(|line| line["fields"]["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(messages, expected, "{lines:#?}");
    for line in lines {
        let span = &line["span"];
        assert_eq!(span["name"], "turn", "{line}");
        assert_eq!(span["session_id"], client.session_id.to_string(), "{line}");
        assert_eq!(span["attempt"], 1, "{line}");
        assert_eq!(
            line["spans"][0], *span,
            "the turn's span is the only one: {line}"
        );
    }
}

#[tokio::test]
async fn a_turn_is_found_in_the_gateway_and_worker_logs_by_its_id() {
    let model = mock_llm(0, 2);
    let (gateway, worker, _cleanup) = deployment(&model, [false, false]);
    let mut client = Client::connect(&gateway).await;

    let text = "follow me through the logs";
    let turn = client.chat(text).await;
    assert_eq!(turn.answer, expected_answer(text, 1));
    assert!(turn.chunks > 1, "the turn should have several chunks");

    let gateway_lines = lines_of_turn(&gateway, turn.turn_id, &GATEWAY_LINES).await;
    let worker_lines = lines_of_turn(&worker, turn.turn_id, &WORKER_LINES).await;
    assert_span_lines(&gateway_lines, &GATEWAY_LINES, &client, turn.turn_id, 1);
    assert_span_lines(&worker_lines, &WORKER_LINES, &client, turn.turn_id, 1);
    assert!(
        gateway_lines[1].contains("outcome=stop"),
        "{}",
        gateway_lines[1]
    );
    assert!(
        worker_lines[1].contains("outcome=completed"),
        "{}",
        worker_lines[1]
    );
}

#[tokio::test]
async fn in_json_the_turn_is_in_the_span_fields_of_each_line() {
    let model = mock_llm(0, 2);
    let (gateway, worker, _cleanup) = deployment(&model, [true, true]);
    let mut client = Client::connect(&gateway).await;

    let turn = client.chat("in json please").await;
    assert_eq!(turn.ending, "stop");

    lines_of_turn(&gateway, turn.turn_id, &GATEWAY_LINES).await;
    lines_of_turn(&worker, turn.turn_id, &WORKER_LINES).await;
    let gateway_lines = json_lines_of_turn(&gateway, turn.turn_id);
    let worker_lines = json_lines_of_turn(&worker, turn.turn_id);
    assert_json_lines(&gateway_lines, &GATEWAY_LINES, &client);
    assert_json_lines(&worker_lines, &WORKER_LINES, &client);
    assert_eq!(gateway_lines[1]["fields"]["outcome"], "stop");
    assert_eq!(worker_lines[1]["fields"]["outcome"], "completed");
    assert!(worker_lines[1]["fields"]["duration_ms"].is_f64());
}

#[tokio::test]
async fn a_turn_restarted_on_another_worker_logs_its_new_attempt() {
    let model = mock_llm(0, 50);
    let (gateway, mut first_worker, cleanup) = deployment(&model, [false, false]);
    let mut client = Client::connect(&gateway).await;

    let text = "word ".repeat(20);
    let text = text.trim();
    let turn_id = client.chat_accepted(text).await;
    assert!(matches!(
        client.next_frame().await,
        ServerFrame::Chunk { seq: 0, .. }
    ));
    // Only now is there a second worker, so the question can only be redelivered.
    let second_worker = start_worker(&model, &cleanup.0, false);
    first_worker.kill_hard();
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } => continue,
            ServerFrame::Reset { .. } => break,
            other => panic!("expected reset, got {other:?}"),
        }
    }
    assert_eq!(client.read_turn(turn_id).await.ending, "stop");

    let second = lines_of_turn(&second_worker, turn_id, &WORKER_LINES).await;
    assert_span_lines(&second, &WORKER_LINES, &client, turn_id, 2);
    let gateway_lines = lines_of_turn(&gateway, turn_id, &GATEWAY_LINES).await;
    let (accepted, ended) = (&gateway_lines[0], gateway_lines.last().unwrap());
    assert!(accepted.contains("attempt=1}"), "{accepted}");
    assert!(
        ended.contains("attempt=2}") && ended.contains("turn ended"),
        "the gateway's end of the turn belongs to its second attempt: {ended}"
    );
}
