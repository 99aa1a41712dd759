//! `AgentPool`: consumes questions and hands each to an [`AgentWorker`] with a free
//! turn slot, the least loaded first. It takes a question from the broker only
//! when some worker has a free slot, so the broker's queue — not this process's
//! memory — absorbs bursts. It supervises its workers: one that dies is replaced,
//! and every turn it held ends with an `error`.
//!
//! One record bounds the work: the turns each worker runs, by id. A question is
//! pulled while some worker's count is under `turns_per_worker`, one pull at a
//! time, and a turn leaves the record when its worker reports it ended.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::agent_worker::{AgentWorker, CancelTurn, GiveBackAll, RunTurn, TurnOutcome, turn_span};
use super::stats::{ActorDirectory, ActorStats, Tracked};
use crate::agent::Agent;
use crate::broker::{Answer, AnswerBody, Broker, Delivery};
use crate::conversation::{ChatError, ErrorCode};
use crate::counters::Counters;

/// Cancellations remembered for questions not yet taken from the queue.
const REMEMBERED_CANCELS: usize = 4096;

pub struct AgentPool {
    agent: Arc<dyn Agent>,
    broker: Arc<dyn Broker>,
    workers: Vec<WorkerRecord>,
    settings: PoolSettings,
    questions: Taking,
    cancelled_early: VecDeque<Uuid>,
    cancelled_early_set: HashSet<Uuid>,
    status: watch::Sender<PoolStatus>,
    stats: Arc<ActorStats>,
    counters: Arc<Counters>,
    directory: ActorDirectory,
}

/// How a pool is sized and how its workers behave.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// AgentWorker actors (`workers.count`).
    pub workers: usize,
    /// Turns each worker runs at once.
    pub turns_per_worker: usize,
    /// A question delivered more often than this is poison (it keeps killing
    /// workers): it is set aside and its session told.
    pub max_deliveries: u32,
    /// How long a worker may hold answer text to send it with what follows.
    pub chunk_window: Duration,
}

impl PoolSettings {
    /// Turns the whole pool runs at once.
    pub fn turn_slots(&self) -> usize {
        self.workers * self.turns_per_worker
    }
}

/// Where the pool stands with the broker's question stream.
enum Taking {
    /// Consuming has not started yet.
    NotYet,
    /// Waiting for a free slot to pull the next question.
    Idle(BoxStream<'static, Delivery>),
    /// Pulling one question (the stream is inside the pull).
    Pulling(SpawnHandle),
    /// Takes no more questions.
    Stopped,
}

struct WorkerRecord {
    worker: Tracked<AgentWorker>,
    /// Tells this worker from the one that replaces it in the same place.
    generation: u64,
    /// The turns it runs, with where their answers go.
    turns: HashMap<Uuid, TurnAddress>,
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
        let status = watch::Sender::new(PoolStatus {
            size: settings.turn_slots(),
            busy: 0,
            taking: false,
        });
        let mut pool = Self {
            agent,
            broker,
            workers: Vec::with_capacity(settings.workers),
            settings,
            questions: Taking::NotYet,
            cancelled_early: VecDeque::new(),
            cancelled_early_set: HashSet::new(),
            status,
            stats,
            counters,
            directory,
        };
        for index in 0..pool.settings.workers {
            let worker = pool.start_worker(index);
            pool.workers.push(WorkerRecord {
                worker,
                generation: 0,
                turns: HashMap::new(),
            });
        }
        pool.publish_status();
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

    fn busy(&self) -> usize {
        self.workers.iter().map(|record| record.turns.len()).sum()
    }

