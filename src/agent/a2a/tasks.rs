//! The tasks an A2A server knows: each one's current state (what `GetTask`
//! answers) and the events it publishes as it runs (what `SendStreamingMessage`
//! and `SubscribeToTask` stream).
//!
//! A task's state and its events change together, under the task's lock, so a
//! subscriber takes a snapshot and the events after it without missing or
//! repeating one. Finished tasks are kept for `GetTask` until
//! [`MAX_KEPT_TASKS`] newer ones push them out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use a2a::{StreamResponse, Task, TaskId, TaskState};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Tasks kept (running ones are never dropped); beyond it, the oldest finished go.
pub const MAX_KEPT_TASKS: usize = 10_000;

/// Events a subscriber may fall behind by before it is cut off.
const EVENT_BACKLOG: usize = 4_096;

/// One task: its state, its event channel, and how to stop it.
pub struct TaskCell {
    task: Mutex<Task>,
    events: broadcast::Sender<StreamResponse>,
    /// Cancelled by `CancelTask`: the running agent stream is dropped.
    pub cancel: CancellationToken,
    /// Set once the task reached a terminal state.
    finished: watch::Sender<bool>,
}

impl TaskCell {
    fn new(task: Task) -> Arc<Self> {
        Arc::new(Self {
            task: Mutex::new(task),
            events: broadcast::channel(EVENT_BACKLOG).0,
            cancel: CancellationToken::new(),
            finished: watch::channel(false).0,
        })
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

    pub fn state(&self) -> TaskState {
        self.lock().status.state.clone()
    }

    /// Changes the task and publishes `event` (built from the changed task) as one
    /// step; marks it finished when it reached a terminal state.
    pub fn publish(&self, change: impl FnOnce(&mut Task) -> StreamResponse) {
        let mut task = self.lock();
        let event = change(&mut task);
        // No subscriber is fine: the state is what GetTask reads.
        let _ = self.events.send(event);
        if task.status.state.is_terminal() {
            self.finished.send_replace(true);
        }
    }

    /// The task now, and every event after it.
    pub fn subscribe(&self) -> (Task, broadcast::Receiver<StreamResponse>) {
        let task = self.lock();
        (task.clone(), self.events.subscribe())
    }

    /// Waits until the task reached a terminal state.
    pub async fn finished(&self) {
        let mut finished = self.finished.subscribe();
        // The sender lives as long as the cell, which the caller holds.
        let _ = finished.wait_for(|done| *done).await;
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
    /// Keeps `task` (its id must be new) and answers its cell.
    pub fn insert(&self, task: Task) -> Arc<TaskCell> {
        let id = task.id.clone();
        let cell = TaskCell::new(task);
        let mut inner = self.lock();
        inner.tasks.insert(id.clone(), cell.clone());
        inner.order.push_back(id);
        inner.forget_beyond(MAX_KEPT_TASKS);
        cell
    }

    pub fn get(&self, id: &str) -> Option<Arc<TaskCell>> {
        self.lock().tasks.get(id).cloned()
    }

    /// Snapshots of the tasks `keep` accepts, newest first.
    pub fn list(&self, keep: impl Fn(&Task) -> bool) -> Vec<Task> {
        let cells: Vec<Arc<TaskCell>> = {
            let inner = self.lock();
            inner
                .order
                .iter()
                .rev()
                .filter_map(|id| inner.tasks.get(id).cloned())
                .collect()
        };
        cells
            .iter()
            .map(|cell| cell.snapshot())
            .filter(|task| keep(task))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Drops the oldest finished tasks while more than `limit` are kept.
    fn forget_beyond(&mut self, limit: usize) {
        let mut excess = self.tasks.len().saturating_sub(limit);
        if excess == 0 {
            return;
        }
        let tasks = &mut self.tasks;
        self.order.retain(|id| {
            let finished = tasks.get(id).is_none_or(|cell| cell.state().is_terminal());
            if excess > 0 && finished {
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
        let cell = store.insert(task("t", TaskState::Submitted));
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
                .insert(id.into(), TaskCell::new(task(id, state)));
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
