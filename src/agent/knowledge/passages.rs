//! Splitting a document into passages: the pieces the index finds and the model
//! reads.
//!
//! A passage never crosses a Markdown heading, so each has one heading path (what
//! it is about); within a section, paragraphs are packed together up to
//! [`MAX_PASSAGE_CHARS`]. A paragraph too long for one passage is cut between
//! words, never inside one. Consecutive passages of a section share their last
//! and first [`OVERLAP_CHARS`] or so, so a sentence cut in two is still found
//! whole in one of them.

use sha2::{Digest, Sha256};

use super::documents::hex;

/// The most characters of a passage's text (a single word longer than this is
/// kept whole, alone).
pub const MAX_PASSAGE_CHARS: usize = 800;
/// About how many characters a passage repeats from the end of the one before.
pub const OVERLAP_CHARS: usize = 120;

/// A piece of a document, as indexed and returned by a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passage {
    /// Stable while the document is unchanged: a digest of the source id, the
    /// document's path and the passage's place in it.
    pub id: String,
    /// The document's first heading, or its file name without extension.
    pub title: String,
    /// The headings the passage is under, outermost first (empty before the first).
    pub headings: Vec<String>,
    /// The document's path relative to its source's folder.
    pub path: String,
    pub text: String,
}

/// The passages of the document at `relative_path` in source `source_id`, in
/// document order.
pub fn split(source_id: &str, relative_path: &str, text: &str) -> Vec<Passage> {
    let text = text.replace("\r\n", "\n");
    let sections = sections(&text);
    let title = sections
        .iter()
        .find_map(|section| section.headings.first().cloned())
        .unwrap_or_else(|| file_stem(relative_path).to_owned());
    sections
        .into_iter()
        .flat_map(|section| {
            let headings = section.headings;
            pack(&section.paragraphs)
                .into_iter()
                .map(move |text| (headings.clone(), text))
        })
        .enumerate()
        .map(|(ordinal, (headings, text))| Passage {
            id: passage_id(source_id, relative_path, ordinal),
            title: title.clone(),
            headings,
            path: relative_path.to_owned(),
            text,
        })
        .collect()
}

fn passage_id(source_id: &str, relative_path: &str, ordinal: usize) -> String {
    let mut digest = Sha256::new();
    digest.update(source_id.as_bytes());
    digest.update([0]);
    digest.update(relative_path.as_bytes());
    digest.update([0]);
    digest.update((ordinal as u64).to_le_bytes());
    hex(&digest.finalize()[..16])
}

