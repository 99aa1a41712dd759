//! parlor's model client against the mock model, in-process: answers, pacing,
//! retries, timeouts, and a dropped stream stopping the model; and against a
//! canned server: tools offered, reasoning and tool calls read.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::StreamExt;
use parlor::agent::AgentError;
use parlor::agent::llm::{LlmClient, LlmEvent, ModelRequest, PromptMessage, ToolCall, ToolSpec};
use parlor::config::{LlmConfig, Millis, ModelEndpoint};
use parlor::conversation::{ChatMessage, FinishReason};
use parlor_mock_llm::{MockLlmOptions, MockLlmServer, MockStatsSnapshot, start};

/// Upper bound for every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn start_mock(options: MockLlmOptions) -> MockLlmServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    start(listener, options).unwrap()
}

fn client_config(server: &MockLlmServer) -> LlmConfig {
    LlmConfig {
        base_url: ModelEndpoint::OpenAiCompatible(server.base_url().parse().unwrap()),
        model: "test-model".into(),
        max_retries: 2,
        retry_backoff_ms: Millis::new(10),
        first_token_timeout_ms: Millis::new(5_000),
        idle_timeout_ms: Millis::new(5_000),
        ..LlmConfig::default()
    }
}

/// The answer text and how the stream ended.
async fn answer(
    client: &LlmClient,
    messages: Vec<ChatMessage>,
) -> (String, Result<FinishReason, AgentError>) {
    let mut stream = client.stream_chat(messages);
    let mut text = String::new();
    let end = tokio::time::timeout(BOUND, async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(LlmEvent::Delta(delta)) => {
                    assert!(!delta.is_empty());
                    text.push_str(&delta);
                }
                Ok(other @ (LlmEvent::Reasoning(_) | LlmEvent::ToolCalls(_))) => {
                    panic!("the mock does not reason or call tools unasked: {other:?}")
                }
                Ok(LlmEvent::Finished(reason)) => {
                    assert!(stream.next().await.is_none(), "Finished is the last event");
                    return Ok(reason);
                }
                Err(error) => {
                    assert!(stream.next().await.is_none(), "an error is the last event");
                    return Err(error);
                }
            }
        }
        panic!("the stream ended without Finished or an error");
    })
    .await
    .expect("the answer took too long");
    (text, end)
}

async fn fetch_stats(http: &reqwest::Client, server: &MockLlmServer) -> MockStatsSnapshot {
    let url = format!("http://{}/stats", server.addr);
    let response = tokio::time::timeout(BOUND, http.get(url).send())
        .await
        .unwrap()
        .unwrap();
    response.json().await.unwrap()
}

#[actix_web::test]
async fn streams_the_expected_answer_and_counts_turns() {
    let server = start_mock(MockLlmOptions::default());
    let client = LlmClient::new(&client_config(&server)).unwrap();

    let (text, end) = answer(&client, vec![ChatMessage::user("hello there")]).await;
    assert_eq!(text, "You said: \"hello there\" (turn 1)");
    assert_eq!(end, Ok(FinishReason::Stop));

    let history = vec![
        ChatMessage::system("be brief"),
        ChatMessage::user("one"),
        ChatMessage::assistant("You said: \"one\" (turn 1)"),
        ChatMessage::user("two"),
        ChatMessage::assistant("You said: \"two\" (turn 2)"),
        ChatMessage::user("three \"quoted\" ünïcode"),
    ];
    let (text, end) = answer(&client, history).await;
    assert_eq!(text, "You said: \"three \"quoted\" ünïcode\" (turn 3)");
    assert_eq!(end, Ok(FinishReason::Stop));

    let stats = fetch_stats(&reqwest::Client::new(), &server).await;
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.streams_completed, 2);
    assert_eq!(stats.streams_cancelled, 0);
    assert_eq!(stats.streams_active, 0);
    server.stop().await;
}

