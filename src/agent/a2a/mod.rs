//! The knowledge agent as an A2A 1.0 agent (docs/a2a.md): messages start tasks,
//! tasks run the agent and publish its answer, and `contextId` is the
//! conversation. The JSON-RPC binding over HTTP is in `http/a2a/`.
//!
//! The protocol objects (`Message`, `Task`, the streaming events, the agent card)
//! are the official Rust types of the A2A project, crate `a2a-lf` (imported as
//! `a2a`): they follow the 1.0 JSON shapes (`ROLE_USER`, `TASK_STATE_WORKING`,
//! parts by field presence) and are tested against them there.

pub mod card;
mod client;
pub mod contexts;
mod run;
pub mod tasks;

use std::sync::Arc;

use a2a::{
    ListTasksRequest, ListTasksResponse, Message, PartContent, Role, SendMessageRequest, Task,
    TaskState, TaskStatus,
};
use chrono::Utc;
use serde::Deserialize;

use self::contexts::Contexts;
use self::run::Memory;
use self::tasks::{TaskCell, TaskStore};
use super::answer_cap::cap_answer;
use super::{Agent, AgentRequest};
use crate::config::AgentConfig;
use crate::conversation::ChatMessage;

pub use client::RemoteAgent;
pub use run::ANSWER_ARTIFACT_ID;

/// Why a request could not be served, as A2A names it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum A2aError {
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("task {id} is {state} and cannot be canceled")]
    NotCancelable { id: String, state: &'static str },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    InvalidParams(String),
    #[error("{0}")]
    ContentTypeNotSupported(String),
}

impl A2aError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        match self {
            A2aError::TaskNotFound(_) => -32001,
            A2aError::NotCancelable { .. } => -32002,
            A2aError::Unsupported(_) => -32004,
            A2aError::InvalidParams(_) => -32602,
            A2aError::ContentTypeNotSupported(_) => -32005,
        }
    }
}

/// The knowledge agent's tasks and conversations.
pub struct A2aAgent {
    agent: Arc<dyn Agent>,
    tasks: TaskStore,
    contexts: Arc<Contexts>,
    max_answer_bytes: usize,
}

/// What a message may carry in its `metadata` for parlor.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Extras {
    /// Stateless mode: the conversation so far, oldest first, instead of what this
    /// agent remembers of the context.
    history: Option<Vec<ChatMessage>>,
    /// The tools the task may use, by name (absent: all; `[]`: none).
    tools: Option<Vec<String>>,
}

impl A2aAgent {
    pub fn new(agent: Arc<dyn Agent>, config: &AgentConfig) -> Self {
        Self {
            agent,
            tasks: TaskStore::default(),
            contexts: Arc::new(Contexts::new(
                config.max_history_messages,
                config.max_history_bytes,
            )),
            max_answer_bytes: config.max_answer_bytes,
        }
    }

    /// Starts a task answering `request`'s message, and answers it at once (it
    /// runs on the current Tokio runtime).
    pub fn start(&self, request: SendMessageRequest) -> Result<Arc<TaskCell>, A2aError> {
        let SendMessageRequest {
            mut message,
            metadata,
            ..
        } = request;
        if message.role == Role::Agent {
            return Err(A2aError::InvalidParams(
                "the message must come from the user (ROLE_USER)".into(),
            ));
        }
        let text = match message_text(&message) {
            Some(text) => text,
            // Files and data are media this agent does not read.
            None if message.parts.iter().any(|part| part.as_text().is_none()) => {
                return Err(A2aError::ContentTypeNotSupported(
                    "this agent reads text parts only; send the question as text".into(),
                ));
            }
            None => {
                return Err(A2aError::InvalidParams(
                    "the message has no text; send the question as a text part".into(),
                ));
            }
        };
        if let Some(task_id) = &message.task_id {
            return Err(match self.tasks.get(task_id) {
                None => A2aError::TaskNotFound(task_id.clone()),
                Some(_) => A2aError::Unsupported(format!(
                    "task {task_id} takes no more messages: this agent never asks for input; \
                     send a new message with the same contextId instead"
                )),
            });
        }
        // The message's metadata, or else the request's.
        let extras = message
            .metadata
            .iter()
            .chain(metadata.iter())
            .find_map(|metadata| {
                let keyed: serde_json::Map<_, _> = metadata.clone().into_iter().collect();
                serde_json::from_value::<Extras>(serde_json::Value::Object(keyed)).ok()
            })
            .unwrap_or_default();
        let context_id = message
            .context_id
            .clone()
            .unwrap_or_else(a2a::new_context_id);
        let task_id = a2a::new_task_id();
        message.context_id = Some(context_id.clone());
        message.task_id = Some(task_id.clone());
        let (history, memory) = match extras.history {
            Some(history) => (history, None),
            None => (
                self.contexts.history(&context_id),
                Some(Memory {
                    contexts: self.contexts.clone(),
                    question: text.clone(),
                }),
            ),
        };
        let task = Task {
            id: task_id,
            context_id: context_id.clone(),
            status: TaskStatus {
                state: TaskState::Submitted,
                message: None,
                timestamp: Some(Utc::now()),
            },
            artifacts: None,
            history: Some(vec![message]),
            metadata: None,
        };
        let cell = self.tasks.insert(task);
        let answer = self.agent.answer(AgentRequest {
            context_id,
            history,
            text,
            tools: extras.tools,
        });
        let answer = cap_answer(answer, self.max_answer_bytes);
        tokio::spawn(run::run(cell.clone(), answer, memory));
        Ok(cell)
    }

