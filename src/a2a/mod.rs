//! An A2A 1.0 server's tasks (docs/a2a.md), independent of what does the work:
//! messages start tasks or resume those waiting for input, an [`Executor`] runs
//! each message and publishes its progress through a [`TaskUpdater`], and the
//! [`A2aServer`] keeps the tasks for `GetTask`, `ListTasks`, `CancelTask` and
//! the streams. The JSON-RPC binding over HTTP is in `http::a2a`; the knowledge
//! agent's executor is in `agent::a2a`, and `examples/tck_agent.rs` runs the
//! conformance suite's scenarios on the same server.
//!
//! The protocol objects (`Message`, `Task`, the streaming events, the agent card)
//! are the official Rust types of the A2A project, crate `a2a-lf` (imported as
//! `a2a`): they follow the 1.0 JSON shapes (`ROLE_USER`, `TASK_STATE_WORKING`,
//! parts by field presence) and are tested against them there.

mod server;
pub mod tasks;
mod updater;

use std::collections::HashMap;

use a2a::{Message, Task, TaskState};
use futures_util::future::BoxFuture;

pub use server::{A2aServer, Limits};
pub use updater::TaskUpdater;

/// What runs the messages of an A2A server's tasks.
pub trait Executor: Send + Sync + 'static {
    /// Refuses, before any task exists, a message this executor cannot run.
    fn check(&self, message: &Message) -> Result<(), A2aError>;

    /// Runs `work`, publishing through `updater` until the task ends, waits for
    /// input, or is answered with a message. When the task is canceled the future
    /// is dropped (stopping whatever it awaits) and the server marks it canceled.
    fn execute(&self, work: Work, updater: TaskUpdater) -> BoxFuture<'static, ()>;
}

/// One message for an executor to run.
pub struct Work {
    /// The message, with its task's `taskId` and `contextId` set.
    pub message: Message,
    /// The request's `metadata` (the message's own is in `message`).
    pub metadata: Option<HashMap<String, serde_json::Value>>,
    /// The user the task belongs to (`None`: authentication is off).
    pub owner: Option<String>,
}

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
    /// The server takes no new task now (it is at its limit, or stopping).
    #[error("{0}")]
    Unavailable(String),
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
            A2aError::Unavailable(_) => -32603,
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
