//! The knowledge agent and what it searches: sources (folders of documents, or the
//! built-in documentation), split into passages and indexed with tantivy (BM25).
//! How documents are read, split and indexed: docs/knowledge.md.

mod agent;
pub mod builtin;
pub mod documents;
pub mod index;
mod indexing;
pub mod library;
pub mod passages;
pub mod source;

use std::path::PathBuf;

pub use agent::KnowledgeAgent;
pub use index::{BuildReport, Hit, SourceIndex};
pub use library::Library;
pub use source::{DataSource, Documents, KnowledgeSource};

/// Why a source could not be read, indexed or searched. Each names its source.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("knowledge source `{source_id}`: cannot read its folder {}: {problem}", path.display())]
    Folder {
        source_id: String,
        path: PathBuf,
        problem: String,
    },
    #[error("knowledge source `{source_id}`: its index at {}: {problem}", path.display())]
    Index {
        source_id: String,
        path: PathBuf,
        problem: String,
    },
    #[error("knowledge source `{source_id}`: search failed: {problem}")]
    Search { source_id: String, problem: String },
}
