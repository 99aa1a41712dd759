//! The request's `max_tokens` and the `[mock:endless]` marker over HTTP.

use std::net::TcpListener;
use std::time::Duration;

use futures_util::StreamExt;
use parlor_mock_llm::{
    ENDLESS_WORD, MockLlmOptions, MockLlmServer, MockStatsSnapshot, expected_answer, start,
};
use serde_json::{Value, json};

/// Upper bound for every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn start_mock(token_ms: u64) -> MockLlmServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let options = MockLlmOptions {
        token_interval: Duration::from_millis(token_ms),
        ..MockLlmOptions::default()
    };
    start(listener, options).unwrap()
}

async fn post(server: &MockLlmServer, body: &Value) -> reqwest::Response {
    let url = format!("{}/chat/completions", server.base_url());
    tokio::time::timeout(BOUND, reqwest::Client::new().post(url).json(body).send())
        .await
        .unwrap()
        .unwrap()
}

fn request(text: &str, stream: bool, max_tokens: Option<u64>) -> Value {
    let mut body = json!({"stream": stream, "messages": [{"role": "user", "content": text}]});
    if let Some(limit) = max_tokens {
        body["max_tokens"] = limit.into();
    }
    body
}

/// Waits until the counters are `expected`.
async fn wait_for(server: &MockLlmServer, expected: MockStatsSnapshot) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while server.stats.snapshot() != expected {
        let now = server.stats.snapshot();
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters stuck at {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A streamed body's content deltas and its last `finish_reason`.
fn content_and_finish(body: &str) -> (Vec<String>, Option<String>) {
    let mut words = Vec::new();
    let mut finish = None;
    for data in body.lines().filter_map(|line| line.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let event: Value = serde_json::from_str(data).unwrap();
        let choice = &event["choices"][0];
        if let Some(word) = choice["delta"]["content"].as_str() {
            words.push(word.to_owned());
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
    }
    (words, finish)
}

async fn streamed(server: &MockLlmServer, body: &Value) -> (Vec<String>, Option<String>) {
    let response = post(server, body).await;
    let text = tokio::time::timeout(BOUND, response.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    content_and_finish(&text)
}

/// The first `count` words of the answer to `text`, each with its space.
fn first_words(text: &str, count: usize) -> Vec<String> {
    let answer = expected_answer(text, 1);
    answer
        .split_inclusive(' ')
        .take(count)
        .map(str::to_owned)
        .collect()
}

#[actix_web::test]
async fn max_tokens_cuts_the_answer_with_length() {
    let server = start_mock(0);
    let (words, finish) = streamed(&server, &request("a b c", true, Some(3))).await;
    assert_eq!(words, first_words("a b c", 3));
    assert_eq!(finish.as_deref(), Some("length"));
    // Enough tokens: the whole answer, as without a limit.
    let (words, finish) = streamed(&server, &request("a b c", true, Some(100))).await;
    assert_eq!(words.concat(), expected_answer("a b c", 1));
    assert_eq!(finish.as_deref(), Some("stop"));

    let whole: Value = post(&server, &request("a b c", false, Some(3)))
        .await
        .json()
        .await
        .unwrap();
    let choice = &whole["choices"][0];
    assert_eq!(
        choice["message"]["content"],
        first_words("a b c", 3).concat()
    );
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 3);
    server.stop().await;
}

#[actix_web::test]
async fn an_endless_answer_stops_at_max_tokens() {
    let server = start_mock(0);
    let text = "go [mock:endless]";
    let answer_words = expected_answer(text, 1).split_inclusive(' ').count();
    let limit = answer_words + 100;
    let (words, finish) = streamed(&server, &request(text, true, Some(limit as u64))).await;
    assert_eq!(words.len(), limit);
    assert_eq!(words[..answer_words].concat(), expected_answer(text, 1));
    assert!(words[answer_words..].iter().all(|w| w == ENDLESS_WORD));
    assert_eq!(finish.as_deref(), Some("length"));

    let whole: Value = post(
        &server,
        &request(text, false, Some(answer_words as u64 + 2)),
    )
    .await
    .json()
    .await
    .unwrap();
    let expected = format!("{}more more ", expected_answer(text, 1));
    assert_eq!(whole["choices"][0]["message"]["content"], expected);
    assert_eq!(whole["choices"][0]["finish_reason"], "length");

    let expected = MockStatsSnapshot {
        requests: 2,
        streams_active: 0,
        streams_completed: 1,
        streams_cancelled: 0,
    };
    wait_for(&server, expected).await;
    server.stop().await;
}

#[actix_web::test]
async fn an_endless_answer_goes_on_until_the_client_leaves() {
    for token_ms in [0, 1] {
        let server = start_mock(token_ms);
        let body = request("[mock:endless]", true, None);
        let mut events = post(&server, &body).await.bytes_stream();
        // Far more than the answer's own words.
        let mut received = String::new();
        while received.matches(ENDLESS_WORD).count() < 200 {
            let chunk = tokio::time::timeout(BOUND, events.next()).await.unwrap();
            received.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
        }
        assert!(!received.contains("finish_reason\":\""), "{received}");
        drop(events);

        let expected = MockStatsSnapshot {
            requests: 1,
            streams_active: 0,
            streams_completed: 0,
            streams_cancelled: 1,
        };
        wait_for(&server, expected).await;
        server.stop().await;
    }
}
