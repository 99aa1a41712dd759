//! `AgentWorker`: runs several turns at once through the agent and publishes each
//! answer, chunk by chunk, to the gateway that asked. The
//! [`AgentPool`](super::agent_pool::AgentPool) decides how many turns a worker runs
//! and supervises it.
//!
//! Each turn is a task of its own on the worker's arbiter, so a chunk wakes only its
//! turn, with two tokens: `cancel` (the user cancelled: `done`/`cancelled`) and
//! `give_back` (the process stops: the question goes back to the queue). A turn
//! that panics takes its worker down with it, and with the worker every turn it
//! held: its tasks are aborted and the pool ends those turns with an error.
//!
//! A turn's task runs inside the turn's span ([`turn_span`]), so what the agent
//! and the model client log while answering carries the turn's id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use uuid::Uuid;

use crate::agent::answer_cap::cap_answer;
use crate::agent::coalesce::coalesce;
use crate::agent::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::broker::{Answer, AnswerBody, Broker, BrokerError, Delivery, Orphan, Question};
use crate::conversation::{ChatError, ErrorCode, FinishReason};
use crate::telemetry;

/// The `turn` span of one delivery's work in this process (the pool's and the
/// worker's), with the fields the gateway's span of the turn has, and the
/// `trace_id` of the `traceparent` its question carried (the turn id's hex; none
/// from the embedded broker).
pub fn turn_span(delivery: &Delivery) -> Span {
    let question = &delivery.question;
    let trace_id = delivery.trace.as_ref().map(|trace| trace.trace_id);
    tracing::info_span!(
        parent: None,
        "turn",
        session_id = %question.session_id,
        turn_id = %question.turn_id,
        attempt = delivery.attempt,
        trace_id = trace_id.map(tracing::field::display),
    )
}

pub struct AgentWorker {
    agent: Arc<dyn Agent>,
    broker: Arc<dyn Broker>,
    /// See [`coalesce`].
    chunk_window: Duration,
    /// See [`cap_answer`].
    max_answer_bytes: usize,
    /// The running turns by id.
    running: HashMap<Uuid, RunningTurn>,
}

struct RunningTurn {
    /// The user cancelled: end the turn with `done`/`cancelled`.
    cancel: CancellationToken,
    /// The process is stopping: hand the question back for another worker.
    give_back: CancellationToken,
    _task: TurnTask,
}

/// A turn's task; dropping it (the worker died) stops the turn.
struct TurnTask(JoinHandle<()>);

impl Drop for TurnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AgentWorker {
    pub fn new(
        agent: Arc<dyn Agent>,
        broker: Arc<dyn Broker>,
        chunk_window: Duration,
        max_answer_bytes: usize,
    ) -> Self {
        Self {
            agent,
            broker,
            chunk_window,
            max_answer_bytes,
            running: HashMap::new(),
        }
    }
}

impl Actor for AgentWorker {
    type Context = Context<Self>;
}

/// How a turn ended, as the pool counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnOutcome {
    Completed,
    Cancelled,
    Failed,
    /// The gateway that asked is gone; nobody was there to answer.
    NobodyListening,
    /// Handed back to the queue unfinished (the process is stopping, or the broker
    /// failed to take its answer).
    GivenBack,
}

impl TurnOutcome {
    fn as_str(self) -> &'static str {
        match self {
            TurnOutcome::Completed => "completed",
            TurnOutcome::Cancelled => "cancelled",
            TurnOutcome::Failed => "failed",
            TurnOutcome::NobodyListening => "nobody_listening",
            TurnOutcome::GivenBack => "given_back",
        }
    }
}

/// Answer this question besides the turns already running; resolves when the turn
/// has ended and its question was settled. Fails only if the worker died.
#[derive(Message)]
#[rtype(result = "TurnOutcome")]
pub struct RunTurn {
    pub delivery: Delivery,
    /// The turn's span ([`turn_span`]); the turn runs inside it.
    pub span: Span,
}

