//! The RabbitMQ engine: several gateway and worker processes, on several machines,
//! share one broker.
//!
//! Every name derives from `broker.question_queue` (Q below), so deployments and
//! tests sharing one RabbitMQ never collide:
//!
//! | name | what |
//! |---|---|
//! | `Q` | durable quorum queue of questions, bounded (`reject-publish`), dead-lettering to `Q.dead` |
//! | `Q.dead` | durable queue of poison questions |
//! | `Q.cancel` | fanout exchange of cancellations; each subscriber binds its own exclusive queue |
//! | `Q.reply.<uuid>` | one exclusive auto-delete reply queue per gateway process |
//!
//! # Reconnection
//!
//! One connection per process ([`Link`]). A supervisor task waits for lapin's
//! connection events; when one shows the link broken it is dropped, the change is
//! published on [`Broker::connection_state`], and a new connection is opened with
//! capped exponential backoff and the shared topology declared again. Meanwhile
//! [`Broker::is_connected`] is false and every publish fails at once with
//! [`BrokerError::Unavailable`]. The streams handed out by
//! [`Broker::open_reply_queue`], [`Broker::consume_questions`] and
//! [`Broker::subscribe_cancels`] outlive connections: each one subscribes again
//! (declaring its own queue again) on the next connection, so they never end on a
//! connection loss. They end only once the [`RabbitBroker`] is dropped.
//!
//! lapin's own `enable_auto_recover` was not used: it replays a server-named queue
//! under its old `amq.gen-…` name (which RabbitMQ refuses), gives up for good once
//! its backoff is exhausted, and a channel whose replay fails stays stuck. Reopening
//! everything on a fresh connection is simpler to reason about: a delivery taken on
//! a dead connection can no longer be settled (RabbitMQ redelivers it itself), and
//! nothing of the old connection is reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{BoxStream, StreamExt};
use lapin::message::{BasicReturnMessage, Delivery as LapinDelivery};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind, PublisherConfirm, Queue,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::{Answer, Broker, BrokerError, ConnectionState, Delivery, Question, ReplyQueue, Settle};
use crate::config::{AmqpUrl, BrokerConfig, BrokerEngine};

/// How often the supervisor looks at a link that sent no event. lapin announces
/// every failure (I/O errors, missed heartbeats, a `connection.close` or
/// `channel.close` with an error code) as an event, which the supervisor acts on at
/// once; only a close with a success code comes without one, and this catches it.
const QUIET_LINK_CHECK: Duration = Duration::from_secs(5);
/// The first wait before reconnecting; it doubles up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection, the AMQP handshake and the declarations.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one stream to declare its queue and start consuming.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before a stream tries again to subscribe on a connection that refused it.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);
/// Answers RabbitMQ may push to a gateway before it acknowledges them, and how
/// often it acknowledges (all at once). Together with [`REPLY_BUFFER`] this bounds
/// the answers held in the gateway's memory.
const REPLY_PREFETCH: u16 = 1024;
const REPLY_ACK_EVERY: u64 = 64;
/// Answers waiting between the reply queue's consumer and the gateway's reader.
const REPLY_BUFFER: usize = 1024;
/// Cancellations waiting for a slow worker pool.
const CANCEL_BUFFER: usize = 256;
/// Answer chunks published but not yet confirmed; beyond it, publishing waits.
const ANSWERS_IN_FLIGHT: usize = 4096;
/// How long a turn whose answers came back unroutable is remembered.
const UNDELIVERABLE_TTL: Duration = Duration::from_secs(60);
const UNDELIVERABLE_PRUNE_AT: usize = 1024;
const PERSISTENT: u8 = 2;
const TRANSIENT: u8 = 1;
const JSON: &str = "application/json";

/// The names this engine uses, all derived from the question queue's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The work queue (a quorum queue).
    pub questions: String,
    /// Where rejected questions go.
    pub dead_letters: String,
    /// The fanout exchange of cancellations.
    pub cancels: String,
    reply_prefix: String,
}

/// An AMQP short string holds at most 255 bytes.
const MAX_NAME_BYTES: usize = 255;

