//! The tasks an A2A server knows: each one's current state (what `GetTask`
//! answers) and the events it publishes as it runs (what `SendStreamingMessage`
//! and `SubscribeToTask` stream).
//!
//! A task's state and its events change together, under the task's lock, so a
//! subscriber takes a snapshot and the events after it without missing or
//! repeating one. Finished tasks are kept for `GetTask` until
//! [`MAX_KEPT_TASKS`] newer ones push them out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use a2a::{Message, StreamResponse, Task, TaskId, TaskState};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Tasks kept (running ones are never dropped); beyond it, the oldest of those
/// finished or waiting for their client go.
pub const MAX_KEPT_TASKS: usize = 10_000;

/// Events a subscriber may fall behind by before it is cut off.
const EVENT_BACKLOG: usize = 4_096;

/// Where a task is in its life, as those who wait for it see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Submitted or working: its executor is running.
    Running,
    /// Waiting for the client (`input-required`, `auth-required`): a message with
    /// its `taskId` resumes it.
    Interrupted,
    /// In a terminal state, or answered with a message instead of a task.
    Finished,
}

impl Phase {
    pub fn of(state: &TaskState) -> Self {
        match state {
            state if state.is_terminal() => Phase::Finished,
            TaskState::InputRequired | TaskState::AuthRequired => Phase::Interrupted,
            _ => Phase::Running,
        }
    }
}

/// One task: its state, its event channel, and how to stop it.
pub struct TaskCell {
    task: Mutex<Task>,
    /// The user the task belongs to (`None`: authentication is off).
    owner: Option<String>,
    events: broadcast::Sender<StreamResponse>,
    /// Cancelled by `CancelTask`: the running executor is dropped.
    pub(super) cancel: CancellationToken,
    phase: watch::Sender<Phase>,
    /// The message the executor answered with instead of a task.
    reply: OnceLock<Message>,
}

impl TaskCell {
    fn new(task: Task, owner: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            phase: watch::channel(Phase::of(&task.status.state)).0,
            task: Mutex::new(task),
            owner,
            events: broadcast::channel(EVENT_BACKLOG).0,
            cancel: CancellationToken::new(),
            reply: OnceLock::new(),
        })
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Task> {
        self.task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The task as it is now.
    pub fn snapshot(&self) -> Task {
        self.lock().clone()
    }

    /// The task's id and its context's.
    pub fn ids(&self) -> (TaskId, String) {
        let task = self.lock();
        (task.id.clone(), task.context_id.clone())
    }

    pub fn state(&self) -> TaskState {
        self.lock().status.state.clone()
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Changes the task and publishes `event` (built from the changed task) as one
    /// step. A finished task changes no more.
    pub fn publish(&self, change: impl FnOnce(&mut Task) -> StreamResponse) {
        let _ = self.try_publish(|task| Ok::<_, ()>(Some(change(task))));
    }

    /// Like [`publish`](Self::publish), for a change that may be refused or may
    /// publish nothing: `change` sees the task under its lock. Answers whether
    /// `change` ran (not for a finished task).
    pub fn try_publish<E>(
        &self,
        change: impl FnOnce(&mut Task) -> Result<Option<StreamResponse>, E>,
    ) -> Result<bool, E> {
        let mut task = self.lock();
        if self.phase() == Phase::Finished {
            return Ok(false);
        }
        if let Some(event) = change(&mut task)? {
            // No subscriber is fine: the state is what GetTask reads.
            let _ = self.events.send(event);
        }
        self.phase.send_replace(Phase::of(&task.status.state));
        Ok(true)
    }

    /// Answers the task's message with `message` instead of a task; the task is
    /// finished (its store forgets it).
    pub fn reply(&self, message: Message) {
        let _task = self.lock();
        if self.phase() == Phase::Finished || self.reply.set(message.clone()).is_err() {
            return;
        }
        let _ = self.events.send(StreamResponse::Message(message));
        self.phase.send_replace(Phase::Finished);
    }

    /// The message the task was answered with instead of a task, if it was.
    pub fn replied(&self) -> Option<&Message> {
        self.reply.get()
    }

    /// The task now, and every event after it.
    pub fn subscribe(&self) -> (Task, broadcast::Receiver<StreamResponse>) {
        let task = self.lock();
        (task.clone(), self.events.subscribe())
    }

    /// Waits until the task reached a terminal state or was answered with a message.
    pub async fn finished(&self) {
        self.wait_until(|phase| phase == Phase::Finished).await;
    }

    /// Waits until the task finished or waits for the client.
    pub async fn settled(&self) {
        self.wait_until(|phase| phase != Phase::Running).await;
    }

    async fn wait_until(&self, reached: impl Fn(Phase) -> bool) {
        let mut phase = self.phase.subscribe();
        // The sender lives as long as the cell, which the caller holds.
        let _ = phase.wait_for(|phase| reached(*phase)).await;
    }
}

/// Every task this server knows, by id.
#[derive(Default)]
pub struct TaskStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<TaskId, Arc<TaskCell>>,
    /// Ids, oldest first.
    order: VecDeque<TaskId>,
}