/// Stop this turn if it runs here: the model's request is dropped and the turn
/// ends with `done`/`cancelled`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelTurn {
    pub turn_id: Uuid,
}

/// Stop every running turn and give its question back to the queue, so another
/// worker answers it (the gateway tells its client `reset`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct GiveBackAll;

/// How many turns this worker runs now.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct GetLoad;

crate::counted_messages!(AgentWorker => RunTurn, CancelTurn, GiveBackAll, GetLoad);

impl Handler<RunTurn> for AgentWorker {
    type Result = ResponseActFuture<Self, TurnOutcome>;

    fn handle(&mut self, message: RunTurn, _: &mut Self::Context) -> Self::Result {
        let RunTurn { mut delivery, span } = message;
        let turn_id = delivery.question.turn_id;
        let cancel = CancellationToken::new();
        let give_back = CancellationToken::new();
        let question = &mut delivery.question;
        let history = question.history.len();
        tracing::info!(parent: &span, history, "worker started the turn");
        // The agent takes the conversation; the delivery keeps where answers go.
        let events = self.agent.answer(AgentRequest {
            context_id: question.session_id.to_string(),
            history: std::mem::take(&mut question.history),
            // Kept: should the gateway go away, the question is handed back.
            text: question.text.clone(),
            tools: question.tools.take(),
        });
        // Capped before coalescing, so the model is dropped the moment the limit
        // is reached, not after a joined piece is complete.
        let events = cap_answer(events, self.max_answer_bytes);
        let turn = answer_question(
            coalesce(events, self.chunk_window),
            self.broker.clone(),
            delivery,
            cancel.clone(),
            give_back.clone(),
        );
        let (ended, outcome) = oneshot::channel();
        let task = actix::spawn(
            async move {
                let _ = ended.send(turn.await);
            }
            .instrument(span),
        );
        let running = RunningTurn {
            cancel,
            give_back,
            _task: TurnTask(task),
        };
        self.running.insert(turn_id, running);
        Box::pin(outcome.into_actor(self).map(move |outcome, worker, _| {
            worker.running.remove(&turn_id);
            // The task ended without an outcome: the turn panicked. Die with it,
            // so the pool ends every turn held here and starts a fresh worker.
            outcome.unwrap_or_else(|_| panic!("turn {turn_id} panicked; its worker stops"))
        }))
    }
}

impl Handler<CancelTurn> for AgentWorker {
    type Result = ();

    fn handle(&mut self, message: CancelTurn, _: &mut Self::Context) {
        if let Some(running) = self.running.get(&message.turn_id) {
            running.cancel.cancel();
        }
    }
}

impl Handler<GiveBackAll> for AgentWorker {
    type Result = ();

    fn handle(&mut self, _: GiveBackAll, _: &mut Self::Context) {
        for running in self.running.values() {
            running.give_back.cancel();
        }
    }
}

impl Handler<GetLoad> for AgentWorker {
    type Result = usize;

    fn handle(&mut self, _: GetLoad, _: &mut Self::Context) -> usize {
        self.running.len()
    }
}

/// The gateway that asked `question` is gone, and its answer with it: hands the
/// question back, for whichever gateway loads the session next to ask it again
/// (docs/storage.md).
async fn hand_back(broker: &dyn Broker, question: &Question) {
    let orphan = Orphan {
        session_id: question.session_id,
        turn_id: question.turn_id,
        text: question.text.clone(),
    };
    match broker.publish_orphan(orphan).await {
        Ok(()) => tracing::info!("its gateway is gone; handed the question back"),
        Err(error) => {
            tracing::warn!(%error, "its gateway is gone; could not hand the question back")
        }
    }
}

