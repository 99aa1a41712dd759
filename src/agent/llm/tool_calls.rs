//! Assembling the tool calls of a streamed answer from their fragments.
//!
//! OpenAI-compatible servers stream each call as fragments in
//! `choices[0].delta.tool_calls`: `{index, id?, type?, function: {name?, arguments?}}`.
//! The id and the name come with the first fragment of an index; the arguments are
//! JSON text cut into pieces over many events. One answer may make several calls,
//! and the fragments of different calls may interleave.
//!
//! The assembler is forgiving, because what a model wrote is the agent loop's to
//! judge (it tells the model what was wrong, and the model may try again):
//!
//! - the arguments are passed on exactly as written, even when they are not valid JSON;
//! - a call without an id gets `call_<index>`, so its result can still be sent back;
//! - a fragment without an index continues the latest call, unless it brings an id
//!   of its own, which starts the next call (some servers leave the index out);
//! - the first id and the first name of a call win: servers that repeat them in
//!   every fragment do not get them doubled;
//! - a call that never got a name is dropped (with a warning): no tool can answer
//!   it, and sending a nameless call back in the prompt may make the server reject
//!   the whole next request.

use serde::Deserialize;

use super::ToolCall;

/// One fragment of a streamed tool call, as the server sends it.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(super) struct ToolCallFragment {
    #[serde(default)]
    pub index: Option<usize>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionFragment>,
}

/// The `function` part of a fragment.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(super) struct FunctionFragment {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// A call whose fragments are still arriving.
#[derive(Debug)]
struct PartialCall {
    index: usize,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// Collects the fragments of one answer's tool calls; [`finish`](Self::finish)
/// gives the whole calls ordered by index.
#[derive(Debug, Default)]
pub(super) struct ToolCallAssembler {
    /// In order of first appearance; a call is found by its index.
    calls: Vec<PartialCall>,
}

impl ToolCallAssembler {
    /// Adds one fragment to its call, starting the call if it is the first.
    pub fn push(&mut self, fragment: ToolCallFragment) {
        let ToolCallFragment {
            index,
            id,
            function,
        } = fragment;
        let id = id.filter(|id| !id.is_empty());
        let call = match index {
            Some(index) => self.call_at(index),
            None => self.call_without_index(id.as_deref()),
        };
        if call.id.is_none() {
            call.id = id;
        }
        let Some(FunctionFragment { name, arguments }) = function else {
            return;
        };
        if call.name.is_none() {
            call.name = name.filter(|name| !name.is_empty());
        }
        if let Some(arguments) = arguments {
            call.arguments.push_str(&arguments);
        }
    }

    /// The assembled calls, ordered by index; nameless calls are dropped.
    pub fn finish(self) -> Vec<ToolCall> {
        let mut calls = self.calls;
        calls.sort_by_key(|call| call.index);
        calls
            .into_iter()
            .filter_map(|call| {
                let id = call.id.unwrap_or_else(|| format!("call_{}", call.index));
                let Some(name) = call.name else {
                    tracing::warn!(
                        index = call.index,
                        call_id = %id,
                        argument_bytes = call.arguments.len(),
                        "the model made a tool call without a name; it is dropped"
                    );
                    return None;
                };
                Some(ToolCall {
                    id,
                    name,
                    arguments: call.arguments,
                })
            })
            .collect()
    }

    /// The call at `index`, started if new. Calls are few and fragments mostly
    /// continue the latest call, so a search from the end is cheapest.
    fn call_at(&mut self, index: usize) -> &mut PartialCall {
        match self.calls.iter().rposition(|call| call.index == index) {
            Some(position) => &mut self.calls[position],
            None => self.start(index),
        }
    }

