#[derive(Clone)]
pub struct LlmClient;
impl LlmClient {
    pub fn new(_: &crate::config::LlmConfig) -> Result<Self, super::AgentError> {
        Ok(Self)
    }
}
