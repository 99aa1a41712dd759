//! `AgentPool`: consumes questions and hands each to an idle
//! [`AgentWorker`]. It takes a question only when a worker is free, so the
//! broker's queue — not this process's memory — absorbs bursts. It supervises its
//! workers: one that dies is replaced, and the turn it held ends with an `error`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::agent_worker::{AgentWorker, CancelTurn, GiveBack, RunTurn, TurnOutcome};
use super::stats::{ActorDirectory, ActorStats, Tracked};
use crate::agent::Agent;
use crate::broker::{Answer, AnswerBody, Broker, Delivery};
use crate::conversation::ErrorCode;
use crate::counters::{Counters, bump};

/// Cancellations remembered for questions not yet taken from the queue.
const REMEMBERED_CANCELS: usize = 4096;

pub struct AgentPool {
    agent: Arc<dyn Agent>,
    broker: Arc<dyn Broker>,
    workers: Vec<WorkerSlot>,
    /// One permit per idle worker: a question is pulled only with a permit in hand.
    idle_workers: Arc<Semaphore>,
    settings: PoolSettings,
    /// Pulls questions while the pool takes them.
    taking: Option<SpawnHandle>,
    cancelled_early: VecDeque<Uuid>,
    cancelled_early_set: HashSet<Uuid>,
    stats: Arc<ActorStats>,
    counters: Arc<Counters>,
    directory: ActorDirectory,
}

/// How a pool is sized and how its workers behave.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Agent workers, each answering one turn at a time.
    pub size: usize,
    /// A question delivered more often than this is poison (it keeps killing
    /// workers): it is set aside and its session told.
    pub max_deliveries: u32,
    /// How long a worker may hold answer text to send it with what follows.
    pub chunk_window: Duration,
}

struct WorkerSlot {
    worker: Tracked<AgentWorker>,
    turn: Option<Uuid>,
}

impl AgentPool {
    pub fn new(
        settings: PoolSettings,
        agent: Arc<dyn Agent>,
        broker: Arc<dyn Broker>,
        counters: Arc<Counters>,
        directory: ActorDirectory,
    ) -> Self {
        let stats = ActorStats::new("agent_pool", "0");
        directory.register(&stats);
        let size = settings.size;
        let mut pool = Self {
            agent,
            broker,
            workers: Vec::with_capacity(size),
            idle_workers: Arc::new(Semaphore::new(size)),
            settings,
            taking: None,
            cancelled_early: VecDeque::new(),
            cancelled_early_set: HashSet::new(),
            stats,
            counters,
            directory,
        };
        for index in 0..size {
            let worker = pool.start_worker(index);
            pool.workers.push(WorkerSlot { worker, turn: None });
        }
        pool
    }

    /// Starts the pool; its address counts what is sent to it.
    pub fn start_tracked(self) -> Tracked<Self> {
        let stats = self.stats.clone();
        Tracked::new(self.start(), stats)
    }

    fn start_worker(&self, index: usize) -> Tracked<AgentWorker> {
        let stats = ActorStats::new("agent_worker", index.to_string());
        self.directory.register(&stats);
        let worker = AgentWorker::new(
            self.agent.clone(),
            self.broker.clone(),
            self.settings.chunk_window,
        );
        Tracked::new(worker.start(), stats)
    }

    fn remember_early_cancel(&mut self, turn_id: Uuid) {
        if self.cancelled_early.len() == REMEMBERED_CANCELS
            && let Some(oldest) = self.cancelled_early.pop_front()
        {
            self.cancelled_early_set.remove(&oldest);
        }
        self.cancelled_early.push_back(turn_id);
        self.cancelled_early_set.insert(turn_id);
    }

    /// The worker at `index` died holding a turn: replace it and end the turn.
    fn replace_dead_worker(&mut self, index: usize, turn: &TurnAddress, ctx: &mut Context<Self>) {
        tracing::error!(worker = index, turn_id = %turn.turn_id, "agent worker died; restarting it");
        bump(&self.counters.worker_restarts);
        self.workers[index].worker = self.start_worker(index);
        self.report_failure(turn, "the worker answering this turn failed".into(), ctx);
    }

    /// Ends a turn with an `error` no worker will send.
    fn report_failure(&self, turn: &TurnAddress, message: String, ctx: &mut Context<Self>) {
        let failure = Answer {
            session_id: turn.session_id,
            turn_id: turn.turn_id,
            attempt: turn.attempt,
            body: AnswerBody::Error {
                code: ErrorCode::Unavailable,
                message,
            },
        };
        let publish = self.broker.publish_answer(&turn.reply_to, failure);
        ctx.spawn(publish.into_actor(self).map(|result, _, _| {
            if let Err(error) = result {
                tracing::warn!(%error, "could not report a failed turn");
            }
        }));
    }

