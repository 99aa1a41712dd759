//! The mock model (SPEC §7): an OpenAI-compatible server whose answers are known in
//! advance, so tests and load tests can check every answer from outside.
//!
//! The answer to a chat is `You said: "<content of the last user message>" (turn N)`,
//! N being the number of `user` messages in the request (see [`expected_answer`]).
//! Streamed, it comes one word (with its trailing space) per chunk: the first after
//! `ttft`, then one every `token_interval`. With both at zero the whole answer goes
//! out as one body chunk, so the mock is never the bottleneck of a throughput test.
//!
//! Routes: `POST /v1/chat/completions` (streaming and not), `GET /v1/models`, and
//! `GET /stats` ([`MockStatsSnapshot`]: chat requests, streams active now, streams
//! completed, streams cut off by their client before the final event).
//!
//! # Failure simulation
//!
//! Markers in the last user message make the mock misbehave; the answer to any
//! message without them is unaffected:
//!
//! - `[mock:status=NNN]` (NNN from 400 to 599): answers HTTP NNN with an OpenAI-style
//!   error body (`{"error":{"message":...,"type":"mock_error","code":NNN}}`), no stream.
//! - `[mock:hang]`: sends the response headers (and the role-only first event), then
//!   nothing, keeping the connection open until the client leaves.
//! - `[mock:stall-after=K]`: sends K content chunks, then goes silent the same way.

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, Sleep};

/// The model id `GET /v1/models` lists, and the `model` of answers to requests
/// that name none.
pub const MOCK_MODEL_ID: &str = "parlor-mock";

/// Largest accepted request body (long conversations are resent in full).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Pacing of the mock's streamed answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockLlmOptions {
    /// Delay from the request to the first answer chunk.
    pub ttft: Duration,
    /// Delay between two answer chunks.
    pub token_interval: Duration,
}

/// Counters behind `GET /stats`.
#[derive(Debug, Default)]
pub struct MockStats {
    requests: AtomicU64,
    streams_active: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
}

/// A copy of the [`MockStats`] counters at one moment; the JSON of `GET /stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStatsSnapshot {
    /// Chat completion requests received (streaming or not, failed or not).
    pub requests: u64,
    /// Streamed answers being sent now.
    pub streams_active: u64,
    /// Streamed answers sent up to their final event.
    pub streams_completed: u64,
    /// Streamed answers whose client went away before the final event.
    pub streams_cancelled: u64,
}

impl MockStats {
    pub fn snapshot(&self) -> MockStatsSnapshot {
        MockStatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            streams_active: self.streams_active.load(Ordering::Relaxed),
            streams_completed: self.streams_completed.load(Ordering::Relaxed),
            streams_cancelled: self.streams_cancelled.load(Ordering::Relaxed),
        }
    }
}

/// A mock model running in the background of the current runtime.
pub struct MockLlmServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub stats: Arc<MockStats>,
}

impl MockLlmServer {
    /// The OpenAI-compatible base URL to configure clients with: `http://{addr}/v1`.
    pub fn base_url(&self) -> reqwest::Url {
        format!("http://{}/v1", self.addr)
            .parse()
            .expect("an address and a path make a URL")
    }

    /// Stops the server without waiting for open streams.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// Starts the mock on `listener` in the background (one worker thread) and returns
/// at once. Must be called inside a Tokio runtime (an actix `System` is one).
/// Signals are left to the caller; stop it with [`MockLlmServer::stop`].
pub fn start(listener: TcpListener, options: MockLlmOptions) -> std::io::Result<MockLlmServer> {
    let addr = listener.local_addr()?;
    let stats = Arc::new(MockStats::default());
    let server = build_server(listener, options, stats.clone(), 1, false)?;
    let handle = server.handle();
    tokio::spawn(server);
    Ok(MockLlmServer {
        addr,
        handle,
        stats,
    })
}

/// `parlor mock-llm`: serves the mock on `bind` until ctrl-c / SIGTERM.
pub async fn run(bind: &str, options: MockLlmOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind(bind)?;
    let addr = listener.local_addr()?;
    let server = build_server(listener, options, Arc::new(MockStats::default()), 2, true)?;
    tracing::info!(
        ttft_ms = options.ttft.as_millis() as u64,
        token_ms = options.token_interval.as_millis() as u64,
        "listening on http://{addr}"
    );
    server.await
}

struct MockState {
    options: MockLlmOptions,
    stats: Arc<MockStats>,
}

fn build_server(
    listener: TcpListener,
    options: MockLlmOptions,
    stats: Arc<MockStats>,
    workers: usize,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let state = web::Data::new(MockState { options, stats });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
            .route("/v1/chat/completions", web::post().to(chat_completions))
            .route("/v1/models", web::get().to(models))
            .route("/stats", web::get().to(stats_route))
    })
    .workers(workers)
    .on_connect(crate::net::send_without_delay)
    // A client that closes its side has left: drop its stream (and count it
    // cancelled) instead of waiting for a write to fail.
    .h1_allow_half_closed(false)
    .shutdown_timeout(2)
    .listen(listener)?;
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

