//! What the pool, worker and drain tests share: an agent whose answers follow the
//! question's text, a broker that records how each question was settled, and a
//! pool wired to both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use uuid::Uuid;

use super::agent_pool::{
    AgentPool, PoolSettings, PoolStatus, PoolStatusWatch, WatchPoolStatus, WorkerThreads,
};
use super::stats::{ActorDirectory, Tracked};
use crate::agent::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::broker::embedded::EmbeddedBroker;
use crate::broker::{
    Adoption, Answer, AnswerBody, Broker, BrokerError, ConnectionState, Delivery, Notice, Orphan,
    Question, ReplyQueue, Settle,
};
use crate::conversation::FinishReason;
use crate::counters::Counters;

/// Answers "ok" at once; `sleep MS` answers "ok" after MS milliseconds; `panic`
/// panics while answering.
pub struct ScriptedAgent;

impl Agent for ScriptedAgent {
    fn answer(&self, request: AgentRequest) -> AgentStream {
        let answer = async move {
            assert_ne!(request.text, "panic", "the agent broke");
            if let Some(ms) = request.text.strip_prefix("sleep ") {
                let ms = ms.parse().expect("sleep MS");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(AgentEvent::Text("ok".into()))
        };
        let end = futures_util::stream::iter([Ok(AgentEvent::Finished(FinishReason::Stop))]);
        futures_util::stream::once(answer).chain(end).boxed()
    }
}

/// How a question was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Settled {
    Acked,
    Requeued,
    Rejected,
}

/// The embedded broker, recording every settlement by turn.
pub struct RecordingBroker {
    inner: EmbeddedBroker,
    settled: Arc<Mutex<Vec<(Uuid, Settled)>>>,
    /// Turns delivered as if for the nth time (the embedded engine never redelivers).
    attempts: Arc<Mutex<HashMap<Uuid, u32>>>,
}

impl RecordingBroker {
    pub fn new() -> Self {
        Self {
            inner: EmbeddedBroker::new(64),
            settled: Arc::default(),
            attempts: Arc::default(),
        }
    }

    /// Every settlement so far, in order.
    pub fn settled(&self) -> Vec<(Uuid, Settled)> {
        self.settled.lock().unwrap().clone()
    }
}

struct Recorder {
    turn_id: Uuid,
    settled: Arc<Mutex<Vec<(Uuid, Settled)>>>,
}

impl Recorder {
    fn record(self, how: Settled) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.settled.lock().unwrap().push((self.turn_id, how));
        Box::pin(futures_util::future::ready(Ok(())))
    }
}

impl Settle for Recorder {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.record(Settled::Acked)
    }

    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.record(Settled::Requeued)
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.record(Settled::Rejected)
    }
}

