//! The knowledge agent as an A2A executor: a message's text is the question,
//! the task's `contextId` the conversation, and the agent's answer stream becomes
//! the task's events — status `working`, the answer text as appended chunks of
//! one artifact, tool activity, references and reasoning as status messages with
//! a data part each, and a terminal status at the end.

use std::collections::HashMap;
use std::sync::Arc;

use a2a::{Artifact, Message, Part, PartContent, TaskState};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::contexts::Contexts;
use crate::a2a::{A2aError, Executor, TaskUpdater, Work};
use crate::agent::answer_cap::cap_answer;
use crate::agent::{Agent, AgentError, AgentEvent, AgentRequest, AgentStream};
use crate::config::AgentConfig;
use crate::conversation::{ChatError, ChatMessage, TurnEvent};
use crate::storage::Storage;

/// The id of the artifact that carries a task's answer.
pub const ANSWER_ARTIFACT_ID: &str = "answer";

/// Runs the knowledge agent for the messages of A2A tasks.
pub struct KnowledgeExecutor {
    agent: Arc<dyn Agent>,
    contexts: Arc<Contexts>,
    max_answer_bytes: usize,
}

/// What a message may carry in its `metadata` for parlor.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Extras {
    /// Stateless mode: the conversation so far, oldest first, instead of what this
    /// agent remembers of the context.
    history: Option<Vec<ChatMessage>>,
    /// The tools the task may use, by name (absent: all; `[]`: none).
    tools: Option<Vec<String>>,
}

impl KnowledgeExecutor {
    /// Runs `agent`, keeping the conversations of contexts in `storage`.
    pub fn new(agent: Arc<dyn Agent>, config: &AgentConfig, storage: Arc<dyn Storage>) -> Self {
        Self {
            agent,
            contexts: Arc::new(Contexts::new(
                storage,
                config.max_history_messages,
                config.max_history_bytes,
            )),
            max_answer_bytes: config.max_answer_bytes,
        }
    }
}

impl Executor for KnowledgeExecutor {
    fn check(&self, message: &Message) -> Result<(), A2aError> {
        if message_text(message).is_some() {
            return Ok(());
        }
        if message.task_id.is_some() {
            // A follow-up: the server says what this task takes.
            return Ok(());
        }
        Err(
            if message.parts.iter().any(|part| part.as_text().is_none()) {
                // Files and data are media this agent does not read.
                A2aError::ContentTypeNotSupported(
                    "this agent reads text parts only; send the question as text".into(),
                )
            } else {
                A2aError::InvalidParams(
                    "the message has no text; send the question as a text part".into(),
                )
            },
        )
    }

    fn execute(&self, work: Work, updater: TaskUpdater) -> BoxFuture<'static, ()> {
        let Work {
            message,
            metadata,
            owner,
        } = work;
        let text = message_text(&message).unwrap_or_default();
        let context_id = message.context_id.clone().unwrap_or_default();
        // The message's metadata, or else the request's.
        let extras = [&message.metadata, &metadata]
            .into_iter()
            .flatten()
            .find_map(read_extras)
            .unwrap_or_default();
        let agent = self.agent.clone();
        let contexts = self.contexts.clone();
        let max_answer_bytes = self.max_answer_bytes;
        Box::pin(async move {
            let (history, memory) = match extras.history {
                Some(history) => (history, None),
                None => match contexts.history(owner.as_deref(), &context_id).await {
                    Ok(history) => {
                        let memory = Memory {
                            contexts,
                            owner,
                            context_id: context_id.clone(),
                            question: text.clone(),
                        };
                        (history, Some(memory))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read an A2A context's conversation");
                        let said = "the conversation cannot be read now; try again shortly";
                        updater.fail(Some(updater.agent_message(vec![Part::text(said)])));
                        return;
                    }
                },
            };
            let answer = agent.answer(AgentRequest {
                context_id,
                history,
                text,
                tools: extras.tools,
            });
            run(updater, cap_answer(answer, max_answer_bytes), memory).await;
        })
    }
}

fn read_extras(metadata: &HashMap<String, serde_json::Value>) -> Option<Extras> {
    let keyed: serde_json::Map<_, _> = metadata.clone().into_iter().collect();
    serde_json::from_value(serde_json::Value::Object(keyed)).ok()
}

/// Where a finished task's exchange is remembered.
struct Memory {
    contexts: Arc<Contexts>,
    owner: Option<String>,
    context_id: String,
    question: String,
}

/// Publishes `answer` as the task of `updater` until it ends. A canceled task's
/// future is dropped, and the answer stream with it: that stops the model and
/// the tools.
async fn run(updater: TaskUpdater, mut answer: AgentStream, memory: Option<Memory>) {
    updater.working(None);
    let mut text = String::new();
    let ending = loop {
        match answer.next().await {
            Some(Ok(AgentEvent::Text(chunk))) => {
                let first = text.is_empty();
                updater.artifact(answer_artifact(chunk.clone()), !first, false);
                text.push_str(&chunk);
            }
            Some(Ok(AgentEvent::Event(event))) => report(&updater, &event),
            Some(Ok(AgentEvent::Finished(_))) => break Ok(()),
            Some(Err(error)) => break Err(error),
            None => {
                break Err(AgentError::Upstream(
                    "the answer ended without finishing".into(),
                ));
            }
        }
    };
    drop(answer);
    match ending {
        Ok(()) => {
            // The last chunk is empty and marked `lastChunk` (the answer may also
            // be empty, and then this is its only chunk).
            updater.artifact(answer_artifact(String::new()), !text.is_empty(), true);
            // Before `completed`, so the client's next message sees this one.
            if let Some(memory) = memory {
                let remembered = memory.contexts.remember(
                    memory.owner.as_deref(),
                    &memory.context_id,
                    memory.question,
                    text,
                );
                if let Err(error) = remembered.await {
                    tracing::warn!(%error, "an A2A exchange could not be stored");
                }
            }
            updater.complete(None);
        }
        Err(error) => {
            // The user sees a short message with an error id; the log has the rest.
            let reported = ChatError::from(&error);
            let message = updater.agent_message(vec![Part::text(reported.message)]);
            updater.set_status(TaskState::Failed, Some(message));
        }
    }
}

/// A tool's activity, the references found or the model's reasoning: a `working`
/// status whose message has one data part, the event as the WebSocket sends it
/// (`{"type":"tool"|"references"|"reasoning",...}`, without `turn_id`).
fn report(updater: &TaskUpdater, event: &TurnEvent) {
    let Ok(data) = serde_json::to_value(event) else {
        return;
    };
    let message = updater.agent_message(vec![Part::data(data)]);
    updater.working(Some(message));
}

fn answer_artifact(text: String) -> Artifact {
    Artifact {
        artifact_id: ANSWER_ARTIFACT_ID.into(),
        name: Some("answer".into()),
        description: None,
        parts: vec![Part::text(text)],
        metadata: None,
        extensions: None,
    }
}

/// The text parts of `message`, joined; `None` when it has none.
fn message_text(message: &Message) -> Option<String> {
    let texts: Vec<&str> = message
        .parts
        .iter()
        .filter_map(|part| match &part.content {
            PartContent::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let text = texts.join("\n");
    (!text.trim().is_empty()).then_some(text)
}
