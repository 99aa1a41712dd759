//! A source's search index: its passages in tantivy, ranked by BM25. How it is
//! built and kept up to date: [`super::indexing`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, ReloadPolicy};

use super::KnowledgeError;
use super::indexing::{IN_MEMORY, Opened, build_in_memory, index_error, open_folder_index};
use super::source::{Documents, KnowledgeSource};

/// The most passages one search returns.
pub const MAX_TOP_K: usize = 50;
/// The longest snippet of a hit, in characters.
const SNIPPET_CHARS: usize = 240;

/// One passage found by a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub passage_id: String,
    /// The title of the passage's document.
    pub title: String,
    /// The headings the passage is under, outermost first.
    pub headings: Vec<String>,
    /// The document's path relative to its source's folder.
    pub path: String,
    /// The part of the passage that matched best (its start when none did).
    pub snippet: String,
    /// The passage's whole text.
    pub text: String,
    /// BM25; higher is better, comparable only within one search.
    pub score: f32,
}

/// What opening one source's index did.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildReport {
    pub source_id: String,
    pub documents: usize,
    pub passages: usize,
    /// Whether the index was built now (false: it was up to date on disk).
    pub rebuilt: bool,
    /// Where it lives; `None` for an index in memory.
    pub location: Option<PathBuf>,
    pub elapsed: Duration,
}

/// Told how far a build is: documents read so far, and of how many.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// A source's open, searchable index.
pub struct SourceIndex {
    source_id: String,
    reader: IndexReader,
    parser: QueryParser,
    fields: Fields,
}

#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub id: Field,
    pub title: Field,
    pub headings: Field,
    pub path: Field,
    pub text: Field,
}

impl SourceIndex {
    /// Opens `source`'s index under `data_dir`, building it first when its
    /// documents changed since it was built (or it was never built).
    pub fn open_or_build(
        source: &KnowledgeSource,
        data_dir: &Path,
        progress: Progress<'_>,
    ) -> Result<(Self, BuildReport), KnowledgeError> {
        let started = Instant::now();
        let (opened, location) = match &source.documents {
            Documents::Embedded(embedded) => (build_in_memory(source, embedded, progress)?, None),
            Documents::Folder(folder) => {
                let location = data_dir.join("indexes").join(&source.id);
                let opened = open_folder_index(source, folder, &location, progress)?;
                (opened, Some(location))
            }
        };
        let Opened {
            index,
            documents,
            passages,
            rebuilt,
        } = opened;
        let index = Self::new(source, index).map_err(|e| {
            index_error(
                source,
                location.as_deref().unwrap_or(Path::new(IN_MEMORY)),
                e,
            )
        })?;
        let report = BuildReport {
            source_id: source.id.clone(),
            documents,
            passages,
            rebuilt,
            location,
            elapsed: started.elapsed(),
        };
        Ok((index, report))
    }

    fn new(source: &KnowledgeSource, index: Index) -> tantivy::Result<Self> {
        let fields = Fields::of(&index.schema());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser =
            QueryParser::for_index(&index, vec![fields.title, fields.headings, fields.text]);
        // A word in a heading says more about a passage than one in its text.
        parser.set_field_boost(fields.title, 1.5);
        parser.set_field_boost(fields.headings, 2.0);
        Ok(Self {
            source_id: source.id.clone(),
            reader,
            parser,
            fields,
        })
    }

