//! A streaming client for OpenAI-compatible chat models (OpenAI, vLLM, Ollama,
//! llama.cpp server, and parlor's own mock model).
//!
//! [`LlmClient::stream_request`] posts `{base_url}/chat/completions` with
//! `"stream": true` and turns the server-sent events into [`LlmEvent`]s
//! ([`LlmClient::stream_chat`] is the same for a plain conversation).
//!
//! ## Tools
//!
//! The tools of a [`ModelRequest`] are offered in the OpenAI tool-calling format
//! (`tools: [{"type":"function","function":{name,description,parameters}}]`, left
//! out when there are none). A prompt can carry the model's earlier calls (an
//! assistant message with `tool_calls`, `content: null` when it wrote no text) and
//! their results (`role: "tool"` messages); see [`PromptMessage`].
//!
//! The model streams its calls in fragments; the client puts them together and
//! yields them whole, ordered as the model numbered them, in one
//! [`LlmEvent::ToolCalls`] just before [`LlmEvent::Finished`]. The calls count
//! whatever the finish reason says (`tool_calls` and `stop` both finish with
//! [`FinishReason::Stop`]); a stream that breaks off yields no calls. Arguments are
//! passed on as the model wrote them, valid JSON or not: judging them is the
//! caller's job. A call without an id gets `call_<index>`; a call without a name is
//! dropped with a warning.
//!
//! ## Reasoning
//!
//! The thinking of reasoning models (`delta.reasoning_content`, or
//! `delta.reasoning` on servers that name it so; one of them when both come) is
//! yielded as [`LlmEvent::Reasoning`], never as answer text.
//!
//! ## Failures and timeouts
//!
//! Every failure becomes an [`AgentError`]:
//!
//! - the model cannot be reached (connect error, connect timeout): `Unavailable`;
//! - the model answers an error status, an error event, or a broken stream: `Upstream`;
//! - the model does not begin to answer within `first_token_timeout`, or is silent
//!   for longer than `idle_timeout` once it has begun: `Timeout`. Reasoning and
//!   tool-call fragments count as answering, so a model that thinks for a long time
//!   before its first word of answer is not cut off.
//!
//! Connect errors, HTTP 429 and 5xx are retried with exponential backoff, but only
//! before the first token: once text has reached the caller, a retry would repeat
//! it. Dropping the returned stream drops the HTTP response, which closes the
//! connection, so the model stops generating; nothing outlives the stream.
//!
//! It logs inside whatever span polls its stream (a worker's `turn` span): each
//! request and retry at `debug`, a failure at `warn`.
//!
//! The parts: `request` writes the request body, `chunk` reads one server-sent
//! event, `tool_calls` assembles the calls, `sse` reads the event stream under the
//! timeouts, `error_text` explains failures.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;
use tokio::time::Instant;

mod chunk;
mod error_text;
mod request;
mod sse;
mod tool_calls;

pub(crate) use error_text::describe;
use error_text::error_detail;
use request::request_body;
pub(crate) use sse::EventDecoder;
use sse::SseReader;

use crate::agent::AgentError;
use crate::config::{LlmConfig, ModelEndpoint};
use crate::conversation::{ChatMessage, FinishReason};

/// A `Retry-After` longer than this is not waited for: the error is reported at once.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// What a model's answer stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LlmEvent {
    /// The next piece of answer text (never empty).
    Delta(String),
    /// The next piece of a reasoning model's thinking (`reasoning_content` or
    /// `reasoning` deltas); never answer text.
    Reasoning(String),
    /// The tool calls the model asked for, each whole (assembled from the streamed
    /// fragments), in the model's order. Comes once, just before `Finished`.
    ToolCalls(Vec<ToolCall>),
    /// The answer is complete; always the last item of a successful stream.
    Finished(FinishReason),
}

/// A stream of model events; dropping it cancels the request.
pub type LlmStream = BoxStream<'static, Result<LlmEvent, AgentError>>;

/// A tool offered to the model (OpenAI's `{"type":"function","function":{...}}`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// The JSON Schema of the tool's arguments.
    pub parameters: serde_json::Value,
}

