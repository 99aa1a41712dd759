//! Building a source's index, or finding it up to date.
//!
//! A folder source's index lives in `<data_dir>/indexes/<source id>/index/`, with
//! `fingerprint.json` beside it: the fingerprint of the documents it was built
//! from (see [`documents::fingerprint`]) and their counts. Opening an index whose
//! fingerprint still matches reads nothing else; otherwise it is built again into
//! a fresh folder that then replaces the old one, and the fingerprint is written
//! last, so a build cut short is redone next time. The built-in source is
//! indexed in memory (see [`super::builtin`]).
//!
//! Building reads and writes files for a while: call it off the async runtime
//! (`spawn_blocking`, as [`super::Library::open`] does).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tantivy::Index;
use tantivy::schema::TantivyDocument;

use super::KnowledgeError;
use super::documents::{self, Document};
use super::index::{Fields, Progress, schema};
use super::passages::{self, Passage};
use super::source::KnowledgeSource;

/// Changes whenever the schema or the splitting does, so older indexes are rebuilt.
const INDEX_FORMAT: u32 = 3;

/// Memory the index writer may use while building (split among its threads).
const WRITER_MEMORY_BYTES: usize = 50_000_000;

/// What `fingerprint.json` holds.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct IndexStamp {
    format: u32,
    fingerprint: String,
    documents: usize,
    passages: usize,
}

/// An index ready to search, and what is in it.
pub(super) struct Opened {
    pub index: Index,
    pub documents: usize,
    pub passages: usize,
    /// Whether it was built now.
    pub rebuilt: bool,
}

/// How errors name the place of an index kept in memory.
pub(super) const IN_MEMORY: &str = "(memory)";

/// Indexes documents compiled into the binary, in memory.
pub(super) fn build_in_memory(
    source: &KnowledgeSource,
    embedded: &[(&str, &str)],
    progress: Progress<'_>,
) -> Result<Opened, KnowledgeError> {
    let documents: Vec<Document> = embedded
        .iter()
        .map(|(path, text)| Document {
            relative_path: (*path).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    let count = documents.len();
    let index = Index::create_in_ram(schema());
    let passages = write_passages(&index, &source.id, documents, progress)
        .map_err(|e| index_error(source, Path::new(IN_MEMORY), e))?;
    Ok(Opened {
        index,
        documents: count,
        passages,
        rebuilt: true,
    })
}

/// Opens the index at `location`, or builds it there when its stamp does not
/// match the folder's documents. Returns whether it was built.
pub(super) fn open_folder_index(
    source: &KnowledgeSource,
    folder: &Path,
    location: &Path,
    progress: Progress<'_>,
) -> Result<Opened, KnowledgeError> {
    let files = documents::list(&source.id, folder)?;
    let fingerprint = documents::fingerprint(&files);
    let stamp_path = location.join("fingerprint.json");
    let index_path = location.join("index");
    let stamp = std::fs::read(&stamp_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<IndexStamp>(&bytes).ok())
        .filter(|stamp| stamp.format == INDEX_FORMAT && stamp.fingerprint == fingerprint);
    if let Some(stamp) = stamp
        && let Ok(index) = Index::open_in_dir(&index_path)
    {
        return Ok(Opened {
            index,
            documents: stamp.documents,
            passages: stamp.passages,
            rebuilt: false,
        });
    }
    let fail = |problem: String| KnowledgeError::Index {
        source_id: source.id.clone(),
        path: location.to_path_buf(),
        problem,
    };
    let mut read = Vec::with_capacity(files.len());
    for file in &files {
        read.extend(documents::read(&source.id, file)?);
    }
    let building = location.join("index.building");
    let _ = std::fs::remove_file(&stamp_path);
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).map_err(|e| fail(e.to_string()))?;
    let index = Index::create_in_dir(&building, schema()).map_err(|e| fail(e.to_string()))?;
    let passages =
        write_passages(&index, &source.id, read, progress).map_err(|e| fail(e.to_string()))?;
    drop(index);
    if index_path.exists() {
        std::fs::remove_dir_all(&index_path).map_err(|e| fail(e.to_string()))?;
    }
    std::fs::rename(&building, &index_path).map_err(|e| fail(e.to_string()))?;
    let stamp = IndexStamp {
        format: INDEX_FORMAT,
        fingerprint,
        documents: files.len(),
        passages,
    };
    let written = serde_json::to_vec_pretty(&stamp).expect("a stamp is plain data");
    std::fs::write(&stamp_path, written).map_err(|e| fail(e.to_string()))?;
    let index = Index::open_in_dir(&index_path).map_err(|e| fail(e.to_string()))?;
    Ok(Opened {
        index,
        documents: stamp.documents,
        passages: stamp.passages,
        rebuilt: true,
    })
}

/// Splits `documents` and writes their passages into `index`; returns how many.
fn write_passages(
    index: &Index,
    source_id: &str,
    documents: Vec<Document>,
    progress: Progress<'_>,
) -> tantivy::Result<usize> {
    let fields = Fields::of(&index.schema());
    let mut writer = index.writer::<TantivyDocument>(WRITER_MEMORY_BYTES)?;
    let total = documents.len();
    let mut count = 0;
    for (done, document) in documents.into_iter().enumerate() {
        for passage in passages::split(source_id, &document.relative_path, &document.text) {
            writer.add_document(passage_document(fields, passage))?;
            count += 1;
        }
        progress(done + 1, total);
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(count)
}

fn passage_document(fields: Fields, passage: Passage) -> TantivyDocument {
    let mut document = TantivyDocument::default();
    document.add_text(fields.id, passage.id);
    document.add_text(fields.title, passage.title);
    for heading in passage.headings {
        document.add_text(fields.headings, heading);
    }
    document.add_text(fields.path, passage.path);
    document.add_text(fields.text, passage.text);
    document
}

pub(super) fn index_error(
    source: &KnowledgeSource,
    path: &Path,
    error: tantivy::TantivyError,
) -> KnowledgeError {
    KnowledgeError::Index {
        source_id: source.id.clone(),
        path: path.to_path_buf(),
        problem: error.to_string(),
    }
}
