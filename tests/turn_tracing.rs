//! Following one turn through the logs: a gateway and a worker in separate
//! processes around the real RabbitMQ each log a turn inside its `turn` span, so
//! the turn id finds the gateway's and the worker's lines of it, in the
//! human-readable format and in JSON (`PARLOR_LOG_FORMAT=json`). The worker's span
//! also has the `trace_id` of the question's `traceparent`: the turn id's hex.

mod common;

use std::time::Duration;

use common::deployment::{Deployment, mid_answer};
use common::rabbitmq::Cleanup;
use common::{Client, Process, WAIT, expected_answer, mock_llm};
use parlor::protocol::ServerFrame;
use serde_json::Value;
use uuid::Uuid;

/// What the gateway logs of a turn at `info`.
const GATEWAY_LINES: [&str; 2] = ["turn accepted", "turn ended"];
/// What the worker logs of a turn at `info`.
const WORKER_LINES: [&str; 2] = ["worker started the turn", "worker ended the turn"];

/// A gateway and a worker, both logging in the human-readable format.
fn gateway_and_worker(model: Process) -> (Deployment, Process, Process, Cleanup) {
    let (deployment, cleanup) = Deployment::new(model, &[]);
    let (gateway, worker) = (deployment.gateway(), deployment.worker());
    (deployment, gateway, worker, cleanup)
}

/// The lines of `process`'s log inside the turn's `span`, once they include every
/// one of `expected` (at most [`WAIT`]: the worker logs a turn's end after the
/// client has seen it).
async fn lines_in_span(process: &Process, span: &str, expected: &[&str]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lines: Vec<String> = process
            .log()
            .lines()
            .filter(|line| line.contains(span))
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
            "the log never showed {expected:?} in {span}; its log:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The human-readable span of a turn, `turn{session_id=… turn_id=… attempt=N}`,
/// with the worker's `trace_id` after them.
fn span_text(client: &Client, turn_id: Uuid, attempt: u32, in_worker: bool) -> String {
    let session_id = client.session_id;
    let trace = if in_worker {
        format!(" trace_id={}", turn_id.simple())
    } else {
        String::new()
    };
    format!("turn{{session_id={session_id} turn_id={turn_id} attempt={attempt}{trace}}}")
}

/// Checks that `lines` are one for each of `expected`, in order: at `info` a turn
/// logs a few lines, not one per chunk.
fn assert_messages(lines: &[String], expected: &[&str]) {
    let shown = lines.join("\n");
    assert_eq!(
        lines.len(),
        expected.len(),
        "expected {expected:?}:\n{shown}"
    );
    for (line, message) in lines.iter().zip(expected) {
        assert!(line.contains(message), "expected {message:?} in: {line}");
    }
}

/// The JSON lines of `process`'s log, which must all be JSON, whose current span
/// is `turn_id`'s.
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
/// each inside the turn's span, with its session and attempt 1; answers the spans.
fn assert_json_lines(lines: &[Value], expected: &[&str], client: &Client) -> Vec<Value> {
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
    }
    lines.iter().map(|line| line["span"].clone()).collect()
}

#[tokio::test]
async fn a_turn_is_found_in_the_gateway_and_worker_logs_by_its_id() {
    let (_deployment, gateway, worker, _cleanup) = gateway_and_worker(mock_llm(0, 2));
    let mut client = Client::connect(&gateway).await;

    let text = "follow me through the logs";
    let turn = client.chat(text).await;
    assert_eq!(turn.answer, expected_answer(text, 1));
    assert!(turn.chunks > 1, "the turn should have several chunks");

    let gateway_span = span_text(&client, turn.turn_id, 1, false);
    let worker_span = span_text(&client, turn.turn_id, 1, true);
    let gateway_lines = lines_in_span(&gateway, &gateway_span, &GATEWAY_LINES).await;
    let worker_lines = lines_in_span(&worker, &worker_span, &WORKER_LINES).await;
    assert_messages(&gateway_lines, &GATEWAY_LINES);
    assert_messages(&worker_lines, &WORKER_LINES);
    assert!(
        gateway_lines[1].contains("outcome=stop"),
        "{}",
        gateway_lines[1]
    );
    let worker_end = &worker_lines[1];
    assert!(worker_end.contains("outcome=completed"), "{worker_end}");
}

#[tokio::test]
async fn in_json_the_turn_is_in_the_span_fields_of_each_line() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 2), &[]);
    let json = [("PARLOR_LOG_FORMAT", "json".to_owned())];
    let gateway = deployment.gateway_with(&json);
    let worker = deployment.worker_with(&json);
    let mut client = Client::connect(&gateway).await;

    let turn = client.chat("in json please").await;
    assert_eq!(turn.ending, "stop");

    // Wait for the lines by the turn id, which they hold as text too.
    let turn_id = turn.turn_id.to_string();
    lines_in_span(&gateway, &turn_id, &GATEWAY_LINES).await;
    lines_in_span(&worker, &turn_id, &WORKER_LINES).await;
    let gateway_lines = json_lines_of_turn(&gateway, turn.turn_id);
    let worker_lines = json_lines_of_turn(&worker, turn.turn_id);
    assert_json_lines(&gateway_lines, &GATEWAY_LINES, &client);
    let worker_spans = assert_json_lines(&worker_lines, &WORKER_LINES, &client);
    let trace_id = turn.turn_id.simple().to_string();
    for span in worker_spans {
        assert_eq!(span["trace_id"], trace_id.as_str(), "{span}");
    }
    assert_eq!(gateway_lines[1]["fields"]["outcome"], "stop");
    assert_eq!(worker_lines[1]["fields"]["outcome"], "completed");
    assert!(worker_lines[1]["fields"]["duration_ms"].is_f64());
}

#[tokio::test]
async fn a_turn_restarted_on_another_worker_logs_its_new_attempt() {
    let (deployment, gateway, mut first_worker, _cleanup) = gateway_and_worker(mock_llm(0, 50));
    let mut client = Client::connect(&gateway).await;

    let text = "word ".repeat(20);
    let turn_id = mid_answer(&mut client, text.trim()).await;
    // Only now is there a second worker, so the question can only be redelivered.
    let second_worker = deployment.worker();
    first_worker.kill_hard();
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } => continue,
            ServerFrame::Reset { .. } => break,
            other => panic!("expected reset, got {other:?}"),
        }
    }
    assert_eq!(client.read_turn(turn_id).await.ending, "stop");

    let second_span = span_text(&client, turn_id, 2, true);
    let second = lines_in_span(&second_worker, &second_span, &WORKER_LINES).await;
    assert_messages(&second, &WORKER_LINES);
    // The gateway accepted the turn in its first attempt and ended it in its second.
    let first_attempt = span_text(&client, turn_id, 1, false);
    let second_attempt = span_text(&client, turn_id, 2, false);
    let accepted = lines_in_span(&gateway, &first_attempt, &["turn accepted"]).await;
    let ended = lines_in_span(&gateway, &second_attempt, &["turn ended"]).await;
    assert_messages(&accepted, &["turn accepted"]);
    assert_messages(&ended, &["turn ended"]);
}
