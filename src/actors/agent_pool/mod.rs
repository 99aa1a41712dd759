//! `AgentPool`: consumes questions and hands each to an [`AgentWorker`] with a free
//! turn slot, the least loaded first. It takes a question from the broker only
//! when some worker has a free slot, so the broker's queue — not this process's
//! memory — absorbs bursts. Its workers run on [`WorkerThreads`], one per core by
//! default, so turns use every core. It supervises them: one that dies is
//! replaced on the same thread, and every turn it held ends with an `error`.
//!
//! One record bounds the work: the turns each worker runs, by id. A question is
//! pulled while some worker's count is under `turns_per_worker`, one pull at a
//! time, and a turn leaves the record when its worker reports it ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use uuid::Uuid;

use super::agent_worker::{AgentWorker, CancelTurn, GiveBackAll, RunTurn, TurnOutcome, turn_span};
use super::stats::{ActorDirectory, ActorStats, Tracked};
use crate::agent::Agent;
use crate::broker::{Broker, Delivery};
use crate::counters::Counters;

mod early_cancels;
mod failures;
mod status;
mod threads;

use early_cancels::EarlyCancels;
use failures::TurnAddress;
pub use status::{GetPoolStatus, PoolStatus, PoolStatusWatch, WatchPoolStatus};
pub use threads::{WorkerThreads, one_per_core};

pub struct AgentPool {
    agent: Arc<dyn Agent>,
    broker: Arc<dyn Broker>,
    workers: Vec<WorkerRecord>,
    /// Where the workers run.
    threads: WorkerThreads,
    settings: PoolSettings,
    questions: Taking,
    cancelled_early: EarlyCancels,
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
    /// The most bytes of answer and reasoning text one turn may produce
    /// (`agent.max_answer_bytes`).
    pub max_answer_bytes: usize,
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
        threads: WorkerThreads,
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
            threads,
            settings,
            questions: Taking::NotYet,
            cancelled_early: EarlyCancels::default(),
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

    fn start_worker(&mut self, index: usize) -> Tracked<AgentWorker> {
        let stats = ActorStats::new("agent_worker", index.to_string());
        self.directory.register(&stats);
        let worker = AgentWorker::new(
            self.agent.clone(),
            self.broker.clone(),
            self.settings.chunk_window,
            self.settings.max_answer_bytes,
        );
        let thread = self.threads.for_worker(index);
        Tracked::new(AgentWorker::start_in_arbiter(&thread, |_| worker), stats)
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
        if self.cancelled_early.take(&delivery.question.turn_id) {
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
        // A task of its own waits for the turn's end, not a future of this actor:
        // actix polls every future an actor holds whenever it wakes, and the pool
        // would poll hundreds of running turns for each question it hands out.
        let pool = ctx.address();
        actix::spawn(async move {
            let outcome = run.await.ok();
            pool.do_send(TurnFinished {
                index,
                generation,
                turn_id,
                outcome,
                took: taken.elapsed(),
            });
        });
        self.publish_status();
    }

    /// The worker logged how the turn ended; the pool only frees its slot.
    fn turn_ended(&mut self, index: usize, generation: u64, turn_id: Uuid, _: TurnOutcome) {
        let record = &mut self.workers[index];
        if record.generation == generation {
            record.turns.remove(&turn_id);
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

/// A worker's turn is over: it ended with `outcome`, or (`None`) its worker died.
#[derive(Message)]
#[rtype(result = "()")]
struct TurnFinished {
    index: usize,
    generation: u64,
    turn_id: Uuid,
    outcome: Option<TurnOutcome>,
    took: Duration,
}

impl Handler<TurnFinished> for AgentPool {
    type Result = ();

    fn handle(&mut self, finished: TurnFinished, ctx: &mut Self::Context) {
        let TurnFinished {
            index,
            generation,
            turn_id,
            outcome,
            took,
        } = finished;
        match outcome {
            Some(outcome) => {
                self.counters.turn_run(outcome, took);
                self.turn_ended(index, generation, turn_id, outcome);
            }
            None => self.replace_dead_worker(index, generation, ctx),
        }
        self.publish_status();
        self.take_if_free(ctx);
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
            None => self.cancelled_early.remember(turn_id),
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

#[cfg(test)]
mod tests;
