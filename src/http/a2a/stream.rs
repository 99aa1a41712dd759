//! A task's events as server-sent events: the task as it is first, then each
//! event as a JSON-RPC answer of its own, until the task ends or waits for the
//! client. A message answered with a message instead of a task streams that
//! message alone.

use std::sync::Arc;

use a2a::{StreamResponse, TaskState};
use actix_web::HttpResponse;
use actix_web::web::Bytes;
use futures_util::{StreamExt, stream};
use serde_json::Value;
use tokio::sync::broadcast;

use super::jsonrpc::{self, RpcError, code};
use super::{Dialect, v03};
use crate::a2a::tasks::{Phase, TaskCell};

/// How a stream begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The task was just sent its message: its executor may still answer with a
    /// message instead, so the stream waits for the first event to know.
    New,
    /// A client re-attaches: the task as it is now, at once.
    Subscribed,
}

/// The stream of `cell`'s events, answering request `id` in `dialect`.
pub fn events(id: Value, cell: &Arc<TaskCell>, dialect: Dialect, start: Start) -> HttpResponse {
    let (task, mut receiver) = cell.subscribe();
    // A reply published before the subscription is not among the events.
    let replied = cell.replied().cloned();
    let over = ends_at(&task.status.state, start);
    let snapshot = StreamResponse::Task(task);
    let first = async move {
        let mut opening = vec![];
        let mut done = over;
        if let Some(message) = replied {
            opening.push(StreamResponse::Message(message));
            done = true;
        } else if start == Start::New && !done {
            match receiver.recv().await {
                Ok(StreamResponse::Message(message)) => {
                    opening.push(StreamResponse::Message(message));
                    done = true;
                }
                Ok(event) => {
                    done = ends_the_stream(&event, start);
                    opening.extend([snapshot, event]);
                }
                // Lagged or closed: the snapshot, and the loop below says why.
                Err(_) => opening.push(snapshot),
            }
        } else {
            opening.push(snapshot);
        }
        (opening, receiver, done)
    };
    let frames = stream::once(first).flat_map(move |(opening, receiver, done)| {
        let opening: Vec<Result<Bytes, actix_web::Error>> = opening
            .iter()
            .map(|event| Ok(sse(&jsonrpc::success(&id, encode(event, dialect)))))
            .collect();
        let state = Following {
            id: id.clone(),
            receiver,
            done,
            dialect,
            start,
        };
        stream::iter(opening).chain(following(state))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(frames)
}

/// The events after the opening ones, until the stream is done.
fn following(
    state: Following,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let frame = match state.receiver.recv().await {
            Ok(event) => {
                state.done = ends_the_stream(&event, state.start);
                sse(&jsonrpc::success(&state.id, encode(&event, state.dialect)))
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                state.done = true;
                let error = RpcError::new(
                    code::INVALID_REQUEST,
                    format!("this stream fell {missed} events behind; SubscribeToTask again"),
                );
                sse(&jsonrpc::failure(&state.id, &error))
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, actix_web::Error>(frame), state))
    })
}

struct Following {
    id: Value,
    receiver: broadcast::Receiver<StreamResponse>,
    done: bool,
    dialect: Dialect,
    start: Start,
}

fn encode(event: &StreamResponse, dialect: Dialect) -> Value {
    match dialect {
        Dialect::V1 => serde_json::to_value(event).unwrap_or_default(),
        Dialect::V03 => v03::event_to_v03(event),
    }
}

/// Whether the stream ends with `event`: the task ended, or the answer was a
/// message. The stream of a message also ends when the task waits for the client
/// (its answer is what the client waits for); a subscriber follows the task
/// through its next message to its end.
fn ends_the_stream(event: &StreamResponse, start: Start) -> bool {
    match event {
        StreamResponse::StatusUpdate(update) => ends_at(&update.status.state, start),
        StreamResponse::Task(task) => ends_at(&task.status.state, start),
        StreamResponse::Message(_) => true,
        StreamResponse::ArtifactUpdate(_) => false,
    }
}

/// Whether a stream that began as `start` ends once its task is in `state`.
fn ends_at(state: &TaskState, start: Start) -> bool {
    match Phase::of(state) {
        Phase::Running => false,
        Phase::Interrupted => start == Start::New,
        Phase::Finished => true,
    }
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

#[cfg(test)]
mod tests {
    use a2a::{TaskStatus, TaskStatusUpdateEvent};

    use super::*;

    fn status(state: TaskState) -> StreamResponse {
        StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: "t".into(),
            context_id: "c".into(),
            status: TaskStatus {
                state,
                message: None,
                timestamp: None,
            },
            metadata: None,
        })
    }

    #[test]
    fn a_terminal_status_ends_every_stream_and_waiting_for_input_a_new_one() {
        for start in [Start::New, Start::Subscribed] {
            assert!(!ends_the_stream(&status(TaskState::Working), start));
            assert!(!ends_the_stream(&status(TaskState::Submitted), start));
            assert!(ends_the_stream(&status(TaskState::Completed), start));
            assert!(ends_the_stream(&status(TaskState::Canceled), start));
            assert!(ends_the_stream(&status(TaskState::Failed), start));
            assert!(ends_the_stream(&status(TaskState::Rejected), start));
        }
        assert!(ends_the_stream(
            &status(TaskState::InputRequired),
            Start::New
        ));
        assert!(!ends_the_stream(
            &status(TaskState::InputRequired),
            Start::Subscribed
        ));
    }
}
