//! One client cannot take every worker: `session.max_turns_per_client` bounds the
//! turns a client (here an address) runs at once across its sessions, so another
//! client's turn starts at once (docs/security.md).

mod common;

use std::time::Instant;

use common::{Client, expected_answer, mock_llm, serve};
use parlor::conversation::ChatError;
use parlor::protocol::ServerFrame;

#[tokio::test]
async fn a_client_using_many_sessions_leaves_workers_for_others() {
    // 4 workers; a turn takes ~2 s.
    let model = mock_llm(0, 100);
    let server = serve(
        &model,
        &[
            ("PARLOR_WORKERS__COUNT", "4"),
            ("PARLOR_SESSION__MAX_TURNS_PER_CLIENT", "2"),
            // Both clients are on this machine; tell them apart by address.
            ("PARLOR_SESSION__LIMIT_LOOPBACK", "true"),
        ],
    );
    let question = "word ".repeat(20);
    let question = question.trim();

    // The greedy client asks in four sessions at once: two turns run, two are busy.
    let mut running = Vec::new();
    for _ in 0..4 {
        let mut client = Client::connect_from(&server, "127.0.0.1").await;
        client.send_message(question).await;
        match client.next_frame().await {
            ServerFrame::Accepted { turn_id } => running.push((client, turn_id)),
            ServerFrame::Error {
                turn_id: None,
                error: ChatError { code, .. },
            } => assert_eq!(code.to_string(), "busy"),
            other => panic!("expected accepted or busy, got {other:?}"),
        }
    }
    assert_eq!(running.len(), 2, "two turns at once for this client");
    let greedy = running.into_iter().map(|(mut client, turn_id)| {
        tokio::spawn(async move {
            let turn = client.read_turn(turn_id).await;
            (turn, Instant::now())
        })
    });
    let greedy: Vec<_> = greedy.collect();

    // Another client gets a worker at once: its first chunk comes before either of
    // the greedy client's turns has ended.
    let mut other = Client::connect_from(&server, "127.0.0.2").await;
    other.send_message("hello").await;
    let turn_id = other.expect_accepted().await;
    let first_chunk = match other.next_frame().await {
        ServerFrame::Chunk { turn_id: id, .. } if id == turn_id => Instant::now(),
        other => panic!("expected the first chunk, got {other:?}"),
    };
    for task in greedy {
        let (turn, ended) = task.await.unwrap();
        assert_eq!(turn.answer, expected_answer(question, 1));
        assert!(first_chunk < ended, "the other client waited for a worker");
    }
}

#[tokio::test]
async fn post_chat_beyond_the_clients_turns_gets_429_with_retry_after() {
    let model = mock_llm(0, 100);
    let server = serve(
        &model,
        &[
            ("PARLOR_SESSION__MAX_TURNS_PER_CLIENT", "1"),
            ("PARLOR_SESSION__LIMIT_LOOPBACK", "true"),
        ],
    );
    let body =
        |text: &str| serde_json::json!({ "messages": [{ "role": "user", "content": text }] });
    let http = reqwest::Client::new();
    let mut running = http
        .post(server.http("/chat"))
        .json(&body("a slow answer please"))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), 200);
    assert!(
        running.chunk().await.unwrap().is_some(),
        "the answer has begun"
    );

    let refused = http
        .post(server.http("/chat"))
        .json(&body("me too"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
}
