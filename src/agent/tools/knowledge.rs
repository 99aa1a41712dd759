//! A knowledge source as a tool: the model searches it with a query and reads the
//! passages found, each under the key it cites it by (`[^<passage id>]`).

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Tool, ToolError, ToolOutput};
use crate::agent::knowledge::index::MAX_TOP_K;
use crate::agent::knowledge::{Hit, Library};
use crate::agent::llm::ToolSpec;
use crate::conversation::{Reference, SourceReferences};

/// How many passages a search returns when the model does not say.
pub const DEFAULT_TOP_K: usize = 5;

/// Searches one source of a [`Library`]; its name is the source's id.
pub struct KnowledgeTool {
    library: Arc<Library>,
    spec: ToolSpec,
    /// The source's name.
    label: String,
}

impl KnowledgeTool {
    /// The tool for the source `source_id` of `library`; `None` when there is no
    /// such source.
    pub fn new(library: Arc<Library>, source_id: &str) -> Option<Self> {
        let source = library.source(source_id)?;
        let description = if source.description.trim().is_empty() {
            format!("Searches the knowledge source \"{}\".", source.name)
        } else {
            source.description.clone()
        };
        let spec = ToolSpec {
            name: source.id.clone(),
            description,
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "What to look for, in plain words (no query syntax)."
                    },
                    "top_k": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_TOP_K,
                        "description": format!(
                            "How many passages to return, best first (default {DEFAULT_TOP_K})."
                        )
                    }
                },
                "required": ["query"]
            }),
        };
        let label = source.name.clone();
        Some(Self {
            library,
            spec,
            label,
        })
    }
}

impl Tool for KnowledgeTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn call(&self, arguments: Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> {
        let library = self.library.clone();
        let source_id = self.spec.name.clone();
        let source_name = self.label.clone();
        async move {
            let Search { query, top_k } = Search::from_arguments(&arguments)?;
            // tantivy searches block the thread: keep them off the async runtime.
            let searched = {
                let (source_id, query) = (source_id.clone(), query.clone());
                tokio::task::spawn_blocking(move || library.search(&source_id, &query, top_k)).await
            };
            let hits = match searched {
                Ok(Some(Ok(hits))) => hits,
                Ok(Some(Err(error))) => return Err(ToolError::Failed(error.to_string())),
                Ok(None) => {
                    return Err(ToolError::Failed(format!(
                        "the knowledge source {source_id:?} is not open"
                    )));
                }
                Err(error) => return Err(ToolError::Failed(format!("the search failed: {error}"))),
            };
            Ok(output(&source_id, &source_name, &query, hits))
        }
        .boxed()
    }
}

/// A search as the model asked for it.
#[derive(Debug, PartialEq)]
struct Search {
    query: String,
    top_k: usize,
}

impl Search {
    /// Checks the arguments against the tool's schema. A `null` `top_k` counts as
    /// left out, as models write optional arguments either way.
    fn from_arguments(arguments: &Value) -> Result<Self, ToolError> {
        let invalid = |problem: String| ToolError::InvalidArguments(problem);
        let Some(fields) = arguments.as_object() else {
            return Err(invalid(format!(
                "expected an object with a \"query\" string, not {}",
                kind(arguments)
            )));
        };
        let query = match fields.get("query") {
            None | Some(Value::Null) => return Err(invalid("\"query\" is missing".into())),
            Some(Value::String(query)) if query.trim().is_empty() => {
                return Err(invalid("\"query\" is empty".into()));
            }
            Some(Value::String(query)) => query.trim().to_owned(),
            Some(other) => {
                return Err(invalid(format!(
                    "\"query\" must be a string, not {}",
                    kind(other)
                )));
            }
        };
        let top_k = match fields.get("top_k") {
            None | Some(Value::Null) => DEFAULT_TOP_K,
            Some(value) => value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_TOP_K).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "\"top_k\" must be an integer from 1 to {MAX_TOP_K}, not {value}"
                    ))
                })?,
        };
        Ok(Self { query, top_k })
    }
}