impl Broker for RecordingBroker {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.connection_state()
    }

    fn open_reply_queue(&self) -> BoxFuture<'static, Result<ReplyQueue, BrokerError>> {
        self.inner.open_reply_queue()
    }

    fn publish_question(&self, question: Question) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.inner.publish_question(question)
    }

    fn publish_cancel(&self, turn_id: Uuid) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.inner.publish_cancel(turn_id)
    }

    fn publish_notice(
        &self,
        to: &str,
        notice: Notice,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        self.inner.publish_notice(to, notice)
    }

    fn publish_orphan(&self, orphan: Orphan) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.inner.publish_orphan(orphan)
    }

    fn consume_orphans(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Adoption>, BrokerError>> {
        self.inner.consume_orphans()
    }

    fn consume_questions(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Delivery>, BrokerError>> {
        let settled = self.settled.clone();
        let attempts = self.attempts.clone();
        let questions = self.inner.consume_questions();
        Box::pin(async move {
            let recorded = questions.await?.map(move |delivery| {
                let turn_id = delivery.question.turn_id;
                let attempt = attempts.lock().unwrap().get(&turn_id).copied();
                let recorder = Recorder {
                    turn_id,
                    settled: settled.clone(),
                };
                let attempt = attempt.unwrap_or(delivery.attempt);
                Delivery::new(delivery.question, attempt, Box::new(recorder))
            });
            Ok(recorded.boxed())
        })
    }

    fn subscribe_cancels(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Uuid>, BrokerError>> {
        self.inner.subscribe_cancels()
    }

    fn publish_answer(
        &self,
        reply_to: &str,
        answer: Answer,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.inner.publish_answer(reply_to, answer)
    }
}

/// A pool of `workers` × `turns_per_worker` over a [`RecordingBroker`], with the
/// reply queue its answers go to.
pub struct Rig {
    pub broker: Arc<RecordingBroker>,
    pub pool: Tracked<AgentPool>,
    pub counters: Arc<Counters>,
    pub directory: ActorDirectory,
    pub status: watch::Receiver<PoolStatus>,
    replies: ReplyQueue,
}

/// Longest wait for anything a test expects; with time paused, it passes only
/// when nothing else is left to happen.
const WAIT: Duration = Duration::from_secs(600);

impl Rig {
    pub async fn start(workers: usize, turns_per_worker: usize) -> Self {
        let broker = Arc::new(RecordingBroker::new());
        let counters = Arc::new(Counters::default());
        let directory = ActorDirectory::default();
        let replies = broker.open_reply_queue().await.unwrap();
        let settings = PoolSettings {
            workers,
            turns_per_worker,
            max_deliveries: 3,
            chunk_window: Duration::ZERO,
            max_answer_bytes: 1 << 20,
        };
        let pool = AgentPool::new(
            settings,
            WorkerThreads::current(),
            Arc::new(ScriptedAgent),
            broker.clone(),
            counters.clone(),
            directory.clone(),
        )
        .start_tracked();
        let PoolStatusWatch(status) = pool.send(WatchPoolStatus).await.unwrap();
        Self {
            broker,
            pool,
            counters,
            directory,
            status,
            replies,
        }
    }

    /// Publishes a question with `text`; answers its turn id.
    pub async fn ask(&self, text: &str) -> Uuid {
        self.try_ask(text).await.expect("the question is queued")
    }

    /// Publishes a question as if delivered for the `attempt`th time.
    pub async fn ask_attempt(&self, text: &str, attempt: u32) -> Uuid {
        let question = self.question(text);
        let turn_id = question.turn_id;
        self.broker
            .attempts
            .lock()
            .unwrap()
            .insert(turn_id, attempt);
        self.broker.publish_question(question).await.unwrap();
        turn_id
    }

    pub async fn try_ask(&self, text: &str) -> Result<Uuid, BrokerError> {
        let question = self.question(text);
        let turn_id = question.turn_id;
        self.broker.publish_question(question).await?;
        Ok(turn_id)
    }

    fn question(&self, text: &str) -> Question {
        Question {
            session_id: Uuid::new_v4(),
            turn_id: Uuid::new_v4(),
            reply_to: self.replies.address.clone(),
            history: vec![],
            text: text.into(),
            tools: None,
        }
    }

    pub async fn next_answer(&mut self) -> Answer {
        tokio::time::timeout(WAIT, self.replies.answers.next())
            .await
            .expect("an answer within the wait")
            .expect("the reply queue is open")
    }

    /// The last answer of `turn_id`, skipping its chunks; fails on another turn's.
    pub async fn end_of(&mut self, turn_id: Uuid) -> AnswerBody {
        loop {
            let answer = self.next_answer().await;
            assert_eq!(answer.turn_id, turn_id, "{answer:?}");
            if answer.body.ends_turn() {
                return answer.body;
            }
        }
    }

    /// Waits until exactly `busy` turns run.
    pub async fn until_busy(&mut self, busy: usize) {
        tokio::time::timeout(WAIT, self.status.wait_for(|status| status.busy == busy))
            .await
            .expect("the pool's load within the wait")
            .expect("the pool runs");
    }

    /// Waits until the agent workers, by index, have handled `handled` messages.
    pub async fn until_workers_handled(&self, handled: &[u64]) {
        let by_worker = || {
            let mut workers: Vec<_> = self
                .directory
                .snapshot()
                .into_iter()
                .filter(|actor| actor.kind == "agent_worker")
                .map(|actor| (actor.id, actor.handled_total))
                .collect();
            workers.sort();
            workers
                .into_iter()
                .map(|(_, handled)| handled)
                .collect::<Vec<_>>()
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while by_worker() != handled {
            assert!(
                tokio::time::Instant::now() < deadline,
                "workers handled {:?}, not {handled:?}",
                by_worker()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The end a turn finished normally with.
pub fn done() -> AnswerBody {
    AnswerBody::Done {
        finish_reason: FinishReason::Stop,
    }
}
