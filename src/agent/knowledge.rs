use super::llm::LlmClient;
use super::{Agent, AgentRequest, AgentStream};
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DataSource {
    pub id: String,
}
#[derive(Clone)]
pub struct KnowledgeAgent {
    _llm: LlmClient,
}
impl KnowledgeAgent {
    pub fn new(llm: LlmClient, _: &crate::config::AgentConfig) -> Self {
        Self { _llm: llm }
    }
    pub fn data_sources(&self) -> Vec<DataSource> {
        vec![]
    }
}
impl Agent for KnowledgeAgent {
    fn answer(&self, _: AgentRequest) -> AgentStream {
        unimplemented!()
    }
}
