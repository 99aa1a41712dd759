//! A2A 0.3 for older clients (such as the original design's worker): the 0.3
//! method names, and the 0.3 JSON shapes translated to and from the 1.0 objects
//! the agent works with — `kind` on every object and part, lower-case states and
//! roles, `final` on status updates, the task itself (not `{"task": …}`) as
//! `message/send`'s result.

use a2a::{SendMessageConfiguration, SendMessageRequest, StreamResponse};
use serde_json::{Map, Value, json};

use super::jsonrpc::{RpcError, code};

/// The 1.0 method a 0.3 method name stands for.
pub fn method(name: &str) -> Option<&'static str> {
    Some(match name {
        "message/send" => "SendMessage",
        "message/stream" => "SendStreamingMessage",
        "tasks/get" => "GetTask",
        "tasks/cancel" => "CancelTask",
        "tasks/resubscribe" => "SubscribeToTask",
        _ => return None,
    })
}

/// A 0.3 `MessageSendParams` as a 1.0 `SendMessageRequest`.
pub fn send_params(params: Value) -> Result<SendMessageRequest, RpcError> {
    let invalid = |problem: &str| RpcError::new(code::INVALID_PARAMS, problem.to_owned());
    let Value::Object(mut params) = params else {
        return Err(invalid("params must be an object with a message"));
    };
    let Some(Value::Object(message)) = params.remove("message") else {
        return Err(invalid("params.message must be an object"));
    };
    let message = serde_json::from_value(message_to_v1(message))
        .map_err(|error| invalid(&format!("invalid message: {error}")))?;
    let configuration = params.remove("configuration").map(|configuration| {
        let blocking = configuration.get("blocking").and_then(Value::as_bool);
        SendMessageConfiguration {
            accepted_output_modes: None,
            push_notification_config: None,
            history_length: configuration
                .get("historyLength")
                .and_then(Value::as_i64)
                .and_then(|length| i32::try_from(length).ok()),
            return_immediately: blocking.map(|blocking| !blocking),
        }
    });
    let metadata = params
        .remove("metadata")
        .and_then(|metadata| serde_json::from_value(metadata).ok());
    Ok(SendMessageRequest {
        message,
        configuration,
        metadata,
        tenant: None,
    })
}

fn message_to_v1(mut message: Map<String, Value>) -> Value {
    message.remove("kind");
    let role = match message.get("role").and_then(Value::as_str) {
        Some("agent") => "ROLE_AGENT",
        _ => "ROLE_USER",
    };
    message.insert("role".into(), json!(role));
    if let Some(Value::Array(parts)) = message.get_mut("parts") {
        for part in parts.iter_mut() {
            if let Value::Object(part) = part {
                part_to_v1(part);
            }
        }
    }
    Value::Object(message)
}

fn part_to_v1(part: &mut Map<String, Value>) {
    let kind = part.remove("kind");
    if kind.as_ref().and_then(Value::as_str) == Some("file")
        && let Some(Value::Object(file)) = part.remove("file")
    {
        if let Some(uri) = file.get("uri") {
            part.insert("url".into(), uri.clone());
        }
        if let Some(bytes) = file.get("bytes") {
            part.insert("raw".into(), bytes.clone());
        }
        if let Some(mime) = file.get("mimeType") {
            part.insert("mediaType".into(), mime.clone());
        }
    }
}

/// A 1.0 object (a task, a message, an event) in its 0.3 shape.
pub fn to_v03(value: Value) -> Value {
    match value {
        Value::Object(mut object) => {
            if let Some(task) = object.remove("task") {
                return kinded(task, "task");
            }
            if let Some(message) = object.remove("message") {
                return kinded(message, "message");
            }
            if let Some(update) = object.remove("statusUpdate") {
                let mut update = kinded(update, "status-update");
                let terminal = matches!(
                    update["status"]["state"].as_str(),
                    Some("completed" | "canceled" | "failed" | "rejected")
                );
                update["final"] = json!(terminal);
                return update;
            }
            if let Some(update) = object.remove("artifactUpdate") {
                return kinded(update, "artifact-update");
            }
            kinded(Value::Object(object), "task")
        }
        other => other,
    }
}

/// A 1.0 stream event in its 0.3 shape.
pub fn event_to_v03(event: &StreamResponse) -> Value {
    to_v03(serde_json::to_value(event).unwrap_or_default())
}

fn kinded(value: Value, kind: &str) -> Value {
    let Value::Object(mut object) = value else {
        return value;
    };
    translate_fields(&mut object);
    object.insert("kind".into(), json!(kind));
    Value::Object(object)
}

