//! `SessionActor`: one per chat session. It owns the session's WebSocket (through
//! actix-ws), its conversation history, its queue of pending turns and the turn
//! that is running, and it outlives its connection for `session.idle_timeout_s` so
//! a client can re-attach.
//!
//! The actor wires together parts that each do one job and know nothing of actix
//! beyond the socket's sink: [`connection`] (the attached socket: reading frames,
//! liveness, close codes), [`turn_queue`] (which turn runs, which wait),
//! [`reassembly`] (a turn's answer from possibly several deliveries) and
//! [`history`] (the window of the conversation the agent sees). The actor's own
//! work is in two halves: [`turns`] (from a message to its last frame) and
//! [`socket`] (attaching, reading and letting go of the WebSocket). The wire
//! protocol is in `docs/protocol.md`.

mod client_turns;
mod connection;
mod give_away;
mod going_away;
mod history;
mod idle;
mod outbox;
mod reassembly;
mod records;
mod socket;
mod trace;
mod turn_queue;
mod turns;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use self::client_turns::TurnPermit;
pub use self::client_turns::{ClientKey, ClientTurns};
use self::connection::Connection;
pub use self::give_away::GiveAway;
pub use self::going_away::GoingAway;
use self::history::History;
pub use self::history::HistoryWindow;
pub use self::idle::LeaveMemory;
use self::reassembly::TurnEnd;
pub use self::records::Opening;
use self::socket::Arrival;
use self::turn_queue::TurnQueue;
use super::broker::BrokerActor;
use super::registry::{Register, SessionRegistry, Unregister};
use super::stats::Tracked;
use crate::broker::Answer;
use crate::config::Config;
use crate::conversation::{ChatError, ChatMessage, FinishReason, KnownTools, UserMessage};
use crate::counters::Counters;
use crate::draining::Draining;
use crate::protocol::ServerFrame;
use crate::storage::{Recorder, Storage, StoredSession};

/// The limits a session enforces, read once from the configuration.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    pub max_message_bytes: usize,
    /// Bytes of frames that may wait for a WebSocket client before it is let go.
    pub max_unsent_bytes: usize,
    pub max_queued_turns: usize,
    pub history_window: HistoryWindow,
    pub turn_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_timeout: Duration,
    /// Whether a turn stops when its client leaves (else it finishes and is kept).
    pub cancel_on_disconnect: bool,
}

impl SessionLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_message_bytes: config.http.max_message_bytes,
            max_unsent_bytes: config.session.max_unsent_bytes,
            max_queued_turns: config.session.max_queued_turns,
            history_window: HistoryWindow {
                messages: config.agent.max_history_messages,
                bytes: config.agent.max_history_bytes,
            },
            turn_timeout: config.session.turn_timeout(),
            idle_timeout: config.session.idle_timeout(),
            client_timeout: config.session.client_timeout(),
            cancel_on_disconnect: config.session.cancel_on_disconnect,
        }
    }
}

/// What every session of a gateway shares.
pub struct SessionDeps {
    pub registry: Tracked<SessionRegistry>,
    /// The running turns of each client, across sessions.
    pub client_turns: Arc<ClientTurns>,
    pub broker: Tracked<BrokerActor>,
    pub counters: Arc<Counters>,
    pub limits: SessionLimits,
    /// The tools a message may name.
    pub tools: KnownTools,
    /// Where sessions are loaded from.
    pub storage: Arc<dyn Storage>,
    /// Writes sessions and their messages down.
    pub recorder: Recorder,
    /// This gateway, as the holder of the sessions it serves.
    pub gateway_id: String,
    /// Set when the process stops: new turns are refused.
    pub draining: Draining,
}

/// Receives the frames of one turn started over HTTP (`POST /chat`). Unbounded
/// because it holds at most one answer, which the model's token limit bounds.
pub type TurnListener = mpsc::UnboundedSender<ServerFrame>;

pub struct SessionActor {
    id: Uuid,
    /// Who the session belongs to (stored with it): the authenticated user, or
    /// with authentication off whoever a `POST /chat` client said, if it did.
    user_id: Option<String>,
    deps: Arc<SessionDeps>,
    connection: Option<Connection>,
    history: History,
    turns: TurnQueue,
    /// Ends the running turn with `timeout` when it takes too long.
    turn_deadline: Option<SpawnHandle>,
    idle_timer: Option<SpawnHandle>,
    /// Given away to another gateway: it stops once its socket is closed.
    leaving: bool,
    /// Who uses the session now, for `session.max_turns_per_client` (`None`: not
    /// limited).
    client: Option<ClientKey>,
    /// The count of the turn being admitted among its client's running turns.
    next_permit: Option<TurnPermit>,
}

