//! `SessionActor`: one per chat session. It owns the session's WebSocket (through
//! actix-ws), its conversation history, its queue of pending turns and the turn
//! that is running, and it outlives its connection for `session.idle_timeout_s` so
//! a client can re-attach.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::broker::{AskQuestion, BrokerActor, ForgetTurn};
use super::registry::{Register, SessionRegistry, Unregister};
use super::stats::Tracked;
use crate::broker::{Answer, AnswerBody, BrokerError, Question};
use crate::config::Config;
use crate::conversation::{ChatMessage, ErrorCode, FinishReason};
use crate::counters::{Counters, bump};
use crate::protocol::{ClientFrame, ServerFrame, parse_client_frame};
use crate::shutdown::Draining;

/// The limits a session enforces, read once from the configuration.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    pub max_message_bytes: usize,
    pub max_queued_turns: usize,
    pub max_history_messages: usize,
    pub turn_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_timeout: Duration,
}

impl SessionLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_message_bytes: config.http.max_message_bytes,
            max_queued_turns: config.session.max_queued_turns,
            max_history_messages: config.agent.max_history_messages,
            turn_timeout: config.session.turn_timeout(),
            idle_timeout: config.session.idle_timeout(),
            client_timeout: config.session.client_timeout(),
        }
    }
}

/// What every session of a gateway shares.
pub struct SessionDeps {
    pub registry: Tracked<SessionRegistry>,
    pub broker: Tracked<BrokerActor>,
    pub counters: Arc<Counters>,
    pub limits: SessionLimits,
    /// Set when the process stops: new turns are refused.
    pub draining: Draining,
}

/// Receives the frames of one turn started over HTTP (`POST /chat`). Unbounded
/// because it holds at most one answer, which the model's token limit bounds.
pub type TurnListener = mpsc::UnboundedSender<ServerFrame>;

pub struct SessionActor {
    id: Uuid,
    deps: Arc<SessionDeps>,
    connection: Option<Connection>,
    history: VecDeque<ChatMessage>,
    queued: VecDeque<QueuedTurn>,
    /// Boxed: most sessions are idle most of the time, and each idle byte counts
    /// ten thousand times.
    running: Option<Box<RunningTurn>>,
    idle_timer: Option<SpawnHandle>,
}

struct Connection {
    id: u64,
    sink: SinkWrite<actix_ws::Message, actix_ws::Session>,
    last_heard: Instant,
}

struct QueuedTurn {
    turn_id: Uuid,
    text: String,
    listener: Option<TurnListener>,
}

struct RunningTurn {
    turn_id: Uuid,
    text: String,
    /// The answer so far, for the history.
    answer: String,
    /// The delivery whose chunks are being passed on.
    attempt: u32,
    next_seq: u64,
    listener: Option<TurnListener>,
    deadline: SpawnHandle,
    started: Instant,
}

/// How a turn ended.
enum TurnEnd {
    Finished(FinishReason),
    Failed(ErrorCode, String),
}

impl SessionActor {
    /// Starts a session on the current arbiter, seeded with `history` (oldest first).
    pub fn start(deps: Arc<SessionDeps>, history: Vec<ChatMessage>) -> (Uuid, Addr<Self>) {
        let actor = Self::new(deps, history);
        (actor.id, actor.start())
    }

