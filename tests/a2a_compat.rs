//! `parlor agent` for A2A 0.3 clients (docs/a2a.md#older-clients-a2a-03), such as
//! the original design's worker: the 0.3 method names and shapes.

mod common;

use common::{Process, WAIT, a2a_agent, expected_answer, mock_llm};
use serde_json::{Value, json};

fn message(text: &str, task_id: Option<&str>) -> Value {
    let mut message = json!({
        "kind": "message",
        "messageId": uuid::Uuid::new_v4().simple().to_string(),
        "role": "user",
        "parts": [{"kind": "text", "text": text}],
    });
    if let Some(task_id) = task_id {
        message["taskId"] = json!(task_id);
    }
    message
}

/// A 0.3 request, without `A2A-Version` as 0.3 clients send it; the body answered.
async fn call(agent: &Process, method: &str, params: Value) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": "r", "method": method, "params": params});
    tokio::time::timeout(
        WAIT,
        reqwest::Client::new()
            .post(agent.http("/"))
            .json(&body)
            .send(),
    )
    .await
    .expect("an answer in time")
    .unwrap()
}

#[tokio::test]
async fn a_03_client_sends_streams_follows_up_and_reads_tasks() {
    let model = mock_llm(0, 0);
    let agent = a2a_agent(&model);

    let card: Value = reqwest::get(agent.http("/.well-known/agent.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["url"], agent.http("/"));
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["capabilities"]["streaming"], true);

    let sent: Value = call(
        &agent,
        "message/send",
        json!({"message": message("one", None)}),
    )
    .await
    .json()
    .await
    .unwrap();
    let task = &sent["result"];
    assert_eq!(task["kind"], "task", "{sent}");
    assert_eq!(task["status"]["state"], "completed");
    assert_eq!(
        task["artifacts"][0]["parts"][0],
        json!({"kind": "text", "text": expected_answer("one", 1)})
    );
    assert_eq!(task["history"][0]["role"], "user");

    // A follow-up naming the finished task continues its conversation.
    let task_id = task["id"].as_str().unwrap();
    let response = call(
        &agent,
        "message/stream",
        json!({"message": message("two", Some(task_id))}),
    )
    .await;
    let body = response.text().await.unwrap();
    let events: Vec<Value> = body
        .split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data: "))
        .map(|data| serde_json::from_str::<Value>(data).unwrap()["result"].clone())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"task"));
    assert_eq!(events[1]["status"]["state"], "working");
    assert_eq!(events[1]["final"], false);
    let last = events.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["final"].as_bool()),
        (Some("status-update"), Some(true))
    );
    assert_eq!(last["status"]["state"], "completed");
    assert_eq!(last["contextId"], task["contextId"]);
    let answer: String = events
        .iter()
        .filter(|e| e["kind"] == "artifact-update")
        .map(|e| e["artifact"]["parts"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(answer, expected_answer("two", 2));

    let got: Value = call(&agent, "tasks/get", json!({"id": task_id}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["result"]["kind"], "task");
    assert_eq!(got["result"]["status"]["state"], "completed");
    let canceled: Value = call(&agent, "tasks/cancel", json!({"id": task_id}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(canceled["error"]["code"], -32002, "{canceled}");
    // A 0.3 method under another version is refused.
    let refused: Value = reqwest::Client::new()
        .post(agent.http("/"))
        .header("A2A-Version", "0.2")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": task_id}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["error"]["code"], -32009);
}