impl Topology {
    pub fn new(question_queue: &str) -> Result<Self, BrokerError> {
        let topology = Self {
            questions: question_queue.to_owned(),
            dead_letters: format!("{question_queue}.dead"),
            cancels: format!("{question_queue}.cancel"),
            reply_prefix: format!("{question_queue}.reply."),
        };
        let longest = topology.reply_queue(Uuid::nil());
        if question_queue.is_empty() || longest.len() > MAX_NAME_BYTES {
            return Err(BrokerError::Unavailable(format!(
                "the question queue name must have 1 to {} bytes",
                MAX_NAME_BYTES - (longest.len() - question_queue.len())
            )));
        }
        Ok(topology)
    }

    /// The name of a gateway's reply queue.
    pub fn reply_queue(&self, gateway: Uuid) -> String {
        format!("{}{}", self.reply_prefix, gateway.simple())
    }
}

/// Which delivery of a question this is: RabbitMQ counts earlier deliveries of a
/// quorum queue's message in `x-delivery-count` (absent on the first).
pub fn attempt_from_headers(headers: Option<&FieldTable>) -> u32 {
    let count = headers
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(|value| match value {
            AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongInt(n) => Some(i64::from(*n)),
            AMQPValue::LongUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongLongInt(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    u32::try_from(count.max(0))
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name)
        .map_err(|_| BrokerError::Unavailable(format!("name too long for AMQP: {name}")))
}

fn unavailable(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// Runs `operation` within `limit`, or fails with [`BrokerError::Unavailable`].
async fn within<T>(
    limit: Duration,
    what: &str,
    operation: impl Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or_else(|_| Err(BrokerError::Unavailable(format!("{what} timed out"))))
}

/// The turn a published answer belongs to: its `correlation_id`.
fn turn_of(message: &BasicReturnMessage) -> Option<Uuid> {
    message
        .delivery
        .properties
        .correlation_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
}

pub struct RabbitBroker {
    shared: Arc<Shared>,
    supervisor: tokio::task::JoinHandle<()>,
}

/// What the broker handle, its supervisor and its streams share.
struct Shared {
    topology: Topology,
    url: AmqpUrl,
    connection_name: String,
    max_queued_questions: usize,
    publish_timeout: Duration,
    /// Whether a link is up, and how many were lost (taking any answers in flight
    /// with them).
    connection: watch::Sender<ConnectionState>,
    prefetch: u16,
    /// The live connection, `None` while reconnecting. Streams watch it to
    /// subscribe again on the next one.
    link: watch::Sender<Option<Arc<Link>>>,
    undeliverable: Arc<Undeliverable>,
}

/// One connection with its publishing channels.
struct Link {
    connection: Connection,
    /// Questions and cancellations, with publisher confirms awaited one by one.
    questions: Channel,
    /// Answers, with publisher confirms checked off by [`track_answer_confirms`].
    answers: Channel,
    answer_confirms: mpsc::Sender<PublisherConfirm>,
    undeliverable: Arc<Undeliverable>,
}

impl Link {
    async fn open(shared: &Shared) -> Result<Self, BrokerError> {
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
        let (answer_confirms, confirms) = mpsc::channel(ANSWERS_IN_FLIGHT);
        tokio::spawn(track_answer_confirms(
            confirms,
            shared.undeliverable.clone(),
        ));
        Ok(Self {
            connection,
            questions,
            answers,
            answer_confirms,
            undeliverable: shared.undeliverable.clone(),
        })
    }

    fn is_healthy(&self) -> bool {
        self.connection.status().connected()
            && self.questions.status().connected()
            && self.answers.status().connected()
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
    channel
        .queue_declare(
            short(&topology.dead_letters)?,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
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

/// Answer chunks are published without waiting for their confirmation, so a turn
/// streams at the model's pace rather than one broker round trip per chunk; this
/// task checks the confirmations off in order. A chunk RabbitMQ could not route
/// (the gateway's reply queue is gone) comes back here and marks its turn, so the
/// worker's next publish for that turn fails with
/// [`BrokerError::NoSuchReplyQueue`] and it stops. A chunk lost with a connection is
/// not reported to the worker: the gateway notices the gap in `seq` (or the missing
/// end) and ends the turn with an error. The last answer of a turn is always
/// confirmed before its question is acknowledged.
async fn track_answer_confirms(
    mut confirms: mpsc::Receiver<PublisherConfirm>,
    undeliverable: Arc<Undeliverable>,
) {
    while let Some(confirm) = confirms.recv().await {
        match confirm.await {
            Ok(confirmation) => {
                undeliverable.note(confirmation);
            }
            Err(error) => {
                tracing::debug!(%error, "an answer's confirmation was lost with its connection")
            }
        }
    }
}

/// Turns whose answers RabbitMQ returned as unroutable, by turn id.
#[derive(Default)]
struct Undeliverable(Mutex<HashMap<Uuid, Instant>>);

impl Undeliverable {
    /// Records what a confirmation tells about routing; returns whether it was a
    /// plain acknowledgement, and the turn of any answer it carried back.
    fn note(&self, confirmation: Confirmation) -> (bool, Option<Uuid>) {
        let (acked, returned) = match confirmation {
            Confirmation::Ack(returned) => (true, returned),
            Confirmation::Nack(returned) => (false, returned),
            Confirmation::NotRequested => (true, None),
        };
        if !acked {
            tracing::warn!("RabbitMQ refused an answer; its gateway will see a gap");
        }
        // RabbitMQ sends a return before the confirmation of the same message, but
        // lapin may attach it to another confirmation of the same batch: the
        // returned message itself names its turn.
        let turn = returned.as_ref().and_then(turn_of);
        if let Some(turn) = turn {
            let mut turns = self.0.lock().expect("undeliverable turns");
            if turns.len() >= UNDELIVERABLE_PRUNE_AT {
                turns.retain(|_, since| since.elapsed() < UNDELIVERABLE_TTL);
            }
            turns.insert(turn, Instant::now());
        }
        (acked, turn)
    }

    fn take(&self, turn: Uuid) -> bool {
        self.0
            .lock()
            .expect("undeliverable turns")
            .remove(&turn)
            .is_some()
    }
}

impl RabbitBroker {
    /// Connects to `config.url` and declares the shared topology. Fails if RabbitMQ
    /// cannot be reached now, or `config.url` names the embedded broker; once
    /// connected, the connection is re-established by itself whenever it is lost.
    /// `prefetch` bounds the questions RabbitMQ hands this process before it
    /// acknowledges them (the worker pool's size).
    pub async fn connect(config: &BrokerConfig, prefetch: u16) -> Result<Self, BrokerError> {
        let BrokerEngine::RabbitMq(url) = &config.url else {
            return Err(BrokerError::Unavailable(
                "broker.url is empty: the embedded broker, not RabbitMQ".into(),
            ));
        };
        let topology = Topology::new(&config.question_queue)?;
        let (link, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            connection_name: format!(
                "parlor-{}-{}",
                config.question_queue,
                Uuid::new_v4().simple()
            ),
            topology,
            url: url.clone(),
            max_queued_questions: config.max_queued_questions,
            connection: watch::Sender::new(ConnectionState {
                connected: false,
                lost: 0,
            }),
            publish_timeout: config.publish_timeout(),
            prefetch: prefetch.max(1),
            link,
            undeliverable: Arc::default(),
        });
        let link = within(
            CONNECT_TIMEOUT,
            "connecting to RabbitMQ",
            Link::open(&shared),
        )
        .await?;
        shared.link.send_replace(Some(Arc::new(link)));
        shared
            .connection
            .send_modify(|state| state.connected = true);
        let supervisor = tokio::spawn(supervise(shared.clone()));
        Ok(Self { shared, supervisor })
    }

    /// The `connection_name` client property of this process's connection.
    pub fn connection_name(&self) -> &str {
        &self.shared.connection_name
    }
}

impl Drop for RabbitBroker {
    fn drop(&mut self) {
        self.supervisor.abort();
        // Streams see the connection go, and end once the supervisor is gone: they
        // must not outlive the handle they came from.
        self.shared.link.send_replace(None);
    }
}

impl Shared {
    fn current_link(&self) -> Result<Arc<Link>, BrokerError> {
        match &*self.link.borrow() {
            Some(link) if link.is_healthy() => Ok(link.clone()),
            _ => Err(BrokerError::Unavailable("not connected to RabbitMQ".into())),
        }
    }
}

/// Keeps one live connection: waits for the current one to fail, then opens the
/// next with capped exponential backoff.
async fn supervise(shared: Arc<Shared>) {
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

/// What one stream consumes, and how it subscribes again on a new connection.
trait Subscription: Send + Sync + 'static {
    type Item: Send + 'static;
    /// Declares what it needs on `link` and starts consuming; the channel is kept
    /// open as long as the consumer.
    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>>;
    /// `None` skips a delivery (it is settled here). `channel` is the one it came
    /// on, to be kept open while the delivery is unsettled.
    fn convert(
        &self,
        delivery: LapinDelivery,
        channel: &Channel,
    ) -> BoxFuture<'static, Option<Self::Item>>;
}

/// A consumer that survives connections: on a new link it subscribes again.
struct Feed<S> {
    links: watch::Receiver<Option<Arc<Link>>>,
    subscription: S,
    active: Option<Active>,
}

struct Active {
    link: Arc<Link>,
    channel: Channel,
    consumer: Consumer,
}

impl<S: Subscription> Feed<S> {
    /// Subscribes on the current link; fails if there is none.
    async fn start(shared: &Shared, subscription: S) -> Result<Self, BrokerError> {
        let link = shared.current_link()?;
        let (channel, consumer) = within(
            SUBSCRIBE_TIMEOUT,
            "subscribing",
            subscription.subscribe(link.clone()),
        )
        .await?;
        Ok(Self {
            links: shared.link.subscribe(),
            subscription,
            active: Some(Active {
                link,
                channel,
                consumer,
            }),
        })
    }

    /// The next item; `None` only once the broker handle is gone.
    async fn next(&mut self) -> Option<S::Item> {
        loop {
            let Some(active) = self.active.as_mut() else {
                self.resubscribe().await?;
                continue;
            };
            let delivery = tokio::select! {
                delivery = active.consumer.next() => delivery,
                changed = self.links.changed() => {
                    changed.ok()?;
                    let same = matches!(&*self.links.borrow_and_update(), Some(link) if Arc::ptr_eq(link, &active.link));
                    if !same {
                        self.active = None;
                    }
                    continue;
                }
            };
            match delivery {
                Some(Ok(delivery)) => {
                    let item = self.subscription.convert(delivery, &active.channel);
                    if let Some(item) = item.await {
                        return Some(item);
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "a consumer lost its channel; subscribing again");
                    self.active = None;
                }
                None => {
                    tracing::debug!("a consumer was cancelled; subscribing again");
                    self.active = None;
                }
            }
        }
    }

    /// Waits for a live link and subscribes on it; `None` once the broker is gone.
    async fn resubscribe(&mut self) -> Option<()> {
        loop {
            let link = self
                .links
                .wait_for(|link| link.as_ref().is_some_and(|link| link.is_healthy()))
                .await
                .ok()?
                .clone()?;
            let subscribing = self.subscription.subscribe(link.clone());
            match within(SUBSCRIBE_TIMEOUT, "subscribing", subscribing).await {
                Ok((channel, consumer)) => {
                    self.active = Some(Active {
                        link,
                        channel,
                        consumer,
                    });
                    return Some(());
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe again; retrying");
                    tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                }
            }
        }
    }

    /// A stream pulled only when its reader asks.
    fn into_lazy_stream(self) -> BoxStream<'static, S::Item> {
        futures_util::stream::unfold(self, |mut feed| async move {
            let item = feed.next().await?;
            Some((item, feed))
        })
        .boxed()
    }

    /// A stream fed by a task, so that it subscribes again at once on a new
    /// connection even while its reader is busy. The task ends with the stream.
    fn into_eager_stream(mut self, buffer: usize) -> BoxStream<'static, S::Item> {
        let (sender, receiver) = mpsc::channel(buffer);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = self.next() => item,
                    () = sender.closed() => return,
                };
                let Some(item) = item else { return };
                if sender.send(item).await.is_err() {
                    return;
                }
            }
        });
        ReceiverStream::new(receiver).boxed()
    }
}