    /// Starts a session on the current arbiter for a freshly upgraded WebSocket,
    /// which it reads itself (the frame stream cannot leave this thread; a session
    /// re-attached from another thread gets its frames as [`SocketInput`]
    /// messages instead). With `unknown_id`, the client asked for a session that
    /// is gone: the `session` frame is followed by an `error` `not_found`.
    pub fn start_connected(
        deps: Arc<SessionDeps>,
        socket: actix_ws::Session,
        frames: actix_ws::AggregatedMessageStream,
        connection_id: u64,
        unknown_id: Option<String>,
    ) -> Addr<Self> {
        Self::create(move |ctx| {
            let mut actor = Self::new(deps, Vec::new());
            actor.attach(socket, connection_id, unknown_id, ctx);
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

    fn new(deps: Arc<SessionDeps>, history: Vec<ChatMessage>) -> Self {
        let mut actor = Self {
            id: Uuid::new_v4(),
            deps,
            connection: None,
            history: VecDeque::new(),
            queued: VecDeque::new(),
            running: None,
            idle_timer: None,
        };
        for message in history {
            actor.remember(message);
        }
        actor
    }

    fn remember(&mut self, message: ChatMessage) {
        if self.history.len() == self.deps.limits.max_history_messages {
            self.history.pop_front();
        }
        self.history.push_back(message);
    }

    /// Sends a frame to the attached WebSocket, if any.
    fn send_to_socket(&mut self, frame: &ServerFrame) {
        if let Some(connection) = &mut self.connection {
            // A closed sink means the socket is going away; its stream's end will
            // detach it, so there is nothing more to do here.
            let _ = connection
                .sink
                .write(actix_ws::Message::Text(frame.to_json().into()));
        }
    }

    /// Sends a frame of the running turn to the socket and to the turn's listener.
    fn send_turn_frame(&mut self, frame: ServerFrame) {
        self.send_to_socket(&frame);
        if let Some(listener) = self
            .running
            .as_ref()
            .and_then(|turn| turn.listener.as_ref())
        {
            let _ = listener.send(frame);
        }
    }

    /// Queues a user message as a turn; it starts when the turns before it end.
    fn queue_turn(
        &mut self,
        text: String,
        listener: Option<TurnListener>,
        ctx: &mut Context<Self>,
    ) -> Result<Uuid, (ErrorCode, String)> {
        if self.deps.draining.is_draining() {
            let message = "parlor is shutting down; try again shortly";
            return Err((ErrorCode::Unavailable, message.into()));
        }
        if self.running.is_some() && self.queued.len() >= self.deps.limits.max_queued_turns {
            return Err((
                ErrorCode::Busy,
                format!(
                    "{} messages already wait for the running turn; try again when it ends",
                    self.queued.len()
                ),
            ));
        }
        let turn_id = Uuid::new_v4();
        if let Some(listener) = &listener {
            // An HTTP client that leaves cancels its turn, running or queued.
            let gone = listener.clone();
            ctx.spawn(
                async move { gone.closed().await }
                    .into_actor(self)
                    .map(move |(), actor, ctx| actor.listener_left(turn_id, ctx)),
            );
        }
        self.queued.push_back(QueuedTurn {
            turn_id,
            text,
            listener,
        });
        self.send_to_socket(&ServerFrame::Accepted { turn_id });
        self.start_next_turn(ctx);
        Ok(turn_id)
    }

    fn start_next_turn(&mut self, ctx: &mut Context<Self>) {
        if self.running.is_some() {
            return;
        }
        let Some(QueuedTurn {
            turn_id,
            text,
            listener,
        }) = self.queued.pop_front()
        else {
            self.arm_idle_timer(ctx);
            return;
        };
        self.cancel_idle_timer(ctx);
        bump(&self.deps.counters.turns_started);
        let deadline = ctx.run_later(self.deps.limits.turn_timeout, move |actor, ctx| {
            if actor
                .running
                .as_ref()
                .is_some_and(|turn| turn.turn_id == turn_id)
            {
                actor.deps.broker.do_send(ForgetTurn {
                    turn_id,
                    cancel: true,
                });
                let message = "the turn did not end within session.turn_timeout_s";
                actor.end_turn(TurnEnd::Failed(ErrorCode::Timeout, message.into()), ctx);
            }
        });
        let question = Question {
            session_id: self.id,
            turn_id,
            reply_to: String::new(),
            history: self.history.iter().cloned().collect(),
            text: text.clone(),
        };
        self.running = Some(Box::new(RunningTurn {
            turn_id,
            text,
            answer: String::new(),
            attempt: 1,
            next_seq: 0,
            listener,
            deadline,
            started: Instant::now(),
        }));
        let ask = AskQuestion {
            question,
            route: ctx.address(),
        };
        ctx.spawn(
            self.deps
                .broker
                .send(ask)
                .into_actor(self)
                .map(move |result, actor, ctx| {
                    let running = actor
                        .running
                        .as_ref()
                        .filter(|turn| turn.turn_id == turn_id);
                    let refusal = match result {
                        Ok(Ok(())) => {
                            // An HTTP client learns here that its question is on its way.
                            if let Some(listener) = running.and_then(|turn| turn.listener.as_ref())
                            {
                                let _ = listener.send(ServerFrame::Accepted { turn_id });
                            }
                            return;
                        }
                        Ok(Err(BrokerError::Full)) => (
                            ErrorCode::Busy,
                            "parlor is overloaded; try again shortly".to_owned(),
                        ),
                        Ok(Err(error)) => (ErrorCode::Unavailable, error.to_string()),
                        Err(_) => (
                            ErrorCode::Unavailable,
                            "the broker is not running".to_owned(),
                        ),
                    };
                    if running.is_some() {
                        actor.end_turn(TurnEnd::Failed(refusal.0, refusal.1), ctx);
                    }
                }),
        );
    }

    /// Ends the running turn with exactly one `done` or `error` frame.
    fn end_turn(&mut self, end: TurnEnd, ctx: &mut Context<Self>) {
        let Some(turn) = self.running.as_ref() else {
            return;
        };
        let turn_id = turn.turn_id;
        let counters = &self.deps.counters;
        let frame = match end {
            TurnEnd::Finished(finish_reason) => {
                bump(match finish_reason {
                    FinishReason::Cancelled => &counters.turns_cancelled,
                    FinishReason::Stop | FinishReason::Length => &counters.turns_completed,
                });
                ServerFrame::Done {
                    turn_id,
                    finish_reason,
                }
            }
            TurnEnd::Failed(code, message) => {
                bump(&counters.turns_failed);
                ServerFrame::error(Some(turn_id), code, message)
            }
        };
        let finished = matches!(frame, ServerFrame::Done { .. });
        self.send_turn_frame(frame);
        let turn = self.running.take().expect("checked above");
        ctx.cancel_future(turn.deadline);
        metrics::histogram!("parlor_turn_duration_seconds").record(turn.started.elapsed());
        // A finished turn (cancelled ones too: the user saw what was said) joins the
        // history; a failed one does not, so a retry starts clean.
        if finished {
            self.remember(ChatMessage::user(turn.text));
            if !turn.answer.is_empty() {
                self.remember(ChatMessage::assistant(turn.answer));
            }
        }
        self.start_next_turn(ctx);
    }

    fn cancel_running_turn(&mut self, ctx: &mut Context<Self>) {
        if let Some(turn) = &self.running {
            self.deps.broker.do_send(ForgetTurn {
                turn_id: turn.turn_id,
                cancel: true,
            });
            self.end_turn(TurnEnd::Finished(FinishReason::Cancelled), ctx);
        }
    }

    fn listener_left(&mut self, turn_id: Uuid, ctx: &mut Context<Self>) {
        // With a socket attached somebody still watches the turn: let it run.
        if self.connection.is_some() {
            return;
        }
        self.queued.retain(|turn| turn.turn_id != turn_id);
        if self
            .running
            .as_ref()
            .is_some_and(|turn| turn.turn_id == turn_id)
        {
            self.cancel_running_turn(ctx);
        }
    }

    fn on_answer(&mut self, answer: Answer, ctx: &mut Context<Self>) {
        let Some(turn) = self
            .running
            .as_mut()
            .filter(|turn| turn.turn_id == answer.turn_id)
        else {
            return; // a turn that already ended (cancelled, timed out)
        };
        if answer.attempt < turn.attempt {
            return; // a late answer of an abandoned delivery
        }
        if answer.attempt > turn.attempt {
            let restarted = turn.next_seq > 0;
            turn.attempt = answer.attempt;
            turn.next_seq = 0;
            turn.answer.clear();
            if restarted {
                let turn_id = turn.turn_id;
                let reason = "the worker answering this turn failed; it restarted on another";
                self.send_turn_frame(ServerFrame::Reset {
                    turn_id,
                    reason: reason.into(),
                });
            }
        }
        match answer.body {
            AnswerBody::Chunk { seq, text } => self.on_chunk(seq, text, ctx),
            AnswerBody::Done { finish_reason } => {
                self.end_turn(TurnEnd::Finished(finish_reason), ctx)
            }
            AnswerBody::Error { code, message } => {
                self.end_turn(TurnEnd::Failed(code, message), ctx)
            }
        }
    }

    fn on_chunk(&mut self, seq: u64, text: String, ctx: &mut Context<Self>) {
        let turn = self
            .running
            .as_mut()
            .expect("on_answer checked the running turn");
        if seq < turn.next_seq {
            return; // a duplicate
        }
        if seq > turn.next_seq {
            let turn_id = turn.turn_id;
            tracing::error!(%turn_id, seq, expected = turn.next_seq, "answer chunks went missing");
            self.deps.broker.do_send(ForgetTurn {
                turn_id,
                cancel: true,
            });
            let message = "parts of the answer were lost on the way; please ask again";
            self.end_turn(TurnEnd::Failed(ErrorCode::Unavailable, message.into()), ctx);
            return;
        }
        if seq == 0 {
            metrics::histogram!("parlor_turn_first_chunk_seconds").record(turn.started.elapsed());
        }
        turn.next_seq += 1;
        turn.answer.push_str(&text);
        let turn_id = turn.turn_id;
        self.send_turn_frame(ServerFrame::Chunk { turn_id, seq, text });
    }

    fn arm_idle_timer(&mut self, ctx: &mut Context<Self>) {
        if self.connection.is_some() || self.running.is_some() || self.idle_timer.is_some() {
            return;
        }
        let timer = ctx.run_later(self.deps.limits.idle_timeout, |actor, ctx| {
            actor.idle_timer = None;
            if actor.connection.is_none() && actor.running.is_none() {
                tracing::debug!(session_id = %actor.id, "session idle; closing it");
                ctx.stop();
            }
        });
        self.idle_timer = Some(timer);
    }

    fn cancel_idle_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.idle_timer.take() {
            ctx.cancel_future(timer);
        }
    }

    fn attach(
        &mut self,
        socket: actix_ws::Session,
        connection_id: u64,
        unknown_id: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(mut old) = self.connection.take() {
            let reason = CloseReason {
                code: CloseCode::Policy,
                description: Some("the session was attached to another connection".into()),
            };
            let _ = old.sink.write(actix_ws::Message::Close(Some(reason)));
            old.sink.close();
        }
        self.cancel_idle_timer(ctx);
        self.connection = Some(Connection {
            id: connection_id,
            sink: SinkWrite::new(socket, ctx),
            last_heard: Instant::now(),
        });
        self.send_to_socket(&ServerFrame::Session {
            session_id: self.id,
        });
        if let Some(asked) = unknown_id {
            let text = format!("no live session {asked}; this is a new session");
            self.send_to_socket(&ServerFrame::error(None, ErrorCode::NotFound, text));
        }
    }

    /// Pings the client, or lets it go when it stopped answering.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(connection) = &mut self.connection else {
            return;
        };
        if connection.last_heard.elapsed() > self.deps.limits.client_timeout {
            tracing::debug!(session_id = %self.id, "client stopped answering pings");
            let connection_id = connection.id;
            let _ = connection.sink.write(actix_ws::Message::Close(None));
            self.detach(connection_id, ctx);
        } else {
            let _ = connection
                .sink
                .write(actix_ws::Message::Ping(Default::default()));
        }
    }

