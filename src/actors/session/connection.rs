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
mod tests {
    use super::*;
    use crate::conversation::ChatError;

    const LIMIT: usize = 64;

    fn text(text: &str) -> Result<AggregatedMessage, ProtocolError> {
        Ok(AggregatedMessage::Text(text.into()))
    }

    fn error_code(received: Received) -> ErrorCode {
        match received {
            Received::Invalid(ServerFrame::Error {
                turn_id: None,
                error,
            }) => error.code,
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    #[test]
    fn chat_frames_are_requests() {
        assert_eq!(
            read(text(r#"{"type":"message","text":"hi"}"#), LIMIT),
            Received::Request(ClientFrame::Message {
                text: "hi".into(),
                tools: None
            })
        );
        assert_eq!(
            read(text(r#"{"type":"cancel"}"#), LIMIT),
            Received::Request(ClientFrame::Cancel)
        );
        assert_eq!(
            read(text(r#"{"type":"ping"}"#), LIMIT),
            Received::Request(ClientFrame::Ping)
        );
    }

    #[test]
    fn text_beyond_the_limit_is_too_large() {
        let message_of = |len: usize| {
            let padding = len - r#"{"type":"message","text":""}"#.len();
            format!(r#"{{"type":"message","text":"{}"}}"#, "x".repeat(padding))
        };
        assert!(matches!(
            read(text(&message_of(LIMIT)), LIMIT),
            Received::Request(ClientFrame::Message { .. })
        ));
        let Received::Invalid(ServerFrame::Error {
            error: ChatError { code, message },
            ..
        }) = read(text(&message_of(LIMIT + 1)), LIMIT)
        else {
            panic!("an oversized frame must be refused");
        };
        assert_eq!(code, ErrorCode::TooLarge);
        assert!(message.contains(&format!("limit of {LIMIT}")), "{message}");
    }

    #[test]
    fn what_is_not_a_chat_frame_is_a_bad_request() {
        for frame in [
            "not json",
            r#"{"type":"shout"}"#,
            r#"{"type":"message"}"#,
            r#"{"type":"message","text":"  "}"#,
        ] {
            assert_eq!(error_code(read(text(frame), LIMIT)), ErrorCode::BadRequest);
        }
        let binary = Ok(AggregatedMessage::Binary(Bytes::from_static(b"{}")));
        assert_eq!(error_code(read(binary, LIMIT)), ErrorCode::BadRequest);
    }

    #[test]
    fn control_frames_are_told_apart() {
        let payload = Bytes::from_static(b"are you there");
        assert_eq!(
            read(Ok(AggregatedMessage::Ping(payload.clone())), LIMIT),
            Received::Ping(payload)
        );
        assert_eq!(
            read(Ok(AggregatedMessage::Pong(Bytes::new())), LIMIT),
            Received::Pong
        );
        assert_eq!(
            read(Ok(AggregatedMessage::Close(None)), LIMIT),
            Received::Leaving(Goodbye::ClientClosed)
        );
    }

    #[test]
    fn broken_framing_ends_the_connection() {
        assert_eq!(
            read(Err(ProtocolError::Overflow), LIMIT),
            Received::Leaving(Goodbye::Oversized)
        );
        assert_eq!(
            read(Err(ProtocolError::UnmaskedFrame), LIMIT),
            Received::Leaving(Goodbye::BadFraming)
        );
        let io = |kind, text: &str| ProtocolError::Io(std::io::Error::new(kind, text.to_owned()));
        assert_eq!(
            read(Err(io(std::io::ErrorKind::InvalidData, "bad utf-8")), LIMIT),
            Received::Leaving(Goodbye::NotUtf8)
        );
        let too_long = io(
            std::io::ErrorKind::Other,
            "Exceeded maximum continuation size",
        );
        assert_eq!(
            read(Err(too_long), LIMIT),
            Received::Leaving(Goodbye::Oversized)
        );
    }

    #[test]
    fn each_goodbye_has_its_close_code() {
        let code = |goodbye: Goodbye| goodbye.reason().map(|reason| u16::from(reason.code));
        assert_eq!(code(Goodbye::Replaced), Some(1008));
        assert_eq!(code(Goodbye::GoingAway), Some(1001));
        assert_eq!(code(Goodbye::BadFraming), Some(1002));
        assert_eq!(code(Goodbye::Oversized), Some(1009));
        assert_eq!(code(Goodbye::NotUtf8), Some(1007));
        assert_eq!(code(Goodbye::ClientClosed), None);
        assert_eq!(code(Goodbye::Unresponsive), None);
    }

    #[test]
    fn a_client_is_silent_only_after_the_timeout() {
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        let mut liveness = Liveness::new(start);
        assert!(!liveness.is_silent(start + timeout, timeout));
        assert!(liveness.is_silent(start + timeout + Duration::from_millis(1), timeout));

        liveness.heard(start + Duration::from_secs(8));
        assert!(!liveness.is_silent(start + Duration::from_secs(15), timeout));
        assert!(liveness.is_silent(start + Duration::from_secs(19), timeout));
        // A clock reading from before the last frame is no silence.
        assert!(!liveness.is_silent(start, timeout));
    }
}
