//! The WebSocket chat of docs/protocol.md#websocket-chat against a real `parlor serve` and a real mock model.

mod common;

use common::{Client, expected_answer, mock_llm, serve, wait_for_mock};
use parlor::conversation::{ChatError, Role};
use parlor::protocol::{HistoryEntry, ServerFrame};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn one_turn_streams_the_models_answer() {
    // A paced model: each word arrives, and goes out, on its own.
    let model = mock_llm(0, 5);
    let server = serve(&model, &[]);
    let mut client = Client::connect(&server).await;

    let turn = client.chat("hello there").await;

    assert_eq!(turn.ending, "stop");
    assert_eq!(turn.answer, expected_answer("hello there", 1));
    assert_eq!(turn.chunks, 6, "one chunk per word");
}

#[tokio::test]
async fn a_chunk_window_joins_the_words_that_arrive_within_it() {
    let model = mock_llm(0, 5);
    let server = serve(&model, &[("PARLOR_WORKERS__CHUNK_WINDOW_MS", "500")]);
    let mut client = Client::connect(&server).await;

    let turn = client.chat("hello there").await;

    assert_eq!(turn.answer, expected_answer("hello there", 1));
    assert_eq!(
        turn.chunks, 1,
        "six words 5 ms apart fit in one 500 ms window"
    );
}

#[tokio::test]
async fn the_agent_remembers_earlier_turns() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);
    let mut client = Client::connect(&server).await;

    for (turn, text) in ["first", "second", "third"].iter().enumerate() {
        let answer = client.chat(text).await.answer;
        assert_eq!(answer, expected_answer(text, turn + 1));
    }
}

#[tokio::test]
async fn concurrent_sessions_get_only_their_own_answers() {
    let model = mock_llm(5, 2);
    let server = serve(&model, &[]);
    let sessions = (0..50).map(|i| {
        let url = server.ws_url("");
        tokio::spawn(async move {
            let mut client = Client::connect_url(&url).await;
            let token = format!("session-{i}-{}", client.session_id);
            for turn in 1..=2 {
                let text = format!("{token} turn {turn}");
                // `chat` fails on any frame of another turn; the text proves whose it is.
                let answer = client.chat(&text).await.answer;
                assert_eq!(answer, expected_answer(&text, turn));
            }
        })
    });
    for session in futures_util::future::join_all(sessions).await {
        session.expect("a session failed");
    }
}

#[tokio::test]
async fn messages_sent_during_a_turn_are_answered_in_order() {
    let model = mock_llm(20, 5);
    let server = serve(&model, &[]);
    let mut client = Client::connect(&server).await;

    for text in ["one", "two", "three"] {
        client.send_message(text).await;
    }
    let mut turn_ids = Vec::new();
    for _ in 0..3 {
        turn_ids.push(client.expect_accepted().await);
    }
    for (index, text) in ["one", "two", "three"].iter().enumerate() {
        let turn = client.read_turn(turn_ids[index]).await;
        assert_eq!(turn.answer, expected_answer(text, index + 1));
    }
}

#[tokio::test]
async fn too_many_queued_messages_get_busy() {
    let model = mock_llm(200, 50);
    let server = serve(&model, &[("PARLOR_SESSION__MAX_QUEUED_TURNS", "1")]);
    let mut client = Client::connect(&server).await;

    client.send_message("running").await;
    let running = client.expect_accepted().await;
    client.send_message("queued").await;
    let queued = client.expect_accepted().await;
    client.send_message("one too many").await;
    match client.next_frame().await {
        ServerFrame::Error {
            error: ChatError { code, .. },
            turn_id: None,
            ..
        } => assert_eq!(code.to_string(), "busy"),
        other => panic!("expected busy, got {other:?}"),
    }
    assert_eq!(
        client.read_turn(running).await.answer,
        expected_answer("running", 1)
    );
    assert_eq!(
        client.read_turn(queued).await.answer,
        expected_answer("queued", 2)
    );
}

#[tokio::test]
async fn cancel_stops_the_model_and_ends_the_turn() {
    let model = mock_llm(0, 100);
    let server = serve(&model, &[]);
    let mut client = Client::connect(&server).await;

    let long_text = "word ".repeat(100);
    client.send_message(long_text.trim()).await;
    let turn_id = client.expect_accepted().await;
    assert!(matches!(
        client.next_frame().await,
        ServerFrame::Chunk { seq: 0, .. }
    ));
    client.send_json(json!({ "type": "cancel" })).await;
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } => continue, // already on its way
            ServerFrame::Done {
                turn_id: id,
                finish_reason,
            } => {
                assert_eq!(id, turn_id);
                assert_eq!(finish_reason, parlor::conversation::FinishReason::Cancelled);
                break;
            }
            other => panic!("expected done/cancelled, got {other:?}"),
        }
    }
    wait_for_mock(&model, "the stream cut off", |stats| {
        stats["streams_cancelled"] == 1
    })
    .await;
    assert_eq!(model_stats_completed(&model).await, 0);

    // The session goes on: the cancelled turn is part of the conversation.
    let next = client.chat("after").await;
    assert_eq!(next.answer, expected_answer("after", 2));
}

