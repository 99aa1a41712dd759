//! How the session actor runs its turns: a message is admitted to the
//! [`TurnQueue`](super::turn_queue::TurnQueue), its question goes to the broker
//! actor with the [`History`](super::history::History), the answers are put back
//! together by the turn's [`Reassembly`](super::reassembly::Reassembly) and passed
//! on to the socket and the turn's listener, and the turn ends with exactly one
//! `done` or `error` frame. Whatever it logs about a turn is inside the turn's
//! `turn` span (see [`trace`](super::trace)).

use std::time::Instant;

use actix::prelude::*;
use uuid::Uuid;

use super::client_turns::AtLimit;
use super::history::TurnText;
use super::reassembly::{Outcome, Step, TurnEnd};
use super::turn_queue::ActiveTurn;
use super::{SessionActor, TurnListener, trace};
use crate::actors::broker::{AskQuestion, ForgetTurn};
use crate::broker::{Answer, BrokerError, Question};
use crate::conversation::{ChatError, ErrorCode, FinishReason, UserMessage};
use crate::counters::TurnResult;
use crate::protocol::ServerFrame;

impl SessionActor {
    /// Queues a user message as a turn; it starts when the turns before it end.
    pub(super) fn queue_turn(
        &mut self,
        message: UserMessage,
        listener: Option<TurnListener>,
        ctx: &mut Context<Self>,
    ) -> Result<Uuid, ChatError> {
        self.deps.tools.check(message.tools.as_deref())?;
        self.check_storage()?;
        let starts_now = self.turns.running().is_none() && self.turns.waiting().next().is_none();
        if starts_now && let Some(client) = &self.client {
            let permit = (self.deps.client_turns.try_start(client)).map_err(|AtLimit { limit }| {
                let message = format!(
                    "you have {limit} turns running in other conversations; try again when one ends"
                );
                ChatError::new(ErrorCode::Busy, message)
            })?;
            self.next_permit = Some(permit);
        }
        let watch = listener.clone();
        let draining = self.deps.draining.is_draining();
        let max_waiting = self.deps.limits.max_queued_turns;
        let session_id = self.id;
        let via = if listener.is_some() { "http" } else { "ws" };
        // Kept to be stored once the turn is admitted.
        let question = message.text.clone();
        let admitted = (self.turns)
            .admit(message, listener, draining, max_waiting, |turn_id| {
                trace::turn_span(session_id, turn_id, 1)
            })
            .inspect_err(|refusal| {
                let code = refusal.code;
                tracing::debug!(%session_id, %code, via, "message refused");
            });
        let turn_id = match admitted {
            Ok(turn_id) => turn_id,
            Err(refusal) => {
                self.next_permit = None;
                return Err(refusal);
            }
        };
        self.record_question(turn_id, question);
        if let Some(gone) = watch.filter(|_| self.deps.limits.cancel_on_disconnect) {
            // With `session.cancel_on_disconnect`, an HTTP client that leaves cancels
            // its turn, running or queued; otherwise the turn goes on and is kept.
            ctx.spawn(
                async move { gone.closed().await }
                    .into_actor(self)
                    .map(move |(), actor, ctx| actor.listener_left(turn_id, ctx)),
            );
        }
        self.send_to_socket(&ServerFrame::Accepted { turn_id });
        self.start_next_turn(ctx);
        // Said once the question is on its way, so the line does not delay it.
        if let Some(span) = self.turns.span(turn_id) {
            trace::turn_accepted(span, via);
        }
        Ok(turn_id)
    }