fn file_stem(relative_path: &str) -> &str {
    let name = relative_path.rsplit('/').next().unwrap_or(relative_path);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// The text under one heading path, as paragraphs.
struct Section {
    headings: Vec<String>,
    paragraphs: Vec<String>,
}

/// Cuts the text at headings, and each section's text at blank lines. A fenced
/// code block is one paragraph, and a `#` inside it is not a heading.
fn sections(text: &str) -> Vec<Section> {
    let mut sections = vec![Section {
        headings: Vec::new(),
        paragraphs: Vec::new(),
    }];
    // (level, text) of the headings the current line is under.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut paragraph = String::new();
    let mut in_fence = false;
    let end_paragraph = |paragraph: &mut String, sections: &mut Vec<Section>| {
        let trimmed = paragraph.trim();
        if !trimmed.is_empty() {
            let section = sections.last_mut().expect("there is always a section");
            section.paragraphs.push(trimmed.to_owned());
        }
        paragraph.clear();
    };
    for line in text.lines() {
        let is_fence = {
            let trimmed = line.trim_start();
            trimmed.starts_with("```") || trimmed.starts_with("~~~")
        };
        if !in_fence && let Some((level, heading)) = heading(line) {
            end_paragraph(&mut paragraph, &mut sections);
            while stack.last().is_some_and(|(open, _)| *open >= level) {
                stack.pop();
            }
            stack.push((level, heading.to_owned()));
            sections.push(Section {
                headings: stack.iter().map(|(_, text)| text.clone()).collect(),
                paragraphs: Vec::new(),
            });
            continue;
        }
        if is_fence {
            in_fence = !in_fence;
        }
        if !in_fence && !is_fence && line.trim().is_empty() {
            end_paragraph(&mut paragraph, &mut sections);
            continue;
        }
        paragraph.push_str(line);
        paragraph.push('\n');
        if is_fence && !in_fence {
            end_paragraph(&mut paragraph, &mut sections);
        }
    }
    end_paragraph(&mut paragraph, &mut sections);
    sections
}

/// `(level, text)` when `line` is an ATX heading (`## Text`, at most three spaces
/// of indentation).
fn heading(line: &str) -> Option<(usize, &str)> {
    let unindented = line.trim_start_matches(' ');
    if line.len() - unindented.len() > 3 {
        return None;
    }
    let level = unindented.bytes().take_while(|&b| b == b'#').count();
    let rest = &unindented[level..];
    if !(1..=6).contains(&level) || !rest.starts_with([' ', '\t']) {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim_end();
    (!text.is_empty()).then_some((level, text))
}

/// Packs a section's paragraphs into passages of at most [`MAX_PASSAGE_CHARS`],
/// each (but the first) starting with the end of the one before.
fn pack(paragraphs: &[String]) -> Vec<String> {
    // Room for new text once the overlap is in.
    let budget = MAX_PASSAGE_CHARS - OVERLAP_CHARS;
    let mut passages = Vec::new();
    let mut current = String::new();
    for paragraph in paragraphs {
        for (index, piece) in pieces(paragraph, budget).into_iter().enumerate() {
            if !current.is_empty() && chars(&current) + 2 + chars(piece) > MAX_PASSAGE_CHARS {
                let overlap = tail(&current, OVERLAP_CHARS - 2).to_owned();
                passages.push(std::mem::replace(&mut current, overlap));
            }
            if !current.is_empty() {
                // A paragraph cut in pieces goes on with a space; a new one after a blank line.
                current.push_str(if index == 0 { "\n\n" } else { " " });
            }
            current.push_str(piece);
        }
    }
    if !current.is_empty() {
        passages.push(current);
    }
    passages
}

/// Cuts `text` into pieces of at most `limit` characters at whitespace. A word
/// longer than `limit` is one piece of its own.
fn pieces(text: &str, limit: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((limit_byte, _)) = rest.char_indices().nth(limit) else {
            pieces.push(rest);
            break;
        };
        let cut = if rest[limit_byte..].starts_with(char::is_whitespace) {
            limit_byte
        } else {
            match rest[..limit_byte].rfind(char::is_whitespace) {
                Some(space) => space,
                // One word longer than the limit: up to its end.
                None => rest[limit_byte..]
                    .find(char::is_whitespace)
                    .map_or(rest.len(), |space| limit_byte + space),
            }
        };
        pieces.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    pieces
}

/// About the last `n` characters of `text`, starting where a sentence does if one
/// starts there, else at a word: a passage that begins mid-sentence
/// reads badly, as a snippet and when the model quotes it.
fn tail(text: &str, n: usize) -> &str {
    let count = chars(text);
    if count <= n {
        return text;
    }
    let (start, _) = text
        .char_indices()
        .nth(count - n)
        .expect("count - n < count");
    let window = &text[start..];
    if let Some(sentence) = sentence_start(window) {
        return window[sentence..].trim_start();
    }
    match window.find(char::is_whitespace) {
        Some(space) => window[space..].trim_start(),
        None => "",
    }
}

/// Where the first sentence that starts inside `text` begins, if any: after `.`,
/// `!`, `?` or `:` and whitespace, after a blank line, or at a list item or table
/// row. A plain line break is not enough: Markdown is often wrapped mid-sentence.
fn sentence_start(text: &str) -> Option<usize> {
    let mut previous = None;
    for (index, c) in text.char_indices() {
        let rest = &text[index..];
        let ends = matches!(previous, Some('.' | '!' | '?' | ':')) && c.is_whitespace();
        let item = previous == Some('\n')
            && (rest.starts_with('\n')
                || ["- ", "* ", "| "].iter().any(|mark| rest.starts_with(mark)));
        if (ends || item) && !rest.trim().is_empty() {
            return Some(index);
        }
        previous = Some(c);
    }
    None
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(passages: &[Passage]) -> Vec<&str> {
        passages.iter().map(|p| p.text.as_str()).collect()
    }

    fn words(count: usize) -> String {
        (0..count)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn headings_make_sections_with_their_path() {
        let text = "Intro line.\n\n# Guide\n\nFirst.\n\n## Install ##\n\nRun it.\n\nThen check.\n\n\
                    ### On Linux\n\nUse apt.\n\n## Configure\n\nEdit the file.\n";
        let passages = split("src", "docs/guide.md", text);
        let paths: Vec<Vec<&str>> = passages
            .iter()
            .map(|p| p.headings.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            paths,
            [
                vec![],
                vec!["Guide"],
                vec!["Guide", "Install"],
                vec!["Guide", "Install", "On Linux"],
                vec!["Guide", "Configure"],
            ]
        );
        assert_eq!(
            texts(&passages),
            [
                "Intro line.",
                "First.",
                "Run it.\n\nThen check.",
                "Use apt.",
                "Edit the file."
            ]
        );
        assert!(passages.iter().all(|p| p.title == "Guide"));
        assert!(passages.iter().all(|p| p.path == "docs/guide.md"));
    }

    #[test]
    fn what_looks_like_a_heading_in_code_or_without_a_space_is_text() {
        let text =
            "# Real\n\n```sh\n# a comment\n\necho hi\n```\n#hashtag here\n\n    # indented code\n";
        let passages = split("src", "a.md", text);
        assert_eq!(passages.len(), 1, "{passages:?}");
        assert_eq!(
            passages[0].text,
            "```sh\n# a comment\n\necho hi\n```\n\n#hashtag here\n\n# indented code"
        );
        assert_eq!(passages[0].headings, ["Real"]);
    }

    #[test]
    fn long_paragraphs_are_cut_between_words_within_the_bound() {
        let text = words(1_000);
        let passages = split("src", "long.txt", &text);
        assert!(passages.len() > 5, "{}", passages.len());
        let all_words: std::collections::HashSet<&str> = text.split(' ').collect();
        for passage in &passages {
            assert!(
                chars(&passage.text) <= MAX_PASSAGE_CHARS,
                "{}",
                passage.text
            );
            assert!(chars(&passage.text) > MAX_PASSAGE_CHARS / 2);
            for word in passage.text.split_whitespace() {
                assert!(all_words.contains(word), "a cut word: {word}");
            }
        }
        let last_words: Vec<&str> = passages.last().unwrap().text.split_whitespace().collect();
        assert_eq!(last_words.last(), Some(&"word999"));
    }

    #[test]
    fn consecutive_passages_overlap() {
        let paragraphs: Vec<String> = (0..12)
            .map(|i| format!("Paragraph {i}. {}", words(20)))
            .collect();
        let passages = split("src", "p.md", &paragraphs.join("\n\n"));
        assert!(passages.len() >= 3);
        for pair in passages.windows(2) {
            let next_start: String = pair[1].text.chars().take(30).collect();
            assert!(
                pair[0].text.contains(&next_start),
                "{:?} does not end with the start of {:?}",
                pair[0].text,
                pair[1].text
            );
            let overlap = pair[1].text.find("\n\n").unwrap_or(0);
            assert!(overlap <= OVERLAP_CHARS, "{overlap}");
        }
        // Every paragraph is whole in some passage.
        for paragraph in &paragraphs {
            assert!(passages.iter().any(|p| p.text.contains(paragraph.as_str())));
        }
    }

    #[test]
    fn an_overlap_starts_at_a_sentence_when_one_starts_in_it() {
        let sentence = "The ponds are kept warm all year round by the springs. ";
        let text = sentence.repeat(40);
        let passages = split("src", "p.md", &text);
        assert!(passages.len() >= 2);
        for passage in &passages[1..] {
            assert!(passage.text.starts_with("The ponds"), "{:?}", passage.text);
        }
    }

    #[test]
    fn a_line_wrapped_mid_sentence_is_not_a_sentence_start() {
        assert_eq!(sentence_start("ends here\nand goes on"), None);
        assert_eq!(sentence_start("the end. Next one"), Some(8));
        assert_eq!(sentence_start("a list\n- item"), Some(7));
        assert_eq!(sentence_start("a paragraph\n\nthe next"), Some(12));
    }

    #[test]
    fn without_a_sentence_an_overlap_starts_at_a_word() {
        let passages = split("src", "p.md", &words(400));
        assert!(passages.len() >= 2);
        for passage in &passages[1..] {
            assert!(passage.text.starts_with("word"), "{:?}", passage.text);
        }
    }

    #[test]
    fn a_word_longer_than_a_passage_stays_whole() {
        let long_word = "x".repeat(MAX_PASSAGE_CHARS + 50);
        let text = format!("before {long_word} after");
        let passages = split("src", "w.txt", &text);
        assert!(passages.iter().any(|p| p.text.contains(&long_word)));
        assert_eq!(
            passages.last().unwrap().text.split_whitespace().last(),
            Some("after")
        );
    }

    #[test]
    fn tiny_and_empty_documents() {
        let passages = split("src", "notes/todo.txt", "buy milk");
        assert_eq!(texts(&passages), ["buy milk"]);
        assert_eq!(passages[0].title, "todo");
        assert!(passages[0].headings.is_empty());
        assert!(split("src", "empty.md", "").is_empty());
        assert!(split("src", "blank.md", "\n \n\t\n").is_empty());
        assert!(split("src", "only-headings.md", "# A\n## B\n").is_empty());
        assert_eq!(split("src", ".hidden", "x")[0].title, ".hidden");
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let text = "# A\n\none\n\n# B\n\ntwo\n";
        let first = split("src", "a.md", text);
        let again = split("src", "a.md", text);
        assert_eq!(first, again);
        assert_ne!(first[0].id, first[1].id);
        assert_eq!(first[0].id.len(), 32);
        assert_ne!(first[0].id, split("src", "b.md", text)[0].id);
        assert_ne!(first[0].id, split("other", "a.md", text)[0].id);
    }

    #[test]
    fn crlf_reads_like_lf() {
        let lf = "# Title\n\nLine one\nline two.\n\n## Part\n\nMore.\n";
        let crlf = lf.replace('\n', "\r\n");
        let passages = split("src", "a.md", &crlf);
        assert_eq!(passages, split("src", "a.md", lf));
        assert!(passages.iter().all(|p| !p.text.contains('\r')));
        assert_eq!(passages[1].headings, ["Title", "Part"]);
    }

    #[test]
    fn multibyte_text_is_cut_at_character_boundaries() {
        let text = "é ".repeat(2_000);
        let passages = split("src", "e.txt", &text);
        assert!(passages.len() > 3);
        assert!(passages.iter().all(|p| chars(&p.text) <= MAX_PASSAGE_CHARS));
    }
}
