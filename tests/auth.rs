//! Authentication and session ownership (docs/protocol.md#authentication): real
//! `parlor serve` processes with `[auth]` on, reached over real sockets.

mod common;

use common::sse::{Event, post_chat_with};
use common::{Client, Process, expected_answer, mock_llm, wait_for_sessions_in_memory};
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use parlor::conversation::Role;
use parlor::protocol::ServerFrame;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const JWT_SECRET: &str = "an HS256 key of at least 32 bytes";

/// `parlor serve` against `model` with alice and bob as its users, and `settings`.
fn serve_with_users(model: &Process, settings: &[(&str, &str)]) -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[auth]\nmode = \"token\"\n\
         [[auth.users]]\nid = \"alice\"\ntoken = \"{ALICE}\"\n\
         [[auth.users]]\nid = \"bob\"\ntoken = \"{BOB}\"\n"
    );
    let path = dir.path().join("parlor.toml");
    std::fs::write(&path, config).unwrap();
    let mut env = vec![
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    env.extend(
        settings
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned())),
    );
    let server = Process::start(&["--config", &path.display().to_string(), "serve"], &env);
    (server, dir)
}

/// Connects with `Authorization: <authorization>`, re-attaching to `session` if given.
async fn connect_with_header(
    server: &Process,
    authorization: &str,
    session: Option<Uuid>,
) -> Client {
    let query = session
        .map(|id| format!("?session_id={id}"))
        .unwrap_or_default();
    let mut request = server.ws_url(&query).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", authorization.parse().unwrap());
    Client::connect_request(request).await
}

/// Connects with `?access_token=`, re-attaching to `session` if given.
async fn connect_with_query(server: &Process, token: &str, session: Option<Uuid>) -> Client {
    let session = session
        .map(|id| format!("&session_id={id}"))
        .unwrap_or_default();
    Client::connect_url(&server.ws_url(&format!("?access_token={token}{session}"))).await
}

/// The status, `WWW-Authenticate` and body of a WebSocket upgrade the server refused.
async fn refused_upgrade(request: impl IntoClientRequest + Unpin) -> (u16, String, Value) {
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => {
            let challenge = response.headers().get("WWW-Authenticate");
            let challenge = challenge
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (response.status().as_u16(), challenge, body)
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(error) => panic!("expected an HTTP refusal, got {error}"),
    }
}

/// Posts a chat with `Authorization: Bearer <token>` (if given).
async fn post(server: &Process, token: Option<&str>, body: Value) -> (u16, Vec<Event>, String) {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("Authorization", value.as_str()))
        .collect();
    let (status, events, text) = post_chat_with(&server.http("/chat"), body, &headers).await;
    (status.as_u16(), events, text)
}

fn question(text: &str) -> Value {
    json!({ "messages": [{ "role": "user", "content": text }] })
}

/// The conversation a `history` frame shows, as (role, text).
async fn history_of(client: &mut Client) -> Vec<(Role, String)> {
    let history = client.expect_history().await;
    history
        .into_iter()
        .map(|entry| (entry.role, entry.content))
        .collect()
}

fn said(turns: &[&str]) -> Vec<(Role, String)> {
    let mut said = Vec::new();
    for (turn, text) in turns.iter().enumerate() {
        said.push((Role::User, (*text).to_owned()));
        said.push((Role::Assistant, expected_answer(text, turn + 1)));
    }
    said
}

async fn expect_not_found(client: &mut Client) {
    match client.next_frame().await {
        ServerFrame::Error { error, .. } => assert_eq!(error.code.to_string(), "not_found"),
        other => panic!("expected not_found, got {other:?}"),
    }
}

#[tokio::test]
async fn no_valid_token_is_401_on_both_routes() {
    let model = mock_llm(0, 0);
    let (server, _config) = serve_with_users(&model, &[]);

    let (status, _, body) = post(&server, None, question("hi")).await;
    assert_eq!(status, 401, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("bearer token is required"),
        "{body}"
    );
    let (status, _, _) = post(&server, Some("not-a-user-token-at-all"), question("hi")).await;
    assert_eq!(status, 401);
    // A token in the URL is for WebSockets only.
    let url = server.http(&format!("/chat?access_token={ALICE}"));
    let (status, _, _) = post_chat_with(&url, question("hi"), &[]).await;
    assert_eq!(status, 401);

    let (status, challenge, body) = refused_upgrade(server.ws_url("")).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer"), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    let url = server.ws_url("?access_token=not-a-user-token-at-all");
    let (status, challenge, _) = refused_upgrade(url).await;
    assert_eq!(
        (status, challenge.as_str()),
        (401, "Bearer error=\"invalid_token\"")
    );
    let mut request = server.ws_url("").into_client_request().unwrap();
    let basic = format!("Basic {ALICE}").parse().unwrap();
    request.headers_mut().insert("Authorization", basic);
    assert_eq!(refused_upgrade(request).await.0, 401);
}