impl SessionActor {
    /// Starts a new session on the current arbiter, seeded with `history` (oldest
    /// first).
    pub fn start(deps: Arc<SessionDeps>, history: Vec<ChatMessage>) -> (Uuid, Addr<Self>) {
        Self::start_for(deps, history, None)
    }

    /// Like [`SessionActor::start`], for a user (the authenticated one, or else
    /// `POST /chat`'s `userId`), which is stored with the session.
    pub fn start_for(
        deps: Arc<SessionDeps>,
        history: Vec<ChatMessage>,
        user_id: Option<String>,
    ) -> (Uuid, Addr<Self>) {
        let window = deps.limits.history_window;
        let mut actor = Self::new(deps, Uuid::new_v4(), History::seeded(history, window));
        actor.user_id = user_id;
        (actor.id, actor.start())
    }

    /// Brings a stored session back to life on the current arbiter.
    pub fn restore(deps: Arc<SessionDeps>, stored: StoredSession) -> Addr<Self> {
        Self::restored(deps, stored).start()
    }

    /// A stored session as it was left: its conversation, and the turns that never
    /// ended, to run again once it starts.
    fn restored(deps: Arc<SessionDeps>, stored: StoredSession) -> Self {
        let window = deps.limits.history_window;
        let (history, pending) = records::take_back(&stored.messages, window);
        let mut actor = Self::new(deps, stored.record.id, history);
        actor.user_id = stored.record.user_id;
        for (turn_id, message) in pending {
            let span = trace::turn_span(actor.id, turn_id, 1);
            actor.turns.resume(turn_id, message, span);
        }
        actor
    }

    /// Starts a session on the current arbiter for a freshly upgraded WebSocket,
    /// which it reads itself (the frame stream cannot leave this thread; a session
    /// re-attached from another thread gets its frames as [`SocketInput`]
    /// messages instead). The session is new (belonging to `owner`, the
    /// authenticated user if there is one), or `opening` a stored one.
    pub fn start_connected(
        deps: Arc<SessionDeps>,
        socket: actix_ws::Session,
        frames: actix_ws::AggregatedMessageStream,
        connection_id: u64,
        opening: Opening,
        owner: Option<String>,
        client: Option<ClientKey>,
    ) -> Addr<Self> {
        Self::create(move |ctx| {
            let (mut actor, arrival) = match opening {
                Opening::New => (Self::fresh(deps, owner), Arrival::New),
                Opening::Unknown(asked) => (Self::fresh(deps, owner), Arrival::Unknown(asked)),
                Opening::Stored(stored) => (Self::restored(deps, stored), Arrival::Returning),
            };
            actor.client = client;
            actor.attach(socket, connection_id, arrival, ctx);
            let closed =
                futures_util::stream::once(async move { SocketInput::Closed { connection_id } });
            let frames = frames.map(move |item| SocketInput::Frame {
                connection_id,
                item,
            });
            ctx.add_stream(frames.chain(closed));
            actor
        })
    }

    fn fresh(deps: Arc<SessionDeps>, owner: Option<String>) -> Self {
        let mut actor = Self::new(deps, Uuid::new_v4(), History::default());
        actor.user_id = owner;
        actor
    }

