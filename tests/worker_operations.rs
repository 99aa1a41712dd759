//! `parlor worker`'s operations routes on `worker.bind` (docs/protocol.md#operations):
//! health, readiness that follows its RabbitMQ link and its drain, and the metrics
//! of the turns it answered.

mod common;

use std::time::Duration;

use common::deployment::{Deployment, mid_answer, wait_for_readiness};
use common::proxy::CuttableProxy;
use common::{Client, Process, WAIT, expected_answer, mock_llm};
use serde_json::json;

async fn metrics(worker: &Process) -> String {
    let response = reqwest::get(worker.http("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Waits (at most [`WAIT`]) until the worker's `/metrics` has `line`; answers the text.
async fn wait_for_metric(worker: &Process, line: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics(worker).await;
        if text.lines().any(|sample| sample == line) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_worker_is_healthy_ready_and_counts_the_turn_it_answered() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 0), &[("PARLOR_WORKERS__COUNT", "3")]);
    let gateway = deployment.gateway();
    let worker = deployment.worker();
    assert_ne!(worker.addr, gateway.addr);

    let health = reqwest::get(worker.http("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        json!({ "status": "ok" })
    );
    let ready = wait_for_readiness(&worker, 200).await;
    assert_eq!(ready, json!({ "status": "ready" }));

    let mut client = Client::connect(&gateway).await;
    let text = "count me";
    assert_eq!(client.chat(text).await.answer, expected_answer(text, 1));

    // The worker counts the turn once its question is settled, just after `done`.
    let text = wait_for_metric(
        &worker,
        "parlor_worker_turns_total{outcome=\"completed\"} 1",
    )
    .await;
    for line in [
        "parlor_broker_consumed_total 1",
        "parlor_broker_redelivered_total 0",
        "parlor_worker_restarts_total 0",
        "parlor_worker_turn_duration_seconds_count 1",
        "parlor_workers_size 3",
        "parlor_workers_busy 0",
        "parlor_broker_connected 1",
    ] {
        assert!(
            text.lines().any(|sample| sample == line),
            "no {line:?}:\n{text}"
        );
    }
    assert!(!text.contains(&client.session_id.to_string()));
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("parlor_"), "{line}");
    }
}

#[tokio::test]
async fn a_worker_cut_off_from_rabbitmq_is_not_ready_until_it_is_back() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 0), &[]);
    // Only this worker's way to RabbitMQ goes down; the broker keeps serving others.
    let proxy = CuttableProxy::start("127.0.0.1:5672");
    let via_proxy = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let worker = deployment.worker_with(&[("PARLOR_BROKER__URL", via_proxy)]);
    wait_for_readiness(&worker, 200).await;

    proxy.cut();
    let body = wait_for_readiness(&worker, 503).await;
    assert_eq!(
        body,
        json!({ "status": "unavailable", "reason": "the broker is not connected" })
    );
    wait_for_metric(&worker, "parlor_broker_connected 0").await;
    let health = reqwest::get(worker.http("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "the process still runs");

    proxy.restore();
    wait_for_readiness(&worker, 200).await;
    // Reconnected, it answers again.
    let gateway = deployment.gateway();
    let mut client = Client::connect(&gateway).await;
    assert_eq!(
        client.chat("after").await.answer,
        expected_answer("after", 1)
    );
}

#[tokio::test]
async fn a_worker_draining_after_sigterm_is_not_ready_but_finishes_its_turn() {
    let (deployment, _cleanup) = Deployment::new(
        mock_llm(0, 50),
        &[("PARLOR_WORKER__SHUTDOWN_GRACE_S", "30")],
    );
    let gateway = deployment.gateway();
    let mut worker = deployment.worker();
    wait_for_readiness(&worker, 200).await;
    let mut client = Client::connect(&gateway).await;
    let text = "word ".repeat(60);
    let text = text.trim();
    let turn_id = mid_answer(&mut client, text).await;

    worker.terminate();
    let body = wait_for_readiness(&worker, 503).await;
    assert_eq!(
        body,
        json!({ "status": "unavailable", "reason": "parlor is shutting down" })
    );
    // Meanwhile the running turn goes on to its end.
    let turn = client.read_turn_from(turn_id, 1).await;
    assert_eq!(turn.ending, "stop");

    let status = worker.wait_exit(WAIT).expect("the worker exits");
    assert!(status.success());
}