    fn start_next_turn(&mut self, ctx: &mut Context<Self>) {
        // A turn admitted now was counted in its client's turns already; one that
        // waited behind its session's last turn takes that turn's place.
        let permit = (self.next_permit.take()).or_else(|| {
            let client = self.client.as_ref()?;
            Some(self.deps.client_turns.start(client))
        });
        let Some(turn) = self.turns.start_next(Instant::now(), permit) else {
            self.arm_idle_timer(ctx);
            return;
        };
        let turn_id = turn.turn_id;
        let span = turn.span.clone();
        let question = Question {
            session_id: self.id,
            turn_id,
            reply_to: String::new(),
            history: self.history.messages(),
            text: turn.message.text.clone(),
            tools: turn.message.tools.clone(),
        };
        self.cancel_idle_timer(ctx);
        self.deps.counters.turn_started();
        let timeout = self.deps.limits.turn_timeout;
        let deadline = ctx.run_later(timeout, move |actor, ctx| {
            if actor.turns.is_running(turn_id) {
                actor.stop_worker(turn_id);
                let message = "the turn did not end within session.turn_timeout_s";
                actor.end_turn(
                    TurnEnd::Failed(ChatError::new(ErrorCode::Timeout, message)),
                    ctx,
                );
            }
        });
        self.turn_deadline = Some(deadline);
        let ask = AskQuestion {
            question,
            route: ctx.address(),
            span,
        };
        ctx.spawn(
            self.deps
                .broker
                .send(ask)
                .into_actor(self)
                .map(move |result, actor, ctx| actor.asked(turn_id, result, ctx)),
        );
    }

    /// The broker took the question of `turn_id`, or refused it.
    fn asked(
        &mut self,
        turn_id: Uuid,
        result: Result<Result<(), BrokerError>, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(turn) = self.turns.running_mut(turn_id) else {
            return; // it ended meanwhile
        };
        let refusal = match result {
            Ok(Ok(())) => {
                tracing::debug!(parent: &turn.span, "question published");
                // An HTTP client learns here that its question is on its way.
                turn.tell_listener(ServerFrame::Accepted { turn_id });
                return;
            }
            Ok(Err(BrokerError::Full)) => {
                ChatError::new(ErrorCode::Busy, "parlor is overloaded; try again shortly")
            }
            Ok(Err(error)) => ChatError::reported(
                ErrorCode::Unavailable,
                "the broker is unavailable; try again shortly",
                &error,
            ),
            Err(_) => ChatError::new(ErrorCode::Unavailable, "the broker is not running"),
        };
        self.end_turn(TurnEnd::Failed(refusal), ctx);
    }

    pub(super) fn on_answer(&mut self, answer: Answer, ctx: &mut Context<Self>) {
        let turn_id = answer.turn_id;
        let Some(turn) = self.turns.running_mut(turn_id) else {
            return; // a turn that already ended (cancelled, timed out)
        };
        let attempt_before = turn.reassembly.attempt();
        let Outcome { reset, step } = turn.reassembly.accept(answer.attempt, answer.body);
        let attempt = turn.reassembly.attempt();
        if attempt != attempt_before {
            turn.span = trace::turn_span(self.id, turn_id, attempt);
            let span = &turn.span;
            tracing::debug!(parent: span, reset, "the turn restarted on another worker");
        }
        let span = &turn.span;
        match &step {
            Step::Chunk { seq, text } => {
                tracing::debug!(parent: span, seq, bytes = text.len(), "chunk");
            }
            Step::Gap { expected, got } => {
                tracing::error!(parent: span, seq = got, expected, "answer chunks went missing");
            }
            Step::Event(_) | Step::Ignore | Step::End(_) => {}
        }
        let started = turn.started;
        if reset {
            // A worker that died, or one that stopped and gave the question back.
            let reason = "the worker answering this turn stopped; it restarted on another";
            self.send_turn_frame(ServerFrame::Reset {
                turn_id,
                reason: reason.into(),
            });
        }
        match step {
            Step::Ignore => {}
            Step::Chunk { seq, text } => {
                if seq == 0 {
                    self.deps.counters.first_chunk(started.elapsed());
                }
                self.send_turn_frame(ServerFrame::Chunk { turn_id, seq, text });
            }
            Step::Event(event) => self.send_turn_frame(ServerFrame::event(turn_id, event)),
            Step::End(end) => self.end_turn(end, ctx),
            Step::Gap { .. } => {
                self.stop_worker(turn_id);
                let message = "parts of the answer were lost on the way; please ask again";
                self.end_turn(
                    TurnEnd::Failed(ChatError::new(ErrorCode::Unavailable, message)),
                    ctx,
                );
            }
        }
    }

