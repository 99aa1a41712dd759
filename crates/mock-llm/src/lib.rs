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
//!
//! The crate knows nothing of parlor's service: it speaks only the OpenAI wire
//! format, so it can stand in for any model.

mod answer;
mod fault;
mod routes;
mod stats;
mod stream;

use std::any::Any;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Extensions, Server, ServerHandle};
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpServer, web};

pub use answer::{answer_chunks, expected_answer};
pub use stats::{MockStats, MockStatsSnapshot};

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
}

impl MockLlmArgs {
    /// The pacing the flags ask for.
    pub fn options(&self) -> MockLlmOptions {
        MockLlmOptions {
            ttft: Duration::from_millis(self.ttft_ms),
            token_interval: Duration::from_millis(self.token_ms),
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