    /// The socket `connection_id` went away: its turns stop (the model too), and the
    /// session waits `idle_timeout` for the client to come back.
    fn detach(&mut self, connection_id: u64, ctx: &mut Context<Self>) {
        let Some(connection) = self.connection.take_if(|c| c.id == connection_id) else {
            return; // an older connection that was already replaced
        };
        let mut sink = connection.sink;
        sink.close();
        self.queued.retain(|turn| turn.listener.is_some());
        if self
            .running
            .as_ref()
            .is_some_and(|turn| turn.listener.is_none())
        {
            self.cancel_running_turn(ctx);
        }
        self.arm_idle_timer(ctx);
    }

    fn on_socket_frame(
        &mut self,
        item: Result<AggregatedMessage, ProtocolError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(connection) = &mut self.connection else {
            return;
        };
        connection.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_client_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => self.send_to_socket(&ServerFrame::error(
                None,
                ErrorCode::BadRequest,
                "frames must be JSON text, not binary",
            )),
            Ok(AggregatedMessage::Ping(payload)) => {
                let _ = connection.sink.write(actix_ws::Message::Pong(payload));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => {
                let connection_id = connection.id;
                let _ = connection.sink.write(actix_ws::Message::Close(None));
                self.detach(connection_id, ctx);
            }
            Err(error) => {
                // Frames beyond the codec's hard limit, or broken framing: the
                // stream cannot continue, so say why before it closes.
                tracing::debug!(session_id = %self.id, %error, "WebSocket protocol error");
                let reason = match error {
                    ProtocolError::Overflow => CloseReason {
                        code: CloseCode::Size,
                        description: Some("frame too large".into()),
                    },
                    _ => CloseReason {
                        code: CloseCode::Protocol,
                        description: None,
                    },
                };
                let connection_id = connection.id;
                let _ = connection
                    .sink
                    .write(actix_ws::Message::Close(Some(reason)));
                self.detach(connection_id, ctx);
            }
        }
    }