async fn models() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "object": "list",
        "data": [{"id": MOCK_MODEL_ID, "object": "model", "owned_by": "parlor"}],
    }))
}

async fn stats_route(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats.snapshot())
}

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Vec<RequestMessage>,
    #[serde(default)]
    stream: bool,
}

#[derive(Deserialize)]
struct RequestMessage {
    role: String,
    #[serde(default)]
    content: Option<MessageContent>,
}

/// A message's content: a string, or a list of parts of which the text parts count.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

impl MessageContent {
    fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => {
                parts.iter().filter_map(|p| p.text.as_deref()).collect()
            }
        }
    }
}

/// The mock's answer to a conversation whose last user message is
/// `last_user_message` and which holds `turn` user messages.
pub fn expected_answer(last_user_message: &str, turn: usize) -> String {
    format!("You said: \"{last_user_message}\" (turn {turn})")
}

/// How the mock splits an answer into streamed chunks: one word with its trailing
/// space per chunk; their concatenation is the answer.
pub fn answer_chunks(answer: &str) -> impl Iterator<Item = &str> {
    answer.split_inclusive(' ')
}

/// The last user message's text and the number of user messages.
fn last_user_and_turn(messages: &[RequestMessage]) -> (String, usize) {
    let mut users = messages.iter().filter(|m| m.role == "user");
    let turn = users.clone().count();
    let last = users
        .next_back()
        .and_then(|m| m.content.as_ref())
        .map(MessageContent::text);
    (last.unwrap_or_default(), turn)
}

/// A misbehaviour asked for by a marker in the last user message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Status(StatusCode),
    Hang,
    StallAfter(usize),
}

fn failure(text: &str) -> Option<Failure> {
    let mut rest = text;
    while let Some(start) = rest.find("[mock:") {
        rest = &rest[start + "[mock:".len()..];
        let Some(end) = rest.find(']') else { break };
        let marker = &rest[..end];
        let found = if marker == "hang" {
            Some(Failure::Hang)
        } else if let Some(code) = marker.strip_prefix("status=") {
            code.parse::<u16>()
                .ok()
                .filter(|code| (400..=599).contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok())
                .map(Failure::Status)
        } else if let Some(count) = marker.strip_prefix("stall-after=") {
            count.parse().ok().map(Failure::StallAfter)
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn error_response(status: StatusCode, message: &str, kind: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}
    }))
}

async fn chat_completions(state: web::Data<MockState>, body: web::Bytes) -> HttpResponse {
    let received = Instant::now();
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("invalid request body: {e}");
            return error_response(StatusCode::BAD_REQUEST, &message, "invalid_request_error");
        }
    };
    let (last_user, turn) = last_user_and_turn(&request.messages);
    let failure = failure(&last_user);
    if let Some(Failure::Status(status)) = failure {
        let message = format!("mock failure: status {}", status.as_u16());
        return error_response(status, &message, "mock_error");
    }
    let answer = expected_answer(&last_user, turn);
    let model = request.model.unwrap_or_else(|| MOCK_MODEL_ID.to_owned());
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if request.stream {
        let batches = stream_batches(&id, created, &model, &answer, failure, state.options);
        let body = AnswerBody::new(batches, failure.is_some(), received, state.stats.clone());
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/event-stream"))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .streaming(body)
    } else {
        complete(id, created, model, answer, failure, state.options).await
    }
}

/// A non-streaming answer, after as long as streaming it would have taken.
async fn complete(
    id: String,
    created: u64,
    model: String,
    answer: String,
    failure: Option<Failure>,
    options: MockLlmOptions,
) -> HttpResponse {
    if failure.is_some() {
        // Hang and stall: nothing complete ever comes; the client gives up.
        std::future::pending::<()>().await;
    }
    let words = answer_chunks(&answer).count();
    let delay = options.ttft + options.token_interval * (words.saturating_sub(1) as u32);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    HttpResponse::Ok().json(serde_json::json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words},
    }))
}

