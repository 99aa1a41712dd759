//! Reading a source's folder: which files are documents, what they say, and a
//! fingerprint that changes whenever one of them does.
//!
//! Listing a folder reads metadata only, so checking whether an index is up to
//! date costs a directory walk, not a read of every document.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::KnowledgeError;

/// The file name endings read as documents; other files are skipped.
pub const DOCUMENT_EXTENSIONS: [&str; 3] = ["md", "markdown", "txt"];

/// A document file found in a source's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentFile {
    /// Relative to the source's folder, `/`-separated on every platform.
    pub relative_path: String,
    pub absolute_path: PathBuf,
    pub size: u64,
    /// Last modification, in nanoseconds since the Unix epoch (0 if unknown).
    pub modified_ns: u128,
}

/// A document's text, ready to be split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub relative_path: String,
    pub text: String,
}

/// The documents under `root`, recursively, sorted by path. Hidden files and
/// folders (`.git`, editor files) are skipped, and so are files of other kinds.
/// A missing or unreadable folder is an error naming `source_id` and `root`.
pub fn list(source_id: &str, root: &Path) -> Result<Vec<DocumentFile>, KnowledgeError> {
    let folder_error = |problem: String| KnowledgeError::Folder {
        source_id: source_id.to_owned(),
        path: root.to_path_buf(),
        problem,
    };
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(folder_error("it is not a folder".into())),
        Err(error) => return Err(folder_error(error.to_string())),
    }
    let mut files = Vec::new();
    let entries = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_hidden(entry.file_name()));
    for entry in entries {
        let entry = entry.map_err(|error| folder_error(error.to_string()))?;
        if !entry.file_type().is_file() || !is_document(entry.path()) {
            continue;
        }
        let metadata = entry
            .metadata()
            .map_err(|error| folder_error(error.to_string()))?;
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        files.push(DocumentFile {
            relative_path: slash_separated(relative),
            absolute_path: entry.path().to_path_buf(),
            size: metadata.len(),
            modified_ns,
        });
    }
    files.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    Ok(files)
}

/// Reads `file`. A file that is not UTF-8 is skipped with a warning (`None`):
/// one odd file should not keep the rest of a source from being searched.
pub fn read(source_id: &str, file: &DocumentFile) -> Result<Option<Document>, KnowledgeError> {
    let bytes = std::fs::read(&file.absolute_path).map_err(|error| KnowledgeError::Folder {
        source_id: source_id.to_owned(),
        path: file.absolute_path.clone(),
        problem: error.to_string(),
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(Document {
            relative_path: file.relative_path.clone(),
            text,
        })),
        Err(_) => {
            tracing::warn!(
                source = source_id,
                path = %file.absolute_path.display(),
                "skipping a document that is not UTF-8 text"
            );
            Ok(None)
        }
    }
}

/// A digest of every file's path, size and modification time: it changes when a
/// document is added, removed, renamed or edited.
pub fn fingerprint(files: &[DocumentFile]) -> String {
    let mut digest = Sha256::new();
    for file in files {
        digest.update(file.relative_path.as_bytes());
        digest.update([0]);
        digest.update(file.size.to_le_bytes());
        digest.update(file.modified_ns.to_le_bytes());
    }
    hex(&digest.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

fn is_document(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            DOCUMENT_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

fn slash_separated(path: &Path) -> String {
    path.components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, bytes: &[u8]) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn lists_documents_recursively_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.md", b"# B");
        write(dir.path(), "a/notes.TXT", b"notes");
        write(dir.path(), "a/deeper/c.markdown", b"c");
        write(dir.path(), "image.png", b"\x89PNG");
        write(dir.path(), "README", b"no extension");
        write(dir.path(), ".git/HEAD.md", b"hidden");
        write(dir.path(), ".draft.md", b"hidden");
        let files = list("src", dir.path()).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.relative_path.as_str()).collect();
        assert_eq!(paths, ["a/deeper/c.markdown", "a/notes.TXT", "b.md"]);
        assert_eq!(files[2].size, 3);
        assert!(files[2].modified_ns > 0);
    }

    #[test]
    fn a_missing_folder_names_the_source_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let error = list("handbook", &missing).unwrap_err().to_string();
        assert!(error.contains("knowledge source `handbook`"), "{error}");
        assert!(error.contains(&missing.display().to_string()), "{error}");

        write(dir.path(), "file.md", b"x");
        let error = list("handbook", &dir.path().join("file.md"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a folder"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "latin1.txt", b"caf\xe9 cr\xe8me");
        write(dir.path(), "ok.md", "café crème".as_bytes());
        let files = list("src", dir.path()).unwrap();
        assert_eq!(read("src", &files[0]).unwrap(), None);
        let document = read("src", &files[1]).unwrap().unwrap();
        assert_eq!(document.text, "café crème");
        assert_eq!(document.relative_path, "ok.md");
    }

    #[test]
    fn the_fingerprint_follows_paths_sizes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.md", b"one");
        let before = fingerprint(&list("s", dir.path()).unwrap());
        assert_eq!(before, fingerprint(&list("s", dir.path()).unwrap()));

        write(dir.path(), "a.md", b"one, edited");
        let edited = fingerprint(&list("s", dir.path()).unwrap());
        assert_ne!(before, edited);

        write(dir.path(), "b.txt", b"two");
        let added = fingerprint(&list("s", dir.path()).unwrap());
        assert_ne!(edited, added);

        write(dir.path(), "ignored.png", b"png");
        assert_eq!(added, fingerprint(&list("s", dir.path()).unwrap()));
    }
}
