//! How the mock decides what to reply: plain text, tool calls, or the answer from
//! tool results, with or without reasoning first (the rules are in the crate docs).

use crate::answer::expected_answer;
use crate::cited::expected_cited_answer;
use crate::markers::ReplyMarkers;
use crate::request::{CompletionRequest, ends_with_user, trailing_tool_results};
use crate::tools::{MAX_TOOL_CALLS, MockToolCall, break_arguments, mock_tool_call};

/// What the mock replies to one request (failures aside).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Thinking streamed as `reasoning_content` before the rest, when asked for.
    pub(crate) reasoning: Option<String>,
    pub(crate) body: ReplyBody,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyBody {
    /// An answer (`finish_reason` `stop`).
    Text(String),
    /// Tool calls, never empty (`finish_reason` `tool_calls`).
    ToolCalls(Vec<MockToolCall>),
}

/// The mock's reasoning (`[mock:reasoning]`) before replying to a conversation
/// whose last user message is `last_user_message`.
pub fn expected_reasoning(last_user_message: &str) -> String {
    format!("Thinking about \"{last_user_message}\".")
}

impl Reply {
    /// The reply to `request`, whose last user message is `last_user` and which
    /// holds `turn` user messages; `call_tools` is the server's `--tools`.
    pub(crate) fn decide(
        request: &CompletionRequest,
        last_user: &str,
        turn: usize,
        call_tools: bool,
    ) -> Reply {
        let markers = ReplyMarkers::find(last_user);
        let reasoning = markers.reasoning.then(|| expected_reasoning(last_user));
        let results = trailing_tool_results(&request.messages);
        // Once results are back, only an answer ends the loop: call markers are
        // ignored, or the model would call tools forever.
        let body = if !results.is_empty() {
            ReplyBody::Text(expected_cited_answer(last_user, &results))
        } else {
            match tool_calls(request, &markers, last_user, turn, call_tools) {
                Some(calls) => ReplyBody::ToolCalls(calls),
                None => ReplyBody::Text(expected_answer(last_user, turn)),
            }
        };
        Reply { reasoning, body }
    }

    /// The `finish_reason` that ends this reply.
    pub(crate) fn finish_reason(&self) -> &'static str {
        match self.body {
            ReplyBody::Text(_) => "stop",
            ReplyBody::ToolCalls(_) => "tool_calls",
        }
    }
}