/// The streamed answer as body chunks, each with its send time (an offset from the
/// request's arrival). Events due at the same time share one chunk.
fn stream_batches(
    id: &str,
    created: u64,
    model: &str,
    answer: &str,
    failure: Option<Failure>,
    options: MockLlmOptions,
) -> Vec<(Duration, Bytes)> {
    // Every event is `data: {head}{delta}{tail}\n\n`.
    let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
    let head = format!(
        "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{model_json},\"choices\":[{{\"index\":0,\"delta\":"
    );
    const OPEN_TAIL: &[u8] = b",\"finish_reason\":null}]}\n\n";
    let mut buffer = Vec::with_capacity((head.len() + 64) * (answer.len() / 4 + 3));
    let mut events: Vec<(Duration, Range<usize>)> = Vec::new();
    let mut push = |buffer: &mut Vec<u8>, due: Duration, write: &dyn Fn(&mut Vec<u8>)| {
        let start = buffer.len();
        buffer.extend_from_slice(head.as_bytes());
        write(buffer);
        match events.last_mut() {
            Some((last_due, range)) if *last_due == due => range.end = buffer.len(),
            _ => events.push((due, start..buffer.len())),
        }
    };

    push(&mut buffer, Duration::ZERO, &|b| {
        b.extend_from_slice(b"{\"role\":\"assistant\"}");
        b.extend_from_slice(OPEN_TAIL);
    });
    let content_limit = match failure {
        Some(Failure::Hang) => 0,
        Some(Failure::StallAfter(count)) => count,
        _ => usize::MAX,
    };
    let mut due = options.ttft;
    for (index, word) in answer_chunks(answer).take(content_limit).enumerate() {
        due = options.ttft + options.token_interval * (index as u32);
        push(&mut buffer, due, &|b| {
            b.extend_from_slice(b"{\"content\":");
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *b, word);
            b.push(b'}');
            b.extend_from_slice(OPEN_TAIL);
        });
    }
    if failure.is_none() {
        push(&mut buffer, due, &|b| {
            b.extend_from_slice(b"{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        });
    }
    let buffer = Bytes::from(buffer);
    events
        .into_iter()
        .map(|(due, range)| (due, buffer.slice(range)))
        .collect()
}

/// The body of a streamed answer: sends each batch at its time. Dropped before the
/// last batch went out means the client cut the stream off; the drop counts it.
struct AnswerBody {
    batches: std::vec::IntoIter<(Duration, Bytes)>,
    next: Option<(Duration, Bytes)>,
    /// After the last batch, stay silent forever instead of ending (hang, stall).
    stall: bool,
    received: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    finished: bool,
    stats: Arc<MockStats>,
}

impl AnswerBody {
    fn new(
        batches: Vec<(Duration, Bytes)>,
        stall: bool,
        received: Instant,
        stats: Arc<MockStats>,
    ) -> Self {
        stats.streams_active.fetch_add(1, Ordering::Relaxed);
        let mut batches = batches.into_iter();
        let next = batches.next();
        Self {
            batches,
            next,
            stall,
            received,
            timer: None,
            finished: false,
            stats,
        }
    }
}

impl Stream for AnswerBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = Pin::into_inner(self);
        let Some((offset, _)) = &this.next else {
            // A stalled stream is never woken again; it ends when the client leaves.
            return if this.stall {
                Poll::Pending
            } else {
                Poll::Ready(None)
            };
        };
        if !offset.is_zero() {
            let due = this.received + *offset;
            if Instant::now() < due {
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.deadline() != due {
                    timer.as_mut().reset(due);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let (_, bytes) = this.next.take().expect("checked above");
        this.next = this.batches.next();
        if this.next.is_none() && !this.stall {
            this.finished = true;
        }
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        self.stats.streams_active.fetch_sub(1, Ordering::Relaxed);
        let counter = if self.finished {
            &self.stats.streams_completed
        } else {
            &self.stats.streams_cancelled
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::agent::AgentError;
    use crate::agent::llm::{LlmClient, LlmEvent};
    use crate::config::{LlmConfig, Millis, ModelEndpoint};
    use crate::conversation::{ChatMessage, FinishReason};

    /// Upper bound for every wait in these tests.
    const BOUND: Duration = Duration::from_secs(10);

    fn message(role: &str, content: &str) -> RequestMessage {
        RequestMessage {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
        }
    }

    #[test]
    fn answer_names_the_last_user_message_and_the_turn() {
        let messages = [
            message("system", "be nice"),
            message("user", "first"),
            message("assistant", "You said: \"first\" (turn 1)"),
            message("user", "second one"),
        ];
        let (last, turn) = last_user_and_turn(&messages);
        assert_eq!((last.as_str(), turn), ("second one", 2));
        assert_eq!(
            expected_answer(&last, turn),
            "You said: \"second one\" (turn 2)"
        );
        assert_eq!(last_user_and_turn(&[]), (String::new(), 0));
    }

    #[test]
    fn content_parts_count_as_text() {
        let request: CompletionRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(last_user_and_turn(&request.messages), ("ab".into(), 1));
    }

    #[test]
    fn chunks_are_words_with_their_space() {
        let answer = expected_answer("hello  big world", 3);
        let chunks: Vec<&str> = answer_chunks(&answer).collect();
        assert_eq!(chunks[..3], ["You ", "said: ", "\"hello "]);
        assert_eq!(chunks.concat(), answer);
    }

    #[test]
    fn failure_markers() {
        assert_eq!(failure("hi"), None);
        assert_eq!(
            failure("x [mock:status=503] y"),
            Some(Failure::Status(StatusCode::SERVICE_UNAVAILABLE))
        );
        assert_eq!(failure("[mock:status=200]"), None);
        assert_eq!(failure("[mock:hang]"), Some(Failure::Hang));
        assert_eq!(
            failure("[mock:nope] [mock:stall-after=4]"),
            Some(Failure::StallAfter(4))
        );
        assert_eq!(failure("[mock:hang"), None);
    }

    fn batches(options: MockLlmOptions, failure: Option<Failure>) -> Vec<(Duration, Bytes)> {
        stream_batches("chatcmpl-1", 0, "m", "a b c", failure, options)
    }

    #[test]
    fn zero_pacing_sends_one_chunk() {
        let all = batches(MockLlmOptions::default(), None);
        assert_eq!(all.len(), 1);
        let text = std::str::from_utf8(&all[0].1).unwrap();
        assert_eq!(
            text.matches("data: ").count(),
            6,
            "role, 3 words, finish, [DONE]: {text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn paced_batches_follow_the_schedule() {
        let ms = Duration::from_millis;
        let options = MockLlmOptions {
            ttft: ms(100),
            token_interval: ms(10),
        };
        let dues: Vec<Duration> = batches(options, None).iter().map(|b| b.0).collect();
        // Role at once; words at 100, 110, 120 (the finish shares the last word's chunk).
        assert_eq!(dues, [ms(0), ms(100), ms(110), ms(120)]);
        let stalled = batches(options, Some(Failure::StallAfter(2)));
        assert_eq!(stalled.len(), 3);
        assert!(
            !std::str::from_utf8(&stalled[2].1)
                .unwrap()
                .contains("finish_reason\":\"stop")
        );
        assert_eq!(batches(options, Some(Failure::Hang)).len(), 1);
    }

    fn start_mock(options: MockLlmOptions) -> MockLlmServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        start(listener, options).unwrap()
    }

    fn client_config(server: &MockLlmServer) -> LlmConfig {
        LlmConfig {
            base_url: ModelEndpoint::OpenAiCompatible(server.base_url()),
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

    #[actix_web::test]
    async fn non_streaming_answer_and_models() {
        let server = start_mock(MockLlmOptions::default());
        let http = reqwest::Client::new();
        let body = serde_json::json!({
            "model": "echo-me",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"},
                         {"role": "user", "content": "b"}],
        });
        let url = format!("{}/chat/completions", server.base_url());
        let response = tokio::time::timeout(BOUND, http.post(url).json(&body).send())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        let value: serde_json::Value = response.json().await.unwrap();
        assert_eq!(value["object"], "chat.completion");
        assert_eq!(value["model"], "echo-me");
        assert!(value["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(
            value["choices"][0]["message"]["content"],
            "You said: \"b\" (turn 2)"
        );
        assert_eq!(value["choices"][0]["finish_reason"], "stop");

        let url = format!("{}/models", server.base_url());
        let models: serde_json::Value = tokio::time::timeout(BOUND, http.get(url).send())
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
        let server = start_mock(MockLlmOptions::default());
        let url = format!("{}/chat/completions", server.base_url());
        let response =
            tokio::time::timeout(BOUND, reqwest::Client::new().post(url).body("{").send())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(response.status(), 400);
        server.stop().await;
    }
}
