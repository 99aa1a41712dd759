//! One configured MCP server and the task that keeps parlor connected to it.
//!
//! The task connects, lists the server's tools, and then watches the connection:
//! it lists them again when the server says its list changed, and checks the
//! connection with a ping when a call on it failed, and every [`PING_EVERY`]. When the connection ends (a
//! stdio server exited, an HTTP server stopped answering) the server's tools are
//! left out of new turns and the task connects again, after a delay that doubles
//! from [`FIRST_RETRY`] to [`LAST_RETRY`] while attempts keep failing. A stdio
//! server is a child process of this one: reconnecting starts it again, and
//! stopping closes its stdin, then signals it, then kills it.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rmcp::Peer;
use rmcp::RoleClient;
use rmcp::model::{ClientRequest, PingRequest};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connect::{self, Connection, Listener};
use super::tool::McpTool;
use crate::config::{McpServerConfig, McpTransport};

/// The first delay before connecting again.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest delay between attempts.
pub const LAST_RETRY: Duration = Duration::from_secs(30);
/// How long connecting to an HTTP server (and the handshake) may take, and
/// listing any server's tools.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long starting a stdio server and its handshake may take: starting it may
/// mean installing it first (`npx -y …` took 17 s here with a warm cache).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection that lasted this long was a good one: the next failure retries soon.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle connection is pinged, so a server that went away without
/// closing it (an HTTP server's host lost) is noticed without a call failing.
const PING_EVERY: Duration = Duration::from_secs(20);

/// A configured server, what parlor knows of it now, and its current connection.
pub struct Link {
    config: McpServerConfig,
    state: RwLock<LinkState>,
    /// Set by the server's `notifications/tools/list_changed`.
    tools_changed: Arc<Notify>,
    /// Set when a call failed in a way that may mean the connection is gone.
    doubted: Notify,
}

struct LinkState {
    status: ServerState,
    peer: Option<Peer<RoleClient>>,
    tools: Vec<Arc<McpTool>>,
    protocol_version: Option<String>,
    last_error: Option<String>,
    since: SystemTime,
    connections: u64,
}

/// Where a server's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Connecting,
    Connected,
    /// Not connected; the next attempt is on its way.
    Down,
}

/// A server as `/readyz` and `/admin/stats` show it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerStatus {
    pub name: String,
    /// `http` or `stdio`.
    pub transport: &'static str,
    pub state: ServerState,
    /// How many tools it offers (none while it is not connected).
    pub tools: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Why the last connection ended or failed (for operators; may name the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Seconds since the state last changed.
    pub for_s: u64,
    /// Connections made so far (more than one: it was reconnected).
    pub connections: u64,
}

impl Link {
    pub fn new(config: McpServerConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: RwLock::new(LinkState {
                status: ServerState::Connecting,
                peer: None,
                tools: Vec::new(),
                protocol_version: None,
                last_error: None,
                since: SystemTime::now(),
                connections: 0,
            }),
            tools_changed: Arc::default(),
            doubted: Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The connection calls go through, if there is one.
    pub fn peer(&self) -> Option<Peer<RoleClient>> {
        self.read().peer.clone()
    }

    /// The server's tools, while it is connected.
    pub fn tools(&self) -> Vec<Arc<McpTool>> {
        self.read().tools.clone()
    }

    /// Asks the supervising task to check the connection (a call on it failed).
    pub fn suspect_connection(&self) {
        self.doubted.notify_one();
    }

    pub fn status(&self) -> ServerStatus {
        let state = self.read();
        ServerStatus {
            name: self.config.name.clone(),
            transport: match self.config.transport() {
                McpTransport::Http { .. } => "http",
                McpTransport::Stdio { .. } => "stdio",
            },
            state: state.status,
            tools: state.tools.len(),
            protocol_version: state.protocol_version.clone(),
            last_error: state.last_error.clone(),
            for_s: state.since.elapsed().map_or(0, |elapsed| elapsed.as_secs()),
            connections: state.connections,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LinkState> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut LinkState)) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = state.status;
        change(&mut state);
        if state.status != before {
            state.since = SystemTime::now();
        }
    }

    fn connecting(&self) {
        self.update(|state| state.status = ServerState::Connecting);
    }

    fn connected(&self, connection: &Connection, tools: Vec<Arc<McpTool>>) {
        let version = connection
            .peer_info()
            .map(|info| info.protocol_version.to_string());
        tracing::info!(
            mcp_server = %self.name(),
            tools = tools.len(),
            protocol_version = version.as_deref().unwrap_or("?"),
            "MCP server connected"
        );
        self.update(|state| {
            state.status = ServerState::Connected;
            state.peer = Some(connection.peer().clone());
            state.tools = tools;
            state.protocol_version = version;
            state.connections += 1;
        });
    }

    /// Not connected (any more): why, and when the next attempt is (`None`: there
    /// is none, parlor is stopping).
    fn down(&self, reason: String, retry_in: Option<Duration>) {
        match retry_in {
            Some(retry_in) => tracing::warn!(
                mcp_server = %self.name(),
                reason,
                retry_in_ms = crate::telemetry::millis(retry_in),
                "MCP server unavailable; its tools are left out meanwhile"
            ),
            None => tracing::info!(mcp_server = %self.name(), "MCP connection closed"),
        }
        self.update(|state| {
            state.status = ServerState::Down;
            state.peer = None;
            state.tools.clear();
            state.last_error = Some(reason);
        });
    }
}

