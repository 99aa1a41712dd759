//! Shared helpers for the integration tests: start real `parlor` processes on port
//! 0 and talk to them over real sockets. Every wait is bounded.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod a2a;
pub mod deployment;
pub mod mcp;
pub mod postgres;
pub mod proxy;
pub mod rabbitmq;
pub mod raw_ws;
pub mod sse;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parlor::conversation::ChatError;
use parlor::protocol::ServerFrame;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A `parlor` child process, killed when dropped.
pub struct Process {
    child: Child,
    /// An empty working directory, so no stray `config.toml` is read.
    _workdir: tempfile::TempDir,
    /// `host:port` it listens on.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `parlor <args>` in an empty working directory with `env` set, and
    /// waits until it logs the address it listens on.
    pub fn start(args: &[&str], env: &[(&str, String)]) -> Process {
        Self::start_until(args, env, "listening on http://")
    }

    /// Starts `parlor <args>` and waits until it logs a line containing `ready`;
    /// when that is `listening on http://`, the address after it is kept.
    pub fn start_until(args: &[&str], env: &[(&str, String)], ready: &str) -> Process {
        Self::start_program(Path::new(env!("CARGO_BIN_EXE_parlor")), args, env, ready)
    }

    /// Starts `program` with `args` as [`start_until`](Self::start_until) starts parlor.
    pub fn start_program(
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        ready: &str,
    ) -> Process {
        let workdir = tempfile::tempdir().expect("a working directory");
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(workdir.path())
            .env("RUST_LOG", "info")
            .env_remove("PARLOR_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start parlor");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            // Keep reading so the child never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(&ready).nth(1) {
                    let addr_chars = |c: char| c.is_ascii_alphanumeric() || ".:[]-".contains(c);
                    let addr: String = rest.chars().take_while(|&c| addr_chars(c)).collect();
                    let _ = addr_tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => Process {
                child,
                _workdir: workdir,
                addr,
                log,
            },
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().unwrap().join("\n");
                panic!(
                    "{} {args:?} did not start; its log:\n{log}",
                    program.display()
                );
            }
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{query}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The first line of the log containing `text`, waiting for it (the log is read
    /// from the process's stderr by a thread of its own) at most [`WAIT`].
    pub async fn wait_for_log_line(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(text))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{text:?} never logged"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM, as a service manager stopping parlor would.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGKILL: the process dies at once, as in a crash.
    pub fn kill_hard(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The process's resident memory, in bytes (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Waits (at most `within`) for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `parlor mock-llm` with the given pacing.
pub fn mock_llm(ttft_ms: u64, token_ms: u64) -> Process {
    let (ttft, token) = (ttft_ms.to_string(), token_ms.to_string());
    let args = [
        "mock-llm",
        "--bind",
        "127.0.0.1:0",
        "--ttft-ms",
        &ttft,
        "--token-ms",
        &token,
    ];
    Process::start(&args, &[])
}

/// Starts `parlor serve` against `model` with extra `PARLOR_...` settings.
pub fn serve(model: &Process, settings: &[(&str, &str)]) -> Process {
    let mut env = vec![
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    env.extend(
        settings
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned())),
    );
    Process::start(&["serve"], &env)
}

/// Starts `parlor agent` (the A2A server) on a port of its own against `model`.
pub fn a2a_agent(model: &Process) -> Process {
    a2a_agent_with(model, &[])
}

/// Like [`a2a_agent`], with more settings (`PARLOR_…` variables).
pub fn a2a_agent_with(model: &Process, settings: &[(&str, &str)]) -> Process {
    let mut env = vec![
        ("PARLOR_AGENT__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    env.extend(
        settings
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned())),
    );
    Process::start_until(&["agent"], &env, "agent listening on http://")
}

/// The A2A conformance suite's agent (`examples/tck_agent.rs`) on a free port.
pub fn tck_agent() -> Process {
    let program = example_binary("tck_agent");
    Process::start_program(&program, &["127.0.0.1:0"], &[], "listening on http://")
}

/// The binary of example `name`, next to the `parlor` binary under test.
pub fn example_binary(name: &str) -> PathBuf {
    let parlor = Path::new(env!("CARGO_BIN_EXE_parlor"));
    let binary = parlor
        .parent()
        .expect("the binary's folder")
        .join("examples")
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: `cargo test --workspace` builds it; after a narrower \
         `cargo test`, run `cargo build --example {name}` first",
        binary.display()
    );
    binary
}

