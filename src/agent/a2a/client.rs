//! A remote knowledge agent (`agent.url`), reached with A2A 1.0: each turn is one
//! `SendStreamingMessage`, whose events become the turn's answer, tool steps and
//! references as if the agent ran in-process.
//!
//! The turn's session id is the `contextId`, and the session's history goes with
//! every message (the stateless mode of docs/a2a.md), so any agent behind a load
//! balancer can answer any turn. Dropping the answer stream (a cancelled turn)
//! sends `CancelTask`, which stops the remote model and tools.

use std::time::Duration;

use a2a::{PartContent, StreamResponse, TaskState};
use futures_util::stream::{self, StreamExt};
use reqwest::Url;
use serde_json::{Value, json};

use crate::agent::llm::{EventDecoder, describe};
use crate::agent::{Agent, AgentError, AgentEvent, AgentRequest, AgentStream};
use crate::config::LlmConfig;
use crate::conversation::{FinishReason, TurnEvent};

/// The remote agent at one URL.
#[derive(Clone)]
pub struct RemoteAgent {
    http: reqwest::Client,
    endpoint: Url,
    /// How long the agent may take to send its first event.
    first_event_timeout: Duration,
    /// How long it may be silent between events (a tool call, a slow model).
    idle_timeout: Duration,
}

impl RemoteAgent {
    /// The agent at `endpoint`, with the model's timeouts of `llm` (the agent runs
    /// a model behind it, and a tool call may come first).
    pub fn new(endpoint: Url, llm: &LlmConfig) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .connect_timeout(llm.connect_timeout())
            .build()
            .map_err(|e| AgentError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            first_event_timeout: llm.first_token_timeout(),
            idle_timeout: llm.idle_timeout(),
        })
    }

    async fn open(&self, request: AgentRequest) -> Result<Following, AgentError> {
        let message = json!({
            "messageId": uuid::Uuid::new_v4().to_string(),
            "role": "ROLE_USER",
            "contextId": request.context_id,
            "parts": [{"text": request.text}],
            "metadata": {"history": request.history, "tools": request.tools},
        });
        let body = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendStreamingMessage",
            "params": {"message": message},
        });
        let sent = self
            .http
            .post(self.endpoint.clone())
            .header("A2A-Version", "1.0")
            .json(&body)
            .send();
        let response = match tokio::time::timeout(self.first_event_timeout, sent).await {
            Err(_) => {
                return Err(AgentError::Timeout(
                    "the agent did not answer in time".into(),
                ));
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(AgentError::Unavailable(format!(
                    "cannot reach the agent at {}: {}",
                    self.endpoint,
                    describe(&e)
                )));
            }
            Ok(Err(e)) => {
                return Err(AgentError::Upstream(format!(
                    "the request to the agent failed: {}",
                    describe(&e)
                )));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            // At its limit of running tasks, or stopping: another agent may answer.
            return Err(AgentError::Unavailable(
                "the agent takes no new questions now".into(),
            ));
        }
        if !status.is_success() {
            return Err(AgentError::Upstream(format!(
                "the agent answered HTTP {status}"
            )));
        }
        Ok(Following {
            events: EventDecoder::new(Box::pin(response.bytes_stream())),
            agent: self.clone(),
            task_id: None,
            ended: false,
            first: true,
        })
    }
}

impl Agent for RemoteAgent {
    fn answer(&self, request: AgentRequest) -> AgentStream {
        let agent = self.clone();
        stream::once(async move { agent.open(request).await })
            .flat_map(|opened| match opened {
                Ok(following) => following.into_stream().left_stream(),
                Err(error) => stream::once(async move { Err(error) }).right_stream(),
            })
            .boxed()
    }
}

type Body =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// One task's event stream, read as the turn's events.
struct Following {
    events: EventDecoder<Body>,
    agent: RemoteAgent,
    task_id: Option<String>,
    /// Whether the task reached a terminal state (or the stream failed).
    ended: bool,
    /// Until the answer's first text, the agent may be silent as long as a model
    /// may take to its first token; then only as long as it may between tokens.
    first: bool,
}

