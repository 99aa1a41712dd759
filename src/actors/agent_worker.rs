//! `AgentWorker`: runs one turn at a time through the agent and publishes its
//! answer, chunk by chunk, to the gateway that asked. Stateless between turns; the
//! [`AgentPool`](super::agent_pool::AgentPool) supervises it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::agent::coalesce::coalesce;
use crate::agent::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::broker::{Answer, AnswerBody, Broker, BrokerError, Delivery};
use crate::conversation::{ErrorCode, FinishReason};

pub struct AgentWorker {
    agent: Arc<dyn Agent>,
    broker: Arc<dyn Broker>,
    /// See [`coalesce`].
    chunk_window: Duration,
    /// The running turn and the tokens that stop it.
    current: Option<RunningTurn>,
}

struct RunningTurn {
    turn_id: Uuid,
    /// The user cancelled: end the turn with `done`/`cancelled`.
    cancel: CancellationToken,
    /// The process is stopping: hand the question back for another worker.
    give_back: CancellationToken,
}

impl AgentWorker {
    pub fn new(agent: Arc<dyn Agent>, broker: Arc<dyn Broker>, chunk_window: Duration) -> Self {
        Self {
            agent,
            broker,
            chunk_window,
            current: None,
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

/// Answer this question; resolves when the turn has ended and was acknowledged.
#[derive(Message)]
#[rtype(result = "TurnOutcome")]
pub struct RunTurn {
    pub delivery: Delivery,
}

/// Stop the turn if it is the running one: the model's request is dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelTurn {
    pub turn_id: Uuid,
}

/// Stop the running turn, if any, and give its question back to the queue so
/// another worker answers it (the gateway tells its client `reset`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct GiveBack;

crate::counted_messages!(AgentWorker => RunTurn, CancelTurn, GiveBack);

impl Handler<RunTurn> for AgentWorker {
    type Result = ResponseActFuture<Self, TurnOutcome>;

    fn handle(&mut self, message: RunTurn, _: &mut Self::Context) -> Self::Result {
        let running = RunningTurn {
            turn_id: message.delivery.question.turn_id,
            cancel: CancellationToken::new(),
            give_back: CancellationToken::new(),
        };
        let question = &message.delivery.question;
        let events = self.agent.answer(AgentRequest {
            context_id: question.session_id.to_string(),
            history: question.history.clone(),
            text: question.text.clone(),
        });
        let turn = answer_question(
            coalesce(events, self.chunk_window),
            self.broker.clone(),
            message.delivery,
            running.cancel.clone(),
            running.give_back.clone(),
        );
        self.current = Some(running);
        Box::pin(turn.into_actor(self).map(|outcome, worker, _| {
            worker.current = None;
            outcome
        }))
    }
}

impl Handler<CancelTurn> for AgentWorker {
    type Result = ();

    fn handle(&mut self, message: CancelTurn, _: &mut Self::Context) {
        if let Some(running) = &self.current
            && running.turn_id == message.turn_id
        {
            running.cancel.cancel();
        }
    }
}

impl Handler<GiveBack> for AgentWorker {
    type Result = ();

    fn handle(&mut self, _: GiveBack, _: &mut Self::Context) {
        if let Some(running) = &self.current {
            running.give_back.cancel();
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
                return TurnOutcome::GivenBack;
            }
            event = events.next() => event,
        };
        match event {
            Some(Ok(AgentEvent::Text(text))) => {
                let chunk = answer(AnswerBody::Chunk { seq, text });
                if let Err(error) = broker.publish_answer(&question.reply_to, chunk).await {
                    drop(events);
                    let turn_id = question.turn_id;
                    if let BrokerError::NoSuchReplyQueue(_) = error {
                        tracing::info!(%turn_id, "stopping a turn nobody receives");
                        settle(delivery).await;
                        return TurnOutcome::NobodyListening;
                    }
                    // The broker failed, not the turn: another worker may finish it.
                    tracing::warn!(%turn_id, %error, "giving a turn back after a failed publish");
                    requeue(delivery).await;
                    return TurnOutcome::GivenBack;
                }
                seq += 1;
            }
            Some(Ok(AgentEvent::Finished(finish_reason))) => {
                break AnswerBody::Done { finish_reason };
            }
            Some(Err(error)) => {
                break AnswerBody::Error {
                    code: error.code(),
                    message: error.to_string(),
                };
            }
            None => {
                let message = "the agent's answer ended before it finished".to_owned();
                break AnswerBody::Error {
                    code: ErrorCode::Upstream,
                    message,
                };
            }
        }
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
    if let Err(error) = broker
        .publish_answer(&question.reply_to, answer(last))
        .await
    {
        tracing::info!(turn_id = %question.turn_id, %error, "could not deliver the end of a turn");
    }
    settle(delivery).await;
    outcome
}

async fn requeue(delivery: Delivery) {
    let turn_id = delivery.question.turn_id;
    if let Err(error) = delivery.requeue().await {
        tracing::warn!(%turn_id, %error, "could not give a question back");
    }
}

async fn settle(delivery: Delivery) {
    let turn_id = delivery.question.turn_id;
    if let Err(error) = delivery.ack().await {
        tracing::warn!(%turn_id, %error, "could not acknowledge a question");
    }
}
