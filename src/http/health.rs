//! `GET /healthz` (the process runs) and `GET /readyz` (it can take work), for any
//! process that says when it is ready: the gateway ([`AppState`]: it can take chats)
//! and `parlor worker` ([`WorkerReadiness`]: it can take questions).

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio::sync::watch;

use super::AppState;
use crate::actors::agent_pool::PoolStatus;
use crate::agent::mcp::McpServers;
use crate::broker::Broker;
use crate::draining::Draining;

/// Whether a process can take work now.
pub trait Readiness: Send + Sync + 'static {
    /// Why it cannot, if it cannot.
    fn not_ready_because(&self) -> Option<&'static str>;

    /// The MCP servers the process connects to. One that is down leaves its tools
    /// out but does not make the process unready; `/readyz` names it.
    fn mcp(&self) -> Option<&McpServers> {
        None
    }
}

pub fn routes(config: &mut web::ServiceConfig, readiness: Arc<dyn Readiness>) {
    config
        .app_data(web::Data::from(readiness))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<dyn Readiness>) -> HttpResponse {
    let not_ready_because = readiness.not_ready_because();
    let mut body = match not_ready_because {
        None => json!({ "status": "ready" }),
        Some(reason) => json!({ "status": "unavailable", "reason": reason }),
    };
    if let Some(mcp) = readiness.mcp().filter(|mcp| !mcp.is_empty()) {
        body["mcp_servers"] = mcp_detail(mcp);
    }
    match not_ready_because {
        None => HttpResponse::Ok().json(body),
        Some(_) => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// Each MCP server's state, without the reasons (they may name hosts; operators
/// read them in `/admin/stats` and the log).
fn mcp_detail(mcp: &McpServers) -> serde_json::Value {
    mcp.statuses()
        .into_iter()
        .map(|server| {
            json!({
                "name": server.name,
                "state": server.state,
                "tools": server.tools,
            })
        })
        .collect()
}

const SHUTTING_DOWN: &str = "parlor is shutting down";
const BROKER_DOWN: &str = "the broker is not connected";
const POOL_DOWN: &str = "the worker pool is not running";
const STORAGE_DOWN: &str = "the conversation storage is unavailable";

/// A gateway can take chats.
impl Readiness for AppState {
    fn not_ready_because(&self) -> Option<&'static str> {
        if self.sessions.draining.is_draining() {
            return Some(SHUTTING_DOWN);
        }
        if !self.broker.is_connected() {
            return Some(BROKER_DOWN);
        }
        if self.pool.as_ref().is_some_and(|pool| !pool.connected()) {
            return Some(POOL_DOWN);
        }
        if !self.sessions.recorder.is_available() {
            return Some(STORAGE_DOWN);
        }
        None
    }

    fn mcp(&self) -> Option<&McpServers> {
        Some(&self.mcp)
    }
}

/// A `parlor worker` can take questions: it is not stopping, its broker is
/// connected, and its pool runs and takes questions.
pub struct WorkerReadiness {
    pub draining: Draining,
    pub broker: Arc<dyn Broker>,
    /// The pool's status; closed when the pool stops.
    pub pool: watch::Receiver<PoolStatus>,
    pub mcp: McpServers,
}

impl Readiness for WorkerReadiness {
    fn not_ready_because(&self) -> Option<&'static str> {
        if self.draining.is_draining() {
            return Some(SHUTTING_DOWN);
        }
        if !self.broker.is_connected() {
            return Some(BROKER_DOWN);
        }
        if self.pool.has_changed().is_err() {
            return Some(POOL_DOWN);
        }
        if !self.pool.borrow().taking {
            return Some("the worker pool takes no questions");
        }
        None
    }

    fn mcp(&self) -> Option<&McpServers> {
        Some(&self.mcp)
    }
}

/// `parlor agent` can take tasks while it is not stopping.
pub struct AgentReadiness {
    pub draining: Draining,
    pub mcp: McpServers,
}

impl Readiness for AgentReadiness {
    fn not_ready_because(&self) -> Option<&'static str> {
        self.draining.is_draining().then_some(SHUTTING_DOWN)
    }

    fn mcp(&self) -> Option<&McpServers> {
        Some(&self.mcp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::embedded::EmbeddedBroker;

    fn worker(status: PoolStatus) -> (WorkerReadiness, watch::Sender<PoolStatus>) {
        let (sender, pool) = watch::channel(status);
        let readiness = WorkerReadiness {
            draining: Draining::default(),
            broker: Arc::new(EmbeddedBroker::new(1)),
            pool,
            mcp: McpServers::default(),
        };
        (readiness, sender)
    }

    const TAKING: PoolStatus = PoolStatus {
        size: 4,
        busy: 0,
        taking: true,
    };

    #[test]
    fn a_worker_is_ready_while_its_pool_takes_questions() {
        let (readiness, _pool) = worker(TAKING);
        assert_eq!(readiness.not_ready_because(), None);
    }

    #[test]
    fn a_worker_whose_pool_stopped_taking_or_running_is_not_ready() {
        let (readiness, pool) = worker(TAKING);
        pool.send_replace(PoolStatus {
            taking: false,
            ..TAKING
        });
        let reason = readiness.not_ready_because();
        assert_eq!(reason, Some("the worker pool takes no questions"));
        drop(pool);
        assert_eq!(readiness.not_ready_because(), Some(POOL_DOWN));
    }

    #[test]
    fn a_draining_worker_says_so_first() {
        let (readiness, pool) = worker(TAKING);
        readiness.draining.begin();
        assert_eq!(readiness.not_ready_because(), Some(SHUTTING_DOWN));
        drop(pool);
        assert_eq!(readiness.not_ready_because(), Some(SHUTTING_DOWN));
    }
}
