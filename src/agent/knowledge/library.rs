//! Every source's index, opened together: what the agent searches.

use std::path::Path;

use super::index::{BuildReport, Hit, Progress, SourceIndex};
use super::{DataSource, KnowledgeError, KnowledgeSource};
use crate::config::Config;

/// The open indexes of a set of sources, in their configured order.
pub struct Library {
    sources: Vec<(KnowledgeSource, SourceIndex)>,
}

impl Library {
    /// Opens (building where needed) the index of every source in `config`,
    /// off the async runtime: building reads every changed document.
    pub async fn open(config: &Config) -> Result<(Self, Vec<BuildReport>), KnowledgeError> {
        let sources = KnowledgeSource::configured(&config.knowledge);
        let data_dir = config.storage.data_dir.clone();
        tokio::task::spawn_blocking(move || Self::build(sources, &data_dir, &|_, _, _| {}))
            .await
            .expect("building an index does not panic")
    }

    /// Opens every source's index in turn, on this thread; `progress` is told the
    /// source and how many of its documents have been read.
    pub fn build(
        sources: Vec<KnowledgeSource>,
        data_dir: &Path,
        progress: &(dyn Fn(&KnowledgeSource, usize, usize) + Sync),
    ) -> Result<(Self, Vec<BuildReport>), KnowledgeError> {
        let mut opened = Vec::with_capacity(sources.len());
        let mut reports = Vec::with_capacity(sources.len());
        for source in sources {
            let per_source: Progress<'_> = &|done, total| progress(&source, done, total);
            let (index, report) = SourceIndex::open_or_build(&source, data_dir, per_source)?;
            reports.push(report);
            opened.push((source, index));
        }
        Ok((Self { sources: opened }, reports))
    }

    /// What `GET /get_data_source` lists.
    pub fn data_sources(&self) -> Vec<DataSource> {
        self.sources
            .iter()
            .map(|(source, _)| source.data_source())
            .collect()
    }

    /// The sources, in their configured order.
    pub fn sources(&self) -> impl Iterator<Item = &KnowledgeSource> {
        self.sources.iter().map(|(source, _)| source)
    }

    pub fn source(&self, id: &str) -> Option<&KnowledgeSource> {
        self.sources
            .iter()
            .find(|(source, _)| source.id == id)
            .map(|(source, _)| source)
    }

    /// Searches the source `id`; `None` when there is no such source.
    pub fn search(
        &self,
        id: &str,
        query: &str,
        top_k: usize,
    ) -> Option<Result<Vec<Hit>, KnowledgeError>> {
        self.sources
            .iter()
            .find(|(source, _)| source.id == id)
            .map(|(_, index)| index.search(query, top_k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::knowledge::builtin;
    use crate::config::{KnowledgeSourceConfig, SourceKind};

    #[actix_web::test]
    async fn opens_every_configured_source_off_the_runtime() {
        let docs = tempfile::tempdir().unwrap();
        std::fs::write(docs.path().join("a.md"), "# Owls\n\nOwls hunt at night.\n").unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = data.path().to_path_buf();
        let toml_source = KnowledgeSourceConfig {
            id: "birds".to_owned().try_into().unwrap(),
            name: "Birds".into(),
            description: "Notes on birds".into(),
            kind: SourceKind::Literature,
            path: docs.path().to_path_buf(),
        };
        config.knowledge.sources = vec![toml_source];

        let (library, reports) = library_of(&config).await;
        assert_eq!(reports.len(), 1);
        assert!(reports[0].rebuilt);
        let listed = library.data_sources();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].id.as_str(),
                listed[0].name.as_str(),
                listed[0].kind.as_str()
            ),
            ("birds", "Birds", "literature")
        );
        let hits = library
            .search("birds", "when do owls hunt", 3)
            .unwrap()
            .unwrap();
        assert_eq!(hits[0].path, "a.md");
        assert!(library.search("fish", "owls", 3).is_none());
        assert_eq!(
            library.source("birds").unwrap().description,
            "Notes on birds"
        );

        let (_, reports) = library_of(&config).await;
        assert!(!reports[0].rebuilt);
    }

    #[actix_web::test]
    async fn without_sources_the_built_in_one_is_there() {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = data.path().join("never-written");
        let (library, _) = library_of(&config).await;
        let listed = library.data_sources();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, builtin::ID);
        assert_eq!(listed[0].kind, "knowledge_base");
        let hits = library
            .search(builtin::ID, "parlor index progress bar", 5)
            .unwrap()
            .unwrap();
        assert!(!hits.is_empty());
        assert!(!config.storage.data_dir.exists());
    }

    async fn library_of(config: &Config) -> (Library, Vec<BuildReport>) {
        tokio::time::timeout(std::time::Duration::from_secs(30), Library::open(config))
            .await
            .expect("opening the library in time")
            .unwrap()
    }
}