    pub fn task(&self, id: &str) -> Result<Arc<TaskCell>, A2aError> {
        self.tasks
            .get(id)
            .ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))
    }

    /// Stops a running task (its model request and tool calls end) and answers it
    /// once it is `canceled`.
    pub async fn cancel(&self, id: &str) -> Result<Task, A2aError> {
        let cell = self.task(id)?;
        let state = cell.state();
        if state.is_terminal() {
            return Err(A2aError::NotCancelable {
                id: id.to_owned(),
                state: state_name(&state),
            });
        }
        cell.cancel.cancel();
        cell.finished().await;
        Ok(cell.snapshot())
    }

    /// Returns once no task is running (new ones may start meanwhile).
    pub async fn all_finished(&self) {
        for task in self.tasks.list(|task| !task.status.state.is_terminal()) {
            if let Some(cell) = self.tasks.get(&task.id) {
                cell.finished().await;
            }
        }
    }

    /// The tasks `request` asks for, newest first.
    pub fn list(&self, request: &ListTasksRequest) -> ListTasksResponse {
        let mut tasks = self.tasks.list(|task| {
            request
                .context_id
                .as_ref()
                .is_none_or(|context| &task.context_id == context)
                && request
                    .status
                    .as_ref()
                    .is_none_or(|state| &task.status.state == state)
        });
        let total_size = tasks.len();
        let page_size = request
            .page_size
            .and_then(|size| usize::try_from(size).ok())
            .filter(|size| *size > 0)
            .unwrap_or(50)
            .min(100);
        let start: usize = request
            .page_token
            .as_deref()
            .and_then(|token| token.parse().ok())
            .unwrap_or(0);
        let end = (start + page_size).min(total_size);
        let mut page: Vec<Task> = tasks.drain(start.min(end)..end).collect();
        for task in &mut page {
            trim_history(task, request.history_length);
            if request.include_artifacts != Some(true) {
                task.artifacts = None;
            }
        }
        ListTasksResponse {
            tasks: page,
            next_page_token: if end < total_size {
                end.to_string()
            } else {
                String::new()
            },
            page_size: i32::try_from(page_size).unwrap_or(i32::MAX),
            total_size: i32::try_from(total_size).unwrap_or(i32::MAX),
        }
    }
}

/// Keeps the newest `length` messages of a task's history (all when `None`).
pub fn trim_history(task: &mut Task, length: Option<i32>) {
    let (Some(length), Some(history)) = (length, task.history.as_mut()) else {
        return;
    };
    let keep = usize::try_from(length).unwrap_or(0);
    let drop = history.len().saturating_sub(keep);
    history.drain(..drop);
}

/// The text parts of `message`, joined; `None` when it has none.
fn message_text(message: &Message) -> Option<String> {
    let texts: Vec<&str> = message
        .parts
        .iter()
        .filter_map(|part| match &part.content {
            PartContent::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let text = texts.join("\n");
    (!text.trim().is_empty()).then_some(text)
}

/// A state as the 1.0 wire writes it.
pub fn state_name(state: &TaskState) -> &'static str {
    match state {
        TaskState::Unspecified => "TASK_STATE_UNSPECIFIED",
        TaskState::Submitted => "TASK_STATE_SUBMITTED",
        TaskState::Working => "TASK_STATE_WORKING",
        TaskState::Completed => "TASK_STATE_COMPLETED",
        TaskState::Failed => "TASK_STATE_FAILED",
        TaskState::Canceled => "TASK_STATE_CANCELED",
        TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
        TaskState::Rejected => "TASK_STATE_REJECTED",
        TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
    }
}