/// A JSON value's type, as a schema names it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What the model reads (each passage under its citation key) and the references
/// the UI shows.
fn output(source_id: &str, source_name: &str, query: &str, hits: Vec<Hit>) -> ToolOutput {
    if hits.is_empty() {
        return ToolOutput {
            text: format!("No passages of \"{source_name}\" match \"{query}\"."),
            references: None,
        };
    }
    let text = hits
        .iter()
        .map(|hit| {
            let mut key_line = format!("[^{}] {}", hit.passage_id, hit.title);
            if !hit.headings.is_empty() {
                key_line.push_str(" — ");
                key_line.push_str(&hit.headings.join(" > "));
            }
            format!("{key_line}\n{}", hit.text.trim())
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let items = hits
        .into_iter()
        .map(|hit| Reference {
            id: hit.passage_id,
            title: hit.title,
            snippet: hit.snippet,
            url: None,
            score: hit.score,
        })
        .collect();
    ToolOutput {
        text,
        references: Some(SourceReferences {
            id: source_id.to_owned(),
            name: source_name.to_owned(),
            items,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::agent::knowledge::{Documents, KnowledgeSource};
    use crate::config::SourceKind;

    fn source(id: &str, folder: &Path, description: &str) -> KnowledgeSource {
        KnowledgeSource {
            id: id.into(),
            name: format!("{id} notes"),
            description: description.into(),
            kind: SourceKind::KnowledgeBase,
            documents: Documents::Folder(folder.to_path_buf()),
        }
    }

    /// A library of two folder sources, `birds` (described) and `fish` (not).
    fn library(docs: &Path, data: &Path) -> Arc<Library> {
        let birds = docs.join("birds");
        let fish = docs.join("fish");
        std::fs::create_dir_all(&birds).unwrap();
        std::fs::create_dir_all(&fish).unwrap();
        std::fs::write(
            birds.join("owls.md"),
            "# Owls\n\n## Hunting\n\nOwls hunt voles at night, by ear.\n\n\
             ## Nests\n\nBarn owls nest in old barns and church towers.\n",
        )
        .unwrap();
        std::fs::write(fish.join("trout.md"), "# Trout\n\nTrout like cold water.\n").unwrap();
        let sources = vec![
            source("birds", &birds, "Field notes on birds"),
            source("fish", &fish, ""),
        ];
        let (library, _) = Library::build(sources, data, &|_, _, _| {}).unwrap();
        Arc::new(library)
    }

    async fn call(tool: &KnowledgeTool, arguments: Value) -> Result<ToolOutput, ToolError> {
        tokio::time::timeout(Duration::from_secs(10), tool.call(arguments))
            .await
            .expect("the search ends in time")
    }

    #[tokio::test]
    async fn finds_passages_with_their_citation_keys_and_references() {
        let (docs, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let library = library(docs.path(), data.path());
        let tool = KnowledgeTool::new(library.clone(), "birds").unwrap();
        assert_eq!(tool.name(), "birds");
        assert_eq!(tool.label(), "birds notes");
        assert_eq!(tool.spec().description, "Field notes on birds");
        assert_eq!(tool.spec().parameters["required"], json!(["query"]));
        assert_eq!(
            tool.spec().parameters["properties"]["top_k"]["maximum"],
            json!(MAX_TOP_K)
        );

        let output = call(&tool, json!({"query": "when do owls hunt", "top_k": 1}))
            .await
            .unwrap();
        let expected = library
            .search("birds", "when do owls hunt", 1)
            .unwrap()
            .unwrap();
        let hit = &expected[0];
        assert_eq!(hit.headings, ["Owls", "Hunting"]);
        assert_eq!(
            output.text,
            format!(
                "[^{}] {} — Owls > Hunting\n{}",
                hit.passage_id,
                hit.title,
                hit.text.trim()
            )
        );
        assert!(output.text.contains("by ear"), "{}", output.text);
        let references = output.references.unwrap();
        assert_eq!(
            (references.id.as_str(), references.name.as_str()),
            ("birds", "birds notes")
        );
        assert_eq!(
            references.items,
            [Reference {
                id: hit.passage_id.clone(),
                title: hit.title.clone(),
                snippet: hit.snippet.clone(),
                url: None,
                score: hit.score,
            }]
        );
    }

    #[tokio::test]
    async fn returns_five_passages_unless_told_and_lists_each_as_a_paragraph() {
        let (docs, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let library = library(docs.path(), data.path());
        let tool = KnowledgeTool::new(library, "birds").unwrap();
        let output = call(&tool, json!({"query": "owls", "top_k": null}))
            .await
            .unwrap();
        let items = output.references.unwrap().items;
        assert_eq!(
            items.len(),
            2,
            "both owl passages, fewer than the default 5"
        );
        let paragraphs: Vec<&str> = output.text.split("\n\n").collect();
        assert_eq!(paragraphs.len(), 2);
        for (paragraph, item) in paragraphs.iter().zip(&items) {
            assert!(
                paragraph.starts_with(&format!("[^{}] ", item.id)),
                "{paragraph}"
            );
        }
    }

    #[tokio::test]
    async fn says_so_when_nothing_matches() {
        let (docs, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let library = library(docs.path(), data.path());
        let tool = KnowledgeTool::new(library, "fish").unwrap();
        assert_eq!(
            tool.spec().description,
            "Searches the knowledge source \"fish notes\"."
        );
        let output = call(&tool, json!({"query": "owls"})).await.unwrap();
        assert_eq!(output.text, "No passages of \"fish notes\" match \"owls\".");
        assert_eq!(output.references, None);
    }

    #[tokio::test]
    async fn refuses_arguments_that_do_not_fit_the_schema() {
        let (docs, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let library = library(docs.path(), data.path());
        let tool = KnowledgeTool::new(library, "birds").unwrap();
        let cases = [
            (
                json!([]),
                "expected an object with a \"query\" string, not an array",
            ),
            (json!({}), "\"query\" is missing"),
            (json!({"query": "  "}), "\"query\" is empty"),
            (
                json!({"query": 3}),
                "\"query\" must be a string, not a number",
            ),
            (
                json!({"query": "owls", "top_k": "3"}),
                "\"top_k\" must be an integer from 1 to 50, not \"3\"",
            ),
            (
                json!({"query": "owls", "top_k": 0}),
                "\"top_k\" must be an integer from 1 to 50, not 0",
            ),
            (
                json!({"query": "owls", "top_k": 51}),
                "\"top_k\" must be an integer from 1 to 50, not 51",
            ),
            (
                json!({"query": "owls", "top_k": 2.5}),
                "\"top_k\" must be an integer from 1 to 50, not 2.5",
            ),
        ];
        for (arguments, problem) in cases {
            let error = call(&tool, arguments.clone()).await.unwrap_err();
            assert_eq!(
                error,
                ToolError::InvalidArguments(problem.into()),
                "{arguments}"
            );
        }
    }

    #[test]
    fn there_is_no_tool_for_a_source_the_library_lacks() {
        let (docs, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let library = library(docs.path(), data.path());
        assert!(KnowledgeTool::new(library.clone(), "mammals").is_none());
        let toolbox = super::super::Toolbox::knowledge(library);
        assert_eq!(toolbox.names().collect::<Vec<_>>(), ["birds", "fish"]);
    }
}
