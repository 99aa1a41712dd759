//! The vocabulary every layer shares: chat messages, how a turn finished, and the
//! error codes of the wire protocol (docs/protocol.md#error-codes). Kept free of actors, routes and queues
//! so the broker, the agent and the HTTP layer can all speak it.

use serde::{Deserialize, Serialize};

/// Who said a message in a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation, in the shape OpenAI-compatible models take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
}

/// Why a turn that did not fail came to an end (the `done` frame's `finish_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The model hit its token limit.
    Length,
    /// The user (or the user's leaving) stopped the turn.
    Cancelled,
}

/// The `code` of an `error` frame (docs/protocol.md#error-codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    TooLarge,
    Busy,
    NotFound,
    /// The broker or the agent cannot be reached.
    Unavailable,
    /// The model answered with an error.
    Upstream,
    Timeout,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Busy => "busy",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Upstream => "upstream",
            ErrorCode::Timeout => "timeout",
        }
    }
}

/// An error as every wire format carries it: a code clients act on and a message
/// for people. The WebSocket `error` frame, the broker's error answer and the
/// `[error]` event of `POST /chat` are all made from one of these, so a failure
/// reads the same wherever it surfaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ChatError {
    pub code: ErrorCode,
    pub message: String,
}

impl ChatError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
