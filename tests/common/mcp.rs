//! The test MCP server (`examples/mcp_test_server.rs`, built by `cargo test` with
//! the other examples) and configuration files naming MCP servers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Process, WAIT};

/// The test server's binary, next to the `parlor` binary under test.
pub fn test_server_binary() -> PathBuf {
    super::example_binary("mcp_test_server")
}

/// The test MCP server over streamable HTTP, killed when dropped.
pub struct McpHttpServer {
    child: Child,
    pub address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl McpHttpServer {
    /// Starts it on a port of its own.
    pub fn start() -> Self {
        Self::start_at("127.0.0.1:0")
    }

    /// Starts it on `address` (to bring one back on the port it had).
    pub fn start_at(address: &str) -> Self {
        let mut child = Command::new(test_server_binary())
            .args(["--http", address])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the test MCP server");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on http://") {
                    let _ = address_tx.send(rest.trim_end_matches("/mcp").to_owned());
                }
            }
        });
        let address = address_rx
            .recv_timeout(WAIT)
            .expect("the test MCP server did not start");
        Self {
            child,
            address,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    /// Waits (at most [`WAIT`]) for a line of its stderr containing `text`.
    pub async fn wait_for_log_line(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the MCP server never logged {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it at once, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for McpHttpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `[[mcp.servers]]` table for the test server over HTTP.
pub fn http_server_table(name: &str, url: &str) -> String {
    format!("[[mcp.servers]]\nname = \"{name}\"\nurl = \"{url}\"\n")
}

/// A `[[mcp.servers]]` table that starts the test server over stdio, supporting
/// protocol versions up to `newest` (all it knows for `None`), writing its process
/// id to `pid_file`.
pub fn stdio_server_table(name: &str, newest: Option<&str>, pid_file: &Path) -> String {
    let args = match newest {
        Some(version) => format!("[\"--stdio\", \"--protocol\", \"{version}\"]"),
        None => "[\"--stdio\"]".to_owned(),
    };
    format!(
        "[[mcp.servers]]\nname = \"{name}\"\ncommand = \"{binary}\"\nargs = {args}\n\
         env = {{ MCP_TEST_PID_FILE = \"{pid}\" }}\n",
        binary = test_server_binary().display(),
        pid = pid_file.display(),
    )
}

/// A folder holding `parlor.toml` with `text`; pass [`config_args`] to parlor.
pub fn config_file(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("parlor.toml"), text).unwrap();
    dir
}

pub fn config_path(dir: &tempfile::TempDir) -> String {
    dir.path().join("parlor.toml").display().to_string()
}

/// `parlor serve` with the configuration in `dir`, against `model`, with extra
/// `PARLOR_...` settings.
pub fn serve_with_config(
    model: &Process,
    dir: &tempfile::TempDir,
    settings: &[(&str, &str)],
) -> Process {
    let mut env = vec![
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    env.extend(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Process::start(&["--config", &config_path(dir), "serve"], &env)
}

/// The process id a stdio test server wrote to `pid_file`, once it is there and
/// differs from `not` (a restarted server writes a new one).
pub async fn wait_for_pid(pid_file: &Path, not: Option<u32>) -> u32 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && Some(pid) != not
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no (new) process id in {}",
            pid_file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `pid` runs (and is not a zombie).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z'))
    })
}