async fn open_channel(link: &Link) -> Result<Channel, BrokerError> {
    link.connection.create_channel().await.map_err(unavailable)
}

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

/// This gateway's reply queue.
struct Replies {
    queue: String,
    received: std::sync::atomic::AtomicU64,
}

impl Subscription for Replies {
    type Item = Answer;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        let queue = self.queue.clone();
        async move {
            let channel = open_channel(&link).await?;
            declare_private_queue(&channel, &queue).await?;
            let consumer = consume_acknowledged(&channel, &queue, REPLY_PREFETCH).await?;
            Ok((channel, consumer))
        }
        .boxed()
    }

    fn convert(&self, delivery: LapinDelivery, _: &Channel) -> BoxFuture<'static, Option<Answer>> {
        // Answers are transient: acknowledging only bounds what RabbitMQ pushes
        // ahead, so one acknowledgement covers many.
        let received = self
            .received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let acker = received
            .is_multiple_of(REPLY_ACK_EVERY)
            .then(|| delivery.acker.clone());
        let answer = serde_json::from_slice::<Answer>(&delivery.data);
        async move {
            if let Some(acker) = acker
                && let Err(error) = acker.ack(BasicAckOptions { multiple: true }).await
            {
                tracing::debug!(%error, "could not acknowledge answers");
            }
            match answer {
                Ok(answer) => Some(answer),
                Err(error) => {
                    tracing::warn!(%error, "dropped a malformed answer");
                    None
                }
            }
        }
        .boxed()
    }
}

