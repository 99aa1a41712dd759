//! A deployment of separate processes — gateways, workers, `serve` — around the
//! real RabbitMQ, on a question queue of its own, and what a test asks of them.

use std::time::Duration;

use parlor::protocol::ServerFrame;
use serde_json::Value;
use uuid::Uuid;

use super::rabbitmq::{Cleanup, URL, unique_queue};
use super::{Client, Process, WAIT};

/// One deployment's processes, all on one question queue of their own.
pub struct Deployment {
    pub queue: String,
    pub model: Process,
    settings: Vec<(&'static str, String)>,
}

impl Deployment {
    pub fn new(model: Process, settings: &[(&'static str, &str)]) -> (Deployment, Cleanup) {
        let queue = unique_queue();
        let mut all = vec![
            ("PARLOR_BROKER__URL", URL.to_owned()),
            ("PARLOR_BROKER__QUESTION_QUEUE", queue.clone()),
            ("PARLOR_LLM__BASE_URL", model.http("/v1")),
            ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
            ("PARLOR_WORKER__BIND", "127.0.0.1:0".to_owned()),
        ];
        all.extend(
            settings
                .iter()
                .map(|(key, value)| (*key, (*value).to_owned())),
        );
        let cleanup = Cleanup(queue.clone());
        (
            Deployment {
                queue,
                model,
                settings: all,
            },
            cleanup,
        )
    }

    pub fn gateway(&self) -> Process {
        Process::start(&["gateway"], &self.settings)
    }

    /// A gateway with some settings of its own (later settings win).
    pub fn gateway_with(&self, settings: &[(&'static str, String)]) -> Process {
        Process::start(&["gateway"], &self.with(settings))
    }

    pub fn serve(&self) -> Process {
        Process::start(&["serve"], &self.settings)
    }

    /// A worker; its `addr` is where it serves `/healthz`, `/readyz`, `/metrics`.
    pub fn worker(&self) -> Process {
        self.worker_with(&[])
    }

    /// A worker with some settings of its own (later settings win).
    pub fn worker_with(&self, settings: &[(&'static str, String)]) -> Process {
        Process::start_until(
            &["worker"],
            &self.with(settings),
            "worker listening on http://",
        )
    }

    /// A gateway given leading command-line arguments (such as `--config PATH`).
    pub fn gateway_in(&self, args: &[&str]) -> Process {
        Process::start(&[args, &["gateway"]].concat(), &self.settings)
    }

    /// A worker given leading command-line arguments (such as `--config PATH`).
    pub fn worker_in(&self, args: &[&str]) -> Process {
        Process::start_until(
            &[args, &["worker"]].concat(),
            &self.settings,
            "worker listening on http://",
        )
    }

    fn with(&self, settings: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        self.settings.iter().chain(settings).cloned().collect()
    }
}

/// `GET /readyz`: its status and body.
pub async fn readiness(process: &Process) -> (u16, Value) {
    let response = reqwest::get(process.http("/readyz")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Waits (at most [`WAIT`]) until `/readyz` answers `status`; answers its body.
pub async fn wait_for_readiness(process: &Process, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (now, body) = readiness(process).await;
        if now == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said {status}; last: {now} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a long message and waits for its first chunk: a worker is mid-answer.
pub async fn mid_answer(client: &mut Client, text: &str) -> Uuid {
    let turn_id = client.chat_accepted(text).await;
    assert!(matches!(
        client.next_frame().await,
        ServerFrame::Chunk { seq: 0, .. }
    ));
    turn_id
}
