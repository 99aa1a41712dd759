pub struct MockLlmOptions {
    pub ttft: std::time::Duration,
    pub token_interval: std::time::Duration,
}
pub struct MockLlmServer;
impl MockLlmServer {
    pub fn base_url(&self) -> String {
        String::new()
    }
}
pub fn start(_: std::net::TcpListener, _: MockLlmOptions) -> std::io::Result<MockLlmServer> {
    Ok(MockLlmServer)
}
pub async fn run(_: &str, _: MockLlmOptions) -> std::io::Result<()> {
    Ok(())
}
