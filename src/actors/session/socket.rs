//! How the session actor serves its WebSocket: attaching one (and sending the one
//! it replaces away), reading what the client sends through
//! [`connection::read`], pinging it, and letting it go. The socket itself is a
//! [`Connection`].

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};

use super::connection::{self, ClientBehind, Connection, Goodbye, Received, SocketWritten};
use super::reassembly::Passed;
use super::{SessionActor, SocketInput};
use crate::conversation::{ErrorCode, Role, UserMessage};
use crate::protocol::{ClientFrame, HistoryEntry, ServerFrame};

impl SessionActor {
    /// Attaches `socket`: its first frame is `session`. A client coming back
    /// (`returning`) is then shown where the conversation stands: `history`, and
    /// the running turn from its start (`accepted`, then every chunk and event so
    /// far), after which the turn goes on live.
    pub(super) fn attach(
        &mut self,
        socket: actix_ws::Session,
        connection_id: u64,
        arrival: Arrival,
        ctx: &mut Context<Self>,
    ) {
        if let Some(old) = self.connection.take() {
            old.close(Goodbye::Replaced);
        }
        self.cancel_idle_timer(ctx);
        let max_unsent_bytes = self.deps.limits.max_unsent_bytes;
        self.connection = Some(Connection::open(
            connection_id,
            socket,
            max_unsent_bytes,
            ctx,
        ));
        self.send_to_socket(&ServerFrame::Session {
            session_id: self.id,
        });
        match arrival {
            Arrival::New => {}
            Arrival::Unknown(asked) => {
                let text = format!("no live session {}; this is a new session", shown(&asked));
                self.send_to_socket(&ServerFrame::error(None, ErrorCode::NotFound, text));
            }
            Arrival::Returning => self.show_where_it_stands(),
        }
    }

    /// `history` (the questions of the running and waiting turns last), then the
    /// running turn so far, then an `accepted` for each turn waiting.
    fn show_where_it_stands(&mut self) {
        let mut messages = self.history.entries();
        let unfinished = self
            .turns
            .running()
            .map(|turn| (turn.turn_id, turn.message.text.as_str()));
        messages.extend(unfinished.into_iter().chain(self.turns.waiting()).map(
            |(turn_id, question)| HistoryEntry {
                role: Role::User,
                content: question.to_owned(),
                turn_id: Some(turn_id),
            },
        ));
        self.send_to_socket(&ServerFrame::History { messages });
        let waiting: Vec<ServerFrame> = (self.turns.waiting())
            .map(|(turn_id, _)| ServerFrame::Accepted { turn_id })
            .collect();
        let Some(turn) = self.turns.running() else {
            return;
        };
        let turn_id = turn.turn_id;
        let mut frames = vec![ServerFrame::Accepted { turn_id }];
        let mut seq = 0;
        for passed in turn.reassembly.passed() {
            frames.push(match passed {
                Passed::Chunk(text) => {
                    seq += 1;
                    ServerFrame::Chunk {
                        turn_id,
                        seq: seq - 1,
                        text: text.clone(),
                    }
                }
                Passed::Event(event) => ServerFrame::event(turn_id, event.clone()),
            });
        }
        frames.extend(waiting);
        for frame in &frames {
            self.send_to_socket(frame);
        }
    }

    /// Sends a frame to the attached WebSocket, if any. (A client too far behind
    /// takes no more frames; [`ClientBehind`] lets it go.)
    pub(super) fn send_to_socket(&mut self, frame: &ServerFrame) {
        if let Some(connection) = &mut self.connection {
            connection.send(frame);
        }
    }