    /// Sets a poison question aside (dead-lettered) and tells its session.
    fn set_aside(&self, delivery: Delivery, ctx: &mut Context<Self>) {
        let turn = TurnAddress::of(&delivery);
        tracing::warn!(turn_id = %turn.turn_id, attempt = turn.attempt, "poison question set aside");
        let message = format!(
            "this question was tried {} times without an answer; it was set aside",
            turn.attempt - 1
        );
        self.report_failure(&turn, message, ctx);
        ctx.spawn(delivery.reject().into_actor(self).map(|result, _, _| {
            if let Err(error) = result {
                tracing::warn!(%error, "could not dead-letter a poison question");
            }
        }));
    }
}

/// Where a turn's answers go, kept by the pool in case its worker dies.
struct TurnAddress {
    session_id: Uuid,
    turn_id: Uuid,
    attempt: u32,
    reply_to: String,
}

impl TurnAddress {
    fn of(delivery: &Delivery) -> Self {
        Self {
            session_id: delivery.question.session_id,
            turn_id: delivery.question.turn_id,
            attempt: delivery.attempt,
            reply_to: delivery.question.reply_to.clone(),
        }
    }
}

impl Actor for AgentPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let broker = self.broker.clone();
        let idle_workers = self.idle_workers.clone();
        ctx.wait(
            async move {
                let questions = broker.consume_questions().await;
                let cancels = broker.subscribe_cancels().await;
                (questions, cancels)
            }
            .into_actor(self)
            .map(
                move |(questions, cancels), pool, ctx| match (questions, cancels) {
                    (Ok(questions), Ok(cancels)) => {
                        let questions = when_a_worker_is_idle(questions, idle_workers);
                        let questions = pool.stats.count_items(questions);
                        pool.taking = Some(ctx.add_stream(questions));
                        ctx.add_stream(pool.stats.count_items(cancels.map(CancelRequested)));
                    }
                    (Err(error), _) | (_, Err(error)) => {
                        tracing::error!(%error, "the worker pool cannot consume questions");
                        ctx.stop();
                    }
                },
            ),
        );
    }
}

/// A question together with the idle worker's permit it was pulled with.
struct Dispatch {
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
}

/// Yields questions only while a worker is idle, so no question waits in this
/// process that another worker process could have taken.
fn when_a_worker_is_idle(
    questions: BoxStream<'static, Delivery>,
    idle_workers: Arc<Semaphore>,
) -> impl Stream<Item = Dispatch> {
    futures_util::stream::unfold(
        (questions, idle_workers),
        |(mut questions, idle)| async move {
            let permit = idle.clone().acquire_owned().await.ok()?;
            let delivery = questions.next().await?;
            Some((Dispatch { delivery, permit }, (questions, idle)))
        },
    )
}

struct CancelRequested(Uuid);

impl StreamHandler<Dispatch> for AgentPool {
    fn handle(&mut self, Dispatch { delivery, permit }: Dispatch, ctx: &mut Self::Context) {
        bump(&self.counters.questions_consumed);
        if delivery.attempt > 1 {
            bump(&self.counters.questions_redelivered);
        }
        if self.cancelled_early_set.remove(&delivery.question.turn_id) {
            // Cancelled while it waited in the queue: the session already ended it.
            ctx.spawn(delivery.ack().into_actor(self).map(|_, _, _| ()));
            return;
        }
        if delivery.attempt > self.settings.max_deliveries {
            self.set_aside(delivery, ctx);
            return;
        }
        let index = self
            .workers
            .iter()
            .position(|slot| slot.turn.is_none())
            .expect("a permit is held only while a worker is idle");
        let address = TurnAddress::of(&delivery);
        let slot = &mut self.workers[index];
        slot.turn = Some(address.turn_id);
        let run = slot.worker.send(RunTurn { delivery });
        ctx.spawn(run.into_actor(self).map(move |result, pool, ctx| {
            pool.workers[index].turn = None;
            match result {
                Ok(TurnOutcome::Failed) => {
                    tracing::debug!(turn_id = %address.turn_id, "turn failed")
                }
                Ok(_) => {}
                Err(_) => pool.replace_dead_worker(index, &address, ctx),
            }
            drop(permit);
        }));
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("the question stream ended; this pool takes no more questions");
    }
}

