//! The knowledge agent: plain async code that turns a conversation into a stream of
//! answer text. It knows neither actors nor queues, so it can be tested alone, run
//! inside a worker, or served over A2A.

pub mod a2a;
pub mod answer_cap;
pub mod coalesce;
pub mod knowledge;
pub mod llm;
pub mod mcp;
#[cfg(test)]
pub(crate) mod testing;
pub mod tool_loop;
pub mod tools;

use futures_util::stream::BoxStream;

use crate::conversation::{ChatError, ChatMessage, ErrorCode, FinishReason, TurnEvent};

/// One question to the agent: the conversation so far and the new user text.
#[derive(Clone, Debug)]
pub struct AgentRequest {
    /// The conversation this turn belongs to (the session id, or an A2A `contextId`).
    pub context_id: String,
    /// Earlier turns, oldest first, without the new user text.
    pub history: Vec<ChatMessage>,
    /// The new user message.
    pub text: String,
    /// Which tools the turn may use, by name: `None` for all the agent has, `[]` for
    /// none. Names the agent does not have are left out (the gateway has already
    /// refused a turn naming an unknown one).
    pub tools: Option<Vec<String>>,
}

/// What an answer stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// The next piece of answer text (never empty).
    Text(String),
    /// A tool at work, the passages found, or the model's reasoning.
    Event(TurnEvent),
    /// The answer is complete; always the last item of a successful stream.
    Finished(FinishReason),
}

/// Why an answer could not be produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("the model failed: {0}")]
    Upstream(String),
    #[error("the model timed out: {0}")]
    Timeout(String),
    #[error("the agent is unavailable: {0}")]
    Unavailable(String),
}

impl From<&AgentError> for ChatError {
    /// What the user is told: a short message and an error id. The details (the
    /// model's address, what it answered, perhaps a masked key) go to the log only.
    fn from(error: &AgentError) -> Self {
        let (AgentError::Upstream(detail)
        | AgentError::Timeout(detail)
        | AgentError::Unavailable(detail)) = error;
        let summary = match error {
            AgentError::Upstream(_) => "the model failed to answer",
            AgentError::Timeout(_) => "the model took too long to answer",
            AgentError::Unavailable(_) => "the agent is unavailable",
        };
        ChatError::reported(error.code(), summary, detail)
    }
}

impl AgentError {
    /// The wire error code this failure is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            AgentError::Upstream(_) => ErrorCode::Upstream,
            AgentError::Timeout(_) => ErrorCode::Timeout,
            AgentError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// A stream of answer events. Dropping it cancels the answer, including the
/// model's HTTP request.
pub type AgentStream = BoxStream<'static, Result<AgentEvent, AgentError>>;

/// Anything that can answer a turn: the in-process knowledge agent, or (later) a
/// remote A2A agent.
pub trait Agent: Send + Sync + 'static {
    fn answer(&self, request: AgentRequest) -> AgentStream;
}