    fn on_socket_input(&mut self, input: SocketInput, ctx: &mut Context<Self>) {
        match input {
            SocketInput::Frame {
                connection_id,
                item,
            } => {
                if self
                    .connection
                    .as_ref()
                    .is_some_and(|c| c.id == connection_id)
                {
                    self.on_socket_frame(item, ctx);
                }
            }
            SocketInput::Closed { connection_id } => self.detach(connection_id, ctx),
        }
    }

    fn on_client_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let limit = self.deps.limits.max_message_bytes;
        if text.len() > limit {
            let message = format!("frame of {} bytes exceeds the limit of {limit}", text.len());
            self.send_to_socket(&ServerFrame::error(None, ErrorCode::TooLarge, message));
            return;
        }
        match parse_client_frame(text) {
            Ok(ClientFrame::Message { text }) => {
                if let Err((code, message)) = self.queue_turn(text, None, ctx) {
                    self.send_to_socket(&ServerFrame::error(None, code, message));
                }
            }
            Ok(ClientFrame::Cancel) => {
                if self.running.is_some() {
                    self.cancel_running_turn(ctx);
                } else {
                    let message = "no turn is running";
                    self.send_to_socket(&ServerFrame::error(None, ErrorCode::NotFound, message));
                }
            }
            Ok(ClientFrame::Ping) => self.send_to_socket(&ServerFrame::Pong),
            Err(message) => {
                self.send_to_socket(&ServerFrame::error(None, ErrorCode::BadRequest, message))
            }
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        bump(&self.deps.counters.sessions_created);
        // The registry's mailbox is large and registration must not wait: a client may
        // re-attach as soon as it has read the session id.
        self.deps.registry.do_send(Register {
            session_id: self.id,
            session: ctx.address(),
        });
        self.arm_idle_timer(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Only an idle session stops on its own; at shutdown a turn may still run.
        if let Some(turn) = self.running.take() {
            let turn_id = turn.turn_id;
            self.deps.broker.do_send(ForgetTurn {
                turn_id,
                cancel: true,
            });
            if let Some(listener) = turn.listener {
                let finish_reason = FinishReason::Cancelled;
                let _ = listener.send(ServerFrame::Done {
                    turn_id,
                    finish_reason,
                });
            }
        }
        self.deps.registry.do_send(Unregister {
            session_id: self.id,
        });
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
}

impl Handler<Attach> for SessionActor {
    type Result = ();

    fn handle(&mut self, message: Attach, ctx: &mut Self::Context) {
        self.attach(message.socket, message.connection_id, None, ctx);
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

/// The process is stopping: close the socket (`1001 going away`). Turns still
/// running were given their grace period already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GoingAway;

impl Handler<GoingAway> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: GoingAway, ctx: &mut Self::Context) {
        let Some(connection) = &mut self.connection else {
            return;
        };
        let reason = CloseReason {
            code: CloseCode::Away,
            description: Some("parlor is shutting down".into()),
        };
        let _ = connection
            .sink
            .write(actix_ws::Message::Close(Some(reason)));
        let connection_id = connection.id;
        self.detach(connection_id, ctx);
    }
}

/// Start a turn whose frames go to `listener` (`POST /chat`); answers the turn id,
/// or the error code and message it was refused with.
#[derive(Message)]
#[rtype(result = "Result<Uuid, (ErrorCode, String)>")]
pub struct StartTurn {
    pub text: String,
    pub listener: TurnListener,
}

impl Handler<StartTurn> for SessionActor {
    type Result = Result<Uuid, (ErrorCode, String)>;

    fn handle(&mut self, message: StartTurn, ctx: &mut Self::Context) -> Self::Result {
        self.queue_turn(message.text, Some(message.listener), ctx)
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
    pub code: ErrorCode,
    pub message: String,
}

impl Handler<TurnFailed> for SessionActor {
    type Result = ();

    fn handle(&mut self, failure: TurnFailed, ctx: &mut Self::Context) {
        if self
            .running
            .as_ref()
            .is_some_and(|turn| turn.turn_id == failure.turn_id)
        {
            self.end_turn(TurnEnd::Failed(failure.code, failure.message), ctx);
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

impl WriteHandler<actix_ws::Closed> for SessionActor {
    fn error(&mut self, _: actix_ws::Closed, _: &mut Self::Context) -> Running {
        // The socket is gone; its read side reports `Closed` and detaches it.
        Running::Continue
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}