/// One subscriber's share of the cancellation fanout.
struct Cancels {
    exchange: String,
}

impl Subscription for Cancels {
    type Item = Uuid;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        let exchange = self.exchange.clone();
        async move {
            let channel = open_channel(&link).await?;
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
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
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
struct Questions {
    queue: String,
    prefetch: u16,
}

impl Subscription for Questions {
    type Item = Delivery;

    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>> {
        let queue = self.queue.clone();
        let prefetch = self.prefetch;
        async move {
            let channel = open_channel(&link).await?;
            let consumer = consume_acknowledged(&channel, &queue, prefetch).await?;
            Ok((channel, consumer))
        }
        .boxed()
    }

    fn convert(
        &self,
        delivery: LapinDelivery,
        channel: &Channel,
    ) -> BoxFuture<'static, Option<Delivery>> {
        let attempt = attempt_from_headers(delivery.properties.headers().as_ref());
        let question = serde_json::from_slice::<Question>(&delivery.data);
        let settle = RabbitSettle::new(delivery.acker, channel.clone());
        async move {
            let question = match question {
                Ok(question) => question,
                Err(error) => {
                    tracing::warn!(%error, "dead-lettering a malformed question");
                    let _ = settle.settle(Outcome::Reject).await;
                    return None;
                }
            };
            Some(Delivery::new(question, attempt, Box::new(settle)))
        }
        .boxed()
    }
}

/// Settles one question on the channel it came from. Once that channel is gone
/// (its connection was lost), settling does nothing: RabbitMQ redelivers it.
struct RabbitSettle {
    unsettled: Option<Unsettled>,
}

/// A delivery's acker and its channel. Holding the channel keeps it open after its
/// consumer is gone (the pool stopped taking questions): closing it would hand
/// every running turn's question to another worker while this one answers it.
struct Unsettled {
    acker: Acker,
    _channel: Channel,
}

enum Outcome {
    Ack,
    Requeue,
    Reject,
}

impl RabbitSettle {
    fn new(acker: Acker, channel: Channel) -> Self {
        Self {
            unsettled: Some(Unsettled {
                acker,
                _channel: channel,
            }),
        }
    }

