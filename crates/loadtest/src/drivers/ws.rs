//! `--mode ws`: a session is one WebSocket connection to `GET /ws` (docs/protocol.md).

use std::borrow::Cow;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use super::{TurnFailure, io_code};
use crate::probe::TurnProbe;

/// A server frame, borrowed from the message text where it can be.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    session_id: Option<&'a str>,
    #[serde(default)]
    turn_id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    finish_reason: Option<&'a str>,
    #[serde(default)]
    code: Option<&'a str>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    /// Always empty: see [`crate::drivers`] on why turns use no tools.
    tools: [&'static str; 0],
}

/// Socket buffers per connection: the defaults (128 KiB each way) would cost a
/// gigabyte or more at ten thousand sessions; frames here are small.
const READ_BUFFER_BYTES: usize = 4096;
/// Largest server frame accepted.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each frame goes out when sent.
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
}

pub struct WsSession {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn transport_failure(error: tungstenite::Error) -> TurnFailure {
    match error {
        tungstenite::Error::Io(io) => TurnFailure::new(io_code(&io, "closed"), io),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            TurnFailure::new("closed", "the server closed the connection")
        }
        other => TurnFailure::new("protocol", other),
    }
}

fn protocol(detail: impl std::fmt::Display) -> TurnFailure {
    TurnFailure::new("protocol", detail)
}

/// Whether a frame's `turn_id` names the turn in flight.
fn is_turn(frame_turn: Option<&str>, in_flight: Option<Uuid>) -> bool {
    match (
        frame_turn.and_then(|id| Uuid::parse_str(id).ok()),
        in_flight,
    ) {
        (Some(id), Some(current)) => id == current,
        _ => false,
    }
}

impl WsSession {
    /// Connects (with `token` as a bearer token, if given) and reads the `session`
    /// frame that always comes first.
    pub async fn open(url: &str, token: Option<&str>) -> Result<WsSession, TurnFailure> {
        let mut request = url
            .into_client_request()
            .map_err(|error| TurnFailure::new("connect", error))?;
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                TurnFailure::new("connect", "the token is not a valid header value")
            })?;
            request.headers_mut().insert("Authorization", value);
        }
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), true)
                .await
                .map_err(|error| match error {
                    tungstenite::Error::Io(io) => TurnFailure::new(io_code(&io, "connect"), io),
                    tungstenite::Error::Http(response) => TurnFailure::new(
                        format!("http_{}", response.status().as_u16()),
                        "the WebSocket upgrade was refused",
                    ),
                    other => TurnFailure::new("connect", other),
                })?;
        let mut session = WsSession { socket };
        let text = session.next_text().await?;
        let frame: Frame<'_> = serde_json::from_str(&text)
            .map_err(|e| protocol(format!("not a server frame: {e}: {text}")))?;
        match (frame.kind, frame.session_id.map(Uuid::parse_str)) {
            ("session", Some(Ok(_))) => Ok(session),
            _ => Err(protocol(format!(
                "the first frame is not `session`: {text}"
            ))),
        }
    }

    /// The next text message (control frames are answered and skipped).
    async fn next_text(&mut self) -> Result<tungstenite::Utf8Bytes, TurnFailure> {
        loop {
            match self.socket.next().await {
                None => return Err(TurnFailure::new("closed", "the connection ended")),
                Some(Err(error)) => return Err(transport_failure(error)),
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(_))) => {
                    return Err(TurnFailure::new(
                        "closed",
                        "the server closed the connection",
                    ));
                }
                Some(Ok(Message::Binary(_))) => return Err(protocol("a binary message")),
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn turn(&mut self, text: &str, probe: &mut TurnProbe) -> Result<(), TurnFailure> {
        let frame = MessageFrame {
            kind: "message",
            text,
            tools: [],
        };
        let frame = serde_json::to_string(&frame).map_err(|e| TurnFailure::new("internal", e))?;
        self.socket
            .send(Message::text(frame))
            .await
            .map_err(transport_failure)?;

        let mut turn_id: Option<Uuid> = None;
        let mut next_seq = 0u64;
        loop {
            let message = self.next_text().await?;
            let frame: Frame<'_> = serde_json::from_str(&message)
                .map_err(|e| protocol(format!("not a server frame: {e}: {message}")))?;
            let ours = is_turn(frame.turn_id, turn_id);
            match frame.kind {
                "accepted" if turn_id.is_none() => {
                    let id = frame.turn_id.and_then(|id| Uuid::parse_str(id).ok());
                    turn_id = Some(id.ok_or_else(|| protocol("`accepted` without a turn id"))?);
                }
                "accepted" => return Err(protocol("a second `accepted` for one message")),
                "chunk" | "reset" | "done" if !ours => probe.stray_chunk(),
                "chunk" => {
                    if frame.seq != Some(next_seq) {
                        return Err(TurnFailure::new(
                            "seq",
                            format!("chunk seq {:?} where {next_seq} was due", frame.seq),
                        ));
                    }
                    next_seq += 1;
                    probe.chunk(frame.text.as_deref().unwrap_or_default());
                }
                "reset" => {
                    probe.reset();
                    next_seq = 0;
                }
                "done" => {
                    return match frame.finish_reason {
                        Some("stop") => Ok(()),
                        Some(other) => Err(TurnFailure::new(
                            format!("finish_{other}"),
                            "the turn did not end with `stop`",
                        )),
                        None => Err(protocol("`done` without finish_reason")),
                    };
                }
                // Before `accepted`, an error is the answer to our message
                // (refused: `busy`, `bad_request`...), whatever turn id it names.
                "error" if frame.turn_id.is_some() && turn_id.is_some() && !ours => {
                    probe.stray_chunk()
                }
                "error" => {
                    let code = frame.code.unwrap_or("error").to_owned();
                    return Err(TurnFailure::new(code, frame.message.unwrap_or_default()));
                }
                // A turn's tool steps, references and reasoning are not answer text.
                "tool" | "references" | "reasoning" => {}
                "pong" => {}
                other => return Err(protocol(format!("unexpected `{other}` frame in a turn"))),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
