//! The embedded engine: bounded tokio channels inside one process, so `parlor serve`
//! needs nothing installed. It never redelivers (a process that dies takes its
//! questions with it), so acknowledgements are no-ops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream, UnboundedReceiverStream};
use uuid::Uuid;

use super::{
    Adoption, Answer, Broker, BrokerError, ConnectionState, Delivery, Notice, Orphan, Question,
    ReplyQueue, Settle,
};

/// Answers that may wait for the gateway's broker actor before workers slow down.
const REPLY_QUEUE_CAPACITY: usize = 4096;
/// Cancellations that may wait for a slow worker pool; older ones are dropped then.
const CANCEL_CAPACITY: usize = 1024;

pub struct EmbeddedBroker {
    questions: mpsc::Sender<Question>,
    /// Taken by the first (and only) consumer.
    question_receiver: Mutex<Option<mpsc::Receiver<Question>>>,
    reply_queues: Arc<Mutex<HashMap<String, mpsc::Sender<Answer>>>>,
    /// Notices are rare (a session changing hands), so unbounded.
    notice_queues: Mutex<HashMap<String, mpsc::UnboundedSender<Notice>>>,
    cancels: broadcast::Sender<Uuid>,
    /// Always connected: there is no connection to lose.
    connection: watch::Sender<ConnectionState>,
}

impl EmbeddedBroker {
    /// `capacity` bounds the questions waiting for a worker; beyond it publishing
    /// fails with [`BrokerError::Full`].
    pub fn new(capacity: usize) -> Self {
        let (questions, question_receiver) = mpsc::channel(capacity);
        let (cancels, _) = broadcast::channel(CANCEL_CAPACITY);
        Self {
            questions,
            question_receiver: Mutex::new(Some(question_receiver)),
            reply_queues: Arc::default(),
            notice_queues: Mutex::default(),
            cancels,
            connection: watch::Sender::new(ConnectionState {
                connected: true,
                lost: 0,
            }),
        }
    }
}

/// Nothing is kept for redelivery in one process, so settling changes nothing:
/// requeueing at shutdown would hand the question to the process that is stopping.
struct NothingToSettle;

impl Settle for NothingToSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

