//! Conversations that last (docs/storage.md): real `parlor serve` processes storing
//! their sessions in SQLite or PostgreSQL, restarted, and cut off from PostgreSQL.

mod common;

use common::deployment::{readiness, wait_for_readiness};
use common::postgres::TestDatabase;
use common::proxy::CuttableProxy;
use common::{Client, Process, WAIT, expected_answer, mock_llm};
use parlor::conversation::{ErrorCode, Role};
use parlor::protocol::ServerFrame;
use uuid::Uuid;

/// `parlor serve` against `model`, with `settings` (`PARLOR_...`).
fn serve(model: &Process, settings: &[(&str, String)]) -> Process {
    let mut env = vec![
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    env.extend(settings.iter().cloned());
    Process::start(&["serve"], &env)
}

/// The setting that keeps a server's SQLite database (and indexes) in `data`.
fn stored_in(data: &tempfile::TempDir) -> [(&'static str, String); 1] {
    [(
        "PARLOR_STORAGE__DATA_DIR",
        data.path().display().to_string(),
    )]
}

fn stop(mut server: Process) {
    server.terminate();
    assert!(server.wait_exit(WAIT).expect("parlor exits").success());
}

async fn reattach(server: &Process, session_id: Uuid) -> Client {
    let url = server.ws_url(&format!("?session_id={session_id}"));
    let client = Client::connect_url(&url).await;
    assert_eq!(client.session_id, session_id, "the same session");
    client
}

#[tokio::test]
async fn a_restarted_server_gives_the_conversation_back() {
    let model = mock_llm(0, 0);
    let data = tempfile::tempdir().unwrap();
    let settings = stored_in(&data);

    let server = serve(&model, &settings);
    let mut client = Client::connect(&server).await;
    let session_id = client.session_id;
    for (turn, text) in ["one", "two"].iter().enumerate() {
        assert_eq!(
            client.chat(text).await.answer,
            expected_answer(text, turn + 1)
        );
    }
    client.close().await;
    stop(server);

    let server = serve(&model, &settings);
    let mut client = reattach(&server, session_id).await;
    let history = client.expect_history().await;
    let said: Vec<(Role, String)> = history
        .iter()
        .map(|entry| (entry.role, entry.content.clone()))
        .collect();
    assert_eq!(
        said,
        [
            (Role::User, "one".to_owned()),
            (Role::Assistant, expected_answer("one", 1)),
            (Role::User, "two".to_owned()),
            (Role::Assistant, expected_answer("two", 2)),
        ]
    );
    assert!(history.iter().all(|entry| entry.turn_id.is_some()));
    // The agent remembers too: this is the conversation's third question.
    assert_eq!(
        client.chat("three").await.answer,
        expected_answer("three", 3)
    );
    client.close().await;

    // `POST /chat` with the session's id goes on with it as well.
    let body = serde_json::json!({
        "sessionId": session_id,
        "messages": [{"role": "user", "content": "four"}],
    });
    let (status, events, _) = common::sse::post_chat(&server.http("/chat"), body).await;
    assert_eq!(status, 200);
    let answer: String = events
        .iter()
        .filter(|event| event.name.is_none())
        .map(|event| event.data["message"].as_str().unwrap())
        .collect();
    assert_eq!(answer, expected_answer("four", 4));
}

#[tokio::test]
async fn a_storage_outage_refuses_new_turns_and_loses_nothing_accepted() {
    let model = mock_llm(0, 20);
    let database = TestDatabase::create().await;
    let proxy = CuttableProxy::start("127.0.0.1:5432");
    let through_proxy = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, database.name
    );
    let server = serve(&model, &[("PARLOR_STORAGE__URL", through_proxy)]);

    // A turn is under way when the database goes away.
    let mut client = Client::connect(&server).await;
    let session_id = client.session_id;
    let text = "word ".repeat(40);
    let text = text.trim();
    let turn_id = client.chat_accepted(text).await;
    assert!(matches!(
        client.next_frame().await,
        ServerFrame::Chunk { .. }
    ));
    proxy.cut();

    let reason = wait_for_readiness(&server, 503).await;
    assert_eq!(reason["reason"], "the conversation storage is unavailable");
    // New turns are refused while nothing could keep them...
    let mut other = Client::connect(&server).await;
    other.send_message("hello?").await;
    match other.next_frame().await {
        ServerFrame::Error {
            turn_id: None,
            error,
        } => {
            assert_eq!(error.code, ErrorCode::Unavailable)
        }
        frame => panic!("expected unavailable, got {frame:?}"),
    }
    // ...and the turn that was accepted goes on.
    let turn = client.read_turn_from(turn_id, 1).await;
    assert_eq!(turn.ending, "stop");

    proxy.restore();
    wait_for_readiness(&server, 200).await;
    assert_eq!(client.chat("after").await.ending, "stop");
    client.close().await;
    stop(server);

    // Everything accepted was stored: a new server finds it in the database.
    let server = serve(&model, &[("PARLOR_STORAGE__URL", database.url())]);
    let mut client = reattach(&server, session_id).await;
    let history = client.expect_history().await;
    let contents: Vec<&str> = history.iter().map(|e| e.content.as_str()).collect();
    let answer = expected_answer(text, 1);
    assert_eq!(
        contents,
        [
            text,
            answer.as_str(),
            "after",
            expected_answer("after", 2).as_str()
        ]
    );
    let (status, _) = readiness(&server).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn beyond_max_in_memory_the_longest_idle_session_leaves_memory_not_storage() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_SESSION__MAX_IN_MEMORY", "2".to_owned())]);
    let mut sessions = Vec::new();
    for text in ["first", "second", "third"] {
        let mut client = Client::connect(&server).await;
        client.chat(text).await;
        sessions.push(client.session_id);
        client.close().await;
    }

    // Three sessions went idle; two may stay.
    common::wait_for_sessions_in_memory(&server, 2).await;
    // The one that left was the first, and it comes back from storage.
    let mut first = reattach(&server, sessions[0]).await;
    let history = first.expect_history().await;
    assert_eq!(history[0].content, "first");
    assert_eq!(
        first.chat("again").await.answer,
        expected_answer("again", 2)
    );
}

#[tokio::test]
async fn a_post_chat_session_is_stored_with_its_user() {
    let model = mock_llm(0, 0);
    let data = tempfile::tempdir().unwrap();
    let settings = stored_in(&data);
    let server = serve(&model, &settings);
    // The conversation the client brings along is stored with the session.
    let body = serde_json::json!({
        "userId": "u-7",
        "messages": [
            {"role": "user", "content": "I am Ann"},
            {"role": "assistant", "content": "Hello Ann"},
            {"role": "user", "content": "who am I"},
        ],
    });
    let (status, events, _) = common::sse::post_chat(&server.http("/chat"), body).await;
    assert_eq!(status, 200);
    let session_id: Uuid = events[0].data["sessionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    stop(server);

    let config = parlor::config::StorageConfig {
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    let storage = parlor::storage::open(&config).await.unwrap();
    let stored = storage.load_session(session_id, 10).await.unwrap().unwrap();
    assert_eq!(stored.record.user_id.as_deref(), Some("u-7"));
    let contents: Vec<&str> = stored.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        contents,
        [
            "I am Ann",
            "Hello Ann",
            "who am I",
            expected_answer("who am I", 2).as_str()
        ]
    );
    let turns: Vec<Uuid> = stored.messages.iter().map(|m| m.turn_id).collect();
    assert_eq!(
        turns[0], turns[1],
        "the answer brought along shares its question's turn"
    );
    assert_ne!(turns[1], turns[2]);
    assert!(stored.messages.iter().all(|m| !m.pending));
}