    /// Ends the running turn with exactly one `done` or `error` frame.
    pub(super) fn end_turn(&mut self, end: TurnEnd, ctx: &mut Context<Self>) {
        let Some(turn) = self.turns.end() else {
            return;
        };
        if let Some(deadline) = self.turn_deadline.take() {
            ctx.cancel_future(deadline);
        }
        let duration = turn.started.elapsed();
        self.deps.counters.turn_lasted(duration);
        let frame = self.count_end(turn.turn_id, &end);
        self.send_to_socket(&frame);
        turn.tell_listener(frame);
        let ActiveTurn {
            message,
            reassembly,
            span,
            ..
        } = *turn;
        trace::turn_ended(&span, &end, duration, reassembly.chunks());
        let window = self.deps.limits.history_window;
        let said = TurnText {
            turn_id: turn.turn_id,
            question: message.text,
            answer: reassembly.into_answer(),
        };
        self.record_turn_end(said.turn_id, &said.answer, &end);
        self.history.turn_ended(said, &end, window);
        self.start_next_turn(ctx);
    }

    /// Counts how turn `turn_id` ended; answers its last frame.
    fn count_end(&self, turn_id: Uuid, end: &TurnEnd) -> ServerFrame {
        let counters = &self.deps.counters;
        match end {
            TurnEnd::Finished(finish_reason) => {
                counters.turn_ended(match finish_reason {
                    FinishReason::Cancelled => TurnResult::Cancelled,
                    FinishReason::Stop | FinishReason::Length => TurnResult::Completed,
                });
                ServerFrame::Done {
                    turn_id,
                    finish_reason: *finish_reason,
                }
            }
            TurnEnd::Failed(error) => {
                counters.turn_ended(TurnResult::Failed);
                ServerFrame::failed(Some(turn_id), error.clone())
            }
        }
    }

    pub(super) fn cancel_running_turn(&mut self, ctx: &mut Context<Self>) {
        if let Some(turn) = self.turns.running() {
            self.stop_worker(turn.turn_id);
            self.end_turn(TurnEnd::Finished(FinishReason::Cancelled), ctx);
        }
    }

    /// Tells the worker running `turn_id` to stop; its answers are not wanted.
    pub(super) fn stop_worker(&self, turn_id: Uuid) {
        self.deps.broker.do_send(ForgetTurn {
            turn_id,
            cancel: true,
        });
    }

    /// Stops routing the answers of `turn_id` here, leaving its worker be.
    pub(super) fn forget_worker(&self, turn_id: Uuid) {
        self.deps.broker.do_send(ForgetTurn {
            turn_id,
            cancel: false,
        });
    }

    /// Runs the turns a stored session was loaded with (see [`SessionActor::restore`]):
    /// the client is told of each, as of any turn it sends, and the first starts.
    pub(super) fn run_resumed_turns(&mut self, ctx: &mut Context<Self>) {
        if self.turns.running().is_some() {
            return;
        }
        let resumed: Vec<Uuid> = self.turns.waiting().map(|(turn_id, _)| turn_id).collect();
        if resumed.is_empty() {
            return;
        }
        tracing::info!(session_id = %self.id, turns = resumed.len(), "asking the questions of unfinished turns again");
        for turn_id in resumed {
            self.send_to_socket(&ServerFrame::Accepted { turn_id });
        }
        self.start_next_turn(ctx);
    }

    /// The `POST /chat` client of `turn_id` left (`session.cancel_on_disconnect`).
    fn listener_left(&mut self, turn_id: Uuid, ctx: &mut Context<Self>) {
        // With a socket attached somebody still watches the turn: let it run.
        if self.connection.is_some() {
            return;
        }
        let dropped = self.turns.drop_waiting(turn_id);
        self.record_dropped(dropped);
        if self.turns.is_running(turn_id) {
            self.cancel_running_turn(ctx);
        }
    }

    /// Sends a frame of the running turn to the socket and to the turn's listener.
    fn send_turn_frame(&mut self, frame: ServerFrame) {
        self.send_to_socket(&frame);
        if let Some(turn) = self.turns.running() {
            turn.tell_listener(frame);
        }
    }
}
