//! A plain HTTP client speaking A2A's JSON-RPC binding (docs/a2a.md): calls, and
//! event streams read frame by frame.

use serde_json::{Value, json};

use super::{Process, WAIT};

/// A user message of one text part, in `context_id` if given.
pub fn message(text: &str, context_id: Option<&str>) -> Value {
    let mut message = json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": [{"text": text}],
    });
    if let Some(context_id) = context_id {
        message["contextId"] = json!(context_id);
    }
    message
}

/// Posts a JSON-RPC request (with `A2A-Version: 1.0`); answers the whole reply.
pub async fn call(agent: &Process, method: &str, params: Value) -> Value {
    let (status, reply) = call_with(agent, method, params, &[]).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// Like [`call`], with more headers; answers the HTTP status too.
pub async fn call_with(
    agent: &Process,
    method: &str,
    params: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut all = vec![("A2A-Version", "1.0")];
    all.extend_from_slice(headers);
    post(agent, &body.to_string(), &all).await
}

/// Posts `body` to the agent's JSON-RPC endpoint with `headers`.
pub async fn post(agent: &Process, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let request = headers.iter().fold(
        reqwest::Client::new()
            .post(agent.http("/"))
            .header("Content-Type", "application/json")
            .body(body.to_owned()),
        |request, (name, value)| request.header(*name, *value),
    );
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("an answer in time")
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {reply}"))
}

/// The state a status-update event reports.
pub fn state_of(event: &Value) -> Option<&str> {
    event["statusUpdate"]["status"]["state"].as_str()
}

/// An open event stream of JSON-RPC replies.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    pub async fn open(agent: &Process, method: &str, params: Value) -> Events {
        Self::open_with(agent, method, params, &[]).await
    }

    /// Opens a stream sending `headers` too.
    pub async fn open_with(
        agent: &Process,
        method: &str,
        params: Value,
        headers: &[(&str, &str)],
    ) -> Events {
        let body = json!({"jsonrpc": "2.0", "id": "s", "method": method, "params": params});
        let request = headers.iter().fold(
            reqwest::Client::new()
                .post(agent.http("/"))
                .header("A2A-Version", "1.0")
                .json(&body),
            |request, (name, value)| request.header(*name, *value),
        );
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's `result`, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data = event.trim().strip_prefix("data: ").expect("a data line");
                let reply: Value = serde_json::from_str(data).unwrap();
                assert_eq!(reply["id"], "s");
                return Some(reply["result"].clone());
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Every remaining event, until the stream ends.
    pub async fn rest(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}
