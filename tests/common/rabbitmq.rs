//! Helpers for tests against the real RabbitMQ at 127.0.0.1:5672 (guest/guest).
//! Tests run in parallel on one broker: each uses its own question queue (so its
//! own names), deletes what it declared, and closes only its own connections.

use std::process::Command;

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use uuid::Uuid;

use super::WAIT;

pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A question queue name no other test uses.
pub fn unique_queue() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

/// Deletes a question queue's queues and exchange when dropped, even when the test
/// fails.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queue = self.0.clone();
        // Drop cannot await, and the test's runtime may be unwinding: use our own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(delete_topology(&queue))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete the test's queues: {deleted:?}");
        }
    }
}

async fn delete_topology(queue: &str) -> Result<(), lapin::Error> {
    let connection = Connection::connect(URL, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    for name in [
        queue.to_owned(),
        format!("{queue}.dead"),
        format!("{queue}.orphans"),
    ] {
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    let cancels = format!("{queue}.cancel");
    channel
        .exchange_delete(cancels.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    connection.close(200, "cleaned up".into()).await
}

/// How many messages wait in `queue` (declared passively: it must exist).
pub async fn message_count(queue: &str) -> u32 {
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap();
    let _ = connection.close(200, "counted".into()).await;
    declared.message_count()
}

/// Waits until `queue` holds `count` messages, failing after [`WAIT`]. RabbitMQ
/// takes back a closed connection's unacknowledged messages asynchronously, so a
/// count read right after a process exits may not show them yet.
pub async fn wait_for_message_count(queue: &str, count: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = message_count(queue).await;
        if now == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} holds {now} messages, not {count}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Closes, from the server side, every connection the parlor processes of
/// `question_queue` opened — as a broker restart would, but only for this test.
pub fn close_connections_of(question_queue: &str) -> usize {
    close_connections_matching(&format!("parlor-{question_queue}-"))
}

/// Closes, from the server side, every connection whose client properties (its
/// `connection_name`) contain `marker`; answers how many.
pub fn close_connections_matching(marker: &str) -> usize {
    let listing = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(marker))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for pid in &pids {
        let closed = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: simulated outage"])
            .status()
            .expect("rabbitmqctl");
        assert!(closed.success(), "rabbitmqctl close_connection failed");
    }
    pids.len()
}
