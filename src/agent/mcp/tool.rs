//! One tool of an MCP server as a [`Tool`] of the knowledge agent: the model
//! calls it by its `<server>__<tool>` name with the server's own JSON Schema, and
//! reads the text of what it answered.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use serde_json::{Value, json};

use super::link::Link;
use super::names;
use crate::agent::llm::ToolSpec;
use crate::agent::tools::{Tool, ToolError, ToolOutput};

/// A tool of the MCP server behind `link`. Calls go to whichever connection the
/// link has when they start, so a tool listed before a reconnection still works
/// after it.
pub struct McpTool {
    link: Arc<Link>,
    /// The tool's name on its server.
    remote_name: String,
    spec: ToolSpec,
    /// `<server>: <title or name>`, shown with the tool's activity.
    label: String,
}

impl McpTool {
    pub(super) fn new(link: Arc<Link>, listed: &rmcp::model::Tool) -> Self {
        let server = link.name();
        let description = listed
            .description
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .map_or_else(
                || format!("The tool {:?} of the MCP server {server:?}.", listed.name),
                str::to_owned,
            );
        let mut parameters = Value::Object(listed.input_schema.as_ref().clone());
        // OpenAI requires an object schema with properties, even an empty one.
        if let Some(schema) = parameters.as_object_mut() {
            schema.entry("type").or_insert_with(|| json!("object"));
            schema.entry("properties").or_insert_with(|| json!({}));
        }
        let title = listed.title.as_deref().unwrap_or(&listed.name);
        Self {
            remote_name: listed.name.to_string(),
            spec: ToolSpec {
                name: names::model_name(server, &listed.name),
                description,
                parameters,
            },
            label: format!("{server}: {title}"),
            link,
        }
    }

    /// The server this tool belongs to.
    pub fn server(&self) -> &str {
        self.link.name()
    }
}

impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn call(&self, arguments: Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> {
        let link = self.link.clone();
        let remote_name = self.remote_name.clone();
        async move {
            let Value::Object(arguments) = arguments else {
                return Err(ToolError::InvalidArguments(
                    "expected a JSON object of arguments".into(),
                ));
            };
            let Some(peer) = link.peer() else {
                return Err(ToolError::Failed(format!(
                    "the MCP server {:?} is not connected; try again later",
                    link.name()
                )));
            };
            let request = CallToolRequestParams::new(remote_name).with_arguments(arguments);
            // Dropping this future (the turn's tool timeout, or a cancelled turn)
            // tells the server the call is cancelled.
            match peer.call_tool(request).await {
                Ok(result) => read_result(result),
                Err(ServiceError::McpError(error)) => Err(ToolError::Failed(format!(
                    "the MCP server refused the call: {}",
                    error.message
                ))),
                Err(error) => {
                    tracing::warn!(server = %link.name(), %error, "an MCP tool call failed");
                    link.suspect_connection();
                    Err(ToolError::Failed(format!(
                        "the MCP server {:?} did not answer",
                        link.name()
                    )))
                }
            }
        }
        .boxed()
    }
}

/// The most text of one result the model reads; the rest is cut, with a note. A
/// search answers a few passages, but an MCP tool may answer anything (a whole
/// file), and the model's context is not the place for it.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// What the model reads of a call's result: its text content in order, a short
/// note for each part that is not text, or else its structured content, cut to
/// [`MAX_RESULT_BYTES`]. A result flagged `isError` is a failed call the model sees
/// as such.
fn read_result(result: CallToolResult) -> Result<ToolOutput, ToolError> {
    let mut parts: Vec<String> = result.content.iter().map(describe).collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = cut_to_fit(parts.join("\n"));
    if result.is_error == Some(true) {
        let text = if text.is_empty() {
            "the tool reported an error".to_owned()
        } else {
            text
        };
        return Err(ToolError::Failed(text));
    }
    Ok(ToolOutput {
        text,
        references: None,
    })
}

fn cut_to_fit(mut text: String) -> String {
    if text.len() <= MAX_RESULT_BYTES {
        return text;
    }
    let whole = text.len();
    let mut end = MAX_RESULT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("\n[cut: the tool answered {whole} bytes]"));
    text
}

fn describe(content: &ContentBlock) -> String {
    match content {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => format!("[an image ({}), not shown]", image.mime_type),
        ContentBlock::Audio(audio) => format!("[audio ({}), not shown]", audio.mime_type),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { text, .. } => text.clone(),
            ResourceContents::BlobResourceContents { uri, .. } => {
                format!("[a binary resource ({uri}), not shown]")
            }
            _ => "[a resource of a kind parlor does not read, not shown]".to_owned(),
        },
        ContentBlock::ResourceLink(link) => format!("[a resource: {}]", link.uri),
        _ => "[content of a kind parlor does not read, not shown]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(content: Vec<ContentBlock>, is_error: Option<bool>) -> CallToolResult {
        let mut result = CallToolResult::success(content);
        result.is_error = is_error;
        result
    }

    #[test]
    fn text_parts_are_joined_and_other_parts_noted() {
        let output = read_result(result(
            vec![
                ContentBlock::text("first"),
                ContentBlock::image("aGk=", "image/png"),
                ContentBlock::text("second"),
            ],
            None,
        ))
        .unwrap();
        assert_eq!(
            output.text,
            "first\n[an image (image/png), not shown]\nsecond"
        );
        assert_eq!(output.references, None);
    }

    #[test]
    fn a_long_result_is_cut_with_a_note() {
        let long = "é".repeat(MAX_RESULT_BYTES);
        let output = read_result(result(vec![ContentBlock::text(long)], None)).unwrap();
        let (kept, note) = output.text.rsplit_once('\n').unwrap();
        assert!(kept.len() <= MAX_RESULT_BYTES && kept.len() > MAX_RESULT_BYTES - 2);
        assert_eq!(
            note,
            format!("[cut: the tool answered {} bytes]", 2 * MAX_RESULT_BYTES)
        );
    }

    #[test]
    fn structured_content_stands_in_for_missing_text() {
        let mut answer = result(Vec::new(), Some(false));
        answer.structured_content = Some(json!({"open": 3}));
        assert_eq!(read_result(answer).unwrap().text, r#"{"open":3}"#);
    }

    #[test]
    fn an_error_result_is_a_failed_call_with_its_text() {
        let failed = read_result(result(
            vec![ContentBlock::text("no such ticket")],
            Some(true),
        ));
        assert_eq!(failed, Err(ToolError::Failed("no such ticket".into())));
        let silent = read_result(result(Vec::new(), Some(true)));
        assert_eq!(
            silent,
            Err(ToolError::Failed("the tool reported an error".into()))
        );
    }
}
