//! SIGTERM (docs/protocol.md#stopping): no new turns, running turns finish, then a clean exit.

mod common;

use std::time::Duration;

use common::{Client, expected_answer, mock_llm, serve};
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
        ServerFrame::Error { code, .. } => assert_eq!(code.to_string(), "unavailable"),
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