    fn settle(mut self, outcome: Outcome) -> BoxFuture<'static, Result<(), BrokerError>> {
        let unsettled = self.unsettled.take();
        async move {
            let Some(Unsettled { acker, _channel }) = unsettled else {
                return Ok(());
            };
            let settled = match outcome {
                Outcome::Ack => acker.ack(BasicAckOptions::default()).await,
                Outcome::Requeue => {
                    acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await
                }
                Outcome::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
            };
            match settled {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("a question's channel is gone; RabbitMQ redelivers it")
                }
                Err(error) => {
                    tracing::debug!(%error, "could not settle a question; RabbitMQ redelivers it")
                }
            }
            Ok(())
        }
        .boxed()
    }
}

impl Settle for RabbitSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        (*self).settle(Outcome::Ack)
    }

    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        (*self).settle(Outcome::Requeue)
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        (*self).settle(Outcome::Reject)
    }
}

impl Drop for RabbitSettle {
    fn drop(&mut self) {
        // Dropped unsettled: whoever held it died. Dead-letter rather than retry a
        // question that may be what killed it.
        if let Some(Unsettled { acker, _channel }) = self.unsettled.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            tracing::warn!("a question was dropped unsettled; dead-lettering it");
            runtime.spawn(async move {
                let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
                drop(_channel);
            });
        }
    }
}

