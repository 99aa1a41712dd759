//! The mock over HTTP: its answers, its routes and its counters, seen by a plain
//! HTTP client. (How parlor's model client copes with it is tested in parlor.)

use std::net::TcpListener;
use std::time::Duration;

use futures_util::StreamExt;
use parlor_mock_llm::{
    MOCK_MODEL_ID, MockLlmOptions, MockLlmServer, MockStatsSnapshot, expected_answer, start,
};
use serde_json::{Value, json};

/// Upper bound for every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn start_mock() -> MockLlmServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    start(listener, MockLlmOptions::default()).unwrap()
}

async fn post(server: &MockLlmServer, body: &Value) -> reqwest::Response {
    let url = format!("{}/chat/completions", server.base_url());
    tokio::time::timeout(BOUND, reqwest::Client::new().post(url).json(body).send())
        .await
        .unwrap()
        .unwrap()
}

/// Waits until the counters satisfy `done`, and returns them.
async fn stats_when(
    server: &MockLlmServer,
    done: impl Fn(&MockStatsSnapshot) -> bool,
) -> MockStatsSnapshot {
    let http = reqwest::Client::new();
    let url = format!("http://{}/stats", server.addr);
    tokio::time::timeout(BOUND, async {
        loop {
            let stats: MockStatsSnapshot =
                http.get(&url).send().await.unwrap().json().await.unwrap();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the counters never got there")
}

/// The content deltas of a streamed answer's events, and whether it ended with `[DONE]`.
fn deltas(body: &str) -> (Vec<String>, bool) {
    let mut deltas = Vec::new();
    let mut done = false;
    for data in body.lines().filter_map(|line| line.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let event: Value = serde_json::from_str(data).unwrap();
        if let Some(content) = event["choices"][0]["delta"]["content"].as_str() {
            deltas.push(content.to_owned());
        }
    }
    (deltas, done)
}

#[actix_web::test]
async fn streams_the_answer_word_by_word_and_counts_it_completed() {
    let server = start_mock();
    let body = json!({
        "stream": true,
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"},
                     {"role": "user", "content": "b c"}],
    });
    let response = post(&server, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(BOUND, response.text())
        .await
        .unwrap()
        .unwrap();
    let (deltas, done) = deltas(&text);
    assert!(done, "no [DONE]: {text}");
    assert_eq!(deltas, ["You ", "said: ", "\"b ", "c\" ", "(turn ", "2)"]);
    assert_eq!(deltas.concat(), expected_answer("b c", 2));

    let stats = stats_when(&server, |s| s.streams_active == 0).await;
    let expected = MockStatsSnapshot {
        requests: 1,
        streams_active: 0,
        streams_completed: 1,
        streams_cancelled: 0,
    };
    assert_eq!(stats, expected);
    server.stop().await;
}

#[actix_web::test]
async fn a_client_leaving_a_hanging_stream_is_counted_cancelled() {
    let server = start_mock();
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "[mock:hang]"}]});
    let mut events = post(&server, &body).await.bytes_stream();
    let first = tokio::time::timeout(BOUND, events.next()).await.unwrap();
    let first = String::from_utf8(first.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("\"role\":\"assistant\""), "{first}");
    let silent = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
    assert!(silent.is_err(), "a hanging stream sends nothing more");
    assert_eq!(server.stats.snapshot().streams_active, 1);
    drop(events);

    let stats = stats_when(&server, |s| s.streams_cancelled == 1).await;
    assert_eq!((stats.streams_active, stats.streams_completed), (0, 0));
    server.stop().await;
}

#[actix_web::test]
async fn status_marker_answers_that_status_with_an_error_body() {
    let server = start_mock();
    let body =
        json!({"stream": true, "messages": [{"role": "user", "content": "x [mock:status=503]"}]});
    let response = post(&server, &body).await;
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "mock_error");
    assert_eq!(error["error"]["code"], 503);
    assert_eq!(server.stats.snapshot().requests, 1);
    server.stop().await;
}

#[actix_web::test]
async fn non_streaming_answer_and_models() {
    let server = start_mock();
    let http = reqwest::Client::new();
    let body = json!({
        "model": "echo-me",
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"},
                     {"role": "user", "content": "b"}],
    });
    let response = post(&server, &body).await;
    assert_eq!(response.status(), 200);
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["object"], "chat.completion");
    assert_eq!(value["model"], "echo-me");
    assert!(value["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        value["choices"][0]["message"]["content"],
        "You said: \"b\" (turn 2)"
    );
    assert_eq!(value["choices"][0]["finish_reason"], "stop");

    let url = format!("{}/models", server.base_url());
    let models: Value = tokio::time::timeout(BOUND, http.get(url).send())
        .await
        .unwrap()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], MOCK_MODEL_ID);
    assert_eq!(server.stats.snapshot().requests, 1);
    server.stop().await;
}

#[actix_web::test]
async fn bad_request_body_is_400() {
    let server = start_mock();
    let url = format!("{}/chat/completions", server.base_url());
    let response = tokio::time::timeout(BOUND, reqwest::Client::new().post(url).body("{").send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 400);
    server.stop().await;
}