impl TaskStore {
    /// Keeps `task` (its id must be new), belonging to `owner`, and answers its cell.
    pub fn insert(&self, task: Task, owner: Option<String>) -> Arc<TaskCell> {
        let id = task.id.clone();
        let cell = TaskCell::new(task, owner);
        let mut inner = self.lock();
        inner.tasks.insert(id.clone(), cell.clone());
        inner.order.push_back(id);
        inner.forget_beyond(MAX_KEPT_TASKS);
        cell
    }

    pub fn get(&self, id: &str) -> Option<Arc<TaskCell>> {
        self.lock().tasks.get(id).cloned()
    }

    /// Forgets the task `id` (one answered with a message: it never was a task).
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        if inner.tasks.remove(id).is_some() {
            inner.order.retain(|kept| kept != id);
        }
    }

    /// The cells `keep` accepts, newest first.
    pub fn cells(&self, keep: impl Fn(&TaskCell) -> bool) -> Vec<Arc<TaskCell>> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.tasks.get(id))
            .filter(|cell| keep(cell))
            .cloned()
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Drops the oldest tasks that are not running while more than `limit` are kept.
    fn forget_beyond(&mut self, limit: usize) {
        let mut excess = self.tasks.len().saturating_sub(limit);
        if excess == 0 {
            return;
        }
        let tasks = &mut self.tasks;
        self.order.retain(|id| {
            let idle = tasks
                .get(id)
                .is_none_or(|cell| cell.phase() != Phase::Running);
            if excess > 0 && idle {
                tasks.remove(id);
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use a2a::{TaskStatus, TaskStatusUpdateEvent};

    use super::*;

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            context_id: "c".into(),
            status: TaskStatus {
                state,
                message: None,
                timestamp: None,
            },
            artifacts: None,
            history: None,
            metadata: None,
        }
    }

    fn set_state(cell: &TaskCell, state: TaskState) {
        cell.publish(|task| {
            task.status.state = state.clone();
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: task.id.clone(),
                context_id: task.context_id.clone(),
                status: task.status.clone(),
                metadata: None,
            })
        });
    }

    #[tokio::test]
    async fn a_subscriber_sees_the_state_then_every_later_event() {
        let store = TaskStore::default();
        let cell = store.insert(task("t", TaskState::Submitted), None);
        set_state(&cell, TaskState::Working);
        let (now, mut events) = cell.subscribe();
        assert_eq!(now.status.state, TaskState::Working);
        set_state(&cell, TaskState::Completed);
        match events.recv().await.unwrap() {
            StreamResponse::StatusUpdate(update) => {
                assert_eq!(update.status.state, TaskState::Completed);
            }
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), cell.finished())
            .await
            .expect("finished once terminal");
        assert_eq!(store.get("t").unwrap().state(), TaskState::Completed);
        assert!(store.get("nope").is_none());
    }

    #[test]
    fn old_finished_tasks_make_room_and_running_ones_stay() {
        let mut inner = Inner::default();
        for (id, state) in [
            ("running", TaskState::Working),
            ("done1", TaskState::Completed),
            ("done2", TaskState::Failed),
            ("new", TaskState::Working),
        ] {
            inner
                .tasks
                .insert(id.into(), TaskCell::new(task(id, state), None));
            inner.order.push_back(id.into());
        }
        inner.forget_beyond(3);
        let kept: Vec<&str> = inner.order.iter().map(String::as_str).collect();
        assert_eq!(kept, ["running", "done2", "new"]);
        inner.forget_beyond(1);
        let kept: Vec<&str> = inner.order.iter().map(String::as_str).collect();
        assert_eq!(kept, ["running", "new"], "running tasks are never dropped");
        assert_eq!(inner.tasks.len(), 2);
    }
}
