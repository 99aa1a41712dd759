//! Bad input and failing models over the WebSocket: each gets the error code of
//! docs/protocol.md#error-codes, and the connection keeps serving.

mod common;

use common::{Client, Process, expected_answer, mock_llm, serve};
use parlor::conversation::ChatError;
use parlor::protocol::ServerFrame;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Reads the next frame, expecting an error with `code` (and no turn id).
async fn expect_error(client: &mut Client, code: &str) {
    match client.next_frame().await {
        ServerFrame::Error {
            error: ChatError { code: got, .. },
            turn_id: None,
            ..
        } => assert_eq!(got.to_string(), code),
        other => panic!("expected error {code}, got {other:?}"),
    }
}

/// The connection still answers a full turn.
async fn still_serves(client: &mut Client, turn: usize) {
    assert_eq!(
        client.chat("still here").await.answer,
        expected_answer("still here", turn)
    );
}

fn server_with_model() -> (Process, Process) {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_HTTP__MAX_MESSAGE_BYTES", "1024")]);
    (model, server)
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays() {
    let (_model, server) = server_with_model();
    let mut client = Client::connect(&server).await;

    client.send_text("this is not json").await;
    expect_error(&mut client, "bad_request").await;
    client
        .send_json(json!({ "type": "shout", "text": "hi" }))
        .await;
    expect_error(&mut client, "bad_request").await;
    client
        .send_json(json!({ "type": "message", "text": "" }))
        .await;
    expect_error(&mut client, "bad_request").await;
    client.send_json(json!({ "type": "message" })).await;
    expect_error(&mut client, "bad_request").await;
    client.send_raw(Message::binary(vec![1, 2, 3])).await;
    expect_error(&mut client, "bad_request").await;

    still_serves(&mut client, 1).await;
}

#[tokio::test]
async fn oversized_messages_get_too_large_and_the_connection_stays() {
    let (_model, server) = server_with_model();
    let mut client = Client::connect(&server).await;

    client.send_message(&"x".repeat(2000)).await;
    expect_error(&mut client, "too_large").await;

    still_serves(&mut client, 1).await;
}

#[tokio::test]
async fn frames_beyond_the_hard_limit_close_the_connection() {
    let (_model, server) = server_with_model();
    let mut client = Client::connect(&server).await;

    client.send_message(&"x".repeat(2 * 1024 * 1024)).await;
    assert!(client.closed_by_server().await);

    // The server itself keeps serving.
    let mut other = Client::connect(&server).await;
    still_serves(&mut other, 1).await;
}

#[tokio::test]
async fn broken_frames_close_with_the_rfc_6455_codes() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let (_model, server) = server_with_model();

    // Text that is not UTF-8: 1007.
    let mut client = Client::connect(&server).await;
    let not_utf8 = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    client.send_raw(Message::Frame(not_utf8)).await;
    assert_eq!(client.close_code().await, Some(1007));

    // A message beyond the hard limit (1 MiB here) in continuation frames of 512 KiB
    // each, none of them too big alone: 1009 once the third arrives.
    let mut client = Client::connect(&server).await;
    let piece = vec![b'x'; 512 * 1024];
    let first = Frame::message(piece.clone(), OpCode::Data(Data::Text), false);
    client.send_raw(Message::Frame(first)).await;
    for _ in 0..2 {
        let more = Frame::message(piece.clone(), OpCode::Data(Data::Continue), false);
        client.send_raw(Message::Frame(more)).await;
    }
    assert_eq!(client.close_code().await, Some(1009));

    let mut other = Client::connect(&server).await;
    still_serves(&mut other, 1).await;
}

#[tokio::test]
async fn a_failing_model_gives_upstream() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_LLM__RETRY_BACKOFF_MS", "10")]);
    let mut client = Client::connect(&server).await;

    let turn = client.chat("please fail [mock:status=500]").await;
    assert_eq!(turn.ending, "upstream");
    // The user gets a short message and an error id; the model's address and what
    // it answered are in the log only, under that id.
    let message = turn.error.expect("an error frame").message;
    let error_id = message
        .split("error id ")
        .nth(1)
        .map(|rest| rest.trim_end_matches(')'))
        .expect("an error id in the message");
    for internal in [model.addr.as_str(), "mock failure", "500", "http"] {
        assert!(!message.contains(internal), "{internal:?} in {message:?}");
    }
    let logged = server.wait_for_log_line(error_id).await;
    assert!(logged.contains("mock failure"), "{logged}");
    let requests = common::mock_stats(&model).await["requests"]
        .as_u64()
        .unwrap();
    assert_eq!(requests, 3, "the first try and llm.max_retries (2) retries");

    // A failed turn is not part of the conversation.
    still_serves(&mut client, 1).await;
}

#[tokio::test]
async fn a_hanging_model_gives_timeout() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_LLM__FIRST_TOKEN_TIMEOUT_MS", "500")]);
    let mut client = Client::connect(&server).await;

    let turn = client.chat("hang [mock:hang]").await;
    assert_eq!(turn.ending, "timeout");

    still_serves(&mut client, 1).await;
}

#[tokio::test]
async fn an_unreachable_model_gives_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let model_url = format!("http://127.0.0.1:{port}/v1");
    let server = Process::start(
        &["serve"],
        &[
            ("PARLOR_HTTP__BIND", "127.0.0.1:0".into()),
            ("PARLOR_LLM__BASE_URL", model_url),
            ("PARLOR_LLM__RETRY_BACKOFF_MS", "10".into()),
        ],
    );
    let mut client = Client::connect(&server).await;

    let turn = client.chat("anyone?").await;
    assert_eq!(turn.ending, "unavailable");
}
