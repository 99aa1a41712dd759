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

    /// An error whose details are for operators, not users: `detail` is logged at
    /// WARN under a new error id, and the user gets `summary` and that id, to quote
    /// when asking for help.
    pub fn reported(code: ErrorCode, summary: &str, detail: &dyn std::fmt::Display) -> Self {
        let mut error_id = uuid::Uuid::new_v4().simple().to_string();
        error_id.truncate(12);
        tracing::warn!(%error_id, %code, %detail, "{summary}");
        Self::new(code, format!("{summary} (error id {error_id})"))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a turn shows besides its answer text: a tool at work, the passages the
/// tools found, or a reasoning model's thinking. Events travel with the answer, in
/// order with its chunks, but never become part of the answer or of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    Tool(ToolActivity),
    References { sources: Vec<SourceReferences> },
    Reasoning { text: String },
}

/// One tool call's progress: reported `working` when it starts, then `done` or
/// `error` with (the start of) its output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolActivity {
    /// The model's id for this call.
    pub call_id: String,
    /// The tool's name, as the model knows it (a knowledge source's id).
    pub name: String,
    /// What people call the tool (a knowledge source's name).
    pub label: String,
    pub status: ToolStatus,
    /// The call's arguments as the model sent them (`{}` when they were not JSON).
    pub arguments: serde_json::Value,
    /// On `done` and `error`: what the tool answered, cut to
    /// [`ToolActivity::MAX_OUTPUT_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl ToolActivity {
    /// The most output a tool event carries; the model gets the whole of it.
    pub const MAX_OUTPUT_BYTES: usize = 4 * 1024;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Working,
    Done,
    Error,
}

/// The passages one knowledge source gave a turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceReferences {
    /// The source's id (its tool's name).
    pub id: String,
    pub name: String,
    pub items: Vec<Reference>,
}

/// One passage a tool found, for the UI to show and the answer to cite (`[^id]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The passage's stable id.
    pub id: String,
    /// The title of the passage's document.
    pub title: String,
    /// The part of the passage that matched the query best.
    pub snippet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The search's score; higher is better, comparable only within one search.
    pub score: f32,
}

/// A user's message as a turn takes it: its text and the tools it may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserMessage {
    pub text: String,
    /// By name: `None` for all the agent has, `[]` for none.
    pub tools: Option<Vec<String>>,
}

impl From<&str> for UserMessage {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            tools: None,
        }
    }
}

/// The tool names a user message may ask for: those of the configured knowledge
/// sources, and `<server>__<tool>` for a configured MCP server (what tools a
/// server has is the server's to say, and it can change; a worker leaves out a
/// name its servers do not offer). A turn naming any other is refused with
/// `bad_request`.
#[derive(Clone, Debug, Default)]
pub struct KnownTools {
    sources: std::sync::Arc<[String]>,
    mcp_servers: std::sync::Arc<[String]>,
}

impl KnownTools {
    pub fn new(sources: impl IntoIterator<Item = String>) -> Self {
        Self {
            sources: sources.into_iter().collect(),
            mcp_servers: std::sync::Arc::default(),
        }
    }

    /// Also knows the tools of the MCP servers named `servers`.
    pub fn with_mcp_servers(self, servers: impl IntoIterator<Item = String>) -> Self {
        Self {
            mcp_servers: servers.into_iter().collect(),
            ..self
        }
    }

    fn knows(&self, name: &str) -> bool {
        self.sources.iter().any(|source| source == name)
            || crate::agent::mcp::names::belongs_to_a_server(
                name,
                self.mcp_servers.iter().map(String::as_str),
            )
    }

    /// Refuses a choice of tools that names one not known here.
    pub fn check(&self, requested: Option<&[String]>) -> Result<(), ChatError> {
        let Some(unknown) = requested
            .unwrap_or_default()
            .iter()
            .find(|name| !self.knows(name))
        else {
            return Ok(());
        };
        let mut known: Vec<String> = self.sources.to_vec();
        known.extend(
            self.mcp_servers
                .iter()
                .map(|server| format!("{server}__<tool>")),
        );
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("unknown tool {unknown:?} (the tools here: {known})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_turn_may_name_sources_and_tools_of_configured_mcp_servers() {
        let known = KnownTools::new(names(&["handbook"])).with_mcp_servers(names(&["tickets"]));
        assert_eq!(known.check(None), Ok(()));
        assert_eq!(known.check(Some(&[])), Ok(()));
        let chosen = names(&["handbook", "tickets__lookup"]);
        assert_eq!(known.check(Some(&chosen)), Ok(()));
        let error = known.check(Some(&names(&["files__read"]))).unwrap_err();
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert_eq!(
            error.message,
            "unknown tool \"files__read\" (the tools here: handbook, tickets__<tool>)"
        );
        let none = KnownTools::default()
            .check(Some(&names(&["x"])))
            .unwrap_err();
        assert!(
            none.message.ends_with("(the tools here: none)"),
            "{}",
            none.message
        );
    }
}
