//! `GET /tools`: every tool a turn may name in `tools` — the knowledge sources,
//! and the tools of the MCP servers connected now.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::AppState;
use super::chat::cors;
use crate::agent::tools::Tool;

pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    config.service(
        web::resource("/tools")
            .wrap(cors(&state.config.http.cors_origins))
            .route(web::get().to(tools)),
    );
}

/// One tool as `GET /tools` lists it.
#[derive(Debug, Serialize)]
struct ListedTool {
    /// What a turn's `tools` names it by (and the model calls it by).
    name: String,
    /// `knowledge_source` or `mcp`.
    kind: &'static str,
    /// The MCP server it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    /// What people call it.
    title: String,
    /// What it is for, as the model is told.
    description: String,
}

async fn tools(state: web::Data<AppState>) -> HttpResponse {
    let sources = state.data_sources.iter().map(|source| ListedTool {
        name: source.id.clone(),
        kind: "knowledge_source",
        server: None,
        title: source.name.clone(),
        description: source.description.clone(),
    });
    let mcp = state.mcp.tools().into_iter().map(|tool| ListedTool {
        name: tool.name().to_owned(),
        kind: "mcp",
        server: Some(tool.server().to_owned()),
        title: tool.label().to_owned(),
        description: tool.spec().description.clone(),
    });
    let listed: Vec<ListedTool> = sources.chain(mcp).collect();
    HttpResponse::Ok().json(listed)
}
