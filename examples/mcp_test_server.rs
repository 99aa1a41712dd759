//! A small MCP server for parlor's tests (and for trying MCP by hand), built on the
//! official Rust SDK's server side.
//!
//! ```sh
//! cargo run --example mcp_test_server -- --http 127.0.0.1:7003   # http://127.0.0.1:7003/mcp
//! cargo run --example mcp_test_server -- --stdio                 # over stdin/stdout
//! ```
//!
//! Its tools, each taking `{"query": string}` like parlor's knowledge sources (so
//! the mock model calls them the same way):
//! - `lookup`: answers `Ticket 42 is about "<query>" and it is open.`;
//! - `fail`: answers an `isError` result, `the ticket system is read-only`;
//! - `hang`: never answers (it notes cancellations on stderr);
//! - `picture`: answers a line of text and a small PNG;
//! - `add_tool`: adds the tool `extra` and tells the client the list changed.
//!
//! `--protocol VERSION` makes it support no protocol version newer than VERSION, as
//! a server built on an older SDK. With `MCP_TEST_PID_FILE` set, it writes its
//! process id there. In HTTP mode it prints `listening on http://ADDR/mcp` first.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;

/// A 1×1 transparent PNG.
const PIXEL_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

#[derive(Clone)]
struct TicketServer {
    /// Whether `add_tool` has added `extra`.
    extra: Arc<AtomicBool>,
    /// The newest protocol version it supports.
    newest: ProtocolVersion,
}

fn query_tool(name: &'static str, description: &'static str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": { "query": { "type": "string", "description": "What to look for" } },
        "required": ["query"]
    });
    let serde_json::Value::Object(schema) = schema else {
        unreachable!("the schema is an object")
    };
    Tool::new(name, description, schema)
}

fn text(result: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(result.into())])
}

impl ServerHandler for TicketServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("parlor-mcp-test-server", "1.0.0");
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&self.newest))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = vec![
            query_tool("lookup", "Looks up a support ticket by what it is about."),
            query_tool("fail", "Always fails: the ticket system is read-only."),
            query_tool("hang", "Never answers."),
            query_tool("picture", "Answers with a picture of the ticket."),
            query_tool("add_tool", "Adds the tool `extra`."),
        ];
        if self.extra.load(Ordering::SeqCst) {
            tools.push(query_tool("extra", "A tool added while the server runs."));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let query = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("query"))
            .and_then(|query| query.as_str())
            .unwrap_or_default()
            .to_owned();
        let result = match request.name.as_ref() {
            "lookup" => text(format!("Ticket 42 is about {query:?} and it is open.")),
            "fail" => {
                CallToolResult::error(vec![ContentBlock::text("the ticket system is read-only")])
            }
            "hang" => {
                context.ct.cancelled().await;
                eprintln!("hang: cancelled by the client");
                return Err(ErrorData::internal_error("cancelled", None));
            }
            "picture" => CallToolResult::success(vec![
                ContentBlock::text(format!("The ticket about {query:?}:")),
                ContentBlock::image(PIXEL_PNG_BASE64, "image/png"),
            ]),
            "add_tool" => {
                self.extra.store(true, Ordering::SeqCst);
                let _ = context.peer.notify_tool_list_changed().await;
                text("added the tool extra")
            }
            "extra" if self.extra.load(Ordering::SeqCst) => text(format!("extra: {query}")),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("there is no tool {other:?}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut http = None;
    let mut newest = ProtocolVersion::LATEST;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stdio" => {}
            "--http" => http = Some(args.next().context("--http needs an address")?),
            "--protocol" => {
                let version = args.next().context("--protocol needs a version")?;
                newest = ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .find(|known| known.as_str() == version)
                    .cloned()
                    .with_context(|| format!("unknown protocol version {version}"))?;
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    if let Ok(path) = std::env::var("MCP_TEST_PID_FILE") {
        std::fs::write(path, std::process::id().to_string())?;
    }
    let server = TicketServer {
        extra: Arc::default(),
        newest,
    };
    match http {
        None => {
            let running = server.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        Some(address) => serve_http(server, &address).await?,
    }
    Ok(())
}

async fn serve_http(server: TicketServer, address: &str) -> anyhow::Result<()> {
    let service = TowerToHyperService::new(StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    ));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::default())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
