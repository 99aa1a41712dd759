//! Gateways and workers as separate processes around the real RabbitMQ (docs/protocol.md#rabbitmq-topology):
//! nothing lost or misrouted, crashes redelivered, cancels crossing processes,
//! poison set aside, outages survived without a restart.

mod common;

use std::time::Duration;

use common::deployment::{Deployment, mid_answer, readiness, wait_for_readiness};
use common::proxy::CuttableProxy;
use common::rabbitmq::{close_connections_of, message_count};
use common::{Client, WAIT, expected_answer, mock_llm, wait_for_mock};
use parlor::conversation::ChatError;
use parlor::protocol::ServerFrame;
use serde_json::json;
use uuid::Uuid;

/// Skips the chunks sent before the turn restarted elsewhere, up to its `reset`.
async fn skip_to_reset(client: &mut Client, turn_id: Uuid) {
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } => continue,
            ServerFrame::Reset { turn_id: id, .. } => {
                assert_eq!(id, turn_id);
                return;
            }
            other => panic!("expected reset, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn two_gateways_and_two_workers_route_every_chunk_to_its_session() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(5, 2), &[("PARLOR_WORKERS__COUNT", "8")]);
    let gateways = [deployment.gateway(), deployment.gateway()];
    let _workers = [deployment.worker(), deployment.worker()];

    let sessions = (0..100).map(|i| {
        let url = gateways[i % 2].ws_url("");
        tokio::spawn(async move {
            let mut client = Client::connect_url(&url).await;
            for turn in 1..=2 {
                let text = format!("session {i} {} turn {turn}", client.session_id);
                // `chat` fails on any frame of another turn; the text proves whose it is.
                assert_eq!(
                    client.chat(&text).await.answer,
                    expected_answer(&text, turn)
                );
            }
        })
    });
    for session in futures_util::future::join_all(sessions).await {
        session.expect("a session failed");
    }
}

#[tokio::test]
async fn a_worker_killed_mid_answer_is_replaced_and_the_client_told_to_reset() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 50), &[]);
    let gateway = deployment.gateway();
    let mut first_worker = deployment.worker();
    let mut client = Client::connect(&gateway).await;

    let text = "word ".repeat(20);
    let text = text.trim();
    let turn_id = mid_answer(&mut client, text).await;
    // Only now is there a second worker, so the question can only be redelivered.
    let _second_worker = deployment.worker();
    first_worker.kill_hard();

    skip_to_reset(&mut client, turn_id).await;
    let turn = client.read_turn(turn_id).await;
    assert_eq!(turn.ending, "stop");
    assert_eq!(turn.answer, expected_answer(text, 1));
    // The turn happened once: the next one is turn 2.
    assert_eq!(client.chat("next").await.answer, expected_answer("next", 2));
}

#[tokio::test]
async fn a_question_that_keeps_killing_workers_is_set_aside() {
    let (deployment, _cleanup) =
        Deployment::new(mock_llm(0, 50), &[("PARLOR_BROKER__MAX_DELIVERIES", "1")]);
    let gateway = deployment.gateway();
    let mut first_worker = deployment.worker();
    let mut client = Client::connect(&gateway).await;

    let turn_id = mid_answer(&mut client, &"word ".repeat(20)).await;
    let _second_worker = deployment.worker();
    first_worker.kill_hard();

    // Chunks sent before the crash, possibly a `reset`, then the error.
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } | ServerFrame::Reset { .. } => continue,
            ServerFrame::Error {
                turn_id: id,
                error: ChatError { code, .. },
            } => {
                assert_eq!(
                    (id, code.to_string()),
                    (Some(turn_id), "unavailable".into())
                );
                break;
            }
            other => panic!("expected the turn's error, got {other:?}"),
        }
    }
    let dead = format!("{}.dead", deployment.queue);
    let deadline = tokio::time::Instant::now() + WAIT;
    while message_count(&dead).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the question was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancel_reaches_the_worker_in_another_process() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 100), &[]);
    let gateway = deployment.gateway();
    let _worker = deployment.worker();
    let mut client = Client::connect(&gateway).await;

    mid_answer(&mut client, &"word ".repeat(100)).await;
    client.send_json(json!({ "type": "cancel" })).await;

    wait_for_mock(&deployment.model, "the stream cut off", |stats| {
        stats["streams_cancelled"] == 1
    })
    .await;
}

