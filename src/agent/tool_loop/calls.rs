//! One round of tool calls: all run at once, each reported as it starts and as it
//! ends, and their results put in the order the model made the calls.

use std::time::Duration;

use futures_util::future::{self, BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use super::Emitter;
use crate::agent::AgentEvent;
use crate::agent::llm::{PromptMessage, ToolCall};
use crate::agent::tools::{ToolError, ToolOutput, Toolbox};
use crate::conversation::{SourceReferences, ToolActivity, ToolStatus, TurnEvent};

/// Runs `calls` concurrently, each under `timeout`, with the tools of `tools`.
/// Emits a `working` event per call, a `done` or `error` event per call as it ends,
/// then the round's references (when there are any). Answers one tool result per
/// call, in the calls' order; a failed call's result tells the model what went wrong.
pub(super) async fn run_round(
    calls: &[ToolCall],
    tools: &Toolbox,
    timeout: Duration,
    emit: &Emitter,
) -> Vec<PromptMessage> {
    let mut running = FuturesUnordered::new();
    for (index, call) in calls.iter().enumerate() {
        let arguments = parse_arguments(&call.arguments);
        let tool = tools.get(&call.name);
        let activity = ToolActivity {
            call_id: call.id.clone(),
            name: call.name.clone(),
            label: tool.map_or_else(|| call.name.clone(), |tool| tool.label().to_owned()),
            status: ToolStatus::Working,
            arguments: arguments
                .as_ref()
                .map_or_else(|_| Value::Object(Default::default()), Value::clone),
            output: None,
        };
        emit.send(Ok(AgentEvent::Event(TurnEvent::Tool(activity.clone()))))
            .await;
        let outcome: BoxFuture<'static, Result<ToolOutput, ToolError>> = match (tool, arguments) {
            (None, _) => future::ready(Err(not_offered(&call.name, tools))).boxed(),
            (Some(_), Err(error)) => future::ready(Err(error)).boxed(),
            (Some(tool), Ok(arguments)) => {
                let call = tool.call(arguments);
                async move {
                    tokio::time::timeout(timeout, call)
                        .await
                        .unwrap_or(Err(ToolError::TimedOut(timeout)))
                }
                .boxed()
            }
        };
        let started = Instant::now();
        running.push(outcome.map(move |result| (index, activity, started.elapsed(), result)));
    }

    let mut results: Vec<Option<String>> = vec![None; calls.len()];
    let mut found: Vec<Option<SourceReferences>> = vec![None; calls.len()];
    while let Some((index, mut activity, elapsed, result)) = running.next().await {
        let elapsed_ms = crate::telemetry::millis(elapsed);
        match result {
            Ok(output) => {
                tracing::debug!(tool = %activity.name, call_id = %activity.call_id, elapsed_ms, "tool call done");
                activity.status = ToolStatus::Done;
                activity.output = Some(cut(&output.text, ToolActivity::MAX_OUTPUT_BYTES));
                results[index] = Some(output.text);
                found[index] = output.references;
            }
            Err(error) => {
                tracing::debug!(tool = %activity.name, call_id = %activity.call_id, elapsed_ms, %error, "tool call failed");
                let problem = error.to_string();
                activity.status = ToolStatus::Error;
                activity.output = Some(cut(&problem, ToolActivity::MAX_OUTPUT_BYTES));
                results[index] = Some(format!("error: {problem}"));
            }
        }
        emit.send(Ok(AgentEvent::Event(TurnEvent::Tool(activity))))
            .await;
    }

    let sources = merge_references(found.into_iter().flatten());
    if !sources.is_empty() {
        emit.send(Ok(AgentEvent::Event(TurnEvent::References { sources })))
            .await;
    }
    calls
        .iter()
        .zip(results)
        .map(|(call, content)| PromptMessage::ToolResult {
            call_id: call.id.clone(),
            content: content.expect("every call has ended"),
        })
        .collect()
}

/// The model's arguments as JSON. Blank arguments count as `{}`: some models send
/// nothing for a call they mean to make without arguments.
fn parse_arguments(arguments: &str) -> Result<Value, ToolError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(arguments)
        .map_err(|error| ToolError::InvalidArguments(format!("they are not JSON ({error})")))
}

fn not_offered(name: &str, tools: &Toolbox) -> ToolError {
    let available = tools.names().collect::<Vec<_>>().join(", ");
    ToolError::NotOffered {
        name: name.to_owned(),
        available: if available.is_empty() {
            "none".to_owned()
        } else {
            available
        },
    }
}

/// The references of a round: one entry per source, in the order the sources
/// were first searched; a passage found by two calls is listed once, where it was
/// first found.
fn merge_references(found: impl IntoIterator<Item = SourceReferences>) -> Vec<SourceReferences> {
    let mut merged: Vec<SourceReferences> = Vec::new();
    for references in found {
        let position = match merged.iter().position(|known| known.id == references.id) {
            Some(position) => position,
            None => {
                merged.push(SourceReferences {
                    items: Vec::new(),
                    ..references.clone()
                });
                merged.len() - 1
            }
        };
        let into = &mut merged[position].items;
        for item in references.items {
            if into.iter().all(|known| known.id != item.id) {
                into.push(item);
            }
        }
    }
    merged.retain(|source| !source.items.is_empty());
    merged
}

/// `text` cut to at most `max_bytes`, at a character boundary.
fn cut(text: &str, max_bytes: usize) -> String {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Reference;

    fn reference(id: &str) -> Reference {
        Reference {
            id: id.into(),
            title: format!("title of {id}"),
            snippet: String::new(),
            url: None,
            score: 1.0,
        }
    }

    fn source(id: &str, items: &[&str]) -> SourceReferences {
        SourceReferences {
            id: id.into(),
            name: id.to_uppercase(),
            items: items.iter().map(|item| reference(item)).collect(),
        }
    }

    #[test]
    fn references_merge_per_source_without_repeating_a_passage() {
        let merged = merge_references([
            source("a", &["a1", "a2"]),
            source("b", &["b1"]),
            source("a", &["a2", "a3"]),
            source("c", &[]),
        ]);
        assert_eq!(
            merged,
            [source("a", &["a1", "a2", "a3"]), source("b", &["b1"])]
        );
    }

    #[test]
    fn output_is_cut_at_a_character_boundary() {
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut("hello", 3), "hel");
        // "é" takes two bytes: cutting inside it keeps the character out.
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
    }

    #[test]
    fn blank_arguments_are_an_empty_object_and_broken_ones_an_error() {
        assert_eq!(parse_arguments(" ").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_arguments(r#"{"query":"x"}"#).unwrap(),
            serde_json::json!({"query": "x"})
        );
        let error = parse_arguments(r#"{"query":"#).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid arguments: they are not JSON"),
            "{error}"
        );
    }
}
