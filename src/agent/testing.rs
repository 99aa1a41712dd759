//! Test doubles for the agent: a model that answers from a script and records what
//! it was asked, and tools whose behaviour a test writes as a closure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};

use super::llm::{ChatModel, LlmEvent, LlmStream, ModelRequest, ToolCall, ToolSpec};
use super::tools::{Tool, ToolError, ToolOutput};
use super::{AgentError, AgentEvent, AgentStream};
use crate::conversation::{FinishReason, Reference, SourceReferences};

/// What one model call streams.
pub type Script = Vec<Result<LlmEvent, AgentError>>;

/// A model answering each call with the next of its scripts, in order. Clones
/// share the script and the record of requests.
#[derive(Clone, Default)]
pub struct ScriptedModel {
    scripts: Arc<Mutex<VecDeque<Script>>>,
    requests: Arc<Mutex<Vec<ModelRequest>>>,
}

impl ScriptedModel {
    pub fn new(scripts: impl IntoIterator<Item = Script>) -> Self {
        Self {
            scripts: Arc::new(Mutex::new(scripts.into_iter().collect())),
            requests: Arc::default(),
        }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl ChatModel for ScriptedModel {
    fn stream(&self, request: ModelRequest) -> LlmStream {
        self.requests.lock().unwrap().push(request);
        // A call past the script is a test's mistake; it shows as a model error.
        let script = self.scripts.lock().unwrap().pop_front().unwrap_or_else(|| {
            vec![Err(AgentError::Upstream(
                "the scripted model has no answer left".into(),
            ))]
        });
        stream::iter(script).boxed()
    }
}

/// A script that writes `text` and finishes.
pub fn answer(text: &str) -> Script {
    vec![
        Ok(LlmEvent::Delta(text.into())),
        Ok(LlmEvent::Finished(FinishReason::Stop)),
    ]
}

/// A script that calls `calls` (`(id, tool, arguments)`) and finishes.
pub fn calling(calls: &[(&str, &str, &str)]) -> Script {
    vec![
        Ok(LlmEvent::ToolCalls(tool_calls(calls))),
        Ok(LlmEvent::Finished(FinishReason::Stop)),
    ]
}

pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Vec<ToolCall> {
    calls
        .iter()
        .map(|(id, name, arguments)| ToolCall {
            id: (*id).into(),
            name: (*name).into(),
            arguments: (*arguments).into(),
        })
        .collect()
}

type Behaviour = dyn Fn(Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> + Send + Sync;

/// A tool that does what its closure says.
pub struct ScriptedTool {
    spec: ToolSpec,
    label: String,
    behaviour: Box<Behaviour>,
}

impl ScriptedTool {
    /// A tool named `name` whose calls do what `behaviour` answers.
    pub fn doing(
        name: &str,
        behaviour: impl Fn(Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>>
        + Send
        + Sync
        + 'static,
    ) -> Arc<dyn Tool> {
        Arc::new(Self {
            spec: ToolSpec {
                name: name.into(),
                description: format!("searches {name}"),
                parameters: json!({"type": "object"}),
            },
            label: name.to_uppercase(),
            behaviour: Box::new(behaviour),
        })
    }
}

impl Tool for ScriptedTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn call(&self, arguments: Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> {
        (self.behaviour)(arguments)
    }
}

/// The output of a search of `source` that found `passages`.
pub fn found(source: &str, passages: &[&str]) -> ToolOutput {
    ToolOutput {
        text: passages
            .iter()
            .map(|id| format!("[^{id}] passage {id}"))
            .collect::<Vec<_>>()
            .join("\n\n"),
        references: Some(SourceReferences {
            id: source.into(),
            name: source.to_uppercase(),
            items: passages
                .iter()
                .map(|id| Reference {
                    id: (*id).into(),
                    title: format!("title of {id}"),
                    snippet: format!("snippet of {id}"),
                    url: None,
                    score: 1.0,
                })
                .collect(),
        }),
    }
}

/// Everything `stream` yields, within a bound (virtual when time is paused).
pub async fn collect(stream: AgentStream) -> Vec<Result<AgentEvent, AgentError>> {
    tokio::time::timeout(Duration::from_secs(60), stream.collect())
        .await
        .expect("the answer ends in time")
}