/// The mock model's counters (`GET /stats`).
pub async fn mock_stats(model: &Process) -> Value {
    reqwest::get(model.http("/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the mock's stats until `check` holds, failing after [`WAIT`].
pub async fn wait_for_mock(model: &Process, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = mock_stats(model).await;
        if check(&stats) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mock never showed {what}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gateway holds `count` sessions in memory (its
/// `parlor_sessions_active` metric), failing after [`WAIT`].
pub async fn wait_for_sessions_in_memory(server: &Process, count: usize) {
    let expected = format!("parlor_sessions_active {count}\n");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = reqwest::get(server.http("/metrics")).await.unwrap();
        let metrics = metrics.text().await.unwrap();
        if metrics.contains(&expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never held {count} sessions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer the mock model gives to `text` as the conversation's `turn`th message.
pub fn expected_answer(text: &str, turn: usize) -> String {
    format!("You said: \"{text}\" (turn {turn})")
}

/// A WebSocket chat client.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session_id: Uuid,
}

/// One finished turn as the client saw it.
#[derive(Debug)]
pub struct Turn {
    pub turn_id: Uuid,
    pub answer: String,
    pub chunks: usize,
    /// The `done` frame's finish reason, or the `error` frame's code.
    pub ending: String,
    /// The turn's `tool`, `references` and `reasoning` frames, in order.
    pub events: Vec<ServerFrame>,
    /// The `error` frame that ended the turn, if one did.
    pub error: Option<ChatError>,
}

impl Client {
    /// Connects and reads the `session` frame.
    pub async fn connect(server: &Process) -> Client {
        Self::connect_url(&server.ws_url("")).await
    }

    pub async fn connect_url(url: &str) -> Client {
        Self::connect_request(url).await
    }

    /// Connects with a request of its own (headers such as `Authorization`).
    pub async fn connect_request(request: impl IntoClientRequest + Unpin) -> Client {
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self::opened(socket).await
    }

    /// Connects from the local address `from` (any of 127.0.0.0/8 on Linux), as a
    /// client on another machine would: the gateway tells clients apart by address.
    pub async fn connect_from(server: &Process, from: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(format!("{from}:0").parse().expect("an IPv4 address"))
            .expect("bind the local address");
        let stream = socket
            .connect(server.addr.parse().expect("IP:port"))
            .await
            .expect("connect");
        let handshake =
            tokio_tungstenite::client_async(server.ws_url(""), MaybeTlsStream::Plain(stream));
        let (socket, _) = tokio::time::timeout(WAIT, handshake)
            .await
            .expect("handshake timed out")
            .expect("handshake");
        Self::opened(socket).await
    }

    async fn opened(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        let mut client = Client {
            socket,
            session_id: Uuid::nil(),
        };
        match client.next_frame().await {
            ServerFrame::Session { session_id } => client.session_id = session_id,
            other => panic!("first frame must be `session`, got {other:?}"),
        }
        client
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.socket
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_message(&mut self, text: &str) {
        self.send_json(serde_json::json!({ "type": "message", "text": text }))
            .await;
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next JSON frame (WebSocket control frames are skipped).
    pub async fn next_frame(&mut self) -> ServerFrame {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("no frame within the wait")
                .expect("the connection closed")
                .expect("a WebSocket error");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not a server frame: {text}: {e}"));
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Keeps the connection open for `duration`, reading (so pings get their pongs)
    /// and failing on anything but pings.
    pub async fn idle_for(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        while let Ok(message) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            match message {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected only pings while idle, got {other:?}"),
            }
        }
    }

    /// Whether the server closed the connection (within the wait).
    pub async fn closed_by_server(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    /// The code of the close frame the server sends next (frames before it are
    /// skipped); `None` if the connection ended without one, or not within the wait.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Sends `text` and reads its turn to the end, checking `accepted` comes first.
    pub async fn chat(&mut self, text: &str) -> Turn {
        self.send_message(text).await;
        let turn_id = self.expect_accepted().await;
        self.read_turn(turn_id).await
    }

    /// Sends `text` and waits for its `accepted` only.
    pub async fn chat_accepted(&mut self, text: &str) -> Uuid {
        self.send_message(text).await;
        self.expect_accepted().await
    }

    /// Reads the `history` frame a returning client gets first.
    pub async fn expect_history(&mut self) -> Vec<parlor::protocol::HistoryEntry> {
        match self.next_frame().await {
            ServerFrame::History { messages } => messages,
            other => panic!("expected `history`, got {other:?}"),
        }
    }

    pub async fn expect_accepted(&mut self) -> Uuid {
        match self.next_frame().await {
            ServerFrame::Accepted { turn_id } => turn_id,
            other => panic!("expected `accepted`, got {other:?}"),
        }
    }

    /// Reads the frames of `turn_id` until its `done` or `error`, checking that
    /// chunk numbers start at 0 and have no gaps.
    pub async fn read_turn(&mut self, turn_id: Uuid) -> Turn {
        self.read_turn_from(turn_id, 0).await
    }

    /// Like [`Client::read_turn`], when chunks before `first_seq` were already read.
    pub async fn read_turn_from(&mut self, turn_id: Uuid, first_seq: usize) -> Turn {
        let mut answer = String::new();
        let mut chunks = first_seq;
        let mut events = Vec::new();
        loop {
            match self.next_frame().await {
                event @ (ServerFrame::Tool { turn_id: id, .. }
                | ServerFrame::References { turn_id: id, .. }
                | ServerFrame::Reasoning { turn_id: id, .. }) => {
                    assert_eq!(id, turn_id, "an event of another turn");
                    events.push(event);
                }
                ServerFrame::Chunk {
                    turn_id: id,
                    seq,
                    text,
                } => {
                    assert_eq!(id, turn_id, "a chunk of another turn");
                    assert_eq!(seq, chunks as u64, "chunk numbers must have no gaps");
                    answer.push_str(&text);
                    chunks += 1;
                }
                ServerFrame::Done {
                    turn_id: id,
                    finish_reason,
                } => {
                    assert_eq!(id, turn_id);
                    let ending = serde_json::to_value(finish_reason).unwrap();
                    let ending = ending.as_str().unwrap().to_owned();
                    return Turn {
                        turn_id,
                        answer,
                        chunks,
                        ending,
                        events,
                        error: None,
                    };
                }
                ServerFrame::Error { turn_id: id, error } => {
                    assert_eq!(id, Some(turn_id));
                    return Turn {
                        turn_id,
                        answer,
                        chunks,
                        ending: error.code.to_string(),
                        events,
                        error: Some(error),
                    };
                }
                other => panic!("unexpected frame in a turn: {other:?}"),
            }
        }
    }
}

/// Runs `parlor <args>` in an empty working directory until it exits, killing it
/// (and failing the test) after `limit`. Returns its exit status, stdout and stderr.
pub fn run_to_end(args: &[&str], limit: Duration) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    let workdir = tempfile::tempdir().expect("a working directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(args)
        .current_dir(workdir.path())
        .env_remove("PARLOR_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parlor");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for parlor") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
            panic!("parlor {args:?} ran longer than {limit:?}; stdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}
