//! The tasks of one A2A server: starting and resuming them, running their
//! executor, canceling, finding and listing them, each for its owner only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use a2a::{
    ListTasksRequest, ListTasksResponse, Part, Role, SendMessageRequest, Task, TaskState,
    TaskStatus,
};
use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::tasks::{Phase, TaskCell, TaskStore};
use super::updater::{TaskUpdater, move_to};
use super::{A2aError, Executor, Work, state_name, trim_history};
use crate::auth::Caller;

/// What an A2A server takes on at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages being executed at once; beyond it a new one is refused, so a flood
    /// waits at the client rather than in this process.
    pub max_running_tasks: usize,
}

/// An A2A server's tasks, run by its executor.
pub struct A2aServer {
    executor: Arc<dyn Executor>,
    tasks: Arc<TaskStore>,
    running: Arc<Semaphore>,
    limits: Limits,
    accepting: AtomicBool,
}

impl A2aServer {
    pub fn new(executor: Arc<dyn Executor>, limits: Limits) -> Self {
        Self {
            executor,
            tasks: Arc::default(),
            running: Arc::new(Semaphore::new(limits.max_running_tasks)),
            limits,
            accepting: AtomicBool::new(true),
        }
    }

    /// Runs `request`'s message for `caller`: as a new task, or as the next step
    /// of the task it names, which must be waiting for input. Answers the task at
    /// once; the executor runs on the current Tokio runtime.
    pub fn send(
        &self,
        request: SendMessageRequest,
        caller: &Caller,
    ) -> Result<Arc<TaskCell>, A2aError> {
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
        self.executor.check(&message)?;
        let permit = self.admit()?;
        let cell = match message.task_id.clone() {
            Some(task_id) => {
                let cell = self.task(&task_id, caller)?;
                let (_, context_id) = cell.ids();
                if message
                    .context_id
                    .as_ref()
                    .is_some_and(|given| *given != context_id)
                {
                    return Err(A2aError::InvalidParams(format!(
                        "task {task_id} belongs to another contextId; leave contextId out \
                         or send the task's own"
                    )));
                }
                message.context_id = Some(context_id);
                resume(&cell, &message)?;
                cell
            }
            None => {
                let context_id = message
                    .context_id
                    .clone()
                    .unwrap_or_else(a2a::new_context_id);
                let task_id = a2a::new_task_id();
                message.context_id = Some(context_id.clone());
                message.task_id = Some(task_id.clone());
                let task = Task {
                    id: task_id,
                    context_id,
                    status: TaskStatus {
                        state: TaskState::Submitted,
                        message: None,
                        timestamp: Some(Utc::now()),
                    },
                    artifacts: None,
                    history: Some(vec![message.clone()]),
                    metadata: None,
                };
                self.tasks.insert(task, caller.user_id().map(str::to_owned))
            }
        };
        let owner = cell.owner().map(str::to_owned);
        let work = Work {
            message,
            metadata,
            owner,
        };
        self.execute(cell.clone(), work, permit);
        Ok(cell)
    }

