//! `POST /chat` as the original frontend calls it: the request, and its
//! server-sent events read whole.

use serde_json::Value;

use super::WAIT;

/// One server-sent event: its `event:` name (None for the default) and data.
#[derive(Debug)]
pub struct Event {
    pub name: Option<String>,
    pub data: Value,
}

/// Posts a chat and reads the whole event stream.
pub async fn post_chat(url: &str, body: Value) -> (reqwest::StatusCode, Vec<Event>, String) {
    post_chat_with(url, body, &[]).await
}

/// Like [`post_chat`], with extra request headers (such as `Authorization`).
pub async fn post_chat_with(
    url: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (reqwest::StatusCode, Vec<Event>, String) {
    let request = headers.iter().fold(
        reqwest::Client::new().post(url).json(&body),
        |request, (name, value)| request.header(*name, *value),
    );
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("no response within the wait")
        .expect("request failed");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("body timed out")
        .unwrap();
    if !status.is_success() {
        return (status, Vec::new(), text);
    }
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            Event {
                name,
                data: serde_json::from_str(&data).expect("event data is JSON"),
            }
        })
        .collect();
    (status, events, text)
}
