//! `BrokerActor`: the gateway's link to the broker. It publishes the questions of
//! this gateway's sessions and routes each answer from the reply queue to the
//! session whose turn it belongs to. It watches the broker's connection, and when
//! it is lost it ends the turns waiting for answers at once; when it is back, it
//! asks the workers to drop those turns' questions ([`lost_turns`]). What it does
//! for a turn it does inside the turn's span, which the session hands over with
//! the question.

mod lost_turns;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::session::{SessionActor, TurnFailed, TurnUpdate};
use super::stats::ActorStats;
use crate::broker::{Answer, Broker, BrokerError, ConnectionState, Question};
use crate::conversation::{ChatError, ErrorCode};
use crate::counters::Counters;
use lost_turns::LostTurns;

/// Cancellations of lost turns published at once after a reconnection.
const CANCELS_IN_FLIGHT: usize = 32;
/// How long to wait before publishing again the cancellations that failed while
/// the connection seemed up.
const CANCEL_RETRY: Duration = Duration::from_secs(1);

pub struct BrokerActor {
    broker: Arc<dyn Broker>,
    reply_to: String,
    /// Answers expected, by turn: registered *before* the question is published so
    /// that no early chunk can arrive unrouted.
    routes: HashMap<Uuid, Route>,
    answers: Option<BoxStream<'static, Answer>>,
    /// The broker's connection state, until `started` turns it into a stream.
    connection: Option<watch::Receiver<ConnectionState>>,
    /// The broker's count of lost connections when this actor last heard of it.
    connections_lost: u64,
    /// The turns failed for a lost connection, whose questions workers are to drop.
    lost_turns: LostTurns,
    stats: Arc<ActorStats>,
    counters: Arc<Counters>,
}

impl BrokerActor {
    /// Routes the `answers` arriving at this gateway's reply queue (`reply_to`).
    pub fn new(
        broker: Arc<dyn Broker>,
        reply_to: String,
        answers: BoxStream<'static, Answer>,
        stats: Arc<ActorStats>,
        counters: Arc<Counters>,
    ) -> Self {
        let mut connection = broker.connection_state();
        let connections_lost = connection.borrow_and_update().lost;
        Self {
            connection: Some(connection),
            connections_lost,
            broker,
            reply_to,
            routes: HashMap::new(),
            lost_turns: LostTurns::default(),
            answers: Some(answers),
            stats,
            counters,
        }
    }
}

/// Where a turn's answers go.
struct Route {
    session: Addr<SessionActor>,
    /// The turn's span, for what this actor logs about it.
    span: Span,
    /// The newest delivery of the question heard from: only its end ends the
    /// route. An older one may still finish (its worker was stopping when the
    /// question went to another), and the newer one's answers must still come.
    attempt: u32,
}

impl Actor for BrokerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Every session publishes through this one actor; waiting senders queue here.
        ctx.set_mailbox_capacity(4096);
        if let Some(answers) = self.answers.take() {
            ctx.add_stream(self.stats.count_items(answers));
        }
        if let Some(connection) = self.connection.take() {
            // Seen up to `connections_lost` in `new`: only later changes come.
            ctx.add_stream(
                self.stats
                    .count_items(WatchStream::from_changes(connection)),
            );
        }
    }
}

/// When the connection drops, answers in flight are lost with it: the turns
/// waiting for them end now with `unavailable` instead of at their deadline. Their
/// questions are not lost, though: once the connection is back, the workers are
/// told to drop them.
impl StreamHandler<ConnectionState> for BrokerActor {
    fn handle(&mut self, state: ConnectionState, ctx: &mut Self::Context) {
        if state.lost != self.connections_lost {
            self.connections_lost = state.lost;
            self.fail_routed_turns();
        }
        if state.connected {
            self.cancel_lost_turns(ctx);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Publish a session's question and route its answers to `route`.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct AskQuestion {
    /// `reply_to` is filled in by the broker actor.
    pub question: Question,
    pub route: Addr<SessionActor>,
    /// The turn's span.
    pub span: Span,
}

/// The session no longer wants answers for this turn; with `cancel`, the worker
/// running it is told to stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetTurn {
    pub turn_id: Uuid,
    pub cancel: bool,
}

crate::counted_messages!(BrokerActor => AskQuestion, ForgetTurn);

impl BrokerActor {
    fn fail_routed_turns(&mut self) {
        tracing::warn!(
            turns = self.routes.len(),
            "lost the broker; failing the turns in flight"
        );
        for (turn_id, Route { session, span, .. }) in self.routes.drain() {
            tracing::debug!(parent: &span, "failing the turn: its answers were lost");
            let message = "the connection to the broker was lost; please ask again";
            session.do_send(TurnFailed {
                turn_id,
                error: ChatError::new(ErrorCode::Unavailable, message),
            });
            self.lost_turns.remember(turn_id);
        }
    }