#[tokio::test]
async fn another_users_live_session_is_unknown_to_them() {
    let model = mock_llm(0, 0);
    let (server, _config) = serve_with_users(&model, &[]);

    // The scheme is case-insensitive.
    let mut alice = connect_with_header(&server, &format!("bearer {ALICE}"), None).await;
    let session_id = alice.session_id;
    assert_eq!(alice.chat("one").await.answer, expected_answer("one", 1));

    // Bob, naming alice's session: a session of his own, and not_found.
    let mut bob = connect_with_query(&server, BOB, Some(session_id)).await;
    assert_ne!(bob.session_id, session_id);
    expect_not_found(&mut bob).await;
    assert_eq!(bob.chat("mine").await.answer, expected_answer("mine", 1));

    // Bob posting to alice's session: what an unknown session id gets, a new
    // session; his `userId` is his own whatever the body says.
    let mut body = question("injected");
    body["sessionId"] = json!(session_id);
    body["userId"] = json!("alice");
    let (status, events, text) = post(&server, Some(BOB), body).await;
    assert_eq!(status, 200, "{text}");
    let data = &events[0].data;
    assert_ne!(data["sessionId"], json!(session_id));
    assert_eq!(data["userId"], "bob");
    assert!(
        text.contains(&expected_answer("injected", 1).replace('"', "\\\"")),
        "{text}"
    );

    // Alice was never disturbed: her socket is open and her session goes on.
    assert_eq!(alice.chat("two").await.answer, expected_answer("two", 2));
    alice.close().await;
    let mut alice =
        connect_with_header(&server, &format!("Bearer {ALICE}"), Some(session_id)).await;
    assert_eq!(alice.session_id, session_id);
    assert_eq!(history_of(&mut alice).await, said(&["one", "two"]));

    // Her own POST /chat reaches her session.
    let mut body = question("three");
    body["sessionId"] = json!(session_id);
    let (status, events, _) = post(&server, Some(ALICE), body).await;
    assert_eq!(status, 200);
    assert_eq!(events[0].data["sessionId"], json!(session_id));
    assert_eq!(events[0].data["userId"], "alice");
}

#[tokio::test]
async fn another_users_stored_session_is_unknown_to_them() {
    let model = mock_llm(0, 0);
    // Sessions leave memory a second after their client does: then they are
    // loaded (claimed) from storage when asked for.
    let (server, _config) = serve_with_users(&model, &[("PARLOR_SESSION__IDLE_TIMEOUT_S", "1")]);

    let mut alice = connect_with_query(&server, ALICE, None).await;
    let session_id = alice.session_id;
    assert_eq!(alice.chat("one").await.answer, expected_answer("one", 1));
    alice.close().await;
    wait_for_sessions_in_memory(&server, 0).await;

    let mut bob = connect_with_query(&server, BOB, Some(session_id)).await;
    assert_ne!(bob.session_id, session_id);
    expect_not_found(&mut bob).await;
    let mut body = question("injected");
    body["sessionId"] = json!(session_id);
    let (status, events, _) = post(&server, Some(BOB), body).await;
    assert_eq!(status, 200);
    assert_ne!(events[0].data["sessionId"], json!(session_id));

    let mut alice = connect_with_query(&server, ALICE, Some(session_id)).await;
    assert_eq!(alice.session_id, session_id);
    assert_eq!(history_of(&mut alice).await, said(&["one"]));
    assert_eq!(alice.chat("two").await.answer, expected_answer("two", 2));
}

fn jwt(sub: &str, expires_in: i64) -> String {
    let exp = get_current_timestamp() as i64 + expires_in;
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap();
    encode(&Header::default(), &json!({ "sub": sub, "exp": exp }), &key).unwrap()
}

#[tokio::test]
async fn json_web_tokens_signed_with_the_secret() {
    let model = mock_llm(0, 0);
    let settings = [
        ("PARLOR_AUTH__MODE", "jwt"),
        ("PARLOR_AUTH__JWT_SECRET", JWT_SECRET),
    ];
    let server = common::serve(&model, &settings);

    let carol = jwt("carol", 600);
    let mut client = connect_with_query(&server, &carol, None).await;
    assert_eq!(client.chat("hi").await.answer, expected_answer("hi", 1));
    let (status, events, _) = post(&server, Some(&carol), question("hello")).await;
    assert_eq!(status, 200);
    assert_eq!(events[0].data["userId"], "carol");

    let expired = jwt("carol", -3_600);
    let (status, _, body) = post(&server, Some(&expired), question("hello")).await;
    assert_eq!(status, 401);
    assert!(body.contains("the token has expired"), "{body}");
    let url = server.ws_url(&format!("?access_token={expired}"));
    assert_eq!(refused_upgrade(url).await.0, 401);

    // Another subject is another user.
    let dave = jwt("dave", 600);
    let mut other = connect_with_query(&server, &dave, Some(client.session_id)).await;
    assert_ne!(other.session_id, client.session_id);
    expect_not_found(&mut other).await;
}

#[tokio::test]
async fn the_load_tester_signs_in_with_its_token() {
    let model = mock_llm(0, 0);
    let (server, _config) = serve_with_users(&model, &[]);
    for (mode, url) in [("ws", server.ws_url("")), ("sse", server.http("/chat"))] {
        let run = |token: Option<&str>| {
            let mut args = vec!["loadtest", "--mode", mode, "--url", &url];
            args.extend(["--sessions", "3", "--turns", "2", "--max-error-rate", "0"]);
            args.extend(token.map(|token| ["--token", token]).into_iter().flatten());
            common::run_to_end(&args, std::time::Duration::from_secs(60))
        };
        let (signed_in, stdout, stderr) = run(Some(ALICE));
        assert!(signed_in.success(), "{mode}: {stdout}\n{stderr}");
        let (anonymous, stdout, _) = run(None);
        assert!(!anonymous.success(), "{mode} without a token: {stdout}");
        assert!(stdout.contains("http_401"), "{mode}: {stdout}");
    }
}
