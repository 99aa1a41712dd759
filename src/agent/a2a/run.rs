//! Running one task: the agent's answer stream turned into the task's state and
//! events — status `working`, the answer text as appended chunks of one artifact,
//! tool activity, references and reasoning as status messages with a data part
//! each, and a terminal status at the end.

use std::sync::Arc;

use a2a::{
    Artifact, Message, Part, Role, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};
use chrono::Utc;
use futures_util::StreamExt;

use super::contexts::Contexts;
use super::tasks::TaskCell;
use crate::agent::{AgentError, AgentEvent, AgentStream};
use crate::conversation::{ChatError, ChatMessage, TurnEvent};

/// The id of the artifact that carries a task's answer.
pub const ANSWER_ARTIFACT_ID: &str = "answer";

/// Where a finished task's exchange is remembered.
pub struct Memory {
    pub contexts: Arc<Contexts>,
    pub question: String,
}

/// Runs `answer` as the task of `cell` until it ends or the task is cancelled.
pub async fn run(cell: Arc<TaskCell>, mut answer: AgentStream, memory: Option<Memory>) {
    set_status(&cell, TaskState::Working, None);
    let mut text = String::new();
    let ending = loop {
        let next = tokio::select! {
            () = cell.cancel.cancelled() => break Ending::Canceled,
            next = answer.next() => next,
        };
        match next {
            Some(Ok(AgentEvent::Text(chunk))) => {
                append_text(&cell, &chunk, text.is_empty());
                text.push_str(&chunk);
            }
            Some(Ok(AgentEvent::Event(event))) => report(&cell, &event),
            Some(Ok(AgentEvent::Finished(_))) => break Ending::Completed,
            Some(Err(error)) => break Ending::Failed(error),
            None => {
                break Ending::Failed(AgentError::Upstream(
                    "the answer ended without finishing".into(),
                ));
            }
        }
    };
    // Dropping the stream stops the model and the tools (on cancel, at once).
    drop(answer);
    match ending {
        Ending::Completed => {
            close_artifact(&cell);
            if let Some(memory) = memory {
                let context_id = cell.snapshot().context_id;
                memory.contexts.remember(
                    &context_id,
                    ChatMessage::user(memory.question),
                    ChatMessage::assistant(text),
                );
            }
            set_status(&cell, TaskState::Completed, None);
        }
        Ending::Canceled => set_status(&cell, TaskState::Canceled, None),
        Ending::Failed(error) => {
            // The user sees a short message with an error id; the log has the rest.
            let reported = ChatError::from(&error);
            set_status(&cell, TaskState::Failed, Some(reported.message));
        }
    }
}

enum Ending {
    Completed,
    Canceled,
    Failed(AgentError),
}

/// An agent message of one text part, or of one data part.
pub fn agent_message(task: &Task, part: Part) -> Message {
    let mut message = Message::new(Role::Agent, vec![part]);
    message.context_id = Some(task.context_id.clone());
    message.task_id = Some(task.id.clone());
    message
}

fn set_status(cell: &TaskCell, state: TaskState, text: Option<String>) {
    cell.publish(|task| {
        let message = text.map(|text| agent_message(task, Part::text(text)));
        task.status = TaskStatus {
            state,
            message,
            timestamp: Some(Utc::now()),
        };
        status_event(task)
    });
}

fn status_event(task: &Task) -> StreamResponse {
    StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: task.id.clone(),
        context_id: task.context_id.clone(),
        status: task.status.clone(),
        metadata: None,
    })
}

/// A tool's activity, the references found or the model's reasoning: a `working`
/// status whose message has one data part, the event as the WebSocket sends it
/// (`{"type":"tool"|"references"|"reasoning",...}`, without `turn_id`).
fn report(cell: &TaskCell, event: &TurnEvent) {
    let Ok(data) = serde_json::to_value(event) else {
        return;
    };
    cell.publish(|task| {
        task.status = TaskStatus {
            state: TaskState::Working,
            message: Some(agent_message(task, Part::data(data))),
            timestamp: Some(Utc::now()),
        };
        status_event(task)
    });
}

fn append_text(cell: &TaskCell, chunk: &str, first: bool) {
    cell.publish(|task| {
        let artifacts = task.artifacts.get_or_insert_with(Vec::new);
        match artifacts.first_mut() {
            Some(answer) => {
                if let Some(Part {
                    content: a2a::PartContent::Text(text),
                    ..
                }) = answer.parts.first_mut()
                {
                    text.push_str(chunk);
                }
            }
            None => artifacts.push(answer_artifact(chunk.to_owned())),
        }
        StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
            task_id: task.id.clone(),
            context_id: task.context_id.clone(),
            artifact: answer_artifact(chunk.to_owned()),
            append: Some(!first),
            last_chunk: Some(false),
            metadata: None,
        })
    });
}

/// The last chunk of the answer: empty, marked `lastChunk` (the answer may also
/// be empty, and then this is its only chunk).
fn close_artifact(cell: &TaskCell) {
    cell.publish(|task| {
        let artifacts = task.artifacts.get_or_insert_with(Vec::new);
        let first = artifacts.is_empty();
        if first {
            artifacts.push(answer_artifact(String::new()));
        }
        StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
            task_id: task.id.clone(),
            context_id: task.context_id.clone(),
            artifact: answer_artifact(String::new()),
            append: Some(!first),
            last_chunk: Some(true),
            metadata: None,
        })
    });
}

fn answer_artifact(text: String) -> Artifact {
    Artifact {
        artifact_id: ANSWER_ARTIFACT_ID.into(),
        name: Some("answer".into()),
        description: None,
        parts: vec![Part::text(text)],
        metadata: None,
        extensions: None,
    }
}
