//! What one server-sent event of a chat completion stream means: the end of the
//! stream, an error, or a `chat.completion.chunk` with some answer text, some
//! reasoning, some tool-call fragments and maybe the finish reason.

use std::fmt;

use super::sse::SseEvent;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error_text::{error_message, excerpt};
use super::tool_calls::ToolCallFragment;
use crate::agent::AgentError;
use crate::conversation::FinishReason;

/// What one server-sent event of a chat completion stream means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SseItem {
    /// `data: [DONE]`: the stream is over.
    Done,
    /// A `chat.completion.chunk`.
    Chunk(Chunk),
}

/// What a `chat.completion.chunk` brings; empty strings count as nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Chunk {
    /// The next piece of answer text.
    pub content: Option<String>,
    /// The next piece of the model's reasoning.
    pub reasoning: Option<String>,
    /// Fragments of the tool calls being made; empty (no allocation) in text chunks.
    pub tool_calls: Vec<ToolCallFragment>,
    pub finish: Option<FinishReason>,
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default, deserialize_with = "first_choice")]
    choices: Option<StreamChoice>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<StreamDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct StreamDelta {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek, llama.cpp and older vLLM.
    #[serde(default, deserialize_with = "text_or_nothing")]
    reasoning_content: Option<String>,
    /// Ollama, OpenRouter and newer vLLM.
    #[serde(default, deserialize_with = "text_or_nothing")]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallFragment>>,
}

/// Deserializes only the first element of `choices` (parlor asks for one), so the
/// per-chunk path allocates nothing but the text itself.
fn first_choice<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StreamChoice>, D::Error> {
    struct FirstChoice;

    impl<'de> Visitor<'de> for FirstChoice {
        type Value = Option<StreamChoice>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of choices")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<StreamChoice>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }

    deserializer.deserialize_any(FirstChoice)
}

/// A string, or nothing for any other value. The reasoning fields are extras that
/// not every server shapes the same way: one that sends something other than text
/// there must not spoil an answer that is otherwise fine.
fn text_or_nothing<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct TextOrNothing;

    impl<'de> Visitor<'de> for TextOrNothing {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or any other value")
        }

        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_owned()))
        }

        fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
            Ok(Some(text))
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    deserializer.deserialize_any(TextOrNothing)
}

/// Interprets one event. Role-only, empty and `null` deltas carry nothing.
pub(super) fn parse_event(event: &SseEvent) -> Result<SseItem, AgentError> {
    let data = event.data.trim();
    if event.event == "error" {
        let message = match serde_json::from_str::<serde_json::Value>(data) {
            Ok(value) => error_message(&value),
            Err(_) => data.to_owned(),
        };
        return Err(AgentError::Upstream(format!(
            "the model sent an error: {}",
            excerpt(&message)
        )));
    }
    parse_data(data)
}

