//! The WebSocket attached to a session: writing to it, knowing whether its client
//! is still there, reading what the client sent, and saying goodbye with the right
//! close code. The wire protocol is in `docs/protocol.md`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::error::PayloadError;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Message, ProtocolError};
use bytes::Bytes;

use super::SessionActor;
use super::outbox::{Behind, Outbox};
use crate::conversation::ErrorCode;
use crate::protocol::{ClientFrame, ServerFrame, parse_client_frame};

/// One attached socket.
pub struct Connection {
    /// Tells this connection's input from that of one it replaced.
    id: u64,
    outbox: Outbox,
    liveness: Liveness,
    session: Addr<SessionActor>,
    /// The client fell behind: no frame is sent any more, so none goes missing
    /// between others.
    behind: bool,
}

/// The client of connection `connection_id` fell more than the outbox's limit
/// behind.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientBehind {
    pub connection_id: u64,
}

/// The writer of a session's socket has stopped: its close frame is out, or its
/// client is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SocketWritten;

impl Connection {
    /// Attaches `socket`; frames beyond `max_unsent_bytes` waiting for the client
    /// make it [`Behind`].
    pub fn open(
        id: u64,
        socket: actix_ws::Session,
        max_unsent_bytes: usize,
        ctx: &mut Context<SessionActor>,
    ) -> Self {
        let session = ctx.address();
        let writer_of = session.clone();
        Self {
            id,
            outbox: Outbox::open(socket, max_unsent_bytes, move || {
                writer_of.do_send(SocketWritten)
            }),
            liveness: Liveness::new(Instant::now()),
            session,
            behind: false,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn send(&mut self, frame: &ServerFrame) {
        self.push(Message::Text(frame.to_json().into()));
    }

    /// Answers a WebSocket ping.
    pub fn pong(&mut self, payload: Bytes) {
        self.push(Message::Pong(payload));
    }

    fn push(&mut self, message: Message) {
        if self.behind {
            return;
        }
        if let Err(Behind) = self.outbox.push(message) {
            self.behind = true;
            self.session.do_send(ClientBehind {
                connection_id: self.id,
            });
        }
    }

    /// The client was heard from just now.
    pub fn heard(&mut self) {
        self.liveness.heard(Instant::now());
    }

    /// Pings the client; answers whether it is still there (it answered within
    /// `client_timeout`), without pinging one that is not.
    pub fn ping_if_alive(&mut self, client_timeout: Duration) -> bool {
        if self.liveness.is_silent(Instant::now(), client_timeout) {
            return false;
        }
        self.push(Message::Ping(Bytes::new()));
        true
    }

    /// Sends the close frame for `goodbye` and lets the socket go. A client that
    /// does not read loses the frames it has not taken: it finds them again when
    /// it comes back.
    pub fn close(self, goodbye: Goodbye) {
        match goodbye {
            Goodbye::NotReading => self.outbox.abandon(goodbye.reason()),
            _ => self.outbox.close(goodbye.reason()),
        }
    }

    /// Lets the socket go without a word (its client closed it already).
    pub fn drop_socket(self) {}
}

/// When the client was last heard from (any frame counts, pongs included).
#[derive(Debug)]
pub struct Liveness {
    last_heard: Instant,
}

impl Liveness {
    pub fn new(now: Instant) -> Self {
        Self { last_heard: now }
    }

    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Whether the client has said nothing for longer than `timeout` at `now`.
    pub fn is_silent(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_heard) > timeout
    }
}

/// Why a connection ends, which decides its close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goodbye {
    /// The client closed the connection: echo its close.
    ClientClosed,
    /// The client stopped answering pings.
    Unresponsive,
    /// Another connection took the session over.
    Replaced,
    /// The client does not read its frames: more than `session.max_unsent_bytes`
    /// wait for it.
    NotReading,
    /// The process is stopping.
    GoingAway,
    /// A frame (or a message in continuation frames) beyond the hard size limit.
    Oversized,
    /// A text frame that is not UTF-8.
    NotUtf8,
    /// The framing broke otherwise.
    BadFraming,
}