#[tokio::test]
async fn with_cancel_on_disconnect_a_closed_socket_stops_the_model() {
    let model = mock_llm(0, 100);
    let server = serve(&model, &[("PARLOR_SESSION__CANCEL_ON_DISCONNECT", "true")]);
    let mut client = Client::connect(&server).await;

    client.send_message(&"word ".repeat(100)).await;
    client.expect_accepted().await;
    assert!(matches!(
        client.next_frame().await,
        ServerFrame::Chunk { .. }
    ));
    client.close().await;

    wait_for_mock(&model, "the stream cut off", |stats| {
        stats["streams_cancelled"] == 1
    })
    .await;
}

async fn model_stats_completed(model: &common::Process) -> u64 {
    common::mock_stats(model).await["streams_completed"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_session_can_be_reattached_with_its_memory() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);
    let mut first = Client::connect(&server).await;
    let session_id = first.session_id;
    assert_eq!(
        first.chat("remember me").await.answer,
        expected_answer("remember me", 1)
    );
    first.close().await;

    let mut again = Client::connect_url(&server.ws_url(&format!("?session_id={session_id}"))).await;
    assert_eq!(again.session_id, session_id);
    let history = again.expect_history().await;
    let said: Vec<(Role, &str)> = history
        .iter()
        .map(|entry| (entry.role, entry.content.as_str()))
        .collect();
    let answer = expected_answer("remember me", 1);
    assert_eq!(
        said,
        [
            (Role::User, "remember me"),
            (Role::Assistant, answer.as_str())
        ]
    );
    assert_eq!(
        again.chat("still there?").await.answer,
        expected_answer("still there?", 2)
    );
}

/// How the `history` frame shows the question of the turn still running.
fn running_question(text: &str, turn_id: Uuid) -> HistoryEntry {
    HistoryEntry {
        role: Role::User,
        content: text.to_owned(),
        turn_id: Some(turn_id),
    }
}

#[tokio::test]
async fn a_turn_outlives_its_socket_and_a_returning_client_sees_it_from_the_start() {
    let model = mock_llm(0, 20);
    let server = serve(&model, &[]);
    let mut first = Client::connect(&server).await;
    let session_id = first.session_id;
    let text = "word ".repeat(40);
    let text = text.trim();
    let turn_id = first.chat_accepted(text).await;
    assert!(matches!(
        first.next_frame().await,
        ServerFrame::Chunk { seq: 0, .. }
    ));
    first.close().await;

    // Back mid-answer: the history so far (the running turn's question last), then
    // the running turn from seq 0.
    let mut again = Client::connect_url(&server.ws_url(&format!("?session_id={session_id}"))).await;
    assert_eq!(
        again.expect_history().await,
        [running_question(text, turn_id)]
    );
    assert_eq!(again.expect_accepted().await, turn_id);
    let turn = again.read_turn(turn_id).await;
    assert_eq!(turn.ending, "stop");
    assert_eq!(turn.answer, expected_answer(text, 1));

    let stats = common::mock_stats(&model).await;
    assert_eq!(stats["requests"], 1, "the turn was asked once: {stats}");
    assert_eq!(stats["streams_cancelled"], 0, "the model was never cut off");
}

#[tokio::test]
async fn a_turn_that_ends_while_nobody_is_connected_is_in_the_history() {
    let model = mock_llm(0, 5);
    let server = serve(&model, &[]);
    let mut first = Client::connect(&server).await;
    let session_id = first.session_id;
    first.chat_accepted("are you still there").await;
    first.close().await;
    wait_for_mock(&model, "the answer finished", |stats| {
        stats["streams_completed"] == 1
    })
    .await;

    // The answer leaves the model before the session takes it in: look until it has.
    let answer = expected_answer("are you still there", 1);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let url = server.ws_url(&format!("?session_id={session_id}"));
        let mut again = Client::connect_url(&url).await;
        let history = again.expect_history().await;
        if history.len() == 2 {
            assert_eq!(history[1].content, answer);
            assert_eq!(history[0].turn_id, history[1].turn_id);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{history:?}");
        again.close().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unknown_session_id_gets_a_new_session_and_not_found() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);
    let unknown = uuid::Uuid::new_v4();
    let mut client = Client::connect_url(&server.ws_url(&format!("?session_id={unknown}"))).await;

    assert_ne!(client.session_id, unknown);
    match client.next_frame().await {
        ServerFrame::Error { error, .. } => assert_eq!(error.code.to_string(), "not_found"),
        other => panic!("expected not_found, got {other:?}"),
    }
    assert_eq!(client.chat("hi").await.answer, expected_answer("hi", 1));

    // A long id is not echoed back.
    let long = "x".repeat(30_000);
    let mut other = Client::connect_url(&server.ws_url(&format!("?session_id={long}"))).await;
    match other.next_frame().await {
        ServerFrame::Error { error, .. } => {
            assert_eq!(error.code.to_string(), "not_found");
            assert!(!error.message.contains("xxxx"), "{}", error.message);
        }
        frame => panic!("expected not_found, got {frame:?}"),
    }

    // A live session's id in another spelling names no session.
    let upper_case = client.session_id.to_string().to_uppercase();
    let mut other = Client::connect_url(&server.ws_url(&format!("?session_id={upper_case}"))).await;
    assert_ne!(other.session_id, client.session_id);
    match other.next_frame().await {
        ServerFrame::Error { error, .. } => assert_eq!(error.code.to_string(), "not_found"),
        frame => panic!("expected not_found, got {frame:?}"),
    }
}

