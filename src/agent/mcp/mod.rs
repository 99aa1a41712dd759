//! The MCP client: the tools of the servers in `[[mcp.servers]]`, offered to the
//! model next to the knowledge sources (docs/mcp.md).
//!
//! Each server has a [`Link`] and a task that keeps it connected ([`link`]). A
//! turn takes the tools of the servers connected when it starts; a server that is
//! down only leaves its tools out. Nothing here stops parlor from starting or
//! serving: a server that cannot be reached is retried in the background.

mod connect;
mod link;
pub mod names;
mod tool;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use connect::probe;
pub use link::{ServerState, ServerStatus};
pub use tool::McpTool;

use crate::agent::tools::Tool;
use crate::config::McpConfig;
use link::Link;

/// The configured MCP servers and the tasks that keep them connected. Cheap to
/// clone; every clone sees the same servers.
#[derive(Clone, Default)]
pub struct McpServers {
    links: Arc<[Arc<Link>]>,
    stop: CancellationToken,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

/// How long stopping waits for the servers' connections to close (a stdio
/// server's process gets a few seconds to exit before it is killed).
const STOP_GRACE: Duration = Duration::from_secs(10);

impl McpServers {
    /// Starts connecting to every server of `config` (on the current Tokio
    /// runtime) and returns at once.
    pub fn start(config: &McpConfig) -> Self {
        let links: Arc<[Arc<Link>]> = config.servers.iter().cloned().map(Link::new).collect();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for link in links.iter() {
            tasks.spawn(link::supervise(link.clone(), stop.clone()));
        }
        if !links.is_empty() {
            tracing::info!(servers = links.len(), "connecting to the MCP servers");
        }
        Self {
            links,
            stop,
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// The names of the configured servers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|link| link.name())
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The tools of the servers connected now, server by server in configuration order.
    pub fn tools(&self) -> Vec<Arc<McpTool>> {
        self.links.iter().flat_map(|link| link.tools()).collect()
    }

    /// The same, as the agent's tools.
    pub fn agent_tools(&self) -> impl Iterator<Item = Arc<dyn Tool>> + use<> {
        self.tools().into_iter().map(|tool| tool as Arc<dyn Tool>)
    }

    /// Where each server's connection stands.
    pub fn statuses(&self) -> Vec<ServerStatus> {
        self.links.iter().map(|link| link.status()).collect()
    }

    /// Closes every connection and ends the stdio servers' processes; returns when
    /// they are closed or after a grace period.
    pub async fn stop(&self) {
        self.stop.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let closed = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if closed.is_err() {
            tracing::warn!("MCP servers did not close in time; leaving them");
        }
    }
}
