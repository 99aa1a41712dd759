//! Tools the model may call during a turn, and the set of them an agent has.
//!
//! A tool describes itself to the model with a [`ToolSpec`] (a name, what it is for,
//! the JSON Schema of its arguments) and to people with a label. Calling it takes the
//! arguments the model wrote, already parsed as JSON, and answers text for the model
//! to read — plus, for a knowledge source, the passages found, for the UI to show.

mod knowledge;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use knowledge::{DEFAULT_TOP_K, KnowledgeTool};

use super::knowledge::Library;
use super::llm::ToolSpec;
use crate::conversation::SourceReferences;

/// Something the model can call.
pub trait Tool: Send + Sync + 'static {
    /// How the model is told about the tool; its `name` is the tool's name.
    fn spec(&self) -> &ToolSpec;

    /// What people call the tool (shown with its activity).
    fn label(&self) -> &str;

    /// Runs the tool on the model's arguments. The future owns what it needs, so
    /// it can run alongside other calls; dropping it abandons the call.
    fn call(
        &self,
        arguments: serde_json::Value,
    ) -> BoxFuture<'static, Result<ToolOutput, ToolError>>;

    /// The name the model calls the tool by.
    fn name(&self) -> &str {
        &self.spec().name
    }
}

/// What a tool call answered.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutput {
    /// What the model reads.
    pub text: String,
    /// The passages the call found, when it searched a knowledge source and
    /// found any.
    pub references: Option<SourceReferences>,
}

/// Why a tool call gave no output. The message is what the model is shown, so it
/// says what was wrong in terms the model can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The model called a tool this turn does not offer.
    #[error("there is no tool {name:?} (the tools here: {available})")]
    NotOffered { name: String, available: String },
    /// The arguments were not JSON, or not what the tool's schema asks for.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The tool did not answer in time; it was abandoned.
    #[error("the tool did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

/// The tools an agent has, by name, in the order they were added.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: Arc<[Arc<dyn Tool>]>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Toolbox {
    /// A toolbox of `tools`. Of two tools with the same name, the first is kept:
    /// the model could not tell them apart.
    pub fn new(tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        let mut kept: Vec<Arc<dyn Tool>> = Vec::new();
        for tool in tools {
            if kept.iter().all(|other| other.name() != tool.name()) {
                kept.push(tool);
            }
        }
        Self { tools: kept.into() }
    }

    /// One [`KnowledgeTool`] per source of `library`, in its order.
    pub fn knowledge(library: Arc<Library>) -> Self {
        let tools: Vec<Arc<dyn Tool>> = library
            .sources()
            .filter_map(|source| KnowledgeTool::new(library.clone(), &source.id))
            .map(|tool| Arc::new(tool) as Arc<dyn Tool>)
            .collect();
        Self::new(tools)
    }

    /// These tools and then `more` (of which a name already here is left out).
    pub fn extended(&self, more: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        Self::new(self.tools.iter().cloned().chain(more))
    }

    /// The tools in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.iter()
    }

    /// The tools a turn may use: all of them for `None`, none for `[]`, otherwise
    /// those named (names not here are skipped), in this toolbox's order.
    pub fn select(&self, names: Option<&[String]>) -> Toolbox {
        let Some(names) = names else {
            return self.clone();
        };
        Self {
            tools: self
                .tools
                .iter()
                .filter(|tool| names.iter().any(|name| name == tool.name()))
                .cloned()
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|tool| tool.name() == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|tool| tool.name())
    }

    /// What the model is offered.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|tool| tool.spec().clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use serde_json::json;

    use super::*;

    struct Named {
        spec: ToolSpec,
    }

    impl Named {
        fn tool(name: &str, description: &str) -> Arc<dyn Tool> {
            Arc::new(Self {
                spec: ToolSpec {
                    name: name.into(),
                    description: description.into(),
                    parameters: json!({"type": "object"}),
                },
            })
        }
    }

    impl Tool for Named {
        fn spec(&self) -> &ToolSpec {
            &self.spec
        }
        fn label(&self) -> &str {
            &self.spec.description
        }
        fn call(&self, _: serde_json::Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> {
            async { Err(ToolError::Failed("not called here".into())) }.boxed()
        }
    }

    fn toolbox() -> Toolbox {
        Toolbox::new([
            Named::tool("a", "first a"),
            Named::tool("b", "b"),
            Named::tool("a", "second a"),
            Named::tool("c", "c"),
        ])
    }

    fn names(toolbox: &Toolbox) -> Vec<&str> {
        toolbox.names().collect()
    }

    #[test]
    fn keeps_the_first_of_two_tools_with_one_name() {
        let toolbox = toolbox();
        assert_eq!(names(&toolbox), ["a", "b", "c"]);
        assert_eq!(toolbox.get("a").unwrap().label(), "first a");
        let extended = toolbox.extended([Named::tool("d", "d"), Named::tool("b", "second b")]);
        assert_eq!(names(&extended), ["a", "b", "c", "d"]);
        assert_eq!(extended.get("b").unwrap().label(), "b");
        assert!(toolbox.get("d").is_none());
        let specs = toolbox.specs();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].description, "first a");
    }

    #[test]
    fn select_takes_all_none_or_the_known_names_in_toolbox_order() {
        let toolbox = toolbox();
        assert_eq!(names(&toolbox.select(None)), ["a", "b", "c"]);
        assert!(toolbox.select(Some(&[])).is_empty());
        let chosen = ["c".to_owned(), "zzz".to_owned(), "a".to_owned()];
        assert_eq!(names(&toolbox.select(Some(&chosen))), ["a", "c"]);
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let error = ToolError::TimedOut(Duration::from_millis(1500));
        assert_eq!(error.to_string(), "the tool did not answer within 1500 ms");
        let error = ToolError::NotOffered {
            name: "x".into(),
            available: "a, b".into(),
        };
        assert_eq!(
            error.to_string(),
            "there is no tool \"x\" (the tools here: a, b)"
        );
    }
}
