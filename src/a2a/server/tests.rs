//! The server with a scripted executor: each path of a task, in-process.

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

/// Waits until the executor of `cell` has started.
async fn working(cell: &TaskCell) {
    let started = async {
        while cell.state() != TaskState::Working {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .expect("the executor starts");
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
    working(&running).await;
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