#[actix_web::test]
async fn paced_stream_arrives_word_by_word() {
    let options = MockLlmOptions {
        ttft: Duration::from_millis(30),
        token_interval: Duration::from_millis(5),
        ..MockLlmOptions::default()
    };
    let server = start_mock(options);
    let client = LlmClient::new(&client_config(&server)).unwrap();
    let started = std::time::Instant::now();
    let mut stream = client.stream_chat(vec![ChatMessage::user("a b c")]);
    let mut deltas = Vec::new();
    tokio::time::timeout(BOUND, async {
        while let Some(Ok(LlmEvent::Delta(delta))) = stream.next().await {
            deltas.push(delta);
        }
    })
    .await
    .unwrap();
    assert_eq!(
        deltas,
        ["You ", "said: ", "\"a ", "b ", "c\" ", "(turn ", "1)"]
    );
    assert!(started.elapsed() >= Duration::from_millis(30 + 6 * 5));
    server.stop().await;
}

#[actix_web::test]
async fn server_errors_are_retried_then_reported() {
    let server = start_mock(MockLlmOptions::default());
    let config = client_config(&server);
    let client = LlmClient::new(&config).unwrap();
    let (text, end) = answer(&client, vec![ChatMessage::user("fail [mock:status=500]")]).await;
    assert_eq!(text, "");
    assert!(
        matches!(&end, Err(AgentError::Upstream(m)) if m.contains("500") && m.contains("mock failure")),
        "{end:?}"
    );
    assert_eq!(
        server.stats.snapshot().requests,
        1 + u64::from(config.max_retries)
    );
    server.stop().await;
}

#[actix_web::test]
async fn client_errors_are_not_retried() {
    let server = start_mock(MockLlmOptions::default());
    let client = LlmClient::new(&client_config(&server)).unwrap();
    let (_, end) = answer(&client, vec![ChatMessage::user("[mock:status=401]")]).await;
    assert!(
        matches!(&end, Err(AgentError::Upstream(m)) if m.contains("401")),
        "{end:?}"
    );
    assert_eq!(server.stats.snapshot().requests, 1);
    server.stop().await;
}

#[actix_web::test]
async fn unreachable_model_is_unavailable() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = LlmConfig {
        base_url: format!("http://{addr}/v1").parse().unwrap(),
        max_retries: 1,
        retry_backoff_ms: Millis::new(10),
        ..LlmConfig::default()
    };
    let client = LlmClient::new(&config).unwrap();
    let (_, end) = answer(&client, vec![ChatMessage::user("hi")]).await;
    assert!(matches!(end, Err(AgentError::Unavailable(_))), "{end:?}");
}

#[actix_web::test]
async fn hanging_model_times_out() {
    let server = start_mock(MockLlmOptions::default());
    let config = LlmConfig {
        first_token_timeout_ms: Millis::new(200),
        ..client_config(&server)
    };
    let client = LlmClient::new(&config).unwrap();
    let (_, end) = answer(&client, vec![ChatMessage::user("[mock:hang]")]).await;
    assert!(
        matches!(&end, Err(AgentError::Timeout(m)) if m.contains("200 ms")),
        "{end:?}"
    );
    assert_eq!(
        server.stats.snapshot().requests,
        1,
        "timeouts are not retried"
    );
    server.stop().await;
}

#[actix_web::test]
async fn stalled_model_hits_the_idle_timeout() {
    let server = start_mock(MockLlmOptions::default());
    let config = LlmConfig {
        idle_timeout_ms: Millis::new(200),
        ..client_config(&server)
    };
    let client = LlmClient::new(&config).unwrap();
    let (text, end) = answer(&client, vec![ChatMessage::user("x [mock:stall-after=2]")]).await;
    assert_eq!(text, "You said: ");
    assert!(matches!(end, Err(AgentError::Timeout(_))), "{end:?}");
    server.stop().await;
}

