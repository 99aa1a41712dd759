//! Turns answered by a remote `parlor agent` (`agent.url`, docs/a2a.md): the
//! gateway, the worker pool (in `serve`, or `worker` over RabbitMQ) and the agent
//! in separate processes, giving what the in-process agent gives.

mod common;

use common::deployment::Deployment;
use common::{
    Client, Process, a2a_agent, a2a_agent_with, expected_answer, mock_llm, serve, wait_for_mock,
};
use parlor::conversation::{ErrorCode, FinishReason, ToolStatus};
use parlor::protocol::ServerFrame;
use serde_json::json;

fn tool_calling_model() -> Process {
    Process::start(&["mock-llm", "--bind", "127.0.0.1:0", "--tools"], &[])
}

/// What a turn that searched the built-in source shows, and its answer.
async fn ask_and_check_a_search(client: &mut Client) {
    let turn = client.chat("How do I configure the broker?").await;
    assert_eq!(turn.ending, "stop", "{turn:?}");
    let statuses: Vec<(&str, ToolStatus)> = turn
        .events
        .iter()
        .filter_map(|event| match event {
            ServerFrame::Tool { activity, .. } => Some((activity.name.as_str(), activity.status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("parlor_docs", ToolStatus::Working),
            ("parlor_docs", ToolStatus::Done)
        ]
    );
    let references = turn.events.iter().any(
        |event| matches!(event, ServerFrame::References { sources, .. } if !sources.is_empty()),
    );
    assert!(references, "{turn:?}");
    assert!(
        turn.answer.contains("[^"),
        "the answer cites: {}",
        turn.answer
    );
}

#[tokio::test]
async fn serve_with_a_remote_agent_answers_as_the_in_process_one_does() {
    let model = tool_calling_model();
    let remote = a2a_agent(&model);
    let url = remote.http("");
    // The gateway's own model is never asked: the remote agent's is.
    let unused = mock_llm(0, 0);
    let server = serve(&unused, &[("PARLOR_AGENT__URL", url.as_str())]);
    let mut client = Client::connect(&server).await;
    ask_and_check_a_search(&mut client).await;
    // The session's history goes with each message: the second turn is turn 2.
    client
        .send_json(json!({"type": "message", "text": "and then", "tools": []}))
        .await;
    let turn_id = client.expect_accepted().await;
    let turn = client.read_turn(turn_id).await;
    assert_eq!(turn.answer, expected_answer("and then", 2));
    wait_for_mock(&unused, "no request", |stats| stats["requests"] == 0).await;
}

#[tokio::test]
async fn cancelling_a_turn_cancels_the_remote_task_and_its_model_stream() {
    let model = mock_llm(0, 50);
    let remote = a2a_agent(&model);
    let url = remote.http("");
    let server = serve(&model, &[("PARLOR_AGENT__URL", url.as_str())]);
    let mut client = Client::connect(&server).await;
    client.send_message("[mock:endless] go").await;
    let turn_id = client.expect_accepted().await;
    assert!(matches!(
        client.next_frame().await,
        ServerFrame::Chunk { .. }
    ));
    client.send_json(json!({"type": "cancel"})).await;
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { .. } => continue,
            ServerFrame::Done {
                turn_id: id,
                finish_reason,
            } => {
                assert_eq!((id, finish_reason), (turn_id, FinishReason::Cancelled));
                break;
            }
            other => panic!("expected done/cancelled, got {other:?}"),
        }
    }
    wait_for_mock(&model, "the remote model's stream cut", |stats| {
        stats["streams_cancelled"] == 1 && stats["streams_active"] == 0
    })
    .await;
}

#[tokio::test]
async fn an_agent_that_cannot_be_reached_is_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_AGENT__URL", url.as_str())]);
    let mut client = Client::connect(&server).await;
    let turn = client.chat("anyone there?").await;
    let error = turn.error.expect("an error");
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert!(!error.message.contains("127.0.0.1"), "{}", error.message);
}

#[tokio::test]
async fn an_agent_at_its_limit_is_unavailable_and_the_next_turn_is_answered() {
    // About 20 words at 50 ms each: the first turn holds the agent's only place.
    let model = mock_llm(0, 50);
    let remote = a2a_agent_with(&model, &[("PARLOR_AGENT__MAX_RUNNING_TASKS", "1")]);
    let url = remote.http("");
    let server = serve(&model, &[("PARLOR_AGENT__URL", url.as_str())]);
    let mut first = Client::connect(&server).await;
    let running = first.chat_accepted("a long question").await;
    wait_for_mock(&model, "the first turn streaming", |stats| {
        stats["streams_active"] == 1
    })
    .await;
    let mut second = Client::connect(&server).await;
    let refused = second.chat("and mine?").await;
    let error = refused.error.expect("an error");
    assert_eq!(error.code, ErrorCode::Unavailable, "{}", error.message);
    let answered = first.read_turn(running).await;
    assert_eq!(answered.answer, expected_answer("a long question", 1));
    let again = second.chat("and mine?").await;
    assert_eq!(again.answer, expected_answer("and mine?", 1));
}

#[tokio::test]
async fn through_rabbitmq_workers_call_the_remote_agent() {
    let model = tool_calling_model();
    let remote = a2a_agent(&model);
    let url = remote.http("");
    let (deployment, _cleanup) = Deployment::new(mock_llm(0, 0), &[]);
    let settings = [("PARLOR_AGENT__URL", url.clone())];
    let gateway = deployment.gateway();
    let _worker = deployment.worker_with(&settings);
    let mut client = Client::connect(&gateway).await;
    ask_and_check_a_search(&mut client).await;
}
