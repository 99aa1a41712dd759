//! Turns that end without their worker: the worker died holding them, or the
//! question is poison (delivered more than `broker.max_deliveries` times). The pool
//! publishes their `error` itself, to the gateway that asked.

use actix::prelude::*;
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::AgentPool;
use crate::broker::{Answer, AnswerBody, Delivery};
use crate::conversation::{ChatError, ErrorCode};

impl AgentPool {
    /// The worker at `index` died: start another in its place and end every turn
    /// it held. Its other turns report the same death; the first one counts.
    pub(super) fn replace_dead_worker(
        &mut self,
        index: usize,
        generation: u64,
        ctx: &mut Context<Self>,
    ) {
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
    pub(super) fn set_aside(&self, delivery: Delivery, span: Span, ctx: &mut Context<Self>) {
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
pub(super) struct TurnAddress {
    pub(super) session_id: Uuid,
    pub(super) turn_id: Uuid,
    pub(super) attempt: u32,
    pub(super) reply_to: String,
    pub(super) span: Span,
}

impl TurnAddress {
    pub(super) fn of(delivery: &Delivery, span: Span) -> Self {
        Self {
            session_id: delivery.question.session_id,
            turn_id: delivery.question.turn_id,
            attempt: delivery.attempt,
            reply_to: delivery.question.reply_to.clone(),
            span,
        }
    }
}
