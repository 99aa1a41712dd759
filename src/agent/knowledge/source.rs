//! A knowledge source: what the agent can search, as configured or built in.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::builtin;
use crate::config::{KnowledgeConfig, KnowledgeSourceConfig, SourceKind};

/// A knowledge source as `GET /get_data_source` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Where a source's documents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Documents {
    /// A folder, read recursively.
    Folder(PathBuf),
    /// Documents compiled into the binary: `(path, text)`.
    Embedded(&'static [(&'static str, &'static str)]),
}

/// A source of passages, offered to the model as a tool named by its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnowledgeSource {
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: SourceKind,
    pub documents: Documents,
}

impl KnowledgeSource {
    pub fn from_config(config: &KnowledgeSourceConfig) -> Self {
        Self {
            id: config.id.as_str().to_owned(),
            name: config.name.clone(),
            description: config.description.clone(),
            kind: config.kind,
            documents: Documents::Folder(config.path.clone()),
        }
    }

    /// The configured sources; with none configured, the built-in one.
    pub fn configured(config: &KnowledgeConfig) -> Vec<Self> {
        if config.sources.is_empty() {
            return vec![builtin::source()];
        }
        config.sources.iter().map(Self::from_config).collect()
    }

    /// How `GET /get_data_source` lists it.
    pub fn data_source(&self) -> DataSource {
        DataSource {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            kind: self.kind.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_source_is_listed_with_its_type() {
        let listed = builtin::source().data_source();
        assert_eq!(listed.id, builtin::ID);
        let json = serde_json::to_value(&listed).unwrap();
        assert_eq!(json["type"], "knowledge_base");
        assert!(json.get("kind").is_none());
    }
}