    /// The worker with a free slot that runs the fewest turns.
    fn least_loaded(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, record)| record.turns.len() < self.settings.turns_per_worker)
            .min_by_key(|(_, record)| record.turns.len())
            .map(|(index, _)| index)
    }

    fn publish_status(&self) {
        let status = PoolStatus {
            size: self.settings.turn_slots(),
            busy: self.busy(),
            taking: matches!(self.questions, Taking::Idle(_) | Taking::Pulling(_)),
        };
        self.counters.pool_status(status.size, status.busy);
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// Pulls the next question if a worker has a free slot and none is pulled yet.
    fn take_if_free(&mut self, ctx: &mut Context<Self>) {
        if self.least_loaded().is_none() || !matches!(self.questions, Taking::Idle(_)) {
            return;
        }
        let Taking::Idle(mut questions) = std::mem::replace(&mut self.questions, Taking::Stopped)
        else {
            unreachable!("checked above");
        };
        let pull = async move {
            let next = questions.next().await;
            (questions, next)
        };
        let pulling = ctx.spawn(pull.into_actor(self).map(|(questions, next), pool, ctx| {
            let Some(delivery) = next else {
                tracing::warn!("the question stream ended; this pool takes no more questions");
                pool.questions = Taking::Stopped;
                pool.publish_status();
                return;
            };
            pool.questions = Taking::Idle(questions);
            pool.take(delivery, ctx);
            pool.take_if_free(ctx);
        }));
        self.questions = Taking::Pulling(pulling);
    }

    /// Handles one question pulled from the broker.
    fn take(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        self.counters.question_consumed(delivery.attempt);
        let span = turn_span(&delivery);
        if self.cancelled_early_set.remove(&delivery.question.turn_id) {
            // Cancelled while it waited in the queue: the session already ended it.
            tracing::debug!(parent: &span, "the question was cancelled while it waited");
            ctx.spawn(delivery.ack().into_actor(self).map(|_, _, _| ()));
            return;
        }
        if delivery.attempt > self.settings.max_deliveries {
            self.set_aside(delivery, span, ctx);
            return;
        }
        let index = self
            .least_loaded()
            .expect("a question is pulled only while a slot is free");
        let address = TurnAddress::of(&delivery, span.clone());
        let turn_id = address.turn_id;
        let record = &mut self.workers[index];
        record.turns.insert(turn_id, address);
        let generation = record.generation;
        let run = record.worker.send(RunTurn { delivery, span });
        let taken = Instant::now();
        ctx.spawn(run.into_actor(self).map(move |result, pool, ctx| {
            match result {
                Ok(outcome) => {
                    pool.counters.turn_run(outcome, taken.elapsed());
                    pool.turn_ended(index, generation, turn_id, outcome);
                }
                Err(_) => pool.replace_dead_worker(index, generation, ctx),
            }
            pool.publish_status();
            pool.take_if_free(ctx);
        }));
        self.publish_status();
    }

    /// The worker logged how the turn ended; the pool only frees its slot.
    fn turn_ended(&mut self, index: usize, generation: u64, turn_id: Uuid, _: TurnOutcome) {
        let record = &mut self.workers[index];
        if record.generation == generation {
            record.turns.remove(&turn_id);
        }
    }

    /// The worker at `index` died: start another in its place and end every turn
    /// it held. Its other turns report the same death; the first one counts.
    fn replace_dead_worker(&mut self, index: usize, generation: u64, ctx: &mut Context<Self>) {
        if self.workers[index].generation != generation {
            return;
        }
        let turns = std::mem::take(&mut self.workers[index].turns);
        tracing::error!(
            worker = index,
            turns = turns.len(),
            "agent worker died; restarting it"
        );
        self.counters.worker_restarted();
        let worker = self.start_worker(index);
        let record = &mut self.workers[index];
        record.worker = worker;
        record.generation += 1;
        for turn in turns.values() {
            let span = &turn.span;
            tracing::warn!(parent: span, outcome = %"failed", "worker ended the turn: it died");
            self.report_failure(turn, "the worker answering this turn failed".into(), ctx);
        }
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

    /// Ends a turn with an `error` no worker will send.
    fn report_failure(&self, turn: &TurnAddress, message: String, ctx: &mut Context<Self>) {
        let failure = Answer {
            session_id: turn.session_id,
            turn_id: turn.turn_id,
            attempt: turn.attempt,
            body: AnswerBody::Error(ChatError::new(ErrorCode::Unavailable, message)),
        };
        let publish = self.broker.publish_answer(&turn.reply_to, failure);
        let publish = async move {
            if let Err(error) = publish.await {
                tracing::warn!(%error, "could not report a failed turn");
            }
        };
        ctx.spawn(publish.instrument(turn.span.clone()).into_actor(self));
    }

    /// Sets a poison question aside (dead-lettered) and tells its session.
    fn set_aside(&self, delivery: Delivery, span: Span, ctx: &mut Context<Self>) {
        let turn = TurnAddress::of(&delivery, span);
        tracing::warn!(parent: &turn.span, "poison question set aside");
        let message = format!(
            "this question was tried {} times without an answer; it was set aside",
            turn.attempt - 1
        );
        self.report_failure(&turn, message, ctx);
        let reject = async move {
            if let Err(error) = delivery.reject().await {
                tracing::warn!(%error, "could not dead-letter a poison question");
            }
        };
        ctx.spawn(reject.instrument(turn.span).into_actor(self));
    }
}

/// Where a turn's answers go, kept by the pool in case its worker dies.
struct TurnAddress {
    session_id: Uuid,
    turn_id: Uuid,
    attempt: u32,
    reply_to: String,
    span: Span,
}

impl TurnAddress {
    fn of(delivery: &Delivery, span: Span) -> Self {
        Self {
            session_id: delivery.question.session_id,
            turn_id: delivery.question.turn_id,
            attempt: delivery.attempt,
            reply_to: delivery.question.reply_to.clone(),
            span,
        }
    }
}

impl Actor for AgentPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let broker = self.broker.clone();
        ctx.wait(
            async move {
                let questions = broker.consume_questions().await;
                let cancels = broker.subscribe_cancels().await;
                (questions, cancels)
            }
            .into_actor(self)
            .map(
                |(questions, cancels), pool, ctx| match (questions, cancels) {
                    (Ok(questions), Ok(cancels)) => {
                        // Stopped before it could start: leave the questions to others.
                        if let Taking::NotYet = pool.questions {
                            let questions = pool.stats.count_items(questions).boxed();
                            pool.questions = Taking::Idle(questions);
                            pool.take_if_free(ctx);
                            pool.publish_status();
                        }
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

struct CancelRequested(Uuid);

impl StreamHandler<CancelRequested> for AgentPool {
    fn handle(&mut self, CancelRequested(turn_id): CancelRequested, _: &mut Self::Context) {
        let running = self.workers.iter().find_map(|record| {
            let turn = record.turns.get(&turn_id)?;
            Some((record, turn))
        });
        match running {
            // Cancels are rare and tiny; the worker handles them between chunks.
            Some((record, turn)) => {
                tracing::debug!(parent: &turn.span, "cancelling the turn");
                record.worker.do_send(CancelTurn { turn_id });
            }
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

crate::counted_messages!(AgentPool => StopTaking, GiveBackRunning, GetPoolStatus, WatchPoolStatus);

impl Handler<StopTaking> for AgentPool {
    type Result = ();

    fn handle(&mut self, _: StopTaking, ctx: &mut Self::Context) {
        if let Taking::Pulling(pulling) = std::mem::replace(&mut self.questions, Taking::Stopped) {
            ctx.cancel_future(pulling);
        }
        self.publish_status();
    }
}

/// The grace period is over: every running turn's question goes back to the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GiveBackRunning;

impl Handler<GiveBackRunning> for AgentPool {
    type Result = ();

    fn handle(&mut self, _: GiveBackRunning, _: &mut Self::Context) {
        for record in self
            .workers
            .iter()
            .filter(|record| !record.turns.is_empty())
        {
            record.worker.do_send(GiveBackAll);
        }
    }
}

/// The pool's size and load, for `/admin/stats` and readiness.
#[derive(Message)]
#[rtype(result = "PoolStatus")]
pub struct GetPoolStatus;

/// Turn slots: `size` turns can run at once, `busy` run now; `taking` while the
/// pool takes questions from the broker (it started consuming and was not stopped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, MessageResponse)]
pub struct PoolStatus {
    pub size: usize,
    pub busy: usize,
    pub taking: bool,
}

impl Handler<GetPoolStatus> for AgentPool {
    type Result = PoolStatus;

    fn handle(&mut self, _: GetPoolStatus, _: &mut Self::Context) -> Self::Result {
        *self.status.borrow()
    }
}

/// The pool's status as it changes, for whoever waits for its turns to end.
#[derive(Message)]
#[rtype(result = "PoolStatusWatch")]
pub struct WatchPoolStatus;

#[derive(MessageResponse)]
pub struct PoolStatusWatch(pub watch::Receiver<PoolStatus>);

impl Handler<WatchPoolStatus> for AgentPool {
    type Result = PoolStatusWatch;

    fn handle(&mut self, _: WatchPoolStatus, _: &mut Self::Context) -> Self::Result {
        PoolStatusWatch(self.status.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::actors::testing::{Rig, Settled, done};
    use crate::conversation::FinishReason;

    fn assert_unavailable(body: AnswerBody) {
        match body {
            AnswerBody::Error(error) => assert_eq!(error.code, ErrorCode::Unavailable),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[actix::test]
    async fn one_worker_runs_as_many_turns_at_once_as_it_has_slots() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 3).await;
        let start = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..4 {
            turns.push(rig.ask("sleep 1000").await);
        }
        rig.until_busy(3).await;
        assert_eq!(rig.pool.send(GetPoolStatus).await.unwrap().size, 3);

        // Three answer together after one second; the fourth waited for a slot.
        let mut ended = Vec::new();
        for _ in 0..8 {
            let answer = rig.next_answer().await;
            if answer.body.ends_turn() {
                assert_eq!(answer.body, done());
                ended.push((answer.turn_id, start.elapsed()));
            }
        }
        // (Timers fire on the millisecond after their deadline.)
        let about =
            |seconds| Duration::from_secs(seconds)..Duration::from_millis(seconds * 1000 + 5);
        assert!(
            ended[..3].iter().all(|(_, at)| about(1).contains(at)),
            "{ended:?}"
        );
        assert_eq!(ended[3].0, turns[3]);
        assert!(about(2).contains(&ended[3].1), "{ended:?}");
        rig.until_busy(0).await;
    }

    #[actix::test]
    async fn a_cancel_stops_only_its_turn() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 2).await;
        let cancelled = rig.ask("sleep 5000").await;
        rig.until_busy(1).await;
        let kept = rig.ask("sleep 1000").await;
        rig.until_busy(2).await;

        rig.broker.publish_cancel(cancelled).await.unwrap();
        let cancelled_end = AnswerBody::Done {
            finish_reason: FinishReason::Cancelled,
        };
        assert_eq!(rig.end_of(cancelled).await, cancelled_end);
        assert_eq!(rig.pool.send(GetPoolStatus).await.unwrap().busy, 1);
        assert_eq!(rig.end_of(kept).await, done());
        rig.until_busy(0).await;
        let settled = rig.broker.settled();
        assert_eq!(
            settled,
            vec![(cancelled, Settled::Acked), (kept, Settled::Acked)]
        );
    }

    #[actix::test]
    async fn a_question_cancelled_before_it_is_taken_is_not_answered() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 1).await;
        let running = rig.ask("sleep 1000").await;
        rig.until_busy(1).await;
        let waiting = rig.ask("sleep 1000").await;
        rig.broker.publish_cancel(waiting).await.unwrap();

        assert_eq!(rig.end_of(running).await, done());
        rig.until_busy(0).await;
        let next = rig.ask("fine").await;
        assert_eq!(rig.end_of(next).await, done());
        assert!(rig.broker.settled().contains(&(waiting, Settled::Acked)));
    }

    #[actix::test]
    async fn running_turns_are_given_back_to_the_queue() {
        tokio::time::pause();
        let mut rig = Rig::start(2, 2).await;
        let mut turns = Vec::new();
        for _ in 0..3 {
            turns.push(rig.ask("sleep 60000").await);
        }
        rig.until_busy(3).await;

        rig.pool.send(GiveBackRunning).await.unwrap();
        rig.until_busy(0).await;
        let mut settled = rig.broker.settled();
        settled.sort();
        let mut expected: Vec<_> = turns.iter().map(|&id| (id, Settled::Requeued)).collect();
        expected.sort();
        assert_eq!(settled, expected);
    }

    #[actix::test]
    async fn questions_go_to_the_least_loaded_worker() {
        tokio::time::pause();
        let mut rig = Rig::start(2, 2).await;
        rig.ask("sleep 60000").await;
        rig.until_busy(1).await;
        rig.ask("sleep 60000").await;
        rig.until_busy(2).await;
        rig.until_workers_handled(&[1, 1]).await;

        rig.ask("sleep 60000").await;
        rig.until_busy(3).await;
        rig.ask("sleep 60000").await;
        rig.until_busy(4).await;
        rig.until_workers_handled(&[2, 2]).await;
    }

    #[actix::test]
    async fn a_worker_that_dies_is_replaced_and_all_its_turns_end_with_an_error() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 2).await;
        let bystander = rig.ask("sleep 60000").await;
        rig.until_busy(1).await;
        let culprit = rig.ask("panic").await;

        let mut failed = Vec::new();
        for _ in 0..2 {
            let answer = rig.next_answer().await;
            assert_unavailable(answer.body);
            failed.push(answer.turn_id);
        }
        failed.sort();
        let mut expected = vec![bystander, culprit];
        expected.sort();
        assert_eq!(failed, expected);
        assert_eq!(rig.counters.totals().worker_restarts, 1);
        rig.until_busy(0).await;

        // The replacement worker answers the next question.
        let next = rig.ask("fine").await;
        assert_eq!(
            rig.next_answer().await.body,
            AnswerBody::Chunk {
                seq: 0,
                text: "ok".into()
            }
        );
        assert_eq!(rig.end_of(next).await, done());
        rig.until_busy(0).await;
        assert_eq!(rig.pool.send(GetPoolStatus).await.unwrap().size, 2);

        // The bystander's turn died with its worker: it never answers or settles.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(rig.broker.settled(), vec![(next, Settled::Acked)]);
    }

    #[actix::test]
    async fn a_question_delivered_too_often_is_set_aside() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 1).await;
        let poison = rig.ask_attempt("fine", 4).await;
        assert_unavailable(rig.end_of(poison).await);
        assert_eq!(rig.broker.settled(), vec![(poison, Settled::Rejected)]);
    }

    #[actix::test]
    async fn a_stopped_pool_takes_no_more_questions() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 1).await;
        let running = rig.ask("sleep 1000").await;
        rig.until_busy(1).await;
        assert!(rig.status.borrow().taking);
        rig.pool.send(StopTaking).await.unwrap();
        assert!(!rig.status.borrow().taking, "readiness sees it at once");
        assert_eq!(rig.end_of(running).await, done());
        rig.until_busy(0).await;
        assert!(
            rig.try_ask("late").await.is_err(),
            "nobody consumes questions"
        );
    }
}