/// Keeps `link` connected until `stop` is cancelled; then closes the connection
/// (and, for a stdio server, ends its process).
pub async fn supervise(link: Arc<Link>, stop: CancellationToken) {
    let mut delay = FIRST_RETRY;
    loop {
        link.connecting();
        let listener = Listener {
            tools_changed: link.tools_changed.clone(),
        };
        let timeout = match link.config.transport() {
            McpTransport::Http { .. } => CONNECT_TIMEOUT,
            McpTransport::Stdio { .. } => START_TIMEOUT,
        };
        let opened = tokio::select! {
            () = stop.cancelled() => return,
            opened = tokio::time::timeout(timeout, connect::open(&link.config, listener)) => opened,
        };
        let reason = match opened {
            Err(_) => "connecting took too long".to_owned(),
            Ok(Err(reason)) => reason,
            Ok(Ok(connection)) => {
                let started = Instant::now();
                let reason = watch(&link, connection, &stop).await;
                if stop.is_cancelled() {
                    link.down("parlor is stopping".into(), None);
                    return;
                }
                if started.elapsed() >= STABLE_AFTER {
                    delay = FIRST_RETRY;
                }
                reason
            }
        };
        link.down(reason, Some(delay));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = next_retry(delay);
    }
}

/// The delay after `delay`, while attempts keep failing.
fn next_retry(delay: Duration) -> Duration {
    (delay * 2).min(LAST_RETRY)
}

/// Serves one connection: lists its tools, then follows it until it ends (why it
/// ended is returned) or `stop` is cancelled (then it is closed first).
async fn watch(link: &Arc<Link>, connection: Connection, stop: &CancellationToken) -> String {
    let closer = connection.cancellation_token();
    let peer = connection.peer().clone();
    match list_tools(link, &peer).await {
        Ok(tools) => link.connected(&connection, tools),
        Err(reason) => {
            let _ = connection.cancel().await;
            return reason;
        }
    }
    let mut ended = tokio::spawn(connection.waiting());
    let reason = loop {
        tokio::select! {
            () = stop.cancelled() => break "parlor is stopping".to_owned(),
            quit = &mut ended => return match quit {
                Ok(reason) => format!("the connection ended ({reason:?})"),
                Err(error) => format!("the connection's task failed: {error}"),
            },
            () = link.tools_changed.notified() => {
                if let Err(reason) = relist(link, &peer).await {
                    break reason;
                }
            }
            () = link.doubted.notified() => {
                if let Err(reason) = ping(&peer).await {
                    break reason;
                }
            }
            () = tokio::time::sleep(PING_EVERY) => {
                if let Err(reason) = ping(&peer).await {
                    break reason;
                }
            }
        }
    };
    closer.cancel();
    // Closing a stdio server waits for its process (it is killed after a few seconds).
    let _ = ended.await;
    reason
}

/// Whether the server answers a ping in time.
async fn ping(peer: &Peer<RoleClient>) -> Result<(), String> {
    let ping = peer.send_request(ClientRequest::PingRequest(PingRequest::default()));
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("it did not answer a ping: {error}")),
        Err(_) => Err("it did not answer a ping in time".to_owned()),
    }
}

/// Lists the tools again after the server said they changed.
async fn relist(link: &Arc<Link>, peer: &Peer<RoleClient>) -> Result<(), String> {
    let tools = list_tools(link, peer).await?;
    tracing::info!(mcp_server = %link.name(), tools = tools.len(), "MCP server's tools changed");
    link.update(|state| state.tools = tools);
    Ok(())
}

/// Lists the server's tools, as the model will see them.
async fn list_tools(
    link: &Arc<Link>,
    peer: &Peer<RoleClient>,
) -> Result<Vec<Arc<McpTool>>, String> {
    let listed = tokio::time::timeout(CONNECT_TIMEOUT, peer.list_all_tools())
        .await
        .map_err(|_| "listing its tools took too long".to_owned())?
        .map_err(|error| format!("listing its tools failed: {error}"))?;
    Ok(listed
        .iter()
        .map(|tool| Arc::new(McpTool::new(link.clone(), tool)))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn link() -> Arc<Link> {
        Link::new(McpServerConfig {
            name: "tickets".into(),
            url: None,
            headers: BTreeMap::new(),
            command: Some("true".into()),
            args: Vec::new(),
            env: BTreeMap::new(),
        })
    }

    #[test]
    fn a_new_link_is_connecting_with_no_tools() {
        let link = link();
        let status = link.status();
        assert_eq!(status.state, ServerState::Connecting);
        assert_eq!((status.tools, status.connections), (0, 0));
        assert_eq!(status.transport, "stdio");
        assert!(link.peer().is_none());
        assert!(link.tools().is_empty());
    }

    #[test]
    fn going_down_keeps_the_reason_and_clears_the_tools() {
        let link = link();
        link.down("it exited".into(), Some(FIRST_RETRY));
        let status = link.status();
        assert_eq!(status.state, ServerState::Down);
        assert_eq!(status.last_error.as_deref(), Some("it exited"));
        link.connecting();
        assert_eq!(link.status().state, ServerState::Connecting);
        assert_eq!(link.status().last_error.as_deref(), Some("it exited"));
    }

    #[test]
    fn retries_double_up_to_the_last_delay() {
        let mut delay = FIRST_RETRY;
        let mut delays = Vec::new();
        for _ in 0..9 {
            delays.push(delay.as_millis());
            delay = next_retry(delay);
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[tokio::test]
    async fn a_command_that_is_not_an_mcp_server_is_retried_and_stops_on_request() {
        // `true` exits at once: the handshake fails, and the link says so.
        let link = link();
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(link.clone(), stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.status().state != ServerState::Down {
            assert!(Instant::now() < deadline, "never down: {:?}", link.status());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(link.status().last_error.is_some());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the supervisor stops when asked")
            .unwrap();
    }
}