    /// The best `top_k` passages for `query` (at most [`MAX_TOP_K`]). Any text
    /// is a valid query: it is read as plain words, with no query syntax.
    pub fn search(&self, query: &str, top_k: usize) -> Result<Vec<Hit>, KnowledgeError> {
        let words = plain_words(query);
        if words.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let (query, _ignored) = self.parser.parse_query_lenient(&words);
        let searcher = self.reader.searcher();
        let search_error = |error: tantivy::TantivyError| KnowledgeError::Search {
            source_id: self.source_id.clone(),
            problem: error.to_string(),
        };
        let top = TopDocs::with_limit(top_k.min(MAX_TOP_K)).order_by_score();
        let found = searcher.search(&query, &top).map_err(search_error)?;
        let mut snippets =
            SnippetGenerator::create(&searcher, &*query, self.fields.text).map_err(search_error)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        found
            .into_iter()
            .map(|(score, address)| {
                let document: TantivyDocument = searcher.doc(address).map_err(search_error)?;
                let text = self.first(&document, self.fields.text);
                let snippet = snippets.snippet_from_doc(&document);
                let snippet = match snippet.fragment().trim() {
                    "" => leading(&text, SNIPPET_CHARS).to_owned(),
                    fragment => fragment.to_owned(),
                };
                Ok(Hit {
                    passage_id: self.first(&document, self.fields.id),
                    title: self.first(&document, self.fields.title),
                    headings: document
                        .get_all(self.fields.headings)
                        .filter_map(|value| value.as_str().map(str::to_owned))
                        .collect(),
                    path: self.first(&document, self.fields.path),
                    snippet,
                    text,
                    score,
                })
            })
            .collect()
    }

