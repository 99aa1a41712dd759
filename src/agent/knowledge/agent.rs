//! The knowledge agent itself: answers a turn with the model, and the knowledge
//! sources and the connected MCP servers' tools as its tools, from the system
//! prompt, a bounded window of the conversation's history and the new user text.

use std::sync::Arc;

use crate::agent::llm::{ChatModel, PromptMessage};
use crate::agent::mcp::McpServers;
use crate::agent::tool_loop::{ToolLimits, ToolLoop};
use crate::agent::tools::Toolbox;
use crate::agent::{Agent, AgentRequest, AgentStream};
use crate::config::AgentConfig;
use crate::conversation::ChatMessage;

/// The in-process knowledge agent.
#[derive(Clone)]
pub struct KnowledgeAgent {
    tool_loop: ToolLoop<dyn ChatModel>,
    toolbox: Toolbox,
    mcp: McpServers,
    system_prompt: String,
    max_history_messages: usize,
}

impl std::fmt::Debug for KnowledgeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeAgent")
            .field("toolbox", &self.toolbox)
            .field("max_history_messages", &self.max_history_messages)
            .finish_non_exhaustive()
    }
}

impl KnowledgeAgent {
    /// An agent answering with `model`, offering it the tools of `toolbox` (see
    /// [`Toolbox::knowledge`]) within the limits of `config`.
    pub fn new(model: impl ChatModel, config: &AgentConfig, toolbox: Toolbox) -> Self {
        let model: Arc<dyn ChatModel> = Arc::new(model);
        Self {
            tool_loop: ToolLoop::new(model, ToolLimits::from_config(config)),
            toolbox,
            mcp: McpServers::default(),
            system_prompt: config.system_prompt.clone(),
            max_history_messages: config.max_history_messages,
        }
    }

    /// Offers the model the tools of `mcp`'s servers too, those connected when a
    /// turn starts.
    pub fn with_mcp(self, mcp: McpServers) -> Self {
        Self { mcp, ..self }
    }

    /// The tools the agent has now; a turn may use all of them or some.
    pub fn toolbox(&self) -> Toolbox {
        if self.mcp.is_empty() {
            return self.toolbox.clone();
        }
        self.toolbox.extended(self.mcp.agent_tools())
    }

    /// What the model is sent first: the system prompt (unless empty), the newest
    /// `max_history_messages` messages of the history, then the new user text.
    fn prompt(&self, history: Vec<ChatMessage>, text: String) -> Vec<ChatMessage> {
        let mut history = history;
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
        let AgentRequest {
            history,
            text,
            tools,
            ..
        } = request;
        let tools = self.toolbox().select(tools.as_deref());
        let messages = self
            .prompt(history, text)
            .into_iter()
            .map(PromptMessage::Chat)
            .collect();
        self.tool_loop.answer(messages, tools)
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use futures_util::future;
    use futures_util::{FutureExt, StreamExt};
    use parlor_mock_llm::MockLlmOptions;

    use super::*;
    use crate::agent::AgentEvent;
    use crate::agent::llm::LlmClient;
    use crate::agent::testing::{ScriptedModel, ScriptedTool, answer, calling, collect, found};
    use crate::config::LlmConfig;
    use crate::conversation::{FinishReason, Role};

    fn config(max_history_messages: usize) -> AgentConfig {
        AgentConfig {
            system_prompt: "be helpful".into(),
            max_history_messages,
            ..AgentConfig::default()
        }
    }

    fn agent(base_url: &str, max_history_messages: usize) -> KnowledgeAgent {
        let llm_config = LlmConfig {
            base_url: base_url.parse().unwrap(),
            ..LlmConfig::default()
        };
        let llm = LlmClient::new(&llm_config).unwrap();
        KnowledgeAgent::new(llm, &config(max_history_messages), Toolbox::default())
    }

    /// An agent over `model` with the tools `birds` and `fish`.
    fn scripted_agent(model: &ScriptedModel) -> KnowledgeAgent {
        let tools = ["birds", "fish"].map(|name| {
            ScriptedTool::doing(name, move |_| {
                future::ready(Ok(found(name, &["p1"]))).boxed()
            })
        });
        KnowledgeAgent::new(model.clone(), &config(64), Toolbox::new(tools))
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
        let prompt = agent.prompt(history, "new".into());
        let contents: Vec<&str> = prompt.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["be helpful", "a3", "q4", "a5", "new"]);
        assert_eq!(prompt[0].role, Role::System);
        assert_eq!(prompt.last().unwrap().role, Role::User);
    }

    #[test]
    fn short_history_is_kept_whole() {
        let agent = agent("http://127.0.0.1:9/v1", 64);
        let history = vec![ChatMessage::user("q"), ChatMessage::assistant("a")];
        let prompt = agent.prompt(history.clone(), "new".into());
        assert_eq!(prompt.len(), 4);
        assert_eq!(prompt[1..3], history[..]);
        assert!(agent.prompt(Vec::new(), "only".into()).len() == 2);
    }

    #[test]
    fn the_default_prompt_asks_for_searches_and_citations() {
        let prompt = AgentConfig::default().system_prompt;
        assert!(prompt.contains("tools"), "{prompt}");
        assert!(prompt.contains("[^id]"), "{prompt}");
    }

    #[tokio::test]
    async fn offers_the_tools_the_turn_chose_and_runs_them() {
        let model = ScriptedModel::new([
            calling(&[("c1", "fish", r#"{"query":"trout"}"#)]),
            answer("Trout [^p1]."),
        ]);
        let agent = scripted_agent(&model);
        let mut turn = request(
            vec![ChatMessage::user("hi"), ChatMessage::assistant("hello")],
            "trout?",
        );
        turn.tools = Some(vec!["fish".into()]);
        let events = collect(agent.answer(turn)).await;
        assert_eq!(
            events.last(),
            Some(&Ok(AgentEvent::Finished(FinishReason::Stop)))
        );
        let requests = model.requests();
        let offered: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(offered, ["fish"]);
        assert_eq!(
            requests[0].messages,
            [
                ChatMessage::system("be helpful"),
                ChatMessage::user("hi"),
                ChatMessage::assistant("hello"),
                ChatMessage::user("trout?"),
            ]
            .map(PromptMessage::Chat)
        );
        assert_eq!(
            requests[1].messages[5],
            PromptMessage::ToolResult {
                call_id: "c1".into(),
                content: found("fish", &["p1"]).text,
            }
        );
    }

    #[tokio::test]
    async fn offers_every_tool_by_default_and_none_when_the_turn_chose_none() {
        let model = ScriptedModel::new([answer("one"), answer("two")]);
        let agent = scripted_agent(&model);
        assert_eq!(agent.toolbox().len(), 2);
        collect(agent.answer(request(Vec::new(), "all"))).await;
        let mut turn = request(Vec::new(), "none");
        turn.tools = Some(Vec::new());
        let events = collect(agent.answer(turn)).await;
        assert_eq!(
            events.last(),
            Some(&Ok(AgentEvent::Finished(FinishReason::Stop)))
        );
        let offered: Vec<usize> = model.requests().iter().map(|r| r.tools.len()).collect();
        assert_eq!(offered, [2, 0]);
    }

    #[actix_web::test]
    async fn answers_through_the_model_with_history() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = parlor_mock_llm::start(listener, MockLlmOptions::default()).unwrap();
        let agent = agent(&server.base_url(), 64);
        let history = vec![ChatMessage::user("one"), ChatMessage::assistant("ok")];
        let events: Vec<_> = tokio::time::timeout(
            Duration::from_secs(10),
            agent.answer(request(history, "two")).collect::<Vec<_>>(),
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