/// Rewrites, in place, what differs between 1.0 and 0.3 below an object.
fn translate_fields(object: &mut Map<String, Value>) {
    if let Some(Value::Object(status)) = object.get_mut("status") {
        let state = status
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or_default();
        status.insert("state".into(), json!(state_to_v03(state)));
        if let Some(Value::Object(message)) = status.get_mut("message") {
            message_to_v03(message);
        }
    }
    if let Some(Value::Array(messages)) = object.get_mut("history") {
        for message in messages.iter_mut() {
            if let Value::Object(message) = message {
                message_to_v03(message);
            }
        }
    }
    if let Some(Value::Array(artifacts)) = object.get_mut("artifacts") {
        for artifact in artifacts.iter_mut() {
            if let Value::Object(artifact) = artifact {
                parts_to_v03(artifact);
            }
        }
    }
    if let Some(Value::Object(artifact)) = object.get_mut("artifact") {
        parts_to_v03(artifact);
    }
}

fn message_to_v03(message: &mut Map<String, Value>) {
    let role = match message.get("role").and_then(Value::as_str) {
        Some("ROLE_AGENT") => "agent",
        _ => "user",
    };
    message.insert("role".into(), json!(role));
    message.insert("kind".into(), json!("message"));
    parts_to_v03(message);
}

fn parts_to_v03(holder: &mut Map<String, Value>) {
    let Some(Value::Array(parts)) = holder.get_mut("parts") else {
        return;
    };
    for part in parts.iter_mut() {
        let Value::Object(part) = part else { continue };
        if part.contains_key("text") {
            part.insert("kind".into(), json!("text"));
        } else if part.contains_key("data") {
            part.insert("kind".into(), json!("data"));
        } else {
            let mut file = Map::new();
            if let Some(url) = part.remove("url") {
                file.insert("uri".into(), url);
            }
            if let Some(raw) = part.remove("raw") {
                file.insert("bytes".into(), raw);
            }
            if let Some(media) = part.remove("mediaType") {
                file.insert("mimeType".into(), media);
            }
            part.insert("file".into(), Value::Object(file));
            part.insert("kind".into(), json!("file"));
        }
    }
}

fn state_to_v03(state: &str) -> &'static str {
    match state {
        "TASK_STATE_SUBMITTED" => "submitted",
        "TASK_STATE_WORKING" => "working",
        "TASK_STATE_INPUT_REQUIRED" => "input-required",
        "TASK_STATE_COMPLETED" => "completed",
        "TASK_STATE_CANCELED" => "canceled",
        "TASK_STATE_FAILED" => "failed",
        "TASK_STATE_REJECTED" => "rejected",
        "TASK_STATE_AUTH_REQUIRED" => "auth-required",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_03_message_becomes_a_10_request() {
        let params = json!({
            "message": {"kind": "message", "messageId": "m", "role": "user", "taskId": "t",
                        "parts": [{"kind": "text", "text": "hi"},
                                  {"kind": "file", "file": {"uri": "http://x/f", "mimeType": "text/plain"}}]},
            "configuration": {"blocking": false, "historyLength": 2},
        });
        let request = send_params(params).unwrap();
        assert_eq!(request.message.text(), Some("hi"));
        assert_eq!(request.message.role, a2a::Role::User);
        assert_eq!(request.message.task_id.as_deref(), Some("t"));
        assert_eq!(
            request.message.parts[1].media_type.as_deref(),
            Some("text/plain")
        );
        let configuration = request.configuration.unwrap();
        assert_eq!(configuration.return_immediately, Some(true));
        assert_eq!(configuration.history_length, Some(2));
        assert!(send_params(json!({"message": 3})).is_err());
    }

    #[test]
    fn objects_of_1_0_take_their_0_3_shapes() {
        let update = to_v03(json!({"statusUpdate": {
            "taskId": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED",
                       "message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"data": {"a": 1}}]}},
        }}));
        assert_eq!(update["kind"], "status-update");
        assert_eq!(update["final"], true);
        assert_eq!(update["status"]["state"], "completed");
        assert_eq!(update["status"]["message"]["role"], "agent");
        assert_eq!(update["status"]["message"]["parts"][0]["kind"], "data");
        let chunk = to_v03(json!({"artifactUpdate": {
            "taskId": "t", "contextId": "c", "append": true,
            "artifact": {"artifactId": "answer", "parts": [{"text": "x"}]},
        }}));
        assert_eq!(chunk["kind"], "artifact-update");
        assert_eq!(
            chunk["artifact"]["parts"][0],
            json!({"kind": "text", "text": "x"})
        );
        let task = to_v03(
            json!({"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"},
                                 "history": [{"messageId": "m", "role": "ROLE_USER", "parts": [{"url": "u"}]}]}),
        );
        assert_eq!(task["kind"], "task");
        assert_eq!(task["status"]["state"], "working");
        assert_eq!(
            task["history"][0]["parts"][0],
            json!({"kind": "file", "file": {"uri": "u"}})
        );
    }
}