    /// Pings the client, or lets it go when it stopped answering.
    pub(super) fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(connection) = &mut self.connection else {
            return;
        };
        if !connection.ping_if_alive(self.deps.limits.client_timeout) {
            tracing::debug!(session_id = %self.id, "client stopped answering pings");
            self.say_goodbye(Goodbye::Unresponsive, ctx);
        }
    }

    pub(super) fn on_socket_input(&mut self, input: SocketInput, ctx: &mut Context<Self>) {
        match input {
            SocketInput::Frame {
                connection_id,
                item,
            } => {
                if self
                    .connection
                    .as_ref()
                    .is_some_and(|c| c.id() == connection_id)
                {
                    self.on_socket_frame(item, ctx);
                }
            }
            SocketInput::Closed { connection_id } => {
                // Its client is gone already: nothing to say to it.
                if let Some(connection) = self.connection.take_if(|c| c.id() == connection_id) {
                    connection.drop_socket();
                    self.connection_left(ctx);
                }
            }
        }
    }

    fn on_socket_frame(
        &mut self,
        item: Result<AggregatedMessage, ProtocolError>,
        ctx: &mut Context<Self>,
    ) {
        if let Err(error) = &item {
            // The stream cannot continue; the close frame says why.
            tracing::debug!(session_id = %self.id, %error, "WebSocket protocol error");
        }
        let limit = self.deps.limits.max_message_bytes;
        let Some(connection) = &mut self.connection else {
            return;
        };
        connection.heard();
        match connection::read(item, limit) {
            Received::Request(frame) => self.on_request(frame, ctx),
            Received::Invalid(error) => connection.send(&error),
            Received::Ping(payload) => connection.pong(payload),
            Received::Pong => {}
            Received::Leaving(goodbye) => self.say_goodbye(goodbye, ctx),
        }
    }

    fn on_request(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        match frame {
            ClientFrame::Message { text, tools } => {
                if let Err(refusal) = self.queue_turn(UserMessage { text, tools }, None, ctx) {
                    self.send_to_socket(&ServerFrame::failed(None, refusal));
                }
            }
            ClientFrame::Cancel => {
                if self.turns.running().is_some() {
                    self.cancel_running_turn(ctx);
                } else {
                    let message = "no turn is running";
                    self.send_to_socket(&ServerFrame::error(None, ErrorCode::NotFound, message));
                }
            }
            ClientFrame::Ping => self.send_to_socket(&ServerFrame::Pong),
        }
    }

    /// Closes the attached socket for `goodbye`.
    pub(super) fn say_goodbye(&mut self, goodbye: Goodbye, ctx: &mut Context<Self>) {
        if let Some(connection) = self.connection.take() {
            connection.close(goodbye);
            self.connection_left(ctx);
        }
    }

    /// The socket went away. Its turns go on and join the history, for the client
    /// to find when it comes back — unless `session.cancel_on_disconnect`: then the
    /// turns only it watched stop (the model too). The session waits
    /// `idle_timeout` after its last turn for the client to come back.
    fn connection_left(&mut self, ctx: &mut Context<Self>) {
        if self.deps.limits.cancel_on_disconnect {
            let dropped = self.turns.drop_waiting_without_listener();
            self.record_dropped(dropped);
            if self
                .turns
                .running()
                .is_some_and(|turn| turn.listener.is_none())
            {
                self.cancel_running_turn(ctx);
            }
        }
        self.arm_idle_timer(ctx);
    }
}

impl Handler<ClientBehind> for SessionActor {
    type Result = ();

    /// The client does not read its frames: it is let go (docs/security.md). Its
    /// session goes on as if it had left, and shows the frames it missed when it
    /// comes back.
    fn handle(&mut self, behind: ClientBehind, ctx: &mut Self::Context) {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.id() == behind.connection_id)
        {
            tracing::info!(session_id = %self.id, "the client does not read; letting it go");
            self.say_goodbye(Goodbye::NotReading, ctx);
        }
    }
}

impl Handler<SocketWritten> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: SocketWritten, ctx: &mut Self::Context) {
        // A socket's writer stopped (its close frame is out, or its client is
        // gone); a session given away can go.
        if self.leaving {
            ctx.stop();
        }
    }
}

/// A session id a client asked for, as the `not_found` error repeats it: as it
/// was, if it could be one; a client's arbitrary text is not echoed back.
fn shown(asked: &str) -> &str {
    const LONGEST_SHOWN: usize = 64;
    let plausible = asked.len() <= LONGEST_SHOWN && asked.chars().all(|c| c.is_ascii_graphic());
    if plausible { asked } else { "with that id" }
}

/// How a client came to a session's socket.
pub enum Arrival {
    /// It started a new session.
    New,
    /// It asked for this session id, which is not known: it got a new session.
    Unknown(String),
    /// It came back to this live session.
    Returning,
}