impl Goodbye {
    pub fn reason(self) -> Option<CloseReason> {
        let (code, description) = match self {
            Goodbye::ClientClosed | Goodbye::Unresponsive => return None,
            Goodbye::Replaced => (
                CloseCode::Policy,
                Some("the session was attached to another connection"),
            ),
            Goodbye::NotReading => (
                CloseCode::Policy,
                Some("the client does not read its frames"),
            ),
            Goodbye::GoingAway => (CloseCode::Away, Some("parlor is shutting down")),
            Goodbye::Oversized => (CloseCode::Size, Some("frame too large")),
            Goodbye::NotUtf8 => (CloseCode::Invalid, Some("text frames must be UTF-8")),
            Goodbye::BadFraming => (CloseCode::Protocol, None),
        };
        Some(CloseReason {
            code,
            description: description.map(Into::into),
        })
    }
}

/// What a frame from the client asks for.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A frame of the chat protocol.
    Request(ClientFrame),
    /// Not a valid frame: answer with this error; the connection stays.
    Invalid(ServerFrame),
    /// A WebSocket ping, to answer with a pong of the same payload.
    Ping(Bytes),
    /// A WebSocket pong: the client is there, nothing more.
    Pong,
    /// The connection ends.
    Leaving(Goodbye),
}

/// Reads one item of the socket's stream; text longer than `max_message_bytes` is
/// refused with `too_large` (the stream's own, larger limit broke the framing).
pub fn read(item: Result<AggregatedMessage, ProtocolError>, max_message_bytes: usize) -> Received {
    match item {
        Ok(AggregatedMessage::Text(text)) => read_text(&text, max_message_bytes),
        Ok(AggregatedMessage::Binary(_)) => Received::Invalid(ServerFrame::error(
            None,
            ErrorCode::BadRequest,
            "frames must be JSON text, not binary",
        )),
        Ok(AggregatedMessage::Ping(payload)) => Received::Ping(payload),
        Ok(AggregatedMessage::Pong(_)) => Received::Pong,
        Ok(AggregatedMessage::Close(_)) => Received::Leaving(Goodbye::ClientClosed),
        Err(error) => Received::Leaving(goodbye_for(&error)),
    }
}

/// How a broken stream closes (RFC 6455, section 7.4.1): 1009 for a frame or
/// message too big, 1007 for text that is not UTF-8, 1002 otherwise.
fn goodbye_for(error: &ProtocolError) -> Goodbye {
    match error {
        ProtocolError::Overflow => Goodbye::Oversized,
        // actix-ws reports both as I/O errors: bad UTF-8 as `InvalidData`, a message
        // beyond `max_continuation_size` by its text.
        ProtocolError::Io(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            Goodbye::NotUtf8
        }
        ProtocolError::Io(error) if error.to_string().contains("maximum continuation size") => {
            Goodbye::Oversized
        }
        // A frame whose header claims too much, refused by the frame guard
        // (crate::http::frame_guard) before its payload is read.
        ProtocolError::Io(error)
            if matches!(
                error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<PayloadError>()),
                Some(PayloadError::Overflow)
            ) =>
        {
            Goodbye::Oversized
        }
        _ => Goodbye::BadFraming,
    }
}

fn read_text(text: &str, limit: usize) -> Received {
    if text.len() > limit {
        let message = format!("frame of {} bytes exceeds the limit of {limit}", text.len());
        return Received::Invalid(ServerFrame::error(None, ErrorCode::TooLarge, message));
    }
    match parse_client_frame(text) {
        Ok(frame) => Received::Request(frame),
        Err(message) => Received::Invalid(ServerFrame::error(None, ErrorCode::BadRequest, message)),
    }
}

#[cfg(test)]
mod tests;
