//! The part of a chat completion request the mock reads, and what it derives from
//! the conversation: the last user message, the turn, the tools offered and the
//! tool results that end it.

use serde::Deserialize;
use serde_json::Value;

/// The part of a chat completion request the mock reads.
#[derive(Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) messages: Vec<RequestMessage>,
    #[serde(default)]
    pub(crate) stream: bool,
    /// The most deltas (the mock's tokens) the reply may have; beyond them it is
    /// cut and ends with `finish_reason` `length`.
    #[serde(default)]
    pub(crate) max_tokens: Option<usize>,
    /// Kept as raw JSON: the mock only looks for names and a `query` parameter, and
    /// a tool it cannot read must not make the whole request fail.
    #[serde(default)]
    pub(crate) tools: Vec<Value>,
}

#[derive(Deserialize)]
pub(crate) struct RequestMessage {
    role: String,
    #[serde(default)]
    content: Option<MessageContent>,
}

/// A message's content: a string, or a list of parts of which the text parts count.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

impl MessageContent {
    fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => {
                parts.iter().filter_map(|p| p.text.as_deref()).collect()
            }
        }
    }
}

impl RequestMessage {
    fn text(&self) -> String {
        self.content
            .as_ref()
            .map(MessageContent::text)
            .unwrap_or_default()
    }
}

/// The tool offered to the model (`{"type":"function","function":{"name":...}}`).
pub(crate) struct OfferedTool {
    pub(crate) name: String,
    /// Whether its parameters have a `query` property: the tools the mock calls
    /// on its own are the ones it knows how to fill in.
    pub(crate) takes_query: bool,
}

impl CompletionRequest {
    /// The offered tools the mock can read (entries without a name are skipped).
    pub(crate) fn offered_tools(&self) -> Vec<OfferedTool> {
        self.tools
            .iter()
            .filter_map(|tool| {
                let function = &tool["function"];
                let name = function["name"].as_str()?;
                Some(OfferedTool {
                    name: name.to_owned(),
                    takes_query: function["parameters"]["properties"].get("query").is_some(),
                })
            })
            .collect()
    }
}

/// The last user message's text and the number of user messages.
pub(crate) fn last_user_and_turn(messages: &[RequestMessage]) -> (String, usize) {
    let mut users = messages.iter().filter(|m| m.role == "user");
    let turn = users.clone().count();
    let last = users.next_back().map(RequestMessage::text);
    (last.unwrap_or_default(), turn)
}

/// Whether the conversation ends with the user's message: the model has not
/// called any tool yet in this turn.
pub(crate) fn ends_with_user(messages: &[RequestMessage]) -> bool {
    messages.last().is_some_and(|m| m.role == "user")
}

/// The contents of the `tool` messages that end the conversation (the results of
/// the model's latest calls), in order; empty when it does not end with any.
pub(crate) fn trailing_tool_results(messages: &[RequestMessage]) -> Vec<String> {
    let start = messages
        .iter()
        .rposition(|m| m.role != "tool")
        .map_or(0, |last_other| last_other + 1);
    messages[start..].iter().map(RequestMessage::text).collect()
}

#[cfg(test)]
pub(crate) fn message(role: &str, content: &str) -> RequestMessage {
    RequestMessage {
        role: role.into(),
        content: Some(MessageContent::Text(content.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_user_message_and_turn() {
        let messages = [
            message("system", "be nice"),
            message("user", "first"),
            message("assistant", "You said: \"first\" (turn 1)"),
            message("user", "second one"),
        ];
        assert_eq!(last_user_and_turn(&messages), ("second one".into(), 2));
        assert!(ends_with_user(&messages));
        assert!(trailing_tool_results(&messages).is_empty());
        assert_eq!(last_user_and_turn(&[]), (String::new(), 0));
        assert!(!ends_with_user(&[]));
    }

    #[test]
    fn content_parts_count_as_text() {
        let request: CompletionRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(last_user_and_turn(&request.messages), ("ab".into(), 1));
    }

    #[test]
    fn trailing_tool_results_are_the_last_round_only() {
        let request: CompletionRequest = serde_json::from_str(
            r#"{"messages":[
                {"role":"user","content":"q"},
                {"role":"assistant","content":null,"tool_calls":[]},
                {"role":"tool","tool_call_id":"a","content":"old"},
                {"role":"assistant","content":null,"tool_calls":[]},
                {"role":"tool","tool_call_id":"b","content":"one"},
                {"role":"tool","tool_call_id":"c","content":"two"}]}"#,
        )
        .unwrap();
        assert_eq!(trailing_tool_results(&request.messages), ["one", "two"]);
        assert!(!ends_with_user(&request.messages));
        let only_tools = [message("tool", "x")];
        assert_eq!(trailing_tool_results(&only_tools), ["x"]);
    }

    #[test]
    fn offered_tools_with_and_without_a_query() {
        let request: CompletionRequest = serde_json::from_str(
            r#"{"tools":[
                {"type":"function","function":{"name":"docs","parameters":{"type":"object","properties":{"query":{"type":"string"}}}}},
                {"type":"function","function":{"name":"clock","parameters":{"type":"object","properties":{}}}},
                {"type":"function","function":{"description":"no name"}},
                "not even an object"]}"#,
        )
        .unwrap();
        let offered: Vec<(String, bool)> = request
            .offered_tools()
            .into_iter()
            .map(|t| (t.name, t.takes_query))
            .collect();
        assert_eq!(offered, [("docs".into(), true), ("clock".into(), false)]);
    }
}