/// Runs one turn: streams the agent's answer to `question.reply_to`, ends it with
/// exactly one `done` or `error`, then acknowledges the delivery.
async fn answer_question(
    mut events: AgentStream,
    broker: Arc<dyn Broker>,
    delivery: Delivery,
    cancel: CancellationToken,
    give_back: CancellationToken,
) -> TurnOutcome {
    let started = Instant::now();
    let question = &delivery.question;
    let answer = |body| Answer {
        session_id: question.session_id,
        turn_id: question.turn_id,
        attempt: delivery.attempt,
        body,
    };
    let mut seq = 0;
    let last = loop {
        let event = tokio::select! {
            biased;
            () = cancel.cancelled() => break AnswerBody::Done { finish_reason: FinishReason::Cancelled },
            () = give_back.cancelled() => {
                drop(events);
                requeue(delivery).await;
                return turn_ended(TurnOutcome::GivenBack, seq, started, None);
            }
            event = events.next() => event,
        };
        // Text and events share one numbering, so the gateway notices a lost one.
        let body = match event {
            Some(Ok(AgentEvent::Text(text))) => AnswerBody::Chunk { seq, text },
            Some(Ok(AgentEvent::Event(event))) => AnswerBody::Event { seq, event },
            Some(Ok(AgentEvent::Finished(finish_reason))) => {
                break AnswerBody::Done { finish_reason };
            }
            Some(Err(error)) => break AnswerBody::Error((&error).into()),
            None => {
                let message = "the agent's answer ended before it finished".to_owned();
                break AnswerBody::Error(ChatError::new(ErrorCode::Upstream, message));
            }
        };
        if let Err(error) = broker
            .publish_answer(&question.reply_to, answer(body))
            .await
        {
            drop(events);
            if let BrokerError::NoSuchReplyQueue(_) = error {
                hand_back(&*broker, question).await;
                settle(delivery).await;
                return turn_ended(TurnOutcome::NobodyListening, seq, started, None);
            }
            // The broker failed, not the turn: another worker may finish it.
            tracing::warn!(%error, "giving a turn back after a failed publish");
            requeue(delivery).await;
            return turn_ended(TurnOutcome::GivenBack, seq, started, None);
        }
        seq += 1;
    };
    // Stop the model before reporting the end, so a cancel really ends its stream.
    drop(events);
    let outcome = match &last {
        AnswerBody::Done {
            finish_reason: FinishReason::Cancelled,
        } => TurnOutcome::Cancelled,
        AnswerBody::Done { .. } => TurnOutcome::Completed,
        _ => TurnOutcome::Failed,
    };
    let failure = match &last {
        AnswerBody::Error(error) => Some(error.clone()),
        _ => None,
    };
    match broker
        .publish_answer(&question.reply_to, answer(last))
        .await
    {
        Ok(()) => {}
        Err(BrokerError::NoSuchReplyQueue(_)) => {
            hand_back(&*broker, question).await;
            settle(delivery).await;
            return turn_ended(TurnOutcome::NobodyListening, seq, started, None);
        }
        Err(error) => tracing::info!(%error, "could not deliver the end of a turn"),
    }
    settle(delivery).await;
    turn_ended(outcome, seq, started, failure)
}

/// Logs how a turn ended here, `answers` of it (chunks and events) sent; answers `outcome`.
fn turn_ended(
    outcome: TurnOutcome,
    answers: u64,
    started: Instant,
    failure: Option<ChatError>,
) -> TurnOutcome {
    let duration_ms = telemetry::millis(started.elapsed());
    let outcome_name = outcome.as_str();
    match failure {
        None => {
            tracing::info!(outcome = %outcome_name, answers, duration_ms, "worker ended the turn")
        }
        Some(ChatError { code, message }) => tracing::info!(
            outcome = %outcome_name,
            code = %code,
            message,
            answers,
            duration_ms,
            "worker ended the turn"
        ),
    }
    outcome
}

async fn requeue(delivery: Delivery) {
    if let Err(error) = delivery.requeue().await {
        tracing::warn!(%error, "could not give a question back");
    }
}

async fn settle(delivery: Delivery) {
    if let Err(error) = delivery.ack().await {
        tracing::warn!(%error, "could not acknowledge a question");
    }
}

#[cfg(test)]
mod tests;