/// A tool call the model made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The model's id for the call; its result is sent back under this id.
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not necessarily valid.
    pub arguments: String,
}

/// One message of a prompt: a chat message, the model's own earlier tool calls,
/// or a tool's result.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptMessage {
    Chat(ChatMessage),
    /// An assistant message that called tools (with the text it wrote meanwhile).
    ToolCalls {
        text: String,
        calls: Vec<ToolCall>,
    },
    /// What the tool call `call_id` answered.
    ToolResult {
        call_id: String,
        content: String,
    },
}

impl From<ChatMessage> for PromptMessage {
    fn from(message: ChatMessage) -> Self {
        PromptMessage::Chat(message)
    }
}

/// What is sent to the model for one answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelRequest {
    pub messages: Vec<PromptMessage>,
    /// The tools the model may call; none: it can only answer.
    pub tools: Vec<ToolSpec>,
}

/// Anything that streams a model's answer: the HTTP client, or a scripted model in
/// tests of the agent loop.
pub trait ChatModel: Send + Sync + 'static {
    fn stream(&self, request: ModelRequest) -> LlmStream;
}

impl ChatModel for LlmClient {
    fn stream(&self, request: ModelRequest) -> LlmStream {
        self.stream_request(request)
    }
}

/// A client for one OpenAI-compatible model. Cheap to clone: clones share the
/// connection pools and the configuration.
#[derive(Clone)]
pub struct LlmClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// One connection pool per thread that asks. A connection's I/O runs on the
    /// runtime that opened it; shared between threads, each chunk of an answer
    /// would cross from that thread to the asking one. Every thread that runs
    /// turns has its own runtime, so each gets connections of its own.
    http: ThreadLocal<reqwest::Client>,
    config: LlmConfig,
    /// `{base_url}/chat/completions`.
    endpoint: String,
    /// `Bearer <api_key>`, when a key is configured.
    authorization: Option<HeaderValue>,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration holds the API key: show only what identifies the model.
        f.debug_struct("LlmClient")
            .field("endpoint", &self.inner.endpoint)
            .field("model", &self.inner.config.model)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// Builds a client for `config.base_url` (an OpenAI-compatible `/v1` base URL,
    /// taken as given). The built-in demo model must have been started, and
    /// `base_url` pointed at it, by then.
    pub fn new(config: &LlmConfig) -> Result<Self, AgentError> {
        let ModelEndpoint::OpenAiCompatible(base_url) = &config.base_url else {
            return Err(AgentError::Unavailable(
                "llm.base_url names the built-in demo model, which is not running".into(),
            ));
        };
        // Built once here so that a configuration it cannot take fails now.
        let http = ThreadLocal::new();
        http.get_or_try(|| http_client(config))?;
        let endpoint = format!(
            "{}/chat/completions",
            base_url.as_str().trim_end_matches('/')
        );
        let authorization = match &config.api_key {
            None => None,
            Some(key) => {
                let mut value =
                    HeaderValue::try_from(format!("Bearer {}", key.expose())).map_err(|_| {
                        AgentError::Unavailable("llm.api_key contains invalid characters".into())
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config: config.clone(),
                endpoint,
                authorization,
            }),
        })
    }

    /// Streams the model's answer to `messages`, offering it no tools.
    pub fn stream_chat(&self, messages: Vec<ChatMessage>) -> LlmStream {
        self.stream_request(ModelRequest {
            messages: messages.into_iter().map(PromptMessage::Chat).collect(),
            tools: Vec::new(),
        })
    }

    /// Streams the model's answer to `request`. The stream ends after a
    /// `Finished` event or after the first error. Dropping it cancels the request.
    pub fn stream_request(&self, request: ModelRequest) -> LlmStream {
        let config = &self.inner.config;
        let body = match request_body(&config.model, config.max_tokens, &request) {
            Ok(body) => body,
            Err(e) => {
                let error = AgentError::Upstream(format!("cannot encode the request: {e}"));
                return stream::once(async move { Err(error) }).boxed();
            }
        };
        // Only the encoded body is kept for the retries.
        drop(request);
        let client = self.clone();
        stream::once(async move { client.open(body).await })
            .flat_map(|opened| match opened {
                Ok(reader) => reader.left_stream(),
                Err(error) => stream::once(async move { Err(error) }).right_stream(),
            })
            .inspect(|event| {
                if let Err(error) = event {
                    tracing::warn!(%error, "the model request failed");
                }
            })
            .boxed()
    }

    /// Sends the request, retrying what may be retried, until a response with a
    /// success status arrives; returns the reader of its event stream.
    async fn open(
        self,
        body: Bytes,
    ) -> Result<SseReader<impl Stream<Item = reqwest::Result<Bytes>>>, AgentError> {
        let config = &self.inner.config;
        let mut attempt: u32 = 0;
        loop {
            // The first-token clock starts when this attempt's request is sent.
            let sent = Instant::now();
            let deadline = sent + config.first_token_timeout();
            // `retry`, not `attempt`: the turn's span has an `attempt` of its own.
            tracing::debug!(retry = attempt, model = %config.model, "sending the model request");
            let failure = match tokio::time::timeout_at(deadline, self.send(body.clone())).await {
                Err(_) => return Err(first_token_timeout(config)),
                Ok(Ok(response)) if response.status().is_success() => {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        wait_ms = crate::telemetry::millis(sent.elapsed()),
                        "the model is answering"
                    );
                    return Ok(SseReader::new(
                        response.bytes_stream(),
                        deadline,
                        config.first_token_timeout(),
                        config.idle_timeout(),
                    ));
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    let retry_after = retry_after(&response);
                    let detail = tokio::time::timeout_at(deadline, error_detail(response))
                        .await
                        .unwrap_or_default();
                    let error =
                        AgentError::Upstream(format!("the model answered HTTP {status}{detail}"));
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable {
                        return Err(error);
                    }
                    match retry_after {
                        Some(wait) if wait > MAX_RETRY_AFTER => return Err(error),
                        _ => FailedAttempt { error, retry_after },
                    }
                }
                Ok(Err(e)) if e.is_connect() => FailedAttempt {
                    error: AgentError::Unavailable(format!(
                        "cannot reach the model at {}: {}",
                        self.inner.endpoint,
                        describe(&e)
                    )),
                    retry_after: None,
                },
                Ok(Err(e)) if e.is_timeout() => return Err(first_token_timeout(config)),
                Ok(Err(e)) => {
                    return Err(AgentError::Upstream(format!(
                        "the request to the model failed: {}",
                        describe(&e)
                    )));
                }
            };
            if attempt >= config.max_retries {
                return Err(failure.error);
            }
            let delay = backoff(config.retry_backoff(), attempt)
                .max(failure.retry_after.unwrap_or_default());
            attempt += 1;
            tracing::debug!(
                retry = attempt,
                max_retries = config.max_retries,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "retrying the model request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn send(&self, body: Bytes) -> reqwest::Result<reqwest::Response> {
        let config = &self.inner.config;
        let http = self.inner.http.get_or(|| {
            http_client(config).expect("the same configuration built a client at the start")
        });
        let mut request = http
            .post(&self.inner.endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(body);
        if let Some(authorization) = &self.inner.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        request.send().await
    }
}

fn http_client(config: &LlmConfig) -> Result<reqwest::Client, AgentError> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout())
        .build()
        .map_err(|e| {
            AgentError::Unavailable(format!("cannot build the HTTP client: {}", describe(&e)))
        })
}

/// A failed attempt that may be retried.
struct FailedAttempt {
    error: AgentError,
    retry_after: Option<Duration>,
}

fn first_token_timeout(config: &LlmConfig) -> AgentError {
    AgentError::Timeout(format!(
        "no answer token from the model within {} ms",
        config.first_token_timeout().as_millis()
    ))
}

/// `base`, doubled for every earlier retry.
fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
}

/// The `Retry-After` header in seconds (the HTTP-date form is not used by model APIs).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 0), base);
        assert_eq!(backoff(base, 1), Duration::from_millis(200));
        assert_eq!(backoff(base, 3), Duration::from_millis(800));
    }
}