#[tokio::test]
async fn everything_recovers_by_itself_when_the_broker_drops_its_connections() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 50), &[]);
    let gateway = deployment.gateway();
    let _worker = deployment.worker();
    let mut client = Client::connect(&gateway).await;
    assert_eq!(
        client.chat("before").await.answer,
        expected_answer("before", 1)
    );
    assert_eq!(readiness(&gateway).await.0, 200);
    let in_flight = mid_answer(&mut client, &"word ".repeat(100)).await;

    let closed = close_connections_of(&deployment.queue);
    assert_eq!(closed, 2, "the gateway's and the worker's");

    // The turn in flight lost its answers: it ends now, not at its deadline.
    let lost = client.read_turn_from(in_flight, 1).await;
    assert_eq!(lost.ending, "unavailable");

    // The session stays open; once the connections are back, chats resume.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let turn = client.chat("after").await;
        if turn.ending == "stop" {
            assert_eq!(turn.answer, expected_answer("after", 2));
            break;
        }
        assert_eq!(
            turn.ending, "unavailable",
            "only `unavailable` while reconnecting"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "parlor did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readiness(&gateway).await.0, 200);
}

#[tokio::test]
async fn a_full_queue_gets_busy_and_429() {
    // No worker takes anything, and the queue holds two questions.
    let (deployment, _cleanup) = Deployment::new(
        mock_llm(0, 0),
        &[("PARLOR_BROKER__MAX_QUEUED_QUESTIONS", "2")],
    );
    let gateway = deployment.gateway();
    let mut first = Client::connect(&gateway).await;
    let mut second = Client::connect(&gateway).await;
    first.chat_accepted("one").await;
    second.chat_accepted("two").await;
    // Both are published (in either order) before the third is asked.
    let deadline = tokio::time::Instant::now() + WAIT;
    while message_count(&deployment.queue).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the questions were not queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut third = Client::connect(&gateway).await;
    let turn = third.chat("three").await;
    assert_eq!(turn.ending, "busy");
    let body = json!({ "messages": [{ "role": "user", "content": "four" }] });
    let response = reqwest::Client::new()
        .post(gateway.http("/chat"))
        .json(&body)
        .send()
        .await;
    assert_eq!(response.unwrap().status(), 429);
}

#[tokio::test]
async fn a_stopping_worker_gives_its_turn_to_another() {
    let (deployment, _cleanup) =
        Deployment::new(mock_llm(0, 50), &[("PARLOR_WORKER__SHUTDOWN_GRACE_S", "0")]);
    let gateway = deployment.gateway();
    let mut first_worker = deployment.worker();
    let mut client = Client::connect(&gateway).await;

    // Three seconds of answer: long enough to outlast the second worker's start
    // (it builds its knowledge index) on a busy machine.
    let text = "word ".repeat(60);
    let text = text.trim();
    let turn_id = mid_answer(&mut client, text).await;
    let _second_worker = deployment.worker();
    first_worker.terminate();

    skip_to_reset(&mut client, turn_id).await;
    assert_eq!(
        client.read_turn(turn_id).await.answer,
        expected_answer(text, 1)
    );
    let status = first_worker.wait_exit(WAIT).expect("the worker exits");
    assert!(status.success());
}

#[tokio::test]
async fn serve_with_a_broker_url_chats_through_rabbitmq() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 0), &[]);
    let server = deployment.serve();
    let mut client = Client::connect(&server).await;

    assert_eq!(
        client.chat("hello").await.answer,
        expected_answer("hello", 1)
    );
    let token = server.log();
    assert!(message_count(&deployment.queue).await == 0, "{token}");
}

#[tokio::test]
async fn during_a_broker_outage_chats_are_refused_clearly_and_resume_after() {
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 0), &[]);
    // Only this gateway's way to RabbitMQ goes down; the broker keeps serving others.
    let proxy = CuttableProxy::start("127.0.0.1:5672");
    let via_proxy = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let gateway = deployment.gateway_with(&[("PARLOR_BROKER__URL", via_proxy)]);
    let _worker = deployment.worker();
    let mut client = Client::connect(&gateway).await;
    assert_eq!(
        client.chat("before").await.answer,
        expected_answer("before", 1)
    );

    proxy.cut();
    wait_for_readiness(&gateway, 503).await;
    assert_eq!(client.chat("during").await.ending, "unavailable");
    let body = json!({ "messages": [{ "role": "user", "content": "during" }] });
    let response = reqwest::Client::new()
        .post(gateway.http("/chat"))
        .json(&body)
        .send()
        .await;
    assert_eq!(response.unwrap().status(), 503);
    client.send_json(json!({ "type": "ping" })).await;
    assert_eq!(
        client.next_frame().await,
        ServerFrame::Pong,
        "the session stays open"
    );

    proxy.restore();
    wait_for_readiness(&gateway, 200).await;
    assert_eq!(
        client.chat("after").await.answer,
        expected_answer("after", 2)
    );
}
