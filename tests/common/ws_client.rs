//! A WebSocket chat client that speaks the protocol (docs/protocol.md) the way a
//! user's program would, and collects what each turn sends back.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parlor::conversation::ChatError;
use parlor::protocol::ServerFrame;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use super::{Process, WAIT};

/// A WebSocket chat client.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session_id: Uuid,
}

/// One finished turn as the client saw it.
#[derive(Debug)]
pub struct Turn {
    pub turn_id: Uuid,
    pub answer: String,
    pub chunks: usize,
    /// The `done` frame's finish reason, or the `error` frame's code.
    pub ending: String,
    /// The turn's `tool`, `references` and `reasoning` frames, in order.
    pub events: Vec<ServerFrame>,
    /// The `error` frame that ended the turn, if one did.
    pub error: Option<ChatError>,
}

impl Client {
    /// Connects and reads the `session` frame.
    pub async fn connect(server: &Process) -> Client {
        Self::connect_url(&server.ws_url("")).await
    }

    pub async fn connect_url(url: &str) -> Client {
        Self::connect_request(url).await
    }

    /// Connects with a request of its own (headers such as `Authorization`).
    pub async fn connect_request(request: impl IntoClientRequest + Unpin) -> Client {
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self::opened(socket).await
    }

    /// Connects from the local address `from` (any of 127.0.0.0/8 on Linux), as a
    /// client on another machine would: the gateway tells clients apart by address.
    pub async fn connect_from(server: &Process, from: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(format!("{from}:0").parse().expect("an IPv4 address"))
            .expect("bind the local address");
        let stream = socket
            .connect(server.addr.parse().expect("IP:port"))
            .await
            .expect("connect");
        let handshake =
            tokio_tungstenite::client_async(server.ws_url(""), MaybeTlsStream::Plain(stream));
        let (socket, _) = tokio::time::timeout(WAIT, handshake)
            .await
            .expect("handshake timed out")
            .expect("handshake");
        Self::opened(socket).await
    }

    async fn opened(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        let mut client = Client {
            socket,
            session_id: Uuid::nil(),
        };
        match client.next_frame().await {
            ServerFrame::Session { session_id } => client.session_id = session_id,
            other => panic!("first frame must be `session`, got {other:?}"),
        }
        client
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.socket
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_message(&mut self, text: &str) {
        self.send_json(serde_json::json!({ "type": "message", "text": text }))
            .await;
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next JSON frame (WebSocket control frames are skipped).
    pub async fn next_frame(&mut self) -> ServerFrame {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("no frame within the wait")
                .expect("the connection closed")
                .expect("a WebSocket error");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not a server frame: {text}: {e}"));
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Keeps the connection open for `duration`, reading (so pings get their pongs)
    /// and failing on anything but pings.
    pub async fn idle_for(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        while let Ok(message) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            match message {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected only pings while idle, got {other:?}"),
            }
        }
    }

    /// Whether the server closed the connection (within the wait).
    pub async fn closed_by_server(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    /// The code of the close frame the server sends next (frames before it are
    /// skipped); `None` if the connection ended without one, or not within the wait.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Sends `text` and reads its turn to the end, checking `accepted` comes first.
    pub async fn chat(&mut self, text: &str) -> Turn {
        self.send_message(text).await;
        let turn_id = self.expect_accepted().await;
        self.read_turn(turn_id).await
    }

    /// Sends `text` and waits for its `accepted` only.
    pub async fn chat_accepted(&mut self, text: &str) -> Uuid {
        self.send_message(text).await;
        self.expect_accepted().await
    }

    /// Reads the `history` frame a returning client gets first.
    pub async fn expect_history(&mut self) -> Vec<parlor::protocol::HistoryEntry> {
        match self.next_frame().await {
            ServerFrame::History { messages } => messages,
            other => panic!("expected `history`, got {other:?}"),
        }
    }

    pub async fn expect_accepted(&mut self) -> Uuid {
        match self.next_frame().await {
            ServerFrame::Accepted { turn_id } => turn_id,
            other => panic!("expected `accepted`, got {other:?}"),
        }
    }

    /// Reads the frames of `turn_id` until its `done` or `error`, checking that
    /// chunk numbers start at 0 and have no gaps.
    pub async fn read_turn(&mut self, turn_id: Uuid) -> Turn {
        self.read_turn_from(turn_id, 0).await
    }

    /// Like [`Client::read_turn`], when chunks before `first_seq` were already read.
    pub async fn read_turn_from(&mut self, turn_id: Uuid, first_seq: usize) -> Turn {
        let mut answer = String::new();
        let mut chunks = first_seq;
        let mut events = Vec::new();
        loop {
            match self.next_frame().await {
                event @ (ServerFrame::Tool { turn_id: id, .. }
                | ServerFrame::References { turn_id: id, .. }
                | ServerFrame::Reasoning { turn_id: id, .. }) => {
                    assert_eq!(id, turn_id, "an event of another turn");
                    events.push(event);
                }
                ServerFrame::Chunk {
                    turn_id: id,
                    seq,
                    text,
                } => {
                    assert_eq!(id, turn_id, "a chunk of another turn");
                    assert_eq!(seq, chunks as u64, "chunk numbers must have no gaps");
                    answer.push_str(&text);
                    chunks += 1;
                }
                ServerFrame::Done {
                    turn_id: id,
                    finish_reason,
                } => {
                    assert_eq!(id, turn_id);
                    let ending = serde_json::to_value(finish_reason).unwrap();
                    let ending = ending.as_str().unwrap().to_owned();
                    return Turn {
                        turn_id,
                        answer,
                        chunks,
                        ending,
                        events,
                        error: None,
                    };
                }
                ServerFrame::Error { turn_id: id, error } => {
                    assert_eq!(id, Some(turn_id));
                    return Turn {
                        turn_id,
                        answer,
                        chunks,
                        ending: error.code.to_string(),
                        events,
                        error: Some(error),
                    };
                }
                other => panic!("unexpected frame in a turn: {other:?}"),
            }
        }
    }
}