    /// Publishes the cancellations of the lost turns not yet sent; those that fail
    /// wait for the next reconnection, or a moment if the connection seems up.
    fn cancel_lost_turns(&mut self, ctx: &mut Context<Self>) {
        let turns = self.lost_turns.take_unsent();
        if turns.is_empty() {
            return;
        }
        tracing::info!(
            turns = turns.len(),
            "the broker is back; asking the workers to drop the questions of the turns failed"
        );
        let broker = self.broker.clone();
        let publish = stream::iter(turns)
            .map(move |turn_id| {
                let publish = broker.publish_cancel(turn_id);
                async move { publish.await.err().map(|error| (turn_id, error)) }
            })
            .buffer_unordered(CANCELS_IN_FLIGHT)
            .filter_map(futures_util::future::ready)
            .collect::<Vec<_>>();
        ctx.spawn(publish.into_actor(self).map(|failed, actor, ctx| {
            let Some((_, error)) = failed.first() else {
                return;
            };
            tracing::warn!(turns = failed.len(), %error, "could not publish cancellations of lost turns");
            for (turn_id, _) in &failed {
                actor.lost_turns.not_sent(*turn_id);
            }
            // A reconnection sends them; without one in sight, try again soon.
            if actor.broker.is_connected() {
                ctx.run_later(CANCEL_RETRY, |actor, ctx| actor.cancel_lost_turns(ctx));
            }
        }));
    }

    fn publish_cancel(&self, turn_id: Uuid, span: Span, ctx: &mut Context<Self>) {
        tracing::debug!(parent: &span, "publishing a cancellation");
        let publish = self.broker.publish_cancel(turn_id);
        let publish = publish.instrument(span.clone());
        ctx.spawn(publish.into_actor(self).map(move |result, _, _| {
            if let Err(error) = result {
                tracing::warn!(parent: &span, %turn_id, %error, "could not publish a cancellation");
            }
        }));
    }
}

impl Handler<AskQuestion> for BrokerActor {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, message: AskQuestion, _: &mut Self::Context) -> Self::Result {
        let AskQuestion {
            mut question,
            route,
            span,
        } = message;
        question.reply_to.clone_from(&self.reply_to);
        let turn_id = question.turn_id;
        tracing::debug!(parent: &span, "publishing the question");
        // Entered while publishing: what the broker engine logs belongs to the turn.
        let publish = self.broker.publish_question(question);
        let publish = publish.instrument(span.clone());
        let route = Route {
            session: route,
            span,
            attempt: 0,
        };
        self.routes.insert(turn_id, route);
        Box::pin(publish.into_actor(self).map(move |result, actor, _| {
            match &result {
                Ok(()) => actor.counters.question_published(),
                Err(error) => {
                    if let Some(route) = actor.routes.remove(&turn_id) {
                        let span = &route.span;
                        tracing::debug!(parent: span, %error, "the broker refused the question");
                    }
                }
            }
            result
        }))
    }
}

impl Handler<ForgetTurn> for BrokerActor {
    type Result = ();

    fn handle(&mut self, message: ForgetTurn, ctx: &mut Self::Context) {
        let turn_id = message.turn_id;
        let span = self
            .routes
            .remove(&turn_id)
            .map_or_else(Span::none, |route| route.span);
        if message.cancel {
            self.publish_cancel(turn_id, span, ctx);
        }
    }
}

impl StreamHandler<Answer> for BrokerActor {
    fn handle(&mut self, answer: Answer, ctx: &mut Self::Context) {
        let turn_id = answer.turn_id;
        let Some(route) = self.routes.get_mut(&turn_id) else {
            let span = tracing::debug_span!(
                parent: None,
                "turn",
                session_id = %answer.session_id,
                %turn_id,
                attempt = answer.attempt
            );
            tracing::debug!(parent: &span, "answer for a turn nobody waits for; dropped");
            let ends_turn = answer.body.ends_turn();
            if self.lost_turns.answered(turn_id, answer.attempt, ends_turn) {
                // Its cancellation went out before this worker could hear it.
                self.publish_cancel(turn_id, span, ctx);
            }
            return;
        };
        route.attempt = route.attempt.max(answer.attempt);
        let ends_route = answer.body.ends_turn() && answer.attempt == route.attempt;
        // A session's mailbox holds at most the chunks of its running turn, which
        // arrive at the model's pace; the reply queue upstream is bounded. (The
        // session itself ignores what a stale attempt sends.)
        route.session.do_send(TurnUpdate(answer));
        if ends_route {
            self.routes.remove(&turn_id);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // Keep routing nothing rather than stopping: sessions still hold our address
        // and get `unavailable` from the broker's readiness instead.
        tracing::error!("the reply queue closed; no more answers can arrive");
    }
}
