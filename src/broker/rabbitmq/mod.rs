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
//! | `Q.orphans` | durable queue of questions whose gateway went away, for any gateway to store |
//! | `Q.cancel` | fanout exchange of cancellations; each subscriber binds its own exclusive queue |
//! | `Q.reply.<uuid>` | one exclusive auto-delete reply queue per gateway process |
//! | `Q.reply.<uuid>.notices` | the same gateway's notices from other gateways (a session taken over) |
//!
//! (The wire details: docs/protocol.md, "RabbitMQ topology".)
//!
//! This file holds [`RabbitBroker`], the state its parts share, and the [`Broker`]
//! implementation that puts them together. The parts, one job each:
//!
//! - `names.rs` — the topology's names;
//! - `link.rs` — the one connection per process, and the supervisor that reopens it;
//! - `subscription.rs` — consumers that subscribe again on every new connection;
//! - `streams.rs` — the answer, cancellation and question streams built on them;
//! - `settle.rs` — acknowledging, requeueing and rejecting questions;
//! - `publish.rs` — publishing with confirms and timeouts;
//! - `answer_batches.rs` — answers joined per gateway into messages;
//! - `headers.rs` — what messages carry in their headers: attempt, turn, trace.
//!
//! While the connection is down, [`Broker::is_connected`] is false and every publish
//! fails at once with [`BrokerError::Unavailable`]; the streams never end on a
//! connection loss, only once the [`RabbitBroker`] is dropped.

mod answer_batches;
mod headers;
mod link;
mod names;
mod publish;
mod settle;
mod streams;
mod subscription;

pub use headers::attempt_from_headers;
pub use names::Topology;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    Adoption, Answer, Broker, BrokerError, ConnectionState, Delivery, Notice, Orphan, Question,
    ReplyQueue, Settle,
};
use crate::config::{AmqpUrl, BrokerConfig, BrokerEngine};
use link::{CONNECT_TIMEOUT, Link};
use publish::Undeliverable;
use streams::{Cancels, Notices, Orphans, Questions, Replies};
use subscription::Feed;

/// Messages of answers waiting between the reply queue's consumer and the
/// gateway's reader.
const REPLY_BUFFER: usize = 256;
/// Cancellations waiting for a slow worker pool.
const CANCEL_BUFFER: usize = 256;
/// Notices waiting for the gateway (they come one per session taken over).
const NOTICE_BUFFER: usize = 256;

pub struct RabbitBroker {
    shared: Arc<EngineState>,
    supervisor: tokio::task::JoinHandle<()>,
}

/// What the broker handle, its supervisor and its streams share.
struct EngineState {
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

impl EngineState {
    fn current_link(&self) -> Result<Arc<Link>, BrokerError> {
        match &*self.link.borrow() {
            Some(link) if link.is_healthy() => Ok(link.clone()),
            _ => Err(BrokerError::Unavailable("not connected to RabbitMQ".into())),
        }
    }
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
        let shared = Arc::new(EngineState {
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
        let supervisor = tokio::spawn(link::supervise(shared.clone()));
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
            let notices = Notices {
                queue: names::notice_queue(&queue),
            };
            let notices = Feed::start(&shared, notices).await?;
            Ok(ReplyQueue {
                address: queue,
                answers: feed
                    .into_eager_stream(REPLY_BUFFER)
                    .flat_map(futures_util::stream::iter)
                    .boxed(),
                notices: notices.into_eager_stream(NOTICE_BUFFER),
            })
        }
        .boxed()
    }

    fn publish_question(&self, question: Question) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = self.shared.clone();
        async move { publish::publish_question(&shared, question).await }.boxed()
    }

    fn publish_cancel(&self, turn_id: Uuid) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = self.shared.clone();
        async move { publish::publish_cancel(&shared, turn_id).await }.boxed()
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
        async move { publish::publish_answer(&shared, &reply_to, answer).await }.boxed()
    }

    fn publish_orphan(&self, orphan: Orphan) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = self.shared.clone();
        async move { publish::publish_orphan(&shared, &orphan).await }.boxed()
    }

    fn consume_orphans(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Adoption>, BrokerError>> {
        let shared = self.shared.clone();
        async move {
            let orphans = Orphans {
                queue: shared.topology.orphans.clone(),
            };
            Ok(Feed::start(&shared, orphans).await?.into_lazy_stream())
        }
        .boxed()
    }

    fn publish_notice(
        &self,
        to: &str,
        notice: Notice,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let shared = self.shared.clone();
        let to = to.to_owned();
        async move { publish::publish_notice(&shared, &to, &notice).await }.boxed()
    }
}