    fn first(&self, document: &TantivyDocument, field: Field) -> String {
        document
            .get_first(field)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Fields {
    pub(super) fn of(schema: &Schema) -> Self {
        let field = |name| schema.get_field(name).expect("the schema has every field");
        Self {
            id: field("id"),
            title: field("title"),
            headings: field("headings"),
            path: field("path"),
            text: field("text"),
        }
    }
}

pub(super) fn schema() -> Schema {
    // English stemming, so "indexes" finds "index" and "configured" finds "configure".
    let words = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let mut builder = Schema::builder();
    builder.add_text_field("id", STRING | STORED);
    builder.add_text_field("title", words.clone());
    builder.add_text_field("headings", words.clone());
    builder.add_text_field("path", STRING | STORED);
    builder.add_text_field("text", words);
    builder.build()
}

/// The letters and digits of `text` as lowercase words: no character of the query
/// syntax (`:`, quotes, `+`, `-`, brackets) survives, and no `AND`/`OR`/`NOT` stays
/// an operator.
fn plain_words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// About the first `n` characters of `text`, ending at a word.
fn leading(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        None => text,
        Some((end, _)) => text[..end]
            .rfind(char::is_whitespace)
            .map_or(&text[..end], |space| &text[..space]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::knowledge::builtin;
    use crate::config::SourceKind;

    fn folder_source(id: &str, folder: &Path) -> KnowledgeSource {
        KnowledgeSource {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            kind: SourceKind::KnowledgeBase,
            documents: Documents::Folder(folder.to_path_buf()),
        }
    }

    fn write(folder: &Path, name: &str, text: &str) {
        std::fs::write(folder.join(name), text).unwrap();
    }

    fn open(source: &KnowledgeSource, data_dir: &Path) -> (SourceIndex, BuildReport) {
        SourceIndex::open_or_build(source, data_dir, &|_, _| {}).unwrap()
    }

    #[test]
    fn an_unchanged_folder_is_not_indexed_again_and_a_changed_one_is() {
        let docs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write(
            docs.path(),
            "bees.md",
            "# Bees\n\n## Hives\n\nBees keep honey in wax combs.\n",
        );
        write(
            docs.path(),
            "tea.txt",
            "Green tea is steamed, black tea is oxidised.",
        );
        let source = folder_source("notes", docs.path());

        let (_, first) = open(&source, data.path());
        assert!(first.rebuilt);
        assert_eq!((first.documents, first.passages), (2, 2));
        let location = data.path().join("indexes/notes");
        assert_eq!(first.location.as_deref(), Some(location.as_path()));
        assert!(location.join("fingerprint.json").is_file());

        let (index, second) = open(&source, data.path());
        assert!(!second.rebuilt, "nothing changed");
        assert_eq!((second.documents, second.passages), (2, 2));
        assert_eq!(index.search("honey", 5).unwrap()[0].path, "bees.md");

        write(
            docs.path(),
            "bees.md",
            "# Bees\n\n## Hives\n\nBees keep nectar and pollen.\n\n## Swarms\n\nA swarm is a new colony.\n",
        );
        let (index, third) = open(&source, data.path());
        assert!(third.rebuilt, "a document changed");
        assert_eq!((third.documents, third.passages), (2, 3));
        assert!(index.search("honey", 5).unwrap().is_empty());
        assert_eq!(
            index.search("swarm", 5).unwrap()[0].headings,
            ["Bees", "Swarms"]
        );

        std::fs::remove_file(docs.path().join("tea.txt")).unwrap();
        let (_, fourth) = open(&source, data.path());
        assert!(fourth.rebuilt, "a document went away");
        assert_eq!(fourth.documents, 1);
        assert!(!location.join("index.building").exists());
    }

    #[test]
    fn a_damaged_index_is_built_again() {
        let docs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write(docs.path(), "a.md", "alpha beta");
        let source = folder_source("s", docs.path());
        open(&source, data.path());
        std::fs::remove_dir_all(data.path().join("indexes/s/index")).unwrap();
        let (index, report) = open(&source, data.path());
        assert!(report.rebuilt);
        assert_eq!(index.search("alpha", 1).unwrap().len(), 1);
    }

    #[test]
    fn a_missing_folder_names_the_source_and_path() {
        let data = tempfile::tempdir().unwrap();
        let missing = data.path().join("no-such-folder");
        let source = folder_source("handbook", &missing);
        let error = SourceIndex::open_or_build(&source, data.path(), &|_, _| {})
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("knowledge source `handbook`"), "{error}");
        assert!(error.contains(&missing.display().to_string()), "{error}");
    }

    #[test]
    fn any_text_is_a_query() {
        let docs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write(
            docs.path(),
            "a.md",
            "# Rust\n\nThe borrow checker checks lifetimes.\n",
        );
        let (index, _) = open(&folder_source("s", docs.path()), data.path());
        for query in [
            "title:rust AND (",
            "\"unbalanced",
            "+-!^~*",
            "NOT",
            "checker:",
            "[1 TO",
            "",
            "   ",
            "what's the borrow-checker?",
            "IN [a b]",
            "lifetimes~2^3",
        ] {
            let hits = index.search(query, 5);
            assert!(hits.is_ok(), "{query}: {hits:?}", hits = hits.err());
        }
        let hits = index.search("what's the BORROW-checker?", 5).unwrap();
        assert_eq!(hits.len(), 1);
        let hit = &hits[0];
        assert_eq!(hit.title, "Rust");
        assert_eq!(hit.path, "a.md");
        assert!(hit.snippet.contains("borrow"), "{}", hit.snippet);
        assert!(hit.score > 0.0);
        assert_eq!(hit.passage_id.len(), 32);
        assert!(index.search("lifetimes", 0).unwrap().is_empty());
        assert!(index.search("checks", 1000).unwrap().len() <= MAX_TOP_K);
    }

    #[test]
    fn the_built_in_source_is_indexed_in_memory() {
        let data = tempfile::tempdir().unwrap();
        let (index, report) = open(&builtin::source(), data.path());
        assert_eq!(report.location, None);
        assert_eq!(report.documents, builtin::DOCUMENTS.len());
        assert!(report.passages > 50, "{}", report.passages);
        assert!(
            std::fs::read_dir(data.path()).unwrap().next().is_none(),
            "nothing written"
        );
        let hits = index
            .search("how do I configure the RabbitMQ broker url", 5)
            .unwrap();
        assert!(
            hits.iter().any(|hit| hit.text.contains("broker.url")),
            "{hits:#?}"
        );
    }
}
