//! The RabbitMQ engine against a real RabbitMQ at 127.0.0.1:5672 (guest/guest).
//!
//! Tests run in parallel on one broker: each uses its own question queue (so its own
//! names), deletes what it declared when it ends (also when it fails), and closes
//! only its own connections. Every wait is bounded.

mod common;

use std::time::Duration;

use common::WAIT;
use common::rabbitmq::{Cleanup, URL, close_connections_matching, unique_queue};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use lapin::options::{BasicGetOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use parlor::broker::rabbitmq::{RabbitBroker, Topology};
use parlor::broker::{Answer, AnswerBody, Broker, BrokerError, Delivery, Question, TraceId};
use parlor::config::{BrokerConfig, Millis};
use parlor::conversation::FinishReason;
use uuid::Uuid;

/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

fn config() -> BrokerConfig {
    BrokerConfig {
        url: URL.parse().unwrap(),
        question_queue: unique_queue(),
        max_queued_questions: 100,
        max_deliveries: 3,
        publish_timeout_ms: Millis::new(5_000),
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn connect(config: &BrokerConfig) -> RabbitBroker {
    within("a connection", RabbitBroker::connect(config, 4))
        .await
        .expect("RabbitMQ at 127.0.0.1:5672")
}

async fn next<T>(what: &str, stream: &mut BoxStream<'static, T>) -> T {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("the stream of {what} ended"))
}

async fn nothing_more<T: std::fmt::Debug>(stream: &mut BoxStream<'static, T>) {
    if let Ok(item) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("expected nothing more, got {item:?}");
    }
}

/// Deletes the test's queues and exchange when dropped, even when the test fails.
fn cleanup(config: &BrokerConfig) -> (Cleanup, Topology) {
    let cleanup = Cleanup(config.question_queue.clone());
    (cleanup, Topology::new(&config.question_queue).unwrap())
}

/// Waits until `count` questions sit in the dead-letter queue and takes them.
async fn dead_letters(topology: &Topology, count: usize) -> Vec<Question> {
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut found = Vec::new();
    within("dead letters", async {
        while found.len() < count {
            let message = channel
                .basic_get(
                    topology.dead_letters.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match message {
                Some(message) => {
                    found.push(serde_json::from_slice(&message.delivery.data).unwrap())
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    connection.close(200, "done".into()).await.unwrap();
    found
}

/// Closes this broker's connection from the server side, as a broker restart would.
fn close_connection_server_side(broker: &RabbitBroker) {
    let closed = close_connections_matching(broker.connection_name());
    assert_eq!(
        closed,
        1,
        "no connection named {}",
        broker.connection_name()
    );
}

fn question(reply_to: &str, text: &str) -> Question {
    Question {
        session_id: Uuid::new_v4(),
        turn_id: Uuid::new_v4(),
        reply_to: reply_to.into(),
        history: vec![],
        text: text.into(),
        tools: None,
    }
}

fn answer(delivery: &Delivery, body: AnswerBody) -> Answer {
    Answer {
        session_id: delivery.question.session_id,
        turn_id: delivery.question.turn_id,
        attempt: delivery.attempt,
        body,
    }
}

fn chunk(seq: u64, text: &str) -> AnswerBody {
    AnswerBody::Chunk {
        seq,
        text: text.into(),
    }
}

fn done() -> AnswerBody {
    AnswerBody::Done {
        finish_reason: FinishReason::Stop,
    }
}

/// Answers a delivery with its text echoed and `done`, then acknowledges it.
async fn echo(worker: &RabbitBroker, delivery: Delivery) {
    let reply_to = delivery.question.reply_to.clone();
    let text = delivery.question.text.clone();
    for body in [chunk(0, &text), done()] {
        worker
            .publish_answer(&reply_to, answer(&delivery, body))
            .await
            .unwrap();
    }
    delivery.ack().await.unwrap();
}

#[tokio::test]
async fn each_answer_reaches_only_the_gateway_that_asked() {
    let config = config();
    let _cleanup = cleanup(&config);
    let (first, second, worker) = (
        connect(&config).await,
        connect(&config).await,
        connect(&config).await,
    );
    assert_eq!(worker.kind(), "rabbitmq");
    assert!(worker.is_connected());
    let mut first_replies = first.open_reply_queue().await.unwrap();
    let mut second_replies = second.open_reply_queue().await.unwrap();
    assert_ne!(first_replies.address, second_replies.address);
    let mut deliveries = worker.consume_questions().await.unwrap();

    let asked_first = question(&first_replies.address, "from the first");
    let asked_second = question(&second_replies.address, "from the second");
    first.publish_question(asked_first.clone()).await.unwrap();
    second.publish_question(asked_second.clone()).await.unwrap();
    for _ in 0..2 {
        let delivery = next("a question", &mut deliveries).await;
        assert_eq!(delivery.attempt, 1);
        echo(&worker, delivery).await;
    }

    for (replies, asked) in [
        (&mut first_replies, &asked_first),
        (&mut second_replies, &asked_second),
    ] {
        let text = next("a chunk", &mut replies.answers).await;
        assert_eq!(text.turn_id, asked.turn_id);
        assert_eq!(text.session_id, asked.session_id);
        assert_eq!(text.body, chunk(0, &asked.text));
        let end = next("the end", &mut replies.answers).await;
        assert_eq!((end.turn_id, end.body), (asked.turn_id, done()));
        nothing_more(&mut replies.answers).await;
    }
}

#[tokio::test]
async fn a_cancellation_reaches_every_subscriber() {
    let config = config();
    let _cleanup = cleanup(&config);
    let (gateway, first, second) = (
        connect(&config).await,
        connect(&config).await,
        connect(&config).await,
    );
    let mut first_cancels = first.subscribe_cancels().await.unwrap();
    let mut second_cancels = second.subscribe_cancels().await.unwrap();
    let turn_id = Uuid::new_v4();
    gateway.publish_cancel(turn_id).await.unwrap();
    assert_eq!(next("a cancel", &mut first_cancels).await, turn_id);
    assert_eq!(next("a cancel", &mut second_cancels).await, turn_id);
    nothing_more(&mut first_cancels).await;
}

#[tokio::test]
async fn a_full_question_queue_refuses_new_questions() {
    let config = BrokerConfig {
        max_queued_questions: 2,
        ..config()
    };
    let _cleanup = cleanup(&config);
    let gateway = connect(&config).await;
    let mut accepted = 0;
    let refused = loop {
        match gateway.publish_question(question("r", "wait")).await {
            Ok(()) if accepted < 10 => accepted += 1,
            outcome => break outcome,
        }
    };
    assert_eq!(refused, Err(BrokerError::Full));
    assert_eq!(accepted, 2, "questions accepted for a bound of 2");
}

#[tokio::test]
async fn a_question_whose_worker_vanished_is_redelivered_as_a_second_attempt() {
    let config = config();
    let _cleanup = cleanup(&config);
    let gateway = connect(&config).await;
    let asked = question("r", "redeliver me");
    gateway.publish_question(asked.clone()).await.unwrap();

    let vanishing = connect(&config).await;
    let mut deliveries = vanishing.consume_questions().await.unwrap();
    let delivery = next("a question", &mut deliveries).await;
    assert_eq!((delivery.attempt, &delivery.question), (1, &asked));
    // The process dies: nothing is settled, the connection goes away. (An
    // unsettled delivery keeps its channel, and so the connection, open: close it
    // from the server, as the death of its process would.)
    std::mem::forget(delivery);
    assert_eq!(close_connections_matching(vanishing.connection_name()), 1);
    drop(deliveries);
    drop(vanishing);

    let worker = connect(&config).await;
    let mut deliveries = worker.consume_questions().await.unwrap();
    let delivery = next("the redelivered question", &mut deliveries).await;
    assert_eq!((delivery.attempt, &delivery.question), (2, &asked));
    delivery.ack().await.unwrap();
    nothing_more(&mut deliveries).await;
}

#[tokio::test]
async fn a_question_taken_before_its_stream_ends_is_still_settled_on_its_channel() {
    let config = config();
    let _cleanup = cleanup(&config);
    let broker = connect(&config).await;
    broker
        .publish_question(question("r", "finish me"))
        .await
        .unwrap();
    let mut deliveries = broker.consume_questions().await.unwrap();
    let delivery = next("a question", &mut deliveries).await;
    // The pool stops taking questions while this one's turn still runs.
    drop(deliveries);
    tokio::time::sleep(QUIET).await;
    delivery.ack().await.unwrap();

    let mut later = broker.consume_questions().await.unwrap();
    nothing_more(&mut later).await;
}

#[tokio::test]
async fn questions_received_but_not_taken_when_the_stream_ends_go_to_another_worker() {
    let config = config();
    let _cleanup = cleanup(&config);
    let stopping = connect(&config).await;
    let (running, waiting) = (question("r", "running"), question("r", "waiting"));
    stopping.publish_question(running.clone()).await.unwrap();
    stopping.publish_question(waiting.clone()).await.unwrap();
    let mut deliveries = stopping.consume_questions().await.unwrap();
    let taken = next("a question", &mut deliveries).await;
    assert_eq!(taken.question, running);
    // RabbitMQ pushes up to the prefetch of 4, so `waiting` has reached this
    // process too, unread. The pool stops taking questions while `running` runs.
    tokio::time::sleep(QUIET).await;
    drop(deliveries);

    let other = connect(&config).await;
    let mut elsewhere = other.consume_questions().await.unwrap();
    let handed_over = next("the question not taken", &mut elsewhere).await;
    assert_eq!(handed_over.question, waiting);
    handed_over.ack().await.unwrap();
    // The running question stays with its worker until it is settled.
    nothing_more(&mut elsewhere).await;
    taken.ack().await.unwrap();
    nothing_more(&mut elsewhere).await;
}

#[tokio::test]
async fn a_requeued_question_comes_back_as_the_next_attempt() {
    let config = config();
    let _cleanup = cleanup(&config);
    let broker = connect(&config).await;
    let asked = question("r", "again");
    broker.publish_question(asked.clone()).await.unwrap();
    let mut deliveries = broker.consume_questions().await.unwrap();
    let first = next("a question", &mut deliveries).await;
    assert_eq!(first.attempt, 1);
    first.requeue().await.unwrap();
    let second = next("the requeued question", &mut deliveries).await;
    assert_eq!((second.attempt, &second.question), (2, &asked));
    second.ack().await.unwrap();
}

#[tokio::test]
async fn a_rejected_question_is_dead_lettered() {
    let config = config();
    let (_cleanup, topology) = cleanup(&config);
    let broker = connect(&config).await;
    let asked = question("r", "poison");
    broker.publish_question(asked.clone()).await.unwrap();
    let mut deliveries = broker.consume_questions().await.unwrap();
    next("a question", &mut deliveries)
        .await
        .reject()
        .await
        .unwrap();
    assert_eq!(dead_letters(&topology, 1).await, vec![asked]);
    nothing_more(&mut deliveries).await;
}

#[tokio::test]
async fn a_question_dropped_unsettled_is_dead_lettered() {
    let config = config();
    let (_cleanup, topology) = cleanup(&config);
    let broker = connect(&config).await;
    let asked = question("r", "my worker died");
    broker.publish_question(asked.clone()).await.unwrap();
    let mut deliveries = broker.consume_questions().await.unwrap();
    drop(next("a question", &mut deliveries).await);
    assert_eq!(dead_letters(&topology, 1).await, vec![asked]);
    nothing_more(&mut deliveries).await;
}

#[tokio::test]
async fn a_malformed_question_is_dead_lettered_unseen() {
    let config = config();
    let (_cleanup, topology) = cleanup(&config);
    let broker = connect(&config).await;
    let mut deliveries = broker.consume_questions().await.unwrap();
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // Confirmed before the good question is published: RabbitMQ orders messages
    // of one channel only, and the good one comes over another connection. Were
    // it queued first, the reader would take it and stop pulling, and the lazy
    // stream would never reach (nor reject) the malformed one behind it.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirmation = channel
        .basic_publish(
            "".into(),
            config.question_queue.as_str().into(),
            Default::default(),
            b"not json",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirmation.is_ack());
    let asked = question("r", "fine");
    broker.publish_question(asked.clone()).await.unwrap();
    let delivery = next("the good question", &mut deliveries).await;
    assert_eq!(delivery.question, asked);
    delivery.ack().await.unwrap();
    let dead = within("the malformed question", async {
        loop {
            let message = channel
                .basic_get(
                    topology.dead_letters.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match message {
                Some(message) => break message.delivery.data,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(dead, b"not json");
    connection.close(200, "done".into()).await.unwrap();
}

/// A header's text, as RabbitMQ delivered it.
fn header(properties: &BasicProperties, key: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

#[tokio::test]
async fn questions_carry_their_turn_and_trace_and_answers_travel_joined_per_gateway() {
    let config = config();
    let _cleanup = cleanup(&config);
    let broker = connect(&config).await;
    let (peeked, consumed) = (question("r", "peek"), question("r", "consume"));
    broker.publish_question(peeked.clone()).await.unwrap();
    broker.publish_question(consumed.clone()).await.unwrap();

    // As any AMQP client sees the first question.
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = within("the first question", async {
        loop {
            let options = BasicGetOptions { no_ack: true };
            let queue = config.question_queue.as_str().into();
            match channel.basic_get(queue, options).await.unwrap() {
                Some(message) => break message,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let properties = &message.delivery.properties;
    let turn = peeked.turn_id.to_string();
    assert_eq!(header(properties, "x-parlor-turn-id"), Some(turn));
    let session = peeked.session_id.to_string();
    assert_eq!(header(properties, "x-parlor-session-id"), Some(session));
    let traceparent = header(properties, "traceparent").expect("a traceparent");
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00");
    assert_eq!(fields[1], peeked.turn_id.simple().to_string());
    assert_eq!(fields[2].len(), 16);
    assert_ne!(fields[2], "0000000000000000");
    assert_eq!(fields[3], "01");

    // Through the engine, the second question's delivery names its trace.
    let mut deliveries = broker.consume_questions().await.unwrap();
    let delivery = next("the second question", &mut deliveries).await;
    assert_eq!(delivery.question, consumed);
    let trace = delivery.trace.expect("a trace context");
    assert_eq!(trace.trace_id, TraceId::of_turn(consumed.turn_id));
    assert_ne!(
        trace.parent_span_id.to_string(),
        fields[2],
        "a span per question"
    );

    // Answers ready together travel together: handed over faster than they can
    // be published, they share messages, each a JSON array of type `answers`,
    // and keep their order.
    let replies = format!("{}.reply.headers", config.question_queue);
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    channel
        .queue_declare(replies.as_str().into(), exclusive, Default::default())
        .await
        .unwrap();
    let mut sent: Vec<Answer> = (0..500)
        .map(|seq| answer(&delivery, chunk(seq, &format!("word{seq} "))))
        .collect();
    sent.push(answer(&delivery, done()));
    for each in &sent {
        broker.publish_answer(&replies, each.clone()).await.unwrap();
    }
    // The end was confirmed before publish_answer returned, and everything before it
    // went out first.
    let (mut received, mut messages) = (Vec::new(), 0);
    let options = BasicGetOptions { no_ack: true };
    while let Some(message) = channel
        .basic_get(replies.as_str().into(), options)
        .await
        .unwrap()
    {
        let properties = &message.delivery.properties;
        assert_eq!(
            properties.kind().as_ref().map(|kind| kind.as_str()),
            Some("answers")
        );
        let answers: Vec<Answer> = serde_json::from_slice(&message.delivery.data).unwrap();
        received.extend(answers);
        messages += 1;
    }
    assert_eq!(received, sent);
    assert!(
        messages < sent.len() / 2,
        "{messages} messages for {} answers",
        sent.len()
    );
    delivery.ack().await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn answers_to_a_gateway_that_has_gone_are_refused() {
    let config = config();
    let _cleanup = cleanup(&config);
    let (gateway, worker) = (connect(&config).await, connect(&config).await);
    let turn = |body| Answer {
        session_id: Uuid::new_v4(),
        turn_id: Uuid::new_v4(),
        attempt: 1,
        body,
    };

    // Never existed: the end of a turn is confirmed, so it fails at once.
    let nowhere = format!("{}.reply.nowhere", config.question_queue);
    assert_eq!(
        worker.publish_answer(&nowhere, turn(done())).await,
        Err(BrokerError::NoSuchReplyQueue(nowhere.clone()))
    );

    // Existed, then its gateway dropped it: chunks are not confirmed one by one, so
    // the refusal reaches a later chunk of the same turn.
    let replies = gateway.open_reply_queue().await.unwrap();
    let address = replies.address.clone();
    drop(replies);
    let mut streaming = turn(chunk(0, "x"));
    let refused = within("a refused chunk", async {
        for seq in 0.. {
            streaming.body = chunk(seq, "x");
            match worker.publish_answer(&address, streaming.clone()).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(error) => return error,
            }
        }
        unreachable!()
    })
    .await;
    assert_eq!(refused, BrokerError::NoSuchReplyQueue(address));
}

#[tokio::test]
async fn the_connection_and_every_stream_recover_after_an_outage() {
    let config = config();
    let _cleanup = cleanup(&config);
    let broker = connect(&config).await;
    let mut replies = broker.open_reply_queue().await.unwrap();
    let mut deliveries = broker.consume_questions().await.unwrap();
    let mut cancels = broker.subscribe_cancels().await.unwrap();

    close_connection_server_side(&broker);
    within("the outage to be noticed", async {
        while broker.is_connected() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Meanwhile publishing fails at once rather than waiting (unless the
    // connection is already back).
    let during = tokio::time::timeout(
        Duration::from_secs(1),
        broker.publish_question(question(&replies.address, "during the outage")),
    )
    .await
    .expect("a publish during an outage returns at once");
    if let Err(error) = during {
        assert!(matches!(error, BrokerError::Unavailable(_)), "{error:?}");
    }
    within("the connection to come back", async {
        while !broker.is_connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Questions: the consumer subscribes again when pulled.
    let asked = question(&replies.address, "after the outage");
    within("a question to be accepted", async {
        while broker.publish_question(asked.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut delivery = next("a question after the outage", &mut deliveries).await;
    if delivery.question.text == "during the outage" {
        delivery.ack().await.unwrap();
        delivery = next("a question after the outage", &mut deliveries).await;
    }
    assert_eq!(delivery.question, asked);

    // Answers: the reply queue is declared again under the same address, though
    // perhaps a moment after the connection is back.
    let end = answer(&delivery, done());
    within("the reply queue to be back", async {
        while broker
            .publish_answer(&asked.reply_to, end.clone())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        next("an answer after the outage", &mut replies.answers).await,
        end
    );
    delivery.ack().await.unwrap();

    // Cancellations: a new queue is bound to the fanout; until it is, cancels
    // published have nobody to reach, so publish until one arrives.
    let turn_id = Uuid::new_v4();
    let received = within("a cancel after the outage", async {
        loop {
            broker.publish_cancel(turn_id).await.unwrap();
            if let Ok(Some(received)) =
                tokio::time::timeout(Duration::from_millis(200), cancels.next()).await
            {
                break received;
            }
        }
    })
    .await;
    assert_eq!(received, turn_id);
}

/// Many turns streaming at once through one answer channel: each turn's chunks
/// still arrive complete and in order. (Throughput is measured with `parlor
/// loadtest`; see docs/benchmarks.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_concurrent_turns_arrive_complete_and_in_order() {
    const TURNS: usize = 8;
    const CHUNKS_PER_TURN: u64 = 250;
    let config = config();
    let _cleanup = cleanup(&config);
    let (gateway, worker) = (connect(&config).await, connect(&config).await);
    let worker = std::sync::Arc::new(worker);
    let mut replies = gateway.open_reply_queue().await.unwrap();
    for _ in 0..TURNS {
        let worker = worker.clone();
        let reply_to = replies.address.clone();
        tokio::spawn(async move {
            let mut answer = Answer {
                session_id: Uuid::new_v4(),
                turn_id: Uuid::new_v4(),
                attempt: 1,
                body: done(),
            };
            for seq in 0..CHUNKS_PER_TURN {
                answer.body = chunk(seq, "a token ");
                worker
                    .publish_answer(&reply_to, answer.clone())
                    .await
                    .unwrap();
            }
            answer.body = done();
            worker.publish_answer(&reply_to, answer).await.unwrap();
        });
    }
    let expected = TURNS * (CHUNKS_PER_TURN as usize + 1);
    let mut next_seq = std::collections::HashMap::new();
    within("every chunk", async {
        for _ in 0..expected {
            let answer = replies.answers.next().await.unwrap();
            if let AnswerBody::Chunk { seq, .. } = answer.body {
                let next = next_seq.entry(answer.turn_id).or_insert(0);
                assert_eq!(seq, *next, "chunks of one turn arrive in order");
                *next += 1;
            }
        }
    })
    .await;
    assert!(
        next_seq.values().all(|&next| next == CHUNKS_PER_TURN),
        "{next_seq:?}"
    );
}
