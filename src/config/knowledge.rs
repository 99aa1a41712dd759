//! `[knowledge]`: the folders of documents the knowledge agent searches
//! (docs/knowledge.md).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// `[[knowledge.sources]]`; none: the built-in source, parlor's own documentation.
    pub sources: Vec<KnowledgeSourceConfig>,
}

/// One `[[knowledge.sources]]` table: a folder of documents the agent can search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSourceConfig {
    /// Unique; also the name of the tool the model calls to search it.
    pub id: SourceId,
    /// What users see in the source picker.
    pub name: String,
    /// What the model is told the source holds, so it knows when to search it.
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// The folder of `.md` and `.txt` documents, read recursively; relative to the
    /// working directory.
    pub path: PathBuf,
}

/// A source's id: `[a-z0-9_]{1,64}`, since models accept tool names of that shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceId(String);

impl SourceId {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if (1..=Self::MAX_LEN).contains(&text.len()) && text.chars().all(allowed) {
            Ok(Self(text))
        } else {
            Err(format!(
                "a source id is 1 to 64 characters of a-z, 0-9 and _, not {text:?}"
            ))
        }
    }
}

impl From<SourceId> for String {
    fn from(id: SourceId) -> Self {
        id.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of source the original frontend knows (`type` of `GET /get_data_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    KnowledgeBase,
    Literature,
    Database,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::KnowledgeBase => "knowledge_base",
            SourceKind::Literature => "literature",
            SourceKind::Database => "database",
        }
    }
}

impl KnowledgeConfig {
    /// The first id used by two sources, if any.
    pub fn duplicate_id(&self) -> Option<&SourceId> {
        let mut seen = std::collections::HashSet::new();
        self.sources
            .iter()
            .map(|source| &source.id)
            .find(|id| !seen.insert(*id))
    }
}
