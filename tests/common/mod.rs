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
mod ws_client;

#[allow(unused_imports)] // as with the rest of this module, each test file uses a part
pub use ws_client::{Client, Turn};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

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
