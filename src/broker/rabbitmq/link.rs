//! The connection to RabbitMQ, and the supervisor that keeps one alive.
//!
//! One connection per process ([`Link`]), with three publishing channels. A supervisor
//! task waits for lapin's connection events; when one shows the link broken it is
//! dropped, the change is published on [`Broker::connection_state`], and a new
//! connection is opened with capped exponential backoff and the shared topology
//! declared again. Meanwhile [`Broker::is_connected`] is false and every publish
//! fails at once with [`BrokerError::Unavailable`]. The streams the engine hands out
//! watch the link and subscribe again on the next one (see [`super::subscription`]).
//!
//! lapin's own `enable_auto_recover` was not used: it replays a server-named queue
//! under its old `amq.gen-…` name (which RabbitMQ refuses), gives up for good once
//! its backoff is exhausted, and a channel whose replay fails stays stuck. Reopening
//! everything on a fresh connection is simpler to reason about: a delivery taken on
//! a dead connection can no longer be settled (RabbitMQ redelivers it itself), and
//! nothing of the old connection is reused.
//!
//! [`Broker::connection_state`]: super::Broker::connection_state
//! [`Broker::is_connected`]: super::Broker::is_connected

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::StreamExt;
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::mpsc;

use super::answer_batches::AnswerBatches;
use super::names::{Topology, short};
use super::publish::{ANSWERS_IN_FLIGHT, track_answer_confirms};
use super::{BrokerError, EngineState, unavailable, within};

/// How often the supervisor looks at a link that sent no event. lapin announces
/// every failure (I/O errors, missed heartbeats, a `connection.close` or
/// `channel.close` with an error code) as an event, which the supervisor acts on at
/// once; only a close with a success code comes without one, and this catches it.
const QUIET_LINK_CHECK: Duration = Duration::from_secs(5);
/// The first wait before reconnecting; it doubles up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection, the AMQP handshake and the declarations.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection with its publishing channels.
pub(super) struct Link {
    pub(super) connection: Connection,
    /// Questions and cancellations, with publisher confirms awaited one by one.
    pub(super) questions: Channel,
    /// Answers, with publisher confirms checked off by [`track_answer_confirms`].
    answer_channel: Channel,
    /// What publishes on it, joining answers per gateway.
    pub(super) answers: AnswerBatches,
    /// Notices between gateways, apart so that one coming back unroutable (its
    /// gateway is gone) cannot be taken for a question's.
    pub(super) notices: Channel,
}

impl Link {
    pub(super) async fn open(shared: &EngineState) -> Result<Self, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(shared.connection_name.clone().into());
        let connection = Connection::connect_uri(shared.url.uri().clone(), properties)
            .await
            .map_err(unavailable)?;
        let questions = connection.create_channel().await.map_err(unavailable)?;
        declare_topology(&questions, &shared.topology, shared.max_queued_questions).await?;
        questions
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let answers = connection.create_channel().await.map_err(unavailable)?;
        answers
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let notices = connection.create_channel().await.map_err(unavailable)?;
        notices
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let (answer_confirms, confirms) = mpsc::channel(ANSWERS_IN_FLIGHT);
        tokio::spawn(track_answer_confirms(
            confirms,
            shared.undeliverable.clone(),
        ));
        let batches = AnswerBatches::start(
            answers.clone(),
            answer_confirms,
            shared.undeliverable.clone(),
        );
        Ok(Self {
            connection,
            questions,
            answer_channel: answers,
            answers: batches,
            notices,
        })
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.connection.status().connected()
            && self.questions.status().connected()
            && self.answer_channel.status().connected()
            && self.notices.status().connected()
    }

    /// A new channel on this connection.
    pub(super) async fn open_channel(&self) -> Result<Channel, BrokerError> {
        self.connection.create_channel().await.map_err(unavailable)
    }

    /// Resolves once the connection or one of its publishing channels has failed.
    async fn broken(&self) {
        // Listen before looking, so a failure between the two is not missed.
        let mut events = std::pin::pin!(self.connection.events_listener());
        while self.is_healthy() {
            // Any event (an error on some channel, a blocked connection) is a
            // reason to look again; most leave the link healthy.
            if let Ok(None) = tokio::time::timeout(QUIET_LINK_CHECK, events.next()).await {
                return;
            }
        }
    }
}

async fn declare_topology(
    channel: &Channel,
    topology: &Topology,
    max_queued_questions: usize,
) -> Result<(), BrokerError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for queue in [&topology.dead_letters, &topology.orphans] {
        channel
            .queue_declare(short(queue)?, durable, FieldTable::default())
            .await
            .map_err(unavailable)?;
    }
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-max-length".into(),
        // A quorum queue refuses publishes only once it holds *more* than its
        // length, so one less keeps the bound exact.
        AMQPValue::LongLongInt(
            i64::try_from(max_queued_questions.saturating_sub(1)).unwrap_or(i64::MAX),
        ),
    );
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(topology.dead_letters.as_str().into()),
    );
    channel
        .queue_declare(short(&topology.questions)?, durable, arguments)
        .await
        .map_err(unavailable)?;
    channel
        .exchange_declare(
            short(&topology.cancels)?,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Keeps one live connection: waits for the current one to fail, then opens the
/// next with capped exponential backoff.
pub(super) async fn supervise(shared: Arc<EngineState>) {
    loop {
        let current = shared.link.borrow().clone();
        if let Some(link) = current {
            link.broken().await;
            tracing::warn!(connection = %shared.connection_name, "lost the connection to RabbitMQ; reconnecting");
            shared.link.send_replace(None);
            shared.connection.send_modify(|state| {
                state.connected = false;
                state.lost += 1;
            });
            // A channel may have died on a live connection: close it all, so that
            // exclusive queues and unacknowledged deliveries are released now.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                link.connection.close(200, "reconnecting".into()),
            )
            .await;
        }
        let mut delay = RECONNECT_MIN_DELAY;
        loop {
            match within(
                CONNECT_TIMEOUT,
                "connecting to RabbitMQ",
                Link::open(&shared),
            )
            .await
            {
                Ok(link) => {
                    tracing::info!(connection = %shared.connection_name, "reconnected to RabbitMQ");
                    shared.link.send_replace(Some(Arc::new(link)));
                    shared
                        .connection
                        .send_modify(|state| state.connected = true);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot reconnect to RabbitMQ");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                }
            }
        }
    }
}