impl StreamHandler<CancelRequested> for AgentPool {
    fn handle(&mut self, CancelRequested(turn_id): CancelRequested, _: &mut Self::Context) {
        match self.workers.iter().find(|slot| slot.turn == Some(turn_id)) {
            // Cancels are rare and tiny; the worker handles them between chunks.
            Some(slot) => slot.worker.do_send(CancelTurn { turn_id }),
            None => self.remember_early_cancel(turn_id),
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// The process is stopping: take no more questions (those RabbitMQ already sent
/// go back to the queue when the connection closes).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopTaking;

crate::counted_messages!(AgentPool => StopTaking, GiveBackRunning, GetPoolStatus);

impl Handler<StopTaking> for AgentPool {
    type Result = ();

    fn handle(&mut self, _: StopTaking, ctx: &mut Self::Context) {
        if let Some(taking) = self.taking.take() {
            ctx.cancel_future(taking);
        }
    }
}

/// The grace period is over: every running turn's question goes back to the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GiveBackRunning;

impl Handler<GiveBackRunning> for AgentPool {
    type Result = ();

    fn handle(&mut self, _: GiveBackRunning, _: &mut Self::Context) {
        for slot in self.workers.iter().filter(|slot| slot.turn.is_some()) {
            slot.worker.do_send(GiveBack);
        }
    }
}

/// The pool's size and load, for `/admin/stats` and readiness.
#[derive(Message)]
#[rtype(result = "PoolStatus")]
pub struct GetPoolStatus;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, MessageResponse)]
pub struct PoolStatus {
    pub size: usize,
    pub busy: usize,
}

impl Handler<GetPoolStatus> for AgentPool {
    type Result = PoolStatus;

    fn handle(&mut self, _: GetPoolStatus, _: &mut Self::Context) -> Self::Result {
        let busy = self
            .workers
            .iter()
            .filter(|slot| slot.turn.is_some())
            .count();
        PoolStatus {
            size: self.workers.len(),
            busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::agent::{AgentEvent, AgentRequest, AgentStream};
    use crate::broker::Question;
    use crate::broker::embedded::EmbeddedBroker;
    use crate::conversation::FinishReason;

    /// Answers "ok", except that it panics on the text "panic".
    struct FragileAgent;

    impl Agent for FragileAgent {
        fn answer(&self, request: AgentRequest) -> AgentStream {
            Box::pin(
                futures_util::stream::once(async move {
                    assert_ne!(request.text, "panic", "the agent broke");
                    Ok(AgentEvent::Text("ok".into()))
                })
                .chain(futures_util::stream::iter([Ok(AgentEvent::Finished(
                    FinishReason::Stop,
                ))])),
            )
        }
    }

    #[actix::test]
    async fn a_worker_that_dies_is_replaced_and_its_turn_ends_with_an_error() {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(8));
        let counters = Arc::new(Counters::default());
        let directory = ActorDirectory::default();
        let mut replies = broker.open_reply_queue().await.unwrap();
        let settings = PoolSettings {
            size: 1,
            max_deliveries: 3,
            chunk_window: Duration::ZERO,
        };
        let pool = AgentPool::new(
            settings,
            Arc::new(FragileAgent),
            broker.clone(),
            counters.clone(),
            directory,
        )
        .start_tracked();
        let ask = |text: &str| Question {
            session_id: Uuid::new_v4(),
            turn_id: Uuid::new_v4(),
            reply_to: replies.address.clone(),
            history: vec![],
            text: text.into(),
        };
        let mut next_answer = async || {
            tokio::time::timeout(Duration::from_secs(10), replies.answers.next())
                .await
                .expect("an answer within the wait")
                .expect("the reply queue is open")
        };

        broker.publish_question(ask("panic")).await.unwrap();
        match next_answer().await.body {
            AnswerBody::Error { code, .. } => assert_eq!(code, ErrorCode::Unavailable),
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(counters.worker_restarts.load(Ordering::Relaxed), 1);

        // The replacement worker answers the next question.
        broker.publish_question(ask("fine")).await.unwrap();
        assert_eq!(
            next_answer().await.body,
            AnswerBody::Chunk {
                seq: 0,
                text: "ok".into()
            }
        );
        let done = AnswerBody::Done {
            finish_reason: FinishReason::Stop,
        };
        assert_eq!(next_answer().await.body, done);
        // The worker is handed back once it has acknowledged the question.
        let idle = async {
            while pool.send(GetPoolStatus).await.unwrap().busy > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), idle)
            .await
            .expect("the worker is idle");
        assert_eq!(pool.send(GetPoolStatus).await.unwrap().size, 1);
    }
}
