//! The request body in the OpenAI chat completions wire format: the prompt's
//! messages (chat messages, the model's earlier tool calls, tool results) and the
//! tools on offer.

use bytes::Bytes;
use serde::{Serialize, Serializer};

use super::{ModelRequest, PromptMessage, ToolCall, ToolSpec};

/// The JSON body of a streamed chat completion request for `model`, asking for at
/// most `max_tokens` tokens (0: no limit is sent).
pub(super) fn request_body(
    model: &str,
    max_tokens: u32,
    request: &ModelRequest,
) -> serde_json::Result<Bytes> {
    let body = ChatRequest {
        model,
        max_tokens: Some(max_tokens).filter(|&limit| limit > 0),
        messages: &request.messages,
        tools: request
            .tools
            .iter()
            .map(|function| WireTool {
                kind: "function",
                function,
            })
            .collect(),
        stream: true,
    };
    serde_json::to_vec(&body).map(Bytes::from)
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    /// Left out when not configured, so the server's own limit applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    messages: &'a [PromptMessage],
    /// Left out when there are none: some servers reject an empty list.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tools: Vec<WireTool<'a>>,
    stream: bool,
}

/// A tool as the OpenAI API takes it.
#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: &'a ToolSpec,
}

/// An assistant message that called tools. `content` is `null` when the model
/// wrote nothing besides the calls, as the OpenAI API itself sends it back.
#[derive(Serialize)]
struct WireToolCallsMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    tool_calls: Vec<WireToolCall<'a>>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    /// JSON text, as the model wrote it.
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireToolResult<'a> {
    role: &'static str,
    tool_call_id: &'a str,
    content: &'a str,
}

impl Serialize for PromptMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PromptMessage::Chat(message) => message.serialize(serializer),
            PromptMessage::ToolCalls { text, calls } => WireToolCallsMessage {
                role: "assistant",
                content: Some(text.as_str()).filter(|text| !text.is_empty()),
                tool_calls: calls.iter().map(WireToolCall::from).collect(),
            }
            .serialize(serializer),
            PromptMessage::ToolResult { call_id, content } => WireToolResult {
                role: "tool",
                tool_call_id: call_id,
                content,
            }
            .serialize(serializer),
        }
    }
}

impl<'a> From<&'a ToolCall> for WireToolCall<'a> {
    fn from(call: &'a ToolCall) -> Self {
        WireToolCall {
            id: &call.id,
            kind: "function",
            function: WireFunction {
                name: &call.name,
                arguments: &call.arguments,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::conversation::ChatMessage;

    fn docs_call(id: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "docs".into(),
            arguments: arguments.into(),
        }
    }

    fn wire(message: PromptMessage) -> Value {
        serde_json::to_value(message).unwrap()
    }

    #[test]
    fn chat_message() {
        assert_eq!(
            wire(ChatMessage::user("hi").into()),
            json!({"role": "user", "content": "hi"})
        );
    }

    #[test]
    fn tool_calls_without_text_have_null_content() {
        let message = PromptMessage::ToolCalls {
            text: String::new(),
            calls: vec![
                docs_call("call_1", r#"{"query":"rust"}"#),
                docs_call("call_2", "not json"),
            ],
        };
        assert_eq!(
            wire(message),
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "docs", "arguments": "{\"query\":\"rust\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "docs", "arguments": "not json"}},
                ],
            })
        );
    }

    #[test]
    fn tool_calls_with_text_keep_it() {
        let message = PromptMessage::ToolCalls {
            text: "Let me look.".into(),
            calls: vec![docs_call("call_1", "{}")],
        };
        let value = wire(message);
        assert_eq!(value["content"], "Let me look.");
        assert_eq!(value["tool_calls"][0]["id"], "call_1");
    }

    #[test]
    fn tool_result() {
        let message = PromptMessage::ToolResult {
            call_id: "call_1".into(),
            content: "[1] Actors: ...".into(),
        };
        assert_eq!(
            wire(message),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "[1] Actors: ..."})
        );
    }

    fn body(request: &ModelRequest) -> Value {
        serde_json::from_slice(&request_body("test-model", 0, request).unwrap()).unwrap()
    }

    #[test]
    fn request_with_tools() {
        let parameters = json!({
            "type": "object",
            "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
            "required": ["query"],
        });
        let request = ModelRequest {
            messages: vec![
                ChatMessage::user("what are actors?").into(),
                PromptMessage::ToolCalls {
                    text: String::new(),
                    calls: vec![docs_call("call_1", r#"{"query":"actors"}"#)],
                },
                PromptMessage::ToolResult {
                    call_id: "call_1".into(),
                    content: "Actors are...".into(),
                },
            ],
            tools: vec![ToolSpec {
                name: "docs".into(),
                description: "The project's documentation".into(),
                parameters: parameters.clone(),
            }],
        };
        let body = body(&request);
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["tools"],
            json!([{
                "type": "function",
                "function": {
                    "name": "docs",
                    "description": "The project's documentation",
                    "parameters": parameters,
                },
            }])
        );
        let roles: Vec<_> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "tool"]);
        assert_eq!(body["messages"][1]["content"], Value::Null);
        assert_eq!(body["messages"][2]["tool_call_id"], "call_1");
    }

    #[test]
    fn request_without_tools_leaves_them_out() {
        let request = ModelRequest {
            messages: vec![ChatMessage::user("hi").into()],
            tools: Vec::new(),
        };
        let body = body(&request);
        assert_eq!(
            body,
            json!({
                "model": "test-model",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
            })
        );
    }

    #[test]
    fn max_tokens_is_sent_unless_zero() {
        let request = ModelRequest {
            messages: vec![ChatMessage::user("hi").into()],
            tools: Vec::new(),
        };
        let limited: Value =
            serde_json::from_slice(&request_body("test-model", 3, &request).unwrap()).unwrap();
        assert_eq!(limited["max_tokens"], 3);
        assert!(body(&request).get("max_tokens").is_none());
    }
}