    fn new(deps: Arc<SessionDeps>, id: Uuid, history: History) -> Self {
        Self {
            id,
            user_id: None,
            deps,
            connection: None,
            history,
            turns: TurnQueue::default(),
            turn_deadline: None,
            idle_timer: None,
            leaving: false,
            client: None,
            next_permit: None,
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.deps.counters.session_created();
        self.record_session();
        self.record_brought_history();
        // The registry's mailbox is large and registration must not wait: a client may
        // re-attach as soon as it has read the session id.
        self.deps.registry.do_send(Register {
            session_id: self.id,
            session: ctx.address(),
            owner: self.user_id.clone(),
        });
        // A session just started is about to be used (its first turn or socket is
        // on its way): it does not count as idle for leaving memory, only for
        // `idle_timeout` should nothing come.
        self.start_idle_timer(ctx);
        self.run_resumed_turns(ctx);
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        // Only an idle session stops on its own; at shutdown a turn may still run.
        // It stays pending in storage, to be asked again when the session is loaded
        // next; so the worker is not told to cancel it (a cancellation would stop that
        // new attempt too). Its answers find no reply queue once this gateway is gone,
        // which stops the worker.
        if let Some(turn) = self.turns.end() {
            let turn_id = turn.turn_id;
            self.forget_worker(turn_id);
            let end = TurnEnd::Finished(FinishReason::Cancelled);
            let chunks = turn.reassembly.chunks();
            trace::turn_ended(&turn.span, &end, turn.started.elapsed(), chunks);
            turn.tell_listener(ServerFrame::Done {
                turn_id,
                finish_reason: FinishReason::Cancelled,
            });
        }
        self.deps.registry.do_send(Unregister {
            session_id: self.id,
            session: ctx.address(),
        });
        self.deps.counters.session_closed();
    }
}

/// Re-attach this (live) session to a client's new WebSocket. Its first frame
/// there is `session`; the socket's reader then sends the frames as
/// [`SocketInput`] tagged with `connection_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub socket: actix_ws::Session,
    pub connection_id: u64,
    pub client: Option<ClientKey>,
}

impl Handler<Attach> for SessionActor {
    type Result = ();

    fn handle(&mut self, message: Attach, ctx: &mut Self::Context) {
        self.client = message.client;
        self.attach(
            message.socket,
            message.connection_id,
            Arrival::Returning,
            ctx,
        );
    }
}

/// Time to ping the client (sent to every session by the registry's one timer:
/// ten thousand timers of their own would cost sessions ~200 bytes each).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat;

impl Handler<Heartbeat> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Heartbeat, ctx: &mut Self::Context) {
        self.heartbeat(ctx);
    }
}

/// Start a turn whose frames go to `listener` (`POST /chat`); answers the turn id,
/// or why it was refused.
#[derive(Message)]
#[rtype(result = "Result<Uuid, ChatError>")]
pub struct StartTurn {
    pub message: UserMessage,
    pub listener: TurnListener,
    /// Who asks (`None`: not limited by `session.max_turns_per_client`).
    pub client: Option<ClientKey>,
}

impl Handler<StartTurn> for SessionActor {
    type Result = Result<Uuid, ChatError>;

    fn handle(&mut self, message: StartTurn, ctx: &mut Self::Context) -> Self::Result {
        self.client = message.client;
        self.queue_turn(message.message, Some(message.listener), ctx)
    }
}

/// An answer for one of this session's turns, routed by the broker actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TurnUpdate(pub Answer);

impl Handler<TurnUpdate> for SessionActor {
    type Result = ();

    fn handle(&mut self, TurnUpdate(answer): TurnUpdate, ctx: &mut Self::Context) {
        self.on_answer(answer, ctx);
    }
}

/// A turn of this session failed outside any worker (e.g. the broker connection
/// was lost with its answers).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TurnFailed {
    pub turn_id: Uuid,
    pub error: ChatError,
}

impl Handler<TurnFailed> for SessionActor {
    type Result = ();

    fn handle(&mut self, failure: TurnFailed, ctx: &mut Self::Context) {
        if self.turns.is_running(failure.turn_id) {
            self.end_turn(TurnEnd::Failed(failure.error), ctx);
        }
    }
}

/// What a connection yields: a frame, or its end. Tagged with the connection so a
/// replaced connection's late input is ignored. A session reads its first
/// connection itself; a re-attached connection is read on its own thread (the
/// frame stream cannot move between threads) and its input sent as messages.
#[derive(Message)]
#[rtype(result = "()")]
pub enum SocketInput {
    Frame {
        connection_id: u64,
        item: Result<AggregatedMessage, ProtocolError>,
    },
    Closed {
        connection_id: u64,
    },
}

impl Handler<SocketInput> for SessionActor {
    type Result = ();

    fn handle(&mut self, input: SocketInput, ctx: &mut Self::Context) {
        self.on_socket_input(input, ctx);
    }
}

impl StreamHandler<SocketInput> for SessionActor {
    fn handle(&mut self, input: SocketInput, ctx: &mut Self::Context) {
        self.on_socket_input(input, ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // A socket ending is a `Closed` input; the session itself lives on.
    }
}
