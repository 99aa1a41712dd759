//! The knowledge agent itself: answers a turn by asking the model, with the system prompt
//! and a bounded window of the conversation's history.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::agent::llm::{LlmClient, LlmEvent};
use crate::agent::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::config::AgentConfig;
use crate::conversation::{ChatMessage, TurnEvent};

/// A knowledge source the agent can draw on (the items of `GET /get_data_source`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The in-process knowledge agent.
#[derive(Clone, Debug)]
pub struct KnowledgeAgent {
    llm: LlmClient,
    system_prompt: String,
    max_history_messages: usize,
}

impl KnowledgeAgent {
    pub fn new(llm: LlmClient, config: &AgentConfig) -> Self {
        Self {
            llm,
            system_prompt: config.system_prompt.clone(),
            max_history_messages: config.max_history_messages,
        }
    }

    /// The knowledge sources the agent answers from. The agent has no retrieval
    /// tools yet: it answers from the model alone, so the list is empty (and
    /// `GET /get_data_source` answers `[]`).
    pub fn data_sources(&self) -> Vec<DataSource> {
        Vec::new()
    }

    /// What the model is sent: the system prompt (unless empty), the newest
    /// `max_history_messages` messages of the history, then the new user text.
    fn prompt(&self, request: AgentRequest) -> Vec<ChatMessage> {
        let AgentRequest {
            mut history, text, ..
        } = request;
        let skip = history.len().saturating_sub(self.max_history_messages);
        let mut messages = Vec::with_capacity(history.len() - skip + 2);
        if !self.system_prompt.is_empty() {
            messages.push(ChatMessage::system(self.system_prompt.clone()));
        }
        messages.extend(history.drain(skip..));
        messages.push(ChatMessage::user(text));
        messages
    }
}

impl Agent for KnowledgeAgent {
    fn answer(&self, request: AgentRequest) -> AgentStream {
        let messages = self.prompt(request);
        self.llm
            .stream_chat(messages)
            .map(|event| {
                event.map(|event| match event {
                    LlmEvent::Delta(text) => AgentEvent::Text(text),
                    LlmEvent::Reasoning(text) => AgentEvent::Event(TurnEvent::Reasoning { text }),
                    // Not offered any tools yet; the tool loop replaces this.
                    LlmEvent::ToolCalls(_) => AgentEvent::Text(String::new()),
                    LlmEvent::Finished(reason) => AgentEvent::Finished(reason),
                })
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use parlor_mock_llm::MockLlmOptions;

    use super::*;
    use crate::config::LlmConfig;
    use crate::conversation::{FinishReason, Role};

    fn agent(base_url: &str, max_history_messages: usize) -> KnowledgeAgent {
        let llm_config = LlmConfig {
            base_url: base_url.parse().unwrap(),
            ..LlmConfig::default()
        };
        let config = AgentConfig {
            system_prompt: "be helpful".into(),
            max_history_messages,
            ..AgentConfig::default()
        };
        KnowledgeAgent::new(LlmClient::new(&llm_config).unwrap(), &config)
    }

    fn request(history: Vec<ChatMessage>, text: &str) -> AgentRequest {
        AgentRequest {
            context_id: "c".into(),
            history,
            text: text.into(),
            tools: None,
        }
    }

    #[test]
    fn prompt_keeps_the_newest_history_between_system_and_user() {
        let agent = agent("http://127.0.0.1:9/v1", 3);
        let history: Vec<ChatMessage> = (0..6)
            .map(|i| {
                if i % 2 == 0 {
                    ChatMessage::user(format!("q{i}"))
                } else {
                    ChatMessage::assistant(format!("a{i}"))
                }
            })
            .collect();
        let prompt = agent.prompt(request(history, "new"));
        let contents: Vec<&str> = prompt.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["be helpful", "a3", "q4", "a5", "new"]);
        assert_eq!(prompt[0].role, Role::System);
        assert_eq!(prompt.last().unwrap().role, Role::User);
    }

    #[test]
    fn short_history_is_kept_whole() {
        let agent = agent("http://127.0.0.1:9/v1", 64);
        let history = vec![ChatMessage::user("q"), ChatMessage::assistant("a")];
        let prompt = agent.prompt(request(history.clone(), "new"));
        assert_eq!(prompt.len(), 4);
        assert_eq!(prompt[1..3], history[..]);
        assert!(agent.prompt(request(Vec::new(), "only")).len() == 2);
    }

    #[test]
    fn no_data_sources_yet() {
        let agent = agent("http://127.0.0.1:9/v1", 64);
        assert!(agent.data_sources().is_empty());
        let source = DataSource {
            id: "1".into(),
            name: "n".into(),
            description: "d".into(),
            kind: "web".into(),
        };
        assert_eq!(serde_json::to_value(&source).unwrap()["type"], "web");
    }

    #[actix_web::test]
    async fn answers_through_the_model_with_history() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = parlor_mock_llm::start(listener, MockLlmOptions::default()).unwrap();
        let agent = agent(&server.base_url(), 64);
        let history = vec![ChatMessage::user("one"), ChatMessage::assistant("ok")];
        let events: Vec<_> = tokio::time::timeout(
            Duration::from_secs(10),
            agent.answer(request(history, "two")).collect(),
        )
        .await
        .unwrap();
        let (last, texts) = events.split_last().unwrap();
        assert_eq!(last, &Ok(AgentEvent::Finished(FinishReason::Stop)));
        let text: String = texts
            .iter()
            .map(|e| match e {
                Ok(AgentEvent::Text(t)) => t.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(text, "You said: \"two\" (turn 2)");
        server.stop().await;
    }
}
