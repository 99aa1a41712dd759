//! The four streams the engine hands out: a gateway's answers and notices, a
//! process's share of the cancellations, and a worker's questions.
//!
//! Each is a [`Subscription`]: what it declares on a new connection, and how it
//! turns a delivery into an item. They differ in how much a message matters.
//! Answers are transient and acknowledged in batches, only to bound what RabbitMQ
//! pushes ahead. Cancellations go to a server-named queue of this connection, with
//! no acknowledgement at all. Questions are acknowledged one by one, only when
//! their turn has ended (see [`super::settle`]), and one that cannot be read is
//! dead-lettered at once, unseen by the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::{BoxFuture, FutureExt};
use lapin::message::Delivery as LapinDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer, Queue};
use tracing::field::display;
use uuid::Uuid;

use super::answer_batches::BATCH_TYPE;
use super::headers::{QuestionHeaders, TurnIds};
use super::link::Link;
use super::names::short;
use super::settle::{Outcome, RabbitSettle, requeue_unread};
use super::subscription::Subscription;
use super::{Adoption, Answer, BrokerError, Delivery, Notice, Orphan, Question, unavailable};

/// Messages of answers RabbitMQ may push to a gateway before it acknowledges them,
/// and how often it acknowledges (all at once). Together with the reply stream's
/// buffer and the size of a message (at most 64 KiB and one answer) this bounds
/// the answers held in the gateway's memory.
const REPLY_PREFETCH: u16 = 256;
const REPLY_ACK_EVERY: u64 = 64;

/// Declares a queue only this connection uses, gone when it closes (an empty
/// `name` lets RabbitMQ name it).
async fn declare_private_queue(channel: &Channel, name: &str) -> Result<Queue, BrokerError> {
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(short(name)?, options, FieldTable::default())
        .await
        .map_err(unavailable)
}

/// Consumes `queue` with manual acknowledgements, at most `prefetch` unacknowledged.
async fn consume_acknowledged(
    channel: &Channel,
    queue: &str,
    prefetch: u16,
) -> Result<Consumer, BrokerError> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(unavailable)?;
    channel
        .basic_consume(
            short(queue)?,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

/// Opens a channel on `link` and consumes the durable `queue` on it, with manual
/// acknowledgements.
fn subscribe_acknowledged(
    link: Arc<Link>,
    queue: String,
    prefetch: u16,
) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
    async move {
        let channel = link.open_channel().await?;
        let consumer = consume_acknowledged(&channel, &queue, prefetch).await?;
        Ok((channel, consumer))
    }
    .boxed()
}

/// Consumes `queue` with no acknowledgements at all: what it carries may be lost
/// with a connection.
async fn consume_unacknowledged(
    channel: &Channel,
    queue: ShortString,
) -> Result<Consumer, BrokerError> {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    channel
        .basic_consume(queue, "".into(), options, FieldTable::default())
        .await
        .map_err(unavailable)
}

/// This gateway's reply queue.
pub(super) struct Replies {
    pub(super) queue: String,
    pub(super) received: AtomicU64,
}

impl Subscription for Replies {
    /// The answers of one message: several when a worker joined them.
    type Item = Vec<Answer>;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        let queue = self.queue.clone();
        async move {
            let channel = link.open_channel().await?;
            declare_private_queue(&channel, &queue).await?;
            let consumer = consume_acknowledged(&channel, &queue, REPLY_PREFETCH).await?;
            Ok((channel, consumer))
        }
        .boxed()
    }

    fn convert(
        &self,
        delivery: LapinDelivery,
        _: &Channel,
    ) -> BoxFuture<'static, Option<Vec<Answer>>> {
        // Answers are transient: acknowledging only bounds what RabbitMQ pushes
        // ahead, so one acknowledgement covers many.
        let received = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        let acker = received
            .is_multiple_of(REPLY_ACK_EVERY)
            .then(|| delivery.acker.clone());
        let answers = read_answers(&delivery);
        async move {
            if let Some(acker) = acker
                && let Err(error) = acker.ack(BasicAckOptions { multiple: true }).await
            {
                tracing::debug!(%error, "could not acknowledge answers");
            }
            match answers {
                Ok(answers) => Some(answers),
                Err(error) => {
                    // Its turns see the gap, or their end missing, and fail.
                    tracing::warn!(%error, "dropped a malformed message of answers");
                    None
                }
            }
        }
        .boxed()
    }
}

/// The answers a message holds: a JSON array when its `type` says it is a batch
/// ([`BATCH_TYPE`]), a lone answer otherwise.
fn read_answers(delivery: &LapinDelivery) -> serde_json::Result<Vec<Answer>> {
    let kind = delivery.properties.kind().as_ref();
    if kind.is_some_and(|kind| kind.as_str() == BATCH_TYPE) {
        serde_json::from_slice(&delivery.data)
    } else {
        serde_json::from_slice(&delivery.data).map(|answer| vec![answer])
    }
}