/// Publishes one answer on `link`. With `confirm`, waits for RabbitMQ's
/// confirmation; otherwise hands it to [`track_answer_confirms`].
async fn publish_answer_on(
    link: &Link,
    publish_timeout: Duration,
    reply_to: &str,
    answer: &Answer,
    confirm: bool,
) -> Result<(), BrokerError> {
    let no_such_queue = || BrokerError::NoSuchReplyQueue(reply_to.to_owned());
    let routing_key = ShortString::try_new(reply_to).map_err(|_| no_such_queue())?;
    let body = serde_json::to_vec(answer).map_err(unavailable)?;
    let properties = BasicProperties::default()
        .with_content_type(JSON.into())
        .with_delivery_mode(TRANSIENT)
        .with_correlation_id(answer.turn_id.to_string().into());
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    within(publish_timeout, "publishing an answer", async {
        let pending = link
            .answers
            .basic_publish("".into(), routing_key, options, &body, properties)
            .await
            .map_err(unavailable)?;
        if !confirm {
            return link
                .answer_confirms
                .send(pending)
                .await
                .map_err(|_| BrokerError::Unavailable("the connection was lost".into()));
        }
        let confirmation = pending.await.map_err(unavailable)?;
        // NB: a return of another turn's chunk may arrive on this confirmation; it
        // is recorded for that turn.
        match link.undeliverable.note(confirmation) {
            (_, Some(turn)) if turn == answer.turn_id => Err(no_such_queue()),
            (true, _) => Ok(()),
            (false, _) => Err(BrokerError::Unavailable(
                "RabbitMQ refused the answer".into(),
            )),
        }
    })
    .await
}

