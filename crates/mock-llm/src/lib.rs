//! The mock model: an OpenAI-compatible server whose answers are known in advance,
//! so tests and load tests can check every answer from outside. `parlor mock-llm`
//! serves it; `parlor serve` starts it in-process as the demo model when no model
//! URL is configured.
//!
//! The answer to a chat is `You said: "<content of the last user message>" (turn N)`,
//! N being the number of `user` messages in the request (see [`expected_answer`]).
//! Streamed, it comes one word (with its trailing space) per chunk: the first after
//! `ttft`, then one every `token_interval`. With both at zero the whole answer goes
//! out as one body chunk, so the mock is never the bottleneck of a throughput test.
//!
//! A request's `max_tokens` counts deltas (words, reasoning words, tool-call
//! fragments): a reply with more is cut to its first `max_tokens` and ends with
//! `finish_reason` `length`, streamed or not.
//!
//! Routes: `POST /v1/chat/completions` (streaming and not), `GET /v1/models`, and
//! `GET /stats` ([`MockStatsSnapshot`]: chat requests, streams active now, streams
//! completed, streams cut off by their client before the final event).
//!
//! # Tools and reasoning
//!
//! The mock decides its reply in this order (markers are read from the last user
//! message):
//!
//! 1. The conversation ends with `tool` messages (results of its calls): it answers
//!    from them ([`expected_cited_answer`]: the first sentence of the (up to) three
//!    cited passages that share the most words with the question, each followed by
//!    its `[^<id>]`). Markers asking for calls are
//!    ignored then, so the tool loop always ends.
//! 2. The request offers at least one tool and the conversation ends with the
//!    user's message: it calls tools
//!    - named by `[mock:tool=NAME]` markers, in order, offered or not (an unknown
//!      name is how a test makes the client meet an unknown tool);
//!    - else, with [`MockLlmOptions::call_tools`] (`--tools`) or the
//!      `[mock:tool-args=broken]` marker, every offered tool whose parameters have a
//!      `query` property;
//!
//!    at most [`MAX_TOOL_CALLS`], each as [`mock_tool_call`] makes it (arguments
//!    `{"query":<last user message>,"top_k":3}`). `[mock:tool-args=broken]` cuts
//!    the first call's arguments short, so they are not JSON. With nothing to
//!    call, go on to 3.
//! 3. Otherwise the plain answer above, exactly: it never changes while tools are
//!    not asked for.
//!
//! With `[mock:reasoning]`, [`expected_reasoning`] is streamed word by word as
//! `delta.reasoning_content` before the reply (tool calls or text), on every
//! request of the turn; it is not part of the answer.
//!
//! Tool calls stream as real models send them: the first fragment of each call
//! carries its `index`, `id`, `type` `function`, `function.name` and empty
//! `arguments`; the arguments follow in pieces of a few characters (cut inside the
//! query string), one call after another; then `finish_reason` `tool_calls` and
//! `[DONE]`. Every fragment, like every word, takes one `token_interval`.
//! Non-streamed, the same reply comes whole: `message.tool_calls` (and
//! `message.reasoning_content`) in the usual shape.
//!
//! # Failure simulation
//!
//! Markers in the last user message make the mock misbehave; the answer to any
//! message without them is unaffected (they apply to every request of the turn,
//! after tool results too):
//!
//! - `[mock:status=NNN]` (NNN from 400 to 599): answers HTTP NNN with an OpenAI-style
//!   error body (`{"error":{"message":...,"type":"mock_error","code":NNN}}`), no stream.
//! - `[mock:hang]`: sends the response headers (and the role-only first event), then
//!   nothing, keeping the connection open until the client leaves.
//! - `[mock:stall-after=K]`: sends K chunks (words, reasoning words or tool-call
//!   fragments), then goes silent the same way.
//! - `[mock:endless]`: the streamed answer never ends: after its words come
//!   [`ENDLESS_WORD`]s (`more `), one every `token_interval` (with none, as fast
//!   as the client reads), up to `max_tokens` deltas in all and then `length`;
//!   without `max_tokens`, until the client leaves (counted cancelled). Sent whole,
//!   the answer with its `more ` words up to `max_tokens`, or never without it.
//!   Tool calls are unaffected, so a tool loop still reaches its answer.
//!
//! The crate knows nothing of parlor's service: it speaks only the OpenAI wire
//! format, so it can stand in for any model.

mod answer;
mod cited;
mod events;
mod fault;
mod markers;
mod more_words;
mod plan;
mod reply;
mod request;
mod routes;
mod stats;
mod stream;
mod tools;
mod whole;

use std::any::Any;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Extensions, Server, ServerHandle};
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpServer, web};

pub use answer::{answer_chunks, expected_answer};
pub use cited::{
    CITED_ANSWER_INTRO, MAX_CITED_PASSAGES, NOTHING_FOUND_ANSWER, expected_cited_answer,
};
pub use more_words::ENDLESS_WORD;
pub use reply::expected_reasoning;
pub use stats::{MockStats, MockStatsSnapshot};
pub use tools::{
    MAX_TOOL_CALLS, MockToolCall, TOOL_CALL_TOP_K, mock_tool_call, tool_call_arguments,
};

/// The model id `GET /v1/models` lists, and the `model` of answers to requests
/// that name none.
pub const MOCK_MODEL_ID: &str = "parlor-mock";

/// Largest accepted request body (long conversations are resent in full).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Pacing of the mock's streamed answers, and whether it calls tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockLlmOptions {
    /// Delay from the request to the first answer chunk.
    pub ttft: Duration,
    /// Delay between two answer chunks.
    pub token_interval: Duration,
    /// Call the offered tools that take a `query` before answering (see the crate
    /// docs); off, tools are called only when a marker asks.
    pub call_tools: bool,
}

/// The flags of `parlor mock-llm`.
#[derive(Debug, clap::Args)]
pub struct MockLlmArgs {
    /// Listen address
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    pub bind: String,
    /// Milliseconds before the first token
    #[arg(long, default_value_t = 0, value_name = "T")]
    pub ttft_ms: u64,
    /// Milliseconds between tokens
    #[arg(long, default_value_t = 0, value_name = "D")]
    pub token_ms: u64,
    /// Call the offered tools (those taking a `query`) before answering from their results
    #[arg(long = "tools")]
    pub call_tools: bool,
}

impl MockLlmArgs {
    /// The pacing the flags ask for.
    pub fn options(&self) -> MockLlmOptions {
        MockLlmOptions {
            ttft: Duration::from_millis(self.ttft_ms),
            token_interval: Duration::from_millis(self.token_ms),
            call_tools: self.call_tools,
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
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
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
        call_tools = options.call_tools,
        "listening on http://{addr}"
    );
    server.await
}

fn build_server(
    listener: TcpListener,
    options: MockLlmOptions,
    stats: Arc<MockStats>,
    workers: usize,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let state = web::Data::new(routes::MockState { options, stats });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
            .configure(routes::routes)
    })
    .workers(workers)
    .on_connect(send_without_delay)
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

/// Turns off Nagle's algorithm on an accepted connection. A streamed answer is
/// many small writes; with Nagle, a write that follows an unacknowledged one waits
/// for the peer's delayed ACK, adding ~40 ms to the first chunk of every turn.
/// (parlor's servers have the same few lines in `parlor::net`: a crate shared for
/// them would cost more than the copy, and the mock must not depend on parlor.)
fn send_without_delay(connection: &dyn Any, _: &mut Extensions) {
    if let Some(tcp) = connection.downcast_ref::<TcpStream>()
        && let Err(error) = tcp.set_nodelay(true)
    {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
}