    /// The task `id`, if `caller` may see it.
    pub fn task(&self, id: &str, caller: &Caller) -> Result<Arc<TaskCell>, A2aError> {
        self.tasks
            .get(id)
            .filter(|cell| caller.may_use(cell.owner()))
            .ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))
    }

    /// Stops a task (its executor is dropped, and with it the model request and
    /// tool calls it awaits) and answers it once it is `canceled`.
    pub async fn cancel(&self, id: &str, caller: &Caller) -> Result<Task, A2aError> {
        let cell = self.task(id, caller)?;
        let changed = cell.try_publish(|task| match Phase::of(&task.status.state) {
            Phase::Finished => Err(A2aError::NotCancelable {
                id: id.to_owned(),
                state: state_name(&task.status.state),
            }),
            // Nothing runs: it is canceled here.
            Phase::Interrupted => Ok(Some(move_to(task, TaskState::Canceled, None))),
            // Its executor sees the token and the task ends canceled.
            Phase::Running => Ok(None),
        })?;
        if !changed {
            let state = cell.state();
            return Err(A2aError::NotCancelable {
                id: id.to_owned(),
                state: state_name(&state),
            });
        }
        cell.cancel.cancel();
        cell.finished().await;
        Ok(cell.snapshot())
    }

    /// The tasks of `caller` that `request` asks for, newest first.
    pub fn list(&self, request: &ListTasksRequest, caller: &Caller) -> ListTasksResponse {
        let mut tasks: Vec<Task> = self
            .tasks
            .cells(|cell| caller.may_use(cell.owner()))
            .iter()
            .map(|cell| cell.snapshot())
            .filter(|task| {
                request
                    .context_id
                    .as_ref()
                    .is_none_or(|context| &task.context_id == context)
                    && request
                        .status
                        .as_ref()
                        .is_none_or(|state| &task.status.state == state)
                    && request.status_timestamp_after.is_none_or(|after| {
                        task.status.timestamp.is_some_and(|changed| changed > after)
                    })
            })
            .collect();
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

    /// Refuses new messages from now on (the process is stopping).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Returns once no executor is running (new ones may start meanwhile).
    pub async fn all_finished(&self) {
        for cell in self.tasks.cells(|cell| cell.phase() == Phase::Running) {
            cell.settled().await;
        }
    }

    /// A place for one more running message, or why there is none.
    fn admit(&self) -> Result<OwnedSemaphorePermit, A2aError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(A2aError::Unavailable(
                "this agent is shutting down and takes no new messages; try again shortly".into(),
            ));
        }
        self.running.clone().try_acquire_owned().map_err(|_| {
            A2aError::Unavailable(format!(
                "this agent is running {} messages, its limit; try again shortly",
                self.limits.max_running_tasks
            ))
        })
    }

    /// Runs `work` on `cell` until it settles or the task is canceled.
    fn execute(&self, cell: Arc<TaskCell>, work: Work, permit: OwnedSemaphorePermit) {
        let updater = TaskUpdater::new(cell.clone());
        let mut running = self.executor.execute(work, updater.clone());
        let tasks = self.tasks.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let canceled = tokio::select! {
                () = cell.cancel.cancelled() => true,
                () = &mut running => false,
            };
            if canceled {
                // Stopped first (its model request and tool calls end), so a client
                // told "canceled" finds nothing of the task still running.
                drop(running);
                updater.set_status(TaskState::Canceled, None);
            }
            let (task_id, _) = cell.ids();
            if cell.replied().is_some() {
                tasks.remove(&task_id);
            } else if cell.phase() == Phase::Running {
                // An executor that returns has finished the task or handed it to
                // the client; one that did neither must not leave it working.
                tracing::warn!(task = %task_id, "an executor ended without settling its task");
                let said = "the agent stopped without finishing the task";
                updater.fail(Some(updater.agent_message(vec![Part::text(said)])));
            }
        });
    }
}

/// Puts `message` into the task `cell`, which must wait for input, and sets it
/// working again.
fn resume(cell: &TaskCell, message: &a2a::Message) -> Result<(), A2aError> {
    let (id, _) = cell.ids();
    let refusal = |state: &TaskState| match Phase::of(state) {
        Phase::Running => A2aError::Unsupported(format!(
            "task {id} is still working on its last message; wait for it, or cancel it"
        )),
        _ => A2aError::Unsupported(format!(
            "task {id} is {} and takes no more messages; send a new message with the same \
             contextId to go on",
            state_name(state)
        )),
    };
    let changed = cell.try_publish(|task| {
        if Phase::of(&task.status.state) != Phase::Interrupted {
            return Err(refusal(&task.status.state));
        }
        let event = move_to(task, TaskState::Working, None);
        task.history
            .get_or_insert_with(Vec::new)
            .push(message.clone());
        Ok(Some(event))
    })?;
    if changed {
        Ok(())
    } else {
        Err(refusal(&cell.state()))
    }
}

#[cfg(test)]
mod tests;