impl Following {
    fn into_stream(self) -> AgentStream {
        stream::unfold(self, |mut following| async move {
            if following.ended {
                return None;
            }
            let item = following.next_event().await;
            if matches!(item, Err(_) | Ok(AgentEvent::Finished(_))) {
                following.ended = true;
            }
            Some((item, following))
        })
        .boxed()
    }

    /// The next event of the turn, skipping what carries none.
    async fn next_event(&mut self) -> Result<AgentEvent, AgentError> {
        loop {
            let wait = if self.first {
                self.agent.first_event_timeout
            } else {
                self.agent.idle_timeout
            };
            let event = match tokio::time::timeout(wait, self.events.next()).await {
                Err(_) => return Err(AgentError::Timeout("the agent went silent".into())),
                Ok(None) => {
                    return Err(AgentError::Upstream(
                        "the agent's stream ended before the task did".into(),
                    ));
                }
                Ok(Some(Err(error))) => {
                    return Err(AgentError::Upstream(format!(
                        "the agent's stream broke: {error}"
                    )));
                }
                Ok(Some(Ok(event))) => event,
            };
            let reply: Value = serde_json::from_str(&event.data).map_err(|e| {
                AgentError::Upstream(format!("the agent sent an event that is not JSON: {e}"))
            })?;
            if let Some(error) = reply.get("error") {
                return Err(AgentError::Upstream(format!("the agent answered {error}")));
            }
            let response: StreamResponse = serde_json::from_value(reply["result"].clone())
                .map_err(|e| {
                    AgentError::Upstream(format!(
                        "the agent sent an event of an unknown shape: {e}"
                    ))
                })?;
            if let Some(event) = self.read(response)? {
                if matches!(event, AgentEvent::Text(_)) {
                    self.first = false;
                }
                return Ok(event);
            }
        }
    }

    /// What `response` means for the turn, if anything.
    fn read(&mut self, response: StreamResponse) -> Result<Option<AgentEvent>, AgentError> {
        match response {
            StreamResponse::Task(task) => {
                self.task_id = Some(task.id);
                Ok(None)
            }
            StreamResponse::Message(message) => {
                let text: String = message.parts.iter().filter_map(|p| p.as_text()).collect();
                Ok((!text.is_empty()).then_some(AgentEvent::Text(text)))
            }
            StreamResponse::ArtifactUpdate(update) => {
                let text: String = update
                    .artifact
                    .parts
                    .iter()
                    .filter_map(|part| part.as_text())
                    .collect();
                Ok((!text.is_empty()).then_some(AgentEvent::Text(text)))
            }
            StreamResponse::StatusUpdate(update) => {
                let message = update.status.message.as_ref();
                match update.status.state {
                    TaskState::Completed => {
                        self.task_id = None;
                        Ok(Some(AgentEvent::Finished(FinishReason::Stop)))
                    }
                    state if state.is_terminal() => {
                        self.task_id = None;
                        let said = message
                            .and_then(|message| message.text())
                            .unwrap_or("no reason given");
                        Err(AgentError::Upstream(format!(
                            "the agent's task ended {}: {said}",
                            crate::a2a::state_name(&state)
                        )))
                    }
                    _ => {
                        let event =
                            message
                                .and_then(|message| message.parts.first())
                                .and_then(|part| match &part.content {
                                    PartContent::Data(data) => {
                                        serde_json::from_value::<TurnEvent>(data.clone()).ok()
                                    }
                                    _ => None,
                                });
                        Ok(event.map(AgentEvent::Event))
                    }
                }
            }
        }
    }
}

impl Drop for Following {
    /// A turn dropped before its task ended (cancelled, or its client gone with
    /// `session.cancel_on_disconnect`): the remote task is cancelled too.
    fn drop(&mut self) {
        let Some(task_id) = self.task_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let agent = self.agent.clone();
        runtime.spawn(async move {
            let body = json!({
                "jsonrpc": "2.0", "id": 1, "method": "CancelTask", "params": {"id": task_id},
            });
            let sent = agent
                .http
                .post(agent.endpoint.clone())
                .header("A2A-Version", "1.0")
                .json(&body)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Err(error) = sent {
                tracing::warn!(%task_id, %error, "could not cancel the remote agent's task");
            }
        });
    }
}
