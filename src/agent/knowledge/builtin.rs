//! The built-in source: parlor's own README and docs, compiled into the binary,
//! so a fresh checkout's demo can answer questions about parlor.
//!
//! Its index is built in memory at start rather than under `storage.data_dir`:
//! it is a few hundred passages, built in milliseconds, so a cached copy would
//! save nothing — and a demo that writes no files leaves nothing behind to go stale
//! when the binary (and its documentation) changes.

use super::source::{Documents, KnowledgeSource};
use crate::config::SourceKind;

pub const ID: &str = "parlor_docs";

/// `(path, text)` of every document compiled in.
pub const DOCUMENTS: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../README.md")),
    ("docs/a2a.md", include_str!("../../../docs/a2a.md")),
    (
        "docs/architecture.md",
        include_str!("../../../docs/architecture.md"),
    ),
    (
        "docs/benchmarks.md",
        include_str!("../../../docs/benchmarks.md"),
    ),
    (
        "docs/conformance.md",
        include_str!("../../../docs/conformance.md"),
    ),
    (
        "docs/knowledge.md",
        include_str!("../../../docs/knowledge.md"),
    ),
    ("docs/mcp.md", include_str!("../../../docs/mcp.md")),
    ("docs/page.md", include_str!("../../../docs/page.md")),
    (
        "docs/protocol.md",
        include_str!("../../../docs/protocol.md"),
    ),
    (
        "docs/security.md",
        include_str!("../../../docs/security.md"),
    ),
    ("docs/storage.md", include_str!("../../../docs/storage.md")),
];

pub fn source() -> KnowledgeSource {
    KnowledgeSource {
        id: ID.to_owned(),
        name: "parlor documentation".to_owned(),
        description: "parlor's own documentation: what it is, how to run, configure and \
                      operate it, its protocol, architecture, security and benchmarks"
            .to_owned(),
        kind: SourceKind::KnowledgeBase,
        documents: Documents::Embedded(DOCUMENTS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_of_the_docs_folder_is_compiled_in() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let mut on_disk: Vec<String> = std::fs::read_dir(docs)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".md"))
            .map(|name| format!("docs/{name}"))
            .collect();
        on_disk.push("README.md".into());
        on_disk.sort();
        let compiled: Vec<&str> = DOCUMENTS.iter().map(|(path, _)| *path).collect();
        assert_eq!(compiled, on_disk);
    }
}
