//! parlor's A2A server beyond what the knowledge agent uses (docs/a2a.md): tasks
//! that wait for input, answers that are messages, chunked artifacts — played by
//! the conformance suite's agent (`examples/tck_agent.rs`) — and, on the product,
//! A2A on `parlor serve`'s own port with tasks per user, and an agent at its
//! limit or stopping refusing new messages, and a storage outage failing what
//! needs the storage, plainly.

mod common;

use common::a2a::{Events, call, call_with, error_code, message, state_of};
use common::postgres::TestDatabase;
use common::proxy::CuttableProxy;
use common::{Process, WAIT, a2a_agent_with, expected_answer, mock_llm, tck_agent};
use serde_json::{Value, json};

const ALICE: &str = "alice-a2a-token-0123456789";
const BOB: &str = "bob-a2a-token-0123456789";

/// A message whose `messageId` starts with `scenario` (the TCK agent plays it).
fn scenario(scenario: &str, text: &str, task_id: Option<&str>) -> Value {
    let mut message = message(text, None);
    message["messageId"] = json!(format!("{scenario}-{}", uuid::Uuid::new_v4()));
    if let Some(task_id) = task_id {
        message["taskId"] = json!(task_id);
    }
    json!({ "message": message })
}

fn texts(messages: &Value) -> Vec<&str> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["parts"][0]["text"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_reply_is_one_message_and_a_task_waiting_for_input_goes_on_with_its_next_message() {
    let agent = tck_agent();

    let reply = call(
        &agent,
        "SendMessage",
        scenario("tck-message-response", "hi", None),
    )
    .await;
    assert_eq!(
        reply["result"]["message"]["parts"][0]["text"], "Direct message response",
        "{reply}"
    );
    let mut stream = Events::open(
        &agent,
        "SendStreamingMessage",
        scenario("tck-message-response", "hi", None),
    )
    .await;
    let events = stream.rest().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["message"]["role"], "ROLE_AGENT");

    // A new message's stream ends when its task waits for input.
    let mut stream = Events::open(
        &agent,
        "SendStreamingMessage",
        scenario("tck-input-required", "first", None),
    )
    .await;
    let events = stream.rest().await;
    let task = &events[0]["task"];
    let (task_id, context_id) = (task["id"].as_str().unwrap(), &task["contextId"]);
    assert_eq!(
        state_of(events.last().unwrap()),
        Some("TASK_STATE_INPUT_REQUIRED")
    );

    // A subscriber follows the task through its next message to its end.
    let mut following = Events::open(&agent, "SubscribeToTask", json!({"id": task_id})).await;
    let now = following.next().await.unwrap();
    assert_eq!(now["task"]["status"]["state"], "TASK_STATE_INPUT_REQUIRED");
    let mismatch = {
        let mut params = scenario("tck-complete-task", "go on", Some(task_id));
        params["message"]["contextId"] = json!("another-context");
        call(&agent, "SendMessage", params).await
    };
    assert_eq!(error_code(&mismatch), -32602, "{mismatch}");
    let done = call(
        &agent,
        "SendMessage",
        scenario("tck-complete-task", "go on", Some(task_id)),
    )
    .await;
    let done = &done["result"]["task"];
    assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(&done["contextId"], context_id, "inferred from the task");
    assert_eq!(texts(&done["history"]), ["first", "go on"]);
    let followed = following.rest().await;
    let followed: Vec<Option<&str>> = followed.iter().map(state_of).collect();
    assert_eq!(
        followed,
        [Some("TASK_STATE_WORKING"), Some("TASK_STATE_COMPLETED")]
    );

    let after_the_end = call(
        &agent,
        "SendMessage",
        scenario("tck-complete-task", "more", Some(task_id)),
    )
    .await;
    assert_eq!(error_code(&after_the_end), -32004, "{after_the_end}");
    // Field names in snake_case are read too (ProtoJSON readers accept both).
    let newest = call(
        &agent,
        "GetTask",
        json!({"id": task_id, "history_length": 1}),
    )
    .await;
    assert_eq!(texts(&newest["result"]["history"]), ["go on"]);
}

#[tokio::test]
async fn a_chunked_artifact_streams_in_parts_and_reads_whole() {
    let agent = tck_agent();
    let mut stream = Events::open(
        &agent,
        "SendStreamingMessage",
        scenario("tck-stream-artifact-chunked", "chunks", None),
    )
    .await;
    let events = stream.rest().await;
    let task_id = events[0]["task"]["id"].as_str().unwrap();
    let chunks: Vec<(&Value, &Value, &Value)> = events
        .iter()
        .filter_map(|event| event.get("artifactUpdate"))
        .map(|update| {
            (
                &update["artifact"]["parts"][0]["text"],
                &update["append"],
                &update["lastChunk"],
            )
        })
        .collect();
    assert_eq!(
        chunks,
        [
            (&json!("chunk-1 "), &json!(false), &json!(false)),
            (&json!("chunk-2"), &json!(true), &json!(true)),
        ]
    );
    assert_eq!(
        state_of(events.last().unwrap()),
        Some("TASK_STATE_COMPLETED")
    );
    let task = call(&agent, "GetTask", json!({"id": task_id})).await;
    let parts = &task["result"]["artifacts"][0]["parts"];
    assert_eq!(parts, &json!([{"text": "chunk-1 chunk-2"}]));
}