impl Broker for RabbitBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn is_connected(&self) -> bool {
        self.shared.current_link().is_ok()
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.connection.subscribe()
    }

    fn open_reply_queue(&self) -> BoxFuture<'static, Result<ReplyQueue, BrokerError>> {
        let shared = self.shared.clone();
        async move {
            let queue = shared.topology.reply_queue(Uuid::new_v4());
            let replies = Replies {
                queue: queue.clone(),
                received: Default::default(),
            };
            let feed = Feed::start(&shared, replies).await?;
            Ok(ReplyQueue {
                address: queue,
                answers: feed.into_eager_stream(REPLY_BUFFER),
            })
        }
        .boxed()
    }

    fn publish_question(&self, question: Question) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = self.shared.clone();
        async move {
            let link = shared.current_link()?;
            let body = serde_json::to_vec(&question).map_err(unavailable)?;
            let properties = BasicProperties::default()
                .with_content_type(JSON.into())
                .with_delivery_mode(PERSISTENT)
                .with_reply_to(short(&question.reply_to)?)
                .with_correlation_id(question.turn_id.to_string().into());
            let queue = short(&shared.topology.questions)?;
            // Mandatory: should the queue be missing, the question comes back
            // instead of vanishing.
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let confirmation = within(shared.publish_timeout, "publishing a question", async {
                link.questions
                    .basic_publish("".into(), queue, options, &body, properties)
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)
            })
            .await?;
            match confirmation {
                Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
                Confirmation::Ack(Some(_)) => Err(BrokerError::Unavailable(format!(
                    "the question queue {} does not exist",
                    shared.topology.questions
                ))),
                // The queue is at `x-max-length` and rejects publishes.
                Confirmation::Nack(_) => Err(BrokerError::Full),
            }
        }
        .boxed()
    }

    fn publish_cancel(&self, turn_id: Uuid) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = self.shared.clone();
        async move {
            let link = shared.current_link()?;
            let exchange = short(&shared.topology.cancels)?;
            let body = turn_id.to_string();
            let properties = BasicProperties::default().with_delivery_mode(TRANSIENT);
            within(shared.publish_timeout, "publishing a cancellation", async {
                let confirmation = link
                    .questions
                    .basic_publish(
                        exchange,
                        "".into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        properties,
                    )
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)?;
                if confirmation.is_ack() {
                    Ok(())
                } else {
                    Err(BrokerError::Unavailable(
                        "RabbitMQ refused the cancellation".into(),
                    ))
                }
            })
            .await
        }
        .boxed()
    }

    fn consume_questions(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Delivery>, BrokerError>> {
        let shared = self.shared.clone();
        async move {
            let questions = Questions {
                queue: shared.topology.questions.clone(),
                prefetch: shared.prefetch,
            };
            // Lazy: a delivery is converted only when the pool has an idle worker;
            // RabbitMQ holds back the rest beyond `prefetch`.
            Ok(Feed::start(&shared, questions).await?.into_lazy_stream())
        }
        .boxed()
    }

    fn subscribe_cancels(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Uuid>, BrokerError>> {
        let shared = self.shared.clone();
        async move {
            let cancels = Cancels {
                exchange: shared.topology.cancels.clone(),
            };
            Ok(Feed::start(&shared, cancels)
                .await?
                .into_eager_stream(CANCEL_BUFFER))
        }
        .boxed()
    }

    fn publish_answer(
        &self,
        reply_to: &str,
        answer: Answer,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = self.shared.clone();
        let reply_to = reply_to.to_owned();
        async move {
            if shared.undeliverable.take(answer.turn_id) {
                return Err(BrokerError::NoSuchReplyQueue(reply_to));
            }
            let link = shared.current_link()?;
            let ends_turn = answer.body.ends_turn();
            publish_answer_on(&link, shared.publish_timeout, &reply_to, &answer, ends_turn).await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_question_queue() {
        let topology = Topology::new("chat").unwrap();
        assert_eq!(topology.questions, "chat");
        assert_eq!(topology.dead_letters, "chat.dead");
        assert_eq!(topology.cancels, "chat.cancel");
        let gateway = Uuid::new_v4();
        assert_eq!(
            topology.reply_queue(gateway),
            format!("chat.reply.{}", gateway.simple())
        );
    }

    #[test]
    fn names_must_fit_in_an_amqp_short_string() {
        assert!(Topology::new("").is_err());
        assert!(Topology::new(&"q".repeat(250)).is_err());
        let longest = MAX_NAME_BYTES - ".reply.".len() - 32;
        let topology = Topology::new(&"q".repeat(longest)).unwrap();
        assert_eq!(topology.reply_queue(Uuid::new_v4()).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn the_first_delivery_has_no_count() {
        assert_eq!(attempt_from_headers(None), 1);
        assert_eq!(attempt_from_headers(Some(&FieldTable::default())), 1);
    }

    #[test]
    fn the_delivery_count_header_gives_the_attempt() {
        let with = |value| {
            let mut headers = FieldTable::default();
            headers.insert("x-delivery-count".into(), value);
            attempt_from_headers(Some(&headers))
        };
        assert_eq!(with(AMQPValue::LongLongInt(1)), 2);
        assert_eq!(with(AMQPValue::LongInt(2)), 3);
        assert_eq!(with(AMQPValue::ShortShortUInt(4)), 5);
        assert_eq!(with(AMQPValue::LongLongInt(-3)), 1);
        assert_eq!(with(AMQPValue::LongLongInt(i64::MAX)), u32::MAX);
        assert_eq!(with(AMQPValue::LongString("2".into())), 1);
    }

    #[test]
    fn returned_answers_mark_their_turn() {
        let undeliverable = Undeliverable::default();
        let turn = Uuid::new_v4();
        assert_eq!(undeliverable.note(Confirmation::Ack(None)), (true, None));
        assert_eq!(undeliverable.note(Confirmation::Nack(None)), (false, None));
        assert!(!undeliverable.take(turn));
    }
}
