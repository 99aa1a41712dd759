//! Opening a connection to an MCP server over either transport, and the MCP
//! handshake on it (rmcp negotiates the protocol version: servers of older SDKs
//! answer an older version, which it accepts).

use std::collections::HashMap;
use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

use crate::config::{McpServerConfig, McpTransport, Secret};

/// A live connection to a server, answering its notifications with a [`Listener`].
pub type Connection = RunningService<RoleClient, Listener>;

/// parlor's side of a connection: says who parlor is, and passes on the server's
/// news that its tool list changed.
#[derive(Clone)]
pub struct Listener {
    pub tools_changed: Arc<Notify>,
}

impl ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("parlor", env!("CARGO_PKG_VERSION")),
        )
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.tools_changed.notify_one();
        std::future::ready(())
    }
}

/// Connects to `server` and goes through the handshake.
pub async fn open(server: &McpServerConfig, listener: Listener) -> Result<Connection, String> {
    match server.transport() {
        McpTransport::Http { url, headers } => {
            let transport = http_transport(url, headers)?;
            listener
                .serve(transport)
                .await
                .map_err(|error| format!("the MCP handshake failed: {error}"))
        }
        McpTransport::Stdio { command, args, env } => {
            let mut child = tokio::process::Command::new(command);
            child.args(args);
            for (name, value) in env {
                child.env(name, value.expose());
            }
            let (transport, stderr) = TokioChildProcess::builder(child)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| format!("cannot start {command:?}: {error}"))?;
            if let Some(stderr) = stderr {
                log_stderr(server.name.clone(), stderr);
            }
            listener
                .serve(transport)
                .await
                .map_err(|error| format!("the MCP handshake failed: {error}"))
        }
    }
}

/// Lists the tools of the server at `url` (streamable HTTP) and disconnects.
pub async fn probe(url: &str) -> Result<Vec<rmcp::model::Tool>, String> {
    let transport = http_transport(url, &Default::default())?;
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("parlor", env!("CARGO_PKG_VERSION")),
    );
    let connection = client
        .serve(transport)
        .await
        .map_err(|error| format!("the MCP handshake failed: {error}"))?;
    let tools = connection
        .list_all_tools()
        .await
        .map_err(|error| format!("listing its tools failed: {error}"));
    // The tools are what was asked for; a failure to say goodbye changes nothing.
    let _ = connection.cancel().await;
    tools
}

/// How long one HTTP request to a server may take to connect.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn http_transport(
    url: &str,
    headers: &std::collections::BTreeMap<String, Secret>,
) -> Result<StreamableHttpClientTransport<reqwest::Client>, String> {
    // No redirects: a server must not send parlor on to a host nobody allowed.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    let mut custom = HashMap::new();
    for (name, value) in headers {
        let value = value.expose();
        if name.eq_ignore_ascii_case("authorization")
            && let Some(token) = value.strip_prefix("Bearer ")
        {
            config.auth_header = Some(token.to_owned());
            continue;
        }
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::try_from(value)
            .map_err(|_| format!("the value of header {name} is not a header value"))?;
        custom.insert(name, value);
    }
    config.custom_headers = custom;
    Ok(StreamableHttpClientTransport::with_client(client, config))
}

/// The longest line of a child's stderr that is logged whole.
const MAX_STDERR_LINE: usize = 2_000;

/// Logs what a stdio server writes to its stderr, line by line, under its name.
fn log_stderr(server: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = match line.char_indices().nth(MAX_STDERR_LINE) {
                Some((cut, _)) => &line[..cut],
                None => &line,
            };
            tracing::info!(mcp_server = %server, "{line}");
        }
    });
}