/// The calls to make, if any: only when tools are offered and the turn has not
/// called any yet; the tools named by markers, or else (with `--tools` or the
/// broken-arguments marker) every offered tool that takes a `query`.
fn tool_calls(
    request: &CompletionRequest,
    markers: &ReplyMarkers,
    last_user: &str,
    turn: usize,
    call_tools: bool,
) -> Option<Vec<MockToolCall>> {
    let offered = request.offered_tools();
    if offered.is_empty() || !ends_with_user(&request.messages) {
        return None;
    }
    let names: Vec<&str> = if !markers.tools.is_empty() {
        markers.tools.clone()
    } else if call_tools || markers.ask_for_calls() {
        offered
            .iter()
            .filter(|tool| tool.takes_query)
            .map(|tool| tool.name.as_str())
            .collect()
    } else {
        Vec::new()
    };
    let mut calls: Vec<MockToolCall> = names
        .into_iter()
        .take(MAX_TOOL_CALLS)
        .enumerate()
        .map(|(index, name)| mock_tool_call(index, name, last_user, turn))
        .collect();
    if markers.broken_arguments
        && let Some(first) = calls.first_mut()
    {
        break_arguments(first);
    }
    (!calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cited::NOTHING_FOUND_ANSWER;
    use crate::request::last_user_and_turn;

    const QUERY_TOOL: &str = r#"{"type":"function","function":{"name":"docs","parameters":{"type":"object","properties":{"query":{"type":"string"}}}}}"#;
    const OTHER_TOOL: &str = r#"{"type":"function","function":{"name":"clock","parameters":{}}}"#;

    fn request(messages: serde_json::Value, tools: &[&str]) -> CompletionRequest {
        let tools: Vec<serde_json::Value> = tools
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        serde_json::from_value(json!({"messages": messages, "tools": tools})).unwrap()
    }

    fn decide(request: &CompletionRequest, call_tools: bool) -> Reply {
        let (last, turn) = last_user_and_turn(&request.messages);
        Reply::decide(request, &last, turn, call_tools)
    }

    fn called(reply: &Reply) -> Vec<&str> {
        match &reply.body {
            ReplyBody::ToolCalls(calls) => calls.iter().map(|c| c.name.as_str()).collect(),
            ReplyBody::Text(text) => panic!("answered {text:?}"),
        }
    }

    fn user(text: &str) -> serde_json::Value {
        json!([{"role": "user", "content": text}])
    }

    #[test]
    fn plain_answer_unless_tools_are_asked_for() {
        let plain = Reply {
            reasoning: None,
            body: ReplyBody::Text(expected_answer("hi", 1)),
        };
        assert_eq!(decide(&request(user("hi"), &[]), true), plain);
        assert_eq!(decide(&request(user("hi"), &[QUERY_TOOL]), false), plain);
        // Offered, but none takes a query.
        assert_eq!(decide(&request(user("hi"), &[OTHER_TOOL]), true), plain);
        // Markers need at least one tool offered.
        assert_eq!(
            decide(&request(user("[mock:tool=docs]"), &[]), true).finish_reason(),
            "stop"
        );
    }

    #[test]
    fn calls_every_offered_query_tool_up_to_three() {
        let tools: Vec<String> = (0..5)
            .map(|i| QUERY_TOOL.replace("\"docs\"", &format!("\"t{i}\"")))
            .collect();
        let mut offered: Vec<&str> = tools.iter().map(String::as_str).collect();
        offered.insert(1, OTHER_TOOL);
        let reply = decide(&request(user("q"), &offered), true);
        assert_eq!(called(&reply), ["t0", "t1", "t2"]);
        assert_eq!(reply.finish_reason(), "tool_calls");
        let ReplyBody::ToolCalls(calls) = &reply.body else {
            unreachable!()
        };
        assert_eq!(calls[1], mock_tool_call(1, "t1", "q", 1));
    }

    #[test]
    fn markers_name_tools_and_break_arguments() {
        let named = decide(&request(user("[mock:tool=nope] x"), &[QUERY_TOOL]), false);
        assert_eq!(called(&named), ["nope"]);
        let broken = decide(
            &request(user("[mock:tool-args=broken]"), &[QUERY_TOOL]),
            false,
        );
        let ReplyBody::ToolCalls(calls) = &broken.body else {
            unreachable!()
        };
        assert_eq!(calls[0].name, "docs");
        assert!(serde_json::from_str::<serde_json::Value>(&calls[0].arguments).is_err());
    }

    #[test]
    fn tool_results_get_the_cited_answer_and_markers_are_ignored() {
        let messages = json!([
            {"role": "user", "content": "[mock:tool=docs] [mock:reasoning] q"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_0_x", "content": "[^p1] T\nFound it. More."},
        ]);
        let reply = decide(&request(messages, &[QUERY_TOOL]), true);
        assert_eq!(
            reply.body,
            ReplyBody::Text(expected_cited_answer(
                "[mock:tool=docs] [mock:reasoning] q",
                &["[^p1] T\nFound it. More."]
            ))
        );
        assert_eq!(
            reply.reasoning.as_deref(),
            Some("Thinking about \"[mock:tool=docs] [mock:reasoning] q\".")
        );
        // Results that cite nothing.
        let messages = json!([
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "a", "content": "error: no such tool"},
        ]);
        let reply = decide(&request(messages, &[QUERY_TOOL]), true);
        assert_eq!(reply.body, ReplyBody::Text(NOTHING_FOUND_ANSWER.into()));
    }

    #[test]
    fn no_calls_once_the_turn_has_moved_past_the_user() {
        let messages =
            json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]);
        let reply = decide(&request(messages, &[QUERY_TOOL]), true);
        assert_eq!(reply.body, ReplyBody::Text(expected_answer("q", 1)));
    }
}