#[tokio::test]
async fn serve_answers_a2a_on_its_own_port_and_each_user_sees_only_their_tasks() {
    let model = mock_llm(0, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[auth]\nmode = \"token\"\n\
         [[auth.users]]\nid = \"alice\"\ntoken = \"{ALICE}\"\n\
         [[auth.users]]\nid = \"bob\"\ntoken = \"{BOB}\"\n"
    );
    let path = dir.path().join("parlor.toml");
    std::fs::write(&path, config).unwrap();
    let env = [
        ("PARLOR_HTTP__BIND", "127.0.0.1:0".to_owned()),
        ("PARLOR_LLM__BASE_URL", model.http("/v1")),
    ];
    let server = Process::start(&["--config", &path.display().to_string(), "serve"], &env);

    let card: Value = reqwest::get(server.http("/.well-known/agent-card.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["supportedInterfaces"][0]["url"], server.http("/"));

    let params = json!({"message": message("hello", None)});
    let (status, _) = call_with(&server, "SendMessage", params.clone(), &[]).await;
    assert_eq!(status, 401, "a token is required");
    let alice = format!("Bearer {ALICE}");
    let bob = format!("Bearer {BOB}");
    let as_alice = [("Authorization", alice.as_str())];
    let as_bob = [("Authorization", bob.as_str())];
    let (status, sent) = call_with(&server, "SendMessage", params, &as_alice).await;
    assert_eq!(status, 200);
    let task = &sent["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{sent}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"],
        expected_answer("hello", 1)
    );
    let id = task["id"].clone();

    let (_, read) = call_with(&server, "GetTask", json!({"id": id}), &as_alice).await;
    assert_eq!(read["result"]["id"], id);
    let (_, read) = call_with(&server, "GetTask", json!({"id": id}), &as_bob).await;
    assert_eq!(error_code(&read), -32001, "another user's task is no task");
    let (_, canceled) = call_with(&server, "CancelTask", json!({"id": id}), &as_bob).await;
    assert_eq!(error_code(&canceled), -32001);
    let (_, listed) = call_with(&server, "ListTasks", json!({}), &as_bob).await;
    assert_eq!(listed["result"]["tasks"], json!([]));
    let (_, listed) = call_with(&server, "ListTasks", json!({}), &as_alice).await;
    assert_eq!(listed["result"]["tasks"][0]["id"], id);
}

#[tokio::test]
async fn an_agent_at_its_limit_or_stopping_refuses_new_messages_and_finishes_running_ones() {
    // About 20 words at 100 ms each: a task that runs for seconds.
    let model = mock_llm(0, 100);
    let mut agent = a2a_agent_with(&model, &[("PARLOR_AGENT__MAX_RUNNING_TASKS", "1")]);
    let mut running = Events::open(
        &agent,
        "SendStreamingMessage",
        json!({"message": message("a long one", None)}),
    )
    .await;
    running.next().await.expect("the task");

    let params = json!({"message": message("one more", None)});
    let (status, refused) = call_with(&agent, "SendMessage", params.clone(), &[]).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(error_code(&refused), -32603);
    let said = refused["error"]["message"].as_str().unwrap();
    assert!(said.contains("its limit"), "{said}");

    agent.terminate();
    agent
        .wait_for_log_line("stopping: running tasks may finish")
        .await;
    let (status, refused) = call_with(&agent, "SendMessage", params, &[]).await;
    assert_eq!(status, 503, "{refused}");
    let said = refused["error"]["message"].as_str().unwrap();
    assert!(said.contains("shutting down"), "{said}");

    let rest = running.rest().await;
    assert_eq!(
        state_of(rest.last().unwrap()),
        Some("TASK_STATE_COMPLETED"),
        "the running task finished"
    );
    let exit = agent.wait_exit(WAIT).expect("the agent exits");
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_storage_outage_fails_a_context_message_plainly_and_the_agent_goes_on() {
    let model = mock_llm(0, 0);
    let database = TestDatabase::create().await;
    let proxy = CuttableProxy::start("127.0.0.1:5432");
    let through_proxy = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, database.name
    );
    let agent = a2a_agent_with(&model, &[("PARLOR_STORAGE__URL", &through_proxy)]);
    let send = |text: &str| json!({"message": message(text, Some("kept"))});

    let first = call(&agent, "SendMessage", send("one")).await;
    assert_eq!(
        first["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );

    proxy.cut();
    let failed = call(&agent, "SendMessage", send("two")).await;
    let status = &failed["result"]["task"]["status"];
    assert_eq!(status["state"], "TASK_STATE_FAILED", "{failed}");
    let said = status["message"]["parts"][0]["text"].as_str().unwrap();
    assert!(said.contains("cannot be read now"), "{said}");
    assert!(
        !said.contains("127.0.0.1") && !said.contains("postgres"),
        "{said}"
    );
    // Without the storage, the stateless mode still answers.
    let mut stateless = message("three", Some("kept"));
    stateless["metadata"] = json!({"history": []});
    let answered = call(&agent, "SendMessage", json!({"message": stateless})).await;
    assert_eq!(
        answered["result"]["task"]["artifacts"][0]["parts"][0]["text"],
        expected_answer("three", 1)
    );

    proxy.restore();
    let after = call(&agent, "SendMessage", send("four")).await;
    assert_eq!(
        after["result"]["task"]["artifacts"][0]["parts"][0]["text"],
        expected_answer("four", 2),
        "the context has its first exchange, and nothing of the failed one: {after}"
    );
}
