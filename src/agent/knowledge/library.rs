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