#[actix_web::test]
async fn dropping_the_stream_cancels_it_at_the_model() {
    let options = MockLlmOptions {
        ttft: Duration::ZERO,
        token_interval: Duration::from_millis(20),
        ..MockLlmOptions::default()
    };
    let server = start_mock(options);
    let client = LlmClient::new(&client_config(&server)).unwrap();
    let long = "word ".repeat(200);
    let mut stream = client.stream_chat(vec![ChatMessage::user(long)]);
    let first = tokio::time::timeout(BOUND, stream.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(LlmEvent::Delta(_)))), "{first:?}");
    assert_eq!(server.stats.snapshot().streams_active, 1);
    drop(stream);

    let http = reqwest::Client::new();
    let stats = tokio::time::timeout(BOUND, async {
        loop {
            let stats = fetch_stats(&http, &server).await;
            if stats.streams_cancelled == 1 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the mock never saw the stream cut off");
    assert_eq!(stats.streams_active, 0);
    assert_eq!(stats.streams_completed, 0);
    server.stop().await;
}

#[actix_web::test]
async fn dropping_a_hanging_stream_cancels_it_too() {
    let server = start_mock(MockLlmOptions::default());
    let client = LlmClient::new(&client_config(&server)).unwrap();
    let mut stream = client.stream_chat(vec![ChatMessage::user("[mock:hang]")]);
    let waited = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    assert!(waited.is_err(), "a hanging model sends no token");
    drop(stream);
    tokio::time::timeout(BOUND, async {
        while server.stats.snapshot().streams_cancelled != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the mock never saw the hanging stream cut off");
    server.stop().await;
}

/// The request bodies a canned model server received.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// A model server that records each request body and answers every request with
/// the server-sent events `body`. Returns its `/v1` base URL.
fn start_canned_model(body: &'static str) -> (String, Received, actix_web::dev::ServerHandle) {
    let received = Received::default();
    let recorder = received.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let recorder = recorder.clone();
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move |request: web::Json<serde_json::Value>| {
                recorder.lock().unwrap().push(request.into_inner());
                async move {
                    HttpResponse::Ok()
                        .content_type("text/event-stream")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}/v1"), received, handle)
}

#[actix_web::test]
async fn offers_tools_and_reads_reasoning_and_tool_calls() {
    const ANSWER: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"The docs know.\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Looking.\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"docs\",\"arguments\":\"{\\\"query\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"actors\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let (base_url, received, server) = start_canned_model(ANSWER);
    let config = LlmConfig {
        base_url: ModelEndpoint::OpenAiCompatible(base_url.parse().unwrap()),
        model: "test-model".into(),
        ..LlmConfig::default()
    };
    let client = LlmClient::new(&config).unwrap();
    let earlier_call = ToolCall {
        id: "call_1".into(),
        name: "docs".into(),
        arguments: r#"{"query":"mailboxes"}"#.into(),
    };
    let request = ModelRequest {
        messages: vec![
            ChatMessage::user("what are actors?").into(),
            PromptMessage::ToolCalls {
                text: String::new(),
                calls: vec![earlier_call],
            },
            PromptMessage::ToolResult {
                call_id: "call_1".into(),
                content: "Mailboxes hold messages.".into(),
            },
        ],
        tools: vec![ToolSpec {
            name: "docs".into(),
            description: "The documentation".into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            }),
        }],
    };

    let events: Vec<_> = tokio::time::timeout(BOUND, client.stream_request(request).collect())
        .await
        .expect("the answer took too long");
    assert_eq!(
        events,
        vec![
            Ok(LlmEvent::Reasoning("The docs know.".into())),
            Ok(LlmEvent::Delta("Looking.".into())),
            Ok(LlmEvent::ToolCalls(vec![ToolCall {
                id: "call_9".into(),
                name: "docs".into(),
                arguments: r#"{"query":"actors"}"#.into(),
            }])),
            Ok(LlmEvent::Finished(FinishReason::Stop)),
        ]
    );

    let body = received.lock().unwrap().pop().expect("no request arrived");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "docs");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"][0],
        "query"
    );
    let messages = &body["messages"];
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], serde_json::Value::Null);
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"query":"mailboxes"}"#
    );
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], "call_1");
    server.stop(true).await;
}
