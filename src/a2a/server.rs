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
use super::updater::{TaskUpdater, agent_message, move_to};
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
                let context_id = cell.snapshot().context_id;
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
                message.context_id = Some(context_id.clone());
                message.task_id = Some(a2a::new_task_id());
                let task = Task {
                    id: message.task_id.clone().unwrap_or_default(),
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
        let running = self.executor.execute(work, updater.clone());
        let tasks = self.tasks.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = cell.cancel.cancelled() => updater.set_status(TaskState::Canceled, None),
                () = running => {}
            }
            if cell.replied().is_some() {
                tasks.remove(&cell.snapshot().id);
            } else if cell.phase() == Phase::Running {
                // An executor that returns has finished the task or handed it to
                // the client; one that did neither must not leave it working.
                tracing::warn!(task = %cell.snapshot().id, "an executor ended without settling its task");
                let message = agent_message(
                    &cell.snapshot(),
                    vec![Part::text("the agent stopped without finishing the task")],
                );
                updater.fail(Some(message));
            }
        });
    }
}

/// Puts `message` into the task `cell`, which must wait for input, and sets it
/// working again.
fn resume(cell: &TaskCell, message: &a2a::Message) -> Result<(), A2aError> {
    let id = cell.snapshot().id;
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
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use a2a::{Message, PartContent};
    use futures_util::future::BoxFuture;

    use super::*;

    /// Does what the message's text says.
    #[derive(Default)]
    struct Scripted {
        /// Executors dropped before they ended (canceled).
        dropped: Arc<AtomicUsize>,
    }

    struct CountsDrop(Arc<AtomicUsize>);

    impl Drop for CountsDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Executor for Scripted {
        fn check(&self, message: &Message) -> Result<(), A2aError> {
            match text_of(message).as_str() {
                "unreadable" => Err(A2aError::ContentTypeNotSupported("no".into())),
                _ => Ok(()),
            }
        }

        fn execute(&self, work: Work, updater: TaskUpdater) -> BoxFuture<'static, ()> {
            let dropped = self.dropped.clone();
            Box::pin(async move {
                let text = |text: &str| updater.agent_message(vec![Part::text(text)]);
                match text_of(&work.message).as_str() {
                    "ask" => updater.input_required(Some(text("which one?"))),
                    "reply" => updater.reply(text("a message, not a task")),
                    "hang" => {
                        updater.working(None);
                        let _guard = CountsDrop(dropped);
                        std::future::pending::<()>().await;
                    }
                    "forget" => updater.working(None),
                    other => updater.complete(Some(text(&format!("done: {other}")))),
                }
            })
        }
    }

    fn text_of(message: &Message) -> String {
        match &message.parts[0].content {
            PartContent::Text(text) => text.clone(),
            _ => String::new(),
        }
    }

    fn server(max_running_tasks: usize) -> (A2aServer, Arc<AtomicUsize>) {
        let executor = Scripted::default();
        let dropped = executor.dropped.clone();
        let limits = Limits { max_running_tasks };
        (A2aServer::new(Arc::new(executor), limits), dropped)
    }

    fn request(text: &str, task_id: Option<&str>, context_id: Option<&str>) -> SendMessageRequest {
        let mut message = Message::new(Role::User, vec![Part::text(text)]);
        message.task_id = task_id.map(str::to_owned);
        message.context_id = context_id.map(str::to_owned);
        SendMessageRequest {
            message,
            configuration: None,
            metadata: None,
            tenant: None,
        }
    }

    async fn settled(cell: &TaskCell) -> Task {
        tokio::time::timeout(Duration::from_secs(5), cell.settled())
            .await
            .expect("the task settles");
        cell.snapshot()
    }

    #[tokio::test]
    async fn a_task_waiting_for_input_goes_on_with_the_next_message_of_its_task() {
        let (server, _) = server(8);
        let anyone = Caller::Anyone;
        let asked = server.send(request("ask", None, None), &anyone).unwrap();
        let task = settled(&asked).await;
        assert_eq!(task.status.state, TaskState::InputRequired);

        let other_context = request("go", Some(&task.id), Some("another"));
        assert!(matches!(
            server.send(other_context, &anyone),
            Err(A2aError::InvalidParams(_))
        ));
        let answered = server
            .send(request("go", Some(&task.id), None), &anyone)
            .unwrap();
        let done = settled(&answered).await;
        assert_eq!(done.status.state, TaskState::Completed);
        assert_eq!(done.context_id, task.context_id, "inferred from the task");
        let history: Vec<String> = done.history.unwrap().iter().map(text_of).collect();
        assert_eq!(history, ["ask", "which one?", "go"]);

        let after_the_end = server.send(request("more", Some(&task.id), None), &anyone);
        assert!(matches!(after_the_end, Err(A2aError::Unsupported(_))));
        let unknown = server.send(request("more", Some("no-such-task"), None), &anyone);
        assert_eq!(
            unknown.err(),
            Some(A2aError::TaskNotFound("no-such-task".into()))
        );
    }

    #[tokio::test]
    async fn a_reply_is_a_message_and_leaves_no_task() {
        let (server, _) = server(8);
        let cell = server
            .send(request("reply", None, None), &Caller::Anyone)
            .unwrap();
        let task = settled(&cell).await;
        assert_eq!(
            cell.replied().map(text_of).as_deref(),
            Some("a message, not a task")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(server.task(&task.id, &Caller::Anyone).is_err());
    }

    #[tokio::test]
    async fn cancel_drops_a_running_executor_and_ends_a_waiting_task_at_once() {
        let (server, dropped) = server(8);
        let anyone = Caller::Anyone;
        let running = server.send(request("hang", None, None), &anyone).unwrap();
        let id = running.snapshot().id;
        let canceled = tokio::time::timeout(Duration::from_secs(5), server.cancel(&id, &anyone))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(canceled.status.state, TaskState::Canceled);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the executor was dropped"
        );
        assert!(matches!(
            server.cancel(&id, &anyone).await,
            Err(A2aError::NotCancelable { .. })
        ));

        let waiting = server.send(request("ask", None, None), &anyone).unwrap();
        let id = settled(&waiting).await.id;
        let canceled = server.cancel(&id, &anyone).await.unwrap();
        assert_eq!(canceled.status.state, TaskState::Canceled);
    }

    #[tokio::test]
    async fn beyond_the_limit_and_once_stopping_new_messages_are_refused() {
        let (server, _) = server(1);
        let anyone = Caller::Anyone;
        let hanging = server.send(request("hang", None, None), &anyone).unwrap();
        assert!(matches!(
            server.send(request("hello", None, None), &anyone),
            Err(A2aError::Unavailable(_))
        ));
        server
            .cancel(&hanging.snapshot().id, &anyone)
            .await
            .unwrap();
        // The permit goes back once the canceled executor's task has ended.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cell = server.send(request("hello", None, None), &anyone).unwrap();
        assert_eq!(settled(&cell).await.status.state, TaskState::Completed);

        server.stop_accepting();
        assert!(matches!(
            server.send(request("hello", None, None), &anyone),
            Err(A2aError::Unavailable(_))
        ));
        tokio::time::timeout(Duration::from_secs(5), server.all_finished())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn each_user_sees_only_their_own_tasks() {
        let (server, _) = server(8);
        let alice = Caller::User("alice".into());
        let bob = Caller::User("bob".into());
        let cell = server.send(request("hello", None, None), &alice).unwrap();
        let id = settled(&cell).await.id;
        assert!(server.task(&id, &alice).is_ok());
        assert_eq!(
            server.task(&id, &bob).err(),
            Some(A2aError::TaskNotFound(id.clone()))
        );
        assert!(server.cancel(&id, &bob).await.is_err());
        let everything: ListTasksRequest = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(server.list(&everything, &alice).tasks.len(), 1);
        assert!(server.list(&everything, &bob).tasks.is_empty());
        let follow_up = server.send(request("more", Some(&id), None), &bob);
        assert!(matches!(follow_up, Err(A2aError::TaskNotFound(_))));
    }

    #[tokio::test]
    async fn checks_come_first_and_an_executor_that_forgets_its_task_fails_it() {
        let (server, _) = server(8);
        let refused = server.send(request("unreadable", None, None), &Caller::Anyone);
        assert!(matches!(refused, Err(A2aError::ContentTypeNotSupported(_))));
        let mut from_the_agent = request("hello", None, None);
        from_the_agent.message.role = Role::Agent;
        assert!(matches!(
            server.send(from_the_agent, &Caller::Anyone),
            Err(A2aError::InvalidParams(_))
        ));
        let cell = server
            .send(request("forget", None, None), &Caller::Anyone)
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), cell.finished())
            .await
            .unwrap();
        assert_eq!(cell.state(), TaskState::Failed);
    }
}
