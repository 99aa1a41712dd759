//! The knowledge agent a process runs: its sources' indexes, opened (or built)
//! first, and its model — the configured one, or the built-in demo model started
//! here.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context as _;
use parlor_mock_llm::{MockLlmOptions, MockLlmServer};

use crate::a2a::{A2aServer, Limits};
use crate::agent::Agent;
use crate::agent::a2a::card::agent_card;
use crate::agent::a2a::{KnowledgeExecutor, RemoteAgent};
use crate::agent::knowledge::{KnowledgeAgent, Library};
use crate::agent::llm::LlmClient;
use crate::agent::mcp::McpServers;
use crate::agent::tools::Toolbox;
use crate::auth::Authenticator;
use crate::config::{AgentLocation, Config, ModelEndpoint};
use crate::http::a2a::A2aState;
use crate::storage::Storage;

/// What answers the turns of `serve` and `worker`: the remote agent at
/// `agent.url`, or else the in-process knowledge agent (see [`knowledge_agent`]).
/// A remote agent has its own sources, tools and model, so none is opened here.
pub(super) async fn turn_agent(
    config: &Config,
    mcp: McpServers,
) -> anyhow::Result<(Arc<dyn Agent>, Option<MockLlmServer>)> {
    match &config.agent.url {
        AgentLocation::Remote(url) => {
            tracing::info!(%url, "turns are answered by the remote agent at agent.url (A2A)");
            let agent = RemoteAgent::new(url.clone(), &config.llm)
                .map_err(|error| anyhow::anyhow!("cannot reach agent.url: {error}"))?;
            Ok((Arc::new(agent), None))
        }
        AgentLocation::InProcess => {
            let (agent, demo_model) = knowledge_agent(config, mcp).await?;
            Ok((Arc::new(agent), demo_model))
        }
    }
}

/// The knowledge agent over the configured model — or over the built-in demo model,
/// started here, when `llm.base_url` is empty (keep the returned server alive) —
/// with the tools of the knowledge sources and of the MCP servers of `mcp`.
pub(super) async fn knowledge_agent(
    config: &Config,
    mcp: McpServers,
) -> anyhow::Result<(KnowledgeAgent, Option<MockLlmServer>)> {
    // Built off the runtime's threads; a source that cannot be read stops the start.
    let (library, reports) = Library::open(config)
        .await
        .context("cannot open the knowledge sources")?;
    for report in reports {
        tracing::info!(
            source = %report.source_id,
            documents = report.documents,
            passages = report.passages,
            rebuilt = report.rebuilt,
            elapsed_ms = crate::telemetry::millis(report.elapsed),
            "knowledge source ready"
        );
    }
    let mut llm_config = config.llm.clone();
    let demo_model = match &llm_config.base_url {
        ModelEndpoint::Demo => {
            let listener =
                TcpListener::bind("127.0.0.1:0").context("cannot start the demo model")?;
            // The demo searches the sources it is offered and answers from what
            // it found, so a first run shows the knowledge agent's whole flow.
            let options = MockLlmOptions {
                ttft: llm_config.demo_ttft(),
                token_interval: llm_config.demo_token_interval(),
                call_tools: true,
            };
            let server = parlor_mock_llm::start(listener, options)?;
            let base_url = server
                .base_url()
                .parse()
                .context("the demo model's address is not a URL")?;
            tracing::info!(%base_url, "llm.base_url is empty: answering with the built-in demo model");
            llm_config.base_url = ModelEndpoint::OpenAiCompatible(base_url);
            Some(server)
        }
        ModelEndpoint::OpenAiCompatible(_) => None,
    };
    let llm = LlmClient::new(&llm_config).context("cannot build the model client")?;
    Ok((
        KnowledgeAgent::new(llm, &config.agent, Toolbox::knowledge(Arc::new(library)))
            .with_mcp(mcp),
        demo_model,
    ))
}

/// `agent` as an A2A server (`parlor agent`, and on `parlor serve`'s port), its
/// callers checked by `auth`, its contexts' conversations kept in `storage`.
pub(super) fn a2a_state(
    config: &Config,
    agent: Arc<dyn Agent>,
    auth: Arc<Authenticator>,
    storage: Arc<dyn Storage>,
) -> A2aState {
    let executor = KnowledgeExecutor::new(agent, &config.agent, storage);
    let limits = Limits {
        max_running_tasks: config.agent.max_running_tasks,
    };
    A2aState::new(
        Arc::new(A2aServer::new(Arc::new(executor), limits)),
        agent_card(&super::data_sources(config)),
        config.http.max_message_bytes,
        auth,
    )
}