/// Interprets the `data` of one event.
fn parse_data(data: &str) -> Result<SseItem, AgentError> {
    if data == "[DONE]" {
        return Ok(SseItem::Done);
    }
    let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
        AgentError::Upstream(format!(
            "the model sent an unreadable event ({e}): {}",
            excerpt(data)
        ))
    })?;
    if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
        return Err(AgentError::Upstream(format!(
            "the model sent an error: {}",
            excerpt(&error_message(&serde_json::json!({ "error": error })))
        )));
    }
    let Some(choice) = chunk.choices else {
        return Ok(SseItem::Chunk(Chunk::default()));
    };
    let finish = match choice.finish_reason.as_deref() {
        None | Some("") => None,
        Some("length") => Some(FinishReason::Length),
        // `tool_calls` (and the older `function_call`) end an answer that asked for
        // tools: the calls are reported on their own, so the answer simply stopped.
        // Anything else (`stop`, `content_filter`, ...) stops it too.
        Some(_) => Some(FinishReason::Stop),
    };
    let Some(delta) = choice.delta else {
        return Ok(SseItem::Chunk(Chunk {
            finish,
            ..Chunk::default()
        }));
    };
    Ok(SseItem::Chunk(Chunk {
        content: non_empty(delta.content),
        // Servers moving from one name to the other may send both, with the same
        // text: only one is taken.
        reasoning: non_empty(delta.reasoning_content).or_else(|| non_empty(delta.reasoning)),
        tool_calls: delta.tool_calls.unwrap_or_default(),
        finish,
    }))
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::tool_calls::FunctionFragment;

    fn chunk(data: &str) -> Chunk {
        match parse_data(data) {
            Ok(SseItem::Chunk(chunk)) => chunk,
            other => panic!("not a chunk: {other:?}"),
        }
    }

    fn finish_of(reason: &str) -> Option<FinishReason> {
        let data =
            format!(r#"{{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#);
        chunk(&data).finish
    }

    #[test]
    fn done_marker() {
        assert_eq!(parse_data("[DONE]").unwrap(), SseItem::Done);
    }

    #[test]
    fn role_only_empty_null_and_choiceless_chunks_carry_nothing() {
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null,"reasoning_content":null,"tool_calls":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":""}}]}"#,
            r#"{"choices":[],"usage":{"total_tokens":3}}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[{"index":0}]}"#,
        ] {
            assert_eq!(chunk(data), Chunk::default(), "{data}");
        }
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_of("length"), Some(FinishReason::Length));
        assert_eq!(finish_of("stop"), Some(FinishReason::Stop));
        assert_eq!(finish_of("tool_calls"), Some(FinishReason::Stop));
        assert_eq!(finish_of("content_filter"), Some(FinishReason::Stop));
        assert_eq!(finish_of(""), None);
    }

    #[test]
    fn more_than_one_choice_uses_the_first() {
        let two = r#"{"choices":[{"delta":{"content":"one"}},{"delta":{"content":"two"}}]}"#;
        assert_eq!(chunk(two).content.as_deref(), Some("one"));
    }

    #[test]
    fn reasoning_from_either_field_never_as_content() {
        let deepseek = r#"{"choices":[{"delta":{"content":null,"reasoning_content":"hmm"}}]}"#;
        let ollama = r#"{"choices":[{"delta":{"content":"","reasoning":"well"}}]}"#;
        assert_eq!(
            chunk(deepseek),
            Chunk {
                reasoning: Some("hmm".into()),
                ..Chunk::default()
            }
        );
        assert_eq!(
            chunk(ollama),
            Chunk {
                reasoning: Some("well".into()),
                ..Chunk::default()
            }
        );
    }

    #[test]
    fn both_reasoning_fields_give_the_text_once() {
        let both = r#"{"choices":[{"delta":{"reasoning_content":"a","reasoning":"a"}}]}"#;
        assert_eq!(chunk(both).reasoning.as_deref(), Some("a"));
    }

    #[test]
    fn reasoning_that_is_not_text_is_ignored() {
        let structured = r#"{"choices":[{"delta":{"content":"hi","reasoning":{"effort":"low","steps":[1,2]},"reasoning_content":7}}]}"#;
        assert_eq!(
            chunk(structured),
            Chunk {
                content: Some("hi".into()),
                ..Chunk::default()
            }
        );
    }

    #[test]
    fn tool_call_fragments_are_read() {
        let data = r#"{"choices":[{"delta":{"tool_calls":[
            {"index":0,"id":"call_1","type":"function","function":{"name":"docs","arguments":"{\"q"}},
            {"index":1,"function":{"arguments":"uery\""}}
        ]},"finish_reason":null}]}"#;
        let parsed = chunk(data);
        assert_eq!(
            parsed.tool_calls,
            vec![
                ToolCallFragment {
                    index: Some(0),
                    id: Some("call_1".into()),
                    function: Some(FunctionFragment {
                        name: Some("docs".into()),
                        arguments: Some("{\"q".into()),
                    }),
                },
                ToolCallFragment {
                    index: Some(1),
                    id: None,
                    function: Some(FunctionFragment {
                        name: None,
                        arguments: Some("uery\"".into()),
                    }),
                },
            ]
        );
        assert_eq!(parsed.content, None);
    }

    #[test]
    fn error_object_is_upstream() {
        let error = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
        assert!(
            matches!(parse_data(error), Err(AgentError::Upstream(m)) if m.contains("overloaded"))
        );
    }

    #[test]
    fn error_event_type_is_upstream() {
        let event = SseEvent {
            event: "error".into(),
            data: r#"{"message":"boom"}"#.into(),
        };
        assert!(matches!(parse_event(&event), Err(AgentError::Upstream(m)) if m.contains("boom")));
    }

    #[test]
    fn unreadable_data_is_upstream() {
        assert!(matches!(
            parse_data("{not json"),
            Err(AgentError::Upstream(m)) if m.contains("unreadable")
        ));
        let bad_fragment = r#"{"choices":[{"delta":{"tool_calls":[{"index":"first"}]}}]}"#;
        assert!(matches!(
            parse_data(bad_fragment),
            Err(AgentError::Upstream(_))
        ));
    }
}
