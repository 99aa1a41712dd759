//! `parlor agent` seen from outside (docs/a2a.md): a real A2A server over the mock
//! model, driven with a plain HTTP client speaking JSON-RPC.

mod common;

use std::time::Duration;

use common::a2a::{Events, call, error_code, message, post, state_of};
use common::{
    Process, WAIT, a2a_agent, a2a_agent_with, expected_answer, mock_llm, mock_stats, wait_for_mock,
};
use serde_json::{Value, json};

/// The answer text of the artifact updates among `events`, checking they append
/// in order and that exactly one comes last.
fn answer_of(events: &[Value]) -> String {
    let updates: Vec<&Value> = events
        .iter()
        .filter_map(|event| event.get("artifactUpdate"))
        .collect();
    let mut text = String::new();
    for (index, update) in updates.iter().enumerate() {
        assert_eq!(update["artifact"]["artifactId"], "answer");
        assert_eq!(update["append"], json!(index > 0), "{update}");
        assert_eq!(update["lastChunk"], json!(index == updates.len() - 1));
        text.push_str(update["artifact"]["parts"][0]["text"].as_str().unwrap());
    }
    text
}

#[tokio::test]
async fn the_card_says_who_the_agent_is_and_where_to_reach_it() {
    let model = mock_llm(0, 0);
    let agent = a2a_agent(&model);
    let response = reqwest::get(agent.http("/.well-known/agent-card.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert!(response.headers().contains_key("last-modified"));
    let etag = response.headers()["etag"].clone();
    let card: Value = response.json().await.unwrap();
    let again = reqwest::Client::new()
        .get(agent.http("/.well-known/agent-card.json"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "the card has not changed");
    assert_eq!(
        card["supportedInterfaces"],
        json!([{"url": agent.http("/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])
    );
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["skills"][0]["id"], "parlor_docs");
    assert!(!card["version"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn messages_of_one_context_see_the_earlier_ones_after_a_restart_too() {
    let model = mock_llm(0, 0);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let settings = [("PARLOR_STORAGE__DATA_DIR", data_dir.as_str())];
    let mut agent = a2a_agent_with(&model, &settings);
    let first = call(
        &agent,
        "SendMessage",
        json!({"message": message("one", Some("c1"))}),
    )
    .await;
    let task = &first["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{first}");
    assert_eq!(task["contextId"], "c1");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"],
        expected_answer("one", 1)
    );
    assert_eq!(task["history"][0]["parts"][0]["text"], "one");

    let second = call(
        &agent,
        "SendMessage",
        json!({"message": message("two", Some("c1"))}),
    )
    .await;
    let text = &second["result"]["task"]["artifacts"][0]["parts"][0]["text"];
    assert_eq!(
        text,
        &json!(expected_answer("two", 2)),
        "the second turn of c1"
    );
    let other = call(
        &agent,
        "SendMessage",
        json!({"message": message("three", Some("c2"))}),
    )
    .await;
    let text = &other["result"]["task"]["artifacts"][0]["parts"][0]["text"];
    assert_eq!(text, &json!(expected_answer("three", 1)), "c2 is apart");
    // No contextId: the agent makes one up, and answers it.
    let fresh = call(
        &agent,
        "SendMessage",
        json!({"message": message("four", None)}),
    )
    .await;
    assert!(
        !fresh["result"]["task"]["contextId"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // GetTask, with and without history; ListTasks by context.
    let id = task["id"].as_str().unwrap();
    let got = call(&agent, "GetTask", json!({"id": id})).await;
    assert_eq!(got["result"]["id"], id);
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED");
    let trimmed = call(&agent, "GetTask", json!({"id": id, "historyLength": 0})).await;
    assert_eq!(trimmed["result"]["history"], json!([]));
    let listed = call(&agent, "ListTasks", json!({"contextId": "c1"})).await;
    assert_eq!(listed["result"]["totalSize"], 2, "{listed}");
    assert_eq!(
        listed["result"]["tasks"][0]["id"],
        second["result"]["task"]["id"]
    );

    // The conversation is stored: a restarted agent goes on with it.
    agent.terminate();
    agent.wait_exit(WAIT).expect("the agent stops");
    let agent = a2a_agent_with(&model, &settings);
    let after = call(
        &agent,
        "SendMessage",
        json!({"message": message("five", Some("c1"))}),
    )
    .await;
    let text = &after["result"]["task"]["artifacts"][0]["parts"][0]["text"];
    assert_eq!(
        text,
        &json!(expected_answer("five", 3)),
        "the third turn of c1"
    );
}

#[tokio::test]
async fn a_streamed_answer_comes_in_order_and_the_stream_ends_with_the_task() {
    let model = mock_llm(20, 5);
    let agent = a2a_agent(&model);
    let question = "stream this answer please";
    let mut events = Events::open(
        &agent,
        "SendStreamingMessage",
        json!({"message": message(question, None)}),
    )
    .await;
    let first = events.next().await.unwrap();
    assert_eq!(first["task"]["status"]["state"], "TASK_STATE_SUBMITTED");
    let task_id = first["task"]["id"].as_str().unwrap().to_owned();
    let rest = events.rest().await;
    assert_eq!(state_of(&rest[0]), Some("TASK_STATE_WORKING"));
    assert_eq!(state_of(rest.last().unwrap()), Some("TASK_STATE_COMPLETED"));
    assert!(rest.len() > 4, "the answer came in chunks: {rest:?}");
    for event in &rest {
        let update = event
            .get("artifactUpdate")
            .or_else(|| event.get("statusUpdate"))
            .expect("only updates follow the task");
        assert_eq!(update["taskId"], task_id.as_str());
    }
    assert_eq!(answer_of(&rest), expected_answer(question, 1));
}

#[tokio::test]
async fn tool_steps_and_references_travel_as_status_messages_with_data_parts() {
    let model = Process::start(&["mock-llm", "--bind", "127.0.0.1:0", "--tools"], &[]);
    let agent = a2a_agent(&model);
    let mut events = Events::open(
        &agent,
        "SendStreamingMessage",
        json!({"message": message("How do I configure the broker?", None)}),
    )
    .await;
    events.next().await.unwrap();
    let rest = events.rest().await;
    let data: Vec<&Value> = rest
        .iter()
        .filter_map(|event| event["statusUpdate"]["status"]["message"]["parts"][0].get("data"))
        .collect();
    let kinds: Vec<(&str, &str)> = data
        .iter()
        .map(|data| {
            (
                data["type"].as_str().unwrap(),
                data["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("tool", "working"), ("tool", "done"), ("references", "")],
        "{data:?}"
    );
    assert_eq!(data[0]["name"], "parlor_docs");
    assert!(
        !data[2]["sources"][0]["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let answer = answer_of(&rest);
    assert!(answer.contains("[^"), "the answer cites: {answer}");
}

#[tokio::test]
async fn cancel_stops_the_model_and_subscribe_follows_a_running_task() {
    let model = mock_llm(0, 30);
    let agent = a2a_agent(&model);

    // Subscribe after the first stream went away: the rest of the same answer.
    let long = "a question whose answer takes a while to stream word by word";
    let mut first = Events::open(
        &agent,
        "SendStreamingMessage",
        json!({"message": message(long, None)}),
    )
    .await;
    let task_id = first.next().await.unwrap()["task"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        state_of(&first.next().await.unwrap()),
        Some("TASK_STATE_WORKING")
    );
    assert!(first.next().await.unwrap().get("artifactUpdate").is_some());
    drop(first);
    let mut again = Events::open(&agent, "SubscribeToTask", json!({"id": task_id})).await;
    let snapshot = again.next().await.unwrap();
    let so_far = snapshot["task"]["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = again.rest().await;
    assert_eq!(state_of(rest.last().unwrap()), Some("TASK_STATE_COMPLETED"));
    let more: String = rest
        .iter()
        .filter_map(|event| event["artifactUpdate"]["artifact"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(format!("{so_far}{more}"), expected_answer(long, 1));
    // A finished task takes no subscribers and cannot be canceled.
    let finished = call(&agent, "SubscribeToTask", json!({"id": task_id})).await;
    assert_eq!(error_code(&finished), -32004);
    let finished = call(&agent, "CancelTask", json!({"id": task_id})).await;
    assert_eq!(error_code(&finished), -32002);

    // Cancel mid-answer: the task ends canceled and the model's stream is cut.
    let before = mock_stats(&model).await["streams_cancelled"]
        .as_u64()
        .unwrap();
    let mut streaming = Events::open(
        &agent,
        "SendStreamingMessage",
        json!({"message": message("[mock:endless] go on", None)}),
    )
    .await;
    let task_id = streaming.next().await.unwrap()["task"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    streaming.next().await.unwrap();
    streaming.next().await.unwrap();
    let canceled = call(&agent, "CancelTask", json!({"id": task_id})).await;
    assert_eq!(
        canceled["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{canceled}"
    );
    let rest = streaming.rest().await;
    assert_eq!(state_of(rest.last().unwrap()), Some("TASK_STATE_CANCELED"));
    wait_for_mock(&model, "the stream cut", |stats| {
        stats["streams_cancelled"].as_u64().unwrap() > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mock_stats(&model).await["streams_active"], 0);
}

#[tokio::test]
async fn bad_requests_get_their_json_rpc_codes_and_the_agent_goes_on() {
    let model = mock_llm(0, 0);
    let agent = a2a_agent(&model);
    /// A body, its headers, and the code it must get.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], i64);
    let cases: [Case; 6] = [
        ("{not json", &[], -32700),
        ("[1,2]", &[], -32600),
        (r#"{"jsonrpc":"2.0","id":1}"#, &[], -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"NoSuchMethod","params":{}}"#,
            &[],
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":5}}"#,
            &[],
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t"}}"#,
            &[("A2A-Version", "99.0")],
            -32009,
        ),
    ];
    for (body, headers, code) in cases {
        let (status, reply) = post(&agent, body, headers).await;
        assert_eq!(status, 200);
        assert_eq!(error_code(&reply), code, "{body} → {reply}");
    }
    let missing = call(&agent, "GetTask", json!({"id": "no-such-task"})).await;
    assert_eq!(error_code(&missing), -32001);
    let missing = call(&agent, "CancelTask", json!({"id": "no-such-task"})).await;
    assert_eq!(error_code(&missing), -32001);
    let no_text =
        json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"data": {"x": 1}}]}});
    let reply = call(&agent, "SendMessage", no_text).await;
    assert_eq!(error_code(&reply), -32005, "only text is read");
    let said = reply["error"]["message"].as_str().unwrap();
    assert!(said.contains("text parts only"), "{said}");
    assert_eq!(
        reply["error"]["data"][0]["reason"],
        "CONTENT_TYPE_NOT_SUPPORTED"
    );
    let blank =
        json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": " "}]}});
    let reply = call(&agent, "SendMessage", blank).await;
    assert_eq!(error_code(&reply), -32602);
    let huge = "x".repeat(70_000);
    let reply = call(
        &agent,
        "SendMessage",
        json!({"message": message(&huge, None)}),
    )
    .await;
    assert_eq!(error_code(&reply), -32602);
    // A body over the limit: refused before it is read whole.
    let response = reqwest::Client::new()
        .post(agent.http("/"))
        .header("Content-Type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let reply = call(
        &agent,
        "SendMessage",
        json!({"message": message("still here", None)}),
    )
    .await;
    assert_eq!(
        reply["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
}