    /// The call a fragment without an index belongs to: the latest one, unless the
    /// fragment's id says it starts another.
    fn call_without_index(&mut self, id: Option<&str>) -> &mut PartialCall {
        let continues_latest = match (self.calls.last(), id) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(latest), Some(id)) => latest.id.as_deref().is_none_or(|own| own == id),
        };
        if continues_latest {
            let last = self.calls.len() - 1;
            return &mut self.calls[last];
        }
        let next = self.calls.iter().map(|call| call.index + 1).max();
        self.start(next.unwrap_or(0))
    }

    fn start(&mut self, index: usize) -> &mut PartialCall {
        self.calls.push(PartialCall {
            index,
            id: None,
            name: None,
            arguments: String::new(),
        });
        let last = self.calls.len() - 1;
        &mut self.calls[last]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A fragment as the server would send it, parsed from its JSON.
    fn fragment(json: serde_json::Value) -> ToolCallFragment {
        serde_json::from_value(json).unwrap()
    }

    fn assemble(fragments: Vec<serde_json::Value>) -> Vec<ToolCall> {
        let mut assembler = ToolCallAssembler::default();
        for json in fragments {
            assembler.push(fragment(json));
        }
        assembler.finish()
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn nothing_pushed_gives_no_calls() {
        assert_eq!(ToolCallAssembler::default().finish(), Vec::new());
    }

    #[test]
    fn arguments_arrive_in_fragments() {
        let calls = assemble(vec![
            json!({"index": 0, "id": "call_abc", "type": "function",
                   "function": {"name": "docs", "arguments": ""}}),
            json!({"index": 0, "function": {"arguments": "{\"qu"}}),
            json!({"index": 0, "function": {"arguments": "ery\": \"rust"}}),
            json!({"index": 0, "function": {"arguments": " actors\"}"}}),
        ]);
        assert_eq!(
            calls,
            vec![call("call_abc", "docs", r#"{"query": "rust actors"}"#)]
        );
    }

    #[test]
    fn several_calls_one_after_the_other() {
        let calls = assemble(vec![
            json!({"index": 0, "id": "a", "function": {"name": "docs", "arguments": "{\"query\":"}}),
            json!({"index": 0, "function": {"arguments": "\"x\"}"}}),
            json!({"index": 1, "id": "b", "function": {"name": "wiki", "arguments": "{}"}}),
            json!({"index": 2, "id": "c", "function": {"name": "docs"}}),
            json!({"index": 2, "function": {"arguments": "{\"query\":\"y\"}"}}),
        ]);
        assert_eq!(
            calls,
            vec![
                call("a", "docs", r#"{"query":"x"}"#),
                call("b", "wiki", "{}"),
                call("c", "docs", r#"{"query":"y"}"#),
            ]
        );
    }

    #[test]
    fn interleaved_indices_are_kept_apart_and_ordered_by_index() {
        let calls = assemble(vec![
            json!({"index": 1, "id": "second", "function": {"name": "wiki", "arguments": "{\"q"}}),
            json!({"index": 0, "id": "first", "function": {"name": "docs", "arguments": "{\"q"}}),
            json!({"index": 1, "function": {"arguments": "uery\":\"b\"}"}}),
            json!({"index": 0, "function": {"arguments": "uery\":\"a\"}"}}),
        ]);
        assert_eq!(
            calls,
            vec![
                call("first", "docs", r#"{"query":"a"}"#),
                call("second", "wiki", r#"{"query":"b"}"#),
            ]
        );
    }

    #[test]
    fn a_call_without_an_id_gets_one_from_its_index() {
        let calls = assemble(vec![
            json!({"index": 0, "id": "", "function": {"name": "docs", "arguments": "{}"}}),
            json!({"index": 3, "function": {"name": "wiki", "arguments": "{}"}}),
        ]);
        assert_eq!(
            calls,
            vec![call("call_0", "docs", "{}"), call("call_3", "wiki", "{}")]
        );
    }

    #[test]
    fn arguments_split_in_the_middle_of_an_escape() {
        // The arguments text holds the escapes `\"` and `\u00e9`; the model's fragments
        // cut through both.
        let calls = assemble(vec![
            json!({"index": 0, "id": "a", "function": {"name": "docs", "arguments": r#"{"query":"say \"#}}),
            json!({"index": 0, "function": {"arguments": r#""hi\" caf\u00"#}}),
            json!({"index": 0, "function": {"arguments": r#"e9"}"#}}),
        ]);
        let arguments = &calls[0].arguments;
        assert_eq!(arguments, r#"{"query":"say \"hi\" caf\u00e9"}"#);
        let parsed: serde_json::Value = serde_json::from_str(arguments).unwrap();
        assert_eq!(parsed["query"], "say \"hi\" café");
    }

    #[test]
    fn malformed_arguments_are_kept_verbatim() {
        let calls = assemble(vec![
            json!({"index": 0, "id": "a", "function": {"name": "docs", "arguments": "{\"query\": "}}),
            json!({"index": 0, "function": {"arguments": "oops,,"}}),
        ]);
        assert_eq!(calls, vec![call("a", "docs", "{\"query\": oops,,")]);
        assert!(serde_json::from_str::<serde_json::Value>(&calls[0].arguments).is_err());
    }

    #[test]
    fn a_call_without_a_name_is_dropped() {
        let calls = assemble(vec![
            json!({"index": 0, "id": "nameless", "function": {"arguments": "{}"}}),
            json!({"index": 1, "id": "named", "function": {"name": "docs", "arguments": "{}"}}),
        ]);
        assert_eq!(calls, vec![call("named", "docs", "{}")]);
    }

    #[test]
    fn repeated_ids_and_names_are_not_doubled() {
        let calls = assemble(vec![
            json!({"index": 0, "id": "a", "function": {"name": "docs", "arguments": "{\"query\""}}),
            json!({"index": 0, "id": "a", "function": {"name": "docs", "arguments": ":\"x\"}"}}),
        ]);
        assert_eq!(calls, vec![call("a", "docs", r#"{"query":"x"}"#)]);
    }

    #[test]
    fn fragments_without_an_index_follow_their_id() {
        let calls = assemble(vec![
            json!({"id": "a", "function": {"name": "docs", "arguments": "{\"query\":"}}),
            json!({"function": {"arguments": "\"x\"}"}}),
            json!({"id": "b", "function": {"name": "wiki", "arguments": "{}"}}),
            json!({"id": "b", "function": {"arguments": ""}}),
        ]);
        assert_eq!(
            calls,
            vec![
                call("a", "docs", r#"{"query":"x"}"#),
                call("b", "wiki", "{}")
            ]
        );
    }
}