#[tokio::test]
async fn ping_frames_get_pong() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);
    let mut client = Client::connect(&server).await;

    client.send_json(json!({ "type": "ping" })).await;
    assert_eq!(client.next_frame().await, ServerFrame::Pong);
}

#[tokio::test]
async fn an_idle_session_leaves_memory_and_comes_back_from_storage() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_SESSION__IDLE_TIMEOUT_S", "1")]);
    let mut first = Client::connect(&server).await;
    let session_id = first.session_id;
    first.chat("hello").await;
    first.close().await;

    common::wait_for_sessions_in_memory(&server, 0).await;

    let mut again = Client::connect_url(&server.ws_url(&format!("?session_id={session_id}"))).await;
    assert_eq!(again.session_id, session_id);
    let history = again.expect_history().await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        again.chat("again").await.answer,
        expected_answer("again", 2)
    );
}
#[tokio::test]
async fn a_turn_that_outlives_its_deadline_ends_with_timeout() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_SESSION__TURN_TIMEOUT_S", "1")]);
    let mut client = Client::connect(&server).await;

    // The model accepts the request and then never answers.
    let turn = client.chat("[mock:hang]").await;

    assert_eq!(turn.ending, "timeout");
    wait_for_mock(&model, "the stream cut off", |stats| {
        stats["streams_cancelled"] == 1
    })
    .await;
    assert_eq!(client.chat("next").await.answer, expected_answer("next", 1));
}

#[tokio::test]
async fn a_second_connection_takes_over_the_session_and_its_running_turn() {
    let model = mock_llm(0, 20);
    let server = serve(&model, &[]);
    let mut first = Client::connect(&server).await;
    let text = "word ".repeat(20);
    let text = text.trim();
    let turn_id = first.chat_accepted(text).await;
    assert!(matches!(
        first.next_frame().await,
        ServerFrame::Chunk { seq: 0, .. }
    ));

    let url = server.ws_url(&format!("?session_id={}", first.session_id));
    let mut second = Client::connect_url(&url).await;
    assert_eq!(second.session_id, first.session_id);
    assert!(
        first.closed_by_server().await,
        "the old connection is closed"
    );

    // The second connection is shown the running turn from its start.
    assert_eq!(
        second.expect_history().await,
        [running_question(text, turn_id)]
    );
    assert_eq!(second.expect_accepted().await, turn_id);
    let turn = second.read_turn(turn_id).await;
    assert_eq!(turn.answer, expected_answer(text, 1));
    assert_eq!(
        second.chat("again").await.answer,
        expected_answer("again", 2)
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_let_go() {
    let model = mock_llm(0, 0);
    let heartbeat = [
        ("PARLOR_SESSION__HEARTBEAT_INTERVAL_S", "1"),
        ("PARLOR_SESSION__CLIENT_TIMEOUT_S", "2"),
    ];
    let server = serve(&model, &heartbeat);
    let mut live = Client::connect(&server).await;
    let mut silent = Client::connect(&server).await;

    // The live client reads, so its WebSocket library answers every ping.
    live.idle_for(std::time::Duration::from_millis(4500)).await;

    assert!(
        silent.closed_by_server().await,
        "a silent client is disconnected"
    );
    assert_eq!(
        live.chat("still here").await.answer,
        expected_answer("still here", 1)
    );
}

#[tokio::test]
async fn a_page_of_another_origin_may_not_open_a_socket() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let model = mock_llm(0, 0);
    let server = serve(
        &model,
        &[("PARLOR_HTTP__CORS_ORIGINS", "[\"http://allowed.example\"]")],
    );
    let open_from = |origin: Option<String>| {
        let mut request = server.ws_url("").into_client_request().unwrap();
        if let Some(origin) = origin {
            let origin = HeaderValue::from_str(&origin).unwrap();
            request.headers_mut().insert("Origin", origin);
        }
        tokio_tungstenite::connect_async(request)
    };
    let status = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("{error}"),
    };

    let evil = open_from(Some("http://evil.example".into())).await;
    assert_eq!(status(evil), 403);
    let allowed = open_from(Some("http://allowed.example".into())).await;
    assert_eq!(status(allowed), 101);
    let same_origin = open_from(Some(format!("http://{}", server.addr))).await;
    assert_eq!(status(same_origin), 101);
    assert_eq!(status(open_from(None).await), 101, "not a browser");
}
