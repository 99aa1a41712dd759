//! A task's events as server-sent events: the task as it is first, then each
//! event as a JSON-RPC answer of its own, until the task reaches a terminal state.

use std::sync::Arc;

use a2a::StreamResponse;
use actix_web::HttpResponse;
use actix_web::web::Bytes;
use futures_util::{StreamExt, stream};
use serde_json::Value;
use tokio::sync::broadcast;

use super::jsonrpc::{self, RpcError, code};
use super::{Dialect, v03};
use crate::agent::a2a::tasks::TaskCell;

/// The stream of `cell`'s events, answering request `id` in `dialect`.
pub fn events(id: Value, cell: &Arc<TaskCell>, dialect: Dialect) -> HttpResponse {
    let (task, receiver) = cell.subscribe();
    let finished = task.status.state.is_terminal();
    let first = sse(&jsonrpc::success(
        &id,
        encode(&StreamResponse::Task(task), dialect),
    ));
    let state = Following {
        id,
        receiver,
        done: finished,
        dialect,
    };
    let rest = stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let frame = match state.receiver.recv().await {
            Ok(event) => {
                state.done = ends_the_task(&event);
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
    });
    let frames = stream::once(async move { Ok(first) }).chain(rest);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(frames)
}

struct Following {
    id: Value,
    receiver: broadcast::Receiver<StreamResponse>,
    done: bool,
    dialect: Dialect,
}

fn encode(event: &StreamResponse, dialect: Dialect) -> Value {
    match dialect {
        Dialect::V1 => serde_json::to_value(event).unwrap_or_default(),
        Dialect::V03 => v03::event_to_v03(event),
    }
}

fn ends_the_task(event: &StreamResponse) -> bool {
    match event {
        StreamResponse::StatusUpdate(update) => update.status.state.is_terminal(),
        StreamResponse::Task(task) => task.status.state.is_terminal(),
        _ => false,
    }
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

#[cfg(test)]
mod tests {
    use a2a::{TaskState, TaskStatus, TaskStatusUpdateEvent};

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
    fn only_a_terminal_status_ends_the_stream() {
        assert!(!ends_the_task(&status(TaskState::Working)));
        assert!(ends_the_task(&status(TaskState::Completed)));
        assert!(ends_the_task(&status(TaskState::Canceled)));
        assert!(ends_the_task(&status(TaskState::Failed)));
    }
}