/// This gateway's notice queue: what other gateways tell it. Like cancellations,
/// unacknowledged: a notice lost with a connection costs the sender a short wait.
pub(super) struct Notices {
    pub(super) queue: String,
}

impl Subscription for Notices {
    type Item = Notice;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        let queue = self.queue.clone();
        async move {
            let channel = link.open_channel().await?;
            declare_private_queue(&channel, &queue).await?;
            let consumer = consume_unacknowledged(&channel, short(&queue)?).await?;
            Ok((channel, consumer))
        }
        .boxed()
    }

    fn convert(&self, delivery: LapinDelivery, _: &Channel) -> BoxFuture<'static, Option<Notice>> {
        let notice = serde_json::from_slice::<Notice>(&delivery.data)
            .inspect_err(|error| tracing::warn!(%error, "dropped a malformed notice"))
            .ok();
        futures_util::future::ready(notice).boxed()
    }
}

/// The orphaned questions, shared by every gateway; each is acknowledged once
/// stored.
pub(super) struct Orphans {
    pub(super) queue: String,
}

/// Orphans a gateway stores at once: few ever wait.
const ORPHAN_PREFETCH: u16 = 16;

impl Subscription for Orphans {
    type Item = Adoption;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        subscribe_acknowledged(link, self.queue.clone(), ORPHAN_PREFETCH)
    }

    fn convert(
        &self,
        delivery: LapinDelivery,
        channel: &Channel,
    ) -> BoxFuture<'static, Option<Adoption>> {
        let orphan = serde_json::from_slice::<Orphan>(&delivery.data);
        let ids = TurnIds {
            session_id: orphan.as_ref().ok().map(|orphan| orphan.session_id),
            turn_id: orphan.as_ref().ok().map(|orphan| orphan.turn_id),
        };
        let settle = RabbitSettle::new(delivery.acker, channel.clone(), ids);
        async move {
            match orphan {
                Ok(orphan) => Some(Adoption::new(orphan, Box::new(settle))),
                Err(error) => {
                    tracing::warn!(%error, "dropped a malformed orphan");
                    let _ = settle.settle(Outcome::Reject).await;
                    None
                }
            }
        }
        .boxed()
    }

    fn release(&self, channel: Channel, consumer: Consumer) {
        requeue_unread(channel, consumer);
    }
}

/// One subscriber's share of the cancellation fanout.
pub(super) struct Cancels {
    pub(super) exchange: String,
}

impl Subscription for Cancels {
    type Item = Uuid;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        let exchange = self.exchange.clone();
        async move {
            let channel = link.open_channel().await?;
            // Server-named: declared anew (under a new name) on every connection.
            let queue = declare_private_queue(&channel, "").await?;
            channel
                .queue_bind(
                    queue.name().clone(),
                    short(&exchange)?,
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            let consumer = consume_unacknowledged(&channel, queue.name().clone()).await?;
            Ok((channel, consumer))
        }
        .boxed()
    }

    fn convert(&self, delivery: LapinDelivery, _: &Channel) -> BoxFuture<'static, Option<Uuid>> {
        let turn_id = std::str::from_utf8(&delivery.data)
            .ok()
            .and_then(|text| Uuid::parse_str(text).ok());
        if turn_id.is_none() {
            tracing::warn!("dropped a malformed cancellation");
        }
        futures_util::future::ready(turn_id).boxed()
    }
}

/// The work queue, consumed with manual acknowledgements.
pub(super) struct Questions {
    pub(super) queue: String,
    pub(super) prefetch: u16,
}

impl Subscription for Questions {
    type Item = Delivery;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        subscribe_acknowledged(link, self.queue.clone(), self.prefetch)
    }

    fn convert(
        &self,
        delivery: LapinDelivery,
        channel: &Channel,
    ) -> BoxFuture<'static, Option<Delivery>> {
        let headers = QuestionHeaders::read(delivery.properties.headers().as_ref());
        let question = serde_json::from_slice::<Question>(&delivery.data);
        // The body, when it can be read, is what the worker acts on; the headers
        // name the turn when it cannot.
        let ids = match &question {
            Ok(question) => TurnIds {
                session_id: Some(question.session_id),
                turn_id: Some(question.turn_id),
            },
            Err(_) => headers.ids,
        };
        let settle = RabbitSettle::new(delivery.acker, channel.clone(), ids);
        let (turn_id, session_id) = (ids.turn_id.map(display), ids.session_id.map(display));
        async move {
            let question = match question {
                Ok(question) => question,
                Err(error) => {
                    tracing::warn!(%error, turn_id, session_id, "dead-lettering a malformed question");
                    let _ = settle.settle(Outcome::Reject).await;
                    return None;
                }
            };
            if headers.attempt > 1 {
                tracing::info!(turn_id, session_id, attempt = headers.attempt, "a question is delivered again");
            }
            let delivery = Delivery::new(question, headers.attempt, Box::new(settle));
            Some(delivery.with_trace(headers.trace))
        }
        .boxed()
    }

    fn release(&self, channel: Channel, consumer: Consumer) {
        requeue_unread(channel, consumer);
    }
}
