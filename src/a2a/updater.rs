//! How an executor changes its task: each change updates the task (what
//! `GetTask` answers) and publishes the matching event (what streams carry) in
//! one step.

use std::sync::Arc;

use a2a::{
    Artifact, Message, Part, PartContent, Role, StreamResponse, Task, TaskArtifactUpdateEvent,
    TaskState, TaskStatus, TaskStatusUpdateEvent,
};
use chrono::Utc;

use super::tasks::TaskCell;

/// The handle an executor publishes its task's progress through.
#[derive(Clone)]
pub struct TaskUpdater {
    cell: Arc<TaskCell>,
}

impl TaskUpdater {
    pub(super) fn new(cell: Arc<TaskCell>) -> Self {
        Self { cell }
    }

    /// The task as it is now.
    pub fn snapshot(&self) -> Task {
        self.cell.snapshot()
    }

    /// An agent message in this task, of `parts`.
    pub fn agent_message(&self, parts: Vec<Part>) -> Message {
        let (task_id, context_id) = self.cell.ids();
        let mut message = Message::new(Role::Agent, parts);
        message.context_id = Some(context_id);
        message.task_id = Some(task_id);
        message
    }

    pub fn working(&self, message: Option<Message>) {
        self.set_status(TaskState::Working, message);
    }

    pub fn complete(&self, message: Option<Message>) {
        self.set_status(TaskState::Completed, message);
    }

    pub fn fail(&self, message: Option<Message>) {
        self.set_status(TaskState::Failed, message);
    }

    /// The agent will not do this task; `message` says why.
    pub fn reject(&self, message: Message) {
        self.set_status(TaskState::Rejected, Some(message));
    }

    /// The task waits for the client: a message with its `taskId` resumes it.
    pub fn input_required(&self, message: Option<Message>) {
        self.set_status(TaskState::InputRequired, message);
    }

    /// Moves the task to `state`. The message of the status it leaves goes to the
    /// task's history, so the history holds the whole exchange.
    pub fn set_status(&self, state: TaskState, message: Option<Message>) {
        self.cell.publish(|task| move_to(task, state, message));
    }

    /// Publishes `artifact`: a new artifact (or one replacing the artifact of the
    /// same id), or with `append` more parts of an earlier one. `last_chunk` tells
    /// streaming clients that the artifact is whole.
    pub fn artifact(&self, artifact: Artifact, append: bool, last_chunk: bool) {
        self.cell.publish(|task| {
            let artifacts = task.artifacts.get_or_insert_with(Vec::new);
            let earlier = artifacts
                .iter_mut()
                .find(|kept| kept.artifact_id == artifact.artifact_id);
            match earlier {
                Some(earlier) if append => append_parts(&mut earlier.parts, &artifact.parts),
                Some(earlier) => *earlier = artifact.clone(),
                None => artifacts.push(artifact.clone()),
            }
            StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: task.id.clone(),
                context_id: task.context_id.clone(),
                artifact,
                append: Some(append),
                last_chunk: Some(last_chunk),
                metadata: None,
            })
        });
    }

    /// Answers with `message` instead of a task.
    pub fn reply(&self, message: Message) {
        self.cell.reply(message);
    }
}

/// Moves `task` to `state` with `message`, the message of the status it leaves
/// going to its history; answers the status event.
pub(super) fn move_to(
    task: &mut Task,
    state: TaskState,
    message: Option<Message>,
) -> StreamResponse {
    if let Some(earlier) = task.status.message.take() {
        task.history.get_or_insert_with(Vec::new).push(earlier);
    }
    task.status = TaskStatus {
        state,
        message,
        timestamp: Some(Utc::now()),
    };
    status_event(task)
}

fn status_event(task: &Task) -> StreamResponse {
    StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: task.id.clone(),
        context_id: task.context_id.clone(),
        status: task.status.clone(),
        metadata: None,
    })
}

/// Appends `more` to `parts`. Text that continues text joins its part, so an
/// answer streamed in a thousand chunks is one part when the task is read.
fn append_parts(parts: &mut Vec<Part>, more: &[Part]) {
    for part in more {
        match (parts.last_mut(), &part.content) {
            (
                Some(Part {
                    content: PartContent::Text(text),
                    metadata: None,
                    ..
                }),
                PartContent::Text(chunk),
            ) if part.metadata.is_none() => text.push_str(chunk),
            _ => parts.push(part.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_text_joins_its_part_and_other_parts_stay_apart() {
        let mut parts = vec![Part::text("Hel")];
        append_parts(&mut parts, &[Part::text("lo")]);
        append_parts(&mut parts, &[Part::data(serde_json::json!({"n": 1}))]);
        append_parts(&mut parts, &[Part::text(" there")]);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].as_text(), Some("Hello"));
        assert_eq!(parts[2].as_text(), Some(" there"));
    }
}
