//! The WebSocket chat protocol (docs/protocol.md#websocket-chat): JSON text frames in both directions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::conversation::{
    ChatError, ErrorCode, FinishReason, Role, SourceReferences, ToolActivity, TurnEvent,
};

/// A frame the client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Starts a turn (queued behind a running one).
    Message {
        text: String,
        /// The tools the turn may use: absent, all; `[]`, none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Vec<String>>,
    },
    /// Cancels the running turn.
    Cancel,
    Ping,
}

/// A frame the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Always the first frame of a connection.
    Session {
        session_id: Uuid,
    },
    /// The session's latest messages, sent when a client re-attaches.
    History {
        messages: Vec<HistoryEntry>,
    },
    Accepted {
        turn_id: Uuid,
    },
    Chunk {
        turn_id: Uuid,
        seq: u64,
        text: String,
    },
    /// A tool call of the turn started or ended.
    Tool {
        turn_id: Uuid,
        #[serde(flatten)]
        activity: ToolActivity,
    },
    /// The passages the turn's tools found.
    References {
        turn_id: Uuid,
        sources: Vec<SourceReferences>,
    },
    /// A piece of a reasoning model's thinking.
    Reasoning {
        turn_id: Uuid,
        text: String,
    },
    /// The turn restarted elsewhere: discard its chunks and events so far.
    Reset {
        turn_id: Uuid,
        reason: String,
    },
    Done {
        turn_id: Uuid,
        finish_reason: FinishReason,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turn_id: Option<Uuid>,
        #[serde(flatten)]
        error: ChatError,
    },
    Pong,
}

/// One message of a `history` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub role: Role,
    pub content: String,
    /// The turn it belongs to; absent for a conversation a client brought along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<Uuid>,
}

impl ServerFrame {
    pub fn error(turn_id: Option<Uuid>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::failed(turn_id, ChatError::new(code, message))
    }

    pub fn failed(turn_id: Option<Uuid>, error: ChatError) -> Self {
        ServerFrame::Error { turn_id, error }
    }

    /// The frame of one of turn `turn_id`'s events.
    pub fn event(turn_id: Uuid, event: TurnEvent) -> Self {
        match event {
            TurnEvent::Tool(activity) => ServerFrame::Tool { turn_id, activity },
            TurnEvent::References { sources } => ServerFrame::References { turn_id, sources },
            TurnEvent::Reasoning { text } => ServerFrame::Reasoning { turn_id, text },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// Reads a client's text frame, or says why it is not one.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, String> {
    let frame: ClientFrame = serde_json::from_str(text).map_err(|e| {
        format!("not a valid frame: {e} (expected {{\"type\":\"message\"|\"cancel\"|\"ping\"}})")
    })?;
    if let ClientFrame::Message { text, .. } = &frame
        && text.trim().is_empty()
    {
        return Err("a message needs non-empty \"text\"".into());
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_contract_shape() {
        let id = Uuid::nil();
        let chunk = ServerFrame::Chunk {
            turn_id: id,
            seq: 3,
            text: "hi ".into(),
        };
        assert_eq!(
            chunk.to_json(),
            format!(r#"{{"type":"chunk","turn_id":"{id}","seq":3,"text":"hi "}}"#)
        );
        let done = ServerFrame::Done {
            turn_id: id,
            finish_reason: FinishReason::Cancelled,
        };
        assert_eq!(
            done.to_json(),
            format!(r#"{{"type":"done","turn_id":"{id}","finish_reason":"cancelled"}}"#)
        );
        let error = ServerFrame::error(None, ErrorCode::TooLarge, "big");
        assert_eq!(
            error.to_json(),
            r#"{"type":"error","code":"too_large","message":"big"}"#
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
    }

    #[test]
    fn client_frames_are_checked() {
        assert_eq!(
            parse_client_frame(r#"{"type":"message","text":"hello"}"#),
            Ok(ClientFrame::Message {
                text: "hello".into(),
                tools: None,
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"message","text":"hi","tools":[]}"#),
            Ok(ClientFrame::Message {
                text: "hi".into(),
                tools: Some(Vec::new()),
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"cancel"}"#),
            Ok(ClientFrame::Cancel)
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert!(parse_client_frame(r#"{"type":"message","text":"  "}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"message"}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"shout"}"#).is_err());
        assert!(parse_client_frame("not json").is_err());
    }
}