impl Broker for EmbeddedBroker {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.connection.subscribe()
    }

    fn open_reply_queue(&self) -> BoxFuture<'static, Result<ReplyQueue, BrokerError>> {
        let address = format!("reply.{}", Uuid::new_v4().simple());
        let (sender, receiver) = mpsc::channel(REPLY_QUEUE_CAPACITY);
        self.reply_queues
            .lock()
            .expect("reply queue map")
            .insert(address.clone(), sender);
        let answers = ReceiverStream::new(receiver).boxed();
        let (sender, receiver) = mpsc::unbounded_channel();
        self.notice_queues
            .lock()
            .expect("notice queue map")
            .insert(address.clone(), sender);
        let notices = UnboundedReceiverStream::new(receiver).boxed();
        let queue = ReplyQueue {
            address,
            answers,
            notices,
        };
        futures_util::future::ready(Ok(queue)).boxed()
    }

    fn publish_question(&self, question: Question) -> BoxFuture<'static, Result<(), BrokerError>> {
        let result = self
            .questions
            .try_send(question)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => BrokerError::Full,
                mpsc::error::TrySendError::Closed(_) => {
                    BrokerError::Unavailable("no worker pool is consuming questions".into())
                }
            });
        futures_util::future::ready(result).boxed()
    }

    fn publish_cancel(&self, turn_id: Uuid) -> BoxFuture<'static, Result<(), BrokerError>> {
        // No subscriber means no worker runs anything: nothing to cancel.
        let _ = self.cancels.send(turn_id);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn consume_questions(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Delivery>, BrokerError>> {
        let receiver = self
            .question_receiver
            .lock()
            .expect("question receiver")
            .take();
        let result = match receiver {
            Some(receiver) => Ok(ReceiverStream::new(receiver)
                .map(|question| Delivery::new(question, 1, Box::new(NothingToSettle)))
                .boxed()),
            None => Err(BrokerError::Unavailable(
                "the embedded broker has one question consumer".into(),
            )),
        };
        futures_util::future::ready(result).boxed()
    }

    fn subscribe_cancels(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Uuid>, BrokerError>> {
        let cancels = BroadcastStream::new(self.cancels.subscribe())
            .filter_map(|item| async move {
                match item {
                    Ok(turn_id) => Some(turn_id),
                    Err(lagged) => {
                        tracing::warn!(%lagged, "worker pool fell behind on cancellations");
                        None
                    }
                }
            })
            .boxed();
        futures_util::future::ready(Ok(cancels)).boxed()
    }

    fn publish_orphan(&self, _: Orphan) -> BoxFuture<'static, Result<(), BrokerError>> {
        // One process: the gateway that went away took every worker with it, so no
        // orphan is handed back here (and none would have anyone to adopt it).
        futures_util::future::ready(Ok(())).boxed()
    }

    fn consume_orphans(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Adoption>, BrokerError>> {
        futures_util::future::ready(Ok(futures_util::stream::pending().boxed())).boxed()
    }

    fn publish_notice(
        &self,
        to: &str,
        notice: Notice,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let notices = self.notice_queues.lock().expect("notice queue map");
        let delivered = notices
            .get(to)
            .is_some_and(|queue| queue.send(notice).is_ok());
        futures_util::future::ready(Ok(delivered)).boxed()
    }

    fn publish_answer(
        &self,
        reply_to: &str,
        answer: Answer,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let sender = self
            .reply_queues
            .lock()
            .expect("reply queue map")
            .get(reply_to)
            .cloned();
        let reply_to = reply_to.to_owned();
        async move {
            let sender = sender.ok_or_else(|| BrokerError::NoSuchReplyQueue(reply_to.clone()))?;
            sender
                .send(answer)
                .await
                .map_err(|_| BrokerError::NoSuchReplyQueue(reply_to))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::AnswerBody;
    use crate::conversation::FinishReason;

    fn question(reply_to: &str) -> Question {
        Question {
            session_id: Uuid::new_v4(),
            turn_id: Uuid::new_v4(),
            reply_to: reply_to.into(),
            history: vec![],
            text: "hi".into(),
            tools: None,
        }
    }

    #[tokio::test]
    async fn question_and_answer_round_trip() {
        let broker = EmbeddedBroker::new(4);
        let mut replies = broker.open_reply_queue().await.unwrap();
        let mut deliveries = broker.consume_questions().await.unwrap();
        let asked = question(&replies.address);
        broker.publish_question(asked.clone()).await.unwrap();

        let delivery = deliveries.next().await.unwrap();
        assert_eq!(delivery.question, asked);
        assert_eq!(delivery.trace, None, "one process: no trace to carry");
        let answer = Answer {
            session_id: asked.session_id,
            turn_id: asked.turn_id,
            attempt: delivery.attempt,
            body: AnswerBody::Done {
                finish_reason: FinishReason::Stop,
            },
        };
        broker
            .publish_answer(&delivery.question.reply_to, answer.clone())
            .await
            .unwrap();
        delivery.ack().await.unwrap();
        assert_eq!(replies.answers.next().await.unwrap(), answer);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_growing() {
        let broker = EmbeddedBroker::new(2);
        broker.publish_question(question("r")).await.unwrap();
        broker.publish_question(question("r")).await.unwrap();
        assert_eq!(
            broker.publish_question(question("r")).await,
            Err(BrokerError::Full)
        );
    }

    #[tokio::test]
    async fn answers_to_an_unknown_gateway_are_refused() {
        let broker = EmbeddedBroker::new(2);
        let answer = Answer {
            session_id: Uuid::new_v4(),
            turn_id: Uuid::new_v4(),
            attempt: 1,
            body: AnswerBody::Chunk {
                seq: 0,
                text: "x".into(),
            },
        };
        let error = broker.publish_answer("nowhere", answer).await.unwrap_err();
        assert_eq!(error, BrokerError::NoSuchReplyQueue("nowhere".into()));
    }

    #[tokio::test]
    async fn cancels_reach_subscribers() {
        let broker = EmbeddedBroker::new(2);
        let mut cancels = broker.subscribe_cancels().await.unwrap();
        let turn_id = Uuid::new_v4();
        broker.publish_cancel(turn_id).await.unwrap();
        assert_eq!(cancels.next().await, Some(turn_id));
    }
}
