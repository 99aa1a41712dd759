//! Turns a gateway failed because it lost RabbitMQ (docs/protocol.md#failures-and-recovery):
//! their clients were told to ask again, so once the gateway is back the workers
//! drop those questions instead of answering them, in full, for nobody.

mod common;

use std::time::Duration;

use common::deployment::{Deployment, mid_answer, wait_for_readiness};
use common::proxy::CuttableProxy;
use common::rabbitmq::wait_for_message_count;
use common::{Client, Process, WAIT, expected_answer, mock_llm, mock_stats, wait_for_mock};

/// Waits (at most [`WAIT`]) until the worker's `/metrics` has `line`.
async fn wait_for_metric(worker: &Process, line: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = reqwest::get(worker.http("/metrics")).await.unwrap();
        let text = response.text().await.unwrap();
        if text.lines().any(|sample| sample == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once a worker has taken a question, the model is asked within milliseconds:
/// this long without a request means it was not asked.
const NO_REQUEST_WITHIN: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_question_waiting_when_its_gateway_lost_the_broker_is_dropped_unanswered() {
    let (deployment, _cleanup) =
        Deployment::new(mock_llm(0, 40), &[("PARLOR_WORKERS__COUNT", "1")]);
    // Only this gateway's way to RabbitMQ goes down.
    let proxy = CuttableProxy::start("127.0.0.1:5672");
    let via_proxy = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let cut_off = deployment.gateway_with(&[("PARLOR_BROKER__URL", via_proxy)]);
    let other = deployment.gateway();
    let worker = deployment.worker();
    wait_for_readiness(&worker, 200).await;

    // The one worker is busy with another gateway's turn for a few seconds...
    let mut busy = Client::connect(&other).await;
    let long = "word ".repeat(100);
    let long = long.trim();
    let busy_turn = mid_answer(&mut busy, long).await;
    // ...so this question waits in the queue.
    let mut client = Client::connect(&cut_off).await;
    let lost = client.chat_accepted("lost in the outage").await;
    wait_for_message_count(&deployment.queue, 1).await;

    proxy.cut();
    assert_eq!(client.read_turn(lost).await.ending, "unavailable");
    proxy.restore();
    wait_for_readiness(&cut_off, 200).await;

    // The busy turn ends; then the worker takes the waiting question, and drops it.
    assert_eq!(busy.read_turn_from(busy_turn, 1).await.ending, "stop");
    wait_for_metric(&worker, "parlor_broker_consumed_total 2").await;
    tokio::time::sleep(NO_REQUEST_WITHIN).await;
    let stats = mock_stats(&deployment.model).await;
    assert_eq!(
        stats["requests"], 1,
        "only the busy turn was asked: {stats}"
    );

    // The client asks again, as told: a first turn, the lost one left out.
    let again = client.chat("asked again").await;
    assert_eq!(again.answer, expected_answer("asked again", 1));
}

/// A process whose way to RabbitMQ a test can cut.
fn via(proxy: &CuttableProxy) -> Vec<(&'static str, String)> {
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    vec![("PARLOR_BROKER__URL", url)]
}

#[tokio::test]
async fn a_turn_redelivered_after_a_broker_outage_is_stopped_at_its_first_answer() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 40), &[]);
    let (gateway_link, worker_link) = (
        CuttableProxy::start("127.0.0.1:5672"),
        CuttableProxy::start("127.0.0.1:5672"),
    );
    let gateway = deployment.gateway_with(&via(&gateway_link));
    let worker = deployment.worker_with(&via(&worker_link));
    wait_for_readiness(&worker, 200).await;
    let mut client = Client::connect(&gateway).await;
    // About 2.5 s of answer: long enough to see whether it is streamed again to its end.
    let text = "word ".repeat(60);
    let turn_id = mid_answer(&mut client, text.trim()).await;

    // The worker goes first, so its question goes back to the queue (were the
    // gateway first, the worker's next answer would find no reply queue, and it
    // would let the question go); then the gateway, which fails the turn.
    worker_link.cut();
    wait_for_message_count(&deployment.queue, 1).await;
    gateway_link.cut();
    assert_eq!(
        client.read_turn_from(turn_id, 1).await.ending,
        "unavailable"
    );
    // The gateway is back first: its cancellation reaches no worker...
    gateway_link.restore();
    wait_for_readiness(&gateway, 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the worker, back later, takes the question and starts answering it,
    // until its first answer reaches the gateway, which cancels it again.
    worker_link.restore();
    wait_for_metric(&worker, "parlor_broker_consumed_total 2").await;
    wait_for_mock(&deployment.model, "the second answer end", |stats| {
        stats["requests"] == 2 && stats["streams_active"] == 0
    })
    .await;
    let stats = mock_stats(&deployment.model).await;
    assert_eq!(stats["streams_completed"], 0, "{stats}");
    assert_eq!(stats["streams_cancelled"], 2, "{stats}");
}
