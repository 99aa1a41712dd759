//! SIGTERM (docs/protocol.md#stopping): no new turns, running turns finish, then a clean exit.

mod common;

use std::time::Duration;

use common::rabbitmq::{Cleanup, URL, message_count, unique_queue, wait_for_message_count};
use common::{Client, Process, WAIT, expected_answer, mock_llm, serve};
use parlor::protocol::ServerFrame;

#[tokio::test]
async fn sigterm_lets_the_running_turn_finish_and_refuses_new_ones() {
    let model = mock_llm(0, 20);
    let mut server = serve(&model, &[]);
    let mut talking = Client::connect(&server).await;
    let mut other = Client::connect(&server).await;

    let text = "word ".repeat(30);
    let text = text.trim();
    talking.send_message(text).await;
    let turn_id = talking.expect_accepted().await;
    let mut answer = match talking.next_frame().await {
        ServerFrame::Chunk { seq: 0, text, .. } => text,
        other => panic!("expected the first chunk, got {other:?}"),
    };
    server.terminate();
    // Let the signal land before asking for more.
    tokio::time::sleep(Duration::from_millis(100)).await;

    other.send_message("too late").await;
    match other.next_frame().await {
        ServerFrame::Error { error, .. } => assert_eq!(error.code.to_string(), "unavailable"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    let readiness = reqwest::get(server.http("/readyz")).await.unwrap();
    assert_eq!(readiness.status(), 503);

    // The running turn still ends normally, complete.
    let turn = talking.read_turn_from(turn_id, 1).await;
    answer.push_str(&turn.answer);
    assert_eq!(turn.ending, "stop");
    assert_eq!(answer, expected_answer(text, 1));

    assert!(
        talking.closed_by_server().await,
        "sockets are closed at the end"
    );
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.expect("parlor exits").success());
}

/// `parlor serve` over RabbitMQ on a question queue of its own.
fn serve_over_rabbitmq(model: &Process, grace_s: &str) -> (Process, String, Cleanup) {
    let queue = unique_queue();
    let settings = [
        ("PARLOR_BROKER__URL", URL),
        ("PARLOR_BROKER__QUESTION_QUEUE", queue.as_str()),
        ("PARLOR_HTTP__SHUTDOWN_GRACE_S", grace_s),
    ];
    let server = serve(model, &settings);
    let cleanup = Cleanup(queue.clone());
    (server, queue, cleanup)
}

/// Sends a long message and waits for its first chunk: the pool is mid-answer.
async fn mid_answer(client: &mut Client, text: &str) -> (uuid::Uuid, String) {
    client.send_message(text).await;
    let turn_id = client.expect_accepted().await;
    match client.next_frame().await {
        ServerFrame::Chunk { seq: 0, text, .. } => (turn_id, text),
        other => panic!("expected the first chunk, got {other:?}"),
    }
}

#[tokio::test]
async fn serve_over_rabbitmq_lets_its_pool_finish_the_running_turn_on_sigterm() {
    let model = mock_llm(0, 20);
    let (mut server, queue, _cleanup) = serve_over_rabbitmq(&model, "30");
    let mut client = Client::connect(&server).await;
    let text = "word ".repeat(30);
    let text = text.trim();
    let (turn_id, mut answer) = mid_answer(&mut client, text).await;

    server.terminate();
    let turn = client.read_turn_from(turn_id, 1).await;
    answer.push_str(&turn.answer);
    assert_eq!(turn.ending, "stop");
    assert_eq!(answer, expected_answer(text, 1));
    assert!(
        client.closed_by_server().await,
        "sockets are closed at the end"
    );
    // Well within the 30 s grace: the drain ends with the turn.
    let status = server.wait_exit(WAIT).expect("parlor exits");
    assert!(status.success());
    assert_eq!(message_count(&queue).await, 0, "the question was answered");
}

#[tokio::test]
async fn serve_over_rabbitmq_gives_back_what_outlasts_the_grace() {
    let model = mock_llm(0, 50);
    let (mut server, queue, _cleanup) = serve_over_rabbitmq(&model, "0");
    let mut client = Client::connect(&server).await;
    mid_answer(&mut client, &"word ".repeat(100)).await;

    server.terminate();
    let status = server.wait_exit(WAIT).expect("parlor exits");
    assert!(status.success());
    assert!(
        server.log().contains("giving unfinished questions back"),
        "{}",
        server.log()
    );
    // The question is back in the queue.
    wait_for_message_count(&queue, 1).await;
}

#[tokio::test]
async fn turns_cut_at_the_end_of_the_grace_get_an_error_before_the_close() {
    let model = mock_llm(0, 50);
    let mut server = serve(&model, &[("PARLOR_HTTP__SHUTDOWN_GRACE_S", "1")]);
    let long = "word ".repeat(100);

    let mut client = Client::connect(&server).await;
    let (turn_id, _) = mid_answer(&mut client, &long).await;
    let body = serde_json::json!({ "messages": [{ "role": "user", "content": long }] });
    let mut stream = reqwest::Client::new()
        .post(server.http("/chat"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, stream.chunk()).await.unwrap();
    assert!(first.unwrap().is_some(), "the answer has begun");

    server.terminate();
    // The WebSocket: the turn's error, then the close (1001).
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } => continue,
            ServerFrame::Error {
                turn_id: Some(id),
                error,
            } => {
                assert_eq!(id, turn_id);
                assert_eq!(error.code.to_string(), "unavailable");
                break;
            }
            other => panic!("expected the turn's error, got {other:?}"),
        }
    }
    assert_eq!(client.close_code().await, Some(1001));
    // POST /chat: `[error]`, then `end`.
    let rest = tokio::time::timeout(WAIT, async {
        let mut rest = Vec::new();
        while let Some(bytes) = stream.chunk().await.unwrap() {
            rest.extend_from_slice(&bytes);
        }
        String::from_utf8(rest).unwrap()
    })
    .await
    .expect("the stream ends");
    let error_at = rest.find("[error] ").expect("an [error] event");
    let end_at = rest.find("event: end").expect("an end event");
    assert!(error_at < end_at, "{rest}");

    let status = server.wait_exit(WAIT).expect("parlor exits");
    assert!(status.success());
}
